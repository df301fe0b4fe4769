//! The linearizability check of a run's history, through the checker. The
//! history is the recorder's, in memory (history.edn is written beside it,
//! not read back).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::history::History;

/// The verdict of the linearizability check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinVerdict {
    Linearizable,
    NotLinearizable,
    Unknown,
}

/// One key that is not linearizable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvalidKey {
    pub key: String,
    /// The anomaly's kind ([`crate::report::explain::Anomaly::name`]).
    pub anomaly: String,
    /// Why, in one sentence ([`crate::report::explain::explain`]).
    pub why: String,
    /// The checker's explanation (the op that cannot be linearized, the
    /// longest linearizable prefix), with `why` as its second line.
    pub explanation: String,
    /// File name of its timeline in the run dir.
    pub timeline: Option<String>,
}

/// What the checker found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinResult {
    pub verdict: LinVerdict,
    pub keys_checked: usize,
    pub invalid: Vec<InvalidKey>,
    /// Keys whose search ran out of budget.
    pub unknown_keys: Vec<String>,
    pub elapsed_ms: u64,
    /// Why the check could not run, if it could not.
    pub error: Option<String>,
    /// The checker's full report (per key: ops, verdict, search states and
    /// time, violation with the ops involved).
    pub report: Option<serde_json::Value>,
}

/// Checks `h` with the `kv` model (per key, in parallel); writes a
/// `timeline-<key>.html` for each invalid key into `dir`.
pub fn check_history(h: &History, dir: &Path, time_limit: Duration) -> LinResult {
    check_history_with(h, dir, time_limit, false)
}

/// [`check_history`]; `all_keys` (the workload's `checkers.all_keys`) asks
/// for every key's verdict instead of stopping at the first invalid key.
pub fn check_history_with(
    h: &History,
    dir: &Path,
    time_limit: Duration,
    all_keys: bool,
) -> LinResult {
    use crate::checker::{check, Budget, CheckOptions, ModelKind, Verdict};
    use crate::report::timeline;
    let started = std::time::Instant::now();
    let options = CheckOptions {
        model: Some(ModelKind::Kv),
        budget: Budget {
            time_limit: Some(time_limit),
            ..Budget::default()
        },
        parallel: true,
        all_keys,
        ..CheckOptions::default()
    };
    let report = match check(h, &options) {
        Ok(r) => r,
        Err(e) => {
            return LinResult {
                verdict: LinVerdict::Unknown,
                keys_checked: 0,
                invalid: vec![],
                unknown_keys: vec![],
                elapsed_ms: started.elapsed().as_millis() as u64,
                error: Some(format!("cannot check the history: {e}")),
                report: None,
            }
        }
    };
    let key_name = |k: &Option<crate::history::Value>| match k {
        Some(crate::history::Value::Str(s)) => s.to_string(),
        Some(v) => v.to_string(),
        None => "register".to_string(),
    };
    let mut invalid = Vec::new();
    for v in report.violations() {
        let file = timeline::file_name(v);
        let written = timeline::write(dir.join(&file), h, v).is_ok();
        let why = crate::report::explain::explain(h, v);
        invalid.push(InvalidKey {
            key: key_name(&v.key),
            anomaly: why.anomaly.name().to_string(),
            why: why.text,
            explanation: crate::report::explain::report_text(h, v),
            timeline: written.then_some(file),
        });
    }
    let unknown_keys = report
        .keys
        .iter()
        // Keys stopped because another key was invalid are not undecided.
        .filter(|k| {
            k.verdict == Verdict::Unknown
                && k.exhausted != Some(crate::checker::Exhausted::Cancelled)
        })
        .map(|k| key_name(&k.key))
        .collect();
    LinResult {
        verdict: match report.verdict() {
            Verdict::Linearizable => LinVerdict::Linearizable,
            Verdict::NotLinearizable => LinVerdict::NotLinearizable,
            Verdict::Unknown => LinVerdict::Unknown,
        },
        keys_checked: report.keys.len(),
        invalid,
        unknown_keys,
        elapsed_ms: started.elapsed().as_millis() as u64,
        error: None,
        report: Some(report.to_json()),
    }
}
