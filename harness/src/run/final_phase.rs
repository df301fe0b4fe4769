//! The final phase, after every fault is healed: read every key through
//! every node (recorded like any op, so checked like any op), and wait for
//! the replicas' applied index and digest to agree (convergence).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::verdict::ConvergenceStatus;
use crate::db::Db;
use crate::generator::{HistoryOp, KeyPicker};
use crate::history::OpType;
use crate::recorder::Recorder;
use crate::workload::Workload;

/// Process numbers of the final reads: `FINAL_READ_PROCESS + node`.
pub const FINAL_READ_PROCESS: u64 = 1_000_000_000;

/// Replica state at the end of the final phase.
#[derive(Debug, Clone, Serialize)]
pub struct NodeFinal {
    pub node: String,
    pub addr: String,
    pub role: Option<String>,
    pub applied_index: Option<u64>,
    pub commit_index: Option<u64>,
    pub digest: Option<String>,
    /// Times the process was started (1 + restarts).
    pub starts: u32,
}

/// The convergence check.
#[derive(Debug, Clone, Serialize)]
pub struct Convergence {
    pub status: ConvergenceStatus,
    pub nodes: Vec<NodeFinal>,
    pub waited_ms: u64,
}

/// The final reads: every key through every replica.
#[derive(Debug, Clone, Serialize, Default)]
pub struct FinalReads {
    pub reads: usize,
    pub ok: usize,
    /// Keys whose ok reads disagree between replicas (a hint; the verdict is
    /// the linearizability check's).
    pub disagreeing_keys: Vec<String>,
}

/// Reads every key through every node, recording each read as an op of
/// process [`FINAL_READ_PROCESS`] + node. Stops early when `cancel` fires.
pub async fn final_reads(
    w: &Workload,
    db: &Db,
    recorder: &Recorder,
    cancel: &CancellationToken,
) -> FinalReads {
    let keys = KeyPicker::new(&w.operations).keys().to_vec();
    let mut out = FinalReads::default();
    let mut seen: BTreeMap<String, BTreeSet<Option<String>>> = BTreeMap::new();
    let timeout = w.clients.request_timeout.0.max(Duration::from_secs(2));
    for (n, addr) in db.addrs().iter().enumerate() {
        let Ok(mut client) = db.api.client(n, w.clients.request_timeout.0) else {
            continue;
        };
        let process = FINAL_READ_PROCESS + n as u64;
        for key in &keys {
            if cancel.is_cancelled() {
                return out;
            }
            let op = client::Op::Get { key: key.clone() };
            recorder.record_client(
                process,
                OpType::Invoke,
                op.f(),
                op.invoke_value(),
                addr,
                None,
            );
            let c = client.invoke(&op, timeout).await;
            recorder.record_client(process, c.kind, op.f(), c.value.clone(), addr, c.error);
            out.reads += 1;
            if c.kind == OpType::Ok {
                out.ok += 1;
                if let Some(v) = c.observed {
                    seen.entry(key.clone()).or_default().insert(v);
                }
            }
        }
    }
    out.disagreeing_keys = seen
        .into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, _)| k)
        .collect();
    out
}

/// Polls the nodes until they agree on applied index and digest (twice in
/// a row), or the timeout passes.
pub async fn wait_convergence(db: &Db, timeout: Duration) -> Convergence {
    let start = Instant::now();
    let mut agreed_once = false;
    // Polls in a row where every replica answered with the same applied
    // index but different digests: a divergence, no need to wait longer.
    let mut split = 0;
    loop {
        let st = db.api.statuses(Duration::from_millis(500)).await;
        let all = st.iter().all(Option::is_some);
        let applied: BTreeSet<u64> = st.iter().flatten().map(|s| s.applied_index).collect();
        let digests: BTreeSet<u64> = st.iter().flatten().map(|s| s.digest).collect();
        let agree = all && applied.len() == 1 && digests.len() == 1;
        split = if all && applied.len() == 1 && digests.len() > 1 {
            split + 1
        } else {
            0
        };
        let timed_out = start.elapsed() >= timeout || split >= 10;
        if (agree && agreed_once) || timed_out {
            let status = if agree {
                ConvergenceStatus::Converged
            } else if all && applied.len() == 1 {
                ConvergenceStatus::Diverged
            } else {
                ConvergenceStatus::Undecided
            };
            let (addrs, starts): (Vec<String>, Vec<u32>) = {
                let p = db.procs();
                (0..p.node_count())
                    .map(|i| (p.node_addr(i), p.starts(i)))
                    .unzip()
            };
            return Convergence {
                status,
                nodes: st
                    .iter()
                    .enumerate()
                    .map(|(i, s)| NodeFinal {
                        node: format!("n{i}"),
                        addr: addrs.get(i).cloned().unwrap_or_default(),
                        role: s.as_ref().map(|s| s.role.clone()),
                        applied_index: s.as_ref().map(|s| s.applied_index),
                        commit_index: s.as_ref().map(|s| s.commit_index),
                        digest: s.as_ref().map(|s| format!("{:016x}", s.digest)),
                        starts: starts.get(i).copied().unwrap_or(0),
                    })
                    .collect(),
                waited_ms: start.elapsed().as_millis() as u64,
            };
        }
        agreed_once = agree;
        tokio::time::sleep(Duration::from_millis(if agree { 300 } else { 200 })).await;
    }
}
