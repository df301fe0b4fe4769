//! Nodes on remote hosts, driven over SSH as Jepsen drives its nodes.
//!
//! With `cluster.hosts` in the workload, node `n<i>` runs on `hosts[i]`
//! instead of being a child of the harness:
//!
//! - [`ssh`]: one multiplexed connection per node through the system `ssh`
//!   (ControlMaster; `~/.ssh/config` applies), every command with a deadline
//!   (`cluster.ssh_timeout`), reconnecting with backoff when it drops;
//! - [`deploy`]: the directory the harness owns on each host and the `sh`
//!   scripts that prepare it, start a replica detached, signal it by PID and
//!   pack its files;
//! - [`iptables`]: partitions as iptables rules in a chain of the harness's
//!   own on each node.
//!
//! [`open`] connects to every host, claims and wipes the node's files there
//! (killing what a crashed harness left), uploads the `server` binary where
//! the host's copy differs (by SHA-256; `db: exec` uses the programs already
//! on the hosts), and returns a [`Db`] whose processes are a
//! [`RemoteCluster`]. Clients, the nemesis and the checker stay on the
//! control host; clients reach the nodes at `addr:port` directly. At the end
//! [`RemoteCluster::collect_files`] downloads every node's log and data dir
//! into the run's store dir, where local nodes keep theirs; `remote.json`
//! there records how long the deploy and the download took.

pub mod deploy;
pub mod iptables;
pub mod ssh;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::db::{Db, NodeFiles, NodeState, Processes};
use crate::workload::{DbSpec, FaultKind, Workload};
use deploy::Layout;
use iptables::{Firewall, FirewallNode};
use ssh::Session;

/// The owned dir on a host when `dir` is not given.
pub const DEFAULT_DIR: &str = "/tmp/paxoskv-harness";

/// One remote host (`cluster.hosts[i]`): a name (`n1.example`) or a map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_yaml::Value")]
pub struct HostSpec {
    /// What `ssh` connects to (a name of `~/.ssh/config` works).
    pub host: String,
    /// The address the replica listens on and the others reach it at;
    /// default: `host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The private key (`ssh -i`; a leading `~/` is the home dir).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
    /// Run iptables through `sudo -n` (when the login is not root).
    pub sudo: bool,
    /// The directory the harness owns on the host; default [`DEFAULT_DIR`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Extra `ssh -o` options (`StrictHostKeyChecking=accept-new`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh_options: Vec<String>,
}

/// The map form, strictly parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostFields {
    host: String,
    #[serde(default)]
    addr: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    identity: Option<PathBuf>,
    #[serde(default)]
    sudo: bool,
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    ssh_options: Vec<String>,
}

impl TryFrom<serde_yaml::Value> for HostSpec {
    type Error = String;

    fn try_from(v: serde_yaml::Value) -> Result<HostSpec, String> {
        if let serde_yaml::Value::String(host) = v {
            return Ok(HostSpec::named(&host));
        }
        let f: HostFields = serde_yaml::from_value(v).map_err(|e| format!("cluster.hosts: {e}"))?;
        // `~/` as ssh and shells read it.
        let identity = f
            .identity
            .map(|p| match (p.strip_prefix("~"), std::env::var_os("HOME")) {
                (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
                _ => p,
            });
        Ok(HostSpec {
            host: f.host,
            addr: f.addr,
            user: f.user,
            port: f.port,
            identity,
            sudo: f.sudo,
            dir: f.dir,
            ssh_options: f.ssh_options,
        })
    }
}

impl HostSpec {
    /// A host with every option at its default.
    pub fn named(host: &str) -> HostSpec {
        HostSpec {
            host: host.to_string(),
            addr: None,
            user: None,
            port: None,
            identity: None,
            sudo: false,
            dir: None,
            ssh_options: Vec::new(),
        }
    }

    /// `user@host:port`, for people.
    pub fn display(&self) -> String {
        let user = self
            .user
            .as_ref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("{user}{}{port}", self.host)
    }

    /// The node's address (`addr`, else `host`).
    pub fn addr(&self) -> &str {
        self.addr.as_deref().unwrap_or(&self.host)
    }

    /// The owned dir on the host.
    pub fn dir(&self) -> &str {
        self.dir.as_deref().unwrap_or(DEFAULT_DIR)
    }
}

/// A word that goes to `ssh` or a shell: no whitespace, no leading `-`.
fn plain_word(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('-') && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The fault kinds that work on remote hosts.
pub const REMOTE_FAULTS: &[FaultKind] = &[
    FaultKind::Pause,
    FaultKind::Kill,
    FaultKind::FailRate,
    FaultKind::Partition,
];

/// Checks `cluster.hosts` and what the workload asks of remote nodes;
/// Err: the field (dotted path) and what is wrong with it.
pub fn validate(w: &Workload) -> Result<(), (String, String)> {
    let hosts = &w.cluster.hosts;
    if hosts.is_empty() {
        return Ok(());
    }
    let n = w.cluster.replicas;
    if hosts.len() != n {
        return Err((
            "cluster.hosts".into(),
            format!(
                "{} hosts for {n} replicas: give one host per replica (node n<i> runs on hosts[i])",
                hosts.len()
            ),
        ));
    }
    for (i, h) in hosts.iter().enumerate() {
        let field = format!("cluster.hosts.{i}");
        let bad = |m: String| Err((field.clone(), m));
        if !plain_word(&h.host) {
            return bad(format!(
                "host {:?}: a host name or address, without spaces or a leading -",
                h.host
            ));
        }
        if let Some(a) = &h.addr {
            if !plain_word(a) {
                return bad(format!(
                    "addr {a:?}: an address without spaces or a leading -"
                ));
            }
        }
        if let Some(u) = &h.user {
            if !plain_word(u) || u.contains('@') {
                return bad(format!(
                    "user {u:?}: a login name without spaces, @ or a leading -"
                ));
            }
        }
        if h.port == Some(0) {
            return bad("port 0: give the SSH port (default 22)".into());
        }
        if let Some(id) = &h.identity {
            if !id.is_file() {
                return bad(format!("identity {}: no such file", id.display()));
            }
        }
        let dir = h.dir();
        if !dir.starts_with('/')
            || dir == "/"
            || dir.split('/').any(|c| c == "..")
            || dir
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '\'')
        {
            return bad(format!(
                "dir {dir:?}: an absolute directory other than /, without .., quotes or spaces"
            ));
        }
        for o in &h.ssh_options {
            if !o.contains('=') || o.starts_with('-') {
                return bad(format!(
                    "ssh_options: {o:?} is not an ssh option (Key=Value)"
                ));
            }
        }
    }
    if let DbSpec::Etcd(_) = w.db {
        return Err((
            "db".into(),
            "db: etcd does not run on remote hosts yet (cluster.hosts): use db: paxoskv or db: exec".into(),
        ));
    }
    for (k, f) in w.nemesis.iter().enumerate() {
        if !REMOTE_FAULTS.contains(&f.fault) {
            let kind = serde_yaml::to_string(&f.fault).unwrap_or_default();
            return Err((
                format!("nemesis.{k}.fault"),
                format!(
                    "fault {} does not run on remote hosts (cluster.hosts); they support pause, kill, fail-rate and partition",
                    kind.trim()
                ),
            ));
        }
    }
    if w.uses_network() {
        for i in 0..n {
            for j in 0..i {
                if hosts[i].addr() == hosts[j].addr() {
                    return Err((
                        format!("cluster.hosts.{i}"),
                        format!(
                            "n{i} and n{j} share the address {}: a partition cuts links between hosts, so each node needs its own",
                            hosts[i].addr()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// How long the remote phases took, written to `remote.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Connect, prepare, upload and firewall setup, in seconds.
    pub deploy_s: f64,
    /// The nodes whose binary was uploaded (the others had it).
    pub uploaded: Vec<String>,
    /// Downloading logs and data dirs, in seconds.
    pub collect_s: Option<f64>,
    /// Stale replicas of a crashed harness killed while preparing.
    pub stale_killed: Vec<String>,
}

/// One node on its host.
pub struct RemoteNode {
    pub session: Arc<Session>,
    pub layout: Layout,
    pub client_addr: String,
    /// The whole command line on the host (program first).
    pub argv: Vec<String>,
    /// Where its files land locally (after [`RemoteCluster::collect_files`]).
    pub files: NodeFiles,
    pub state: NodeState,
    /// The replica's PID and its wrapper's (the process group).
    pids: Option<(u32, u32)>,
    pub starts: u32,
}

impl RemoteNode {
    fn label(&self) -> &str {
        &self.session.name
    }
}

/// A poisoned lock is taken over: the state is plain data.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the replicas are still there, asked by a thread of its own so
/// that [`Processes::check_exited`] (called every 100 ms while the cluster
/// starts, under the procs lock that the nemesis and the clients' setup also
/// take) never waits for a round trip. The thread asks every host about once
/// a second, and only while someone asks it (within the last 3 s).
#[derive(Default)]
struct ExitWatch {
    /// The replica PID of each node (None: not running).
    pids: Mutex<Vec<Option<u32>>>,
    /// Of each node: the host's last answer.
    answers: Mutex<Vec<Option<Answer>>>,
    /// When [`Processes::check_exited`] last asked.
    wanted: Mutex<Option<Instant>>,
    stop: AtomicBool,
}

/// What a host said about its replica.
#[derive(Debug, Clone)]
struct Answer {
    at: Instant,
    pid: u32,
    /// `exit=...` and the end of the log ([`deploy::status`]) if it is gone.
    gone: Option<String>,
}

/// Asks `session`'s host about replica `pid`; None: no answer.
fn ask(session: &Session, layout: &Layout, pid: u32) -> Option<Answer> {
    let out = session.run("status", &deploy::status(layout, pid)).ok()?;
    Some(Answer {
        at: Instant::now(),
        pid,
        gone: out.starts_with("exit=").then_some(out),
    })
}

impl ExitWatch {
    /// Starts the watching thread over `nodes` (a session and layout each).
    fn spawn(self: &Arc<Self>, nodes: Vec<(Arc<Session>, Layout)>) {
        let watch = self.clone();
        *lock(&watch.answers) = vec![None; nodes.len()];
        let _ = std::thread::Builder::new()
            .name("remote-exit-watch".into())
            .spawn(move || {
                while !watch.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(200));
                    let wanted =
                        lock(&watch.wanted).is_some_and(|t| t.elapsed() < Duration::from_secs(3));
                    if !wanted {
                        continue;
                    }
                    let t0 = Instant::now();
                    let pids = lock(&watch.pids).clone();
                    let fresh = each(&nodes, |i, (session, layout)| {
                        ask(session, layout, (*pids.get(i)?)?)
                    });
                    let mut answers = lock(&watch.answers);
                    for (a, f) in answers.iter_mut().zip(fresh) {
                        if f.is_some() {
                            *a = f;
                        }
                    }
                    drop(answers);
                    std::thread::sleep(Duration::from_secs(1).saturating_sub(t0.elapsed()));
                }
            });
    }
}

/// The nodes of a run on remote hosts.
pub struct RemoteCluster {
    pub nodes: Vec<RemoteNode>,
    /// The run's store dir.
    dir: PathBuf,
    /// The control sockets (removed at the end).
    control_dir: PathBuf,
    firewall: Option<Arc<Firewall>>,
    pub timings: Timings,
    rust_log: String,
    /// Whether the replicas are still there, asked off the procs lock.
    watch: Arc<ExitWatch>,
}

/// The paxoskv `server` command line of node `i` (the binary at `bin`).
fn server_argv(w: &Workload, bin: &str, data_dir: &str, i: usize) -> Vec<String> {
    let c = &w.cluster;
    let at = |i: usize, base: u16| format!("{}:{}", c.hosts[i].addr(), usize::from(base) + i);
    let mut v = vec![
        bin.to_string(),
        "--my-addr".into(),
        at(i, c.base_client_port),
        "--my-paxos".into(),
        at(i, c.base_paxos_port),
    ];
    for r in 0..c.replicas {
        v.push("--replica".into());
        v.push(at(r, c.base_paxos_port));
    }
    v.extend([
        "--fail-rate".into(),
        format!("{}", c.fail_rate),
        "--data-dir".into(),
        data_dir.to_string(),
        "--read-mode".into(),
        c.read_mode.as_str().into(),
    ]);
    v.extend(c.server_flags.iter().cloned());
    v
}

/// Runs `f` on every item concurrently; the results in order.
fn each<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = items
            .iter()
            .enumerate()
            .map(|(i, t)| s.spawn(move || f(i, t)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("remote worker thread panicked"))
            .collect()
    })
}

/// The database of workload `w` on its remote hosts; `program` is the
/// local `server` binary (paxoskv, uploaded) or the exec start program;
/// `dir` is the run's store dir. Nodes are prepared, nothing is started.
pub fn open(w: &Workload, program: &Path, dir: &Path) -> Result<Db> {
    let t0 = Instant::now();
    let hosts = &w.cluster.hosts;
    let timeout = w.cluster.ssh_timeout.0;
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let control_dir = std::env::temp_dir().join(format!(
        "pkv-ssh-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&control_dir)
        .with_context(|| format!("cannot create {}", control_dir.display()))?;
    let layouts: Vec<Layout> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| Layout {
            base: h.dir().to_string(),
            name: format!("n{i}"),
        })
        .collect();
    // Connect to every host at once; every failure named.
    let sessions = each(hosts, |i, h| {
        Session::connect(
            format!("n{i} ({})", h.display()),
            h,
            &control_dir,
            &format!("n{i}"),
            timeout,
        )
    });
    let mut errors = Vec::new();
    let mut ok = Vec::new();
    for s in sessions {
        match s {
            Ok(s) => ok.push(Arc::new(s)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        drop(ok);
        let _ = std::fs::remove_dir_all(&control_dir);
        bail!("{}", errors.join("\n"));
    }
    let sessions = ok;
    let mut cluster = RemoteCluster {
        nodes: Vec::new(),
        dir: dir.to_path_buf(),
        control_dir,
        firewall: None,
        timings: Timings::default(),
        rust_log: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        watch: Arc::new(ExitWatch::default()),
    };
    let argvs: Vec<Vec<String>> = match &w.db {
        DbSpec::Paxoskv => layouts
            .iter()
            .enumerate()
            .map(|(i, l)| server_argv(w, &l.bin(), &l.data_dir(), i))
            .collect(),
        DbSpec::Exec(e) => {
            let p = exec_placement(w, &layouts);
            (0..hosts.len())
                .map(|i| crate::db::exec::command_line_at(&e.start, &p, i))
                .collect::<Result<_>>()?
        }
        DbSpec::Etcd(_) => bail!("db: etcd does not run on remote hosts yet"),
    };
    for (i, ((session, layout), argv)) in sessions.into_iter().zip(layouts).zip(argvs).enumerate() {
        cluster.nodes.push(RemoteNode {
            session,
            layout,
            client_addr: format!(
                "{}:{}",
                hosts[i].addr(),
                usize::from(w.cluster.base_client_port) + i
            ),
            argv,
            files: NodeFiles {
                data_dir: dir.join(format!("n{i}")),
                log_path: dir.join(format!("n{i}.log")),
            },
            state: NodeState::Down,
            pids: None,
            starts: 0,
        });
    }
    let upload = matches!(w.db, DbSpec::Paxoskv).then_some(program);
    cluster.prepare(hosts, upload)?;
    cluster.watch.spawn(
        cluster
            .nodes
            .iter()
            .map(|n| (n.session.clone(), n.layout.clone()))
            .collect(),
    );
    if w.uses_network() {
        let nodes = cluster
            .nodes
            .iter()
            .zip(hosts)
            .map(|(n, h)| FirewallNode {
                session: n.session.clone(),
                addr: h.addr().to_string(),
                sudo: h.sudo,
            })
            .collect();
        let fw = Firewall::setup(nodes).map_err(|e| {
            anyhow!("the workload partitions the nodes, which needs iptables on every host: {e}")
        })?;
        cluster.firewall = Some(Arc::new(fw));
    }
    cluster.timings.deploy_s = t0.elapsed().as_secs_f64();
    cluster.write_timings();
    let firewall = cluster.firewall.clone();
    let addrs: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.client_addr.clone())
        .collect();
    let api: Arc<dyn crate::db::Api> = match &w.db {
        DbSpec::Exec(e) => {
            let p = exec_placement(
                w,
                &cluster
                    .nodes
                    .iter()
                    .map(|n| n.layout.clone())
                    .collect::<Vec<_>>(),
            );
            let clients = (0..hosts.len())
                .map(|i| crate::db::exec::command_line_at(&e.client, &p, i))
                .collect::<Result<Vec<_>>>()?;
            Arc::new(crate::db::exec::ExecApi::new(
                addrs,
                clients,
                dir.join("exec-clients.log"),
            ))
        }
        _ => Arc::new(crate::db::paxoskv::PaxosKvApi { addrs }),
    };
    let mut db = Db::new(Box::new(cluster), api);
    db.firewall = firewall;
    Ok(db)
}

/// Where exec's placeholders point on remote hosts.
fn exec_placement(w: &Workload, layouts: &[Layout]) -> crate::db::exec::Placement {
    crate::db::exec::Placement {
        hosts: w
            .cluster
            .hosts
            .iter()
            .map(|h| h.addr().to_string())
            .collect(),
        dirs: layouts.iter().map(|l| l.data_dir()).collect(),
        base_client_port: w.cluster.base_client_port,
        base_paxos_port: w.cluster.base_paxos_port,
    }
}

impl RemoteCluster {
    /// Claims, cleans and (with `upload`) equips every node's host; kills
    /// leftovers of a crashed run, its iptables chain included.
    fn prepare(&mut self, hosts: &[crate::remote::HostSpec], upload: Option<&Path>) -> Result<()> {
        let local_sha = match upload {
            Some(p) => Some(
                ssh::local_sha256(p).with_context(|| format!("cannot checksum {}", p.display()))?,
            ),
            None => None,
        };
        let size = upload
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        let results = each(&self.nodes, |i, n| -> Result<(bool, Vec<String>)> {
            let out = n.session.run("prepare", &deploy::prepare(&n.layout))?;
            let uid = out
                .lines()
                .find_map(|l| l.strip_prefix("uid="))
                .unwrap_or("");
            let stale: Vec<String> = out
                .lines()
                .filter_map(|l| l.strip_prefix("stale="))
                .map(|p| format!("{} pid {p}", n.layout.name))
                .collect();
            if uid == "0" || hosts[i].sudo {
                // A partition of a crashed run may still be in force.
                n.session
                    .run("iptables cleanup", &iptables::teardown_script(uid != "0"))?;
            }
            let remote_sha = out.lines().find_map(|l| l.strip_prefix("sha="));
            let mut uploaded = false;
            if let (Some(p), Some(sha)) = (upload, &local_sha) {
                if remote_sha != Some(sha.as_str()) {
                    // 1 MB/s at least, on top of the command deadline.
                    let t = n.session.timeout() + Duration::from_secs(size / 1_000_000);
                    n.session.run_with(
                        "upload server",
                        &deploy::upload(&n.layout),
                        Some(p),
                        None,
                        t,
                    )?;
                    uploaded = true;
                }
            }
            Ok((uploaded, stale))
        });
        let mut errors = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok((up, stale)) => {
                    if up {
                        self.timings.uploaded.push(format!("n{i}"));
                    }
                    self.timings.stale_killed.extend(stale);
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        if !errors.is_empty() {
            bail!("{}", errors.join("\n"));
        }
        Ok(())
    }

    /// Writes `remote.json` into the run's dir.
    fn write_timings(&self) {
        let _ = std::fs::write(
            self.dir.join("remote.json"),
            serde_json::to_string_pretty(&self.timings).unwrap_or_default(),
        );
    }

    fn node(&self, i: usize) -> &RemoteNode {
        &self.nodes[i]
    }

    /// Tells the watcher which replica PID each node has now.
    fn sync_watch(&self) {
        *lock(&self.watch.pids) = self.nodes.iter().map(|n| n.pids.map(|p| p.0)).collect();
    }

    fn pids(&self, i: usize) -> Result<(u32, u32)> {
        self.nodes[i]
            .pids
            .ok_or_else(|| anyhow!("n{i} is not running"))
    }
}

impl RemoteNode {
    fn start(&mut self, rust_log: &str) -> Result<()> {
        if self.pids.is_some() {
            bail!("{} is already running", self.layout.name);
        }
        let script = deploy::start(&self.layout, &self.argv, self.starts + 1, rust_log);
        let out = self.session.run("start", &script)?;
        let num = |key: &str| -> Option<u32> {
            out.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse().ok())
        };
        let (Some(pid), Some(wpid)) = (num("pid="), num("wpid=")) else {
            bail!("{}: start printed no PIDs: {out:?}", self.label());
        };
        self.pids = Some((pid, wpid));
        self.state = NodeState::Running;
        self.starts += 1;
        Ok(())
    }

    fn stop(&mut self, grace: Duration) {
        let Some((pid, wpid)) = self.pids else {
            return;
        };
        let script = deploy::stop(&self.layout, pid, wpid, grace.as_millis() as u64);
        let t = self.session.timeout() + grace;
        if let Err(e) = self.session.run_with("stop", &script, None, None, t) {
            eprintln!("harness: {e}");
        }
        self.pids = None;
        self.state = NodeState::Down;
    }
}

impl Processes for RemoteCluster {
    fn node_count(&self) -> usize {
        self.nodes.len()
    }
    fn node_addr(&self, node: usize) -> String {
        self.node(node).client_addr.clone()
    }
    fn files(&self, node: usize) -> NodeFiles {
        self.node(node).files.clone()
    }
    fn state(&self, node: usize) -> NodeState {
        self.node(node).state
    }
    fn starts(&self, node: usize) -> u32 {
        self.node(node).starts
    }

    fn start(&mut self, i: usize) -> Result<()> {
        let rust_log = self.rust_log.clone();
        let r = self.nodes[i].start(&rust_log);
        self.sync_watch();
        r
    }

    /// Every node at once (each start is a round trip to its host).
    fn start_all(&mut self) -> Result<()> {
        let rust_log = self.rust_log.clone();
        let errors: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .nodes
                .iter_mut()
                .map(|n| s.spawn(|| n.start(&rust_log)))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| match h.join() {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(format!("{e:#}")),
                    Err(_) => Some("a start thread panicked".into()),
                })
                .collect()
        });
        self.sync_watch();
        if !errors.is_empty() {
            bail!("{}", errors.join("\n"));
        }
        Ok(())
    }

    fn stop(&mut self, node: usize, grace: Duration) {
        self.nodes[node].stop(grace);
        self.sync_watch();
    }

    fn kill(&mut self, i: usize) -> Result<()> {
        let (pid, wpid) = self.pids(i)?;
        let n = &mut self.nodes[i];
        n.session.run("kill", &deploy::kill(&n.layout, pid, wpid))?;
        n.pids = None;
        n.state = NodeState::Down;
        self.sync_watch();
        Ok(())
    }

    fn pause(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].state != NodeState::Running {
            bail!("n{i} is not running");
        }
        let (pid, _) = self.pids(i)?;
        self.nodes[i]
            .session
            .run("pause", &deploy::signal(pid, "STOP"))?;
        self.nodes[i].state = NodeState::Paused;
        Ok(())
    }

    fn resume(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].state != NodeState::Paused {
            bail!("n{i} is not paused");
        }
        let (pid, _) = self.pids(i)?;
        self.nodes[i]
            .session
            .run("resume", &deploy::signal(pid, "CONT"))?;
        self.nodes[i].state = NodeState::Running;
        Ok(())
    }

    /// What the watcher heard from the node's host in the last 2 s
    /// ([`ExitWatch`]), so that the startup's polling never waits for a
    /// round trip under the procs lock; a one-off question (after the heal)
    /// asks the host. When the replica is gone, its recorded exit status, and
    /// the end of its log lands in the local log file (for the report).
    fn check_exited(&mut self, i: usize) -> Option<ExitStatus> {
        let (pid, _) = self.nodes[i].pids?;
        *lock(&self.watch.wanted) = Some(Instant::now());
        let cached = lock(&self.watch.answers)
            .get(i)
            .cloned()
            .flatten()
            .filter(|a| a.pid == pid && a.at.elapsed() < Duration::from_secs(2));
        let answer = match cached {
            Some(a) => a,
            None => {
                let n = &self.nodes[i];
                let a = ask(&n.session, &n.layout, pid)?;
                if let Some(slot) = lock(&self.watch.answers).get_mut(i) {
                    *slot = Some(a.clone());
                }
                a
            }
        };
        let out = answer.gone?;
        let n = &mut self.nodes[i];
        let rest = out.strip_prefix("exit=")?;
        let (code, log) = rest.split_once('\n').unwrap_or((rest, ""));
        let _ = std::fs::write(&n.files.log_path, log);
        n.pids = None;
        n.state = NodeState::Down;
        self.sync_watch();
        let code: i32 = code.trim().parse().unwrap_or(255);
        Some(if code > 128 && code < 160 {
            ExitStatus::from_raw(code - 128)
        } else {
            ExitStatus::from_raw((code & 0xff) << 8)
        })
    }

    fn stop_all(&mut self, grace: Duration) {
        std::thread::scope(|s| {
            for n in self.nodes.iter_mut() {
                s.spawn(move || n.stop(grace));
            }
        });
        self.sync_watch();
    }

    /// Downloads every node's log and data dir (a tar over SSH) into the
    /// run's dir, concurrently.
    fn collect_files(&mut self) -> Result<()> {
        let t0 = Instant::now();
        let dir = self.dir.clone();
        let results = each(&self.nodes, |_, n| -> Result<()> {
            let tar = dir.join(format!("{}.tar", n.layout.name));
            let t = n.session.timeout() * 6;
            n.session.run_with(
                "download files",
                &deploy::pack(&n.layout),
                None,
                Some(&tar),
                t,
            )?;
            let _ = std::fs::remove_dir_all(&n.files.data_dir);
            let out = std::process::Command::new("tar")
                .arg("-xf")
                .arg(&tar)
                .arg("-C")
                .arg(&dir)
                .output()
                .context("cannot run tar")?;
            let _ = std::fs::remove_file(&tar);
            if !out.status.success() {
                bail!(
                    "{}: cannot unpack its files: {}",
                    n.label(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(())
        });
        self.timings.collect_s = Some(t0.elapsed().as_secs_f64());
        self.write_timings();
        let errors: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err().map(|e| format!("{e:#}")))
            .collect();
        if !errors.is_empty() {
            bail!("{}", errors.join("\n"));
        }
        Ok(())
    }
}

impl Drop for RemoteCluster {
    fn drop(&mut self) {
        self.watch
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop_all(Duration::from_secs(2));
        if let Some(fw) = &self.firewall {
            for e in fw.teardown() {
                eprintln!("harness: {e}");
            }
        }
        for n in &self.nodes {
            n.session.close();
        }
        let _ = std::fs::remove_dir_all(&self.control_dir);
    }
}

#[cfg(test)]
mod tests {
    use crate::workload::{Workload, WorkloadError};

    fn parse(yaml: &str) -> Result<Workload, WorkloadError> {
        Workload::parse(yaml, "w.yaml")
    }

    fn invalid(yaml: &str) -> String {
        match parse(yaml) {
            Err(e @ WorkloadError::Invalid { .. }) | Err(e @ WorkloadError::Parse { .. }) => {
                e.to_string()
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    const THREE: &str = "duration: 5s\ncluster:\n  replicas: 3\n  hosts:\n    - a.example\n    - host: b.example\n      user: admin\n      port: 2222\n      sudo: true\n      dir: /var/tmp/pkv\n    - {host: c.example, addr: 10.0.0.3}\n";

    #[test]
    fn hosts_parse_as_names_or_maps() {
        let w = parse(THREE).unwrap();
        let h = &w.cluster.hosts;
        assert_eq!(h[0].host, "a.example");
        assert_eq!(h[0].dir(), super::DEFAULT_DIR);
        assert_eq!(h[1].display(), "admin@b.example:2222");
        assert!(h[1].sudo);
        assert_eq!(h[1].dir(), "/var/tmp/pkv");
        assert_eq!(h[2].addr(), "10.0.0.3");
        // The workload as run keeps them.
        let again = parse(&w.to_yaml()).unwrap();
        assert_eq!(again.cluster.hosts, w.cluster.hosts);
        // No hosts: local processes, as before.
        assert!(parse("duration: 5s\n").unwrap().cluster.hosts.is_empty());
    }

    #[test]
    fn bad_hosts_are_errors_naming_the_entry() {
        let e = invalid("duration: 5s\ncluster:\n  replicas: 3\n  hosts: [a, b]\n");
        assert!(
            e.contains("`cluster.hosts`") && e.contains("2 hosts for 3 replicas"),
            "{e}"
        );
        let e = invalid("duration: 5s\ncluster:\n  replicas: 1\n  hosts:\n    - host: a\n      identity: /nonexistent/key\n");
        assert!(
            e.contains("cluster.hosts.0") && e.contains("/nonexistent/key: no such file"),
            "{e}"
        );
        assert!(e.contains("w.yaml:5"), "{e}");
        let e = invalid("duration: 5s\ncluster:\n  replicas: 1\n  hosts:\n    - host: a\n      dir: relative/dir\n");
        assert!(e.contains("an absolute directory"), "{e}");
        let e = invalid(
            "duration: 5s\ncluster:\n  replicas: 1\n  hosts:\n    - host: a\n      dir: /\n",
        );
        assert!(e.contains("an absolute directory other than /"), "{e}");
        let e = invalid("duration: 5s\ncluster:\n  replicas: 1\n  hosts: [\"-oProxyCommand=x\"]\n");
        assert!(e.contains("leading -"), "{e}");
        let e = invalid(
            "duration: 5s\ncluster:\n  replicas: 1\n  hosts:\n    - host: a\n      port: 0\n",
        );
        assert!(e.contains("port 0"), "{e}");
        let e = invalid(
            "duration: 5s\ncluster:\n  replicas: 1\n  hosts:\n    - host: a\n      prot: 22\n",
        );
        assert!(e.contains("unknown field `prot`"), "{e}");
        let e = invalid("duration: 5s\ncluster:\n  replicas: 1\n  hosts:\n    - host: a\n      ssh_options: [-v]\n");
        assert!(e.contains("Key=Value"), "{e}");
    }

    #[test]
    fn what_remote_hosts_cannot_do_is_refused_when_read() {
        let hosts = "cluster:\n  replicas: 2\n  hosts: [a, b]\n";
        let e = invalid(&format!("duration: 5s\ndb: etcd\n{hosts}"));
        assert!(e.contains("db: etcd does not run on remote hosts"), "{e}");
        let e = invalid(&format!(
            "duration: 5s\n{hosts}nemesis:\n  - fault: delay\n    latency: 50ms\n    duration: 1s\n"
        ));
        assert!(
            e.contains("`nemesis.0.fault`")
                && e.contains("fault delay does not run on remote hosts"),
            "{e}"
        );
        let e = invalid(&format!(
            "duration: 5s\n{hosts}nemesis:\n  - fault: lose-unsynced\n    duration: 1s\n"
        ));
        assert!(
            e.contains("lose-unsynced does not run on remote hosts"),
            "{e}"
        );
        let same = "cluster:\n  replicas: 2\n  hosts: [a, {host: b, addr: a}]\n";
        let e = invalid(&format!(
            "duration: 5s\n{same}nemesis:\n  - fault: partition\n    duration: 1s\n"
        ));
        assert!(e.contains("share the address a"), "{e}");
        // Without a partition, two nodes may share a host.
        parse(&format!(
            "duration: 5s\n{same}nemesis:\n  - fault: kill\n    duration: 1s\n"
        ))
        .unwrap();
    }
}
