//! Records the history of a run as it happens.
//!
//! Every client operation is recorded twice, Jepsen style: an `:invoke` when
//! it is sent and an `:ok`, `:fail` or `:info` when its outcome is known. The
//! nemesis records each fault and heal as `:info` ops of process `:nemesis`.
//! Indexes are assigned under one lock, in the order events are recorded, and
//! `:time` is nanoseconds since the start of the test on the monotonic clock,
//! so index order and time order agree.
//!
//! The history is written as Jepsen EDN, one op map a line (`history.edn`),
//! which is what `harness check` (and Jepsen's own tools) read.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A value in an op, in the subset of EDN histories use.
#[derive(Debug, Clone, PartialEq)]
pub enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Keyword(String),
    Vec(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
}

impl Edn {
    pub fn str(s: impl Into<String>) -> Edn {
        Edn::Str(s.into())
    }
    pub fn opt(s: Option<String>) -> Edn {
        s.map(Edn::Str).unwrap_or(Edn::Nil)
    }

    /// Appends the EDN text of this value to `out`.
    pub fn write(&self, out: &mut String) {
        match self {
            Edn::Nil => out.push_str("nil"),
            Edn::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Edn::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Edn::Float(f) => {
                if f.fract() == 0.0 && f.is_finite() {
                    let _ = write!(out, "{f:.1}");
                } else {
                    let _ = write!(out, "{f}");
                }
            }
            Edn::Str(s) => write_edn_string(s, out),
            Edn::Keyword(k) => {
                out.push(':');
                out.push_str(k);
            }
            Edn::Vec(v) => {
                out.push('[');
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    x.write(out);
                }
                out.push(']');
            }
            Edn::Map(m) => {
                out.push('{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    k.write(out);
                    out.push(' ');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    pub fn to_edn(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }
}

fn write_edn_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `:type` of an op (the same type the history reader uses).
pub use crate::history::OpType;

/// `:process` of an op: a client's logical process, or the nemesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    Client(u64),
    Nemesis,
}

/// One recorded event (a line of history.edn).
#[derive(Debug, Clone)]
pub struct Event {
    pub index: u64,
    /// Nanoseconds since the start of the test (monotonic).
    pub time: u64,
    pub process: Process,
    pub kind: OpType,
    /// `read`, `write`, `cas`, `delete`, `append`; for the nemesis `pause`,
    /// `resume`, `kill`, `restart`, `fail-rate`, `heal-fail-rate`.
    pub f: String,
    pub value: Edn,
    /// Client address of the replica the op went to.
    pub node: Option<String>,
    /// Why an op failed or is indeterminate.
    pub error: Option<String>,
}

impl Event {
    /// One EDN map, without newline.
    pub fn to_edn(&self) -> String {
        let mut s = String::with_capacity(128);
        let _ = write!(s, "{{:index {}, :time {}, :process ", self.index, self.time);
        match self.process {
            Process::Client(p) => {
                let _ = write!(s, "{p}");
            }
            Process::Nemesis => s.push_str(":nemesis"),
        }
        let _ = write!(
            s,
            ", :type :{}, :f :{}, :value ",
            self.kind.as_str(),
            self.f
        );
        self.value.write(&mut s);
        if let Some(n) = &self.node {
            s.push_str(", :node ");
            write_edn_string(n, &mut s);
        }
        if let Some(e) = &self.error {
            s.push_str(", :error ");
            write_edn_string(e, &mut s);
        }
        s.push('}');
        s
    }

    /// Latency-relevant: a client op.
    pub fn is_client(&self) -> bool {
        matches!(self.process, Process::Client(_))
    }
}

#[derive(Debug, Default)]
struct Inner {
    events: Vec<Event>,
}

/// The shared, append-only history of a run. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    start: Instant,
    inner: Arc<Mutex<Inner>>,
}

impl Recorder {
    /// A recorder whose time 0 is now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    /// The instant of time 0.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Nanoseconds since time 0.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Appends an event stamped with the current time; returns its index.
    pub fn record(
        &self,
        process: Process,
        kind: OpType,
        f: &str,
        value: Edn,
        node: Option<&str>,
        error: Option<String>,
    ) -> u64 {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Time is taken under the lock so that index order is time order.
        let time = self.now();
        let index = g.events.len() as u64;
        g.events.push(Event {
            index,
            time,
            process,
            kind,
            f: f.to_string(),
            value,
            node: node.map(str::to_string),
            error,
        });
        index
    }

    /// Number of events so far.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.events.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the history so far.
    pub fn snapshot(&self) -> Vec<Event> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .events
            .clone()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// The history as EDN text, one op a line.
pub fn to_edn(events: &[Event]) -> String {
    let mut s = String::with_capacity(events.len() * 120);
    for e in events {
        s.push_str(&e.to_edn());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edn_lines_look_like_jepsen() {
        let r = Recorder::new();
        r.record(
            Process::Client(3),
            OpType::Invoke,
            "cas",
            Edn::Vec(vec![
                Edn::str("k1"),
                Edn::Vec(vec![Edn::Nil, Edn::str("a\"b")]),
            ]),
            Some("127.0.0.1:8001"),
            None,
        );
        r.record(
            Process::Nemesis,
            OpType::Info,
            "pause",
            Edn::Vec(vec![Edn::str("127.0.0.1:8000")]),
            None,
            None,
        );
        let h = r.snapshot();
        let line = h[0].to_edn();
        assert!(line.starts_with("{:index 0, :time "), "{line}");
        assert!(line.ends_with(
            ", :process 3, :type :invoke, :f :cas, :value [\"k1\" [nil \"a\\\"b\"]], :node \"127.0.0.1:8001\"}"
        ), "{line}");
        assert!(h[1]
            .to_edn()
            .contains(":process :nemesis, :type :info, :f :pause"));
        assert!(h[0].time <= h[1].time);
    }
}
