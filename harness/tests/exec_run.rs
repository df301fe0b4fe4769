//! End-to-end through `db: exec`: paxoskv's own `server` started from a
//! command template, driven by the example client `workloads/exec-client.py`
//! (which runs paxoskv's `client` one-shot per op) over the JSON-lines
//! protocol: a short run with a kill exits 0 (ports 28200-28299). And the
//! same client behind a wrapper that, for some ops, prints garbage, exits or
//! hangs: those ops are `:info` (never `:ok`), the worker goes on with a
//! fresh client, the run completes valid and the clients' log says which
//! were replaced (ports 28800-28899). A missing start or client program, or
//! etcd binary, is a clear error before anything starts. Needs python3.

// Its own test binary (see harness/Cargo.toml), so it declares the helpers.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{harness_run, scratch, server_bin, servers_on};

/// The `client` binary, built next to `server`.
fn client_bin() -> PathBuf {
    common::workspace_bin("client")
}

/// Fails the test when python3 is missing.
fn require_python() {
    let python = Command::new("python3").arg("--version").output();
    assert!(
        python.is_ok_and(|o| o.status.success()),
        "this test needs python3 (apt-get install python3)"
    );
}

#[test]
fn the_example_client_drives_a_short_workload_end_to_end() {
    require_python();
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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

/// Wraps a client program (the wrapper's arguments after the counter file):
/// the run's 3rd op exits before running it, the 5th runs and then prints
/// garbage, the 7th runs and then hangs; every other op is relayed. The ops
/// are counted across all wrapper processes in a file (under a lock), so
/// each misbehaviour happens exactly once, early, whatever the timing.
const MISBEHAVING: &str = r#"
import fcntl, subprocess, sys, time
counter, argv = sys.argv[1], sys.argv[2:]
inner = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
def next_op():
    with open(counter, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        n = len(f.read()) + 1
        f.write(".")
        return n
for line in sys.stdin:
    n = next_op()
    if n == 3:
        sys.exit(0)
    inner.stdin.write(line)
    inner.stdin.flush()
    answer = inner.stdout.readline().strip()
    if n == 5:
        print("it went fine, probably: " + answer, flush=True)
    elif n == 7:
        time.sleep(60)
    else:
        print(answer, flush=True)
"#;

/// The e2e runs of this file, one at a time: each runs a python process and
/// a `client` per op, enough load for a 2-core machine.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_client_that_prints_garbage_exits_or_hangs_gives_info_and_is_replaced() {
    require_python();
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch_dir = scratch("exec-misbehaving");
    let dir = scratch_dir.path();
    let wrapper = dir.join("misbehaving.py");
    std::fs::write(&wrapper, MISBEHAVING).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workloads/exec-client.py");
    let workload = format!(
        r#"
description: e2e test, db exec, a client program that misbehaves
db:
  exec:
    start: ["{server}", "--my-addr", "{{client_addr}}", "--my-paxos", "{{peer_addr}}",
            "--replica", "{{peer_addrs}}", "--data-dir", "{{dir}}"]
    client: ["python3", "{wrapper}", "{counter}", "python3", "{example}", "{client}",
             "{{client_addr}}", "--timeout-ms", "1000"]
seed: 6
duration: 6s
cluster:
  replicas: 3
  base_client_port: 28800
  base_paxos_port: 28850
clients:
  concurrency: 3
  rate: 30
  request_timeout: 4s
operations:
  keys: 3
  mix: {{get: 40, put: 40, cas: 20}}
final:
  recovery_timeout: 20s
"#,
        server = server_bin().display(),
        wrapper = wrapper.display(),
        counter = dir.join("ops-counted").display(),
        example = example.display(),
        client = client_bin().display(),
    );
    let wl = dir.join("exec-misbehaving.yaml");
    std::fs::write(&wl, workload).unwrap();
    let store = dir.join("store");
    let r = harness_run(&wl, &store, &[], Duration::from_secs(120));
    eprintln!("{}\n{}\n(took {:?})", r.stdout, r.stderr, r.elapsed);
    assert!(servers_on(28800).is_empty(), "servers left behind");
    // The ops the wrapper spoiled were applied or not, nobody knows: as
    // :info they keep the history linearizable.
    assert_eq!(r.code, Some(0), "exit status");
    let run = std::fs::canonicalize(store.join("latest")).unwrap();
    let text = std::fs::read_to_string(run.join("history.edn")).unwrap();
    for (why, what) in [
        ("printed garbage", "garbage"),
        ("client program exited", "an exit"),
        ("gave no result within", "a hang"),
    ] {
        let infos = text
            .lines()
            .filter(|l| l.contains(why))
            .inspect(|l| assert!(l.contains(":type :info"), "{what} must be :info: {l}"))
            .count();
        assert!(infos > 0, "no op met {what} ({why:?}) in the history");
    }
    // Every spoiled op is :info and the workers went on: ops completed :ok
    // after the replacements, on fresh processes.
    let res: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert!(
        res["stats"]["overall"]["ok"].as_u64().unwrap() > 20,
        "{}",
        res["stats"]
    );
    let log = std::fs::read_to_string(run.join("exec-clients.log")).unwrap();
    let replaced = log.matches("=== harness: client program of n").count();
    let infos = text
        .lines()
        .filter(|l| l.contains("client replaced"))
        .count();
    assert_eq!(replaced, infos, "the clients' log names each replacement");
}

#[test]
fn a_missing_program_is_a_clear_error_before_anything_starts() {
    let scratch_dir = scratch("exec-missing");
    let dir = scratch_dir.path();
    let cases = [
        (
            r#"exec: {start: ["/nonexistent/mydb", "{id}"], client: ["sh"]}"#,
            "db.exec.start: /nonexistent/mydb: no such file",
        ),
        (
            r#"exec: {start: ["sh"], client: ["no-such-client-program-h17"]}"#,
            "db.exec.client: cannot find `no-such-client-program-h17` on PATH",
        ),
        (
            r#"etcd: {bin: /nonexistent/etcd}"#,
            "db.etcd.bin /nonexistent/etcd: no such file",
        ),
    ];
    for (i, (db, says)) in cases.iter().enumerate() {
        let wl = dir.join(format!("missing-{i}.yaml"));
        std::fs::write(
            &wl,
            format!(
                "description: a missing program\ndb: {{{db}}}\nduration: 2s\n\
                 cluster: {{replicas: 3, base_client_port: 28800, base_paxos_port: 28850}}\n"
            ),
        )
        .unwrap();
        let r = harness_run(&wl, &dir.join("store"), &[], Duration::from_secs(60));
        assert_eq!(r.code, Some(2), "{db}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{db}: {}", r.stderr);
    }
}
