//! The `server` command line as a user meets it: malformed configurations
//! exit with status 2 and name the problem; the original C++ project's five
//! example lines start a working cluster verbatim; SIGTERM stops a replica with status 0.

use crate::common;

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{server_bin, Proc, TempDir};
use nix::sys::signal::Signal;

/// Runs `server` with `args`; returns (exit code, stderr).
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let dir = TempDir::new("cli-bad");
    let err_path = dir.0.join("stderr");
    let child = Command::new(server_bin())
        .args(args)
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn server");
    let mut p = Proc::new(child);
    let status = p.wait_exit(Duration::from_secs(10));
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    (status.and_then(|s| s.code()), stderr)
}

#[test]
fn malformed_configurations_exit_2_and_name_the_field() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["my_addr:'0.0.0.0:22900' my_paxos:'0.0.0.0:22950' fail_rate:2 replica:'0.0.0.0:22950'"],
            "fail_rate",
        ),
        (
            &["my_addr:'0.0.0.0:22900' my_paxos:'0.0.0.0:22959' replica:'0.0.0.0:22950'"],
            "my_paxos",
        ),
        (&["my_adr:'0.0.0.0:22900'"], "my_adr"),
        (
            &["my_addr:'0.0.0.0:22900' my_paxos:'0.0.0.0:22950' replica:'0.0.0.0:22950' fail_rate:abc"],
            "fail_rate",
        ),
        (&["my_addr:'0.0.0.0:22900"], "unterminated"),
        (&["--read-mode", "bogus"], "read-mode"),
    ];
    for (args, needle) in cases {
        let (code, stderr) = run_to_exit(args);
        assert_eq!(code, Some(2), "args {args:?}: stderr {stderr}");
        assert!(
            stderr.contains(needle),
            "args {args:?}: stderr does not mention {needle}: {stderr}"
        );
    }
}

#[test]
fn occupied_port_is_reported_and_exits_nonzero() {
    let _hold = std::net::TcpListener::bind("127.0.0.1:22910").expect("bind");
    let dir = TempDir::new("cli-port");
    let data = dir.0.join("d");
    let (code, stderr) = run_to_exit(&[
        "--my-addr",
        "127.0.0.1:22910",
        "--my-paxos",
        "127.0.0.1:22960",
        "--replica",
        "127.0.0.1:22960",
        "--data-dir",
        data.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("my_addr"), "{stderr}");
}

/// The original C++ project's README lines, verbatim (replica `n` of 5, fail_rate 0.3).
fn original_line(n: usize) -> String {
    format!(
        "my_addr:'0.0.0.0:800{n}' my_paxos:'0.0.0.0:900{n}' fail_rate:0.3 \
         replica:'0.0.0.0:9000' replica:'0.0.0.0:9001' replica:'0.0.0.0:9002' \
         replica:'0.0.0.0:9003' replica:'0.0.0.0:9004'"
    )
}

/// Ports 8000-8004 and 9000-9004 are the original project's; other test binaries of the
/// workspace may use them too, so this test holds a machine-wide lock.
fn original_ports_lock() -> nix::fcntl::Flock<File> {
    let path = std::env::temp_dir().join("paxoskv-original-ports.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .expect("lock file");
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .expect("lock the original ports")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_lines_start_a_cluster_and_sigterm_stops_it() {
    let _lock = original_ports_lock();
    let dir = TempDir::new("seed");
    let mut procs = Vec::new();
    for n in 0..5 {
        let log = File::create(dir.0.join(format!("server-{n}.log"))).expect("log");
        let child = Command::new(server_bin())
            .arg(original_line(n))
            // The default data dir is relative: keep it inside the test dir.
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn server");
        procs.push(Proc::new(child));
    }
    let logs = || {
        (0..5)
            .map(|n| {
                std::fs::read_to_string(dir.0.join(format!("server-{n}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let addrs: Vec<String> = (0..5).map(|n| format!("127.0.0.1:800{n}")).collect();
    let mut cl = client::Client::new(addrs, client::ClientOptions::default()).expect("client");
    let mut ok = false;
    for _ in 0..10 {
        if cl.put("seed", "works").await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(
        ok,
        "the cluster of the original lines did not serve a PUT\n{}",
        logs()
    );
    let r = cl.get("seed").await.expect("get");
    assert_eq!(r.value.as_deref(), Some("works"));
    for n in 0..5 {
        let st = client::status(&format!("127.0.0.1:800{n}"), Duration::from_secs(2))
            .await
            .expect("status");
        assert_eq!(st.replica_id as usize, n);
        assert!((st.fail_rate - 0.3).abs() < 1e-9);
        assert!(dir.0.join(format!("data/paxos-900{n}")).is_dir());
    }
    for p in &procs {
        p.signal(Signal::SIGTERM);
    }
    for (n, p) in procs.iter_mut().enumerate() {
        let st = p.wait_exit(Duration::from_secs(10));
        assert_eq!(
            st.and_then(|s| s.code()),
            Some(0),
            "replica {n} did not exit 0 on SIGTERM\n{}",
            logs()
        );
    }
}
