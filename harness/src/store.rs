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

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

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
