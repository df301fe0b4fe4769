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
//! Each phase is a function of its own below; the verdict is
//! [`verdict::verdict`], a pure function of what the phases established.
//! Exit status ([`RunOutcome::exit_code`], constants in [`verdict`]): 0
//! valid, 1 anomaly, 2 the test could not run or the check could not decide.
//! On Ctrl-C (or SIGTERM) the caller cancels the run's token: the run stops
//! early, stops every process and exits 2.

pub mod check;
pub mod final_phase;
pub mod verdict;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::db::{self, Db};
use crate::generator::Generator;
use crate::history::{pairing, History};
use crate::nemesis::{FaultEnv, Nemesis, NemesisState, Window};
use crate::recorder::Recorder;
use crate::report::results::{self, Stats};
use crate::report::{plots, summary};
use crate::workload::Workload;
use check::LinResult;
use final_phase::{Convergence, FinalReads};
pub use verdict::{ConvergenceStatus, RunVerdict, EXIT_ANOMALY, EXIT_ERROR, EXIT_VALID};
use worker::{Counters, Worker};

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
    /// `:ok` ops per second without any fault (`none`) and during each kind
    /// of fault.
    pub availability: Vec<results::Availability>,
    /// Replicas that exited without being told to.
    pub unexpected_exits: Vec<String>,
    /// How the nodes met the `corrupt` faults, if there were any.
    pub corruptions: Option<results::Corruptions>,
    /// Connections to the link proxies that no node dialled (reset), when
    /// the run had network faults ([`crate::net::Network::strangers`]).
    pub stray_connections: Option<usize>,
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

/// Runs a workload file to the end. Cancelling `cancel` (the signal
/// handler does) stops the run early.
pub fn run(opts: &RunOptions, cancel: CancellationToken) -> Result<RunOutcome> {
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
    let server_bin = db::find_program(&workload.db, opts.server_bin.as_deref())?;
    let dir = crate::store::create_run_dir(&opts.store, workload.name())?;
    std::fs::write(dir.join("workload.yaml"), workload.to_yaml())
        .with_context(|| format!("cannot write {}", dir.join("workload.yaml").display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let test = Test {
        opts,
        w: &workload,
        seed,
        server_bin: &server_bin,
        dir: &dir,
        cancel,
    };
    let outcome = rt.block_on(test.run());
    rt.shutdown_timeout(Duration::from_secs(2));
    outcome
}

/// One test in progress: what every phase reads.
struct Test<'a> {
    opts: &'a RunOptions,
    w: &'a Workload,
    seed: u64,
    server_bin: &'a Path,
    dir: &'a Path,
    /// Cancelled on Ctrl-C.
    cancel: CancellationToken,
}

/// What the phases between start and stop established.
#[derive(Default)]
struct Phases {
    start_error: Option<String>,
    recovery_error: Option<String>,
    recovered: bool,
    /// End of the client phase (ns since the start of the test).
    client_phase_end: Option<u64>,
    final_reads: FinalReads,
    convergence: Option<Convergence>,
    unexpected_exits: Vec<String>,
    stray_connections: Option<usize>,
}

impl Test<'_> {
    async fn run(self) -> Result<RunOutcome> {
        let started_at = crate::store::timestamp(std::time::SystemTime::now());
        let db = db::open(self.w, self.server_bin, self.dir)?;
        let recorder = Recorder::new();
        let nemesis_state = Arc::new(Mutex::new(NemesisState::default()));
        let mut phases = Phases::default();
        let env = FaultEnv::new(self.w.cluster.fail_rate, Duration::from_millis(500));
        for (k, spec) in self.w.nemesis.iter().enumerate() {
            let fault = crate::nemesis::fault_for(spec, &env, 0);
            fault
                .check_available(&db)
                .with_context(|| format!("nemesis.{k}: fault {} is not available", fault.name()))?;
        }
        db.procs().start_all()?;
        match self.wait_started(&db).await {
            Err(e) => phases.start_error = Some(format!("{e:#}")),
            Ok(()) => {
                let nemesis = Nemesis {
                    db: db.clone(),
                    recorder: recorder.clone(),
                    state: nemesis_state.clone(),
                    env,
                    stop: self.cancel.child_token(),
                };
                phases.client_phase_end = Some(self.clients_and_nemesis(&db, &nemesis).await?);
                phases.unexpected_exits = self.heal(&db, &nemesis).await;
                self.final_phase(&db, &recorder, &mut phases).await;
            }
        }
        phases.stray_connections = db.network().map(|n| n.strangers());
        db.stop_all(Duration::from_secs(3)).await;
        if let Err(e) = db.collect_files().await {
            eprintln!("harness: cannot collect the nodes' files: {e:#}");
        }
        // Shared with the checker's blocking task rather than copied: a
        // history can hold millions of ops.
        let history = Arc::new(recorder.snapshot());
        let windows = nemesis_state
            .lock()
            .map(|s| s.windows.clone())
            .unwrap_or_default();
        let client_phase_end = phases.client_phase_end.unwrap_or_else(|| recorder.now());
        self.write_history(&history)?;
        let lin = self.check(&history, phases.start_error.is_none()).await;
        let results = self.results(
            started_at,
            phases,
            lin,
            &history,
            &windows,
            client_phase_end,
        );
        self.write_reports(&results, &history, &windows, client_phase_end)
    }

    /// Phase 1 (after every node is started): wait for a coordinator (or a
    /// Ctrl-C, or a node that exits during startup).
    async fn wait_started(&self, db: &Db) -> Result<()> {
        tokio::select! {
            r = db.api.wait_ready(self.w.cluster.startup_timeout.0) => r.map(|_| ()),
            _ = self.cancel.cancelled() => Err(anyhow::anyhow!("interrupted")),
            e = startup_crash(db) => Err(anyhow::anyhow!(e)),
        }
    }

    /// Phase 2: the client workers and the nemesis schedules, for the
    /// workload's duration; returns the end of the client phase.
    async fn clients_and_nemesis(&self, db: &Db, nemesis: &Nemesis) -> Result<u64> {
        let w = self.w;
        let recorder = &nemesis.recorder;
        let counters = Arc::new(Counters::default());
        let clients_start = Instant::now();
        let deadline = clients_start + w.duration.0;
        let pace = w
            .clients
            .rate
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(w.clients.concurrency as f64 / r));
        let addrs = db.addrs();
        let mut clients = Vec::new();
        for i in 0..w.clients.concurrency {
            let node = i % addrs.len();
            let worker = Worker {
                index: i,
                concurrency: w.clients.concurrency,
                addr: addrs[node].clone(),
                client: db.api.client(node, w.clients.request_timeout.0)?,
                generator: Generator::new(&w.operations, self.seed, i),
                recorder: recorder.clone(),
                request_timeout: w.clients.request_timeout.0,
                backoff: w.clients.backoff.0,
                pace,
                deadline,
                stop: nemesis.stop.clone(),
                counters: counters.clone(),
            };
            clients.push(tokio::spawn(worker.run()));
        }
        let schedules: Vec<_> = w
            .nemesis
            .iter()
            .enumerate()
            .map(|(k, spec)| {
                tokio::spawn(nemesis.clone().run_schedule(
                    spec.clone(),
                    clients_start,
                    w.duration.0,
                    self.seed.wrapping_add(1000 + k as u64),
                ))
            })
            .collect();
        let bar_done = CancellationToken::new();
        let bar = crate::progress::spawn(
            self.opts.progress,
            w.duration.0,
            counters,
            nemesis.state.clone(),
            bar_done.clone(),
        );
        for h in clients {
            let _ = h.await;
        }
        let end = recorder.now();
        // The clients are done: scheduled faults stop (and heal) now.
        nemesis.stop.cancel();
        for h in schedules {
            let _ = h.await;
        }
        bar_done.cancel();
        bar.finish_and_clear();
        Ok(end)
    }

    /// Phase 3: heal every fault; restart the nodes that exited on their
    /// own (returned, one line each: they make the verdict unknown).
    async fn heal(&self, db: &Db, nemesis: &Nemesis) -> Vec<String> {
        nemesis.heal_all().await;
        let crashed: Vec<String> = {
            let mut p = db.procs();
            (0..p.node_count())
                .filter_map(|i| {
                    p.check_exited(i)
                        .map(|st| format!("n{i} exited on its own ({st}); see n{i}.log"))
                })
                .collect()
        };
        if !crashed.is_empty() {
            // Restart crashed replicas so the final phase sees them all.
            nemesis.heal_all().await;
        }
        crashed
    }

    /// Phase 4: wait for recovery, read every key through every node, wait
    /// for convergence. Skipped from where a Ctrl-C stops it.
    async fn final_phase(&self, db: &Db, recorder: &Recorder, phases: &mut Phases) {
        let w = self.w;
        if self.cancel.is_cancelled() {
            return;
        }
        let recovery = tokio::select! {
            r = db.api.wait_ready(w.final_phase.recovery_timeout.0) => r,
            _ = self.cancel.cancelled() => return,
        };
        match recovery {
            Ok(_) => phases.recovered = true,
            Err(e) => phases.recovery_error = Some(format!("{e:#}")),
        }
        if !self.cancel.is_cancelled() && w.final_phase.reads {
            phases.final_reads = final_phase::final_reads(w, db, recorder, &self.cancel).await;
        }
        if !self.cancel.is_cancelled() && w.checkers.convergence && db.api.converges_by_digest() {
            let timeout = w.final_phase.convergence_timeout.0;
            tokio::select! {
                c = final_phase::wait_convergence(db, timeout) => phases.convergence = Some(c),
                _ = self.cancel.cancelled() => {}
            }
        }
    }

    fn write_history(&self, history: &History) -> Result<()> {
        let path = self.dir.join("history.edn");
        history
            .write_file(&path)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Phase 5: the linearizability check of the in-memory history.
    async fn check(&self, history: &Arc<History>, started: bool) -> Option<LinResult> {
        if !started || !self.w.checkers.linearizable {
            return None;
        }
        let (h, dir, limit, all_keys) = (
            Arc::clone(history),
            self.dir.to_path_buf(),
            self.w.checkers.time_limit.0,
            self.w.checkers.all_keys,
        );
        tokio::task::spawn_blocking(move || check::check_history_with(&h, &dir, limit, all_keys))
            .await
            .ok()
    }

    /// The verdict and everything results.json holds.
    fn results(
        &self,
        started_at: String,
        phases: Phases,
        lin: Option<LinResult>,
        history: &History,
        windows: &[Window],
        client_phase_end: u64,
    ) -> Results {
        let interrupted = self.cancel.is_cancelled();
        let corruptions = results::corruptions(history);
        let (verdict, reasons) = verdict::verdict(&verdict::Facts {
            start_error: phases.start_error.clone(),
            interrupted,
            recovery_error: phases.recovery_error.clone(),
            linearizability: lin.as_ref(),
            convergence: phases.convergence.as_ref().map(|c| c.status),
            unexpected_exits: &phases.unexpected_exits,
            undetected_corruptions: corruptions.as_ref().map_or(0, |c| c.started),
        });
        let ops = client_ops(history);
        let w = self.w;
        Results {
            workload: w.name().to_string(),
            seed: self.seed,
            verdict,
            exit_code: verdict.exit_code(),
            reasons,
            dir: self.dir.display().to_string(),
            started_at,
            server_bin: self.server_bin.display().to_string(),
            replicas: w.cluster.replicas,
            read_mode: match &w.db {
                crate::workload::DbSpec::Etcd(e) => {
                    format!("etcd {:?}", e.read_mode).to_lowercase()
                }
                _ => w.cluster.read_mode.as_str().into(),
            },
            interrupted,
            recovered: phases.recovered,
            linearizability: lin,
            convergence: phases.convergence,
            final_reads: phases.final_reads,
            stats: results::stats(history, &ops, client_phase_end),
            faults: windows.to_vec(),
            availability: if windows.is_empty() {
                Vec::new()
            } else {
                results::availability(history, &ops, windows, client_phase_end)
            },
            unexpected_exits: phases.unexpected_exits,
            corruptions,
            stray_connections: phases.stray_connections,
            history_ops: history.ops.len(),
        }
    }

    /// Phase 6: results.json, the plots, the summary.
    fn write_reports(
        &self,
        results: &Results,
        history: &History,
        windows: &[Window],
        client_phase_end: u64,
    ) -> Result<RunOutcome> {
        let (w, dir) = (self.w, self.dir);
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_string_pretty(results).unwrap_or_default(),
        )
        .with_context(|| format!("cannot write {}", dir.join("results.json").display()))?;
        if w.checkers.perf {
            let ops = client_ops(history);
            // The end of the history (the final reads), not "now": the check
            // may have taken long.
            let end = history
                .ops
                .last()
                .and_then(|o| o.time())
                .unwrap_or(0)
                .max(0) as u64;
            let end = end.max(client_phase_end);
            let latency = plots::latency_svg(
                &dir.join("latency.svg"),
                w.name(),
                history,
                &ops,
                windows,
                end,
            );
            if let Err(e) = latency {
                eprintln!("harness: latency.svg: {e:#}");
            }
            let rate =
                plots::rate_svg(&dir.join("rate.svg"), w.name(), history, &ops, windows, end);
            if let Err(e) = rate {
                eprintln!("harness: rate.svg: {e:#}");
            }
        }
        let text = summary::render(results, w.description.as_deref());
        let _ = std::fs::write(dir.join("summary.txt"), &text);
        if self.opts.print_summary {
            println!("{text}");
        }
        Ok(RunOutcome {
            dir: dir.to_path_buf(),
            results: results.clone(),
            summary: text,
        })
    }
}

/// The recorder's history paired into client ops. The recorder writes one
/// op at a time per process, so pairing cannot fail; if it did, the stats
/// would be empty and the checker (which pairs too) would say why.
fn client_ops(history: &History) -> Vec<pairing::ClientOp<'_>> {
    pairing::pair(history).unwrap_or_default()
}

/// Resolves when a node exits during startup (a bad flag, a port in use),
/// with its exit status and the tail of its log.
async fn startup_crash(db: &Db) -> String {
    loop {
        // Off the async threads: asking a remote node is a round trip.
        let procs = db.procs.clone();
        let crash = tokio::task::spawn_blocking(move || {
            let mut p = procs.lock().unwrap_or_else(|e| e.into_inner());
            for i in 0..p.node_count() {
                if let Some(st) = p.check_exited(i) {
                    let log_path = p.files(i).log_path;
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    return Some(format!(
                        "n{i} exited during startup ({st}); the end of {}:\n    {}",
                        log_path.display(),
                        tail.join("\n    ")
                    ));
                }
            }
            None
        })
        .await;
        if let Ok(Some(why)) = crash {
            return why;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
