//! The replicated store as real processes: operations, failover after
//! SIGKILL and SIGSTOP, catch-up after restart, fail_rate, full restart,
//! exactly-once retries, catch-up in byte-bounded chunks, input validation.
//!
//! Every test owns a port range (client ports `base..base+n`, Paxos ports
//! `base+50..`), inside 22000-23999 or 27000-27499, so the tests run in
//! parallel; every process is SIGKILLed by PID when its test ends, also on
//! panic.

use crate::common;

use std::time::{Duration, Instant};

use client::{ErrorKind, Op};
use common::{Cluster, FAST};
use nix::sys::signal::Signal;
use paxoskv::kv::{self as pkv, kv_client::KvClient};

const START: Duration = Duration::from_secs(15);

async fn all_operations(c: &Cluster) {
    let mut cl = c.client();
    let r = cl.put("apple", "green").await.expect("put");
    assert!(r.succeeded);
    assert_eq!(r.value.as_deref(), Some("green"));
    let r = cl.get("apple").await.expect("get");
    assert_eq!(r.value.as_deref(), Some("green"));
    assert!(r.succeeded);
    let r = cl.append("apple", "-ish").await.expect("append");
    assert_eq!(r.value.as_deref(), Some("green-ish"));
    let r = cl
        .cas("apple", Some("red"), "blue")
        .await
        .expect("cas mismatch");
    assert!(!r.succeeded);
    assert_eq!(r.value.as_deref(), Some("green-ish"));
    let r = cl
        .cas("apple", Some("green-ish"), "blue")
        .await
        .expect("cas");
    assert!(r.succeeded);
    assert_eq!(r.value.as_deref(), Some("blue"));
    let r = cl.cas("pear", None, "new").await.expect("cas absent");
    assert!(r.succeeded);
    let r = cl.delete("apple").await.expect("delete");
    assert!(r.succeeded);
    let r = cl.delete("apple").await.expect("delete again");
    assert!(!r.succeeded);
    let r = cl.get("apple").await.expect("get deleted");
    assert_eq!(r.value, None);
    assert!(!r.succeeded);
    assert_eq!(r.slot, 0, "a read has no slot of its own");

    // Every write names the slot it was chosen in: successive writes of one
    // client, increasing slots.
    let mut slots = Vec::new();
    for i in 0..4 {
        let r = cl.put("counter", &i.to_string()).await.expect("put");
        slots.push(r.slot);
    }
    let r = cl.append("counter", "!").await.expect("append");
    slots.push(r.slot);
    let r = cl.cas("counter", Some("3!"), "4").await.expect("cas");
    assert!(r.succeeded);
    slots.push(r.slot);
    let r = cl.delete("counter").await.expect("delete");
    slots.push(r.slot);
    assert!(slots[0] > 0, "{slots:?}");
    assert!(slots.windows(2).all(|w| w[0] < w[1]), "{slots:?}");

    // Every replica takes requests: followers forward to the coordinator.
    for i in 0..c.n {
        let mut one = c.client_of(i, Duration::from_secs(5));
        let key = format!("via-{i}");
        one.put(&key, "x").await.expect("put via replica");
        let r = one.get(&key).await.expect("get via replica");
        assert_eq!(r.value.as_deref(), Some("x"));
    }

    // Bad input is refused with INVALID_ARGUMENT and a message.
    let e = cl.put("", "v").await.expect_err("empty key");
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
    assert!(e.message.contains("empty"), "{e}");
    let e = cl.put(&"k".repeat(1025), "v").await.expect_err("long key");
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
    assert!(e.message.contains("1 KiB"), "{e}");
    let e = cl
        .put("k", &"v".repeat((1 << 20) + 1))
        .await
        .expect_err("long value");
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
    assert!(e.message.contains("1 MiB"), "{e}");

    let all: Vec<usize> = (0..c.n).collect();
    c.wait_converged(&all, Duration::from_secs(10)).await;
    let st = c.status(0).await.expect("status");
    assert_eq!(st.replica_id, 0);
    assert_eq!(st.read_mode, "quorum");
    assert!(st.keys >= 2);
    assert!(st.commit_index >= st.applied_index && st.applied_index > 0);
    let leader = st.leader.expect("leader known") as usize;
    // Every replica names the coordinator and its client address.
    for i in 0..c.n {
        let s = c.status(i).await.expect("status");
        assert_eq!(s.leader, Some(leader as u32), "replica {i}");
        assert_eq!(s.leader_addr, c.addr(leader), "replica {i}");
        assert_eq!(s.my_addr, c.addr(i));
        assert_eq!(s.my_paxos, c.paxos(i));
        assert_eq!(
            s.role,
            if i == leader {
                "coordinator"
            } else {
                "follower"
            }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_serve_every_operation() {
    let c = Cluster::start("ops3", 3, 22000, FAST);
    c.wait_leader(&[0, 1, 2], START).await;
    all_operations(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_replicas_serve_every_operation() {
    let c = Cluster::start("ops5", 5, 22100, FAST);
    c.wait_leader(&[0, 1, 2, 3, 4], START).await;
    all_operations(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_coordinator_fails_over_and_catches_up_after_restart() {
    let mut c = Cluster::start("kill", 3, 22200, FAST);
    let leader = c.wait_leader(&[0, 1, 2], START).await;
    let mut cl = c.client();
    let mut acked = Vec::new();
    for i in 0..30 {
        let k = format!("k{i}");
        cl.put(&k, &format!("v{i}")).await.expect("put before kill");
        acked.push((k, format!("v{i}")));
    }
    c.kill(leader);
    let killed_at = Instant::now();
    let rest: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    // A new coordinator serves within a few seconds.
    cl.put("after-kill", "1").await.expect("put after kill");
    let failover = killed_at.elapsed();
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    acked.push(("after-kill".into(), "1".into()));
    for i in 30..60 {
        let k = format!("k{i}");
        cl.put(&k, &format!("v{i}"))
            .await
            .expect("put after failover");
        acked.push((k, format!("v{i}")));
    }
    c.wait_leader(&rest, START).await;
    // No acknowledged write is lost.
    for (k, v) in &acked {
        let r = cl.get(k).await.expect("get after failover");
        assert_eq!(r.value.as_deref(), Some(v.as_str()), "key {k}");
    }
    // The killed replica restarts from its data dir and catches up.
    c.spawn(leader);
    c.wait_converged(&[0, 1, 2], Duration::from_secs(20)).await;
    let mut direct = c.client_of(leader, Duration::from_secs(5));
    let r = direct.get("k59").await.expect("get via restarted replica");
    assert_eq!(r.value.as_deref(), Some("v59"));
    eprintln!("failover after SIGKILL: {failover:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_coordinator_is_replaced_and_never_serves_stale_reads() {
    let c = Cluster::start("pause", 3, 22300, FAST);
    let leader = c.wait_leader(&[0, 1, 2], START).await;
    let mut cl = c.client();
    cl.put("x", "old").await.expect("put old");
    let before = c.status(leader).await.expect("status");
    c.signal(leader, Signal::SIGSTOP);
    let stopped_at = Instant::now();
    cl.put("x", "new").await.expect("put while paused");
    let failover = stopped_at.elapsed();
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    c.signal(leader, Signal::SIGCONT);
    // Right after waking, the old coordinator must not answer a quorum read
    // with the old value: it either learns it was deposed or fails.
    let mut direct = c.client_of(leader, Duration::from_secs(3));
    match direct.get("x").await {
        Ok(r) => assert_eq!(r.value.as_deref(), Some("new"), "stale read"),
        Err(e) => eprintln!("read on woken coordinator failed (allowed): {e}"),
    }
    // It steps down: it follows the new coordinator, or leads again only
    // with a higher ballot after catching up.
    let old = (before.ballot_round, before.ballot_replica);
    common::eventually(
        "woken coordinator steps down",
        Duration::from_secs(10),
        || async {
            let s = c.status(leader).await?;
            (s.role != "coordinator" || (s.ballot_round, s.ballot_replica) > old).then_some(())
        },
    )
    .await;
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10)).await;
    let r = cl.get("x").await.expect("final read");
    assert_eq!(r.value.as_deref(), Some("new"));
    eprintln!("failover after SIGSTOP: {failover:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_commit_with_fail_rate_on_every_replica() {
    let mut flags = FAST.to_vec();
    flags.extend(["--fail-rate", "0.3"]);
    let c = Cluster::start("failrate", 5, 22400, &flags);
    c.wait_leader(&[0, 1, 2, 3, 4], START).await;
    let st = c.status(2).await.expect("status");
    assert!((st.fail_rate - 0.3).abs() < 1e-9);
    let mut cl = c.client();
    for i in 0..30 {
        cl.put(&format!("f{i}"), "v")
            .await
            .expect("put at fail_rate 0.3");
    }
    for i in 0..30 {
        let r = cl.get(&format!("f{i}")).await.expect("get");
        assert_eq!(r.value.as_deref(), Some("v"));
    }
    // fail_rate can be changed at run time.
    let prev = client::set_fail_rate(&c.addr(2), 0.0, Duration::from_secs(2))
        .await
        .expect("set_fail_rate");
    assert!((prev - 0.3).abs() < 1e-9);
    assert_eq!(c.status(2).await.expect("status").fail_rate, 0.0);
    assert!(
        client::set_fail_rate(&c.addr(2), 1.5, Duration::from_secs(2))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_killing_every_replica() {
    let mut c = Cluster::start("restart", 3, 22500, FAST);
    c.wait_leader(&[0, 1, 2], START).await;
    // Several concurrent clients, so batches hold several commands.
    let mut tasks = Vec::new();
    for t in 0..4 {
        let mut cl = c.client();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..20 {
                let k = format!("t{t}-{i}");
                if cl.append(&k, "a").await.is_ok() {
                    acked.push(k);
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("client task"));
    }
    assert_eq!(acked.len(), 80);
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    c.wait_leader(&[0, 1, 2], START).await;
    let mut cl = c.client();
    for k in &acked {
        let r = cl.get(k).await.expect("get after full restart");
        assert_eq!(r.value.as_deref(), Some("a"), "key {k}");
    }
}

async fn raw_execute(
    addr: &str,
    client_id: u64,
    seq: u64,
    op: pkv::execute_request::Op,
) -> Result<pkv::ExecuteReply, tonic::Status> {
    let mut kv = KvClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(pkv::ExecuteRequest {
        client_id,
        seq,
        op: Some(op),
        forwarded: false,
    });
    req.set_timeout(Duration::from_secs(5));
    kv.execute(req).await.map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_request_is_applied_once() {
    let c = Cluster::start("retry", 3, 22600, FAST);
    c.wait_leader(&[0, 1, 2], START).await;
    let append = || {
        pkv::execute_request::Op::Append(pkv::Append {
            key: "log".into(),
            value: "x".into(),
        })
    };
    // The same (client_id, seq) sent twice, to different replicas.
    let a = raw_execute(&c.addr(1), 77, 1, append())
        .await
        .expect("first");
    let b = raw_execute(&c.addr(2), 77, 1, append())
        .await
        .expect("retry");
    assert_eq!(a.value.as_deref(), Some("x"));
    assert_eq!(b.value.as_deref(), Some("x"), "retry got the first result");
    let r = raw_execute(&c.addr(0), 77, 2, append())
        .await
        .expect("next");
    assert_eq!(r.value.as_deref(), Some("xx"));
    // An older seq is refused as stale, not applied.
    let e = raw_execute(&c.addr(0), 77, 1, append())
        .await
        .expect_err("stale seq");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    let mut cl = c.client();
    let r = cl
        .execute(Op::Get { key: "log".into() })
        .await
        .expect("get");
    assert_eq!(r.value.as_deref(), Some("xx"));
    // client_id 0 is for reads only.
    let e = raw_execute(&c.addr(0), 0, 1, append())
        .await
        .expect_err("write without session");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_majority_requests_fail_within_their_deadline() {
    let mut c = Cluster::start("minority", 3, 22700, FAST);
    c.wait_leader(&[0, 1, 2], START).await;
    c.client().put("k", "v").await.expect("put");
    c.kill(1);
    c.kill(2);
    let mut direct = c.client_of(0, Duration::from_secs(2));
    let started = Instant::now();
    let e = direct.put("k", "w").await.expect_err("no majority");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "took {took:?}: {e}");
    // The server honours the request's grpc-timeout: it answers UNAVAILABLE
    // itself, before the client gives up.
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
}

/// Total size of the files in `dir`.
/// Bytes allocated on disk (WAL files are preallocated sparse, so their
/// length says nothing about their use).
fn dir_size(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_replica_catches_up_from_a_snapshot_and_disk_stays_bounded() {
    let mut flags = FAST.to_vec();
    flags.extend(["--snapshot-every", "20"]);
    let mut c = Cluster::start("snapshot", 3, 22800, &flags);
    c.wait_leader(&[0, 1, 2], START).await;
    c.kill(2);
    // 300 overwrites of 10 keys with 1 KB values: the state stays small, the
    // log without compaction would not.
    let mut cl = c.client();
    let big = "b".repeat(1000);
    for i in 0..300 {
        cl.put(&format!("s{}", i % 10), &format!("{i}-{big}"))
            .await
            .expect("put");
    }
    c.spawn(2);
    c.wait_converged(&[0, 1, 2], Duration::from_secs(20)).await;
    let mut direct = c.client_of(2, Duration::from_secs(5));
    let r = direct.get("s9").await.expect("get via caught-up replica");
    assert!(r.value.expect("value").starts_with("299-"));
    for i in 0..3 {
        let size = dir_size(&c.root().join(format!("data-{i}")));
        assert!(size < 200_000, "replica {i} uses {size} bytes on disk");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_larger_than_one_message_reaches_a_lagging_replica_in_chunks() {
    // 4 KiB per message, a store of about 60 KiB: the snapshot that catches
    // replica 2 up travels in some 15 chunks (and the catch-ups and batches
    // before it are cut by bytes too).
    let mut flags = FAST.to_vec();
    flags.extend(["--snapshot-every", "20", "--max-message-bytes", "4096"]);
    let mut c = Cluster::start("chunks", 3, 27000, &flags);
    c.wait_leader(&[0, 1, 2], START).await;
    c.kill(2);
    let mut cl = c.client();
    let big = "c".repeat(1000);
    for i in 0..60 {
        cl.put(&format!("k{i}"), &format!("{i}-{big}"))
            .await
            .expect("put");
    }
    // The others compacted the log (every 20 slots) past what replica 2
    // has: only the snapshot can carry it, and the core sends snapshots
    // only as chunks of the budget.
    c.spawn(2);
    let (applied, _) = c.wait_converged(&[0, 1, 2], Duration::from_secs(20)).await;
    assert!(applied >= 60, "applied {applied}");
    let logs = (0..3)
        .map(|i| std::fs::read_to_string(c.log_path(i)).unwrap_or_default())
        .collect::<String>();
    assert!(
        !logs.contains("bad peer message") && !logs.contains("undecodable"),
        "{logs}"
    );
    let mut direct = c.client_of(2, Duration::from_secs(5));
    for i in [0, 59] {
        let r = direct
            .get(&format!("k{i}"))
            .await
            .expect("get via caught-up replica");
        assert_eq!(r.value, Some(format!("{i}-{big}")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peer_input_is_rejected_without_a_crash() {
    use paxoskv::paxos as pb;
    use pb::paxos_client::PaxosClient;
    let c = Cluster::start("badpeer", 3, 23100, FAST);
    c.wait_leader(&[0, 1, 2], START).await;
    let mut px = PaxosClient::connect(format!("http://{}", c.paxos(0)))
        .await
        .expect("connect paxos port");
    let send = |env: pb::Envelope| {
        let mut px = px.clone();
        async move {
            px.deliver(tokio_stream::iter(vec![env]))
                .await
                .map(|r| r.into_inner())
        }
    };
    let env = |from: u32, to: u32, size: u32, messages: Vec<pb::PaxosMessage>| pb::Envelope {
        from,
        to,
        cluster_size: size,
        sender_addr: String::new(),
        messages,
    };
    // Unknown sender, wrong receiver, wrong cluster size, claims to be us.
    for bad in [
        env(7, 0, 3, vec![]),
        env(1, 2, 3, vec![]),
        env(1, 0, 5, vec![]),
        env(0, 0, 3, vec![]),
    ] {
        let e = send(bad).await.expect_err("bad envelope accepted");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    }
    // Malformed messages from a valid sender are dropped, the stream lives.
    let junk = vec![
        pb::PaxosMessage { kind: None },
        pb::PaxosMessage {
            kind: Some(pb::paxos_message::Kind::Accept(pb::Accept {
                ballot: Some(pb::Ballot {
                    round: 1,
                    replica: 9,
                }),
                slot: 0,
                value: None,
            })),
        },
        pb::PaxosMessage {
            kind: Some(pb::paxos_message::Kind::Snapshot(pb::InstallSnapshot {
                snapshot: Some(pb::Snapshot {
                    last_slot: 5,
                    state: vec![0xff, 0x00, 0x13].into(),
                }),
            })),
        },
    ];
    send(env(1, 0, 3, junk))
        .await
        .expect("junk messages are skipped");
    // A forwarded request with an empty key is refused like a client's.
    let e = px
        .forward(pkv::ExecuteRequest {
            client_id: 5,
            seq: 1,
            op: Some(pkv::execute_request::Op::Put(pkv::Put {
                key: String::new(),
                value: "v".into(),
            })),
            forwarded: false,
        })
        .await
        .expect_err("empty key");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // Everyone is still alive and serving.
    c.client().put("still", "alive").await.expect("put");
    c.wait_converged(&[0, 1, 2], Duration::from_secs(10)).await;
}

/// A small Jepsen-style run: concurrent appends while one replica at a time
/// is killed and restarted or paused and resumed. Afterwards every
/// acknowledged append is present exactly once, in order, nothing that was
/// reported as not applied is present, and all replicas converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_survive_kills_and_pauses_exactly_once() {
    use rand::Rng;
    let mut c = Cluster::start("chaos", 5, 23200, FAST);
    c.wait_leader(&[0, 1, 2, 3, 4], START).await;
    let stop = Instant::now() + Duration::from_secs(8);
    let mut tasks = Vec::new();
    for t in 0..6 {
        let mut cl = c.client();
        tasks.push(tokio::spawn(async move {
            let (mut acked, mut unknown, mut failed) = (Vec::new(), Vec::new(), Vec::new());
            let mut i = 0;
            while Instant::now() < stop {
                let token = format!("{t}-{i}");
                i += 1;
                match cl.append(&format!("c{t}"), &format!("|{token}")).await {
                    Ok(_) => acked.push(token),
                    Err(e) if e.is_not_applied() => failed.push(token),
                    Err(_) => unknown.push(token),
                }
            }
            (t, acked, unknown, failed)
        }));
    }
    // Nemesis: one replica at a time.
    let mut faults = 0;
    while Instant::now() < stop {
        let victim = rand::rng().random_range(0..5);
        if rand::rng().random_bool(0.5) {
            c.kill(victim);
            tokio::time::sleep(Duration::from_millis(400)).await;
            c.spawn(victim);
        } else {
            c.signal(victim, Signal::SIGSTOP);
            tokio::time::sleep(Duration::from_millis(600)).await;
            c.signal(victim, Signal::SIGCONT);
        }
        faults += 1;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("client task"));
    }
    c.wait_converged(&[0, 1, 2, 3, 4], Duration::from_secs(30))
        .await;
    let mut cl = c.client();
    let mut total_acked = 0;
    for (t, acked, unknown, failed) in results {
        total_acked += acked.len();
        let value = cl
            .get(&format!("c{t}"))
            .await
            .expect("final read")
            .value
            .unwrap_or_default();
        let present: Vec<&str> = value.split('|').filter(|s| !s.is_empty()).collect();
        let mut seen = std::collections::HashSet::new();
        for p in &present {
            assert!(seen.insert(*p), "token {p} applied twice in {value}");
            assert!(
                !failed.iter().any(|f| f == p),
                "token {p} was reported not applied but is present"
            );
            assert!(
                acked.iter().chain(unknown.iter()).any(|a| a == p),
                "token {p} was never sent"
            );
        }
        let acked_in_value: Vec<&str> = present
            .iter()
            .copied()
            .filter(|p| acked.iter().any(|a| a == p))
            .collect();
        assert_eq!(
            acked_in_value,
            acked.iter().map(String::as_str).collect::<Vec<_>>(),
            "client {t}: acknowledged appends lost or reordered"
        );
    }
    assert!(total_acked > 50, "only {total_acked} appends acknowledged");
    eprintln!("chaos: {faults} faults, {total_acked} acknowledged appends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_read_mode_is_reported_and_serves() {
    let mut flags = FAST.to_vec();
    flags.extend(["--read-mode", "local"]);
    let c = Cluster::start("local", 3, 23300, &flags);
    c.wait_leader(&[0, 1, 2], START).await;
    let mut cl = c.client();
    cl.put("k", "v").await.expect("put");
    let r = cl.get("k").await.expect("local get");
    assert_eq!(r.value.as_deref(), Some("v"));
    assert_eq!(r.slot, 0);
    for i in 0..3 {
        assert_eq!(c.status(i).await.expect("status").read_mode, "local");
    }
}

/// A paused follower keeps its TCP connections open but reads nothing: the
/// coordinator's queue to it fills up and overflows. Writes must keep
/// flowing through the other majority without stalls, and the follower
/// catches up once resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_follower_never_blocks_the_others() {
    let c = Cluster::start("slowpeer", 3, 23400, FAST);
    let leader = c.wait_leader(&[0, 1, 2], START).await;
    let follower = (leader + 2) % 3;
    c.signal(follower, Signal::SIGSTOP);
    let stop = Instant::now() + Duration::from_secs(4);
    let mut tasks = Vec::new();
    for t in 0..16 {
        let mut cl = c.client();
        tasks.push(tokio::spawn(async move {
            let big = "p".repeat(1000);
            let (mut ok, mut worst) = (0u32, Duration::ZERO);
            let mut i = 0;
            while Instant::now() < stop {
                let started = Instant::now();
                cl.put(&format!("p{t}-{}", i % 20), &big)
                    .await
                    .expect("put while a follower is paused");
                worst = worst.max(started.elapsed());
                ok += 1;
                i += 1;
            }
            (ok, worst)
        }));
    }
    let (mut total, mut worst) = (0, Duration::ZERO);
    for t in tasks {
        let (ok, w) = t.await.expect("client task");
        total += ok;
        worst = worst.max(w);
    }
    c.signal(follower, Signal::SIGCONT);
    eprintln!("paused follower: {total} puts, slowest {worst:?}");
    // Liveness, not speed (the machine is shared): every client got writes
    // through, and none waited anywhere near a blocked queue's forever.
    assert!(total >= 16, "only {total} puts in 4 s");
    assert!(worst < Duration::from_secs(5), "a put took {worst:?}");
    let resumed = Instant::now();
    c.wait_converged(&[0, 1, 2], Duration::from_secs(30)).await;
    eprintln!("paused follower caught up in {:?}", resumed.elapsed());
}
