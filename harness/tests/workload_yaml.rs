//! Workload validation: unknown fields and bad values are errors that name
//! the field and its line; every workload shipped in workloads/ is valid.

use harness::workload::{CorruptMode, FaultKind, Target, Workload, WorkloadError};

fn err(yaml: &str) -> String {
    match Workload::parse(yaml, "w.yaml") {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_minimal_workload_gets_defaults() {
    let w = Workload::parse("duration: 5s\n", "w.yaml").unwrap();
    assert_eq!(w.cluster.replicas, 3);
    assert_eq!(w.duration.0.as_secs(), 5);
    assert!(w.nemesis.is_empty());
    assert!(w.checkers.linearizable);
}

#[test]
fn a_full_workload_parses() {
    let y = r#"
name: full
seed: 7
duration: 1m
cluster:
  replicas: 5
  fail_rate: 0.1
  read_mode: local
  base_client_port: 24500
  base_paxos_port: 24600
  server_flags: ["--tick-ms", "10"]
clients:
  concurrency: 10
  rate: 200
  request_timeout: 500ms
operations:
  keys: 3
  mix: {get: 5, put: 3, delete: 1, cas: 1, append: 1}
  value_size: 16
  key_distribution: zipf
nemesis:
  - fault: pause
    target: leader
    start: 5s
    interval: 10s
    duration: 3s
  - fault: fail-rate
    target: majority
    fail_rate: 0.5
    start: 1s
    duration: 2s
  - {fault: kill, target: n4, start: 2s, duration: 1s, count: 2, interval: 5s}
final:
  recovery_timeout: 10s
checkers:
  time_limit: 30s
"#;
    let w = Workload::parse(y, "w.yaml").unwrap();
    assert_eq!(w.cluster.replicas, 5);
    assert_eq!(w.clients.request_timeout.0.as_millis(), 500);
    assert_eq!(w.nemesis[0].target, Target::Leader);
    assert_eq!(w.nemesis[1].fault, FaultKind::FailRate);
    assert_eq!(w.nemesis[2].target, Target::Node(4));
    // The workload as run round-trips.
    let again = Workload::parse(&w.to_yaml(), "again.yaml").unwrap();
    assert_eq!(again.nemesis.len(), 3);
    assert_eq!(again.seed, Some(7));
}

#[test]
fn unknown_fields_are_named_with_their_line() {
    let e = err("duration: 5s\ncluster:\n  replica: 3\n");
    assert!(e.contains("unknown field `replica`"), "{e}");
    assert!(e.contains("line 3"), "{e}");
    let e = err("duration: 5s\nnemesis:\n  - fault: pause\n    target: leader\n    duration: 1s\n    heal: 2s\n");
    assert!(
        e.contains("unknown field `heal`") && e.contains("line 6"),
        "{e}"
    );
    let e = err("duraton: 5s\n");
    assert!(
        e.contains("unknown field `duraton`") && e.contains("line 1"),
        "{e}"
    );
}

#[test]
fn bad_values_are_named_with_their_line() {
    let e = err("duration: 5s\ncluster:\n  replicas: 0\n");
    assert!(
        e.contains("w.yaml:3") && e.contains("cluster.replicas"),
        "{e}"
    );
    let e = err("duration: 5s\ncluster:\n  read_mode: sloppy\n");
    assert!(e.contains("read_mode") && e.contains("line 3"), "{e}");
    let e = err("duration: forever\n");
    assert!(
        e.contains("invalid duration") && e.contains("line 1"),
        "{e}"
    );
    let e = err("duration: 5s\noperations:\n  keys: 2\n  mix: {get: 0, put: 0}\n");
    assert!(
        e.contains("w.yaml:4") && e.contains("operations.mix"),
        "{e}"
    );
    let e = err("duration: 5s\ncluster:\n  fail_rate: 1.5\n");
    assert!(e.contains("w.yaml:3") && e.contains("fail_rate"), "{e}");
    let e = err("duration: 5s\nnemesis:\n  - fault: pause\n    target: leader\n    duration: 1s\n  - fault: kill\n    target: n9\n    duration: 1s\n");
    assert!(
        e.contains("w.yaml:7") && e.contains("nemesis.1.target") && e.contains("n9"),
        "{e}"
    );
    let e =
        err("duration: 5s\nnemesis:\n  - fault: pause\n    target: the-boss\n    duration: 1s\n");
    assert!(e.contains("unknown target") && e.contains("line 4"), "{e}");
    let e =
        err("duration: 5s\nnemesis:\n  - fault: fail-rate\n    target: all\n    duration: 1s\n");
    assert!(
        e.contains("needs a `fail_rate`") && e.contains("w.yaml:3"),
        "{e}"
    );
    let e = err("duration: 5s\nnemesis:\n  - fault: pause\n    target: all\n    duration: 3s\n    interval: 1s\n");
    assert!(
        e.contains("nemesis.0.interval") && e.contains("w.yaml:6"),
        "{e}"
    );
    let e = err("duration: 5s\nclients:\n  concurrency: -3\n");
    assert!(e.contains("concurrency") && e.contains("line 3"), "{e}");
}

#[test]
fn a_missing_file_is_an_io_error() {
    let e = Workload::load(std::path::Path::new("/nonexistent/w.yaml")).unwrap_err();
    assert!(matches!(e, WorkloadError::Io { .. }));
}

#[test]
fn every_shipped_workload_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let w = Workload::load(&p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(w.name(), p.file_stem().unwrap().to_str().unwrap());
            n += 1;
        }
    }
    assert!(n >= 7, "{n} workloads");
}

#[test]
fn the_benchmark_workload_checks_linearizability() {
    // Issue 17: bench.yaml's 130k+ ops are checked, not skipped.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/bench.yaml");
    let w = Workload::load(&path).unwrap();
    assert!(w.checkers.linearizable);
    assert!(w.clients.concurrency >= 64);
}

#[test]
fn harness_run_rejects_a_bad_workload_with_exit_2() {
    let tmp_dir = tempfile::Builder::new()
        .prefix("harness-badwl-")
        .tempdir()
        .unwrap();
    let dir = tmp_dir.path();
    let wl = dir.join("bad.yaml");
    std::fs::write(&wl, "duration: 5s\nclients:\n  concurency: 3\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg(&wl)
        .arg("--store")
        .arg(dir.join("store"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown field `concurency`") && err.contains("line 3"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg(dir.join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read workload"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_database_defaults_to_paxoskv_and_an_unknown_one_is_named() {
    use harness::workload::DbSpec;
    let w = Workload::parse("duration: 5s\n", "w.yaml").unwrap();
    assert_eq!(w.db, DbSpec::Paxoskv);
    let w = Workload::parse("db: paxoskv\nduration: 5s\n", "w.yaml").unwrap();
    assert_eq!(w.db, DbSpec::Paxoskv);
    let e = err("db: mongodb\nduration: 5s\n");
    assert!(e.contains("mongodb") && e.contains("paxoskv"), "{e}");
}

#[test]
fn disk_faults_parse_and_their_mode_is_checked() {
    let w = Workload::parse(
        "duration: 5s\nnemesis:\n  - fault: corrupt\n    mode: truncate\n    target: random\n    duration: 1s\n  - fault: lose-unsynced\n    target: all\n    duration: 1s\n",
        "w.yaml",
    )
    .unwrap();
    assert_eq!(w.nemesis[0].fault, FaultKind::Corrupt);
    assert_eq!(w.nemesis[0].mode, Some(CorruptMode::Truncate));
    assert_eq!(w.nemesis[1].fault, FaultKind::LoseUnsynced);
    assert!(w.needs_lazyfs());
    let e = err("duration: 5s\nnemesis:\n  - fault: kill\n    mode: bitflip\n    target: all\n    duration: 1s\n");
    assert!(
        e.contains("nemesis.0.mode") && e.contains("only a corrupt fault"),
        "{e}"
    );
    let e = err("duration: 5s\nnemesis:\n  - fault: corrupt\n    mode: shred\n    target: all\n    duration: 1s\n");
    assert!(e.contains("shred") && e.contains("bitflip"), "{e}");
}

#[test]
fn etcd_and_exec_options_parse_and_round_trip() {
    use harness::workload::{DbSpec, EtcdReadMode};
    let w = Workload::parse("db: etcd\nduration: 5s\n", "w.yaml").unwrap();
    assert!(matches!(&w.db, DbSpec::Etcd(e) if e.read_mode == EtcdReadMode::Linearizable));
    let text = "db:\n  etcd:\n    read_mode: serializable\nduration: 5s\n";
    let w = Workload::parse(text, "w.yaml").unwrap();
    assert!(matches!(&w.db, DbSpec::Etcd(e) if e.read_mode == EtcdReadMode::Serializable));
    let again = Workload::parse(&w.to_yaml(), "again.yaml").unwrap();
    assert_eq!(again.db, w.db);
    let e = err("db:\n  etcd:\n    read_mod: serializable\nduration: 5s\n");
    assert!(e.contains("read_mod"), "{e}");
    let exec = "db:\n  exec:\n    start: [srv, \"{client_addr}\"]\n    client: [cl, \"{id}\"]\nduration: 5s\n";
    let w = Workload::parse(exec, "w.yaml").unwrap();
    assert_eq!(
        Workload::parse(&w.to_yaml(), "again.yaml").unwrap().db,
        w.db
    );
    let e = err("db:\n  exec:\n    start: [srv, \"{nope}\"]\n    client: [cl]\nduration: 5s\n");
    assert!(e.contains("unknown placeholder {nope}"), "{e}");
}
