//! Helpers of the end-to-end tests: finding (or building) the `server`
//! binary, running `harness run` as a subprocess with a deadline, and
//! checking that no server outlives it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../../tests-support/workspace_bins.rs"]
mod workspace_bins;

/// The `server` binary of this workspace's target dir, up to date.
pub fn server_bin() -> PathBuf {
    workspace_bin("server")
}

/// A binary of this workspace (`server`, `client`), up to date.
pub fn workspace_bin(name: &str) -> PathBuf {
    workspace_bins::workspace_bin(
        env!("CARGO_BIN_EXE_harness"),
        env!("CARGO_MANIFEST_DIR"),
        name,
    )
}

/// Output of one `harness run`.
pub struct RunResult {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `harness run <workload> --store <store> ...` with a deadline; kills
/// it (and, through PDEATHSIG, its servers) if the deadline passes.
pub fn harness_run(workload: &Path, store: &Path, extra: &[&str], deadline: Duration) -> RunResult {
    // Built before the clock starts: a busy machine's build is not the run's.
    let server = server_bin();
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("run")
        .arg(workload)
        .arg("--store")
        .arg(store)
        .arg("--server-bin")
        .arg(server)
        .arg("--no-progress")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start harness");
    let pid = child.id();
    // Read the pipes on threads so a chatty child never blocks.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut so, &mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut se, &mut s);
        s
    });
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = pid;
    RunResult {
        code,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// PIDs of live `server` processes whose command line mentions `port`.
pub fn servers_on(port: u16) -> Vec<i32> {
    let needle = format!(":{port}");
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .map(|r| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if !zombie && cmd.contains("server") && cmd.contains("--my-addr") && cmd.contains(&needle) {
            out.push(pid);
        }
    }
    out
}

/// A fresh scratch dir for one test, removed when dropped.
pub fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("harness-e2e-{name}-"))
        .tempdir()
        .expect("create a temp dir")
}

/// Runs `workload` up to `attempts` times, with `--seed first_seed + attempt`
/// after `args`, until a run finds an anomaly (exit 1), and returns that run.
/// `after` checks every run (e.g. that nothing was left running). Finding
/// an anomaly is a race by nature, hence the retries; a run that never finds
/// one panics with every exit code.
#[allow(dead_code)] // not every test file looks for anomalies
pub fn run_until_anomaly(
    workload: &Path,
    store: &Path,
    args: &[&str],
    first_seed: u64,
    attempts: u64,
    after: impl Fn(&RunResult),
) -> RunResult {
    let mut codes = Vec::new();
    for attempt in 0..attempts {
        let seed = (first_seed + attempt).to_string();
        let mut all = args.to_vec();
        all.extend(["--seed", &seed]);
        let r = harness_run(workload, store, &all, Duration::from_secs(150));
        eprintln!(
            "attempt {attempt}:\n{}\n{}\n(took {:?})",
            r.stdout, r.stderr, r.elapsed
        );
        after(&r);
        codes.push(r.code);
        if r.code == Some(1) {
            return r;
        }
    }
    panic!("no anomaly found in {attempts} attempts: exit codes {codes:?}");
}

/// Asserts that the run dir `run` holds everything a finished run writes:
/// history, results, workload, summary, plots and one log per node.
pub fn assert_complete_run_dir(run: &Path, nodes: usize) {
    let fixed = [
        "history.edn",
        "results.json",
        "workload.yaml",
        "summary.txt",
        "latency.svg",
        "rate.svg",
    ];
    let logs = (0..nodes).map(|i| format!("n{i}.log"));
    for f in fixed.iter().map(|f| f.to_string()).chain(logs) {
        assert!(run.join(&f).is_file(), "{f} missing in {}", run.display());
    }
}
