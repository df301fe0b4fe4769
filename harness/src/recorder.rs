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

/// A value in an op: the history reader's EDN value, written by its
/// `Display` (reading a written history gives the same values back).
pub use crate::history::edn::Value as Edn;

use crate::history::edn::EdnStr;

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
        let _ = write!(s, "{}", self.value);
        if let Some(n) = &self.node {
            let _ = write!(s, ", :node {}", EdnStr(n));
        }
        if let Some(e) = &self.error {
            let _ = write!(s, ", :error {}", EdnStr(e));
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
            Edn::Vector(vec![
                Edn::string("k1"),
                Edn::Vector(vec![Edn::Nil, Edn::string("a\"b")]),
            ]),
            Some("127.0.0.1:8001"),
            None,
        );
        r.record(
            Process::Nemesis,
            OpType::Info,
            "pause",
            Edn::Vector(vec![Edn::string("127.0.0.1:8000")]),
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
