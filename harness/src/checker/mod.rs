//! The linearizability checker: is a history explainable by a sequential model?
//!
//! Pipeline of [`check`]:
//! 1. pair events into client ops with Jepsen's rules ([`crate::history::pairing`]);
//! 2. pick the model ([`ModelKind`], inferred from the ops when not given) and
//!    split the ops into independent partitions, one per key
//!    ([`cas_register::partition`], [`kv::partition`]);
//! 3. search each partition for a linearization ([`linearizable::search`]), in
//!    parallel across cores (rayon), each within a [`Budget`];
//! 4. report per key: linearizable, not (with a [`Violation`]: the op that
//!    cannot be linearized, the ops pending with it, the longest linearizable
//!    prefix and the model state there), or unknown (budget exhausted).
//!    [`CheckReport::to_json`] gives it all for `results.json`;
//!    [`Violation::render_text`] and [`crate::report::timeline`] for humans.
//!
//! Design notes and benchmark figures: `harness/CHECKER.md`.
//!
//! ```no_run
//! use harness::checker::{check, CheckOptions, Verdict};
//! use harness::history::History;
//! let history = History::from_file("history.edn")?;
//! let report = check(&history, &CheckOptions::default())?;
//! if report.verdict() == Verdict::NotLinearizable {
//!     for v in report.violations() {
//!         eprintln!("{}", v.render_text(&history));
//!         let html = harness::report::timeline::render(&history, v);
//!         std::fs::write("timeline.html", html)?;
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cas_register;
pub mod kv;
pub mod linearizable;
pub mod model;
pub mod synth;
pub mod unique;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;

pub use linearizable::{Budget, Exhausted, Interrupt, SearchResult, SearchStats};
pub use model::{Model, ModelError, Partition, SearchOp};

use crate::history::pairing::PairingError;
use crate::history::{ClientOp, History, HistoryError, Outcome, Value};

/// Which sequential model to check against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// One register: `:read`, `:write`, `:cas [old new]`, starts `nil`.
    CasRegister,
    /// Independent keys: values `[key v]`, see [`kv`].
    Kv,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::CasRegister => "cas-register",
            ModelKind::Kv => "kv",
        }
    }

    /// Guesses the model from the ops: kv op names or `[key v]` values → kv,
    /// otherwise cas-register.
    pub fn infer(ops: &[ClientOp<'_>]) -> ModelKind {
        if kv::looks_like_kv(ops) {
            ModelKind::Kv
        } else {
            ModelKind::CasRegister
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cas-register" | "register" | "cas" => Ok(ModelKind::CasRegister),
            "kv" => Ok(ModelKind::Kv),
            _ => Err(format!("unknown model `{s}` (expected kv or cas-register)")),
        }
    }
}

/// How to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// The model; `None` infers it from the ops.
    pub model: Option<ModelKind>,
    /// Limits for each key's search.
    pub budget: Budget,
    /// Check keys in parallel (rayon's global pool).
    pub parallel: bool,
    /// Decide every key. By default the first key found not linearizable
    /// decides the history and the other keys' searches are stopped.
    pub all_keys: bool,
    /// Use the polynomial check of [`unique`] where the key's values allow
    /// it (the search otherwise). Off: always search (for comparisons).
    pub fast_paths: bool,
    /// The value the register (each key) starts with; `None` is `nil`
    /// (Knossos' cas register starts at 0).
    pub initial: Option<Value>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            model: None,
            budget: Budget::default(),
            parallel: true,
            all_keys: false,
            fast_paths: true,
            initial: None,
        }
    }
}

/// How a key was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// The WGL search ([`linearizable`]).
    Search,
    /// The polynomial check for unique values ([`unique`]).
    UniqueValues,
    /// Not checked (stopped before it started).
    None,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Search => "wgl-search",
            Method::UniqueValues => "unique-values",
            Method::None => "none",
        }
    }
}

/// The verdict for a key or a whole history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// The search ran out of budget.
    Unknown,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable => "NOT linearizable",
            Verdict::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A client op named in a report.
#[derive(Debug, Clone, PartialEq)]
pub struct OpRef {
    /// Position of the invocation in [`History::ops`].
    pub invoke: usize,
    /// Position of the completion, if any.
    pub complete: Option<usize>,
    pub process: i64,
    pub f: String,
    pub outcome: Outcome,
    /// What it asked for (the invocation's value).
    pub input: Value,
    /// What it observed (an `:ok` completion's value).
    pub output: Option<Value>,
}

impl OpRef {
    fn new(op: &ClientOp<'_>) -> OpRef {
        OpRef {
            invoke: op.invoke,
            complete: op.complete,
            process: op.process,
            f: op.f.to_string(),
            outcome: op.outcome,
            input: op.input().clone(),
            output: op.output().cloned(),
        }
    }
}

impl fmt::Display for OpRef {
    /// `process 3 :cas [1 2] → :ok` / `process 2 :read → 4` / `... → :info`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process {} :{}", self.process, self.f)?;
        let is_read = matches!(self.f.as_str(), "read" | "get");
        // A read's input is only worth showing when it names something (a kv key).
        if !(is_read && (self.input.is_nil() || Some(&self.input) == self.output.as_ref())) {
            write!(f, " {}", self.input)?;
        }
        match (&self.output, self.outcome) {
            (Some(out), Outcome::Ok) if is_read => write!(f, " → {out}"),
            (_, Outcome::Ok) => write!(f, " → :ok"),
            (_, Outcome::Fail) => write!(f, " → :fail"),
            (_, Outcome::Info) if self.complete.is_some() => write!(f, " → :info"),
            (_, Outcome::Info) => write!(f, " → (no completion)"),
        }
    }
}

/// Why a key's ops have no linearization, at the deepest point the search reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The key (`None` for a single register).
    pub key: Option<Value>,
    pub model: ModelKind,
    /// The op that had to take effect before it returned but could not, after
    /// the longest prefix.
    pub op: OpRef,
    /// The ops invoked but not linearized at that point (ops of unknown outcome
    /// included); none could be linearized next without a dead end.
    pub pending: Vec<OpRef>,
    /// The longest linearizable prefix found, in linearization order.
    pub prefix: Vec<OpRef>,
    /// The model state after the prefix (EDN text, e.g. `nil`, `3`).
    pub state: String,
    /// Why, in words, when the polynomial check found it.
    pub reason: Option<String>,
}

impl Violation {
    /// The ops that could not be linearized: [`Violation::op`] then
    /// [`Violation::pending`].
    pub fn unlinearizable(&self) -> impl Iterator<Item = &OpRef> {
        std::iter::once(&self.op).chain(&self.pending)
    }

    /// A multi-line text report naming history lines; its `why:` line is
    /// the checker's own [`Violation::reason`], if any.
    pub fn render_text(&self, history: &History) -> String {
        self.render_text_with_why(history, self.reason.as_deref())
    }

    /// [`Violation::render_text`] with `why` as its one `why:` line (the
    /// report passes its explanation in words, which already draws on the
    /// checker's reason; see `crate::report::explain`).
    pub fn render_text_with_why(&self, history: &History, why: Option<&str>) -> String {
        use std::fmt::Write;
        let line = |op: &OpRef| {
            let complete = op
                .complete
                .map_or("never".to_string(), |c| history.line_of(c).to_string());
            format!("lines {}..{}", history.line_of(op.invoke), complete)
        };
        let mut s = String::new();
        let key = self
            .key
            .as_ref()
            .map_or("the register".to_string(), |k| format!("key {k}"));
        let _ = writeln!(s, "{key}: not linearizable (model {})", self.model);
        let _ = writeln!(
            s,
            "  cannot linearize: {} ({}): it must take effect before it returned, and no order of the ops allows that",
            self.op,
            line(&self.op)
        );
        if let Some(why) = why {
            let _ = writeln!(s, "  why: {why}");
        }
        if !self.pending.is_empty() {
            let _ = writeln!(s, "  also pending then (none fits next):");
            for op in &self.pending {
                let _ = writeln!(s, "    {} ({})", op, line(op));
            }
        }
        let _ = writeln!(
            s,
            "  longest linearizable prefix: {} ops, state after it: {}",
            self.prefix.len(),
            self.state
        );
        const SHOWN: usize = 8;
        if self.prefix.len() > SHOWN {
            let _ = writeln!(s, "    ... {} earlier ops", self.prefix.len() - SHOWN);
        }
        for op in self
            .prefix
            .iter()
            .skip(self.prefix.len().saturating_sub(SHOWN))
        {
            let _ = writeln!(s, "    {} ({})", op, line(op));
        }
        s
    }
}

/// The result for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyReport {
    /// The key (`None` for a single register).
    pub key: Option<Value>,
    /// Ops of this key given to the search (`:fail` ops and unknown reads excluded).
    pub ops: usize,
    pub verdict: Verdict,
    /// Set when the verdict is [`Verdict::NotLinearizable`].
    pub violation: Option<Violation>,
    /// Set when the verdict is [`Verdict::Unknown`].
    pub exhausted: Option<Exhausted>,
    pub stats: SearchStats,
    /// How the verdict was reached.
    pub method: Method,
    /// Why the polynomial check did not apply, when it did not.
    pub note: Option<String>,
}

/// The result for a history.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub model: ModelKind,
    /// True when the model was inferred rather than given.
    pub model_inferred: bool,
    /// Client ops (invocations), by outcome.
    pub ops: usize,
    pub ok: usize,
    pub failed: usize,
    pub info: usize,
    /// One report per key, sorted by key.
    pub keys: Vec<KeyReport>,
    pub elapsed: Duration,
}

impl CheckReport {
    /// Not linearizable if any key is; else unknown if any key is; else linearizable.
    pub fn verdict(&self) -> Verdict {
        let any = |v| self.keys.iter().any(|k| k.verdict == v);
        if any(Verdict::NotLinearizable) {
            Verdict::NotLinearizable
        } else if any(Verdict::Unknown) {
            Verdict::Unknown
        } else {
            Verdict::Linearizable
        }
    }

    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.keys.iter().filter_map(|k| k.violation.as_ref())
    }
}

/// Why a history could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Pairing(#[from] PairingError),
    #[error("line {line}: expected {message}")]
    Model { line: usize, message: String },
}

/// Checks a history for linearizability.
pub fn check(history: &History, options: &CheckOptions) -> Result<CheckReport, CheckError> {
    let started = Instant::now();
    let ops = history.client_ops()?;
    let (model, model_inferred) = match options.model {
        Some(m) => (m, false),
        None => (ModelKind::infer(&ops), true),
    };
    let model_error = |e: ModelError| CheckError::Model {
        line: history.line_of(e.invoke),
        message: e.message,
    };
    let initial = options.initial.as_ref();
    let count = |o| ops.iter().filter(|op| op.outcome == o).count();
    let (total, ok, failed, info) = (
        ops.len(),
        count(Outcome::Ok),
        count(Outcome::Fail),
        count(Outcome::Info),
    );
    // The client ops are freed once the history is split (each partition
    // has what its checks need); reports pair the history again.
    let reported = ReportedOps::new(history);
    let keys = match model {
        // Jepsen's `independent` tuples: one register per key.
        ModelKind::CasRegister if kv::looks_independent(&ops) => {
            let parts = kv::partition_from(&ops, initial).map_err(model_error)?;
            drop(ops);
            check_partitions(parts, &reported, model, options, started)
        }
        ModelKind::CasRegister => {
            let parts = cas_register::partition_from(&ops, initial).map_err(model_error)?;
            drop(ops);
            check_partitions(parts, &reported, model, options, started)
        }
        ModelKind::Kv => {
            let parts = kv::partition_from(&ops, initial).map_err(model_error)?;
            drop(ops);
            check_partitions(parts, &reported, model, options, started)
        }
    };
    Ok(CheckReport {
        model,
        model_inferred,
        ops: total,
        ok,
        failed,
        info,
        keys,
        elapsed: started.elapsed(),
    })
}

/// The client ops of a checked history, for the reports of its violations.
///
/// A million client ops are 72 MB, and once the history is split nothing
/// but a report needs them: they are freed then and, when a violation
/// names some, the history is paired again (pairing is deterministic: the
/// same ops at the same indices as the partitions' `source`s).
struct ReportedOps<'h> {
    history: &'h History,
    ops: std::sync::OnceLock<Vec<ClientOp<'h>>>,
}

impl<'h> ReportedOps<'h> {
    fn new(history: &'h History) -> Self {
        ReportedOps {
            history,
            ops: std::sync::OnceLock::new(),
        }
    }

    /// The op the partitions call `source`.
    fn op_ref(&self, source: usize) -> OpRef {
        // The history paired once already, so it pairs again.
        let ops = self
            .ops
            .get_or_init(|| self.history.client_ops().unwrap_or_default());
        OpRef::new(&ops[source])
    }
}

/// Reads and checks a history file.
pub fn check_file(
    path: impl AsRef<std::path::Path>,
    options: &CheckOptions,
) -> Result<(History, CheckReport), CheckError> {
    let history = History::from_file(path)?;
    let report = check(&history, options)?;
    Ok((history, report))
}

/// Checks every key: first the polynomial check on all keys (cheap), then
/// the search on the keys it left, in rounds of growing state budgets, so
/// that easy keys are decided (and an invalid one ends the run) before any
/// hard key gets the whole budget.
fn check_partitions<M>(
    parts: Vec<Partition<M>>,
    ops: &ReportedOps<'_>,
    kind: ModelKind,
    options: &CheckOptions,
    started: Instant,
) -> Vec<KeyReport>
where
    M: unique::UniqueValues + Send,
{
    let cancel = AtomicBool::new(false);
    let interrupt = Interrupt {
        cancel: (!options.all_keys).then_some(&cancel),
        deadline: options.budget.time_limit.map(|t| (started + t, t)),
    };
    let mut keys: Vec<(Partition<M>, KeyReport)> = parts
        .into_iter()
        .map(|part| {
            let report = KeyReport {
                key: part.key.clone(),
                ops: part.ops.len(),
                verdict: Verdict::Unknown,
                violation: None,
                exhausted: None,
                stats: SearchStats::default(),
                method: Method::None,
                note: None,
            };
            (part, report)
        })
        .collect();
    let each = |keys: &mut Vec<(Partition<M>, KeyReport)>,
                step: &(dyn Fn(&mut Partition<M>, &mut KeyReport) + Sync)| {
        let run = |(part, report): &mut (Partition<M>, KeyReport)| {
            if report.verdict == Verdict::Unknown && !is_final(report) {
                step(part, report);
                if report.verdict == Verdict::NotLinearizable {
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        };
        if options.parallel && keys.len() > 1 {
            // One task per key (`with_max_len(1)`), so idle cores steal keys
            // instead of waiting for a chunk holding one big key.
            keys.par_iter_mut().with_max_len(1).for_each(run);
        } else {
            keys.iter_mut().for_each(run);
        }
    };
    if options.fast_paths {
        each(&mut keys, &|part, report| {
            fast_path(part, report, ops, kind, interrupt)
        });
    }
    let full = options.budget.max_states;
    let mut rounds: Vec<u64> = [20_000, 500_000]
        .into_iter()
        .filter(|&r| r < full)
        .collect();
    rounds.push(full);
    for (n, &max_states) in rounds.iter().enumerate() {
        let last = n + 1 == rounds.len();
        each(&mut keys, &|part, report| {
            search(
                part, report, ops, kind, options, interrupt, max_states, last,
            )
        });
    }
    // Keys stopped by the cancel flag, or never started.
    for (_, report) in &mut keys {
        if report.verdict == Verdict::Unknown && report.exhausted.is_none() {
            report.exhausted = interrupt.check().or(Some(Exhausted::Cancelled));
        }
    }
    keys.into_iter().map(|(_, report)| report).collect()
}

/// True once an undecided key will not be searched further.
fn is_final(report: &KeyReport) -> bool {
    !matches!(report.exhausted, None | Some(Exhausted::States(_)))
}

fn violation_of<M: Model<State = u32>>(
    part: &Partition<M>,
    ops: &ReportedOps<'_>,
    kind: ModelKind,
    stuck: linearizable::Stuck<u32>,
    reason: Option<String>,
) -> Violation {
    let op_ref = |i: usize| ops.op_ref(part.ops[i].source());
    Violation {
        key: part.key.clone(),
        model: kind,
        op: op_ref(stuck.op),
        pending: stuck.pending.iter().map(|&i| op_ref(i)).collect(),
        prefix: stuck.prefix.iter().map(|&i| op_ref(i)).collect(),
        state: part.model.describe_state(&stuck.state),
        reason,
    }
}

/// The budget of the search that fills in the report of a key the
/// polynomial check found not linearizable (its longest prefix).
const REPORT_BUDGET: Budget = Budget {
    max_states: 20_000,
    max_memory: 64 << 20,
    time_limit: Some(Duration::from_millis(50)),
};

fn fast_path<M: unique::UniqueValues>(
    part: &mut Partition<M>,
    report: &mut KeyReport,
    ops: &ReportedOps<'_>,
    kind: ModelKind,
    interrupt: Interrupt<'_>,
) {
    if let Some(why) = interrupt.check() {
        report.exhausted = Some(why);
        return;
    }
    let started = Instant::now();
    match unique::check(&mut part.model, &part.ops) {
        unique::Decision::Linearizable => {
            report.verdict = Verdict::Linearizable;
            report.method = Method::UniqueValues;
        }
        unique::Decision::NotLinearizable { stuck, reason } => {
            report.verdict = Verdict::NotLinearizable;
            report.method = Method::UniqueValues;
            // A short search usually finds the longest prefix for the report.
            let (result, _) =
                linearizable::search_until(&mut part.model, &part.ops, &REPORT_BUDGET, interrupt);
            let stuck = match result {
                SearchResult::NotLinearizable(found) => found,
                SearchResult::Linearizable { .. } => {
                    debug_assert!(false, "unique-values check disagrees with the search");
                    stuck
                }
                SearchResult::Unknown(_) => stuck,
            };
            report.violation = Some(violation_of(part, ops, kind, stuck, Some(reason)));
        }
        unique::Decision::NotApplicable(why) => report.note = Some(why),
    }
    report.stats.elapsed = started.elapsed();
}

#[allow(clippy::too_many_arguments)]
fn search<M: unique::UniqueValues>(
    part: &mut Partition<M>,
    report: &mut KeyReport,
    ops: &ReportedOps<'_>,
    kind: ModelKind,
    options: &CheckOptions,
    interrupt: Interrupt<'_>,
    max_states: u64,
    last_round: bool,
) {
    // The key's time limit counts all its rounds.
    let spent = report.stats.elapsed;
    let time_limit = options.budget.time_limit.map(|t| t.saturating_sub(spent));
    let budget = Budget {
        max_states,
        time_limit,
        ..options.budget
    };
    let (result, stats) =
        linearizable::search_until(&mut part.model, &part.ops, &budget, interrupt);
    report.method = Method::Search;
    report.stats = stats;
    report.stats.elapsed += spent;
    match result {
        SearchResult::Linearizable { .. } => {
            report.verdict = Verdict::Linearizable;
            report.exhausted = None;
        }
        SearchResult::Unknown(Exhausted::Time(_)) => {
            report.exhausted = options.budget.time_limit.map(Exhausted::Time);
        }
        SearchResult::Unknown(Exhausted::States(_)) if !last_round => {
            report.exhausted = Some(Exhausted::States(max_states));
        }
        SearchResult::Unknown(why) => report.exhausted = Some(why),
        SearchResult::NotLinearizable(stuck) => {
            report.verdict = Verdict::NotLinearizable;
            report.exhausted = None;
            report.violation = Some(violation_of(part, ops, kind, stuck, None));
        }
    }
}

impl OpRef {
    /// The op as JSON: process, f, input, output, outcome, history positions.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "process": self.process,
            "f": self.f,
            "input": self.input.to_string(),
            "output": self.output.as_ref().map(|v| v.to_string()),
            "outcome": match self.outcome {
                Outcome::Ok => "ok",
                Outcome::Fail => "fail",
                Outcome::Info => "info",
            },
            "invoke_index": self.invoke,
            "complete_index": self.complete,
        })
    }
}

impl Violation {
    /// The violation as JSON (values as EDN text); the prefix is cut to its
    /// last 20 ops (`prefix_len` gives the full length).
    pub fn to_json(&self) -> serde_json::Value {
        let tail = self.prefix.len().saturating_sub(20);
        serde_json::json!({
            "key": self.key.as_ref().map(|k| k.to_string()),
            "model": self.model.name(),
            "op": self.op.to_json(),
            "pending": self.pending.iter().map(OpRef::to_json).collect::<Vec<_>>(),
            "prefix_len": self.prefix.len(),
            "prefix_tail": self.prefix[tail..].iter().map(OpRef::to_json).collect::<Vec<_>>(),
            "state": self.state,
            "reason": self.reason,
        })
    }
}

impl CheckReport {
    /// The report as JSON, for `results.json`: verdict, counts, per-key
    /// results (values as EDN text), violations.
    pub fn to_json(&self) -> serde_json::Value {
        let verdict = |v: Verdict| match v {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable => "not-linearizable",
            Verdict::Unknown => "unknown",
        };
        serde_json::json!({
            "verdict": verdict(self.verdict()),
            "model": self.model.name(),
            "model_inferred": self.model_inferred,
            "ops": self.ops,
            "ok": self.ok,
            "fail": self.failed,
            "info": self.info,
            "elapsed_ms": self.elapsed.as_secs_f64() * 1e3,
            "keys": self.keys.iter().map(|k| serde_json::json!({
                "key": k.key.as_ref().map(|v| v.to_string()),
                "ops": k.ops,
                "verdict": verdict(k.verdict),
                "method": k.method.name(),
                "states": k.stats.states,
                "elapsed_ms": k.stats.elapsed.as_secs_f64() * 1e3,
                "unknown_reason": k.exhausted.as_ref().map(|e| e.to_string()),
                "violation": k.violation.as_ref().map(Violation::to_json),
            })).collect::<Vec<_>>(),
        })
    }
}
