//! The store: one directory per run, as Jepsen lays it out.
//!
//! ```text
//! store/
//!   latest -> smoke/20261125T130501.123Z      (symlink to the newest run)
//!   smoke/
//!     latest -> 20261125T130501.123Z
//!     20261125T130501.123Z/
//!       workload.yaml   the workload as run (seed filled in)
//!       history.edn     Jepsen EDN, one op a line
//!       results.json    verdict, checks, stats, latencies, faults
//!       summary.txt     the summary printed at the end
//!       latency.svg rate.svg
//!       timeline-<key>.html   for each key that is not linearizable
//!       n0.log n1.log ...     each replica's stderr
//!       n0/ n1/ ...           each replica's data dir
//! ```
//!
//! [`list_runs`] reads it back (for `harness serve`): every run dir with the
//! parts of its results.json a listing shows ([`StoredResults`]) and what is
//! missing or broken in it (a run still going, killed, or not ours).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::nemesis::Window;
use crate::report::results::Stats;
use crate::run::check::LinResult;
use crate::run::RunVerdict;

/// A UTC timestamp usable as a directory name: `20261125T130501.123Z`.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{dd:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Creates `root/<workload>/<timestamp>/` (unique even for runs started in
/// the same millisecond) and points `root/latest` and `root/<workload>/latest`
/// at it.
pub fn create_run_dir(root: &Path, workload: &str) -> Result<PathBuf> {
    let name = sanitize(workload);
    let base = root.join(&name);
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let stamp = timestamp(SystemTime::now());
    let mut dir = base.join(&stamp);
    let mut n = 1;
    while dir.exists() {
        dir = base.join(format!("{stamp}-{n}"));
        n += 1;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let leaf = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    relink(&root.join("latest"), &Path::new(&name).join(&leaf));
    relink(&base.join("latest"), Path::new(&leaf));
    Ok(dir)
}

/// Points the symlink `link` at `target` (relative), replacing it.
fn relink(link: &Path, target: &Path) {
    #[cfg(unix)]
    {
        let tmp = link.with_extension("tmp-link");
        let _ = std::fs::remove_file(&tmp);
        if std::os::unix::fs::symlink(target, &tmp).is_ok() {
            let _ = std::fs::rename(&tmp, link);
        }
    }
}

fn sanitize(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() || t == "." || t == ".." {
        "workload".into()
    } else {
        t
    }
}

/// The parts of a run's results.json (written from [`crate::run::Results`])
/// that a listing of the store shows. Fields other than the verdict may be
/// absent (a results.json of an older harness).
#[derive(Debug, Clone, Deserialize)]
pub struct StoredResults {
    pub verdict: RunVerdict,
    #[serde(default)]
    pub workload: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub stats: Stats,
    #[serde(default)]
    pub faults: Vec<Window>,
    #[serde(default)]
    pub linearizability: Option<LinResult>,
    #[serde(default)]
    pub history_ops: usize,
}

/// One run dir of the store, as [`list_runs`] found it.
#[derive(Debug, Clone)]
pub struct StoredRun {
    /// The workload's dir name (`smoke`).
    pub workload: String,
    /// The run's dir name (its start time, `20261125T130501.123Z`).
    pub name: String,
    pub dir: PathBuf,
    /// results.json, if it could be read.
    pub results: Option<StoredResults>,
    /// What is missing or broken (`no results.json`, `results.json: ...`,
    /// `no latency.svg`); empty for a complete run.
    pub problems: Vec<String>,
    /// The files of the run dir (names, sorted; data dirs left out).
    pub files: Vec<String>,
}

impl StoredRun {
    /// A run with everything a finished run writes.
    pub fn is_complete(&self) -> bool {
        self.problems.is_empty()
    }

    /// The verdict's name (`valid`, `anomaly`, `unknown`), or `incomplete`
    /// for a run without a readable results.json.
    pub fn verdict_name(&self) -> &'static str {
        match self.results.as_ref().map(|r| r.verdict) {
            Some(RunVerdict::Valid) => "valid",
            Some(RunVerdict::Anomaly) => "anomaly",
            Some(RunVerdict::Unknown) => "unknown",
            None => "incomplete",
        }
    }
}

/// Files every finished run dir holds.
const RUN_FILES: [&str; 4] = [
    "workload.yaml",
    "history.edn",
    "results.json",
    "summary.txt",
];
/// Plots of a run whose workload has `checkers.perf` (the default).
const PLOTS: [&str; 2] = ["latency.svg", "rate.svg"];

/// Every run dir under `root` (`root/<workload>/<run>/`), newest first (by
/// dir name, which is the start time; dirs not named so come last). The `latest` links and anything that
/// is not a directory are skipped; a run dir that cannot be read is listed
/// with its problems, never an error. Fails only if `root` itself cannot be
/// read.
pub fn list_runs(root: &Path) -> Result<Vec<StoredRun>> {
    let mut runs = Vec::new();
    for workload in
        real_dirs(root).with_context(|| format!("cannot read the store {}", root.display()))?
    {
        let Ok(names) = real_dirs(&root.join(&workload)) else {
            continue;
        };
        for name in names {
            runs.push(read_run(root, &workload, &name));
        }
    }
    // Timestamped dirs first, newest first; then any others (not ours).
    let stamped = |r: &StoredRun| {
        let n = r.name.as_bytes();
        n.len() >= 9 && n[..8].iter().all(u8::is_ascii_digit) && n[8] == b'T'
    };
    runs.sort_by(|a, b| {
        (stamped(b), &b.name)
            .cmp(&(stamped(a), &a.name))
            .then_with(|| a.workload.cmp(&b.workload))
    });
    Ok(runs)
}

/// Names of the directories in `dir` that are not symlinks, sorted.
fn real_dirs(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let Ok(e) = e else { continue };
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Reads the run dir `root/workload/name`.
pub fn read_run(root: &Path, workload: &str, name: &str) -> StoredRun {
    let dir = root.join(workload).join(name);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let has = |f: &str| files.iter().any(|x| x == f);
    let mut problems: Vec<String> = RUN_FILES
        .iter()
        .filter(|f| !has(f))
        .map(|f| format!("no {f}"))
        .collect();
    let results = if has("results.json") {
        match std::fs::read_to_string(dir.join("results.json")) {
            Err(e) => {
                problems.push(format!("results.json: {e}"));
                None
            }
            Ok(text) => match serde_json::from_str::<StoredResults>(&text) {
                Ok(r) => Some(r),
                Err(e) => {
                    problems.push(format!("results.json: {e}"));
                    None
                }
            },
        }
    } else {
        None
    };
    let perf = std::fs::read_to_string(dir.join("workload.yaml"))
        .ok()
        .and_then(|t| crate::workload::Workload::parse(&t, "workload.yaml").ok())
        .is_none_or(|w| w.checkers.perf);
    if results.is_some() && perf {
        problems.extend(PLOTS.iter().filter(|f| !has(f)).map(|f| format!("no {f}")));
    }
    let timelines = results
        .iter()
        .flat_map(|r| &r.linearizability)
        .flat_map(|l| &l.invalid)
        .filter_map(|k| k.timeline.as_deref());
    for t in timelines {
        if !has(t) {
            problems.push(format!("no {t}"));
        }
    }
    StoredRun {
        workload: workload.to_string(),
        name: name.to_string(),
        dir,
        results,
        problems,
        files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_and_sortable() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_075_901_123);
        assert_eq!(timestamp(t), "20251125T130501.123Z");
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000.000Z");
    }

    #[test]
    fn run_dirs_are_unique_and_latest_follows() {
        let tmp = tempfile::Builder::new()
            .prefix("harness-store-test-")
            .tempdir()
            .unwrap();
        let root = tmp.path().join("store");
        let a = create_run_dir(&root, "smoke").unwrap();
        let b = create_run_dir(&root, "smoke").unwrap();
        assert_ne!(a, b);
        let latest = std::fs::canonicalize(root.join("latest")).unwrap();
        assert_eq!(latest, std::fs::canonicalize(&b).unwrap());
    }
}
