//! `timeline.html`: the operations around a linearizability violation.
//!
//! One self-contained HTML file (inline CSS and SVG, no script, no network):
//! the key's client ops as bars on a time axis, one row per process, from
//! invocation to completion (ops of unknown outcome run to the right edge,
//! striped). The op that cannot be linearized is red, the other pending ops
//! are outlined orange, ops of the longest linearizable prefix carry their
//! position in it. Hovering a bar shows its details (SVG `<title>`). The text
//! report sits above the chart.
//!
//! The time axis is `:time` when every shown op has one, else the position in
//! the history. Only a window around the anomaly is drawn (the offending and
//! pending ops and the last [`PREFIX_CONTEXT`] prefix ops), at most
//! [`MAX_OPS`] ops, so the page stays light even for huge histories.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use crate::checker::{kv, ModelKind, Violation};
use crate::history::{ClientOp, History, Outcome};

/// Prefix ops (the last ones before the anomaly) that widen the window.
pub const PREFIX_CONTEXT: usize = 20;
/// Most ops drawn.
pub const MAX_OPS: usize = 1500;

/// The role of an op in the violation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Stuck,
    Pending,
    Prefix(usize),
    Other,
}

/// Renders the timeline page for one violation of `history`.
pub fn render(history: &History, violation: &Violation) -> String {
    let ops = history.client_ops().unwrap_or_default();
    let key_ops: Vec<&ClientOp<'_>> = ops
        .iter()
        .filter(|op| match violation.model {
            ModelKind::CasRegister => true,
            ModelKind::Kv => kv::op_key(op) == violation.key.as_ref(),
        })
        .collect();

    let mut roles: HashMap<usize, Role> = HashMap::new();
    for (i, op) in violation.prefix.iter().enumerate() {
        roles.insert(op.invoke, Role::Prefix(i + 1));
    }
    for op in &violation.pending {
        roles.insert(op.invoke, Role::Pending);
    }
    roles.insert(violation.op.invoke, Role::Stuck);

    // Window, in history positions.
    let focus = std::iter::once(&violation.op)
        .chain(&violation.pending)
        .chain(violation.prefix.iter().rev().take(PREFIX_CONTEXT));
    let (mut lo, mut hi) = (usize::MAX, 0usize);
    for op in focus {
        lo = lo.min(op.invoke);
        hi = hi.max(op.complete.unwrap_or(op.invoke));
    }
    hi = hi.max(violation.op.complete.unwrap_or(violation.op.invoke));
    let mut shown: Vec<&ClientOp<'_>> = key_ops
        .iter()
        .copied()
        .filter(|op| op.invoke <= hi && op.complete.is_none_or(|c| c >= lo))
        .collect();
    if shown.len() > MAX_OPS {
        // Keep the ops closest to the offending op's invocation.
        let center = violation.op.invoke as i64;
        shown.sort_by_key(|op| (op.invoke as i64 - center).abs());
        shown.truncate(MAX_OPS);
        shown.sort_by_key(|op| op.invoke);
    }

    // Time axis.
    let use_time = shown.iter().all(|op| {
        history.ops[op.invoke].time.is_some()
            && op.complete.is_none_or(|c| history.ops[c].time.is_some())
    });
    let t = |pos: usize| -> f64 {
        if use_time {
            history.ops[pos].time.unwrap_or(0) as f64
        } else {
            pos as f64
        }
    };
    let t_min = shown
        .iter()
        .map(|op| t(op.invoke))
        .fold(f64::INFINITY, f64::min);
    let t_max_done = shown
        .iter()
        .map(|op| op.complete.map_or(t(op.invoke), t))
        .fold(f64::NEG_INFINITY, f64::max);
    let (t_min, t_max) = if shown.is_empty() {
        (0.0, 1.0)
    } else {
        let span = (t_max_done - t_min).max(1.0);
        (t_min, t_max_done + span * 0.05)
    };

    let processes: BTreeMap<i64, usize> = {
        let mut ps: Vec<i64> = shown.iter().map(|op| op.process).collect();
        ps.sort_unstable();
        ps.dedup();
        ps.into_iter().enumerate().map(|(i, p)| (p, i)).collect()
    };

    const LEFT: f64 = 90.0;
    // Wider for more ops, so bars keep room for a label; the page scrolls.
    #[allow(non_snake_case)]
    let WIDTH: f64 = (shown.len() as f64 * 16.0).clamp(1200.0, 12000.0);
    const ROW: f64 = 26.0;
    const TOP: f64 = 30.0;
    let height = TOP + ROW * processes.len() as f64 + 30.0;
    let x = |time: f64| LEFT + (time - t_min) / (t_max - t_min) * (WIDTH - LEFT - 10.0);

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="monospace" font-size="11">"#
    );
    svg.push_str(
        r##"<defs><pattern id="info" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="8" height="8" fill="#f6d7a7"/><rect width="4" height="8" fill="#fbe9cc"/></pattern></defs>"##,
    );
    // Axis with ticks.
    let axis_y = height - 20.0;
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#888"/>"##,
        WIDTH - 10.0
    );
    for k in 0..=5 {
        let time = t_min + (t_max - t_min) * k as f64 / 5.0;
        let label = if use_time {
            format!("{:.3} s", time / 1e9)
        } else {
            format!("#{}", time as i64)
        };
        let _ = write!(
            svg,
            r##"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#ddd"/><text x="{0}" y="{3}" text-anchor="middle" fill="#555">{4}</text>"##,
            x(time),
            TOP - 5.0,
            axis_y,
            axis_y + 14.0,
            escape(&label)
        );
    }
    for (p, row) in &processes {
        let y = TOP + ROW * *row as f64;
        let _ = write!(
            svg,
            r##"<text x="4" y="{}" fill="#333">process {p}</text>"##,
            y + ROW * 0.6
        );
    }
    for op in &shown {
        let row = processes[&op.process];
        let y = TOP + ROW * row as f64 + 3.0;
        let x0 = x(t(op.invoke));
        let x1 = match op.complete {
            Some(c) if op.outcome != Outcome::Info => x(t(c)),
            _ => WIDTH - 10.0,
        };
        let w = (x1 - x0).max(3.0);
        let role = roles.get(&op.invoke).copied().unwrap_or(Role::Other);
        let (fill, stroke, stroke_width) = match (role, op.outcome) {
            (Role::Stuck, _) => ("#e53935", "#8e0000", 2.5),
            (_, Outcome::Fail) => ("#e0e0e0", "#9e9e9e", 1.0),
            (Role::Pending, Outcome::Info) => ("url(#info)", "#ef6c00", 2.5),
            (Role::Pending, _) => ("#ffe0b2", "#ef6c00", 2.5),
            (_, Outcome::Info) => ("url(#info)", "#c98a2e", 1.0),
            (Role::Prefix(_), _) => ("#a5d6a7", "#2e7d32", 1.0),
            (Role::Other, _) => ("#bbdefb", "#1565c0", 1.0),
        };
        let label = short_label(op);
        let role_text = match role {
            Role::Stuck => "CANNOT BE LINEARIZED (must take effect before it returns)".to_string(),
            Role::Pending => "pending at the failure point; none of these fits next".to_string(),
            Role::Prefix(n) => format!("#{n} in the longest linearizable prefix"),
            Role::Other => match op.outcome {
                Outcome::Fail => "failed: did not take effect".to_string(),
                _ => "after the prefix".to_string(),
            },
        };
        let times = if use_time {
            format!(
                "invoked {:.6} s, completed {}",
                t(op.invoke) / 1e9,
                op.complete
                    .map_or("never".to_string(), |c| format!("{:.6} s", t(c) / 1e9))
            )
        } else {
            String::new()
        };
        let node = history.ops[op.complete.unwrap_or(op.invoke)]
            .extra
            .get("node")
            .map(|n| format!("\nnode: {n}"))
            .unwrap_or_default();
        let title = format!(
            "process {} :{} {}\nresult: {}\n{}\nhistory lines {}..{}\n{}{}",
            op.process,
            op.f,
            op.input(),
            match op.outcome {
                Outcome::Ok => op
                    .output()
                    .map_or(":ok".to_string(), |v| format!(":ok {v}")),
                Outcome::Fail => ":fail".to_string(),
                Outcome::Info if op.complete.is_some() => ":info (unknown outcome)".to_string(),
                Outcome::Info => "no completion (unknown outcome)".to_string(),
            },
            role_text,
            history.line_of(op.invoke),
            op.complete
                .map_or("never".to_string(), |c| history.line_of(c).to_string()),
            times,
            node
        );
        let prefix_mark = match role {
            Role::Prefix(n) => format!("{n}: "),
            _ => String::new(),
        };
        // The offending op's label goes right of its bar, where there is room.
        let (text_x, anchor, text) = if role == Role::Stuck {
            let text = format!("{label}  ← cannot be linearized");
            if x0 + w + 7.0 * text.chars().count() as f64 > WIDTH {
                (x0 - 4.0, "end", format!("cannot be linearized →  {label}"))
            } else {
                (x0 + w + 4.0, "start", text)
            }
        } else {
            let text = clip(&format!("{prefix_mark}{label}"), (w / 6.8) as usize);
            (x0 + 3.0, "start", text)
        };
        let text_color = if role == Role::Stuck {
            "#b71c1c"
        } else {
            "#111"
        };
        let _ = write!(
            svg,
            r##"<g><title>{}</title><rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}" rx="3" fill="{fill}" stroke="{stroke}" stroke-width="{stroke_width}"/><text x="{text_x:.1}" y="{:.1}" fill="{text_color}" text-anchor="{anchor}">{}</text></g>"##,
            escape(&title),
            ROW - 6.0,
            y + ROW * 0.55,
            escape(&text),
        );
    }
    svg.push_str("</svg>");

    let key = violation
        .key
        .as_ref()
        .map_or("register".to_string(), |k| format!("key {k}"));
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Not linearizable: {title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
pre {{ background: #f7f7f7; padding: .8em; border: 1px solid #ddd; overflow-x: auto; }}
.legend span {{ display: inline-block; padding: 2px 8px; margin-right: 8px; border-radius: 3px; font-size: 12px; }}
.chart {{ overflow-x: auto; border: 1px solid #ddd; }}
</style></head><body>
<h1>Not linearizable: {title}</h1>
<p>{shown} of {total} ops of this {what} shown ({axis}); hover a bar for details.</p>
<p class="legend"><span style="background:#e53935;color:#fff">cannot be linearized</span><span style="background:#ffe0b2;border:2px solid #ef6c00">pending then</span><span style="background:#a5d6a7">linearizable prefix (n: order)</span><span style="background:#bbdefb">other ok</span><span style="background:#fbe9cc">unknown outcome (:info)</span><span style="background:#e0e0e0">:fail</span></p>
<div class="chart">{svg}</div>
<h2>Report</h2>
<pre>{report}</pre>
</body></html>
"#,
        title = escape(&key),
        shown = shown.len(),
        total = key_ops.len(),
        what = if violation.key.is_some() {
            "key"
        } else {
            "register"
        },
        axis = if use_time {
            "time axis: :time"
        } else {
            "time axis: history position"
        },
        report = escape(&crate::report::explain::report_text(history, violation)),
    );
    html
}

/// Writes [`render`]'s page to `path`.
pub fn write(
    path: impl AsRef<std::path::Path>,
    history: &History,
    violation: &Violation,
) -> std::io::Result<()> {
    std::fs::write(path, render(history, violation))
}

/// A file name for the timeline of `violation`: `timeline.html` for a
/// register, `timeline-<key>.html` for a kv key (sanitized).
pub fn file_name(violation: &Violation) -> String {
    match &violation.key {
        None => "timeline.html".to_string(),
        Some(k) => {
            let raw = match k {
                crate::history::Value::Str(s) => s.clone(),
                other => other.to_string(),
            };
            let safe: String = raw
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(60)
                .collect();
            format!("timeline-{safe}.html")
        }
    }
}

fn short_label(op: &ClientOp<'_>) -> String {
    let value = match op.f {
        "read" | "get" => op.output().map_or("?".to_string(), |v| v.to_string()),
        _ => op.input().to_string(),
    };
    format!(":{} {}", op.f, value)
}

fn clip(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else if max_chars <= 1 {
        String::new()
    } else {
        let mut t: String = s.chars().take(max_chars - 1).collect();
        t.push('…');
        t
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
