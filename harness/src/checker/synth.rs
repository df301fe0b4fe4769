//! Synthetic histories for tests and benchmarks: a sequential object driven
//! by simulated concurrent clients, so the result is linearizable by
//! construction.
//!
//! The simulation advances in steps; at each step it picks at random one of:
//! invoke a new op on an idle process; make an in-flight op take effect (its
//! linearization point: it is applied to the real sequential object and its
//! result recorded); complete an op that took effect (`:ok`, or `:fail` for a
//! cas whose comparison failed, which had no effect); or time an in-flight op
//! out (`:info`, whether or not it took effect; the process then retires and a
//! fresh process id replaces it, as in Jepsen). Ops still running at the end
//! are left without completion.
//!
//! [`corrupt_one_read`] then edits one `:ok` read to a value nobody wrote,
//! which no linearization can explain.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::ModelKind;
use crate::history::{History, Op, OpType, Value};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthConfig {
    pub model: ModelKind,
    /// Client ops (invocations) to generate.
    pub ops: usize,
    /// Concurrent client processes.
    pub processes: usize,
    /// Keys (kv only; a register has one).
    pub keys: usize,
    /// Probability that an in-flight op times out (becomes `:info`) rather than completing.
    pub info_rate: f64,
    /// Include `:append` in the kv mix.
    pub appends: bool,
    /// Include `:delete` in the kv mix (with `appends`). A delete makes `nil`
    /// a value written more than once, which the unique-values check leaves
    /// to the search.
    pub deletes: bool,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            model: ModelKind::Kv,
            ops: 1000,
            processes: 5,
            keys: 10,
            info_rate: 0.02,
            appends: true,
            deletes: true,
            seed: 1,
        }
    }
}

#[derive(Clone)]
enum Action {
    Read,
    Write(Value),
    Cas(Value, Value),
    Append(Value),
    Delete,
}

struct InFlight {
    process: i64,
    key: usize,
    f: &'static str,
    action: Action,
    /// The op's `:value` on invocation.
    invoke_value: Value,
    /// Set once the op took effect: (completion type, completion value).
    result: Option<(OpType, Value)>,
}

/// Generates a linearizable history.
pub fn generate(config: &SynthConfig) -> History {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let kv = config.model == ModelKind::Kv;
    let keys = if kv { config.keys.max(1) } else { 1 };
    let mut state: Vec<Value> = vec![Value::Nil; keys];
    let mut history = History::new();
    let mut next_process = config.processes.max(1) as i64;
    let mut idle: Vec<i64> = (0..next_process).collect();
    let mut running: Vec<InFlight> = Vec::new();
    let mut invoked = 0usize;
    let mut unique = 0u64;
    let mut time = 0i64;
    let key_value = |k: usize| Value::string(format!("k{k}"));

    while invoked < config.ops || !running.is_empty() {
        time += 1_000;
        let can_invoke = invoked < config.ops && !idle.is_empty();
        let roll: f64 = rng.random();
        if can_invoke && (running.is_empty() || roll < 0.35) {
            let slot = rng.random_range(0..idle.len());
            let process = idle.swap_remove(slot);
            let key = rng.random_range(0..keys);
            unique += 1;
            let small = Value::Int(rng.random_range(0..5));
            let (f, action) = match (kv, rng.random_range(0..100)) {
                (_, 0..40) => (if kv { "get" } else { "read" }, Action::Read),
                (_, 40..70) => {
                    let v = if kv {
                        Value::string(format!("v{unique}"))
                    } else {
                        small
                    };
                    (if kv { "put" } else { "write" }, Action::Write(v))
                }
                (true, 70..85) if config.appends => (
                    "append",
                    Action::Append(Value::string(format!("x{unique};"))),
                ),
                (true, 85..90) if config.appends && config.deletes => ("delete", Action::Delete),
                _ => {
                    // Often compare against the current value so that some cas succeed.
                    let old = if rng.random_bool(0.5) {
                        state[key].clone()
                    } else if kv {
                        Value::string(format!("v{}", rng.random_range(0..=unique)))
                    } else {
                        Value::Int(rng.random_range(0..5))
                    };
                    let new = if kv {
                        Value::string(format!("v{unique}"))
                    } else {
                        Value::Int(rng.random_range(0..5))
                    };
                    ("cas", Action::Cas(old, new))
                }
            };
            let body = match &action {
                Action::Read => Value::Nil,
                Action::Write(v) | Action::Append(v) => v.clone(),
                Action::Cas(o, n) => Value::Vector(vec![o.clone(), n.clone()].into()),
                Action::Delete => Value::Nil,
            };
            let invoke_value = if kv {
                match action {
                    Action::Delete => Value::Vector(vec![key_value(key)].into()),
                    _ => Value::Vector(vec![key_value(key), body].into()),
                }
            } else {
                body
            };
            history.push(Op::invoke(process, f, invoke_value.clone()).at(time));
            running.push(InFlight {
                process,
                key,
                f,
                action,
                invoke_value,
                result: None,
            });
            invoked += 1;
            continue;
        }
        if running.is_empty() {
            continue;
        }
        let i = rng.random_range(0..running.len());
        let timeout = rng.random_bool(config.info_rate.clamp(0.0, 1.0));
        if running[i].result.is_none() && !timeout {
            // Linearization point: apply to the sequential object.
            let op = &mut running[i];
            let current = &mut state[op.key];
            let (kind, observed) = match &op.action {
                Action::Read => (OpType::Ok, current.clone()),
                Action::Write(v) => {
                    *current = v.clone();
                    (OpType::Ok, Value::Nil)
                }
                Action::Delete => {
                    *current = Value::Nil;
                    (OpType::Ok, Value::Nil)
                }
                Action::Append(v) => {
                    let appended = match (&*current, v) {
                        (Value::Str(a), Value::Str(b)) => format!("{a}{b}"),
                        (_, Value::Str(b)) => b.to_string(),
                        _ => String::new(),
                    };
                    *current = Value::string(appended);
                    (OpType::Ok, Value::Nil)
                }
                Action::Cas(old, new) => {
                    if current == old {
                        *current = new.clone();
                        (OpType::Ok, Value::Nil)
                    } else {
                        (OpType::Fail, Value::Nil)
                    }
                }
            };
            let completion = match (&op.action, kv) {
                (Action::Read, true) => Value::Vector(vec![key_value(op.key), observed].into()),
                (Action::Read, false) => observed,
                _ => op.invoke_value.clone(),
            };
            op.result = Some((kind, completion));
            continue;
        }
        let op = running.swap_remove(i);
        let template = Op::invoke(op.process, op.f, Value::Nil);
        if timeout {
            // Unknown outcome: the op may or may not have taken effect.
            history.push(template.complete(OpType::Info, op.invoke_value).at(time));
            idle.push(next_process);
            next_process += 1;
        } else if let Some((kind, value)) = op.result {
            history.push(template.complete(kind, value).at(time));
            idle.push(op.process);
        }
        if invoked >= config.ops && rng.random_bool(0.001) {
            // Now and then the test ends with ops still running.
            break;
        }
    }
    history
}

/// Changes one `:ok` read (chosen with `seed`) to a value that was never
/// written, which makes the history non-linearizable. Returns the position of
/// the edited completion, or `None` if the history has no `:ok` read.
pub fn corrupt_one_read(history: &mut History, seed: u64) -> Option<usize> {
    let reads: Vec<usize> = history
        .ops
        .iter()
        .enumerate()
        .filter(|(_, op)| op.kind == OpType::Ok && (op.f == "read" || op.f == "get"))
        .map(|(i, _)| i)
        .collect();
    if reads.is_empty() {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let pos = reads[rng.random_range(0..reads.len())];
    let impossible = Value::string("never-written");
    let op = &mut history.ops[pos];
    op.value = match &op.value {
        Value::Vector(items) if !items.is_empty() => {
            Value::Vector(vec![items[0].clone(), impossible].into())
        }
        _ => impossible,
    };
    Some(pos)
}
