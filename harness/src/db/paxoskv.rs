//! The paxoskv adapter of the database seam: `server` processes managed by
//! [`Cluster`], its gRPC API through the `client` crate.
//!
//! Outcomes follow Jepsen ([`classify`]):
//!
//! - `:ok`: the replica answered with success;
//! - `:fail`: the operation surely did not take effect: a CAS whose expected
//!   value did not match, an INVALID_ARGUMENT or FAILED_PRECONDITION, an
//!   UNAVAILABLE whose `paxoskv-outcome` trailer says `not-applied`, or a
//!   connection that could not even be opened (nothing was sent); any failed
//!   read (a read changes nothing, so failing it is always safe);
//! - `:info`: anything else (timeout, connection lost, unknown outcome).
//!
//! Sessions give exactly-once: each client session picks a random client id
//! and numbers its writes 1, 2, 3... (reads use no session).

use std::path::Path;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use client::{ClientError, Op, Outcome, Reply};
use paxoskv::kv::kv_client::KvClient;
use paxoskv::kv::StatusReply;
use rand::Rng;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::{
    Api, BoxFuture, Completion, Db, DbClient, NodeFiles, NodeState, NodeStatus, Processes,
    RecordSpan,
};
use crate::cluster::{Cluster, ClusterConfig};
use crate::generator::HistoryOp;
use crate::history::OpType;
use crate::net::Network;
use crate::workload::Workload;

/// The paxoskv cluster of workload `w`, laid out in `dir` (nothing started).
pub fn open(w: &Workload, server_bin: &Path, dir: &Path) -> Result<Db> {
    let config = ClusterConfig {
        server_bin: server_bin.to_path_buf(),
        replicas: w.cluster.replicas,
        host: w.cluster.host.clone(),
        base_client_port: w.cluster.base_client_port,
        base_paxos_port: w.cluster.base_paxos_port,
        fail_rate: w.cluster.fail_rate,
        read_mode: w.cluster.read_mode,
        extra_flags: w.cluster.server_flags.clone(),
        dir: dir.to_path_buf(),
        command_lines: None,
    };
    let mut cluster = Cluster::new(config)?;
    if w.needs_lazyfs() {
        cluster
            .mount_lazyfs()
            .context("the workload loses unsynced writes, so its replicas run on lazyfs")?;
    }
    // Network faults: every replica-to-replica link through a proxy of ours
    // (binds every proxy port now: one in use fails before any node starts).
    let network = if w.uses_network() {
        let paxos: Vec<String> = cluster.nodes.iter().map(|n| n.paxos_addr.clone()).collect();
        let net = Network::start(&w.cluster.host, w.cluster.base_proxy_port, &paxos)?;
        cluster.peer_dials = (0..paxos.len()).map(|i| net.peer_dials(i)).collect();
        Some(Arc::new(net))
    } else {
        None
    };
    let mut db = from_cluster(cluster);
    db.network = network;
    Ok(db)
}

/// Wraps a laid-out cluster.
pub fn from_cluster(cluster: Cluster) -> Db {
    let api = PaxosKvApi {
        addrs: cluster.client_addrs(),
    };
    Db::new(Box::new(cluster), Arc::new(api))
}

impl Processes for Cluster {
    fn node_count(&self) -> usize {
        self.nodes.len()
    }
    fn node_addr(&self, node: usize) -> String {
        self.nodes[node].client_addr.clone()
    }
    fn files(&self, node: usize) -> NodeFiles {
        NodeFiles {
            data_dir: self.nodes[node].data_dir.clone(),
            log_path: self.nodes[node].log_path.clone(),
        }
    }
    fn state(&self, node: usize) -> NodeState {
        self.nodes[node].state
    }
    fn starts(&self, node: usize) -> u32 {
        self.nodes[node].starts
    }
    fn start(&mut self, node: usize) -> Result<()> {
        Cluster::start(self, node)
    }
    fn stop(&mut self, node: usize, grace: Duration) {
        Cluster::stop(self, node, grace)
    }
    fn kill(&mut self, node: usize) -> Result<()> {
        Cluster::kill(self, node)
    }
    fn pause(&mut self, node: usize) -> Result<()> {
        Cluster::pause(self, node)
    }
    fn resume(&mut self, node: usize) -> Result<()> {
        Cluster::resume(self, node)
    }
    fn check_exited(&mut self, node: usize) -> Option<ExitStatus> {
        Cluster::check_exited(self, node)
    }
    fn on_lazyfs(&self) -> bool {
        Cluster::on_lazyfs(self)
    }
    fn lose_unsynced(&mut self, node: usize) -> Result<crate::lazyfs::Loss> {
        Cluster::lose_unsynced(self, node)
    }
    /// From the server's own reader ([`server::storage::layout::scan`]).
    fn durable_records(&self, node: usize) -> Result<Vec<RecordSpan>> {
        use server::storage::layout::{scan, SpanKind};
        let dir = &self.nodes[node].data_dir;
        let spans = scan(dir).with_context(|| format!("cannot scan {}", dir.display()))?;
        Ok(spans
            .into_iter()
            .map(|s| RecordSpan {
                what: match s.kind {
                    SpanKind::CheckpointHeader => "checkpoint header".into(),
                    SpanKind::CheckpointBody => "checkpoint body".into(),
                    SpanKind::WalHeader => "WAL header".into(),
                    SpanKind::WalRecord { seq } => format!("WAL record {seq}"),
                },
                file: s.file,
                offset: s.offset,
                len: s.len,
                tail: s.tail,
            })
            .collect())
    }
    fn start_all(&mut self) -> Result<()> {
        Cluster::start_all(self)
    }
    fn stop_all(&mut self, grace: Duration) {
        Cluster::stop_all(self, grace)
    }
}

/// paxoskv's gRPC API (Status, SetFailRate, the KV calls).
pub struct PaxosKvApi {
    /// Client addresses, by node.
    pub addrs: Vec<String>,
}

impl Api for PaxosKvApi {
    fn wait_ready(&self, timeout: Duration) -> BoxFuture<'_, Result<usize>> {
        Box::pin(wait_for_coordinator(&self.addrs, timeout))
    }

    fn leader(&self, up: Vec<bool>, timeout: Duration) -> BoxFuture<'_, Option<usize>> {
        Box::pin(async move {
            // Paused or dead nodes do not answer: ask the running ones.
            let asked: Vec<String> = self
                .addrs
                .iter()
                .zip(&up)
                .map(|(a, &up)| {
                    if up {
                        a.clone()
                    } else {
                        // An unroutable stand-in that fails at once.
                        "127.0.0.1:1".to_string()
                    }
                })
                .collect();
            leader_of(&statuses(&asked, timeout).await)
        })
    }

    fn client(&self, node: usize, connect_timeout: Duration) -> Result<Box<dyn DbClient>> {
        let addr = self.addrs[node].clone();
        Ok(Box::new(PaxosKvClient {
            kv: kv_client(&addr, connect_timeout)?,
            addr,
            client_id: fresh_client_id(),
            seq: 0,
        }))
    }

    fn converges_by_digest(&self) -> bool {
        true
    }

    fn statuses(&self, timeout: Duration) -> BoxFuture<'_, Vec<Option<NodeStatus>>> {
        Box::pin(async move {
            statuses(&self.addrs, timeout)
                .await
                .into_iter()
                .map(|s| {
                    s.map(|s| NodeStatus {
                        role: s.role,
                        applied_index: s.applied_index,
                        commit_index: s.commit_index,
                        digest: s.digest,
                    })
                })
                .collect()
        })
    }

    fn set_fail_rate(
        &self,
        node: usize,
        rate: f64,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            set_node_fail_rate(&self.addrs[node], rate, timeout)
                .await
                .map(|_| ())
        })
    }
}

// The paxoskv RPCs the adapter and `harness cluster` use.

/// A gRPC client of one node, connecting lazily.
pub fn kv_client(
    addr: &str,
    connect_timeout: Duration,
) -> Result<KvClient<tonic::transport::Channel>> {
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .with_context(|| format!("bad address {addr}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    Ok(KvClient::new(ep.connect_lazy()))
}

/// Status of one node, within `timeout` ([`client::status`]).
pub async fn node_status(addr: &str, timeout: Duration) -> Result<StatusReply> {
    client::status(addr, timeout)
        .await
        .map_err(|e| anyhow!("status of {addr}: {e}"))
}

/// Sets a node's acceptor fail_rate; returns the previous one
/// ([`client::set_fail_rate`]).
pub async fn set_node_fail_rate(addr: &str, rate: f64, timeout: Duration) -> Result<f64> {
    client::set_fail_rate(addr, rate, timeout)
        .await
        .map_err(|e| anyhow!("set_fail_rate on {addr}: {e}"))
}

/// Statuses of the given nodes, queried concurrently (None: no answer).
pub async fn statuses(addrs: &[String], timeout: Duration) -> Vec<Option<StatusReply>> {
    let handles: Vec<_> = addrs
        .iter()
        .cloned()
        .map(|a| tokio::spawn(async move { node_status(&a, timeout).await.ok() }))
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.ok().flatten());
    }
    out
}

/// Who leads, according to the answering nodes: the index of a node that says
/// it is the coordinator (the highest ballot if several do), else the leader
/// most nodes name.
pub fn leader_of(statuses: &[Option<StatusReply>]) -> Option<usize> {
    let coordinator = statuses
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
        .filter(|(_, s)| s.role == "coordinator")
        .max_by_key(|(_, s)| (s.ballot_round, s.ballot_replica))
        .map(|(i, _)| i);
    if coordinator.is_some() {
        return coordinator;
    }
    let mut votes = std::collections::BTreeMap::new();
    for s in statuses.iter().flatten() {
        if let Some(l) = s.leader {
            *votes.entry(l as usize).or_insert(0usize) += 1;
        }
    }
    votes.into_iter().max_by_key(|&(_, v)| v).map(|(l, _)| l)
}

/// Waits until the nodes in `addrs` all answer Status and one of them is the
/// coordinator recognised by the others. Returns the leader's index.
pub async fn wait_for_coordinator(addrs: &[String], timeout: Duration) -> Result<usize> {
    let deadline = Instant::now() + timeout;
    let mut last: String;
    loop {
        let st = statuses(addrs, Duration::from_millis(500)).await;
        let answering = st.iter().filter(|s| s.is_some()).count();
        if let Some(l) = st
            .iter()
            .enumerate()
            .find(|(_, s)| s.as_ref().is_some_and(|s| s.role == "coordinator"))
            .map(|(i, _)| i)
        {
            let agree = st
                .iter()
                .flatten()
                .all(|s| s.leader == Some(l as u32) || s.leader_addr == addrs[l]);
            if answering == addrs.len() && agree {
                return Ok(l);
            }
            last = format!(
                "n{l} is coordinator, {answering}/{} nodes answer, agree: {agree}",
                addrs.len()
            );
        } else {
            last = format!(
                "{answering}/{} nodes answer, none is coordinator",
                addrs.len()
            );
        }
        if Instant::now() >= deadline {
            bail!("no coordinator after {:?}: {last}", timeout);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client session on one replica.
pub struct PaxosKvClient {
    kv: KvClient<Channel>,
    addr: String,
    client_id: u64,
    seq: u64,
}

impl DbClient for PaxosKvClient {
    fn invoke<'a>(&'a mut self, op: &'a Op, timeout: Duration) -> BoxFuture<'a, Completion> {
        Box::pin(async move {
            // Reads use no session.
            let req = if op.is_read_only() {
                op.to_request(0, 0)
            } else {
                self.seq += 1;
                op.to_request(self.client_id, self.seq)
            };
            let result = client::execute_once(&mut self.kv, &self.addr, req, timeout).await;
            classify(op, result)
        })
    }

    fn new_session(&mut self) {
        self.client_id = fresh_client_id();
        self.seq = 0;
    }
}

fn fresh_client_id() -> u64 {
    rand::rng().random_range(1..u64::MAX)
}

/// Classifies the answer (or error) of one request, as returned by
/// [`client::execute_once`]. The client library decides whether a failed
/// request surely had no effect ([`Outcome::NotApplied`], `:fail`) or may
/// have had one (`:info`); a failed read changed nothing, so it is `:fail`.
pub fn classify(op: &Op, result: Result<Reply, ClientError>) -> Completion {
    match result {
        Err(e) => Completion {
            kind: if op.is_read_only() || e.outcome == Outcome::NotApplied {
                OpType::Fail
            } else {
                OpType::Info
            },
            value: op.invoke_value(),
            error: Some(e.to_string()),
            observed: None,
        },
        Ok(reply) => match op {
            Op::Cas { key, .. } if !reply.succeeded => Completion {
                kind: OpType::Fail,
                value: op.invoke_value(),
                error: Some(format!("cas mismatch: {key} holds {:?}", reply.value)),
                observed: Some(reply.value),
            },
            Op::Get { .. } => Completion {
                kind: OpType::Ok,
                value: op.ok_value(reply.value.clone()),
                error: None,
                observed: Some(reply.value),
            },
            _ => Completion {
                kind: OpType::Ok,
                value: op.invoke_value(),
                error: None,
                observed: Some(reply.value),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::error::classify_status;
    use std::time::Duration;

    const NODE: &str = "127.0.0.1:8000";

    fn put() -> Op {
        Op::Put {
            key: "k".into(),
            value: "v".into(),
        }
    }

    fn status(s: tonic::Status) -> Result<Reply, ClientError> {
        Err(classify_status(&s, NODE))
    }

    #[test]
    fn outcomes_follow_jepsen() {
        let timeout = || Err(ClientError::timeout(Duration::from_secs(1), NODE));
        assert_eq!(classify(&put(), timeout()).kind, OpType::Info);
        assert_eq!(
            classify(&Op::Get { key: "k".into() }, timeout()).kind,
            OpType::Fail
        );
        let unknown = tonic::Status::unavailable("no majority");
        assert_eq!(classify(&put(), status(unknown)).kind, OpType::Info);
        let mut not_applied = tonic::Status::unavailable("no coordinator");
        not_applied
            .metadata_mut()
            .insert("paxoskv-outcome", "not-applied".parse().unwrap());
        assert_eq!(classify(&put(), status(not_applied)).kind, OpType::Fail);
        let bad = tonic::Status::invalid_argument("empty key");
        assert_eq!(classify(&put(), status(bad)).kind, OpType::Fail);
        let stale = tonic::Status::failed_precondition("stale seq");
        assert_eq!(classify(&put(), status(stale)).kind, OpType::Fail);
        let cas = Op::Cas {
            key: "k".into(),
            expected: Some("a".into()),
            new: "b".into(),
        };
        let reply = Reply {
            value: Some("c".into()),
            succeeded: false,
            slot: 3,
            served_by: String::new(),
        };
        let c = classify(&cas, Ok(reply));
        assert_eq!(c.kind, OpType::Fail);
        assert_eq!(c.observed, Some(Some("c".into())));
        let read = Reply {
            value: Some("x".into()),
            succeeded: true,
            slot: 0,
            served_by: String::new(),
        };
        let c = classify(&Op::Get { key: "k".into() }, Ok(read));
        assert_eq!(c.kind, OpType::Ok);
        assert_eq!(c.value.to_string(), "[\"k\" \"x\"]");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_fail() {
        // Nothing listens on port 1: nothing was sent, so the write is :fail.
        let mut kv = super::kv_client("127.0.0.1:1", Duration::from_secs(1)).unwrap();
        let result = client::execute_once(
            &mut kv,
            "127.0.0.1:1",
            put().to_request(7, 1),
            Duration::from_secs(1),
        )
        .await;
        let c = classify(&put(), result);
        assert_eq!(c.kind, OpType::Fail, "{:?}", c.error);
    }
}
