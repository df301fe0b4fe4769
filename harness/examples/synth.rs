//! Writes a synthetic (linearizable by construction) history to stdout.
//!
//! `cargo run -p harness --example synth -- MODEL OPS PROCESSES KEYS INFO_RATE SEED [corrupt] [no-deletes]`
//! e.g. `cargo run -p harness --example synth -- kv 10000 20 10 0.02 1 > h.edn`.
//! `corrupt` makes one read see a value nobody wrote; `corrupt-nil` makes
//! one read of a value see `nil` where no delete explains it (a change
//! certainly came between every delete it could see and the read; exits
//! with status 1 if no read qualifies); `no-deletes` leaves `:delete` out
//! of the kv mix (every value then has one writer).

use harness::checker::synth::{corrupt_one_read, corrupt_one_read_to_nil, generate, SynthConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let config = SynthConfig {
        model: arg(0, "kv").parse().expect("model: kv or cas-register"),
        ops: arg(1, "1000").parse().expect("ops"),
        processes: arg(2, "5").parse().expect("processes"),
        keys: arg(3, "10").parse().expect("keys"),
        info_rate: arg(4, "0.02").parse().expect("info rate"),
        appends: true,
        deletes: !args.iter().skip(6).any(|a| a == "no-deletes"),
        seed: arg(5, "1").parse().expect("seed"),
    };
    let mut history = generate(&config);
    if args.iter().skip(6).any(|a| a == "corrupt") {
        corrupt_one_read(&mut history, config.seed);
    }
    if args.iter().skip(6).any(|a| a == "corrupt-nil")
        && corrupt_one_read_to_nil(&mut history, config.seed).is_none()
    {
        eprintln!("corrupt-nil: no read of a value qualifies (every one may follow a delete)");
        std::process::exit(1);
    }
    print!("{}", history.to_edn_string());
}
