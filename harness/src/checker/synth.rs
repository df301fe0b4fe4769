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
//! which no linearization can explain; [`corrupt_one_read_to_nil`] edits one
//! to `nil` where no delete can explain it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustc_hash::FxHashMap;

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

/// Changes one `:ok` kv read (chosen with `seed`) of a value to `nil` where
/// no delete explains it: some `:ok` change W to a value (a put, an append,
/// a cas) of the same key returned before the read was invoked, and every
/// delete of the key invoked before the read returned completed (`:ok`)
/// before W was invoked. W then takes effect after every delete the read
/// could see and before the read, so no linearization exists. Returns the
/// position of the edited completion, or `None` if no read qualifies.
pub fn corrupt_one_read_to_nil(history: &mut History, seed: u64) -> Option<usize> {
    /// Per key: non-nil changes as (return, call), deletes as (call,
    /// return or `i64::MAX`), reads of a value as (call, return position).
    #[derive(Default)]
    struct KeyOps {
        changes: Vec<(i64, i64)>,
        deletes: Vec<(i64, i64)>,
        reads: Vec<(i64, usize)>,
    }
    let mut keys: FxHashMap<Value, KeyOps> = FxHashMap::default();
    let mut open: FxHashMap<crate::history::Process, usize> = FxHashMap::default();
    let key_of = |v: &Value| v.as_vector().and_then(|items| items.first().cloned());
    for (pos, op) in history.ops.iter().enumerate() {
        match op.kind {
            OpType::Invoke => {
                open.insert(op.process(), pos);
            }
            OpType::Ok | OpType::Info | OpType::Fail => {
                let Some(call) = open.remove(&op.process()) else {
                    continue;
                };
                let inv = &history.ops[call];
                let Some(k) = key_of(&inv.value) else {
                    continue;
                };
                let ok = op.kind == OpType::Ok;
                let e = keys.entry(k).or_default();
                let (call, ret) = (call as i64, pos as i64);
                match inv.f.as_str() {
                    "delete" if op.kind != OpType::Fail => {
                        e.deletes.push((call, if ok { ret } else { i64::MAX }))
                    }
                    "put" | "write" | "append" if ok => e.changes.push((ret, call)),
                    "cas" if ok => {
                        let new = inv
                            .value
                            .as_vector()
                            .and_then(|items| items.get(1))
                            .and_then(|pair| pair.as_vector())
                            .and_then(|pair| pair.get(1));
                        if new.is_some_and(|n| !n.is_nil()) {
                            e.changes.push((ret, call));
                        }
                    }
                    "get" | "read" if ok => {
                        let seen = op.value.as_vector().and_then(|items| items.get(1));
                        if seen.is_some_and(|v| !v.is_nil()) {
                            e.reads.push((call, pos));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    // Invocations never completed: such a delete may have taken effect.
    for &call in open.values() {
        let inv = &history.ops[call];
        if inv.f == "delete" {
            if let Some(k) = key_of(&inv.value) {
                keys.entry(k)
                    .or_default()
                    .deletes
                    .push((call as i64, i64::MAX));
            }
        }
    }
    let mut candidates: Vec<usize> = Vec::new();
    for e in keys.values_mut() {
        // Changes by return, each with the latest call among those
        // returned no later; deletes by call with the latest return so far.
        e.changes.sort_unstable();
        let mut latest = -1;
        for c in &mut e.changes {
            latest = latest.max(c.1);
            c.1 = latest;
        }
        e.deletes.sort_unstable();
        let mut last_ret = -1;
        for d in &mut e.deletes {
            last_ret = last_ret.max(d.1);
            d.1 = last_ret;
        }
        for &(call, ret) in &e.reads {
            let n = e.changes.partition_point(|c| c.0 < call);
            let Some(w_call) = n.checked_sub(1).map(|i| e.changes[i].1) else {
                continue;
            };
            let m = e.deletes.partition_point(|d| d.0 < ret as i64);
            let deletes_done = m.checked_sub(1).map_or(-1, |i| e.deletes[i].1);
            if deletes_done < w_call {
                candidates.push(ret);
            }
        }
    }
    if candidates.is_empty() {
        return None;
    }
    candidates.sort_unstable();
    let mut rng = StdRng::seed_from_u64(seed);
    let pos = candidates[rng.random_range(0..candidates.len())];
    let op = &mut history.ops[pos];
    if let Some(items) = op.value.as_vector() {
        op.value = Value::Vector(vec![items[0].clone(), Value::Nil].into());
    }
    Some(pos)
}
