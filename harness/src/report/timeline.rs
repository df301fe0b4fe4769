//! `timeline.html`: the operations around a linearizability violation.
//!
//! One self-contained HTML file (inline CSS and SVG, a few lines of script
//! for zooming, no network): the explanation in words
//! ([`crate::report::explain`]) on top, then the key's client ops as bars on a
//! time axis, one row per process, from invocation to completion (ops of
//! unknown outcome are open-ended: striped, to the right edge, with `…`).
//! The op that cannot be linearized is red, the other pending ops are outlined
//! orange, ops of the longest linearizable prefix carry their position in it,
//! and the ops the explanation names are outlined purple and link to their
//! history lines, quoted below the chart. Each bar starts with a stripe in
//! the colour of the node that served it (legend above the chart). Fault
//! windows, read from the history's `:nemesis` ops (any fault kind: an op
//! opens a window named by its `:f` on the nodes in its value; a heal op —
//! `resume`, `restart`, `heal-*`, `stop-*`, `end-*` — on the same nodes closes
//! it), are shaded with their kind and nodes. Labels are cut to the bar;
//! hovering a bar shows its details with the full values (SVG `<title>`).
//! "Zoom to the anomaly" narrows the view to the explanation's ops.
//!
//! The time axis is `:time` when every shown op has one, else the position in
//! the history. Size bound: only a window around the anomaly is drawn (the
//! offending and pending ops, the ops the explanation names and the last
//! [`PREFIX_CONTEXT`] prefix ops, plus every op overlapping that window), at
//! most [`MAX_OPS`] ops and [`MAX_FAULTS`] fault windows, values in hover text
//! cut at [`MAX_VALUE_CHARS`] characters, so a page is at most about
//! [`MAX_PAGE_BYTES`] however long the history (tested on a 200 000-op one).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use crate::checker::{kv, ModelKind, Violation};
use crate::history::{ClientOp, History, Outcome, Process, Value};
use crate::report::explain;

/// Prefix ops (the last ones before the anomaly) that widen the window.
pub const PREFIX_CONTEXT: usize = 20;
/// Most ops drawn.
pub const MAX_OPS: usize = 1500;
/// Most fault windows drawn (those overlapping the window).
pub const MAX_FAULTS: usize = 200;
/// Values in hover text are cut to this many characters.
pub const MAX_VALUE_CHARS: usize = 300;
/// The page size bound that follows from the limits above (bytes).
pub const MAX_PAGE_BYTES: usize = 4_000_000;

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
    let why = explain::explain(history, violation);
    let named: std::collections::HashSet<usize> = why.ops.iter().copied().collect();

    // Window, in history positions.
    let focus = std::iter::once(&violation.op)
        .chain(&violation.pending)
        .chain(violation.prefix.iter().rev().take(PREFIX_CONTEXT));
    let (mut lo, mut hi) = (usize::MAX, 0usize);
    for op in focus {
        lo = lo.min(op.invoke);
        hi = hi.max(op.complete.unwrap_or(op.invoke));
    }
    for op in key_ops.iter().filter(|op| named.contains(&op.invoke)) {
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
        shown.sort_by_key(|op| {
            let role = roles.contains_key(&op.invoke) || named.contains(&op.invoke);
            (!role, (op.invoke as i64 - center).abs())
        });
        shown.truncate(MAX_OPS);
        shown.sort_by_key(|op| op.invoke);
    }

    // Time axis.
    let use_time = shown.iter().all(|op| {
        history.ops[op.invoke].time().is_some()
            && op.complete.is_none_or(|c| history.ops[c].time().is_some())
    });
    let t = |pos: usize| -> f64 {
        if use_time {
            history.ops[pos].time().unwrap_or(0) as f64
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

    let faults = fault_windows(history, lo, hi);
    let nodes: BTreeMap<String, usize> = {
        let mut ns: Vec<String> = shown.iter().filter_map(|op| node_of(history, op)).collect();
        ns.sort();
        ns.dedup();
        ns.into_iter().enumerate().map(|(i, n)| (n, i)).collect()
    };
    let node_colour = |n: &str| PALETTE[nodes.get(n).copied().unwrap_or(0) % PALETTE.len()];

    const LEFT: f64 = 90.0;
    // Wider for more ops, so bars keep room for a label; the page scrolls.
    #[allow(non_snake_case)]
    let WIDTH: f64 = (shown.len() as f64 * 16.0).clamp(1200.0, 12000.0);
    const ROW: f64 = 26.0;
    // Fault labels stack in lanes above the rows.
    let fault_lanes = faults.len().clamp(1, 6);
    #[allow(non_snake_case)]
    let TOP: f64 = 20.0 + 14.0 * fault_lanes as f64;
    let height = TOP + ROW * processes.len() as f64 + 30.0;
    let x = |time: f64| LEFT + (time - t_min) / (t_max - t_min) * (WIDTH - LEFT - 10.0);

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="monospace" font-size="11">"#
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
    for (i, f) in faults.iter().enumerate() {
        let x0 = x(t(f.start).max(t_min));
        let x1 = f.end.map_or(WIDTH - 10.0, |e| x(t(e).min(t_max)));
        let label = format!("{} {}", f.kind, f.nodes.join(" "));
        let lane = (i % fault_lanes) as f64;
        let _ = write!(
            svg,
            r##"<g class="fault"><title>{}</title><rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.18"/><text x="{:.1}" y="{:.1}" fill="#555">{}</text></g>"##,
            escape(&format!(
                "fault {label}\nfrom {} to {}",
                describe_time(history, f.start, use_time),
                f.end.map_or("the end".to_string(), |e| describe_time(
                    history, e, use_time
                ))
            )),
            12.0 + 14.0 * lane,
            (x1 - x0).max(2.0),
            axis_y - 12.0 - 14.0 * lane,
            FAULT_COLOURS[fault_colour(&f.kind)],
            x0 + 2.0,
            22.0 + 14.0 * lane,
            escape(&clip(&label, ((x1 - x0) / 6.8).max(12.0) as usize)),
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
        let open_ended = op.outcome == Outcome::Info;
        let x1 = match op.complete {
            Some(c) if !open_ended => x(t(c)),
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
        let is_named = named.contains(&op.invoke);
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
        let node_name = node_of(history, op);
        let node = node_name
            .as_ref()
            .map(|n| format!("\nserved by node {n}"))
            .unwrap_or_default();
        let title = format!(
            "process {} :{} {}\nresult: {}\n{}{}\nhistory lines {}..{}\n{}{}",
            op.process,
            op.f,
            cut_value(op.input()),
            match op.outcome {
                Outcome::Ok => op
                    .output()
                    .map_or(":ok".to_string(), |v| format!(":ok {}", cut_value(v))),
                Outcome::Fail => ":fail".to_string(),
                Outcome::Info if op.complete.is_some() => ":info (unknown outcome)".to_string(),
                Outcome::Info => "no completion (unknown outcome)".to_string(),
            },
            role_text,
            if is_named {
                "\nnamed in the explanation"
            } else {
                ""
            },
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
        let text = if open_ended {
            format!("{text} …")
        } else {
            text
        };
        let (stroke, stroke_width) = if is_named && role != Role::Stuck {
            ("#6a1b9a", 3.0)
        } else {
            (stroke, stroke_width)
        };
        let text_color = if role == Role::Stuck {
            "#b71c1c"
        } else {
            "#111"
        };
        let (open, close) = if is_named {
            (
                format!(
                    r##"<a href="#line-{}" class="why">"##,
                    history.line_of(op.invoke)
                ),
                "</a>",
            )
        } else {
            (String::new(), "")
        };
        let id = if role == Role::Stuck {
            r#" id="anomaly""#
        } else {
            ""
        };
        let stripe = node_name.as_ref().map_or(String::new(), |n| {
            format!(
                r##"<rect x="{x0:.1}" y="{y:.1}" width="4" height="{:.1}" fill="{}"/>"##,
                ROW - 6.0,
                node_colour(n)
            )
        });
        let _ = write!(
            svg,
            r##"{open}<g{id} data-t0="{x0:.1}" data-t1="{:.1}"><title>{}</title><rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}" rx="3" fill="{fill}" stroke="{stroke}" stroke-width="{stroke_width}"/>{stripe}<text x="{:.1}" y="{:.1}" fill="{text_color}" text-anchor="{anchor}">{}</text></g>{close}"##,
            x0 + w,
            escape(&title),
            ROW - 6.0,
            if anchor == "start" {
                text_x + 3.0
            } else {
                text_x
            },
            y + ROW * 0.55,
            escape(&text),
        );
    }
    svg.push_str("</svg>");

    let key = violation
        .key
        .as_ref()
        .map_or("register".to_string(), |k| format!("key {k}"));
    let node_legend: String = nodes
        .keys()
        .map(|n| {
            format!(
                r#"<span style="border-left:8px solid {}">{}</span>"#,
                node_colour(n),
                escape(n)
            )
        })
        .collect();
    let mut lines = String::new();
    let mut named_ops: Vec<&ClientOp<'_>> = key_ops
        .iter()
        .copied()
        .filter(|op| named.contains(&op.invoke))
        .collect();
    named_ops.sort_by_key(|op| op.invoke);
    for op in named_ops {
        for pos in std::iter::once(op.invoke).chain(op.complete) {
            let line = history.line_of(pos);
            let text = history.ops[pos].to_edn();
            let _ = writeln!(
                lines,
                r#"<span id="line-{line}">line {line}: {}</span>"#,
                escape(&clip(&text, MAX_VALUE_CHARS * 2))
            );
        }
    }
    let mut html = String::new();
    let _ = write!(
        html,
        r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Not linearizable: {title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
pre {{ background: #f7f7f7; padding: .8em; border: 1px solid #ddd; overflow-x: auto; }}
.legend span {{ display: inline-block; padding: 2px 8px; margin-right: 8px; border-radius: 3px; font-size: 12px; }}
.chart {{ overflow-x: auto; border: 1px solid #ddd; }}
.why {{ font-size: 1.1em; background: #f3e5f5; border-left: 4px solid #6a1b9a; padding: .6em; }}
.lines span:target {{ background: #f3e5f5; }}
</style></head><body>
<h1>Not linearizable: {title}</h1>
<p class="why"><b>{anomaly}:</b> {why}</p>
<p>{shown} of {total} ops of this {what} shown ({axis}), {faults} fault windows; hover a bar for details, click a purple one for its history lines. <a href="#anomaly" onclick="zoom();return false">Zoom to the anomaly</a></p>
<p class="legend"><span style="background:#e53935;color:#fff">cannot be linearized</span><span style="background:#ffe0b2;border:2px solid #ef6c00">pending then</span><span style="background:#a5d6a7">linearizable prefix (n: order)</span><span style="background:#bbdefb">other ok</span><span style="background:#fbe9cc">unknown outcome (:info)</span><span style="background:#e0e0e0">:fail</span><span style="border:3px solid #6a1b9a">named in the explanation</span><span style="background:#ccc;opacity:.6">fault window</span></p>
<p class="legend">served by: {node_legend}</p>
<div class="chart" id="scroller">{svg}</div>
<h2>History lines of the explanation</h2>
<pre class="lines">{lines}</pre>
<h2>Report</h2>
<pre>{report}</pre>
<script>
// Zoom: narrow the view box to the ops the explanation names, with a margin.
function zoom() {{
  var svg = document.getElementById('chart');
  var gs = document.querySelectorAll('a.why g, #anomaly');
  var lo = Infinity, hi = -Infinity;
  gs.forEach(function (g) {{ lo = Math.min(lo, +g.dataset.t0); hi = Math.max(hi, +g.dataset.t1); }});
  if (!isFinite(lo)) return;
  var pad = Math.max(40, (hi - lo) * 0.15);
  var w = +svg.getAttribute('width'), h = +svg.getAttribute('height');
  var x0 = Math.max(0, lo - pad - 90), span = Math.min(w - x0, hi - lo + 2 * pad + 90);
  svg.setAttribute('viewBox', x0 + ' 0 ' + span + ' ' + h);
  svg.setAttribute('preserveAspectRatio', 'xMinYMin meet');
  var scale = Math.min(4, document.getElementById('scroller').clientWidth / span);
  svg.setAttribute('width', span * scale);
  svg.setAttribute('height', h * scale);
  document.getElementById('anomaly').scrollIntoView({{block: 'nearest', inline: 'center'}});
}}
</script>
</body></html>
"##,
        anomaly = why.anomaly.name(),
        why = escape(&why.text),
        faults = faults.len(),
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
                crate::history::Value::Str(s) => s.to_string(),
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

/// `s` with the characters HTML gives a meaning escaped (text and attribute
/// values alike).
pub fn escape(s: &str) -> String {
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

/// A fault window from the history's `:nemesis` ops (positions in it).
struct FaultWindow {
    kind: String,
    nodes: Vec<String>,
    start: usize,
    end: Option<usize>,
}

/// Whether a nemesis `:f` ends a fault rather than starting one.
fn is_heal(f: &str) -> bool {
    matches!(f, "resume" | "restart" | "heal" | "recover")
        || ["heal-", "stop-", "end-", "recover-"]
            .iter()
            .any(|p| f.starts_with(p))
}

/// The node names in a nemesis op's value (its strings).
fn fault_nodes(value: &Value) -> Vec<String> {
    match value {
        Value::Vector(items) => items
            .iter()
            .filter_map(|v| match v {
                Value::Str(s) => Some(s.to_string()),
                _ => None,
            })
            .collect(),
        Value::Str(s) => vec![s.to_string()],
        _ => vec![],
    }
}

/// The fault windows overlapping positions `lo..=hi`, at most [`MAX_FAULTS`].
fn fault_windows(history: &History, lo: usize, hi: usize) -> Vec<FaultWindow> {
    let mut windows: Vec<FaultWindow> = Vec::new();
    for (pos, op) in history.ops.iter().enumerate() {
        if op.process() != Process::nemesis() {
            continue;
        }
        let nodes = fault_nodes(&op.value);
        if is_heal(&op.f) {
            // Close the oldest open window on the same nodes, else the oldest open one.
            let open = |w: &&mut FaultWindow| w.end.is_none();
            let same = windows
                .iter()
                .position(|w| w.end.is_none() && w.nodes == nodes)
                .or_else(|| windows.iter_mut().position(|w| open(&w)));
            if let Some(i) = same {
                windows[i].end = Some(pos);
            }
        } else {
            windows.push(FaultWindow {
                kind: op.f.to_string(),
                nodes,
                start: pos,
                end: None,
            });
        }
    }
    windows.retain(|w| w.start <= hi && w.end.is_none_or(|e| e >= lo));
    windows.truncate(MAX_FAULTS);
    windows
}

/// The node that served a client op (`:node` of its completion, else of its invocation).
fn node_of(history: &History, op: &ClientOp<'_>) -> Option<String> {
    op.complete
        .and_then(|c| history.ops[c].extra().get("node"))
        .or_else(|| history.ops[op.invoke].extra().get("node"))
        .map(|n| match n {
            Value::Str(s) => s.to_string(),
            other => other.to_string(),
        })
}

/// Node colours, in node-name order.
const PALETTE: [&str; 8] = [
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
];
const FAULT_COLOURS: [&str; 4] = ["#9e9e9e", "#ef5350", "#42a5f5", "#ab47bc"];

fn fault_colour(kind: &str) -> usize {
    kind.bytes().map(usize::from).sum::<usize>() % FAULT_COLOURS.len()
}

fn describe_time(history: &History, pos: usize, use_time: bool) -> String {
    match history.ops[pos].time() {
        Some(t) if use_time => format!("{:.3} s", t as f64 / 1e9),
        _ => format!("line {}", history.line_of(pos)),
    }
}

/// A value as EDN, cut at [`MAX_VALUE_CHARS`].
fn cut_value(v: &Value) -> String {
    clip(&v.to_string(), MAX_VALUE_CHARS)
}
