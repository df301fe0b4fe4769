//! Storage append: the cost of making one Ready's writes durable.
//!
//! A batch is what the storage thread writes per group commit: the accepted
//! value of one slot holding `n` client commands (100-byte values) plus the
//! chosen entry of the previous slot, encoded as the runtime encodes them.
//! `fsync` measures the real path (one fdatasync per batch); `no-fsync`
//! isolates encoding, checksumming and the write itself. Every 1000 slots
//! the batch also compacts the log, which costs a checkpoint.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use server::convert::write_to_storage;
use server::kv::{Command, Op};
use server::paxos::{Ballot, StorageWrite, Value};
use server::storage::{Storage, StorageOptions, WriteBatch};

fn slot_value(n: usize) -> Value {
    let value = "v".repeat(100);
    Value::Batch(
        (0..n as u64)
            .map(|i| Command {
                client_id: i + 1,
                seq: 1,
                op: Op::Put {
                    key: format!("key{i}"),
                    value: value.clone(),
                },
            })
            .collect(),
    )
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("storage_append");
    group.sample_size(30);
    for &sync in &[true, false] {
        for &n in &[1usize, 64] {
            let value = slot_value(n);
            let dir = std::env::temp_dir().join(format!(
                "paxoskv-bench-storage-{}-{sync}-{n}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let (mut storage, _, _) = match Storage::open(
                &dir,
                StorageOptions {
                    sync,
                    ..StorageOptions::default()
                },
            ) {
                Ok(s) => s,
                Err(e) => panic!("cannot open {}: {e}", dir.display()),
            };
            let mut slot = 1u64;
            group.throughput(Throughput::Elements(n as u64));
            let name = if sync { "fsync" } else { "no-fsync" };
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let writes = [
                        StorageWrite::Accept {
                            slot,
                            ballot: Ballot::new(1, 0),
                            value: value.clone(),
                        },
                        StorageWrite::Chosen {
                            slot: slot.saturating_sub(1).max(1),
                            value: value.clone(),
                        },
                    ];
                    let mut batch = WriteBatch(writes.iter().map(write_to_storage).collect());
                    // Compaction as the runtime does it (every 1000 slots
                    // here), so the log and the checkpoint stay bounded.
                    if slot.is_multiple_of(1000) {
                        batch.push(write_to_storage(&StorageWrite::Compact {
                            through: slot - 10,
                        }));
                    }
                    if let Err(e) = storage.write(black_box(batch)) {
                        panic!("write failed: {e}");
                    }
                    slot += 1;
                })
            });
            drop(storage);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
