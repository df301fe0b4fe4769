//! Network faults, through the link proxies of [`crate::net`] (a
//! `partition` of nodes on remote hosts: iptables rules there,
//! [`crate::remote::iptables`]): `partition`
//! (a shape or explicit groups; cut links blackhole or reset), `delay`
//! (latency and jitter) and `slow` (bandwidth) on the links of the targets.
//!
//! A partition computes its grudge when it starts, from the targets resolved
//! then (the leader, a random node, ...; see [`Shape::grudge`] for what each
//! shape does with them), cuts exactly those links and records the grudge in
//! the op's `:value`: `[shape cut {node [nodes it does not hear]}]`.
//! Partitions do not stack: the newest is in force, and any heal restores
//! every link. `delay` and `slow` act on every link that touches a target
//! (`target: all`: every link) and their heal restores those links.
//! [`Fault::lingering`] asks the proxies: while any link is still cut
//! (delayed, slowed), `heal_all` restores every link of the family.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::{Applied, Fault};
use crate::db::{BoxFuture, Db, NodeState};
use crate::history::Value;
use crate::net::{Cut, Grudge, Network, Rules, Shape};
use crate::workload::{FaultKind, FaultSpec};

/// The fault of a network nemesis entry (`partition`, `delay`, `slow`).
pub fn of(spec: &FaultSpec, seed: u64) -> Box<dyn Fault> {
    match spec.fault {
        FaultKind::Delay => Box::new(Links(LinkFault::Delay {
            latency: spec.latency.unwrap_or_default().0,
            jitter: spec.jitter.unwrap_or_default().0,
        })),
        FaultKind::Slow => Box::new(Links(LinkFault::Slow {
            // Validation requires a bandwidth; 1 B/s is never reached.
            bandwidth: spec.bandwidth.map_or(1, |b| b.0),
        })),
        _ => Box::new(Partition::new(
            spec.partition_shape(),
            spec.cut.unwrap_or(Cut::Blackhole),
            seed,
        )),
    }
}

/// Where a partition cuts links: the link proxies, or iptables on remote
/// nodes ([`crate::remote::iptables`]).
enum CutBy<'a> {
    Proxies(&'a Network),
    Firewall(&'a crate::remote::iptables::Firewall),
}

fn partition_links(db: &Db) -> Result<CutBy<'_>, String> {
    match (db.network(), db.firewall.as_deref()) {
        (Some(net), _) => Ok(CutBy::Proxies(net)),
        (None, Some(fw)) => Ok(CutBy::Firewall(fw)),
        (None, None) => network(db).map(CutBy::Proxies),
    }
}

/// Runs `f` on the remote nodes' firewall on a blocking thread (each rule
/// change is a round trip over SSH); its errors.
async fn on_firewall(
    db: &Db,
    f: impl FnOnce(&crate::remote::iptables::Firewall) -> Vec<String> + Send + 'static,
) -> Vec<String> {
    let Some(fw) = db.firewall.clone() else {
        return vec!["no firewall".into()];
    };
    tokio::task::spawn_blocking(move || f(&fw))
        .await
        .unwrap_or_else(|e| vec![format!("firewall task: {e}")])
}

/// Network faults need the nodes to talk through the link proxies.
fn check_network(db: &Db) -> anyhow::Result<()> {
    network(db).map(|_| ()).map_err(anyhow::Error::msg)
}

fn network(db: &Db) -> Result<&Network, String> {
    db.network()
        .ok_or_else(|| "the nodes do not talk through link proxies (the database adapter starts them only for a workload with network faults)".to_string())
}

fn node(i: usize) -> Value {
    Value::string(format!("n{i}"))
}

/// The grudge as the history records it: each node that does not hear
/// everyone, with the nodes it does not hear.
pub fn grudge_value(g: &Grudge) -> Value {
    Value::Map(
        g.by_receiver()
            .into_iter()
            .map(|(to, deaf)| {
                (
                    node(to),
                    Value::Vector(deaf.into_iter().map(node).collect()),
                )
            })
            .collect::<Vec<_>>()
            .into(),
    )
}

/// Cuts links in a shape.
pub struct Partition {
    pub shape: Shape,
    pub cut: Cut,
    /// Random splits (halves, bridge, ring), seeded by the schedule.
    rng: Mutex<StdRng>,
    /// The grudge in force, for [`Fault::describe`].
    last: Mutex<Option<Grudge>>,
}

impl Partition {
    pub fn new(shape: Shape, cut: Cut, seed: u64) -> Partition {
        Partition {
            shape,
            cut,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            last: Mutex::new(None),
        }
    }
}

impl Fault for Partition {
    fn name(&self) -> &'static str {
        "partition"
    }
    fn heal_name(&self) -> &'static str {
        "heal-partition"
    }
    fn check_available(&self, db: &Db) -> anyhow::Result<()> {
        partition_links(db).map(|_| ()).map_err(anyhow::Error::msg)
    }
    /// A paused or dead node can be cut off too.
    fn can_target(&self, _state: NodeState) -> bool {
        true
    }
    fn apply<'a>(&'a self, db: &'a Db, nodes: &'a [usize]) -> BoxFuture<'a, Applied> {
        Box::pin(async move {
            let mut out = Applied::default();
            let links = match partition_links(db) {
                Ok(l) => l,
                Err(e) => {
                    out.errors.push(e);
                    return out;
                }
            };
            let n = match &links {
                CutBy::Proxies(net) => net.nodes(),
                CutBy::Firewall(fw) => fw.nodes(),
            };
            let grudge = {
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                self.shape.grudge(n, nodes, &mut *rng)
            };
            match grudge {
                Ok(g) => {
                    match links {
                        CutBy::Proxies(net) => net.partition(&g, self.cut),
                        CutBy::Firewall(_) => {
                            let (g, cut) = (g.clone(), self.cut);
                            out.errors
                                .extend(on_firewall(db, move |fw| fw.partition(&g, cut)).await)
                        }
                    }
                    // The nodes hit: every node with a cut link.
                    out.hit = (0..n)
                        .filter(|&i| g.links().any(|(f, t)| f == i || t == i))
                        .collect();
                    *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(g);
                }
                Err(e) => out.errors.push(e.to_string()),
            }
            out
        })
    }
    fn heal<'a>(&'a self, db: &'a Db, _nodes: &'a [usize]) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            match partition_links(db) {
                Ok(CutBy::Proxies(net)) => {
                    net.heal_partition();
                    vec![]
                }
                Ok(CutBy::Firewall(_)) => on_firewall(db, |fw| fw.heal()).await,
                Err(e) => vec![e],
            }
        })
    }
    fn describe(&self) -> Option<Value> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        Some(Value::Vector(
            vec![
                Value::keyword(self.shape.name()),
                Value::keyword(self.cut.as_str()),
                last.as_ref().map(grudge_value).unwrap_or(Value::Nil),
            ]
            .into(),
        ))
    }
    /// Every node, while any link is still cut.
    fn lingering(&self, db: &Db, _ran: bool) -> Vec<usize> {
        match db.firewall.as_deref() {
            Some(fw) if db.network().is_none() && fw.is_cut() => (0..fw.nodes()).collect(),
            _ => lingering(db, |r| r.cut.is_some()),
        }
    }
}

/// Every node if a link's rules match `still` (the heal then covers all).
fn lingering(db: &Db, still: impl Fn(&Rules) -> bool) -> Vec<usize> {
    match db.network() {
        Some(net) if net.faulty_links().iter().any(|(_, r)| still(r)) => (0..net.nodes()).collect(),
        _ => vec![],
    }
}

/// What `delay` or `slow` does to a link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinkFault {
    Delay { latency: Duration, jitter: Duration },
    Slow { bandwidth: u64 },
}

/// Delays or slows the links of the targets.
pub struct Links(pub LinkFault);

impl Links {
    fn set(&self, net: &Network, nodes: &[usize], on: bool) {
        let links = net.links_of(Some(nodes));
        match self.0 {
            LinkFault::Delay { latency, jitter } => {
                let (l, j) = if on {
                    (latency, jitter)
                } else {
                    Default::default()
                };
                net.delay(&links, l, j);
            }
            LinkFault::Slow { bandwidth } => net.slow(&links, on.then_some(bandwidth)),
        }
    }
}

impl Fault for Links {
    fn name(&self) -> &'static str {
        match self.0 {
            LinkFault::Delay { .. } => "delay",
            LinkFault::Slow { .. } => "slow",
        }
    }
    fn heal_name(&self) -> &'static str {
        match self.0 {
            LinkFault::Delay { .. } => "heal-delay",
            LinkFault::Slow { .. } => "heal-slow",
        }
    }
    fn check_available(&self, db: &Db) -> anyhow::Result<()> {
        check_network(db)
    }
    fn can_target(&self, _state: NodeState) -> bool {
        true
    }
    fn apply<'a>(&'a self, db: &'a Db, nodes: &'a [usize]) -> BoxFuture<'a, Applied> {
        Box::pin(async move {
            match network(db) {
                Ok(net) => {
                    self.set(net, nodes, true);
                    Applied {
                        hit: nodes.to_vec(),
                        ..Applied::default()
                    }
                }
                Err(e) => Applied {
                    errors: vec![e],
                    ..Applied::default()
                },
            }
        })
    }
    fn heal<'a>(&'a self, db: &'a Db, nodes: &'a [usize]) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            match network(db) {
                Ok(net) => {
                    self.set(net, nodes, false);
                    vec![]
                }
                Err(e) => vec![e],
            }
        })
    }
    fn describe(&self) -> Option<Value> {
        Some(match self.0 {
            LinkFault::Delay { latency, jitter } => Value::Map(
                vec![
                    (
                        Value::keyword("latency-ms"),
                        Value::Int(latency.as_millis() as i64),
                    ),
                    (
                        Value::keyword("jitter-ms"),
                        Value::Int(jitter.as_millis() as i64),
                    ),
                ]
                .into(),
            ),
            LinkFault::Slow { bandwidth } => Value::Map(
                vec![(Value::keyword("bytes-per-s"), Value::Int(bandwidth as i64))].into(),
            ),
        })
    }
    /// Every node, while any link is still delayed (or slowed).
    fn lingering(&self, db: &Db, _ran: bool) -> Vec<usize> {
        match self.0 {
            LinkFault::Delay { .. } => {
                lingering(db, |r| !r.latency.is_zero() || !r.jitter.is_zero())
            }
            LinkFault::Slow { .. } => lingering(db, |r| r.bandwidth.is_some()),
        }
    }
}
