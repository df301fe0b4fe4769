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
            Value::Nil => Some(Value::string(s.as_str())),
            Value::Str(a) => Some(Value::string(format!("{a}{s}"))),
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
    let wrap = |v: Value| {
        if kv {
            Value::Vector(vec![key(), v].into())
        } else {
            v
        }
    };
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
                        let pair = Value::Vector(vec![o.clone(), n.clone()].into());
                        ("cas", Kind::Cas(o, n), wrap(pair))
                    }
                    _ => {
                        let s = ["a", "b"][rng.random_range(0..2)].to_string();
                        ("append", Kind::Append(s.clone()), wrap(Value::string(s)))
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

// ---------------------------------------------------------------------------
// The polynomial unique-values check (`checker::unique`) against the brute
// force and against the WGL search, on histories whose written values are
// unique (fresh strings for writes, cas and appends; cas expecting earlier
// values or nil), with deletes, `:info` and `:fail` ops, and reads that see a
// random plausible value (so both verdicts occur).

/// `CHECKER_CASES=N` multiplies the number of cases (default 1).
fn scale() -> u64 {
    std::env::var("CHECKER_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn check_with(history: &History, model: ModelKind, fast_paths: bool) -> Verdict {
    let options = CheckOptions {
        model: Some(model),
        fast_paths,
        ..CheckOptions::default()
    };
    check(history, &options).unwrap().verdict()
}

fn used_fast_path(history: &History, model: ModelKind) -> bool {
    let options = CheckOptions {
        model: Some(model),
        ..CheckOptions::default()
    };
    let report = check(history, &options).unwrap();
    report
        .keys
        .iter()
        .all(|k| k.method == harness::checker::Method::UniqueValues)
}

/// A random small history over one key with unique written values.
/// `big`: 8 to 11 ops over 3 to 6 processes (else 1 to 8 over 1 to 4).
fn random_unique_history(
    rng: &mut StdRng,
    kv: bool,
    with_deletes: bool,
    big: bool,
) -> (History, Vec<BruteOp>) {
    let (processes, total) = if big {
        (rng.random_range(3..=6), rng.random_range(8..=11))
    } else {
        (rng.random_range(1..=4), rng.random_range(1..=8))
    };
    let mut history = History::new();
    let mut brute = Vec::new();
    let mut running: Vec<Option<(Op, BruteOp)>> = vec![None; processes];
    let mut ids: Vec<i64> = (0..processes as i64).collect();
    let mut next_id = processes as i64;
    let mut invoked = 0;
    let mut fresh = 0;
    // Values written so far (for cas expectations and reads), and appended strings.
    let mut written: Vec<Value> = vec![Value::Nil];
    let mut appended: Vec<String> = Vec::new();
    let key = || Value::Str("k".into());
    let wrap = |v: Value| {
        if kv {
            Value::Vector(vec![key(), v].into())
        } else {
            v
        }
    };
    let deletes = kv && (with_deletes || rng.random_bool(0.3));
    while invoked < total || running.iter().any(Option::is_some) {
        let p = rng.random_range(0..processes);
        match running[p].take() {
            None if invoked < total => {
                invoked += 1;
                fresh += 1;
                let new = if kv {
                    Value::string(format!("v{fresh}"))
                } else {
                    Value::Int(fresh)
                };
                let kinds = if kv { 5 } else { 3 };
                let (f, kind, value) = match rng.random_range(0..kinds) {
                    0 => ("read", Kind::Read(Value::Nil), wrap(Value::Nil)),
                    1 => {
                        written.push(new.clone());
                        ("write", Kind::Write(new.clone()), wrap(new))
                    }
                    2 => {
                        let old = written[rng.random_range(0..written.len())].clone();
                        written.push(new.clone());
                        let pair = Value::Vector(vec![old.clone(), new.clone()].into());
                        ("cas", Kind::Cas(old, new), wrap(pair))
                    }
                    3 if !deletes || rng.random_bool(0.5) => {
                        let s = format!("a{fresh};");
                        appended.push(s.clone());
                        ("append", Kind::Append(s.clone()), wrap(Value::string(s)))
                    }
                    _ => (
                        "delete",
                        Kind::Write(Value::Nil),
                        Value::Vector(vec![key()].into()),
                    ),
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
                    if !matches!(b.kind, Kind::Read(_)) {
                        brute.push(b);
                    }
                    ids[p] = next_id;
                    next_id += 1;
                } else if roll < 22 && !matches!(b.kind, Kind::Read(_)) {
                    history.push(op.complete(OpType::Fail, op.value.clone()));
                } else {
                    let completion = if let Kind::Read(_) = b.kind {
                        // A plausible value: something written, then maybe appends.
                        let mut seen = written[rng.random_range(0..written.len())].clone();
                        if kv && !appended.is_empty() && rng.random_bool(0.4) {
                            let mut s = seen.as_str().unwrap_or("").to_string();
                            for _ in 0..rng.random_range(1..=2) {
                                s.push_str(&appended[rng.random_range(0..appended.len())]);
                            }
                            seen = Value::string(s);
                        }
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

fn compare_unique(kv: bool, cases: u64, seed: u64) {
    compare_unique_with(kv, false, false, cases, seed);
}

fn compare_unique_with(kv: bool, with_deletes: bool, big: bool, cases: u64, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let model = if kv {
        ModelKind::Kv
    } else {
        ModelKind::CasRegister
    };
    let (mut lin, mut not, mut fast, mut fast_lin) = (0, 0, 0, 0);
    for case in 0..cases {
        let (history, brute) = random_unique_history(&mut rng, kv, with_deletes, big);
        let expected = if brute_force(&brute, &mut vec![false; brute.len()], &Value::Nil) {
            Verdict::Linearizable
        } else {
            Verdict::NotLinearizable
        };
        let got = check_with(&history, model, true);
        assert_eq!(got, expected, "case {case}:\n{}", history.to_edn_string());
        let searched = check_with(&history, model, false);
        assert_eq!(
            searched,
            expected,
            "search, case {case}:\n{}",
            history.to_edn_string()
        );
        let by_fast_path = used_fast_path(&history, model);
        if by_fast_path {
            fast += 1;
        }
        if expected == Verdict::Linearizable {
            lin += 1;
            fast_lin += usize::from(by_fast_path);
        } else {
            not += 1
        }
    }
    eprintln!("{cases} cases: {lin} linearizable ({fast_lin} of them by the unique-values check), {not} not, {fast} by the unique-values check");
    assert!(
        lin > cases / 10 && not > cases / 10 && fast > cases / 2,
        "{lin} linearizable, {not} not, {fast} by the unique-values check"
    );
}

#[test]
fn unique_register_verdicts_match_brute_force_and_search() {
    compare_unique(false, 10_000 * scale(), 21);
}

#[test]
fn unique_kv_key_verdicts_match_brute_force_and_search() {
    compare_unique(true, 10_000 * scale(), 22);
}

/// Every history has deletes (so `nil` has several writers): the two-stage
/// check of keys with deletes must agree with the brute force and the
/// search, and decide most of them.
#[test]
fn keys_with_deletes_match_brute_force_and_search() {
    compare_unique_with(true, true, false, 20_000 * scale(), 24);
}

/// The same with more ops and processes (8-11 ops, 3-6 processes), where
/// the sweep of keys with deletes has more to arrange.
#[test]
fn bigger_keys_with_deletes_match_brute_force_and_search() {
    compare_unique_with(true, true, true, 2_000 * scale(), 27);
}

/// Bigger histories (a few hundred ops, many concurrent processes) from the
/// simulator, valid and then mutated (a read sees another written value, or
/// an append string loses a piece): the unique-values check must agree with
/// the search wherever the search decides.
#[test]
fn unique_values_agree_with_the_search_on_simulated_histories() {
    use harness::checker::synth::{generate, SynthConfig};
    let mut rng = StdRng::seed_from_u64(23);
    let (mut agree, mut invalid, mut fast) = (0, 0, 0);
    for seed in 0..300 * scale() {
        let mut history = generate(&SynthConfig {
            model: ModelKind::Kv,
            ops: rng.random_range(20..200),
            processes: rng.random_range(2..12),
            keys: rng.random_range(1..4),
            info_rate: [0.0, 0.02, 0.1][seed as usize % 3],
            appends: true,
            deletes: seed % 4 == 0,
            seed,
        });
        if seed % 2 == 1 {
            mutate(&mut history, &mut rng);
        }
        let options = |fast_paths| CheckOptions {
            model: Some(ModelKind::Kv),
            all_keys: true,
            fast_paths,
            ..CheckOptions::default()
        };
        let with = check(&history, &options(true)).unwrap();
        let without = check(&history, &options(false)).unwrap();
        for (a, b) in with.keys.iter().zip(&without.keys) {
            if b.verdict == Verdict::Unknown {
                continue;
            }
            assert_eq!(
                a.verdict,
                b.verdict,
                "seed {seed}, key {:?}:\n{}",
                a.key,
                history.to_edn_string()
            );
            agree += 1;
            invalid += usize::from(b.verdict == Verdict::NotLinearizable);
            fast += usize::from(a.method == harness::checker::Method::UniqueValues);
        }
    }
    assert!(
        invalid > agree / 10 && fast > agree / 2,
        "{agree} keys, {invalid} invalid, {fast} by the unique-values check"
    );
}

/// Makes one `:ok` read see another value written in the history, or `nil`,
/// or drop a piece of an appended string.
fn mutate(history: &mut History, rng: &mut StdRng) {
    let written: Vec<Value> = history
        .ops
        .iter()
        .filter(|op| op.kind == OpType::Invoke && matches!(op.f.as_str(), "put" | "cas"))
        .filter_map(|op| match op.value.as_vector() {
            Some([_, Value::Vector(pair)]) => pair.get(1).cloned(),
            Some([_, v]) => Some(v.clone()),
            _ => None,
        })
        .collect();
    let reads: Vec<usize> = (0..history.ops.len())
        .filter(|&i| history.ops[i].kind == OpType::Ok && history.ops[i].f == "get")
        .collect();
    if reads.is_empty() || written.is_empty() {
        return;
    }
    let i = reads[rng.random_range(0..reads.len())];
    let Some([key, seen]) = history.ops[i]
        .value
        .as_vector()
        .map(|v| v.to_vec())
        .as_deref()
        .map(|v| [v[0].clone(), v[1].clone()])
    else {
        return;
    };
    let new = match seen.as_str() {
        // A read of a value sees a missing key instead (often still
        // linearizable with deletes: some delete may explain it).
        Some(_) if rng.random_bool(0.2) => Value::Nil,
        Some(s) if s.matches(';').count() >= 2 && rng.random_bool(0.5) => {
            // Drop one appended piece ("x3;") from the middle or the end.
            let pieces: Vec<&str> = s.split_inclusive(';').collect();
            let drop = rng.random_range(0..pieces.len());
            Value::string(
                pieces
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != drop)
                    .map(|(_, p)| *p)
                    .collect::<String>(),
            )
        }
        _ => written[rng.random_range(0..written.len())].clone(),
    };
    history.ops[i].value = Value::Vector(vec![key, new].into());
}

/// One hot key with deletes (`nil` written by many ops) and many
/// concurrent processes, valid and mutated: the reads-from guesses for
/// `nil` must never turn a history the search finds not linearizable into
/// "linearizable" (nor the reverse), and must decide some valid ones.
#[test]
fn hot_keys_with_deletes_agree_with_the_search() {
    use harness::checker::synth::{generate, SynthConfig};
    let mut rng = StdRng::seed_from_u64(25);
    let (mut agree, mut invalid, mut fast) = (0, 0, 0);
    for seed in 0..200 * scale() {
        let mut history = generate(&SynthConfig {
            model: ModelKind::Kv,
            ops: rng.random_range(20..100),
            processes: rng.random_range(4..16),
            keys: 1,
            info_rate: [0.0, 0.02, 0.1][seed as usize % 3],
            appends: true,
            deletes: true,
            seed: 1000 + seed,
        });
        if seed % 2 == 1 {
            mutate(&mut history, &mut rng);
        }
        let options = |fast_paths| CheckOptions {
            model: Some(ModelKind::Kv),
            fast_paths,
            budget: harness::checker::Budget {
                max_states: 300_000,
                ..Default::default()
            },
            ..CheckOptions::default()
        };
        let with = check(&history, &options(true)).unwrap();
        let without = check(&history, &options(false)).unwrap();
        let (a, b) = (&with.keys[0], &without.keys[0]);
        if b.verdict == Verdict::Unknown {
            continue;
        }
        assert_eq!(
            a.verdict,
            b.verdict,
            "seed {seed}:\n{}",
            history.to_edn_string()
        );
        agree += 1;
        invalid += usize::from(b.verdict == Verdict::NotLinearizable);
        fast += usize::from(a.method == harness::checker::Method::UniqueValues);
    }
    eprintln!("{agree} keys, {invalid} invalid, {fast} by the unique-values check");
    assert!(
        invalid > agree / 10 && fast > agree / 4,
        "{agree} keys, {invalid} invalid, {fast} by the unique-values check"
    );
}

/// Valid hot keys with deletes from the simulator (up to 1 500 ops, up to
/// 64 processes, `:info` rates up to 10 %): the sweep of the unique-values
/// check (`checker/unique.rs`, `Checker::sweep`) must decide every one of
/// them "linearizable" (its answer is a witness replayed on the model, so
/// this tests that it finds one), and a corrupted read must be found.
#[test]
fn valid_hot_keys_with_deletes_are_decided_without_search() {
    use harness::checker::synth::{corrupt_one_read, generate, SynthConfig};
    let mut rng = StdRng::seed_from_u64(26);
    let cases = 100 * scale();
    let mut missed = Vec::new();
    for seed in 0..cases {
        let mut history = generate(&SynthConfig {
            model: ModelKind::Kv,
            ops: rng.random_range(20..1500),
            processes: rng.random_range(2..=64),
            keys: 1,
            info_rate: [0.0, 0.01, 0.05, 0.1][seed as usize % 4],
            appends: true,
            deletes: true,
            seed: 5000 + seed,
        });
        let options = CheckOptions {
            model: Some(ModelKind::Kv),
            budget: harness::checker::Budget {
                max_states: 1,
                ..Default::default()
            },
            ..CheckOptions::default()
        };
        let report = check(&history, &options).unwrap();
        let key = &report.keys[0];
        if key.verdict != Verdict::Linearizable
            || key.method != harness::checker::Method::UniqueValues
        {
            missed.push(seed);
        }
        if corrupt_one_read(&mut history, seed).is_some() {
            let report = check(&history, &options).unwrap();
            assert_eq!(report.verdict(), Verdict::NotLinearizable, "seed {seed}");
        }
    }
    eprintln!(
        "{cases} valid hot keys, {} not decided without search: {missed:?}",
        missed.len()
    );
    assert!(
        missed.is_empty(),
        "not decided without search: seeds {missed:?}"
    );
}

// ---------------------------------------------------------------------------
// Keys with deletes, adversarially: many deletes, reads of nil, cas from nil
// and appends to a missing key, `:info` and `:fail` ops. The histories are
// simulated (ops take effect on a real register between call and return),
// then some reads are perturbed (`noise`), so most cases sit near the
// boundary between linearizable and not.

/// A simulated one-key history with unique written values and many `nil`s;
/// each `:ok` read is perturbed with probability `noise` (to `nil`, or to
/// another value written so far); a change times out (`:info`) with
/// probability about `info`. Returns the history and its ops for the brute
/// force.
fn nil_heavy_history(
    rng: &mut StdRng,
    total: usize,
    processes: usize,
    noise: f64,
    info: f64,
) -> (History, Vec<BruteOp>) {
    enum Effect {
        Pending,
        Saw(Value),
        Changed,
        NoMatch,
    }
    let mut history = History::new();
    let mut brute = Vec::new();
    let mut running: Vec<Option<(Op, BruteOp, Effect)>> = (0..processes).map(|_| None).collect();
    let mut ids: Vec<i64> = (0..processes as i64).collect();
    let mut next_id = processes as i64;
    let mut state = Value::Nil;
    let mut written: Vec<Value> = vec![Value::Nil];
    let (mut invoked, mut fresh) = (0, 0);
    let key = || Value::Str("k".into());
    let wrap = |v: Value| Value::Vector(vec![key(), v].into());
    while invoked < total || running.iter().any(Option::is_some) {
        let p = rng.random_range(0..processes);
        match running[p].take() {
            None if invoked < total => {
                invoked += 1;
                fresh += 1;
                let new = Value::string(format!("v{fresh}"));
                let (f, kind, value) = match rng.random_range(0..100) {
                    0..30 => ("read", Kind::Read(Value::Nil), wrap(Value::Nil)),
                    30..52 => (
                        "delete",
                        Kind::Write(Value::Nil),
                        Value::Vector(vec![key()].into()),
                    ),
                    52..65 => ("write", Kind::Write(new.clone()), wrap(new)),
                    65..85 => {
                        let old = match rng.random_range(0..10) {
                            0..4 => state.clone(),
                            4..7 => Value::Nil,
                            _ => written[rng.random_range(0..written.len())].clone(),
                        };
                        let pair = Value::Vector(vec![old.clone(), new.clone()].into());
                        ("cas", Kind::Cas(old, new), wrap(pair))
                    }
                    _ => {
                        let s = format!("a{fresh};");
                        ("append", Kind::Append(s.clone()), wrap(Value::string(s)))
                    }
                };
                let op = Op::invoke(ids[p], f, value);
                let b = BruteOp {
                    kind,
                    call: history.ops.len(),
                    ret: None,
                };
                history.push(op.clone());
                running[p] = Some((op, b, Effect::Pending));
            }
            None => {}
            Some((op, b, Effect::Pending)) if !rng.random_bool(info) => {
                // Its linearization point.
                let effect = match &b.kind {
                    Kind::Read(_) => Effect::Saw(state.clone()),
                    kind => match apply(&state, kind) {
                        Some(next) => {
                            if !next.is_nil() {
                                written.push(next.clone());
                            }
                            state = next;
                            Effect::Changed
                        }
                        None => Effect::NoMatch,
                    },
                };
                running[p] = Some((op, b, effect));
            }
            Some((op, mut b, effect)) => {
                let timeout = matches!(effect, Effect::Pending) || rng.random_bool(info / 2.0);
                match effect {
                    _ if timeout => {
                        // Unknown outcome (it took effect or never will).
                        history.push(op.complete(OpType::Info, op.value.clone()));
                        if !matches!(b.kind, Kind::Read(_)) {
                            brute.push(b);
                        }
                        ids[p] = next_id;
                        next_id += 1;
                    }
                    Effect::NoMatch => {
                        history.push(op.complete(OpType::Fail, op.value.clone()));
                    }
                    Effect::Saw(mut seen) => {
                        if rng.random_bool(noise) {
                            seen = if seen.is_nil() || rng.random_bool(0.3) {
                                written[rng.random_range(0..written.len())].clone()
                            } else {
                                Value::Nil
                            };
                        }
                        b.kind = Kind::Read(seen.clone());
                        b.ret = Some(history.ops.len());
                        history.push(op.complete(OpType::Ok, wrap(seen)));
                        brute.push(b);
                    }
                    Effect::Changed | Effect::Pending => {
                        b.ret = Some(history.ops.len());
                        history.push(op.complete(OpType::Ok, op.value.clone()));
                        brute.push(b);
                    }
                }
            }
        }
    }
    (history, brute)
}

/// How one key was decided: its verdict, and whether by the unique-values
/// check (no search).
fn decide(history: &History, max_states: u64) -> (Verdict, bool) {
    let options = CheckOptions {
        model: Some(ModelKind::Kv),
        budget: harness::checker::Budget {
            max_states,
            ..Default::default()
        },
        ..CheckOptions::default()
    };
    let report = check(history, &options).unwrap();
    let key = &report.keys[0];
    (
        key.verdict,
        key.method == harness::checker::Method::UniqueValues,
    )
}

/// Small nil-heavy keys against the brute force: the refutations of keys
/// with deletes (`Checker::refute`) must never call a linearizable key not
/// linearizable, and the sweep must decide every linearizable one (the
/// hunt for a case where it is not complete; `CHECKER_CASES=N` for more).
#[test]
fn nil_heavy_keys_match_brute_force() {
    let mut rng = StdRng::seed_from_u64(31);
    let cases = 20_000 * scale();
    let (mut lin, mut not, mut lin_fast, mut not_fast) = (0, 0, 0, 0);
    let mut missed = Vec::new();
    for case in 0..cases {
        let total = rng.random_range(2..=10);
        let processes = rng.random_range(2..=5);
        let noise = [0.0, 0.2, 0.5][case as usize % 3];
        let info = [0.0, 0.1][case as usize / 3 % 2];
        let (history, ops) = nil_heavy_history(&mut rng, total, processes, noise, info);
        let expected = if brute_force(&ops, &mut vec![false; ops.len()], &Value::Nil) {
            Verdict::Linearizable
        } else {
            Verdict::NotLinearizable
        };
        let (got, fast) = decide(&history, 1_000_000);
        assert_eq!(got, expected, "case {case}:\n{}", history.to_edn_string());
        if expected == Verdict::Linearizable {
            lin += 1;
            lin_fast += usize::from(fast);
            if !fast && missed.len() < 5 {
                missed.push(history.to_edn_string());
            }
        } else {
            not += 1;
            not_fast += usize::from(fast);
        }
    }
    eprintln!("{cases} nil-heavy keys: {lin} linearizable ({lin_fast} without search), {not} not ({not_fast} without search)");
    assert!(
        lin > cases / 10 && not > cases / 20,
        "{lin} linearizable, {not} not"
    );
    assert!(
        missed.is_empty(),
        "linearizable, not decided without search:\n{}",
        missed.join("\n")
    );
}

/// Bigger nil-heavy keys, valid by construction (up to 2 000 ops, up to 64
/// processes): the sweep must decide each "linearizable" without search;
/// and after `corrupt_one_read_to_nil` (a read of `nil` no delete explains)
/// each must be decided "not linearizable" without search.
#[test]
fn valid_nil_heavy_keys_are_decided_without_search() {
    use harness::checker::synth::corrupt_one_read_to_nil;
    let mut rng = StdRng::seed_from_u64(32);
    let cases = 300 * scale();
    let (mut missed, mut corrupted) = (Vec::new(), 0);
    for case in 0..cases {
        let total = rng.random_range(10..2000);
        let processes = rng.random_range(2..=64);
        let info = [0.0, 0.002, 0.05][case as usize % 3];
        let (mut history, _) = nil_heavy_history(&mut rng, total, processes, 0.0, info);
        if decide(&history, 1) != (Verdict::Linearizable, true) {
            missed.push(case);
        }
        if corrupt_one_read_to_nil(&mut history, case).is_some() {
            corrupted += 1;
            assert_eq!(
                decide(&history, 1),
                (Verdict::NotLinearizable, true),
                "case {case}:\n{}",
                history.to_edn_string()
            );
        }
    }
    eprintln!(
        "{cases} valid nil-heavy keys, {corrupted} corrupted, not decided without search: {missed:?}"
    );
    assert!(corrupted > cases / 10, "only {corrupted} corrupted");
    assert!(missed.is_empty(), "not decided without search: {missed:?}");
}

/// Medium nil-heavy keys (20-80 ops, 2-16 processes) with a few perturbed
/// reads, against the search alone: where the search decides, the
/// unique-values check (relaxed check, sweep, refutations) must agree.
#[test]
fn nil_heavy_keys_agree_with_the_search() {
    let mut rng = StdRng::seed_from_u64(33);
    let cases = 400 * scale();
    let (mut agree, mut invalid, mut fast, mut fast_invalid) = (0, 0, 0, 0);
    for case in 0..cases {
        let total = rng.random_range(20..80);
        let processes = rng.random_range(2..=16);
        let noise = [0.0, 0.01, 0.03, 0.1][case as usize % 4];
        let info = [0.0, 0.05][case as usize / 4 % 2];
        let (history, _) = nil_heavy_history(&mut rng, total, processes, noise, info);
        let options = |fast_paths| CheckOptions {
            model: Some(ModelKind::Kv),
            fast_paths,
            budget: harness::checker::Budget {
                max_states: 300_000,
                ..Default::default()
            },
            ..CheckOptions::default()
        };
        let searched = check(&history, &options(false)).unwrap().keys[0].verdict;
        if searched == Verdict::Unknown {
            continue;
        }
        let (got, by_unique) = decide(&history, 300_000);
        assert_eq!(got, searched, "case {case}:\n{}", history.to_edn_string());
        agree += 1;
        fast += usize::from(by_unique);
        if searched == Verdict::NotLinearizable {
            invalid += 1;
            fast_invalid += usize::from(by_unique);
        }
    }
    eprintln!("{agree} nil-heavy keys decided by the search, {invalid} invalid; by the unique-values check: {fast} ({fast_invalid} invalid)");
    assert!(invalid > agree / 10, "{agree} keys, {invalid} invalid");
}
