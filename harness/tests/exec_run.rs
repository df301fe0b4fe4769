//! End-to-end through `db: exec`: paxoskv's own `server` started from a
//! command template, driven by the example client `workloads/exec-client.py`
//! (which runs paxoskv's `client` one-shot per op) over the JSON-lines
//! protocol: a short run with a kill exits 0 (ports 28200-28299). Needs
//! python3.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{harness_run, scratch, server_bin, servers_on};

/// The `client` binary, built next to `server`.
fn client_bin() -> PathBuf {
    common::workspace_bin("client")
}

#[test]
fn the_example_client_drives_a_short_workload_end_to_end() {
    let python = Command::new("python3").arg("--version").output();
    assert!(
        python.is_ok_and(|o| o.status.success()),
        "this test needs python3 (apt-get install python3)"
    );
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/exec-client.py");
    let workload = format!(
        r#"
description: e2e test, db exec, paxoskv server + the example client
db:
  exec:
    start: ["{server}", "--my-addr", "{{client_addr}}", "--my-paxos", "{{peer_addr}}",
            "--replica", "{{peer_addrs}}", "--data-dir", "{{dir}}", "--tick-ms", "10"]
    client: ["python3", "{example}", "{client}", "{{client_addr}}", "--timeout-ms", "1000"]
seed: 5
duration: 6s
cluster:
  replicas: 3
  base_client_port: 28200
  base_paxos_port: 28250
clients:
  concurrency: 3
  rate: 30
  request_timeout: 3s
operations:
  keys: 3
  mix: {{get: 40, put: 30, cas: 15, append: 10, delete: 5}}
nemesis:
  - fault: kill
    target: random
    start: 2s
    duration: 1500ms
final:
  recovery_timeout: 20s
"#,
        server = server_bin().display(),
        example = example.display(),
        client = client_bin().display(),
    );
    let scratch_dir = scratch("exec");
    let dir = scratch_dir.path();
    let wl = dir.join("exec.yaml");
    std::fs::write(&wl, workload).unwrap();
    let store = dir.join("store");
    let r = harness_run(&wl, &store, &[], Duration::from_secs(120));
    eprintln!("{}\n{}\n(took {:?})", r.stdout, r.stderr, r.elapsed);
    assert!(servers_on(28200).is_empty(), "servers left behind");
    assert_eq!(r.code, Some(0), "exit status");
    let run = std::fs::canonicalize(store.join("latest")).unwrap();
    let res: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(res["linearizability"]["verdict"], "linearizable");
    assert!(
        res["stats"]["overall"]["ok"].as_u64().unwrap() > 20,
        "{}",
        res["stats"]
    );
    let text = std::fs::read_to_string(run.join("history.edn")).unwrap();
    assert!(text.contains(":f :kill") && text.contains(":f :cas"));
    assert!(
        !text.contains("garbage"),
        "the example client printed garbage"
    );
}
