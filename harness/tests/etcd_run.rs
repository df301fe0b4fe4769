//! End-to-end against real etcd 3.4 members (`etcd` on PATH; these tests
//! FAIL, saying how to install it, when it is missing):
//!
//! - a short kill + pause workload on 3 members: exit 0, a complete store
//!   dir, no etcd left behind (ports 28000-28099);
//! - the serializable-reads workload, shortened: finds stale reads and exits
//!   1 (ports 28100-28199; a few attempts allowed, it is a race by nature);
//! - partitions through the inbound proxies: the isolated leader is replaced
//!   and the run is valid (ports 28300-28399); serializable reads with the
//!   leader isolated are caught (ports 28700-28799).

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{harness_run, run_until_anomaly, scratch};

/// Fails the test when etcd is missing.
fn require_etcd() {
    if let Err(e) = harness::db::etcd::find_etcd(None) {
        panic!("this test needs etcd 3.4: {e}");
    }
}

/// PIDs of live etcd processes whose command line mentions `port`.
fn etcds_on(port: u16) -> Vec<i32> {
    let needle = format!("127.0.0.1:{port}");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if !zombie
            && cmd.contains("etcd")
            && cmd.contains("--listen-client-urls")
            && cmd.contains(&needle)
        {
            out.push(pid);
        }
    }
    out
}

const KILL_PAUSE: &str = r#"
description: e2e test, etcd, pause + kill on 3 members
db: etcd
seed: 11
duration: 10s
cluster:
  replicas: 3
  base_client_port: 28000
  base_paxos_port: 28050
clients:
  concurrency: 6
  rate: 80
  request_timeout: 2s
operations:
  keys: 4
  mix: {get: 50, put: 30, cas: 10, append: 5, delete: 5}
nemesis:
  - fault: pause
    target: leader
    start: 2s
    duration: 2500ms
  - fault: kill
    target: random
    start: 6s
    duration: 2s
final:
  recovery_timeout: 30s
checkers:
  time_limit: 60s
"#;

/// Runs `workload` (YAML text) in `dir` and asserts it exits 0 and leaves
/// no etcd on its client `ports`; returns the run's dir.
fn run_valid(dir: &Path, workload: &str, ports: [u16; 3]) -> std::path::PathBuf {
    let wl = dir.join("workload.yaml");
    std::fs::write(&wl, workload).unwrap();
    let store = dir.join("store");
    let r = harness_run(&wl, &store, &[], Duration::from_secs(120));
    eprintln!("{}\n{}\n(took {:?})", r.stdout, r.stderr, r.elapsed);
    for p in ports {
        assert!(etcds_on(p).is_empty(), "etcd left behind on {p}");
    }
    assert_eq!(r.code, Some(0), "exit status");
    std::fs::canonicalize(store.join("latest")).unwrap()
}

#[test]
fn a_kill_and_pause_run_on_etcd_is_valid_and_leaves_a_complete_store() {
    require_etcd();
    let scratch_dir = scratch("etcd-kill-pause");
    let run = run_valid(scratch_dir.path(), KILL_PAUSE, [28000, 28001, 28002]);
    common::assert_complete_run_dir(&run, 3);
    for n in ["n0", "n1", "n2"] {
        assert!(
            run.join(n).join("member").is_dir(),
            "no etcd data dir {n}/member"
        );
    }
    let text = std::fs::read_to_string(run.join("history.edn")).unwrap();
    assert!(
        text.contains(":f :pause") && text.contains(":f :kill") && text.contains(":f :restart")
    );
    assert!(text.contains(":f :append") && text.contains(":f :cas"));
    let res: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(res["verdict"], "valid");
    assert_eq!(res["linearizability"]["verdict"], "linearizable");
    assert!(res["stats"]["overall"]["ok"].as_u64().unwrap() > 50);
    // The restarted member's log holds both of its starts.
    let starts: usize = ["n0.log", "n1.log", "n2.log"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(run.join(f))
                .unwrap()
                .matches("=== harness: start #")
                .count()
        })
        .sum();
    assert_eq!(starts, 4, "3 starts + 1 restart");
}

#[test]
fn serializable_reads_with_the_leader_paused_are_caught() {
    require_etcd();
    let scratch_dir = scratch("etcd-serializable");
    let dir = scratch_dir.path();
    let wl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/etcd-serializable.yaml");
    let store = dir.join("store");
    // Two pauses instead of three.
    let args = [
        "--duration",
        "12s",
        "--base-client-port",
        "28100",
        "--base-paxos-port",
        "28150",
    ];
    run_until_anomaly(&wl, &store, &args, 200, 3, |_| {
        assert!(etcds_on(28100).is_empty(), "etcd left behind");
    });
}

const PARTITION: &str = r#"
description: e2e test, etcd, the leader isolated then unable to speak
db: etcd
seed: 12
duration: 12s
cluster:
  replicas: 3
  base_client_port: 28300
  base_paxos_port: 28350
  base_proxy_port: 28380
clients:
  concurrency: 6
  rate: 80
  request_timeout: 2s
operations:
  keys: 4
  mix: {get: 50, put: 30, cas: 15, append: 5}
nemesis:
  - fault: partition
    shape: isolate
    target: leader
    start: 2s
    duration: 3s
  - fault: partition
    shape: one-way
    target: leader
    start: 7s
    duration: 3s
final:
  recovery_timeout: 30s
checkers:
  time_limit: 60s
"#;

/// The terms at which members of the run in `run` became leader.
fn leader_terms(run: &Path) -> Vec<u64> {
    let mut terms = Vec::new();
    for n in ["n0.log", "n1.log", "n2.log"] {
        let log = std::fs::read_to_string(run.join(n)).unwrap();
        for line in log.lines() {
            if let Some((_, t)) = line.split_once("became leader at term ") {
                let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
                terms.extend(digits.parse::<u64>());
            }
        }
    }
    terms.sort();
    terms
}

#[test]
fn partitions_cut_etcd_peer_traffic_and_the_run_stays_valid() {
    require_etcd();
    let scratch_dir = scratch("etcd-partition");
    let run = run_valid(scratch_dir.path(), PARTITION, [28300, 28301, 28302]);
    let text = std::fs::read_to_string(run.join("history.edn")).unwrap();
    assert!(text.contains("[:isolate :blackhole") && text.contains("[:one-way :blackhole"));
    // The members really lost the leader: each cut (isolated, then unable
    // to speak) made the others elect a new one, at a later term than the
    // first election's.
    let terms = leader_terms(&run);
    assert!(
        terms.len() >= 3 && terms[0] < terms[terms.len() - 1],
        "elections at terms {terms:?}: the partitions did not cut the leader off"
    );
}

#[test]
fn serializable_reads_with_the_leader_isolated_are_caught() {
    require_etcd();
    let scratch_dir = scratch("etcd-serializable-partition");
    let dir = scratch_dir.path();
    let wl =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/etcd-serializable-partition.yaml");
    let store = dir.join("store");
    // One partition window instead of three.
    let args = [
        "--duration",
        "8s",
        "--base-client-port",
        "28700",
        "--base-paxos-port",
        "28750",
        "--base-proxy-port",
        "28780",
    ];
    let r = run_until_anomaly(&wl, &store, &args, 300, 3, |_| {
        assert!(etcds_on(28700).is_empty(), "etcd left behind");
    });
    assert!(r.stdout.contains("stale-read"), "{}", r.stdout);
}
