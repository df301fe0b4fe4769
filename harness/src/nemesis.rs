//! The nemesis: faults injected into the cluster on the workload's schedule.
//!
//! Each entry of the workload's `nemesis:` list runs as its own task: at
//! `start`, then every `interval`, it resolves its target (the current
//! leader, a random node, a minority, ...), applies the fault, waits
//! `duration` and heals exactly the nodes it hit. Every fault and heal is
//! recorded in the history as an `:info` op of process `:nemesis` whose value
//! lists the nodes, and as a window for the plots. When the clients stop,
//! [`Nemesis::heal_all`] undoes whatever is still active, so the final phase
//! always sees a whole cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::cluster::{leader_of, set_node_fail_rate, statuses, Cluster, NodeState};
use crate::recorder::{Edn, OpType, Process, Recorder};
use crate::workload::{FaultKind, FaultSpec, Target};

/// A fault as it happened: for the plots and results.json.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Window {
    /// `pause`, `kill` or `fail-rate`.
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

/// Drives faults against a shared cluster.
#[derive(Clone)]
pub struct Nemesis {
    pub cluster: Arc<Mutex<Cluster>>,
    pub recorder: Recorder,
    pub state: Arc<Mutex<NemesisState>>,
    /// The cluster's configured fail_rate, restored on heal.
    pub base_fail_rate: f64,
    /// Timeout of the nemesis's own RPCs (status, set_fail_rate).
    pub rpc_timeout: Duration,
    /// Set when the run ends: scheduled faults stop being started.
    pub stop: Arc<AtomicBool>,
    /// The link proxies, when the workload has network faults.
    pub network: Option<Arc<crate::net::Network>>,
}

fn lock(c: &Mutex<Cluster>) -> std::sync::MutexGuard<'_, Cluster> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

impl Nemesis {
    fn addrs(&self) -> Vec<String> {
        lock(&self.cluster).client_addrs()
    }

    fn node_states(&self) -> Vec<NodeState> {
        lock(&self.cluster).nodes.iter().map(|n| n.state).collect()
    }

    /// Resolves a target to node indexes. Pause and kill only pick running
    /// nodes (a node cannot be paused twice).
    pub async fn resolve(&self, target: Target, fault: FaultKind, rng: &mut StdRng) -> Vec<usize> {
        let states = self.node_states();
        let n = states.len();
        let eligible: Vec<usize> = (0..n)
            .filter(|&i| {
                fault == FaultKind::FailRate
                    || fault.is_network()
                    || states[i] == NodeState::Running
            })
            .collect();
        let mut pick = |k: usize| {
            let mut all: Vec<usize> = (0..n).collect();
            all.shuffle(rng);
            let mut chosen: Vec<usize> = all.into_iter().take(k).collect();
            chosen.retain(|i| eligible.contains(i));
            chosen.sort_unstable();
            chosen
        };
        match target {
            Target::Leader => {
                let addrs = self.addrs();
                // Paused or dead nodes do not answer: ask the running ones.
                let running: Vec<String> = addrs
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        if states[i] == NodeState::Running {
                            a.clone()
                        } else {
                            // An unroutable stand-in that fails at once.
                            "127.0.0.1:1".to_string()
                        }
                    })
                    .collect();
                let st = statuses(&running, self.rpc_timeout).await;
                leader_of(&st)
                    .filter(|l| eligible.contains(l))
                    .map(|l| vec![l])
                    .unwrap_or_default()
            }
            Target::Random => {
                if eligible.is_empty() {
                    vec![]
                } else {
                    vec![eligible[rng.random_range(0..eligible.len())]]
                }
            }
            Target::Minority => pick((n.saturating_sub(1)) / 2),
            Target::Majority => pick(n / 2 + 1),
            Target::All => eligible,
            Target::Node(i) => {
                if eligible.contains(&i) {
                    vec![i]
                } else {
                    vec![]
                }
            }
        }
    }

    fn record(&self, f: &str, nodes: &[usize], extra: Option<Edn>, error: Option<String>) {
        let addrs = self.addrs();
        let mut v: Vec<Edn> = nodes
            .iter()
            .map(|&i| Edn::string(addrs[i].clone()))
            .collect();
        if let Some(e) = extra {
            v.push(e);
        }
        self.recorder.record(
            Process::Nemesis,
            OpType::Info,
            f,
            Edn::Vector(v),
            None,
            error,
        );
    }

    /// Applies a fault to `nodes`; returns the nodes actually hit and the
    /// index of its window.
    pub async fn apply(
        &self,
        fault: FaultKind,
        nodes: &[usize],
        fail_rate: Option<f64>,
    ) -> (Vec<usize>, usize) {
        let mut hit = Vec::new();
        let mut errors = Vec::new();
        match fault {
            FaultKind::Pause | FaultKind::Kill => {
                let mut c = lock(&self.cluster);
                for &i in nodes {
                    let r = if fault == FaultKind::Pause {
                        c.pause(i)
                    } else {
                        c.kill(i)
                    };
                    match r {
                        Ok(()) => hit.push(i),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
            }
            FaultKind::Partition | FaultKind::Delay | FaultKind::Slow => {
                errors.push("network faults run through the fault seam".into());
            }
            FaultKind::FailRate => {
                let rate = fail_rate.unwrap_or(0.0);
                let addrs = self.addrs();
                for &i in nodes {
                    match set_node_fail_rate(&addrs[i], rate, self.rpc_timeout).await {
                        Ok(_) => hit.push(i),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
            }
        }
        let f = match fault {
            FaultKind::Pause => "pause",
            FaultKind::Kill => "kill",
            FaultKind::FailRate => "fail-rate",
            FaultKind::Partition => "partition",
            FaultKind::Delay => "delay",
            FaultKind::Slow => "slow",
        };
        let extra = fail_rate
            .filter(|_| fault == FaultKind::FailRate)
            .map(Edn::Float);
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        self.record(f, &hit, extra, error);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.windows.push(Window {
            fault: f.to_string(),
            nodes: hit.iter().map(|i| format!("n{i}")).collect(),
            start: self.recorder.now(),
            end: None,
        });
        (hit, st.windows.len() - 1)
    }

    /// Heals a fault on `nodes` and closes its window.
    pub async fn heal(&self, fault: FaultKind, nodes: &[usize], window: usize) {
        let mut errors = Vec::new();
        let f = match fault {
            FaultKind::Pause => {
                let mut c = lock(&self.cluster);
                for &i in nodes {
                    if c.nodes[i].state == NodeState::Paused {
                        if let Err(e) = c.resume(i) {
                            errors.push(e.to_string());
                        }
                    }
                }
                "resume"
            }
            FaultKind::Kill => {
                let mut c = lock(&self.cluster);
                for &i in nodes {
                    if c.nodes[i].state == NodeState::Down {
                        if let Err(e) = c.start(i) {
                            errors.push(format!("{e:#}"));
                        }
                    }
                }
                "restart"
            }
            FaultKind::FailRate => {
                let addrs = self.addrs();
                for &i in nodes {
                    if let Err(e) =
                        set_node_fail_rate(&addrs[i], self.base_fail_rate, self.rpc_timeout).await
                    {
                        errors.push(e.to_string());
                    }
                }
                "heal-fail-rate"
            }
            FaultKind::Partition | FaultKind::Delay | FaultKind::Slow => "heal-network",
        };
        let extra = (fault == FaultKind::FailRate).then_some(Edn::Float(self.base_fail_rate));
        self.record(
            f,
            nodes,
            extra,
            (!errors.is_empty()).then(|| errors.join("; ")),
        );
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = st.windows.get_mut(window) {
            w.end = Some(self.recorder.now());
        }
    }

    /// Runs one schedule entry until `end` (relative to the recorder's start)
    /// or until stopped. A fault whose heal time falls after `end` is healed
    /// at `end`.
    pub async fn run_schedule(self, spec: FaultSpec, end: Duration, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let t0 = Instant::from_std(self.recorder.start());
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
            let targets = self.resolve(spec.target, spec.fault, &mut rng).await;
            if spec.fault.is_network()
                && (!targets.is_empty() || !spec.partition_shape().uses_targets())
            {
                let (hit, w) = self.apply_network(&spec, &targets, &mut rng);
                let heal_at = (Instant::now() + spec.duration.0).min(end_at);
                self.sleep_until(heal_at).await;
                self.heal_network(&spec, &hit, w);
            } else if !targets.is_empty() {
                let (hit, w) = self.apply(spec.fault, &targets, spec.fail_rate).await;
                let heal_at = (Instant::now() + spec.duration.0).min(end_at);
                self.sleep_until(heal_at).await;
                self.heal(spec.fault, &hit, w).await;
            } else {
                self.record(
                    match spec.fault {
                        FaultKind::Pause => "pause",
                        FaultKind::Kill => "kill",
                        FaultKind::FailRate => "fail-rate",
                        FaultKind::Partition => "partition",
                        FaultKind::Delay => "delay",
                        FaultKind::Slow => "slow",
                    },
                    &[],
                    None,
                    Some(format!("no node matches target {}", spec.target)),
                );
            }
            k += 1;
        }
    }

    fn push_window(&self, f: &str, nodes: &[usize]) -> usize {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.windows.push(Window {
            fault: f.to_string(),
            nodes: nodes.iter().map(|i| format!("n{i}")).collect(),
            start: self.recorder.now(),
            end: None,
        });
        st.windows.len() - 1
    }

    fn close_window(&self, w: usize) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.recorder.now();
        if let Some(w) = st.windows.get_mut(w) {
            w.end = Some(now);
        }
    }

    fn apply_network(
        &self,
        spec: &FaultSpec,
        targets: &[usize],
        rng: &mut StdRng,
    ) -> (Vec<usize>, usize) {
        use crate::net::Cut;
        let Some(net) = self.network.as_ref() else {
            self.record("partition", &[], None, Some("no link proxies".into()));
            return (vec![], usize::MAX);
        };
        let (f, hit, extra, error) = match spec.fault {
            FaultKind::Partition => {
                let shape = spec.partition_shape();
                let cut = spec.mode.unwrap_or(Cut::Blackhole);
                match shape.grudge(net.nodes(), targets, rng) {
                    Ok(g) => {
                        net.partition(&g, cut);
                        let hit: Vec<usize> = (0..net.nodes())
                            .filter(|&i| g.links().any(|(a, b)| a == i || b == i))
                            .collect();
                        let grudge = Edn::Map(
                            g.by_receiver()
                                .into_iter()
                                .map(|(to, deaf)| {
                                    (
                                        Edn::string(format!("n{to}")),
                                        Edn::Vector(
                                            deaf.into_iter()
                                                .map(|d| Edn::string(format!("n{d}")))
                                                .collect(),
                                        ),
                                    )
                                })
                                .collect(),
                        );
                        let v = Edn::Vector(vec![
                            Edn::keyword(shape.name()),
                            Edn::keyword(cut.as_str()),
                            grudge,
                        ]);
                        ("partition", hit, Some(v), None)
                    }
                    Err(e) => ("partition", vec![], None, Some(e.to_string())),
                }
            }
            FaultKind::Delay => {
                let (l, j) = (
                    spec.latency.unwrap_or_default().0,
                    spec.jitter.unwrap_or_default().0,
                );
                net.delay(&net.links_of(Some(targets)), l, j);
                let v = Edn::Map(vec![
                    (Edn::keyword("latency-ms"), Edn::Int(l.as_millis() as i64)),
                    (Edn::keyword("jitter-ms"), Edn::Int(j.as_millis() as i64)),
                ]);
                ("delay", targets.to_vec(), Some(v), None)
            }
            _ => {
                let bw = spec.bandwidth.map(|b| b.0).unwrap_or(1);
                net.slow(&net.links_of(Some(targets)), Some(bw));
                let v = Edn::Map(vec![(Edn::keyword("bytes-per-s"), Edn::Int(bw as i64))]);
                ("slow", targets.to_vec(), Some(v), None)
            }
        };
        self.record(f, &hit, extra, error);
        let w = self.push_window(f, &hit);
        (hit, w)
    }

    fn heal_network(&self, spec: &FaultSpec, hit: &[usize], w: usize) {
        let Some(net) = self.network.as_ref() else {
            return;
        };
        let f = match spec.fault {
            FaultKind::Partition => {
                net.heal_partition();
                "heal-partition"
            }
            FaultKind::Delay => {
                net.delay(&net.links_of(Some(hit)), Duration::ZERO, Duration::ZERO);
                "heal-delay"
            }
            _ => {
                net.slow(&net.links_of(Some(hit)), None);
                "heal-slow"
            }
        };
        self.record(f, hit, None, None);
        self.close_window(w);
    }

    /// Sleeps until `at`; false if stopped meanwhile.
    async fn sleep_until(&self, at: Instant) -> bool {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            let now = Instant::now();
            if now >= at {
                return true;
            }
            tokio::time::sleep((at - now).min(Duration::from_millis(100))).await;
        }
    }

    /// Undoes every fault still in effect: resumes paused nodes, restarts
    /// dead ones, restores the base fail_rate everywhere (if any fail-rate
    /// fault ran). Recorded like any heal.
    pub async fn heal_all(&self) {
        let (paused, down): (Vec<usize>, Vec<usize>) = {
            let c = lock(&self.cluster);
            (
                c.nodes
                    .iter()
                    .filter(|n| n.state == NodeState::Paused)
                    .map(|n| n.id)
                    .collect(),
                c.nodes
                    .iter()
                    .filter(|n| n.state == NodeState::Down)
                    .map(|n| n.id)
                    .collect(),
            )
        };
        let open: Vec<(usize, String)> = {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.windows
                .iter()
                .enumerate()
                .filter(|(_, w)| w.end.is_none())
                .map(|(i, w)| (i, w.fault.clone()))
                .collect()
        };
        if let Some(net) = &self.network {
            if !net.faulty_links().is_empty() {
                net.heal_all();
                let n = net.nodes();
                self.record("heal-network", &(0..n).collect::<Vec<_>>(), None, None);
            }
        }
        if !paused.is_empty() {
            let w = self.open_window("pause", &paused);
            self.heal(FaultKind::Pause, &paused, w).await;
        }
        if !down.is_empty() {
            let w = self.open_window("kill", &down);
            self.heal(FaultKind::Kill, &down, w).await;
        }
        let any_fail_rate = self
            .state
            .lock()
            .map(|s| s.windows.iter().any(|w| w.fault == "fail-rate"))
            .unwrap_or(false);
        if any_fail_rate {
            let n = lock(&self.cluster).nodes.len();
            let all: Vec<usize> = (0..n).collect();
            let w = self.open_window("fail-rate", &all);
            self.heal(FaultKind::FailRate, &all, w).await;
        }
        // Windows of interrupted schedules end now; the synthetic windows
        // opened above for the heal are dropped again.
        let now = self.recorder.now();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (i, _) in &open {
            if let Some(w) = st.windows.get_mut(*i) {
                w.end.get_or_insert(now);
            }
        }
        st.windows.retain(|w| !(w.fault.starts_with("heal-all")));
    }

    fn open_window(&self, fault: &str, nodes: &[usize]) -> usize {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.windows.push(Window {
            fault: format!("heal-all {fault}"),
            nodes: nodes.iter().map(|i| format!("n{i}")).collect(),
            start: self.recorder.now(),
            end: None,
        });
        st.windows.len() - 1
    }
}
