//! `harness check [--model kv|cas-register] [--initial VALUE] [--all-keys] [--out DIR] FILE...`
//!
//! Checks each history file, prints one line per file (verdict, ops, keys,
//! model, time), the text report of each violation, and a summary. With
//! `--out DIR`, writes for each invalid file `DIR/<file stem>/report.txt` and a
//! `timeline*.html` per invalid key.
//!
//! Exit status: 1 if any history is not linearizable; otherwise 2 if any file
//! was unreadable or undecided (budget exhausted); otherwise 0.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

/// `println!` that ignores write errors (e.g. a closed pipe in
/// `harness check ... | head`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

use super::{EXIT_ANOMALY, EXIT_ERROR, EXIT_VALID};
use crate::checker::{check_file, Budget, CheckOptions, CheckReport, ModelKind, Verdict};
use crate::history::History;
use crate::report::{explain, timeline};

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Model: kv or cas-register (default: inferred from the ops).
    #[arg(long, value_parser = parse_model)]
    pub model: Option<ModelKind>,
    /// Directory for reports of invalid histories (report.txt, timeline.html).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Per-key limit on explored search states before answering "unknown".
    #[arg(long, default_value_t = Budget::default().max_states)]
    pub max_states: u64,
    /// Time limit in seconds, for each key and for the whole file, before
    /// answering "unknown".
    #[arg(long, default_value_t = 60.0)]
    pub time_limit: f64,
    /// Decide every key: by default the first key found not linearizable
    /// decides the file and the other keys are not checked further.
    #[arg(long)]
    pub all_keys: bool,
    /// Never use the polynomial unique-values check; search every key (WGL).
    #[arg(long)]
    pub search_only: bool,
    /// The value the register (or each key) starts with, in EDN (default
    /// nil; Knossos' cas-register tests start at 0).
    #[arg(long, value_name = "VALUE", value_parser = parse_value)]
    pub initial: Option<crate::history::Value>,
    /// Print only the per-file lines and the summary, not violation details.
    #[arg(long, short)]
    pub quiet: bool,
    /// Also print each key's search statistics.
    #[arg(long, short)]
    pub verbose: bool,
    /// Jepsen EDN history files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

fn parse_model(s: &str) -> Result<ModelKind, String> {
    s.parse()
}

fn parse_value(s: &str) -> Result<crate::history::Value, String> {
    crate::history::edn::read_value(s).map_err(|e| format!("not an EDN value: {e}"))
}

/// Runs `harness check`; returns the exit status.
pub fn run(args: &CheckArgs) -> i32 {
    let options = CheckOptions {
        model: args.model,
        budget: Budget {
            max_states: args.max_states,
            time_limit: Some(Duration::from_secs_f64(args.time_limit.max(0.001))),
            ..Budget::default()
        },
        parallel: true,
        all_keys: args.all_keys,
        fast_paths: !args.search_only,
        initial: args.initial.clone(),
    };
    let name_width = args
        .files
        .iter()
        .map(|f| f.display().to_string().len())
        .max()
        .unwrap_or(0)
        .min(60);
    let (mut valid, mut invalid, mut unknown, mut unreadable) = (0, 0, 0, 0);
    let mut total = Duration::ZERO;
    for file in &args.files {
        let name = file.display().to_string();
        match check_file(file, &options) {
            Err(e) => {
                unreadable += 1;
                out!("{name:<name_width$}  UNREADABLE  {e}");
            }
            Ok((history, report)) => {
                total += report.elapsed;
                out!("{name:<name_width$}  {}", summary_line(&report));
                match report.verdict() {
                    Verdict::Linearizable => valid += 1,
                    Verdict::NotLinearizable => invalid += 1,
                    Verdict::Unknown => unknown += 1,
                }
                let undecided = |k: &&crate::checker::KeyReport| {
                    k.verdict == Verdict::Unknown
                        && !matches!(k.exhausted, Some(crate::checker::Exhausted::Cancelled))
                };
                for key in report.keys.iter().filter(undecided) {
                    let why = key
                        .exhausted
                        .as_ref()
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    let key = key
                        .key
                        .as_ref()
                        .map_or("register".to_string(), |k| format!("key {k}"));
                    out!("    {key}: unknown: {why}");
                }
                if args.verbose {
                    for key in &report.keys {
                        let name = key
                            .key
                            .as_ref()
                            .map_or("register".to_string(), |k| k.to_string());
                        let note = key
                            .note
                            .as_ref()
                            .map(|n| format!(" (unique-values check not applicable: {n})"))
                            .unwrap_or_default();
                        let stopped = match &key.exhausted {
                            Some(crate::checker::Exhausted::Cancelled) => " (stopped)",
                            _ => "",
                        };
                        out!(
                            "    {name}: {} ops, {}{stopped}, by {}{note}, {} states, {} expanded, {} steps, {}",
                            key.ops,
                            key.verdict,
                            key.method.name(),
                            key.stats.states,
                            key.stats.expanded,
                            key.stats.steps,
                            format_duration(key.stats.elapsed)
                        );
                    }
                }
                if !args.quiet {
                    for v in report.violations() {
                        for line in explain::report_text(&history, v).lines() {
                            out!("    {line}");
                        }
                    }
                }
                if let Some(out) = &args.out {
                    if report.verdict() == Verdict::NotLinearizable {
                        match write_reports(out, file, &history, &report) {
                            Ok(dir) => out!("    reports in {}", dir.display()),
                            Err(e) => {
                                eprintln!(
                                    "harness check: cannot write reports to {}: {e}",
                                    out.display()
                                );
                                unreadable += 1;
                            }
                        }
                    }
                }
                // Freeing a million-op history takes a noticeable part of a
                // second: it is done on the side, while the next file is
                // read (after the last one, the process may exit before
                // the side thread is done, which frees it all at once).
                std::thread::spawn(move || drop(history));
            }
        }
    }
    out!(
        "{} files: {valid} linearizable, {invalid} not linearizable, {unknown} unknown, {unreadable} unreadable; checking took {}",
        args.files.len(),
        format_duration(total)
    );
    if invalid > 0 {
        EXIT_ANOMALY
    } else if unknown > 0 || unreadable > 0 {
        EXIT_ERROR
    } else {
        EXIT_VALID
    }
}

/// `NOT linearizable  ops=85 (ok 40, fail 20, info 25)  keys=1  model=cas-register (inferred)  1.2 ms`
pub fn summary_line(report: &CheckReport) -> String {
    let invalid_keys = report
        .keys
        .iter()
        .filter(|k| k.verdict == Verdict::NotLinearizable)
        .count();
    let stopped = report
        .keys
        .iter()
        .filter(|k| matches!(k.exhausted, Some(crate::checker::Exhausted::Cancelled)))
        .count();
    let keys = if stopped > 0 {
        format!(
            "keys={} ({invalid_keys} invalid, {stopped} not checked)",
            report.keys.len()
        )
    } else if invalid_keys > 0 && report.keys.len() > 1 {
        format!("keys={} ({invalid_keys} invalid)", report.keys.len())
    } else {
        format!("keys={}", report.keys.len())
    };
    format!(
        "{:<16}  ops={} (ok {}, fail {}, info {})  {keys}  model={}{}  {}",
        report.verdict().name(),
        report.ops,
        report.ok,
        report.failed,
        report.info,
        report.model,
        if report.model_inferred {
            " (inferred)"
        } else {
            ""
        },
        format_duration(report.elapsed)
    )
}

fn format_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1e3)
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1e3)
    }
}

fn write_reports(
    out: &Path,
    file: &Path,
    history: &History,
    report: &CheckReport,
) -> std::io::Result<PathBuf> {
    let stem = file
        .file_stem()
        .map_or("history".to_string(), |s| s.to_string_lossy().into_owned());
    let dir = out.join(stem);
    std::fs::create_dir_all(&dir)?;
    let mut text = format!("{}  {}\n", file.display(), summary_line(report));
    for v in report.violations() {
        text.push_str(&explain::report_text(history, v));
        timeline::write(dir.join(timeline::file_name(v)), history, v)?;
    }
    std::fs::write(dir.join("report.txt"), text)?;
    Ok(dir)
}
