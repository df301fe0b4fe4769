//! Statistics of a recorded history: ops by outcome, throughput and latency
//! percentiles, overall and per operation type.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::recorder::{Event, OpType, Process};

/// A client op with its invocation and completion (if any).
#[derive(Debug, Clone)]
pub struct Completed {
    pub process: u64,
    pub f: String,
    /// Nanoseconds since the start of the test.
    pub invoke: u64,
    /// None if the op never completed (the run was interrupted).
    pub complete: Option<u64>,
    pub kind: OpType,
    pub node: Option<String>,
}

impl Completed {
    /// Latency in milliseconds.
    pub fn latency_ms(&self) -> Option<f64> {
        self.complete
            .map(|c| (c.saturating_sub(self.invoke)) as f64 / 1e6)
    }
}

/// Pairs each client invocation with its completion (Jepsen: the next event
/// of the same process).
pub fn pair(events: &[Event]) -> Vec<Completed> {
    let mut open: HashMap<u64, usize> = HashMap::new();
    let mut out: Vec<Completed> = Vec::new();
    for e in events {
        let Process::Client(p) = e.process else {
            continue;
        };
        if e.kind == OpType::Invoke {
            open.insert(p, out.len());
            out.push(Completed {
                process: p,
                f: e.f.clone(),
                invoke: e.time,
                complete: None,
                kind: OpType::Info,
                node: e.node.clone(),
            });
        } else if let Some(i) = open.remove(&p) {
            out[i].complete = Some(e.time);
            out[i].kind = e.kind;
        }
    }
    out
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
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
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
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
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stats {
    /// Length of the client phase in seconds.
    pub duration_s: f64,
    pub overall: OpStats,
    pub by_f: BTreeMap<String, OpStats>,
}

fn op_stats(ops: &[&Completed], duration_s: f64) -> OpStats {
    let count = |t| ops.iter().filter(|o| o.kind == t).count();
    let ok = count(OpType::Ok);
    OpStats {
        ops: ops.len(),
        ok,
        fail: count(OpType::Fail),
        info: count(OpType::Info),
        throughput: if duration_s > 0.0 {
            ok as f64 / duration_s
        } else {
            0.0
        },
        latency_ok: Latency::of(
            ops.iter()
                .filter(|o| o.kind == OpType::Ok)
                .filter_map(|o| o.latency_ms())
                .collect(),
        ),
        latency_all: Latency::of(ops.iter().filter_map(|o| o.latency_ms()).collect()),
    }
}

/// Statistics of the client ops invoked before `until_ns` (the client
/// phase; the final reads are left out).
pub fn stats(ops: &[Completed], until_ns: u64) -> Stats {
    let phase: Vec<&Completed> = ops.iter().filter(|o| o.invoke < until_ns).collect();
    let duration_s = until_ns as f64 / 1e9;
    let mut by: BTreeMap<String, Vec<&Completed>> = BTreeMap::new();
    for o in &phase {
        by.entry(o.f.clone()).or_default().push(o);
    }
    Stats {
        duration_s,
        overall: op_stats(&phase, duration_s),
        by_f: by
            .into_iter()
            .map(|(f, v)| (f, op_stats(&v, duration_s)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{Edn, Recorder};

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
        let rec = |p, t, f: &str| r.record(Process::Client(p), t, f, Edn::Nil, None, None);
        rec(0, OpType::Invoke, "read");
        rec(1, OpType::Invoke, "write");
        r.record(
            Process::Nemesis,
            OpType::Info,
            "pause",
            Edn::Nil,
            None,
            None,
        );
        rec(0, OpType::Ok, "read");
        rec(1, OpType::Info, "write");
        rec(2, OpType::Invoke, "write");
        let ops = pair(&r.snapshot());
        assert_eq!(ops.len(), 3);
        let s = stats(&ops, u64::MAX);
        assert_eq!((s.overall.ok, s.overall.info), (1, 2));
        assert_eq!(s.by_f["write"].ops, 2);
    }
}
