//! Property tests: histories simulated from a real sequential object under
//! random concurrency (with random timeouts turned into `:info`) are always
//! linearizable; after corrupting one read to a never-written value they are
//! not. Seeded, so failures reproduce; bounded (a few hundred ops each).

use harness::checker::synth::{corrupt_one_read, generate, SynthConfig};
use harness::checker::{check, CheckOptions, ModelKind, Verdict};
use harness::history::History;

fn verdict(history: &History, model: ModelKind) -> Verdict {
    let options = CheckOptions {
        model: Some(model),
        ..CheckOptions::default()
    };
    check(history, &options)
        .expect("generated histories are well-formed")
        .verdict()
}

fn property(model: ModelKind, cases: u64, ops: usize, keys: usize) {
    for seed in 0..cases {
        let config = SynthConfig {
            model,
            ops,
            processes: 2 + (seed as usize % 7),
            keys,
            info_rate: [0.0, 0.02, 0.1][seed as usize % 3],
            appends: true,
            deletes: true,
            seed,
        };
        let mut history = generate(&config);
        // The generated history survives a write/read round trip unchanged.
        let reread = History::parse(&history.to_edn_string()).unwrap();
        assert_eq!(reread.ops, history.ops, "seed {seed}");
        assert_eq!(
            verdict(&history, model),
            Verdict::Linearizable,
            "seed {seed}: {config:?}\n{}",
            history.to_edn_string()
        );
        if corrupt_one_read(&mut history, seed).is_some() {
            assert_eq!(
                verdict(&history, model),
                Verdict::NotLinearizable,
                "seed {seed} corrupted: {config:?}\n{}",
                history.to_edn_string()
            );
        }
    }
}

#[test]
fn simulated_registers_are_linearizable_and_corrupted_ones_are_not() {
    property(ModelKind::CasRegister, 150, 120, 1);
}

#[test]
fn simulated_kv_stores_are_linearizable_and_corrupted_ones_are_not() {
    property(ModelKind::Kv, 60, 300, 4);
}

#[test]
fn the_model_of_generated_histories_is_inferred() {
    for model in [ModelKind::Kv, ModelKind::CasRegister] {
        let h = generate(&SynthConfig {
            model,
            ops: 200,
            ..SynthConfig::default()
        });
        let report = check(&h, &CheckOptions::default()).unwrap();
        assert_eq!(report.model, model);
    }
}
