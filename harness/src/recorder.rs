//! Records the history of a run as it happens, as [`history::Op`]s.
//!
//! Every client operation is recorded twice, Jepsen style: an `:invoke` when
//! it is sent and an `:ok`, `:fail` or `:info` when its outcome is known. The
//! nemesis records each fault and heal as `:info` ops of process `:nemesis`.
//! `:index` is assigned under one lock, in the order ops are recorded, and
//! `:time` is nanoseconds since the start of the test on the monotonic clock,
//! so index order and time order agree.
//!
//! The recorder holds a [`History`]: the checker, the statistics and the
//! plots read it in memory, and `history.edn` is written from it by the
//! history module's writer ([`History::write_file`]).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::history::{History, Op, OpType, Value};

/// The shared, append-only history of a run. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    start: Instant,
    history: Arc<Mutex<History>>,
}

impl Recorder {
    /// A recorder whose time 0 is now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            history: Arc::new(Mutex::new(History::new())),
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

    /// Appends `op`, stamped with its index and the current time; returns
    /// the index.
    pub fn record(&self, mut op: Op) -> u64 {
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        // Time is taken under the lock so that index order is time order.
        let index = h.ops.len() as u64;
        op.set_index(Some(index));
        op.set_time(Some(self.now() as i64));
        h.ops.push(op);
        index
    }

    /// Records an event of client process `process`: `node` is the client
    /// address of the replica it went to, `error` why it failed or is
    /// indeterminate.
    pub fn record_client(
        &self,
        process: u64,
        kind: OpType,
        f: &str,
        value: Value,
        node: &str,
        error: Option<String>,
    ) -> u64 {
        let mut op = Op::invoke(process as i64, f, value).with_extra("node", node);
        op.kind = kind;
        if let Some(e) = error {
            op = op.with_extra("error", e);
        }
        self.record(op)
    }

    /// Records a nemesis op (`:info` of process `:nemesis`).
    pub fn record_nemesis(&self, f: &str, value: Value, error: Option<String>) -> u64 {
        let mut op = Op::nemesis(OpType::Info, f, value);
        if let Some(e) = error {
            op = op.with_extra("error", e);
        }
        self.record(op)
    }

    /// Number of ops so far.
    pub fn len(&self) -> usize {
        self.history.lock().map(|h| h.ops.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the history so far.
    pub fn snapshot(&self) -> History {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edn_lines_look_like_jepsen() {
        let r = Recorder::new();
        r.record_client(
            3,
            OpType::Invoke,
            "cas",
            Value::Vector(
                vec![
                    Value::string("k1"),
                    Value::Vector(vec![Value::Nil, Value::string("a\"b")].into()),
                ]
                .into(),
            ),
            "127.0.0.1:8001",
            None,
        );
        r.record_nemesis(
            "pause",
            Value::Vector(vec![Value::string("127.0.0.1:8000")].into()),
            None,
        );
        let h = r.snapshot();
        let line = h.ops[0].to_edn();
        assert!(line.starts_with("{:index 0, :time "), "{line}");
        assert!(line.ends_with(
            ", :process 3, :type :invoke, :f :cas, :value [\"k1\" [nil \"a\\\"b\"]], :node \"127.0.0.1:8001\"}"
        ), "{line}");
        assert!(h.ops[1]
            .to_edn()
            .contains(":process :nemesis, :type :info, :f :pause"));
        assert!(h.ops[0].time() <= h.ops[1].time());
        // What is written reads back as the same ops.
        assert_eq!(History::parse(&h.to_edn_string()).unwrap().ops, h.ops);
    }
}
