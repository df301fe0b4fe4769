//! End-to-end network faults: `harness run` against real `server` processes
//! whose links go through the harness's proxies.
//!
//! - a short partition workload on 3 replicas (isolate the leader, then
//!   halves with reset): exit 0, the history holds the partitions (with
//!   their grudges) and the heals, no server left behind, no proxy still
//!   listening (ports 25300-25399);
//! - partition-local-reads.yaml shortened to one partition: read_mode local
//!   and a cut off coordinator give stale reads, exit 1 (ports 25400-25499;
//!   a few attempts allowed, though 10 of 10 full runs found it);
//! - a proxy port already in use: exit 2 naming the port, nothing started
//!   (ports 25500-25599).

use crate::common;

use std::time::Duration;

use common::{harness_run, run_until_anomaly, scratch, server_bin, servers_on};

const PARTITION: &str = r#"
description: e2e test, partitions on 3 replicas
seed: 31
duration: 9s
cluster:
  replicas: 3
  base_client_port: 25300
  base_paxos_port: 25310
  base_proxy_port: 25320
clients:
  concurrency: 6
  rate: 60
  request_timeout: 1s
operations:
  keys: 4
  mix: {get: 50, put: 35, cas: 15}
nemesis:
  - fault: partition
    shape: isolate
    target: leader
    start: 1500ms
    duration: 2500ms
  - fault: partition
    shape: halves
    cut: reset
    start: 5500ms
    duration: 2s
final:
  recovery_timeout: 20s
  convergence_timeout: 15s
checkers:
  time_limit: 60s
"#;

/// Whether every port in `ports` can be bound (nothing listens there).
fn all_free(ports: std::ops::Range<u16>) -> Result<(), u16> {
    for p in ports {
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_err() {
            return Err(p);
        }
    }
    Ok(())
}

#[test]
fn a_partition_run_is_valid_records_its_grudges_and_leaves_nothing_behind() {
    let scratch_dir = scratch("partition");
    let dir = scratch_dir.path();
    let wl = dir.join("partition.yaml");
    std::fs::write(&wl, PARTITION).unwrap();
    let store = dir.join("store");
    let r = harness_run(&wl, &store, &[], Duration::from_secs(150));
    eprintln!("{}\n{}\n(took {:?})", r.stdout, r.stderr, r.elapsed);
    assert_eq!(r.code, Some(0), "exit code");
    assert!(servers_on(25300).is_empty(), "servers left behind");
    // The proxies lived in the harness process: all 9 ports are free again.
    assert_eq!(
        all_free(25320..25329),
        Ok(()),
        "a proxy port is still bound"
    );

    let run = std::fs::canonicalize(store.join("latest")).unwrap();
    let history = std::fs::read_to_string(run.join("history.edn")).unwrap();
    let nemesis: Vec<&str> = history.lines().filter(|l| l.contains(":nemesis")).collect();
    let partitions: Vec<&&str> = nemesis
        .iter()
        .filter(|l| l.contains(":f :partition"))
        .collect();
    assert_eq!(partitions.len(), 2, "{nemesis:#?}");
    assert!(
        partitions[0].contains(":isolate :blackhole"),
        "{}",
        partitions[0]
    );
    assert!(
        partitions[1].contains(":halves :reset"),
        "{}",
        partitions[1]
    );
    // The isolated node hears no one; the others miss only it.
    assert!(
        partitions[0].contains("[\"n1\" \"n2\"]")
            || partitions[0].contains("[\"n0\" \"n2\"]")
            || partitions[0].contains("[\"n0\" \"n1\"]"),
        "{}",
        partitions[0]
    );
    let heals = nemesis
        .iter()
        .filter(|l| l.contains(":f :heal-partition"))
        .count();
    assert_eq!(heals, 2, "{nemesis:#?}");
    let results = std::fs::read_to_string(run.join("results.json")).unwrap();
    assert!(results.contains("\"partition\""), "faults in results.json");
}

#[test]
fn local_reads_under_a_partition_are_caught() {
    let scratch_dir = scratch("partition-local");
    let dir = scratch_dir.path();
    let wl = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workloads/partition-local-reads.yaml");
    let store = dir.join("store");
    // One partition window (3 s to 6 s) instead of three.
    let args = [
        "--duration",
        "7s",
        "--base-client-port",
        "25400",
        "--base-paxos-port",
        "25410",
        "--base-proxy-port",
        "25420",
    ];
    let r = run_until_anomaly(&wl, &store, &args, 300, 3, |_| {
        assert!(servers_on(25400).is_empty(), "servers left behind");
    });
    assert!(r.stdout.contains("not linearizable"), "{}", r.stdout);
}

#[test]
fn a_proxy_port_in_use_stops_the_run_before_any_server_starts() {
    // Built (once per test binary) before the deadline starts.
    server_bin();
    let scratch_dir = scratch("partition-port");
    let dir = scratch_dir.path();
    let wl = dir.join("partition.yaml");
    let yaml = PARTITION
        .replace("25300", "25500")
        .replace("25310", "25510")
        .replace("25320", "25520");
    std::fs::write(&wl, yaml).unwrap();
    // Port of link n1->n2: 25520 + 1*3 + 2.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", 25525)).unwrap();
    let r = harness_run(&wl, &dir.join("store"), &[], Duration::from_secs(90));
    drop(squatter);
    assert_eq!(r.code, Some(2), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("25525") && r.stderr.contains("n1->n2"),
        "{}",
        r.stderr
    );
    assert!(servers_on(25500).is_empty(), "servers left behind");
    assert_eq!(all_free(25520..25529), Ok(()));
}
