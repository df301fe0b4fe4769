//! The etcd adapter of the database seam: `etcd` 3.4 members as OS processes
//! (managed by [`Cluster`], like paxoskv's servers), clients over etcd's v3
//! gRPC API (the part of it in `harness/proto/etcd.proto`).
//!
//! Member `n<i>` serves clients on `cluster.host:base_client_port + i` and
//! its peers on `base_paxos_port + i`, keeps its data dir `n<i>/` and its
//! log `n<i>.log` in the run's dir. Without network faults the members talk
//! to each other directly. With them, every member still listens on its
//! real peer port but advertises (in `--initial-advertise-peer-urls` and in
//! the one `--initial-cluster` every member gets, whose hash is the cluster
//! ID) the address of its inbound proxy, `base_proxy_port + i`
//! ([`crate::net::inbound`]); the proxy learns which member dialled each
//! connection from `/proc` (by the member's `--data-dir=` argument,
//! [`crate::net::ProcDialers`]) and applies the links' rules per direction.
//!
//! Ops (as etcd transactions where one request is not enough):
//!
//! - GET: a Range, `linearizable` (etcd's default, a ReadIndex round) or
//!   `serializable` (the member's local state) per `db.etcd.read_mode`;
//! - PUT: a Put; DELETE: a DeleteRange;
//! - CAS: a Txn: if the value equals the expected one (or, expecting absent,
//!   the key's version is 0) put the new value, else read the key;
//! - APPEND: a linearizable Range, then a Txn that puts old value + suffix if
//!   the key's mod_revision (or, absent, version 0) is still the one read;
//!   retried while another write got in between and time remains.
//!
//! Outcomes ([`write_outcome`]): a read that fails changed nothing, `:fail`.
//! A write is `:fail` when nothing was sent (the connection was refused) or
//! etcd rejected it before proposing it (its INVALID_ARGUMENT,
//! FAILED_PRECONDITION, OUT_OF_RANGE, RESOURCE_EXHAUSTED, auth errors), and
//! `:info` otherwise: a timeout after it was sent, and etcd's UNAVAILABLE
//! errors ("request timed out", "leader changed", "no leader"), which it
//! documents as outcome unknown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use client::Op;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use super::{Api, BoxFuture, Completion, Db, DbClient, NodeStatus};
use crate::cluster::{Cluster, ClusterConfig};
use crate::generator::HistoryOp;
use crate::history::OpType;
use crate::net::{Network, ProcDialers};
use crate::workload::{EtcdReadMode, EtcdSpec, Workload};

/// The generated client code of `harness/proto/etcd.proto`.
pub mod pb {
    tonic::include_proto!("etcdserverpb");
}

use pb::kv_client::KvClient;
use pb::maintenance_client::MaintenanceClient;

/// What to say when etcd is missing.
pub const INSTALL_HINT: &str =
    "install it (Debian/Ubuntu: apt-get install etcd-server etcd-client) or set db.etcd.bin";

/// The etcd binary: `explicit` (`db.etcd.bin`) if given, else `etcd` on PATH.
pub fn find_etcd(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("db.etcd.bin {}: no such file", p.display());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let cand = dir.join("etcd");
        if cand.is_file() {
            return Ok(cand);
        }
    }
    bail!("cannot find `etcd` on PATH: {INSTALL_HINT}")
}

/// The etcd cluster of workload `w`, laid out in `dir` (nothing started).
pub fn open(w: &Workload, spec: &EtcdSpec, etcd_bin: &Path, dir: &Path) -> Result<Db> {
    let c = &w.cluster;
    let config = ClusterConfig {
        server_bin: etcd_bin.to_path_buf(),
        replicas: c.replicas,
        host: c.host.clone(),
        base_client_port: c.base_client_port,
        base_paxos_port: c.base_paxos_port,
        fail_rate: 0.0,
        read_mode: c.read_mode,
        extra_flags: spec.flags.clone(),
        dir: dir.to_path_buf(),
        command_lines: None,
    };
    // Network faults: each member's peers reach it through its inbound
    // proxy (binds every proxy port now: one in use fails before any member
    // starts).
    let network = if w.uses_network() {
        let real: Vec<String> = (0..c.replicas).map(|i| config.paxos_addr(i)).collect();
        let markers = (0..c.replicas).map(|i| data_dir_flag(&config, i)).collect();
        let net =
            Network::start_inbound(&c.host, c.base_proxy_port, &real, ProcDialers::new(markers))?;
        Some(Arc::new(net))
    } else {
        None
    };
    let advertised: Vec<String> = (0..c.replicas)
        .map(|i| match &network {
            Some(net) => net
                .inbound_addr(i)
                .map(|a| a.to_string())
                .expect("one inbound proxy per member"),
            None => config.paxos_addr(i),
        })
        .collect();
    let lines = (0..c.replicas)
        .map(|i| command_line(&config, i, &advertised, w.seed.unwrap_or(0)))
        .collect();
    let config = ClusterConfig {
        command_lines: Some(lines),
        ..config
    };
    let cluster = Cluster::new(config)?;
    // etcd wants its data dir private.
    for n in &cluster.nodes {
        create_private_dir(&n.data_dir)?;
    }
    let api = EtcdApi {
        addrs: cluster.client_addrs(),
        read_mode: spec.read_mode,
    };
    let mut db = Db::new(Box::new(cluster), Arc::new(api));
    db.network = network;
    Ok(db)
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Member `i`'s `--data-dir=` argument: unique to the run, so it also tells
/// the member's process apart ([`ProcDialers`]).
fn data_dir_flag(c: &ClusterConfig, i: usize) -> String {
    format!("--data-dir={}", c.dir.join(format!("n{i}")).display())
}

/// The command line of member `i`, whose peers reach member `r` at
/// `advertised[r]` (its real peer address, or its proxy's). The same on
/// every (re)start: etcd ignores the `--initial-*` flags once its data dir
/// holds a member.
pub fn command_line(c: &ClusterConfig, i: usize, advertised: &[String], seed: u64) -> Vec<String> {
    let url = |addr: &str| format!("http://{addr}");
    let initial_cluster: Vec<String> = advertised
        .iter()
        .enumerate()
        .map(|(r, a)| format!("n{r}={}", url(a)))
        .collect();
    let mut line = vec![c.server_bin.display().to_string(), data_dir_flag(c, i)];
    let flags = [
        ("--name", format!("n{i}")),
        ("--listen-client-urls", url(&c.client_addr(i))),
        ("--advertise-client-urls", url(&c.client_addr(i))),
        ("--listen-peer-urls", url(&c.paxos_addr(i))),
        ("--initial-advertise-peer-urls", url(&advertised[i])),
        ("--initial-cluster", initial_cluster.join(",")),
        ("--initial-cluster-state", "new".into()),
        ("--initial-cluster-token", format!("harness-{seed}")),
        ("--logger", "zap".into()),
        ("--log-outputs", "stderr".into()),
    ];
    for (flag, value) in flags {
        line.push(format!("{flag}={value}"));
    }
    line.extend(c.extra_flags.iter().cloned());
    line
}

/// etcd's API, as the harness asks it.
pub struct EtcdApi {
    /// Client addresses, by node.
    pub addrs: Vec<String>,
    pub read_mode: EtcdReadMode,
}

fn channel(addr: &str, connect_timeout: Duration) -> Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .with_context(|| format!("bad address {addr}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

/// Maintenance Status of one member, within `timeout`.
pub async fn member_status(addr: &str, timeout: Duration) -> Result<pb::StatusResponse> {
    let mut m = MaintenanceClient::new(channel(addr, timeout)?);
    match tokio::time::timeout(timeout, m.status(pb::StatusRequest {})).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => bail!("status of {addr}: {}", s.message()),
        Err(_) => bail!("status of {addr}: no answer within {timeout:?}"),
    }
}

/// Statuses of the given members, queried concurrently (None: no answer).
pub async fn member_statuses(
    addrs: &[String],
    timeout: Duration,
) -> Vec<Option<pb::StatusResponse>> {
    let handles: Vec<_> = addrs
        .iter()
        .cloned()
        .map(|a| tokio::spawn(async move { member_status(&a, timeout).await.ok() }))
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.ok().flatten());
    }
    out
}

fn member_id(s: &pb::StatusResponse) -> u64 {
    s.header.as_ref().map_or(0, |h| h.member_id)
}

/// Who leads, according to the answering members: one that says it leads
/// (the highest raft term if several do), else the member most name.
pub fn leader_of(statuses: &[Option<pb::StatusResponse>]) -> Option<usize> {
    let index_of = |id: u64| {
        statuses
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| id != 0 && member_id(s) == id))
    };
    let self_named = statuses
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
        .filter(|(_, s)| s.leader != 0 && s.leader == member_id(s))
        .max_by_key(|(_, s)| s.raft_term)
        .map(|(i, _)| i);
    if self_named.is_some() {
        return self_named;
    }
    let mut votes = std::collections::BTreeMap::new();
    for s in statuses.iter().flatten() {
        if s.leader != 0 {
            *votes.entry(s.leader).or_insert(0usize) += 1;
        }
    }
    votes
        .into_iter()
        .max_by_key(|&(_, v)| v)
        .and_then(|(id, _)| index_of(id))
}

impl Api for EtcdApi {
    fn wait_ready(&self, timeout: Duration) -> BoxFuture<'_, Result<usize>> {
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            loop {
                let st = member_statuses(&self.addrs, Duration::from_millis(500)).await;
                let answering = st.iter().filter(|s| s.is_some()).count();
                let leaders: std::collections::BTreeSet<u64> =
                    st.iter().flatten().map(|s| s.leader).collect();
                let last = match leader_of(&st) {
                    Some(l) if answering == st.len() && leaders.len() == 1 => return Ok(l),
                    Some(l) => format!(
                        "n{l} leads, {answering}/{} members answer, leaders named: {leaders:x?}",
                        st.len()
                    ),
                    None => format!("{answering}/{} members answer, no leader", st.len()),
                };
                if Instant::now() >= deadline {
                    bail!("etcd not ready after {timeout:?}: {last}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    fn leader(&self, up: Vec<bool>, timeout: Duration) -> BoxFuture<'_, Option<usize>> {
        Box::pin(async move {
            let asked: Vec<String> = self
                .addrs
                .iter()
                .zip(&up)
                .map(|(a, &up)| if up { a.clone() } else { "127.0.0.1:1".into() })
                .collect();
            leader_of(&member_statuses(&asked, timeout).await)
        })
    }

    fn client(&self, node: usize, connect_timeout: Duration) -> Result<Box<dyn DbClient>> {
        Ok(Box::new(EtcdClient {
            kv: KvClient::new(channel(&self.addrs[node], connect_timeout)?),
            serializable: self.read_mode == EtcdReadMode::Serializable,
        }))
    }

    fn statuses(&self, timeout: Duration) -> BoxFuture<'_, Vec<Option<NodeStatus>>> {
        Box::pin(async move {
            let st = member_statuses(&self.addrs, timeout).await;
            st.iter()
                .map(|s| {
                    s.as_ref().map(|s| NodeStatus {
                        role: if s.leader != 0 && s.leader == member_id(s) {
                            "leader".into()
                        } else {
                            "follower".into()
                        },
                        applied_index: s.raft_applied_index,
                        commit_index: s.raft_index,
                        // etcd reports no digest of its state.
                        digest: 0,
                    })
                })
                .collect()
        })
    }
}

/// Why a call got no answer.
#[derive(Debug)]
enum CallError {
    /// No answer before the op's deadline (the request may have been sent).
    Timeout(Duration),
    Status(tonic::Status),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout(d) => write!(f, "timeout after {d:?}"),
            CallError::Status(s) if paxoskv::refused_before_sending(s) => {
                write!(f, "cannot connect: {}", s.message())
            }
            CallError::Status(s) => write!(f, "{:?}: {}", s.code(), s.message()),
        }
    }
}

/// The outcome of a write that got `e` instead of an answer (see the module
/// doc): `:fail` when it surely was not applied, else `:info`.
fn write_outcome(e: &CallError) -> OpType {
    match e {
        CallError::Timeout(_) => OpType::Info,
        CallError::Status(s) if paxoskv::refused_before_sending(s) => OpType::Fail,
        CallError::Status(s) => match s.code() {
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::ResourceExhausted
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::Unimplemented
            | Code::NotFound
            | Code::AlreadyExists => OpType::Fail,
            _ => OpType::Info,
        },
    }
}

/// A client of one member.
pub struct EtcdClient {
    kv: KvClient<Channel>,
    serializable: bool,
}

async fn within<T>(
    deadline: Instant,
    timeout: Duration,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, CallError> {
    match tokio::time::timeout_at(deadline, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(CallError::Status(s)),
        Err(_) => Err(CallError::Timeout(timeout)),
    }
}

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// The value of the first key-value, if any (etcd values are bytes; the
/// harness writes UTF-8 only).
fn value_of(kvs: &[pb::KeyValue]) -> Option<String> {
    kvs.first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

fn range(key: &str, serializable: bool) -> pb::RangeRequest {
    pb::RangeRequest {
        key: bytes(key),
        serializable,
        ..Default::default()
    }
}

fn put(key: &str, value: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: bytes(key),
            value: bytes(value),
            ..Default::default()
        })),
    }
}

/// `key` is absent: its version is 0.
fn absent(key: &str) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Version as i32,
        key: bytes(key),
        target_union: Some(pb::compare::TargetUnion::Version(0)),
    }
}

fn value_is(key: &str, value: &str) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Value as i32,
        key: bytes(key),
        target_union: Some(pb::compare::TargetUnion::Value(bytes(value))),
    }
}

fn mod_revision_is(key: &str, rev: i64) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Mod as i32,
        key: bytes(key),
        target_union: Some(pb::compare::TargetUnion::ModRevision(rev)),
    }
}

fn ok(op: &Op, observed: Option<String>) -> Completion {
    Completion {
        kind: OpType::Ok,
        value: match op {
            Op::Get { .. } => op.ok_value(observed.clone()),
            _ => op.invoke_value(),
        },
        error: None,
        observed: Some(observed),
    }
}

fn failed(op: &Op, kind: OpType, error: String, observed: Option<Option<String>>) -> Completion {
    Completion {
        kind,
        value: op.invoke_value(),
        error: Some(error),
        observed,
    }
}

impl EtcdClient {
    async fn run(&mut self, op: &Op, timeout: Duration) -> Completion {
        let deadline = Instant::now() + timeout;
        let write_failed = |e: CallError| failed(op, write_outcome(&e), e.to_string(), None);
        match op {
            Op::Get { key } => {
                let call = self.kv.range(range(key, self.serializable));
                match within(deadline, timeout, call).await {
                    Ok(r) => ok(op, value_of(&r.kvs)),
                    // A read changes nothing.
                    Err(e) => failed(op, OpType::Fail, e.to_string(), None),
                }
            }
            Op::Put { key, value } => {
                let req = pb::PutRequest {
                    key: bytes(key),
                    value: bytes(value),
                    ..Default::default()
                };
                match within(deadline, timeout, self.kv.put(req)).await {
                    Ok(_) => ok(op, Some(value.clone())),
                    Err(e) => write_failed(e),
                }
            }
            Op::Delete { key } => {
                let req = pb::DeleteRangeRequest {
                    key: bytes(key),
                    ..Default::default()
                };
                match within(deadline, timeout, self.kv.delete_range(req)).await {
                    Ok(_) => ok(op, None),
                    Err(e) => write_failed(e),
                }
            }
            Op::Cas { key, expected, new } => {
                let compare = match expected {
                    Some(v) => value_is(key, v),
                    None => absent(key),
                };
                let txn = pb::TxnRequest {
                    compare: vec![compare],
                    success: vec![put(key, new)],
                    failure: vec![pb::RequestOp {
                        request: Some(pb::request_op::Request::RequestRange(range(key, false))),
                    }],
                };
                match within(deadline, timeout, self.kv.txn(txn)).await {
                    Ok(r) if r.succeeded => ok(op, Some(new.clone())),
                    Ok(r) => {
                        let holds = r.responses.iter().find_map(|r| match &r.response {
                            Some(pb::response_op::Response::ResponseRange(rr)) => {
                                Some(value_of(&rr.kvs))
                            }
                            _ => None,
                        });
                        failed(
                            op,
                            OpType::Fail,
                            format!("cas mismatch: {key} holds {holds:?}"),
                            holds,
                        )
                    }
                    Err(e) => write_failed(e),
                }
            }
            Op::Append { key, value } => self.append(op, key, value, deadline, timeout).await,
        }
    }

    /// Read, then put old + suffix if nobody wrote in between; retried.
    async fn append(
        &mut self,
        op: &Op,
        key: &str,
        suffix: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Completion {
        let mut conflicts = 0u32;
        loop {
            // Until a transaction is sent, nothing was written: :fail.
            let read = match within(deadline, timeout, self.kv.range(range(key, false))).await {
                Ok(r) => r,
                Err(e) => {
                    return failed(
                        op,
                        OpType::Fail,
                        format!("append: read failed ({e}) after {conflicts} conflicts"),
                        None,
                    )
                }
            };
            let (compare, new) = match read.kvs.first() {
                Some(kv) => (
                    mod_revision_is(key, kv.mod_revision),
                    format!("{}{suffix}", String::from_utf8_lossy(&kv.value)),
                ),
                None => (absent(key), suffix.to_string()),
            };
            let txn = pb::TxnRequest {
                compare: vec![compare],
                success: vec![put(key, &new)],
                failure: vec![],
            };
            match within(deadline, timeout, self.kv.txn(txn)).await {
                Ok(r) if r.succeeded => return ok(op, Some(new)),
                // Another write got in between; nothing was applied.
                Ok(_) => conflicts += 1,
                Err(e) => return failed(op, write_outcome(&e), format!("append: {e}"), None),
            }
            if Instant::now() >= deadline {
                return failed(
                    op,
                    OpType::Fail,
                    format!("append: {conflicts} conflicting writes, out of time"),
                    None,
                );
            }
        }
    }
}

impl DbClient for EtcdClient {
    fn invoke<'a>(&'a mut self, op: &'a Op, timeout: Duration) -> BoxFuture<'a, Completion> {
        Box::pin(self.run(op, timeout))
    }

    /// etcd clients have no session: nothing to forget.
    fn new_session(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(leader: u64, me: u64, term: u64) -> Option<pb::StatusResponse> {
        Some(pb::StatusResponse {
            header: Some(pb::ResponseHeader {
                member_id: me,
                ..Default::default()
            }),
            leader,
            raft_term: term,
            ..Default::default()
        })
    }

    #[test]
    fn the_leader_is_the_member_that_names_itself() {
        let st = [status(7, 5, 2), status(7, 7, 2), status(7, 9, 2)];
        assert_eq!(leader_of(&st), Some(1));
        // The leader does not answer: the member the others name.
        let st = [status(7, 5, 2), None, status(0, 9, 2)];
        assert_eq!(leader_of(&st), None, "n1 is named but not answering");
        let st = [status(9, 5, 3), status(7, 7, 2), status(9, 9, 3)];
        assert_eq!(leader_of(&st), Some(2), "the higher term wins");
        assert_eq!(leader_of(&[None, None]), None);
    }

    #[test]
    fn outcomes_follow_etcd_docs() {
        let timeout = CallError::Timeout(Duration::from_secs(1));
        assert_eq!(write_outcome(&timeout), OpType::Info);
        let st = |code, msg| CallError::Status(tonic::Status::new(code, msg));
        let unknown = st(Code::Unavailable, "etcdserver: request timed out");
        assert_eq!(write_outcome(&unknown), OpType::Info);
        let changed = st(Code::Unavailable, "etcdserver: leader changed");
        assert_eq!(write_outcome(&changed), OpType::Info);
        let empty = st(Code::InvalidArgument, "etcdserver: key is not provided");
        assert_eq!(write_outcome(&empty), OpType::Fail);
        let busy = st(Code::ResourceExhausted, "etcdserver: too many requests");
        assert_eq!(write_outcome(&busy), OpType::Fail);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_fail() {
        // Nothing listens on port 1: nothing was sent, so the write is :fail.
        let api = EtcdApi {
            addrs: vec!["127.0.0.1:1".into()],
            read_mode: EtcdReadMode::Linearizable,
        };
        let mut c = api.client(0, Duration::from_secs(1)).unwrap();
        let put = Op::Put {
            key: "k".into(),
            value: "v".into(),
        };
        let done = c.invoke(&put, Duration::from_secs(1)).await;
        assert_eq!(done.kind, OpType::Fail, "{:?}", done.error);
    }

    #[test]
    fn a_missing_binary_is_a_clear_error() {
        let e = find_etcd(Some(Path::new("/nonexistent/etcd"))).unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
    }
}
