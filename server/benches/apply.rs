//! State machine apply throughput: how many chosen commands per second one
//! replica can apply (sessions included), for a put/get/append/cas mix on
//! 1000 keys with 100-byte values, as in the closed-loop load of
//! `workloads/bench.yaml`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use server::kv::{Command, KvStore, Op};

const KEYS: u64 = 1000;
const CLIENTS: u64 = 64;

fn commands(count: u64) -> Vec<Command> {
    let value = "v".repeat(100);
    (0..count)
        .map(|i| {
            let key = format!("key{}", (i * 7919) % KEYS);
            let op = match i % 4 {
                0 | 1 => Op::Put {
                    key,
                    value: value.clone(),
                },
                2 => Op::Cas {
                    key,
                    expected: Some(value.clone()),
                    new: value.clone(),
                },
                _ => Op::Delete { key },
            };
            Command {
                client_id: i % CLIENTS,
                seq: i / CLIENTS + 1,
                op,
            }
        })
        .collect()
}

fn apply(c: &mut Criterion) {
    let batch = commands(10_000);
    let mut group = c.benchmark_group("kv");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("apply 10k mixed commands", |b| {
        b.iter_batched(
            KvStore::new,
            |mut kv| {
                for cmd in &batch {
                    let _ = black_box(kv.apply(cmd));
                }
                kv
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    c.bench_function("kv digest (1000 keys, 64 sessions)", |b| {
        let mut kv = KvStore::new();
        for cmd in &batch {
            let _ = kv.apply(cmd);
        }
        b.iter(|| black_box(kv.digest()))
    });
}

criterion_group!(benches, apply);
criterion_main!(benches);
