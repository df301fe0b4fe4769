//! Jepsen's semantics: from events to client operations with intervals.
//!
//! - Each `:invoke` pairs with the *next* completion of the same `:process`.
//! - `:ok`: the op took effect at one instant inside `[invoke, completion]`.
//! - `:fail`: it surely did not take effect; the checker drops it.
//! - `:info`: the outcome is unknown; it may have taken effect at any instant
//!   after its invocation, or never. Jepsen retires the process afterwards.
//! - An invoke that never completes (the test ended first) counts as `:info`.
//! - Ops of non-integer processes (`:nemesis`) are not client ops.
//!
//! Time is the position of an event in the history (which Jepsen writes in
//! real-time order), not `:time`: positions never tie and need no clock.

use rustc_hash::FxHashMap;

use super::{History, OpType, Value};

/// How a client op ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    Fail,
    /// `:info`, or no completion at all.
    Info,
}

/// One client operation: an invocation and its completion. Borrows its
/// values from the [`History`] (no copies: pairing a million ops must be cheap).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientOp<'h> {
    pub process: i64,
    /// `:f` of the invocation.
    pub f: &'h str,
    /// Position of the `:invoke` event in [`History::ops`].
    pub invoke: usize,
    /// Position of the completion event, `None` if the op never completed.
    pub complete: Option<usize>,
    pub outcome: Outcome,
    /// `:value` of the invocation.
    pub invoke_value: &'h Value,
    /// `:value` of the completion, if any.
    pub complete_value: Option<&'h Value>,
}

impl<'h> ClientOp<'h> {
    /// What the op asked for: the invocation's value, or the completion's if
    /// the invocation carried `nil` (some clients only fill it in at the end).
    pub fn input(&self) -> &'h Value {
        match (self.invoke_value, self.complete_value) {
            (Value::Nil, Some(v)) => v,
            (v, _) => v,
        }
    }

    /// What the op observed: the completion's value of an `:ok` op, `None` for
    /// `:info` and `:fail` ops (nothing was observed).
    pub fn output(&self) -> Option<&'h Value> {
        match self.outcome {
            Outcome::Ok => self.complete_value,
            _ => None,
        }
    }
}

/// A history whose events cannot be paired.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    #[error("line {line}: process {process} completes an op ({kind}) it never invoked")]
    UnmatchedCompletion {
        line: usize,
        process: i64,
        kind: OpType,
    },
    #[error("line {line}: process {process} invokes a new op while its op from line {pending_line} is still running (a process runs one op at a time)")]
    ConcurrentInvoke {
        line: usize,
        process: i64,
        pending_line: usize,
    },
    #[error("line {line}: process {process} completes :{completed} but invoked :{invoked} at line {invoke_line}")]
    MismatchedF {
        line: usize,
        process: i64,
        invoked: String,
        completed: String,
        invoke_line: usize,
    },
}

/// The running op of each process (an index into the paired ops): a
/// table for the small process numbers clients have, a map for others.
#[derive(Default)]
struct Pending {
    small: Vec<Option<usize>>,
    other: FxHashMap<i64, usize>,
}

/// Processes below this are kept in [`Pending`]'s table.
const SMALL_PROCESSES: i64 = 1 << 16;

impl Pending {
    fn get(&self, process: i64) -> Option<usize> {
        if (0..SMALL_PROCESSES).contains(&process) {
            self.small.get(process as usize).copied().flatten()
        } else {
            self.other.get(&process).copied()
        }
    }

    fn insert(&mut self, process: i64, op: usize) {
        if (0..SMALL_PROCESSES).contains(&process) {
            let p = process as usize;
            if self.small.len() <= p {
                self.small.resize(p + 1, None);
            }
            self.small[p] = Some(op);
        } else {
            self.other.insert(process, op);
        }
    }

    fn remove(&mut self, process: i64) -> Option<usize> {
        if (0..SMALL_PROCESSES).contains(&process) {
            self.small.get_mut(process as usize).and_then(Option::take)
        } else {
            self.other.remove(&process)
        }
    }
}

/// Pairs the events of `history`; ops are returned in invocation order.
pub fn pair(history: &History) -> Result<Vec<ClientOp<'_>>, PairingError> {
    // Exactly one slot per invocation: a guess (half the events) that is
    // short by a few invocations without completion doubled a million-op
    // vector at its very end (72 MB copied, and held twice for a moment).
    let invocations = history
        .ops
        .iter()
        .filter(|op| op.kind == OpType::Invoke)
        .count();
    let mut ops: Vec<ClientOp<'_>> = Vec::with_capacity(invocations);
    // process -> index in `ops` of its running op.
    let mut pending = Pending::default();
    for (pos, op) in history.ops.iter().enumerate() {
        let Some(process) = op.client() else {
            continue;
        };
        match op.kind {
            OpType::Invoke => {
                if let Some(running) = pending.get(process) {
                    return Err(PairingError::ConcurrentInvoke {
                        line: history.line_of(pos),
                        process,
                        pending_line: history.line_of(ops[running].invoke),
                    });
                }
                pending.insert(process, ops.len());
                ops.push(ClientOp {
                    process,
                    f: op.f.as_str(),
                    invoke: pos,
                    complete: None,
                    outcome: Outcome::Info,
                    invoke_value: &op.value,
                    complete_value: None,
                });
            }
            kind => {
                let Some(running) = pending.remove(process) else {
                    return Err(PairingError::UnmatchedCompletion {
                        line: history.line_of(pos),
                        process,
                        kind,
                    });
                };
                let client_op = &mut ops[running];
                // Names are interned: the same pointer is the same name.
                if !std::ptr::eq(client_op.f, op.f.as_str()) && client_op.f != op.f.as_str() {
                    return Err(PairingError::MismatchedF {
                        line: history.line_of(pos),
                        process,
                        invoked: client_op.f.to_string(),
                        completed: op.f.to_string(),
                        invoke_line: history.line_of(client_op.invoke),
                    });
                }
                client_op.complete = Some(pos);
                client_op.complete_value = Some(&op.value);
                client_op.outcome = match kind {
                    OpType::Ok => Outcome::Ok,
                    OpType::Fail => Outcome::Fail,
                    _ => Outcome::Info,
                };
            }
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> History {
        History::parse(text).unwrap()
    }

    #[test]
    fn pairs_with_the_next_completion_of_the_same_process() {
        let h = parse(
            "{:process 0 :type :invoke :f :write :value 1}
             {:process 1 :type :invoke :f :read :value nil}
             {:process :nemesis :type :info :f :start-pause :value nil}
             {:process 1 :type :ok :f :read :value 1}
             {:process 0 :type :fail :f :write :value 1}
             {:process 0 :type :invoke :f :write :value 2}
             {:process 2 :type :invoke :f :write :value 3}
             {:process 2 :type :info :f :write :value 3}",
        );
        let ops = pair(&h).unwrap();
        assert_eq!(ops.len(), 4);
        assert_eq!(
            (ops[0].process, ops[0].outcome, ops[0].complete),
            (0, Outcome::Fail, Some(4))
        );
        assert_eq!(ops[1].output(), Some(&Value::Int(1)));
        assert_eq!((ops[2].outcome, ops[2].complete), (Outcome::Info, None));
        assert_eq!((ops[3].outcome, ops[3].output()), (Outcome::Info, None));
    }

    #[test]
    fn processes_of_any_number_pair() {
        // Small numbers are kept in a table, others (negative, huge) in a map.
        let h = parse(
            "{:process -3 :type :invoke :f :read :value nil}
             {:process 70000 :type :invoke :f :read :value nil}
             {:process 5 :type :invoke :f :read :value nil}
             {:process 70000 :type :ok :f :read :value 1}
             {:process -3 :type :ok :f :read :value 2}
             {:process 5 :type :ok :f :read :value 3}
             {:process 70000 :type :invoke :f :read :value nil}",
        );
        let ops = pair(&h).unwrap();
        let got: Vec<(i64, Option<usize>)> = ops.iter().map(|o| (o.process, o.complete)).collect();
        assert_eq!(
            got,
            [(-3, Some(4)), (70000, Some(3)), (5, Some(5)), (70000, None)]
        );
        let h = parse(
            "{:process -3 :type :invoke :f :read :value nil}\n{:process -3 :type :invoke :f :read :value nil}",
        );
        assert!(matches!(
            pair(&h),
            Err(PairingError::ConcurrentInvoke { line: 2, .. })
        ));
    }

    #[test]
    fn input_falls_back_to_the_completion_value() {
        let h = parse(
            "{:process 0 :type :invoke :f :cas :value nil}
             {:process 0 :type :ok :f :cas :value [1 2]}",
        );
        assert_eq!(pair(&h).unwrap()[0].input(), &Value::from(vec![1i64, 2]));
    }

    #[test]
    fn malformed_pairings_are_errors() {
        let h = parse("{:process 0 :type :ok :f :read :value 1}");
        assert!(matches!(
            pair(&h),
            Err(PairingError::UnmatchedCompletion { line: 1, .. })
        ));
        let h = parse(
            "{:process 0 :type :invoke :f :read :value nil}\n{:process 0 :type :invoke :f :read :value nil}",
        );
        let e = pair(&h).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let h = parse(
            "{:process 0 :type :invoke :f :read :value nil}\n{:process 0 :type :ok :f :write :value 1}",
        );
        assert!(matches!(pair(&h), Err(PairingError::MismatchedF { .. })));
    }
}
