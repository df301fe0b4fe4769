//! Process faults: `pause` (SIGSTOP, healed by SIGCONT), `kill` (SIGKILL,
//! healed by restarting on the same data dir) and `fail-rate` (the
//! database's own fault injection, healed by restoring the base rate).

use std::time::Duration;

use super::{Applied, Fault};
use crate::db::{BoxFuture, Db, NodeState, Processes};
use crate::history::Value;

/// SIGSTOP a running node; SIGCONT on heal.
pub struct Pause;

impl Fault for Pause {
    fn name(&self) -> &'static str {
        "pause"
    }
    fn heal_name(&self) -> &'static str {
        "resume"
    }
    fn can_target(&self, state: NodeState) -> bool {
        state == NodeState::Running
    }
    fn apply<'a>(&'a self, db: &'a Db, nodes: &'a [usize]) -> BoxFuture<'a, Applied> {
        Box::pin(off_runtime(db, nodes, |db, nodes| {
            Applied::each(&nodes, |i| db.procs().pause(i))
        }))
    }
    fn heal<'a>(&'a self, db: &'a Db, nodes: &'a [usize]) -> BoxFuture<'a, Vec<String>> {
        Box::pin(off_runtime(db, nodes, |db, nodes| {
            heal_where(&db, &nodes, NodeState::Paused, |p, i| p.resume(i))
        }))
    }
    fn lingering(&self, db: &Db, _ran: bool) -> Vec<usize> {
        nodes_in(db, NodeState::Paused)
    }
}

/// SIGKILL a running node; restart it on its data dir on heal.
pub struct Kill;

impl Fault for Kill {
    fn name(&self) -> &'static str {
        "kill"
    }
    fn heal_name(&self) -> &'static str {
        "restart"
    }
    fn can_target(&self, state: NodeState) -> bool {
        state == NodeState::Running
    }
    fn apply<'a>(&'a self, db: &'a Db, nodes: &'a [usize]) -> BoxFuture<'a, Applied> {
        Box::pin(off_runtime(db, nodes, |db, nodes| {
            Applied::each(&nodes, |i| db.procs().kill(i))
        }))
    }
    fn heal<'a>(&'a self, db: &'a Db, nodes: &'a [usize]) -> BoxFuture<'a, Vec<String>> {
        Box::pin(off_runtime(db, nodes, |db, nodes| {
            heal_where(&db, &nodes, NodeState::Down, |p, i| p.start(i))
        }))
    }
    /// Dead nodes, also those that crashed on their own.
    fn lingering(&self, db: &Db, _ran: bool) -> Vec<usize> {
        nodes_in(db, NodeState::Down)
    }
}

/// Sets the node's fault-injection rate ([`crate::db::Api::set_fail_rate`]);
/// restores `base` on heal.
pub struct FailRate {
    pub rate: f64,
    pub base: f64,
    pub rpc_timeout: Duration,
}

impl Fault for FailRate {
    fn name(&self) -> &'static str {
        "fail-rate"
    }
    fn heal_name(&self) -> &'static str {
        "heal-fail-rate"
    }
    fn can_target(&self, _state: NodeState) -> bool {
        true
    }
    fn apply<'a>(&'a self, db: &'a Db, nodes: &'a [usize]) -> BoxFuture<'a, Applied> {
        Box::pin(async move {
            let mut out = Applied::default();
            for &i in nodes {
                match db.api.set_fail_rate(i, self.rate, self.rpc_timeout).await {
                    Ok(()) => out.hit.push(i),
                    Err(e) => out.errors.push(e.to_string()),
                }
            }
            out
        })
    }
    fn heal<'a>(&'a self, db: &'a Db, nodes: &'a [usize]) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let mut errors = Vec::new();
            for &i in nodes {
                if let Err(e) = db.api.set_fail_rate(i, self.base, self.rpc_timeout).await {
                    errors.push(e.to_string());
                }
            }
            errors
        })
    }
    fn describe(&self) -> Option<Value> {
        Some(Value::Float(self.rate))
    }
    fn describe_heal(&self) -> Option<Value> {
        Some(Value::Float(self.base))
    }
    /// Every node, once any fail-rate fault ran (the rate is not observable).
    fn lingering(&self, db: &Db, ran: bool) -> Vec<usize> {
        if ran {
            (0..db.node_count()).collect()
        } else {
            vec![]
        }
    }
}

/// Runs `f` on a blocking thread: a signal to a remote node is a round trip
/// over SSH ([`crate::remote`]), which must not stall the clients' tasks.
async fn off_runtime<T: Send + 'static + Default>(
    db: &Db,
    nodes: &[usize],
    f: impl FnOnce(Db, Vec<usize>) -> T + Send + 'static,
) -> T {
    let (db, nodes) = (db.clone(), nodes.to_vec());
    tokio::task::spawn_blocking(move || f(db, nodes))
        .await
        .unwrap_or_default()
}

/// Runs `heal` on the nodes still in `state` (a node restarted or resumed
/// meanwhile is left alone); returns the errors.
fn heal_where(
    db: &Db,
    nodes: &[usize],
    state: NodeState,
    mut heal: impl FnMut(&mut dyn Processes, usize) -> anyhow::Result<()>,
) -> Vec<String> {
    let mut p = db.procs();
    let mut errors = Vec::new();
    for &i in nodes {
        if p.state(i) == state {
            if let Err(e) = heal(p.as_mut(), i) {
                errors.push(format!("{e:#}"));
            }
        }
    }
    errors
}

fn nodes_in(db: &Db, state: NodeState) -> Vec<usize> {
    db.states()
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == state)
        .map(|(i, _)| i)
        .collect()
}
