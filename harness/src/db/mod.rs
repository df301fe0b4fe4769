//! The database seam: what the harness needs from a system under test.
//!
//! Two small traits, in the shape of Jepsen's `db.clj` capabilities:
//!
//! - [`Processes`]: each node is an OS process with its own data dir and log
//!   ([`NodeFiles`]); the harness starts, stops, kills (SIGKILL), pauses
//!   (SIGSTOP) and resumes (SIGCONT) it and restarts it on the same data dir.
//!   Synchronous, behind one lock ([`Db::procs`]).
//! - [`Api`]: what the harness asks the running system over its own API: wait
//!   until it serves, who leads, a [`DbClient`] bound to one node that runs
//!   one op and classifies it `:ok` / `:fail` / `:info` ([`Completion`]), and
//!   the per-node state for the convergence check. Optional powers
//!   ([`Api::set_fail_rate`]) answer "not supported" by default, so a fault
//!   that needs one is simply not available for that database.
//!
//! An adapter is one file implementing both ([`paxoskv`], [`etcd`], [`exec`]) plus one
//! variant of the workload's `db:` ([`DbSpec`], matched in [`open`]); [`Db`]
//! bundles them for the run, the nemesis and the final phase.

pub mod etcd;
pub mod exec;
pub mod paxoskv;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Result;

use crate::history::{OpType, Value};
use crate::net::Network;
use crate::workload::{DbSpec, Workload};

pub use crate::cluster::NodeState;

/// A boxed future, so that the traits stay object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a node keeps its files.
#[derive(Debug, Clone)]
pub struct NodeFiles {
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
}

/// The nodes of a database as OS processes (Jepsen's `DB`, `Kill`, `Pause`,
/// `LogFiles`). Nodes are numbered `0..node_count()` and named `n<i>`.
pub trait Processes: Send {
    fn node_count(&self) -> usize;
    /// The node's client address: its name in histories (`:node`).
    fn node_addr(&self, node: usize) -> String;
    fn files(&self, node: usize) -> NodeFiles;
    fn state(&self, node: usize) -> NodeState;
    /// Times the node was started (1 + restarts).
    fn starts(&self, node: usize) -> u32;
    /// Starts (or restarts) the node on its data dir.
    fn start(&mut self, node: usize) -> Result<()>;
    /// Clean stop: SIGTERM, SIGKILL after `grace`.
    fn stop(&mut self, node: usize, grace: Duration);
    /// SIGKILL, and reap.
    fn kill(&mut self, node: usize) -> Result<()>;
    /// SIGSTOP.
    fn pause(&mut self, node: usize) -> Result<()>;
    /// SIGCONT.
    fn resume(&mut self, node: usize) -> Result<()>;
    /// Whether the node's process exited on its own (a crash); reaps it.
    fn check_exited(&mut self, node: usize) -> Option<ExitStatus>;

    /// Whether the nodes' data dirs are lazyfs mounts ([`crate::lazyfs`]),
    /// which [`Processes::lose_unsynced`] needs.
    fn on_lazyfs(&self) -> bool {
        false
    }
    /// Drops what the node (stopped) wrote and did not fsync.
    fn lose_unsynced(&mut self, node: usize) -> Result<crate::lazyfs::Loss> {
        let _ = node;
        anyhow::bail!("this database does not run on lazyfs")
    }
    /// Where the records of the node's durable state lie in its data dir
    /// (of a stopped node), for the `corrupt` fault.
    fn durable_records(&self, node: usize) -> Result<Vec<RecordSpan>> {
        let _ = node;
        anyhow::bail!("this database does not list the records of its data dir")
    }

    /// Brings every node's log and data dir to [`Processes::files`], with
    /// the nodes stopped: remote nodes download them
    /// ([`crate::remote::RemoteCluster`]); local ones have them there.
    fn collect_files(&mut self) -> Result<()> {
        Ok(())
    }

    fn start_all(&mut self) -> Result<()> {
        for i in 0..self.node_count() {
            self.start(i)?;
        }
        Ok(())
    }

    fn stop_all(&mut self, grace: Duration) {
        for i in 0..self.node_count() {
            self.stop(i, grace);
        }
    }
}

/// One record (or header) of a node's durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSpan {
    pub file: PathBuf,
    /// Offset of its first byte in `file`.
    pub offset: u64,
    pub len: u64,
    /// What it holds, for people (`WAL record 17`).
    pub what: String,
    /// Damage here is indistinguishable from a write torn by a crash (the
    /// last record of the log): the database may drop it rather than refuse.
    pub tail: bool,
}

/// A node's state as its API reports it, for the convergence check.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    pub role: String,
    pub applied_index: u64,
    pub commit_index: u64,
    /// Digest of the applied state: equal applied indexes and different
    /// digests mean the replicas diverged.
    pub digest: u64,
}

/// The outcome of one op, ready to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// `:ok`, `:fail` (surely not applied) or `:info` (unknown).
    pub kind: OpType,
    pub value: Value,
    pub error: Option<String>,
    /// What the key holds afterwards, if known (for the generator).
    pub observed: Option<Option<String>>,
}

/// A client bound to one node: one op at a time.
pub trait DbClient: Send {
    /// Runs one op within `timeout` and classifies its outcome.
    fn invoke<'a>(&'a mut self, op: &'a client::Op, timeout: Duration)
        -> BoxFuture<'a, Completion>;
    /// Forgets the session (after an `:info`, the worker continues as a
    /// fresh process).
    fn new_session(&mut self);
}

/// What the harness asks the running database.
pub trait Api: Send + Sync {
    /// Waits until every node serves and agrees on a leader (or, without a
    /// leader, answers); returns the leader's index.
    fn wait_ready(&self, timeout: Duration) -> BoxFuture<'_, Result<usize>>;
    /// The current leader, asking only the nodes marked `up` (the others
    /// cannot answer); None if none is known.
    fn leader(&self, up: Vec<bool>, timeout: Duration) -> BoxFuture<'_, Option<usize>>;
    /// A client of `node`.
    fn client(&self, node: usize, connect_timeout: Duration) -> Result<Box<dyn DbClient>>;
    /// Every node's state (None: no answer), for the convergence check.
    fn statuses(&self, timeout: Duration) -> BoxFuture<'_, Vec<Option<NodeStatus>>>;
    /// Whether [`Api::statuses`] reports digests of the applied state, so
    /// that the final phase can wait for the replicas to converge (paxoskv);
    /// other systems are checked by the final reads through every node.
    fn converges_by_digest(&self) -> bool {
        false
    }
    /// Sets a node's fault-injection rate (paxoskv's acceptor fail_rate).
    fn set_fail_rate(
        &self,
        node: usize,
        rate: f64,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<()>> {
        let _ = (node, rate, timeout);
        Box::pin(async { anyhow::bail!("this database has no fail_rate") })
    }
}

/// A database under test: its processes (behind one lock) and its API.
#[derive(Clone)]
pub struct Db {
    pub procs: Arc<Mutex<Box<dyn Processes>>>,
    pub api: Arc<dyn Api>,
    /// The link proxies between the nodes, if the adapter started the
    /// nodes behind them (for network faults).
    pub network: Option<Arc<Network>>,
    /// The iptables rules on remote nodes, if the nodes run on hosts of
    /// `cluster.hosts` and the workload partitions them.
    pub firewall: Option<Arc<crate::remote::iptables::Firewall>>,
}

impl Db {
    pub fn new(procs: Box<dyn Processes>, api: Arc<dyn Api>) -> Db {
        Db {
            procs: Arc::new(Mutex::new(procs)),
            api,
            network: None,
            firewall: None,
        }
    }

    /// The link proxies, if the nodes talk through them.
    pub fn network(&self) -> Option<&Network> {
        self.network.as_deref()
    }

    /// The processes (a poisoned lock is taken over: the state is plain data).
    pub fn procs(&self) -> MutexGuard<'_, Box<dyn Processes>> {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn node_count(&self) -> usize {
        self.procs().node_count()
    }

    /// Client addresses of every node.
    pub fn addrs(&self) -> Vec<String> {
        let p = self.procs();
        (0..p.node_count()).map(|i| p.node_addr(i)).collect()
    }

    pub fn states(&self) -> Vec<NodeState> {
        let p = self.procs();
        (0..p.node_count()).map(|i| p.state(i)).collect()
    }

    /// Downloads the nodes' files ([`Processes::collect_files`]), off the
    /// async threads.
    pub async fn collect_files(&self) -> Result<()> {
        let procs = self.procs.clone();
        tokio::task::spawn_blocking(move || {
            procs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .collect_files()
        })
        .await
        .map_err(|e| anyhow::anyhow!("collecting the nodes' files: {e}"))?
    }

    /// Stops every node, off the async threads.
    pub async fn stop_all(&self, grace: Duration) {
        let procs = self.procs.clone();
        let _ = tokio::task::spawn_blocking(move || {
            procs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .stop_all(grace)
        })
        .await;
    }
}

/// The program that runs a node of `db`: paxoskv's `server` (`explicit`, or
/// found next to the harness), the `etcd` binary. A clear error if missing.
pub fn find_program(db: &DbSpec, explicit: Option<&Path>) -> Result<PathBuf> {
    match db {
        DbSpec::Paxoskv => crate::cluster::find_server_bin(explicit),
        DbSpec::Etcd(e) => etcd::find_etcd(e.bin.as_deref()),
        DbSpec::Exec(e) => exec::find_program(e),
    }
}

/// The database of workload `w` (its `db:`), laid out in the run's dir
/// `dir` (on the hosts of `cluster.hosts`, if any: [`crate::remote`]);
/// nothing is started yet. `program` is [`find_program`]'s answer.
pub fn open(w: &Workload, program: &Path, dir: &Path) -> Result<Db> {
    if !w.cluster.hosts.is_empty() {
        return crate::remote::open(w, program, dir);
    }
    match &w.db {
        DbSpec::Paxoskv => paxoskv::open(w, program, dir),
        DbSpec::Etcd(e) => etcd::open(w, e, program, dir),
        DbSpec::Exec(e) => exec::open(w, e, dir),
    }
}
