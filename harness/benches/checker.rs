//! Checker benchmarks (`cargo bench -p harness --bench checker`).
//!
//! - `reference/<file>`: parse + check of each history in
//!   `shared/histories` (Porcupine, the Go reference, takes ~380 ms for all 34
//!   on this machine kind, ~220 ms for etcd_002 alone).
//! - `reference-total`: all of them, one after the other.
//! - `scaling/kv/<ops>ops-<procs>procs`: check (pairing, split, search) of a
//!   generated kv history (`checker::synth`): `ops` invocations by `procs`
//!   concurrent processes over `ops / 1000` keys (about 1000 ops per key), mix
//!   40% get, 30% put, 15% append, 5% delete, 10% cas, 1% of ops timing out as
//!   `:info`. Generated once per size, outside the measurement.
//! - `scaling/register/10000ops-5procs`: one cas register holding 0..4 (no
//!   splitting: the search alone on 10k ops).
//!
//! - `hot-key/<ops>ops-64procs-<variant>`: one key, 64 processes, 1% `:info`,
//!   valid and with one corrupted read; `unique` leaves deletes out (every
//!   value has one writer: the polynomial check decides), `deletes` keeps them
//!   (`nil` is written many times: the WGL search decides).
//!
//! Set `CHECKER_BENCH_QUICK=1` to skip the 1M-op sizes.

use std::path::PathBuf;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use harness::checker::synth::{generate, SynthConfig};
use harness::checker::{check, CheckOptions, ModelKind, Verdict};
use harness::history::History;

fn reference_files() -> Vec<(String, String)> {
    // `shared/histories` beside the repository (or beside a worktree's ancestor).
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = crate_dir
        .ancestors()
        .map(|a| a.join("shared/histories"))
        .find(|d| d.join("MANIFEST.tsv").is_file())
        .unwrap_or_else(|| crate_dir.join("../../shared/histories"));
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (shared/ must sit beside the repository)",
            dir.display()
        )
    });
    manifest
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .filter(|f| !f.is_empty())
        .map(|f| {
            let text = std::fs::read_to_string(dir.join(f)).expect("read history");
            (f.to_string(), text)
        })
        .collect()
}

fn parse_and_check(text: &str) -> Verdict {
    let history = History::parse(text).expect("parse");
    check(&history, &CheckOptions::default())
        .expect("check")
        .verdict()
}

fn reference(c: &mut Criterion) {
    let files = reference_files();
    let mut group = c.benchmark_group("reference");
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_millis(700));
    group.sample_size(20);
    for (name, text) in &files {
        let short = name
            .rsplit('/')
            .next()
            .unwrap_or(name)
            .trim_end_matches(".edn");
        group.bench_function(short, |b| b.iter(|| parse_and_check(text)));
    }
    group.finish();

    let mut group = c.benchmark_group("reference-total");
    group.sample_size(20);
    group.bench_function("all-34", |b| {
        b.iter(|| {
            files
                .iter()
                .map(|(_, t)| parse_and_check(t) as u8 as u64)
                .sum::<u64>()
        })
    });
    group.finish();
}

fn scaling(c: &mut Criterion) {
    let quick = std::env::var_os("CHECKER_BENCH_QUICK").is_some();
    let mut group = c.benchmark_group("scaling");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    let sizes: &[usize] = if quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    for &ops in sizes {
        for procs in [5usize, 20, 50] {
            let config = SynthConfig {
                model: ModelKind::Kv,
                ops,
                processes: procs,
                keys: ops / 1000,
                info_rate: 0.01,
                appends: true,
                deletes: true,
                seed: 42,
            };
            let history = generate(&config);
            let options = CheckOptions {
                model: Some(ModelKind::Kv),
                ..CheckOptions::default()
            };
            assert_eq!(
                check(&history, &options).unwrap().verdict(),
                Verdict::Linearizable
            );
            group.throughput(Throughput::Elements(ops as u64));
            group.bench_with_input(
                BenchmarkId::new("kv", format!("{ops}ops-{procs}procs")),
                &history,
                |b, h| b.iter(|| check(h, &options).unwrap().verdict()),
            );
        }
    }
    // One register holding 0..4 (Jepsen's etcd test style): 5 processes only;
    // with 20 and more, overlapping writes of the same few values make the
    // search explode (see the checker note), which is a budget test, not a bench.
    {
        let procs = 5usize;
        let config = SynthConfig {
            model: ModelKind::CasRegister,
            ops: 10_000,
            processes: procs,
            keys: 1,
            info_rate: 0.001,
            appends: false,
            deletes: false,
            seed: 42,
        };
        let history = generate(&config);
        let options = CheckOptions {
            model: Some(ModelKind::CasRegister),
            ..CheckOptions::default()
        };
        let verdict = check(&history, &options).unwrap().verdict();
        assert_eq!(verdict, Verdict::Linearizable);
        group.throughput(Throughput::Elements(10_000));
        group.bench_with_input(
            BenchmarkId::new("register", format!("10000ops-{procs}procs")),
            &history,
            |b, h| b.iter(|| check(h, &options).unwrap().verdict()),
        );
    }
    group.finish();
}

fn hot_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("hot-key");
    group.sample_size(10);
    for (ops, deletes) in [(100_000usize, false), (10_000, true)] {
        let config = SynthConfig {
            model: ModelKind::Kv,
            ops,
            processes: 64,
            keys: 1,
            info_rate: 0.01,
            appends: true,
            deletes,
            seed: 1,
        };
        let valid = generate(&config);
        let mut invalid = valid.clone();
        harness::checker::synth::corrupt_one_read(&mut invalid, 1);
        let options = CheckOptions {
            model: Some(ModelKind::Kv),
            ..CheckOptions::default()
        };
        let variant = if deletes { "deletes" } else { "unique" };
        for (name, h) in [("valid", &valid), ("invalid", &invalid)] {
            group.bench_with_input(
                BenchmarkId::new(format!("{ops}ops-64procs-{variant}"), name),
                h,
                |b, h| b.iter(|| check(h, &options).unwrap().verdict()),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, reference, scaling, hot_key);
criterion_main!(benches);
