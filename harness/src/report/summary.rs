//! The one-screen summary printed at the end of a run (and kept as
//! `summary.txt`).

use std::fmt::Write as _;

use crate::report::results::OpStats;
use crate::run::check::LinVerdict;
use crate::run::{Results, RunVerdict};

fn line(out: &mut String, name: &str, s: &OpStats) {
    let _ = writeln!(
        out,
        "  {name:<8} {:>7} {:>7} {:>6} {:>6} {:>9.1} {:>8.2} {:>8.2} {:>8.2}",
        s.ops,
        s.ok,
        s.fail,
        s.info,
        s.throughput,
        s.latency_ok.p50_ms,
        s.latency_ok.p99_ms,
        s.latency_ok.max_ms
    );
}

/// Renders the summary of a run.
pub fn render(r: &Results, description: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== {}  ({} replicas, read_mode {}, seed {})",
        r.workload, r.replicas, r.read_mode, r.seed
    );
    if let Some(d) = description {
        let _ = writeln!(out, "   {}", d.trim());
    }
    let _ = writeln!(out, "   store: {}", r.dir);
    let _ = writeln!(
        out,
        "\nops ({:.1} s of clients, {} history events)",
        r.stats.duration_s, r.history_ops
    );
    let _ = writeln!(
        out,
        "  {:<8} {:>7} {:>7} {:>6} {:>6} {:>9} {:>8} {:>8} {:>8}",
        "op", "total", "ok", "fail", "info", "ok/s", "p50 ms", "p99 ms", "max ms"
    );
    for (f, s) in &r.stats.by_f {
        line(&mut out, f, s);
    }
    line(&mut out, "all", &r.stats.overall);
    if !r.faults.is_empty() {
        let _ = writeln!(out, "\nfaults");
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for w in &r.faults {
            *counts.entry(w.fault.clone()).or_default() += 1;
        }
        let list: Vec<String> = counts.iter().map(|(f, n)| format!("{f} x{n}")).collect();
        let _ = writeln!(out, "  {}", list.join(", "));
        let avail: Vec<String> = r
            .availability
            .iter()
            .map(|a| format!("{} {:.1} ({:.1} s)", a.during, a.ok_per_s, a.seconds))
            .collect();
        if !avail.is_empty() {
            let _ = writeln!(out, "  ok/s during: {}", avail.join(", "));
        }
        if let Some(c) = &r.corruptions {
            let _ = writeln!(
                out,
                "  corrupt: {} refused at start, {} started on damaged data{}",
                c.refused,
                c.started,
                if c.started > 0 { " (UNDETECTED)" } else { "" }
            );
        }
    }
    if let Some(n) = r.stray_connections.filter(|&n| n > 0) {
        let _ = writeln!(
            out,
            "  link proxies: {n} connection(s) no node dialled, reset"
        );
    }
    let _ = writeln!(out, "\nchecks");
    match &r.linearizability {
        Some(l) => {
            let v = match l.verdict {
                LinVerdict::Linearizable => "linearizable".to_string(),
                LinVerdict::NotLinearizable => format!(
                    "NOT linearizable ({} of {} keys)",
                    l.invalid.len(),
                    l.keys_checked
                ),
                LinVerdict::Unknown => "unknown".to_string(),
            };
            let _ = writeln!(
                out,
                "  linearizability: {v} ({} keys, {} ms)",
                l.keys_checked, l.elapsed_ms
            );
            for k in l.invalid.iter().take(5) {
                let _ = writeln!(
                    out,
                    "    key {} ({}): {}{}",
                    k.key,
                    k.anomaly,
                    k.why,
                    k.timeline
                        .as_ref()
                        .map(|t| format!(" (see {t})"))
                        .unwrap_or_default()
                );
            }
        }
        None => {
            let _ = writeln!(out, "  linearizability: not checked");
        }
    }
    match &r.convergence {
        Some(c) => {
            let applied: Vec<String> = c
                .nodes
                .iter()
                .map(|n| {
                    format!(
                        "{}={}",
                        n.node,
                        n.applied_index.map(|a| a.to_string()).unwrap_or("?".into())
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "  convergence: {} (applied {})",
                c.status,
                applied.join(" ")
            );
        }
        None => {
            let _ = writeln!(out, "  convergence: not checked");
        }
    }
    let _ = writeln!(
        out,
        "  final reads: {}/{} ok{}",
        r.final_reads.ok,
        r.final_reads.reads,
        if r.final_reads.disagreeing_keys.is_empty() {
            String::new()
        } else {
            format!(
                ", replicas disagree on {}",
                r.final_reads.disagreeing_keys.join(", ")
            )
        }
    );
    let verdict = match r.verdict {
        RunVerdict::Valid => "VALID",
        RunVerdict::Anomaly => "ANOMALY",
        RunVerdict::Unknown => "UNKNOWN (could not run or decide)",
    };
    let _ = writeln!(out, "\nverdict: {verdict} (exit {})", r.exit_code);
    for reason in &r.reasons {
        let _ = writeln!(out, "  - {reason}");
    }
    out
}
