//! The HTML pages of `harness serve`: the list of runs and one run's page.
//! Plain HTML and CSS, no script; every value from the store is escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::timeline::escape;
use crate::store::StoredRun;

use super::paths::encode;

/// Which runs the list shows (the page's query string).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `valid`, `anomaly`, `unknown` or `incomplete` ([`StoredRun::verdict_name`]).
    pub verdict: Option<String>,
    /// A workload's dir name.
    pub workload: Option<String>,
}

impl Filter {
    pub fn from_query(query: &str) -> Filter {
        Filter {
            verdict: super::paths::query_param(query, "verdict"),
            workload: super::paths::query_param(query, "workload"),
        }
    }

    pub fn admits(&self, run: &StoredRun) -> bool {
        self.verdict
            .as_deref()
            .is_none_or(|v| v == run.verdict_name())
            && self.workload.as_deref().is_none_or(|w| w == run.workload)
    }
}

const STYLE: &str = r#"<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; }
th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict-valid { color: #2e7d32; font-weight: bold; }
.verdict-anomaly { color: #c62828; font-weight: bold; }
.verdict-unknown { color: #ef6c00; font-weight: bold; }
.verdict-incomplete { color: #777; font-style: italic; }
.problems { color: #777; font-size: 90%; }
pre { background: #f7f7f7; padding: .8em; border: 1px solid #ddd; overflow-x: auto; }
.why { background: #f3e5f5; border-left: 4px solid #6a1b9a; padding: .4em .6em; }
img { max-width: 100%; border: 1px solid #ddd; margin: .3em 0; }
</style>"#;

/// `20261125T130501.123Z` as `2026-11-25 13:05:01.123 UTC`; other names as
/// they are.
fn display_time(name: &str) -> String {
    let b = name.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    if b.len() >= 20 && digits(0..8) && b[8] == b'T' && digits(9..15) && b[15] == b'.' {
        format!(
            "{}-{}-{} {}:{}:{}.{} UTC{}",
            &name[0..4],
            &name[4..6],
            &name[6..8],
            &name[9..11],
            &name[11..13],
            &name[13..15],
            &name[16..19],
            name.get(20..)
                .map(|s| if s.is_empty() {
                    String::new()
                } else {
                    format!(" ({s})")
                })
                .unwrap_or_default()
        )
    } else {
        name.to_string()
    }
}

/// The faults of a run, by kind: `pause ×3, fail-rate ×3`.
fn faults(run: &StoredRun) -> String {
    let Some(r) = &run.results else {
        return String::new();
    };
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for w in &r.faults {
        *by.entry(w.fault.as_str()).or_default() += 1;
    }
    let v: Vec<String> = by.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The link to a run's page.
pub fn run_href(run: &StoredRun) -> String {
    format!("/run/{}/{}", encode(&run.workload), encode(&run.name))
}

/// The link to a file of a run.
pub fn file_href(run: &StoredRun, file: &str) -> String {
    format!(
        "/files/{}/{}/{}",
        encode(&run.workload),
        encode(&run.name),
        encode(file)
    )
}

fn select(out: &mut String, name: &str, label: &str, options: &[String], chosen: Option<&str>) {
    let _ = write!(
        out,
        r#"<label>{label} <select name="{name}"><option value="">all</option>"#
    );
    for o in options {
        let sel = if chosen == Some(o.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, r#"<option{sel}>{}</option>"#, escape(o));
    }
    out.push_str("</select></label> ");
}

/// The list of runs: every run of `runs` (newest first) that `filter`
/// admits, with a form to change the filter.
pub fn list(store: &str, runs: &[StoredRun], filter: &Filter) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>harness runs</title>{STYLE}</head><body>
<h1>Runs in {}</h1>
<form method="get" action="/">"#,
        escape(store)
    );
    let verdicts: Vec<String> = ["valid", "anomaly", "unknown", "incomplete"]
        .map(String::from)
        .to_vec();
    let mut workloads: Vec<String> = runs.iter().map(|r| r.workload.clone()).collect();
    workloads.sort();
    workloads.dedup();
    select(
        &mut out,
        "verdict",
        "verdict",
        &verdicts,
        filter.verdict.as_deref(),
    );
    select(
        &mut out,
        "workload",
        "workload",
        &workloads,
        filter.workload.as_deref(),
    );
    out.push_str(r#"<button type="submit">filter</button> <a href="/">all runs</a></form>"#);
    let shown: Vec<&StoredRun> = runs.iter().filter(|r| filter.admits(r)).collect();
    let _ = write!(
        out,
        "<p>{} of {} runs, newest first.</p>\n<table id=\"runs\"><tr><th>started</th><th>workload</th><th>verdict</th><th>ops</th><th>ok/s</th><th>faults</th><th></th></tr>\n",
        shown.len(),
        runs.len()
    );
    for run in shown {
        let verdict = run.verdict_name();
        let (ops, rate) = match &run.results {
            Some(r) => (
                r.stats.overall.ops.to_string(),
                format!("{:.1}", r.stats.overall.throughput),
            ),
            None => (String::new(), String::new()),
        };
        let problems = if run.problems.is_empty() {
            String::new()
        } else {
            format!("incomplete: {}", run.problems.join(", "))
        };
        let _ = writeln!(
            out,
            r#"<tr class="run" data-workload="{w}" data-verdict="{verdict}"><td><a class="run-link" href="{href}">{time}</a></td><td>{w}</td><td class="verdict-{verdict}">{verdict}</td><td class="num">{ops}</td><td class="num">{rate}</td><td>{faults}</td><td class="problems">{problems}</td></tr>"#,
            w = escape(&run.workload),
            href = run_href(run),
            time = escape(&display_time(&run.name)),
            faults = escape(&faults(run)),
            problems = escape(&problems),
        );
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

/// One run: verdict and reasons, what is missing, the invalid keys with
/// their explanation and timeline, the summary, the plots and every file.
pub fn run_page(run: &StoredRun) -> String {
    let mut out = String::new();
    let verdict = run.verdict_name();
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{w} {n}</title>{STYLE}</head><body>
<p><a href="/">all runs</a></p>
<h1>{w} <small>{t}</small></h1>
<p>verdict: <span class="verdict-{verdict}">{verdict}</span></p>
"#,
        w = escape(&run.workload),
        n = escape(&run.name),
        t = escape(&display_time(&run.name)),
    );
    if !run.problems.is_empty() {
        out.push_str("<h2>Incomplete</h2><ul class=\"problems\">");
        for p in &run.problems {
            let _ = write!(out, "<li>{}</li>", escape(p));
        }
        out.push_str("</ul>\n");
    }
    if let Some(r) = &run.results {
        if !r.reasons.is_empty() {
            out.push_str("<ul class=\"reasons\">");
            for reason in &r.reasons {
                let _ = write!(out, "<li>{}</li>", escape(reason));
            }
            out.push_str("</ul>\n");
        }
        let invalid = r.linearizability.iter().flat_map(|l| &l.invalid);
        for k in invalid {
            let _ = write!(
                out,
                r#"<p class="why">key <b>{}</b>, {}: {}"#,
                escape(&k.key),
                escape(&k.anomaly),
                escape(&k.why)
            );
            if let Some(t) = k
                .timeline
                .as_deref()
                .filter(|t| run.files.iter().any(|f| f == t))
            {
                let _ = write!(
                    out,
                    r#" <a class="timeline" href="{}">timeline</a>"#,
                    file_href(run, t)
                );
            }
            out.push_str("</p>\n");
        }
    }
    if run.files.iter().any(|f| f == "summary.txt") {
        let text = std::fs::read_to_string(run.dir.join("summary.txt")).unwrap_or_default();
        let _ = writeln!(out, "<h2>Summary</h2><pre>{}</pre>", escape(&text));
    }
    let plots: Vec<&String> = run.files.iter().filter(|f| f.ends_with(".svg")).collect();
    if !plots.is_empty() {
        out.push_str("<h2>Plots</h2>");
        for p in plots {
            let _ = write!(
                out,
                r#"<div><img src="{}" alt="{}"></div>"#,
                file_href(run, p),
                escape(p)
            );
        }
        out.push('\n');
    }
    out.push_str("<h2>Files</h2><ul id=\"files\">");
    for f in &run.files {
        let _ = write!(
            out,
            r#"<li><a href="{}">{}</a></li>"#,
            file_href(run, f),
            escape(f)
        );
    }
    out.push_str("</ul>\n</body></html>\n");
    out
}

/// A page saying what was not found.
pub fn not_found(path: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>not found</title>{STYLE}</head><body><h1>404 not found</h1><p>{}</p><p><a href=\"/\">all runs</a></p></body></html>\n",
        escape(path)
    )
}
