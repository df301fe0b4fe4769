//! The nemesis: faults injected into the cluster on the workload's schedule.
//!
//! A fault family is one type implementing [`Fault`] (`apply`, `heal`,
//! `describe`), in a module of its own: [`process`] (pause, kill,
//! fail-rate), [`network`] (partition, delay, slow) and [`disk`]
//! (lose-unsynced, corrupt). [`fault_for`] maps a workload's nemesis entry to
//! one; targets are resolved for every family alike ([`targets`]).
//!
//! Each entry of the workload's `nemesis:` list runs as its own task: at
//! `start`, then every `interval`, it resolves its target (the current
//! leader, a random node, a minority, ...), applies the fault, waits
//! `duration` and heals exactly the nodes it hit. Every fault and heal is
//! recorded in the history as an `:info` op of process `:nemesis` whose value
//! lists the nodes (then what [`Fault::describe`] adds), and as a [`Window`]
//! for the plots. When the clients stop, [`Nemesis::heal_all`] undoes
//! whatever is still in effect, so the final phase always sees a whole cluster.

pub mod disk;
pub mod network;
pub mod process;
pub mod targets;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::db::{BoxFuture, Db, NodeState};
use crate::history::Value;
use crate::recorder::Recorder;
use crate::workload::{CorruptMode, FaultKind, FaultSpec, Target};

/// What applying a fault did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Applied {
    /// The nodes actually hit.
    pub hit: Vec<usize>,
    pub errors: Vec<String>,
    /// What the fault did to each node, appended to the op's value (e.g.
    /// what a node lost).
    pub details: Vec<Value>,
}

impl Applied {
    /// Applies `f` to each node in turn.
    pub fn each(nodes: &[usize], mut f: impl FnMut(usize) -> anyhow::Result<()>) -> Applied {
        let mut out = Applied::default();
        for &i in nodes {
            match f(i) {
                Ok(()) => out.hit.push(i),
                Err(e) => out.errors.push(e.to_string()),
            }
        }
        out
    }
}

/// One kind of fault.
pub trait Fault: Send + Sync {
    /// `:f` of the op recording the fault, and the window's name.
    fn name(&self) -> &'static str;
    /// `:f` of the op recording its heal.
    fn heal_name(&self) -> &'static str;
    /// Whether this fault can run against `db` at all (a missing capability,
    /// a missing system component: the error says what and how to get it).
    /// Checked for every `nemesis:` entry before the cluster starts.
    fn check_available(&self, db: &Db) -> anyhow::Result<()> {
        let _ = db;
        Ok(())
    }
    /// Whether a node in `state` can be hit (a node is not paused twice).
    fn can_target(&self, state: NodeState) -> bool;
    /// Applies the fault to `nodes`.
    fn apply<'a>(&'a self, db: &'a Db, nodes: &'a [usize]) -> BoxFuture<'a, Applied>;
    /// Heals it on `nodes`; returns the errors.
    fn heal<'a>(&'a self, db: &'a Db, nodes: &'a [usize]) -> BoxFuture<'a, Vec<String>>;
    /// What the fault op's value holds after the node list (e.g. the rate).
    fn describe(&self) -> Option<Value> {
        None
    }
    /// The same for the heal op.
    fn describe_heal(&self) -> Option<Value> {
        None
    }
    /// The nodes where this fault may still be in effect when the clients
    /// stop; `ran`: whether a fault of this family ran in this test.
    fn lingering(&self, db: &Db, ran: bool) -> Vec<usize>;
}

/// Settings and shared state every fault may need.
#[derive(Debug, Clone)]
pub struct FaultEnv {
    /// The cluster's configured fail_rate, restored on heal.
    pub base_fail_rate: f64,
    /// Timeout of the nemesis's own RPCs (status, set_fail_rate).
    pub rpc_timeout: Duration,
    /// The damage `corrupt` has not undone yet (shared by every entry and
    /// the final heal).
    pub disk: Arc<disk::DiskState>,
}

impl FaultEnv {
    pub fn new(base_fail_rate: f64, rpc_timeout: Duration) -> FaultEnv {
        FaultEnv {
            base_fail_rate,
            rpc_timeout,
            disk: Arc::default(),
        }
    }
}

/// The fault for a workload's `fault:`; `fail_rate` and `mode` are the
/// entry's. Network faults get default settings (enough to heal them, as
/// [`Nemesis::heal_all`] does); [`fault_for`] gives an entry's own.
pub fn fault_of(
    kind: FaultKind,
    fail_rate: Option<f64>,
    mode: Option<CorruptMode>,
    env: &FaultEnv,
) -> Box<dyn Fault> {
    match kind {
        FaultKind::Pause => Box::new(process::Pause),
        FaultKind::Kill => Box::new(process::Kill),
        FaultKind::FailRate => Box::new(process::FailRate {
            rate: fail_rate.unwrap_or(0.0),
            base: env.base_fail_rate,
            rpc_timeout: env.rpc_timeout,
        }),
        FaultKind::LoseUnsynced => Box::new(disk::LoseUnsynced),
        FaultKind::Corrupt => Box::new(disk::Corrupt {
            mode: mode.unwrap_or_default(),
            state: env.disk.clone(),
            refuse_timeout: Duration::from_secs(10),
        }),
        FaultKind::Partition | FaultKind::Delay | FaultKind::Slow => {
            network::of(&FaultSpec::of_kind(kind), 0)
        }
    }
}

/// The fault of one nemesis entry, with all its settings; `seed` drives its
/// own random choices (how a partition splits the nodes).
pub fn fault_for(spec: &FaultSpec, env: &FaultEnv, seed: u64) -> Box<dyn Fault> {
    if spec.fault.is_network() {
        network::of(spec, seed)
    } else {
        fault_of(spec.fault, spec.fail_rate, spec.mode, env)
    }
}

/// Every family, in the order [`Nemesis::heal_all`] heals them: damaged
/// nodes are repaired before `kill`'s heal restarts whatever is still down.
const ALL: [FaultKind; 8] = [
    FaultKind::Pause,
    FaultKind::Corrupt,
    FaultKind::Kill,
    FaultKind::LoseUnsynced,
    FaultKind::FailRate,
    FaultKind::Partition,
    FaultKind::Delay,
    FaultKind::Slow,
];

/// A fault as it happened: for the plots and results.json.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Window {
    /// `pause`, `kill` or `fail-rate` ([`Fault::name`]).
    pub fault: String,
    /// Node names (`n0`, ...).
    pub nodes: Vec<String>,
    /// Nanoseconds since the start of the test.
    pub start: u64,
    /// None while still active.
    pub end: Option<u64>,
}

/// State shared between the nemesis tasks, the progress bar and the report.
#[derive(Debug, Default)]
pub struct NemesisState {
    pub windows: Vec<Window>,
}

impl NemesisState {
    /// Short descriptions of the faults currently active.
    pub fn active(&self) -> Vec<String> {
        self.windows
            .iter()
            .filter(|w| w.end.is_none())
            .map(|w| format!("{} {}", w.fault, w.nodes.join(",")))
            .collect()
    }
}

/// Drives faults against a database.
#[derive(Clone)]
pub struct Nemesis {
    pub db: Db,
    pub recorder: Recorder,
    pub state: Arc<Mutex<NemesisState>>,
    pub env: FaultEnv,
    /// Cancelled when the run ends: scheduled faults stop being started.
    pub stop: CancellationToken,
}

fn node_names(nodes: &[usize]) -> Vec<String> {
    nodes.iter().map(|i| format!("n{i}")).collect()
}

impl Nemesis {
    /// The fault for `kind` with this nemesis's settings (a `corrupt` one
    /// flips bits).
    pub fn fault(&self, kind: FaultKind, fail_rate: Option<f64>) -> Box<dyn Fault> {
        fault_of(kind, fail_rate, None, &self.env)
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, NemesisState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves a target to node indexes the fault can hit now.
    pub async fn resolve(&self, target: Target, fault: &dyn Fault, rng: &mut StdRng) -> Vec<usize> {
        let states = self.db.states();
        let eligible: Vec<bool> = states.iter().map(|&s| fault.can_target(s)).collect();
        let leader = if target == Target::Leader {
            let up = states.iter().map(|&s| s == NodeState::Running).collect();
            self.db.api.leader(up, self.env.rpc_timeout).await
        } else {
            None
        };
        targets::resolve(target, &eligible, leader, rng)
    }

    /// Records a nemesis op: the nodes' addresses, then `extra`.
    fn record(
        &self,
        f: &str,
        nodes: &[usize],
        extra: impl IntoIterator<Item = Value>,
        error: Option<String>,
    ) {
        let addrs = self.db.addrs();
        let mut v: Vec<Value> = nodes
            .iter()
            .map(|&i| Value::string(addrs[i].clone()))
            .collect();
        v.extend(extra);
        self.recorder
            .record_nemesis(f, Value::Vector(v.into()), error);
    }

    /// Applies a fault to `nodes`; returns the nodes actually hit and the
    /// index of its window.
    pub async fn apply(&self, fault: &dyn Fault, nodes: &[usize]) -> (Vec<usize>, usize) {
        let start = self.recorder.now();
        let applied = fault.apply(&self.db, nodes).await;
        let error = (!applied.errors.is_empty()).then(|| applied.errors.join("; "));
        let extra = fault.describe().into_iter().chain(applied.details);
        self.record(fault.name(), &applied.hit, extra, error);
        let mut st = self.windows();
        st.windows.push(Window {
            fault: fault.name().to_string(),
            nodes: node_names(&applied.hit),
            start,
            end: None,
        });
        (applied.hit, st.windows.len() - 1)
    }

    /// Heals a fault on `nodes` and closes its window (if any).
    pub async fn heal(&self, fault: &dyn Fault, nodes: &[usize], window: Option<usize>) {
        let errors = fault.heal(&self.db, nodes).await;
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        self.record(fault.heal_name(), nodes, fault.describe_heal(), error);
        let now = self.recorder.now();
        let mut st = self.windows();
        if let Some(w) = window.and_then(|w| st.windows.get_mut(w)) {
            w.end = Some(now);
        }
    }

    /// Runs one schedule entry until `end` or until stopped; its times
    /// (`start`, `end`) count from `origin`, the start of the clients (not
    /// the recorder's start: a cluster on remote hosts takes seconds to
    /// start). A fault whose heal time falls after `end` is healed at `end`.
    pub async fn run_schedule(self, spec: FaultSpec, origin: Instant, end: Duration, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let fault = fault_for(&spec, &self.env, seed.wrapping_add(1));
        let t0 = origin;
        let end_at = t0 + end;
        let mut k: u32 = 0;
        loop {
            if spec.count.is_some_and(|c| k >= c) {
                break;
            }
            let offset = spec.start.0 + spec.interval.map(|i| i.0 * k).unwrap_or_default();
            let at = t0 + offset;
            if at >= end_at || (k > 0 && spec.interval.is_none()) {
                break;
            }
            if !self.sleep_until(at).await {
                break;
            }
            let targets = self.resolve(spec.target, fault.as_ref(), &mut rng).await;
            if targets.is_empty() {
                let why = format!("no node matches target {}", spec.target);
                self.record(fault.name(), &[], None, Some(why));
            } else {
                let (hit, w) = self.apply(fault.as_ref(), &targets).await;
                let heal_at = (Instant::now() + spec.duration.0).min(end_at);
                self.sleep_until(heal_at).await;
                self.heal(fault.as_ref(), &hit, Some(w)).await;
            }
            k += 1;
        }
    }

    /// Sleeps until `at`; false if stopped meanwhile.
    async fn sleep_until(&self, at: Instant) -> bool {
        tokio::select! {
            _ = tokio::time::sleep_until(at) => !self.stop.is_cancelled(),
            _ = self.stop.cancelled() => false,
        }
    }

    /// Undoes every fault that may still be in effect, family by family
    /// ([`Fault::lingering`]): resumes paused nodes, restarts dead ones,
    /// restores the base fail_rate everywhere (if any fail-rate fault ran).
    /// Recorded like any heal; windows of interrupted schedules end now.
    pub async fn heal_all(&self) {
        for kind in ALL {
            let fault = self.fault(kind, None);
            let ran = self
                .windows()
                .windows
                .iter()
                .any(|w| w.fault == fault.name());
            let nodes = fault.lingering(&self.db, ran);
            if !nodes.is_empty() {
                self.heal(fault.as_ref(), &nodes, None).await;
            }
        }
        let now = self.recorder.now();
        for w in &mut self.windows().windows {
            w.end.get_or_insert(now);
        }
    }
}
