//! The checker against the definition: on thousands of small random
//! histories (random values, so most are not linearizable and some are), the
//! verdict must equal that of a brute-force enumeration of every order of
//! every subset of the `:info` ops that respects real time.
//!
//! This guards the search's shortcuts (memo subsumption, twin `:info` ops,
//! required-before-optional candidate order): each is sound only if it never
//! prunes the last remaining linearization.

use harness::checker::{check, CheckOptions, ModelKind, Verdict};
use harness::history::{History, Op, OpType, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Debug)]
enum Kind {
    Read(Value),
    Write(Value),
    Cas(Value, Value),
    Append(String),
}

#[derive(Clone, Debug)]
struct BruteOp {
    kind: Kind,
    call: usize,
    /// `None`: unknown outcome (optional, no deadline).
    ret: Option<usize>,
}

/// Register (or single kv key with append) semantics, written independently
/// of the models under test.
fn apply(state: &Value, kind: &Kind) -> Option<Value> {
    match kind {
        Kind::Read(v) => (v == state).then(|| state.clone()),
        Kind::Write(v) => Some(v.clone()),
        Kind::Cas(old, new) => (old == state).then(|| new.clone()),
        Kind::Append(s) => match state {
            Value::Nil => Some(Value::Str(s.clone())),
            Value::Str(a) => Some(Value::Str(format!("{a}{s}"))),
            _ => None,
        },
    }
}

fn brute_force(ops: &[BruteOp], used: &mut Vec<bool>, state: &Value) -> bool {
    if ops
        .iter()
        .zip(used.iter())
        .all(|(op, &u)| u || op.ret.is_none())
    {
        return true;
    }
    // The earliest deadline among unlinearized ops that must take effect.
    let deadline = ops
        .iter()
        .zip(used.iter())
        .filter(|(_, &u)| !u)
        .filter_map(|(op, _)| op.ret)
        .min()
        .unwrap_or(usize::MAX);
    for i in 0..ops.len() {
        if used[i] || ops[i].call > deadline {
            continue;
        }
        if let Some(next) = apply(state, &ops[i].kind) {
            used[i] = true;
            let found = brute_force(ops, used, &next);
            used[i] = false;
            if found {
                return true;
            }
        }
    }
    false
}

/// A random small history over one register / one kv key.
fn random_history(rng: &mut StdRng, kv: bool) -> (History, Vec<BruteOp>) {
    let values = [Value::Nil, Value::Int(1), Value::Int(2), Value::Int(3)];
    let pick = |rng: &mut StdRng, nil: bool| -> Value {
        let lo = if nil { 0 } else { 1 };
        values[rng.random_range(lo..values.len())].clone()
    };
    let processes = rng.random_range(1..=4);
    let total = rng.random_range(1..=8);
    let mut history = History::new();
    let mut brute = Vec::new();
    // process -> (invoke op, its brute op without ret)
    let mut running: Vec<Option<(Op, BruteOp)>> = vec![None; processes];
    let mut ids: Vec<i64> = (0..processes as i64).collect();
    let mut next_id = processes as i64;
    let mut invoked = 0;
    let key = || Value::Str("k".into());
    let wrap = |v: Value| if kv { Value::Vector(vec![key(), v]) } else { v };
    while invoked < total || running.iter().any(Option::is_some) {
        let p = rng.random_range(0..processes);
        match running[p].take() {
            None if invoked < total => {
                invoked += 1;
                let (f, kind, value) = match rng.random_range(0..if kv { 4 } else { 3 }) {
                    0 => ("read", Kind::Read(Value::Nil), wrap(Value::Nil)),
                    1 => {
                        let v = pick(rng, false);
                        ("write", Kind::Write(v.clone()), wrap(v))
                    }
                    2 => {
                        let (o, n) = (pick(rng, true), pick(rng, false));
                        let pair = Value::Vector(vec![o.clone(), n.clone()]);
                        ("cas", Kind::Cas(o, n), wrap(pair))
                    }
                    _ => {
                        let s = ["a", "b"][rng.random_range(0..2)].to_string();
                        ("append", Kind::Append(s.clone()), wrap(Value::Str(s)))
                    }
                };
                let op = Op::invoke(ids[p], f, value);
                let b = BruteOp {
                    kind,
                    call: history.ops.len(),
                    ret: None,
                };
                history.push(op.clone());
                running[p] = Some((op, b));
            }
            None => {}
            Some((op, mut b)) => {
                let roll = rng.random_range(0..100);
                if roll < 15 {
                    history.push(op.complete(OpType::Info, op.value.clone()));
                    // An :info read observed nothing: the brute force drops it.
                    if !matches!(b.kind, Kind::Read(_)) {
                        brute.push(b);
                    }
                    ids[p] = next_id; // the process retires
                    next_id += 1;
                } else if roll < 25 {
                    history.push(op.complete(OpType::Fail, op.value.clone()));
                } else {
                    let completion = if let Kind::Read(_) = b.kind {
                        let seen = if kv && rng.random_bool(0.3) {
                            Value::Str(["a", "ab", "b", "ba"][rng.random_range(0..4)].into())
                        } else {
                            pick(rng, true)
                        };
                        b.kind = Kind::Read(seen.clone());
                        wrap(seen)
                    } else {
                        op.value.clone()
                    };
                    b.ret = Some(history.ops.len());
                    history.push(op.complete(OpType::Ok, completion));
                    brute.push(b);
                }
            }
        }
        // Now and then a process never completes (the test ended).
        if invoked == total && rng.random_bool(0.05) {
            for (_, b) in running.iter_mut().filter_map(Option::take) {
                if !matches!(b.kind, Kind::Read(_)) {
                    brute.push(b);
                }
            }
        }
    }
    (history, brute)
}

fn compare(kv: bool, cases: u64, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut lin, mut not) = (0, 0);
    for case in 0..cases {
        let (history, brute) = random_history(&mut rng, kv);
        let expected = brute_force(&brute, &mut vec![false; brute.len()], &Value::Nil);
        let model = if kv {
            ModelKind::Kv
        } else {
            ModelKind::CasRegister
        };
        let options = CheckOptions {
            model: Some(model),
            ..CheckOptions::default()
        };
        let got = check(&history, &options).unwrap().verdict();
        let want = if expected {
            Verdict::Linearizable
        } else {
            Verdict::NotLinearizable
        };
        assert_eq!(got, want, "case {case}:\n{}", history.to_edn_string());
        if expected {
            lin += 1
        } else {
            not += 1
        }
    }
    // The generator must exercise both verdicts.
    assert!(
        lin > cases / 10 && not > cases / 10,
        "{lin} linearizable, {not} not"
    );
}

#[test]
fn register_verdicts_match_brute_force() {
    compare(false, 20_000, 11);
}

#[test]
fn kv_key_verdicts_match_brute_force() {
    compare(true, 20_000, 12);
}
