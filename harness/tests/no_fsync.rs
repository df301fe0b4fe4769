//! The `lose-unsynced` fault proven both ways, with real `harness run`s on
//! lazyfs: with `--unsafe-no-fsync` the replicas lose what they acknowledged
//! and the run must exit 1 (retries allowed); the same schedule with fsync
//! on must exit 0.
//!
//! The schedule is workloads/no-fsync.yaml's, shortened: every replica is
//! SIGKILLed at once and loses everything it had not fsynced. Needs FUSE
//! (/dev/fuse and fusermount3: `apt-get install fuse3`): without it the
//! tests FAIL saying so. Ports 26520-26559.

use crate::common;

use std::time::Duration;

/// workloads/no-fsync.yaml, shortened (`no_fsync`: with the unsafe flag).
fn workload(no_fsync: bool, seed: u64) -> String {
    let flags = if no_fsync {
        "  server_flags: [\"--unsafe-no-fsync\"]\n"
    } else {
        ""
    };
    format!(
        "description: \"shortened no-fsync schedule, unsafe flag {no_fsync}\"
seed: {seed}
duration: 6s
cluster:
  replicas: 3
{flags}clients:
  concurrency: 6
  rate: 120
  request_timeout: 1s
operations:
  keys: 4
  mix: {{get: 50, put: 50}}
nemesis:
  - fault: lose-unsynced
    target: all
    start: 3s
    duration: 1s
final:
  recovery_timeout: 20s
  convergence_timeout: 10s
checkers:
  time_limit: 30s
"
    )
}

fn run(name: &str, no_fsync: bool, seed: u64, port: u16) -> common::RunResult {
    harness::lazyfs::check_available().unwrap_or_else(|e| panic!("{e}"));
    let tmp = common::scratch(name);
    let dir = tmp.path();
    let yaml = dir.join(format!("{name}.yaml"));
    std::fs::write(&yaml, workload(no_fsync, seed)).unwrap();
    let client = port.to_string();
    let paxos = (port + 10).to_string();
    let r = common::harness_run(
        &yaml,
        &dir.join("store"),
        &["--base-client-port", &client, "--base-paxos-port", &paxos],
        Duration::from_secs(120),
    );
    assert!(
        common::servers_on(port).is_empty(),
        "a server outlived the harness"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(dir.to_str().unwrap()),
        "a lazyfs mount outlived the harness"
    );
    r
}

#[test]
fn without_fsync_losing_unsynced_writes_loses_acknowledged_writes() {
    let mut codes = Vec::new();
    for (attempt, seed) in [131u64, 132, 133].into_iter().enumerate() {
        let r = run(&format!("no-fsync-{attempt}"), true, seed, 26520);
        codes.push(r.code);
        if r.code == Some(1) {
            assert!(
                r.stdout.contains("not linearizable"),
                "exit 1 but not for linearizability:\n{}",
                r.stdout
            );
            return;
        }
        eprintln!(
            "attempt {attempt}: exit {:?}\n{}\n{}",
            r.code, r.stdout, r.stderr
        );
    }
    panic!("--unsafe-no-fsync + lose-unsynced was never caught: exit codes {codes:?}");
}

#[test]
fn with_fsync_the_same_schedule_loses_nothing() {
    let r = run("fsync-on", false, 131, 26540);
    assert_eq!(
        r.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stdout.contains("lose-unsynced"), "{}", r.stdout);
}
