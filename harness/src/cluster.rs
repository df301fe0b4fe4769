//! A local cluster of `server` processes, managed by PID: the process side
//! of the paxoskv adapter ([`crate::db::paxoskv`], which also holds its
//! RPCs). [`spawn_child`] and the PID registry serve any adapter whose
//! nodes are OS processes.
//!
//! Each replica is an OS process with its own data dir and log file. The
//! harness pauses (SIGSTOP/SIGCONT), kills (SIGKILL) and restarts them on the
//! same data dir, and must never leave one behind. Three layers make sure of
//! that:
//!
//! 1. [`Cluster`] stops every process it started when it is dropped, so an
//!    error or a panic that unwinds the stack still cleans up.
//! 2. Every child PID is also kept in a process-wide registry, which
//!    [`kill_registered`] empties; the CLI calls it from its SIGINT/SIGTERM
//!    handling before exiting.
//! 3. On Linux each child is started with `PR_SET_PDEATHSIG = SIGKILL`, so the
//!    kernel kills it if the harness itself dies by SIGKILL. The death signal
//!    fires when the *thread* that forked the child exits, so every child is
//!    forked by one spawner thread that lives as long as the harness.
//!
//! With [`Cluster::mount_lazyfs`] each node's data dir is a [`crate::lazyfs`]
//! mount, so that [`Cluster::lose_unsynced`] can drop what a killed node had
//! not fsynced; the mounts go when the cluster does, after its processes.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::lazyfs::{LazyMount, Loss};
use crate::workload::ReadMode;

/// PIDs of every live child of this harness process.
fn registry() -> &'static Mutex<BTreeSet<i32>> {
    static REG: OnceLock<Mutex<BTreeSet<i32>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(BTreeSet::new()))
}

fn register(pid: i32) {
    if let Ok(mut r) = registry().lock() {
        r.insert(pid);
    }
}

pub(crate) fn unregister(pid: i32) {
    if let Ok(mut r) = registry().lock() {
        r.remove(&pid);
    }
}

/// SIGKILLs every child still registered (after SIGCONT, in case it is
/// stopped). For the signal path of the CLI: Drop guards do the rest.
pub fn kill_registered() -> usize {
    let pids: Vec<i32> = match registry().lock() {
        Ok(mut r) => std::mem::take(&mut *r).into_iter().collect(),
        Err(_) => return 0,
    };
    for &p in &pids {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        let _ = kill(Pid::from_raw(p), Signal::SIGCONT);
    }
    pids.len()
}

/// PIDs currently registered (for tests and diagnostics).
pub fn registered_pids() -> Vec<i32> {
    registry()
        .lock()
        .map(|r| r.iter().copied().collect())
        .unwrap_or_default()
}

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Forks `cmd` on the long-lived spawner thread (see the module doc) and
/// registers the child's PID.
pub fn spawn_child(mut cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("harness-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("cannot start the spawner thread");
        Mutex::new(tx)
    });
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl and setpgid are async-signal-safe and touch no
        // memory of the parent; this runs between fork and exec.
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The harness died before prctl took effect: do not run.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                // A process group of its own: a Ctrl-C in the terminal
                // reaches the harness only, which stops the servers itself
                // (in order, after recording what it needs).
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let (rtx, rrx) = mpsc::channel();
    tx.lock()
        .map_err(|_| std::io::Error::other("spawner poisoned"))?
        .send((cmd, rtx))
        .map_err(|_| std::io::Error::other("spawner thread gone"))?;
    let child = rrx
        .recv()
        .map_err(|_| std::io::Error::other("spawner thread gone"))??;
    register(child.id() as i32);
    Ok(child)
}

/// What a replica process is doing, as far as the harness knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Running,
    /// SIGSTOPped.
    Paused,
    /// Killed or stopped; restartable on the same data dir.
    Down,
}

/// How to start the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub server_bin: PathBuf,
    pub replicas: usize,
    pub host: String,
    pub base_client_port: u16,
    pub base_paxos_port: u16,
    pub fail_rate: f64,
    pub read_mode: ReadMode,
    pub extra_flags: Vec<String>,
    /// Holds `n<i>/` data dirs and `n<i>.log` files.
    pub dir: PathBuf,
    /// Every node's whole command line (program first), for adapters whose
    /// nodes are not paxoskv's `server` (etcd, exec). None: `server_bin`
    /// with [`Cluster::server_args`].
    pub command_lines: Option<Vec<Vec<String>>>,
}

impl ClusterConfig {
    pub fn client_addr(&self, i: usize) -> String {
        format!("{}:{}", self.host, usize::from(self.base_client_port) + i)
    }
    pub fn paxos_addr(&self, i: usize) -> String {
        format!("{}:{}", self.host, usize::from(self.base_paxos_port) + i)
    }
}

/// One replica.
#[derive(Debug)]
pub struct Node {
    pub id: usize,
    /// Client-facing address (`my_addr`), also the node's name in histories.
    pub client_addr: String,
    pub paxos_addr: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub state: NodeState,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: u32,
}

impl Node {
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }
}

/// The replicas of one run.
#[derive(Debug)]
pub struct Cluster {
    pub config: ClusterConfig,
    pub nodes: Vec<Node>,
    /// `--peer-dial` values of each node (empty: the replicas dial each
    /// other directly); set to route the links through proxies
    /// ([`crate::net::Network::peer_dials`]).
    pub peer_dials: Vec<Vec<String>>,
    /// One lazyfs mount per node after [`Cluster::mount_lazyfs`] (dropped,
    /// hence unmounted, after the nodes are stopped).
    mounts: Vec<LazyMount>,
}

impl Cluster {
    /// Lays out the nodes (nothing started yet).
    pub fn new(config: ClusterConfig) -> Result<Cluster> {
        std::fs::create_dir_all(&config.dir)
            .with_context(|| format!("cannot create {}", config.dir.display()))?;
        let nodes = (0..config.replicas)
            .map(|i| Node {
                id: i,
                client_addr: config.client_addr(i),
                paxos_addr: config.paxos_addr(i),
                data_dir: config.dir.join(format!("n{i}")),
                log_path: config.dir.join(format!("n{i}.log")),
                state: NodeState::Down,
                child: None,
                starts: 0,
            })
            .collect();
        Ok(Cluster {
            config,
            nodes,
            peer_dials: Vec::new(),
            mounts: Vec::new(),
        })
    }

    /// Puts every node's data dir behind a lazyfs mount (see
    /// [`crate::lazyfs`]): the node runs on `<dir>/lazyfs/n<i>`, whose durable
    /// contents stay in its usual `n<i>/`. Call before starting any node.
    /// Fails, saying what is missing, where FUSE is not available.
    pub fn mount_lazyfs(&mut self) -> Result<()> {
        if !self.mounts.is_empty() {
            return Ok(());
        }
        crate::lazyfs::check_available()?;
        for i in 0..self.nodes.len() {
            let backing = self.nodes[i].data_dir.clone();
            let mountpoint = self.config.dir.join("lazyfs").join(format!("n{i}"));
            let mount = LazyMount::mount(&backing, &mountpoint)?;
            self.nodes[i].data_dir = mount.mountpoint().to_path_buf();
            self.mounts.push(mount);
        }
        Ok(())
    }

    /// Whether the nodes run on lazyfs mounts.
    pub fn on_lazyfs(&self) -> bool {
        !self.mounts.is_empty()
    }

    /// Drops what node `i` wrote and did not fsync (call it with the node
    /// down, as a crash would leave it).
    pub fn lose_unsynced(&mut self, i: usize) -> Result<Loss> {
        if self.nodes[i].child.is_some() {
            bail!("n{i} is running: kill it before dropping its unsynced writes");
        }
        let mount = self.mounts.get(i).ok_or_else(|| {
            anyhow!("n{i} does not run on lazyfs (Cluster::mount_lazyfs was not called)")
        })?;
        Ok(mount.lose_unsynced()?)
    }

    /// The `server` command line of node `i`.
    pub fn server_args(&self, i: usize) -> Vec<String> {
        let c = &self.config;
        let mut args = vec![
            "--my-addr".to_string(),
            c.client_addr(i),
            "--my-paxos".to_string(),
            c.paxos_addr(i),
        ];
        for r in 0..c.replicas {
            args.push("--replica".into());
            args.push(c.paxos_addr(r));
        }
        args.extend([
            "--fail-rate".to_string(),
            format!("{}", c.fail_rate),
            "--data-dir".to_string(),
            self.nodes[i].data_dir.display().to_string(),
            "--read-mode".to_string(),
            c.read_mode.as_str().to_string(),
        ]);
        for d in self.peer_dials.get(i).into_iter().flatten() {
            args.push("--peer-dial".into());
            args.push(d.clone());
        }
        args.extend(c.extra_flags.iter().cloned());
        args
    }

    /// Starts every node.
    pub fn start_all(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start(i)?;
        }
        Ok(())
    }

    /// Starts (or restarts) node `i` on its data dir, appending to its log.
    pub fn start(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].child.is_some() {
            bail!("n{i} is already running");
        }
        let (program, args) = match &self.config.command_lines {
            Some(lines) => {
                let line = lines
                    .get(i)
                    .filter(|l| !l.is_empty())
                    .ok_or_else(|| anyhow!("no command line for n{i}"))?;
                (PathBuf::from(&line[0]), line[1..].to_vec())
            }
            None => (self.config.server_bin.clone(), self.server_args(i)),
        };
        let node = &mut self.nodes[i];
        std::fs::create_dir_all(&node.data_dir)
            .with_context(|| format!("cannot create {}", node.data_dir.display()))?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .with_context(|| format!("cannot open {}", node.log_path.display()))?;
        let _ = writeln!(
            log,
            "=== harness: start #{} of n{i}: {} {}",
            node.starts + 1,
            program.display(),
            args.join(" ")
        );
        let err_log: File = log.try_clone()?;
        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log));
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let hint = if self.config.command_lines.is_some() {
            ""
        } else {
            " (use --server-bin to point at the server binary)"
        };
        let child = spawn_child(cmd)
            .with_context(|| format!("cannot start {}{hint}", program.display()))?;
        node.child = Some(child);
        node.state = NodeState::Running;
        node.starts += 1;
        Ok(())
    }

    fn signal(&self, i: usize, sig: Signal) -> Result<()> {
        let pid = self.nodes[i]
            .pid()
            .ok_or_else(|| anyhow!("n{i} is not running"))?;
        kill(Pid::from_raw(pid), sig)
            .with_context(|| format!("cannot send {sig} to n{i} (pid {pid})"))
    }

    /// SIGSTOP.
    pub fn pause(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].state != NodeState::Running {
            bail!("n{i} is not running");
        }
        self.signal(i, Signal::SIGSTOP)?;
        self.nodes[i].state = NodeState::Paused;
        Ok(())
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].state != NodeState::Paused {
            bail!("n{i} is not paused");
        }
        self.signal(i, Signal::SIGCONT)?;
        self.nodes[i].state = NodeState::Running;
        Ok(())
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let Some(mut child) = self.nodes[i].child.take() else {
            bail!("n{i} is not running");
        };
        let pid = child.id() as i32;
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = child.wait();
        unregister(pid);
        self.nodes[i].state = NodeState::Down;
        Ok(())
    }

    /// Clean stop: SIGCONT (if paused), SIGTERM, and SIGKILL after `grace`.
    pub fn stop(&mut self, i: usize, grace: Duration) {
        let Some(mut child) = self.nodes[i].child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let _ = kill(pid, Signal::SIGCONT);
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = kill(pid, Signal::SIGKILL);
                    let _ = child.wait();
                    break;
                }
            }
        }
        unregister(pid.as_raw());
        self.nodes[i].state = NodeState::Down;
    }

    /// Stops every node (SIGTERM, then SIGKILL after `grace`), in parallel.
    pub fn stop_all(&mut self, grace: Duration) {
        for n in &self.nodes {
            if let Some(pid) = n.pid() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
            }
        }
        for i in 0..self.nodes.len() {
            self.stop(i, grace);
        }
    }

    /// Whether node `i`'s process has exited on its own (crash); reaps it.
    pub fn check_exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let child = self.nodes[i].child.as_mut()?;
        match child.try_wait() {
            Ok(Some(st)) => {
                unregister(child.id() as i32);
                self.nodes[i].child = None;
                self.nodes[i].state = NodeState::Down;
                Some(st)
            }
            _ => None,
        }
    }

    /// Client addresses of every node.
    pub fn client_addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client_addr.clone()).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all(Duration::from_secs(2));
    }
}

/// Finds the `server` binary: `explicit` if given, else next to the running
/// executable (the same target dir), else its parent (for test binaries in
/// `target/debug/deps`).
pub fn find_server_bin(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("--server-bin {}: no such file", p.display());
    }
    let exe = std::env::current_exe().context("cannot locate the harness executable")?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let cand = d.join("server");
        if cand.is_file() {
            return Ok(cand);
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    bail!(
        "cannot find the `server` binary next to {} (build it with `cargo build -p server`, or pass --server-bin)",
        exe.display()
    )
}
