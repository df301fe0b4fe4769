//! `harness run`: one test, from the workload file to the verdict.
//!
//! The phases, in order:
//!
//! 1. load and validate the workload; create the run's store dir;
//! 2. start the cluster and wait for a coordinator;
//! 3. run the client workers and the nemesis schedule for `duration`;
//! 4. heal every fault, wait for the cluster to recover;
//! 5. final phase: read every key through every replica (recorded like any
//!    op), wait for the replicas' applied index and digest to agree;
//! 6. stop every process; write history.edn;
//! 7. check (linearizability per key, convergence), write results.json, the
//!    plots and timelines, print the summary.
//!
//! Exit status ([`RunOutcome::exit_code`]): 0 valid, 1 anomaly, 2 the test
//! could not run or the check could not decide. On Ctrl-C (or SIGTERM) the
//! run stops early, stops every process and exits 2.

pub mod check;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::time::Instant;

use crate::cluster::{self, Cluster, ClusterConfig};
use crate::generator::{Generator, HistoryOp};
use crate::nemesis::{Nemesis, NemesisState, Window};
use crate::recorder::{self, OpType, Process, Recorder};
use crate::report::results::{self, Stats};
use crate::report::{plots, summary};
use crate::workload::Workload;
use check::{LinResult, LinVerdict};
use worker::{Counters, Worker};

/// Exit status: everything checked out.
pub const EXIT_VALID: i32 = 0;
/// Exit status: an anomaly was found.
pub const EXIT_ANOMALY: i32 = 1;
/// Exit status: the test could not run or the check could not decide.
pub const EXIT_ERROR: i32 = 2;

/// Options of `harness run` beyond the workload file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub workload: PathBuf,
    /// The `server` binary; found next to the harness if absent.
    pub server_bin: Option<PathBuf>,
    /// Root of the store (`store/`).
    pub store: PathBuf,
    pub base_client_port: Option<u16>,
    pub base_paxos_port: Option<u16>,
    pub base_proxy_port: Option<u16>,
    pub seed: Option<u64>,
    pub duration: Option<Duration>,
    /// Draw the progress bar (when stderr is a terminal).
    pub progress: bool,
    /// Print the summary on stdout.
    pub print_summary: bool,
}

impl RunOptions {
    pub fn new(workload: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            workload: workload.into(),
            server_bin: None,
            store: PathBuf::from("store"),
            base_client_port: None,
            base_paxos_port: None,
            base_proxy_port: None,
            seed: None,
            duration: None,
            progress: true,
            print_summary: true,
        }
    }
}

/// The overall verdict of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunVerdict {
    Valid,
    Anomaly,
    /// Could not run, or could not decide.
    Unknown,
}

impl RunVerdict {
    pub fn exit_code(self) -> i32 {
        match self {
            RunVerdict::Valid => EXIT_VALID,
            RunVerdict::Anomaly => EXIT_ANOMALY,
            RunVerdict::Unknown => EXIT_ERROR,
        }
    }
}

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
    /// `converged`, `diverged` (same applied index, different digests: an
    /// anomaly) or `undecided` (not every replica caught up in time).
    pub status: String,
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

/// Everything results.json holds.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub workload: String,
    pub seed: u64,
    pub verdict: RunVerdict,
    pub exit_code: i32,
    /// Why the verdict is what it is, one line each.
    pub reasons: Vec<String>,
    pub dir: String,
    pub started_at: String,
    pub server_bin: String,
    pub replicas: usize,
    pub read_mode: String,
    pub interrupted: bool,
    pub recovered: bool,
    pub linearizability: Option<LinResult>,
    pub convergence: Option<Convergence>,
    pub final_reads: FinalReads,
    pub stats: Stats,
    pub faults: Vec<Window>,
    /// Replicas that exited without being told to.
    pub unexpected_exits: Vec<String>,
    pub history_ops: usize,
}

/// What `harness run` returns.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub results: Results,
    pub summary: String,
}

impl RunOutcome {
    pub fn exit_code(&self) -> i32 {
        self.results.exit_code
    }
}

/// Runs a workload file to the end. `interrupt` is set from outside (signal
/// handler) to stop early.
pub fn run(opts: &RunOptions, interrupt: Arc<AtomicBool>) -> Result<RunOutcome> {
    let mut workload = Workload::load(&opts.workload)?;
    if let Some(p) = opts.base_client_port {
        workload.cluster.base_client_port = p;
    }
    if let Some(p) = opts.base_paxos_port {
        workload.cluster.base_paxos_port = p;
    }
    if let Some(p) = opts.base_proxy_port {
        workload.cluster.base_proxy_port = p;
    }
    if let Some(d) = opts.duration {
        workload.duration = crate::workload::Dur(d);
    }
    let seed = opts
        .seed
        .or(workload.seed)
        .unwrap_or_else(|| rand::random::<u64>() >> 11);
    workload.seed = Some(seed);
    let server_bin = cluster::find_server_bin(opts.server_bin.as_deref())?;
    let dir = crate::store::create_run_dir(&opts.store, workload.name())?;
    std::fs::write(dir.join("workload.yaml"), workload.to_yaml())
        .with_context(|| format!("cannot write {}", dir.join("workload.yaml").display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let outcome = rt.block_on(run_async(
        opts,
        &workload,
        seed,
        &server_bin,
        &dir,
        interrupt,
    ));
    rt.shutdown_timeout(Duration::from_secs(2));
    outcome
}

async fn run_async(
    opts: &RunOptions,
    w: &Workload,
    seed: u64,
    server_bin: &Path,
    dir: &Path,
    interrupt: Arc<AtomicBool>,
) -> Result<RunOutcome> {
    let started_at = crate::store::timestamp(std::time::SystemTime::now());
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
    };
    let mut reasons: Vec<String> = Vec::new();
    let mut cluster = Cluster::new(config)?;
    // Network faults: every replica link through a proxy of ours.
    let network = if w.uses_network() {
        let paxos: Vec<String> = cluster.nodes.iter().map(|n| n.paxos_addr.clone()).collect();
        let net = crate::net::Network::start(&w.cluster.host, w.cluster.base_proxy_port, &paxos)?;
        cluster.peer_dials = (0..paxos.len()).map(|i| net.peer_dials(i)).collect();
        Some(Arc::new(net))
    } else {
        None
    };
    let cluster = Arc::new(Mutex::new(cluster));
    let addrs = lock(&cluster).client_addrs();
    lock(&cluster).start_all()?;

    // Wait for a coordinator (or a Ctrl-C).
    let ready = tokio::select! {
        r = cluster::wait_for_coordinator(&addrs, w.cluster.startup_timeout.0) => r,
        _ = wait_flag(interrupt.clone()) => Err(anyhow::anyhow!("interrupted")),
        e = startup_crash(&cluster) => Err(anyhow::anyhow!(e)),
    };
    let recorder = Recorder::new();
    let counters = Arc::new(Counters::default());
    let nemesis_state = Arc::new(Mutex::new(NemesisState::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut client_phase_end = 0u64;
    let mut recovered = false;
    let mut final_reads = FinalReads::default();
    let mut convergence = None;
    let mut unexpected_exits = Vec::new();

    if let Err(e) = &ready {
        reasons.push(format!("the cluster did not start: {e:#}"));
    } else {
        // Clients and nemesis.
        let deadline = Instant::now() + w.duration.0;
        let pace = w
            .clients
            .rate
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(w.clients.concurrency as f64 / r));
        let mut handles = Vec::new();
        for i in 0..w.clients.concurrency {
            let addr = addrs[i % addrs.len()].clone();
            let client = cluster::kv_client(&addr, w.clients.request_timeout.0)?;
            let worker = Worker {
                index: i,
                concurrency: w.clients.concurrency,
                addr,
                client,
                generator: Generator::new(&w.operations, seed, i),
                recorder: recorder.clone(),
                request_timeout: w.clients.request_timeout.0,
                backoff: w.clients.backoff.0,
                pace,
                deadline,
                stop: stop.clone(),
                counters: counters.clone(),
            };
            handles.push(tokio::spawn(worker.run()));
        }
        let nemesis = Nemesis {
            cluster: cluster.clone(),
            recorder: recorder.clone(),
            state: nemesis_state.clone(),
            base_fail_rate: w.cluster.fail_rate,
            rpc_timeout: Duration::from_millis(500),
            stop: stop.clone(),
            network: network.clone(),
        };
        let nem_handles: Vec<_> = w
            .nemesis
            .iter()
            .enumerate()
            .map(|(k, spec)| {
                tokio::spawn(nemesis.clone().run_schedule(
                    spec.clone(),
                    w.duration.0,
                    seed.wrapping_add(1000 + k as u64),
                ))
            })
            .collect();
        let done = Arc::new(AtomicBool::new(false));
        let bar = crate::progress::spawn(
            opts.progress,
            w.duration.0,
            counters.clone(),
            nemesis_state.clone(),
            done.clone(),
        );
        // Stop early on interrupt.
        let watcher = {
            let (interrupt, stop) = (interrupt.clone(), stop.clone());
            tokio::spawn(async move {
                wait_flag(interrupt).await;
                stop.store(true, Ordering::Relaxed);
            })
        };
        for h in handles {
            let _ = h.await;
        }
        client_phase_end = recorder.now();
        stop.store(true, Ordering::Relaxed);
        for h in nem_handles {
            let _ = h.await;
        }
        done.store(true, Ordering::Relaxed);
        bar.finish_and_clear();
        watcher.abort();

        // Heal and recover.
        nemesis.heal_all().await;
        {
            let mut c = lock(&cluster);
            for i in 0..c.nodes.len() {
                if let Some(st) = c.check_exited(i) {
                    unexpected_exits.push(format!("n{i} exited on its own ({st}); see n{i}.log"));
                }
            }
        }
        if !unexpected_exits.is_empty() {
            // Restart crashed replicas so the final phase sees them all.
            nemesis.heal_all().await;
        }
        if !interrupt.load(Ordering::Relaxed) {
            match cluster::wait_for_coordinator(&addrs, w.final_phase.recovery_timeout.0).await {
                Ok(_) => recovered = true,
                Err(e) => reasons.push(format!("the cluster did not recover after healing: {e:#}")),
            }
        }
        if !interrupt.load(Ordering::Relaxed) && w.final_phase.reads {
            final_reads = do_final_reads(w, &addrs, &recorder, &interrupt).await;
        }
        if !interrupt.load(Ordering::Relaxed) && w.checkers.convergence {
            let c = wait_convergence(&addrs, w.final_phase.convergence_timeout.0, &cluster).await;
            convergence = Some(c);
        }
    }

    // Stop everything.
    {
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || lock(&c).stop_all(Duration::from_secs(3)))
            .await
            .ok();
    }
    let interrupted = interrupt.load(Ordering::Relaxed);
    if interrupted {
        reasons.push("interrupted".into());
    }

    // History.
    let events = recorder.snapshot();
    let history_path = dir.join("history.edn");
    std::fs::write(&history_path, recorder::to_edn(&events))
        .with_context(|| format!("cannot write {}", history_path.display()))?;
    let ops = results::pair(&events);
    if client_phase_end == 0 {
        client_phase_end = recorder.now();
    }
    let stats = results::stats(&ops, client_phase_end);
    let windows = nemesis_state
        .lock()
        .map(|s| s.windows.clone())
        .unwrap_or_default();

    // Checks.
    let started_ok = ready.is_ok();
    let lin = if started_ok && w.checkers.linearizable {
        let (h, d, limit) = (
            history_path.clone(),
            dir.to_path_buf(),
            w.checkers.time_limit.0,
        );
        tokio::task::spawn_blocking(move || check::check_history(&h, &d, limit))
            .await
            .ok()
    } else {
        None
    };
    let mut verdict = if started_ok && !interrupted {
        RunVerdict::Valid
    } else {
        RunVerdict::Unknown
    };
    let mut worsen = |v: RunVerdict| {
        verdict = match (verdict, v) {
            (RunVerdict::Anomaly, _) | (_, RunVerdict::Anomaly) => RunVerdict::Anomaly,
            (RunVerdict::Unknown, _) | (_, RunVerdict::Unknown) => RunVerdict::Unknown,
            _ => RunVerdict::Valid,
        }
    };
    if !started_ok || interrupted {
        worsen(RunVerdict::Unknown);
    }
    if started_ok && !recovered && !interrupted {
        worsen(RunVerdict::Unknown);
    }
    if let Some(l) = &lin {
        match l.verdict {
            LinVerdict::Linearizable => {}
            LinVerdict::NotLinearizable => {
                worsen(RunVerdict::Anomaly);
                let keys: Vec<&str> = l.invalid.iter().map(|k| k.key.as_str()).collect();
                reasons.push(format!("not linearizable: keys {}", keys.join(", ")));
            }
            LinVerdict::Unknown => {
                worsen(RunVerdict::Unknown);
                reasons.push(match &l.error {
                    Some(e) => format!("linearizability not decided: {e}"),
                    None => format!(
                        "linearizability not decided for keys {} (search budget exhausted)",
                        l.unknown_keys.join(", ")
                    ),
                });
            }
        }
    }
    if let Some(c) = &convergence {
        match c.status.as_str() {
            "converged" => {}
            "diverged" => {
                worsen(RunVerdict::Anomaly);
                reasons.push("replicas diverged: same applied index, different digests".into());
            }
            _ => {
                worsen(RunVerdict::Unknown);
                reasons.push("replicas did not converge in time (applied indexes differ)".into());
            }
        }
    }
    if !unexpected_exits.is_empty() {
        worsen(RunVerdict::Unknown);
        reasons.extend(unexpected_exits.iter().cloned());
    }
    if verdict == RunVerdict::Valid {
        reasons.push("valid: every check passed".into());
    }

    let results = Results {
        workload: w.name().to_string(),
        seed,
        verdict,
        exit_code: verdict.exit_code(),
        reasons,
        dir: dir.display().to_string(),
        started_at,
        server_bin: server_bin.display().to_string(),
        replicas: w.cluster.replicas,
        read_mode: w.cluster.read_mode.as_str().into(),
        interrupted,
        recovered,
        linearizability: lin,
        convergence,
        final_reads,
        stats,
        faults: windows.clone(),
        unexpected_exits,
        history_ops: events.len(),
    };
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&results).unwrap_or_default(),
    )
    .with_context(|| format!("cannot write {}", dir.join("results.json").display()))?;
    if w.checkers.perf {
        // The end of the history (the final reads), not "now": the check
        // may have taken long.
        let end = events
            .last()
            .map(|e| e.time)
            .unwrap_or(0)
            .max(client_phase_end);
        if let Err(e) = plots::latency_svg(&dir.join("latency.svg"), w.name(), &ops, &windows, end)
        {
            eprintln!("harness: latency.svg: {e:#}");
        }
        if let Err(e) = plots::rate_svg(&dir.join("rate.svg"), w.name(), &ops, &windows, end) {
            eprintln!("harness: rate.svg: {e:#}");
        }
    }
    let text = summary::render(&results, w.description.as_deref());
    let _ = std::fs::write(dir.join("summary.txt"), &text);
    if opts.print_summary {
        println!("{text}");
    }
    Ok(RunOutcome {
        dir: dir.to_path_buf(),
        results,
        summary: text,
    })
}

fn lock(c: &Mutex<Cluster>) -> std::sync::MutexGuard<'_, Cluster> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// Resolves when a replica exits during startup (a bad flag, a port in
/// use), with its exit status and the tail of its log.
async fn startup_crash(cluster: &Mutex<Cluster>) -> String {
    loop {
        {
            let mut c = lock(cluster);
            for i in 0..c.nodes.len() {
                if let Some(st) = c.check_exited(i) {
                    let log = std::fs::read_to_string(&c.nodes[i].log_path).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    return format!(
                        "n{i} exited during startup ({st}); the end of {}:\n    {}",
                        c.nodes[i].log_path.display(),
                        tail.join("\n    ")
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resolves when `flag` is set (polled every 50 ms).
async fn wait_flag(flag: Arc<AtomicBool>) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads every key through every replica, recording each read as an op of
/// process `1_000_000_000 + node` (so final reads are checked like any other).
async fn do_final_reads(
    w: &Workload,
    addrs: &[String],
    recorder: &Recorder,
    interrupt: &AtomicBool,
) -> FinalReads {
    let keys = crate::generator::KeyPicker::new(&w.operations)
        .keys()
        .to_vec();
    let mut out = FinalReads::default();
    let mut seen: std::collections::BTreeMap<String, std::collections::BTreeSet<Option<String>>> =
        Default::default();
    for (n, addr) in addrs.iter().enumerate() {
        let Ok(mut kv) = cluster::kv_client(addr, w.clients.request_timeout.0) else {
            continue;
        };
        let process = Process::Client(1_000_000_000 + n as u64);
        for key in &keys {
            if interrupt.load(Ordering::Relaxed) {
                return out;
            }
            let op = client::Op::Get { key: key.clone() };
            recorder.record(
                process,
                OpType::Invoke,
                op.f(),
                op.invoke_value(),
                Some(addr),
                None,
            );
            let timeout = w.clients.request_timeout.0.max(Duration::from_secs(2));
            let result = client::execute_once(&mut kv, addr, op.to_request(0, 0), timeout).await;
            let c = worker::classify(&op, result);
            recorder.record(
                process,
                c.kind,
                op.f(),
                c.value.clone(),
                Some(addr),
                c.error.clone(),
            );
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

/// Polls the replicas until they agree on applied index and digest (twice in
/// a row), or the timeout passes.
async fn wait_convergence(
    addrs: &[String],
    timeout: Duration,
    cluster: &Mutex<Cluster>,
) -> Convergence {
    let start = Instant::now();
    let mut agreed_once = false;
    // Polls in a row where every replica answered with the same applied
    // index but different digests: a divergence, no need to wait longer.
    let mut split = 0;
    loop {
        let st = cluster::statuses(addrs, Duration::from_millis(500)).await;
        let all = st.iter().all(Option::is_some);
        let applied: std::collections::BTreeSet<u64> =
            st.iter().flatten().map(|s| s.applied_index).collect();
        let digests: std::collections::BTreeSet<u64> =
            st.iter().flatten().map(|s| s.digest).collect();
        let agree = all && applied.len() == 1 && digests.len() == 1;
        split = if all && applied.len() == 1 && digests.len() > 1 {
            split + 1
        } else {
            0
        };
        let timed_out = start.elapsed() >= timeout || split >= 10;
        if (agree && agreed_once) || timed_out {
            let status = if agree {
                "converged"
            } else if all && applied.len() == 1 {
                "diverged"
            } else {
                "undecided"
            };
            let starts: Vec<u32> = lock(cluster).nodes.iter().map(|n| n.starts).collect();
            return Convergence {
                status: status.into(),
                nodes: st
                    .iter()
                    .enumerate()
                    .map(|(i, s)| NodeFinal {
                        node: format!("n{i}"),
                        addr: addrs[i].clone(),
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
