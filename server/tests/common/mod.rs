//! Real-process test support: a local cluster of `server` processes, each in
//! its own data directory under a per-test temporary root, always stopped by
//! PID (SIGKILL, then reaped) when the test ends or panics.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use client::{Client, ClientOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use paxoskv::kv::StatusReply;

/// The `server` binary under test.
pub fn server_bin() -> &'static str {
    env!("CARGO_BIN_EXE_server")
}

/// A child process killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Proc {
    child: Option<Child>,
}

impl Proc {
    /// Wraps a spawned child.
    pub fn new(child: Child) -> Proc {
        Proc { child: Some(child) }
    }

    /// The child's PID.
    pub fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32))
    }

    /// Sends a signal (ignored if the process is gone).
    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, sig);
        }
    }

    /// SIGKILLs and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit on its own, up to `timeout`; SIGKILLs
    /// it after that. Returns the exit status if it exited in time.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take()?;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A unique temporary directory (`tempfile`), removed on drop unless
/// `PAXOSKV_KEEP_TEST_DIRS` is set. The path is `.0`.
#[derive(Debug)]
pub struct TempDir(pub PathBuf, Option<tempfile::TempDir>);

impl TempDir {
    /// Creates `paxoskv-test-<name>-<random>` under the system temp dir.
    pub fn new(name: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("paxoskv-test-{name}-"))
            .tempdir()
            .expect("create temp dir");
        TempDir(dir.path().to_path_buf(), Some(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // PAXOSKV_KEEP_TEST_DIRS=1 keeps data directories and logs for a look.
        if std::env::var_os("PAXOSKV_KEEP_TEST_DIRS").is_some() {
            if let Some(dir) = self.1.take() {
                let _ = dir.keep();
            }
            eprintln!("kept {}", self.0.display());
        }
    }
}

/// Timing flags that make elections fast in tests.
pub const FAST: &[&str] = &[
    "--tick-ms",
    "10",
    "--heartbeat-ticks",
    "2",
    "--election-ticks",
    "10",
];

/// A local cluster: replica `i` serves clients on `127.0.0.1:base+i` and
/// peers on `127.0.0.1:base+50+i`.
#[derive(Debug)]
pub struct Cluster {
    /// Number of replicas.
    pub n: usize,
    base: u16,
    extra: Vec<String>,
    /// Per-replica processes (None while stopped).
    pub procs: Vec<Option<Proc>>,
    root: TempDir,
}

impl Cluster {
    /// Starts `n` replicas with extra flags.
    pub fn start(name: &str, n: usize, base: u16, extra: &[&str]) -> Cluster {
        let mut c = Cluster {
            n,
            base,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            procs: (0..n).map(|_| None).collect(),
            root: TempDir::new(name),
        };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    /// Client address of replica `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.base + i as u16)
    }

    /// Paxos address of replica `i`.
    pub fn paxos(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.base + 50 + i as u16)
    }

    /// Client addresses of all replicas.
    pub fn addrs(&self) -> Vec<String> {
        (0..self.n).map(|i| self.addr(i)).collect()
    }

    /// Log file of replica `i`.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.root.0.join(format!("server-{i}.log"))
    }

    /// The test's temporary root.
    pub fn root(&self) -> &Path {
        &self.root.0
    }

    /// (Re)starts replica `i` on its data directory.
    pub fn spawn(&mut self, i: usize) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("log file");
        let mut cmd = Command::new(server_bin());
        cmd.arg("--my-addr")
            .arg(self.addr(i))
            .arg("--my-paxos")
            .arg(self.paxos(i))
            .arg("--data-dir")
            .arg(self.root.0.join(format!("data-{i}")));
        for r in 0..self.n {
            cmd.arg("--replica").arg(self.paxos(r));
        }
        cmd.args(&self.extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let child = cmd.spawn().expect("spawn server");
        self.procs[i] = Some(Proc::new(child));
    }

    /// SIGKILLs replica `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            p.kill();
        }
    }

    /// Sends a signal to replica `i`.
    pub fn signal(&self, i: usize, sig: Signal) {
        if let Some(p) = &self.procs[i] {
            p.signal(sig);
        }
    }

    /// A failover client over all replicas.
    pub fn client(&self) -> Client {
        Client::new(self.addrs(), ClientOptions::default()).expect("client")
    }

    /// A client that talks to replica `i` only, without failover.
    pub fn client_of(&self, i: usize, timeout: Duration) -> Client {
        Client::new(
            vec![self.addr(i)],
            ClientOptions {
                timeout,
                attempt_timeout: timeout,
                failover: false,
                ..ClientOptions::default()
            },
        )
        .expect("client")
    }

    /// Status of replica `i`, if it answers within 500 ms.
    pub async fn status(&self, i: usize) -> Option<StatusReply> {
        client::status(&self.addr(i), Duration::from_millis(500))
            .await
            .ok()
    }

    /// Waits until some replica among `alive` is coordinator and every
    /// replica of `alive` names it as leader; returns its index.
    pub async fn wait_leader(&self, alive: &[usize], timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let mut leaders = Vec::new();
            for &i in alive {
                leaders.push(self.status(i).await.and_then(|s| {
                    (s.role == "coordinator" || s.leader.is_some()).then_some(s.leader)
                }));
            }
            if let Some(Some(Some(l))) = leaders.first() {
                let l = *l as usize;
                if alive.contains(&l) && leaders.iter().all(|x| *x == Some(Some(l as u32))) {
                    return l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {alive:?} within {timeout:?}: {leaders:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until replicas `which` report the same applied index and digest.
    pub async fn wait_converged(&self, which: &[usize], timeout: Duration) -> (u64, u64) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for &i in which {
                seen.push(self.status(i).await.map(|s| (s.applied_index, s.digest)));
            }
            if let Some(Some(first)) = seen.first() {
                if seen.iter().all(|s| s.as_ref() == Some(first)) {
                    return *first;
                }
            }
            assert!(
                Instant::now() < deadline,
                "replicas {which:?} did not converge within {timeout:?}: {seen:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The tail of every replica's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in 0..self.n {
            let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(25)..];
            out.push_str(&format!("--- server {i} ---\n{}\n", tail.join("\n")));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.procs.iter_mut() {
            if let Some(mut p) = p.take() {
                p.kill();
            }
        }
    }
}

/// Runs `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
