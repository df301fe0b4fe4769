//! Cost of the Paxos core itself: three in-memory replicas (no disk, no
//! network) deciding batches of client writes. This bounds what the runtime
//! can reach: whatever it adds is I/O.

use std::collections::VecDeque;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use server::kv::{Command, Op};
use server::paxos::{Config, Message, PersistentState, Replica, ReplicaId, Role};

struct Cluster {
    replicas: Vec<Replica>,
    net: VecDeque<(ReplicaId, ReplicaId, Message)>,
    replies: usize,
}

impl Cluster {
    fn new(n: usize) -> Self {
        let config = Config {
            max_batch: 64,
            max_inflight_slots: 8,
            snapshot_every: 10_000,
            ..Config::default()
        };
        let replicas = (0..n)
            .map(|id| Replica::new(id, n, config.clone(), PersistentState::default()).unwrap())
            .collect();
        let mut cluster = Cluster {
            replicas,
            net: VecDeque::new(),
            replies: 0,
        };
        while cluster.replicas[0].role() != Role::Coordinator {
            for r in &mut cluster.replicas {
                r.tick();
            }
            cluster.deliver();
        }
        cluster
    }

    fn collect(&mut self, id: ReplicaId) {
        let ready = self.replicas[id].ready();
        black_box(&ready.persist);
        self.replies += ready.replies.len();
        for (to, msg) in ready.messages {
            self.net.push_back((id, to, msg));
        }
    }

    fn deliver(&mut self) {
        for id in 0..self.replicas.len() {
            self.collect(id);
        }
        while let Some((from, to, msg)) = self.net.pop_front() {
            let _ = self.replicas[to].step(from, msg);
            self.collect(to);
        }
    }
}

fn consensus(c: &mut Criterion) {
    let value = "v".repeat(100);
    let mut group = c.benchmark_group("paxos");
    group.throughput(Throughput::Elements(64));
    group.bench_function("3 replicas decide 64 puts", |b| {
        let mut cluster = Cluster::new(3);
        let mut seq = 0u64;
        b.iter(|| {
            seq += 1;
            for client in 0..64u64 {
                let cmd = Command {
                    client_id: client,
                    seq,
                    op: Op::Put {
                        key: format!("key{}", (client * 31 + seq) % 1000),
                        value: value.clone(),
                    },
                };
                cluster.replicas[0].submit(seq * 64 + client, cmd);
            }
            let before = cluster.replies;
            cluster.deliver();
            assert_eq!(cluster.replies - before, 64);
        })
    });
    group.finish();
}

criterion_group!(benches, consensus);
criterion_main!(benches);
