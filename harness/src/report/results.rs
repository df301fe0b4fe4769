//! Statistics of a recorded history: ops by outcome, throughput and latency
//! percentiles, overall and per operation type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::pairing::{ClientOp, Outcome};
use crate::history::History;
use crate::nemesis::Window;

/// `:time` of the op at `pos` in `history` (0 if it has none).
pub fn time_ns(history: &History, pos: usize) -> u64 {
    history
        .ops
        .get(pos)
        .and_then(|o| o.time())
        .unwrap_or(0)
        .max(0) as u64
}

/// `:time` of the op's invocation.
pub fn invoke_ns(history: &History, op: &ClientOp<'_>) -> u64 {
    time_ns(history, op.invoke)
}

/// `:time` of the op's completion, if it completed.
pub fn complete_ns(history: &History, op: &ClientOp<'_>) -> Option<u64> {
    op.complete.map(|c| time_ns(history, c))
}

/// Latency of a completed op in milliseconds.
pub fn latency_ms(history: &History, op: &ClientOp<'_>) -> Option<f64> {
    complete_ns(history, op).map(|c| c.saturating_sub(invoke_ns(history, op)) as f64 / 1e6)
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(mut ms: Vec<f64>) -> Latency {
        if ms.is_empty() {
            return Latency::default();
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| {
            let i = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1;
            ms[i]
        };
        Latency {
            count: ms.len(),
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: *ms.last().unwrap_or(&0.0),
        }
    }
}

/// Counts and latencies of one operation type (or of all).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OpStats {
    pub ops: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    /// Ok ops per second over the client phase.
    pub throughput: f64,
    /// Latency of the ok ops.
    pub latency_ok: Latency,
    /// Latency of every completed op.
    pub latency_all: Latency,
}

/// The performance report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Length of the client phase in seconds.
    pub duration_s: f64,
    pub overall: OpStats,
    pub by_f: BTreeMap<String, OpStats>,
}

fn op_stats(history: &History, ops: &[&ClientOp<'_>], duration_s: f64) -> OpStats {
    let count = |t| ops.iter().filter(|o| o.outcome == t).count();
    let ok = count(Outcome::Ok);
    OpStats {
        ops: ops.len(),
        ok,
        fail: count(Outcome::Fail),
        info: count(Outcome::Info),
        throughput: if duration_s > 0.0 {
            ok as f64 / duration_s
        } else {
            0.0
        },
        latency_ok: Latency::of(
            ops.iter()
                .filter(|o| o.outcome == Outcome::Ok)
                .filter_map(|o| latency_ms(history, o))
                .collect(),
        ),
        latency_all: Latency::of(ops.iter().filter_map(|o| latency_ms(history, o)).collect()),
    }
}

/// Statistics of the client ops (paired by [`crate::history::pairing::pair`])
/// invoked before `until_ns` (the client phase; the final reads are left out).
pub fn stats(history: &History, ops: &[ClientOp<'_>], until_ns: u64) -> Stats {
    let phase: Vec<&ClientOp<'_>> = ops
        .iter()
        .filter(|o| invoke_ns(history, o) < until_ns)
        .collect();
    let duration_s = until_ns as f64 / 1e9;
    let mut by: BTreeMap<String, Vec<&ClientOp<'_>>> = BTreeMap::new();
    for o in &phase {
        by.entry(o.f.to_string()).or_default().push(o);
    }
    Stats {
        duration_s,
        overall: op_stats(history, &phase, duration_s),
        by_f: by
            .into_iter()
            .map(|(f, v)| (f, op_stats(history, &v, duration_s)))
            .collect(),
    }
}

/// Throughput while a kind of fault was in effect, or while none was.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Availability {
    /// A fault name ([`Window::fault`]), or `none` for the time without any.
    pub during: String,
    /// Seconds of the client phase covered.
    pub seconds: f64,
    /// `:ok` client ops completed in that time.
    pub ok: usize,
    /// `ok / seconds`.
    pub ok_per_s: f64,
}

/// Time intervals `[start, end)` in ns, merged.
fn union(mut iv: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    iv.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, b) in iv {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// For each kind of fault, and for the time without any (`none`, first),
/// how many ops completed `:ok` per second, within the client phase
/// (`until_ns`): availability inside versus outside the fault windows.
pub fn availability(
    history: &History,
    ops: &[ClientOp<'_>],
    windows: &[Window],
    until_ns: u64,
) -> Vec<Availability> {
    let clip = |w: &Window| {
        (
            w.start.min(until_ns),
            w.end.unwrap_or(until_ns).min(until_ns),
        )
    };
    let ok_at: Vec<u64> = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok && invoke_ns(history, o) < until_ns)
        .filter_map(|o| complete_ns(history, o))
        .filter(|&t| t < until_ns)
        .collect();
    let measure = |during: String, set: &[(u64, u64)]| {
        let ns: u64 = set.iter().map(|(a, b)| b - a).sum();
        let ok = ok_at
            .iter()
            .filter(|&&t| set.iter().any(|&(a, b)| a <= t && t < b))
            .count();
        let seconds = ns as f64 / 1e9;
        Availability {
            during,
            seconds,
            ok,
            ok_per_s: if seconds > 0.0 {
                ok as f64 / seconds
            } else {
                0.0
            },
        }
    };
    let faulty = union(windows.iter().map(clip).collect());
    let mut free = Vec::new();
    let mut at = 0;
    for &(a, b) in &faulty {
        if a > at {
            free.push((at, a));
        }
        at = at.max(b);
    }
    if at < until_ns {
        free.push((at, until_ns));
    }
    let mut out = vec![measure("none".into(), &free)];
    let mut kinds: Vec<&str> = windows.iter().map(|w| w.fault.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        let set = union(
            windows
                .iter()
                .filter(|w| w.fault == kind)
                .map(clip)
                .collect(),
        );
        out.push(measure(kind.to_string(), &set));
    }
    out
}

/// How the nodes met the `corrupt` faults ([`crate::nemesis::disk`]): each
/// damage must be refused at start; one a node started on went undetected.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Corruptions {
    /// Damages the node detected (it refused to start).
    pub refused: usize,
    /// Damages the node started on without noticing.
    pub started: usize,
}

/// Counts the outcomes recorded in the history's `corrupt` nemesis ops
/// (their `:outcome` entries); `None` when the run corrupted nothing.
pub fn corruptions(history: &History) -> Option<Corruptions> {
    let mut c = Corruptions::default();
    let mut any = false;
    let ops = history.ops.iter().filter(|o| o.f == "corrupt");
    for op in ops.filter(|o| o.process() == crate::history::Process::nemesis()) {
        any = true;
        let details = op.value.as_vector().unwrap_or_default();
        for outcome in details
            .iter()
            .filter_map(|d| d.get("outcome")?.as_keyword())
        {
            match outcome {
                "refused" => c.refused += 1,
                "started" => c.started += 1,
                _ => {}
            }
        }
    }
    any.then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{OpType, Value};
    use crate::recorder::Recorder;

    #[test]
    fn availability_inside_and_outside_fault_windows() {
        let r = Recorder::new();
        let h0 = r.snapshot();
        // No ops: zero rates, but the split of the time is right.
        let w = |fault: &str, start: u64, end: Option<u64>| Window {
            fault: fault.into(),
            nodes: vec![],
            start,
            end,
        };
        let windows = [
            w("partition", 2_000_000_000, Some(4_000_000_000)),
            w("partition", 3_000_000_000, Some(5_000_000_000)),
            w("delay", 8_000_000_000, None),
        ];
        let a = availability(&h0, &[], &windows, 10_000_000_000);
        assert_eq!(a[0].during, "none");
        assert!((a[0].seconds - 5.0).abs() < 1e-9, "{a:?}");
        let part = a.iter().find(|x| x.during == "partition").unwrap();
        assert!((part.seconds - 3.0).abs() < 1e-9);
        let delay = a.iter().find(|x| x.during == "delay").unwrap();
        assert!((delay.seconds - 2.0).abs() < 1e-9);
    }

    #[test]
    fn corrupt_outcomes_are_counted_from_the_nemesis_ops() {
        let r = Recorder::new();
        assert_eq!(corruptions(&r.snapshot()), None);
        let detail = |outcome: &str| {
            Value::Map(vec![(Value::keyword("outcome"), Value::keyword(outcome))].into())
        };
        let op = |details: Vec<Value>| {
            let mut v = vec![Value::string("127.0.0.1:1"), Value::keyword("bitflip")];
            v.extend(details);
            Value::Vector(v.into())
        };
        r.record_nemesis("corrupt", op(vec![detail("refused")]), None);
        r.record_nemesis("repair", op(vec![]), None);
        r.record_nemesis(
            "corrupt",
            op(vec![detail("started"), detail("refused")]),
            None,
        );
        // A corrupt op that failed before damaging anything counts nothing.
        r.record_nemesis("corrupt", op(vec![]), Some("no record yet".into()));
        let c = corruptions(&r.snapshot()).unwrap();
        assert_eq!((c.refused, c.started), (2, 1));
    }

    #[test]
    fn percentiles() {
        let l = Latency::of((1..=100).map(f64::from).collect());
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        assert_eq!(Latency::of(vec![]).count, 0);
    }

    #[test]
    fn pairs_and_counts() {
        let r = Recorder::new();
        let rec = |p, t, f: &str| r.record_client(p, t, f, Value::Nil, "n", None);
        rec(0, OpType::Invoke, "read");
        rec(1, OpType::Invoke, "write");
        r.record_nemesis("pause", Value::Nil, None);
        rec(0, OpType::Ok, "read");
        rec(1, OpType::Info, "write");
        rec(2, OpType::Invoke, "write");
        let h = r.snapshot();
        let ops = crate::history::pairing::pair(&h).unwrap();
        assert_eq!(ops.len(), 3);
        let s = stats(&h, &ops, u64::MAX);
        assert_eq!((s.overall.ok, s.overall.info), (1, 2));
        assert_eq!(s.by_f["write"].ops, 2);
        assert!(latency_ms(&h, &ops[0]).is_some() && latency_ms(&h, &ops[2]).is_none());
    }
}
