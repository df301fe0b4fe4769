//! Explanations in words (`harness::report::explain`) for hand-made histories
//! of each anomaly kind: the checker finds the violation, the explanation
//! names it with the exact text a person reads in report.txt.

use harness::checker::{check, CheckOptions, ModelKind, Verdict};
use harness::history::{History, Op, OpType, Value};
use harness::report::explain::{self, Anomaly};

/// Builds a history from (process, f, invoke value, completion type,
/// completion value, invoke ms, complete ms, node) rows; events are sorted
/// by time, so rows may overlap.
type Row<'a> = (i64, &'a str, Value, OpType, Value, i64, i64, &'a str);

fn history(rows: &[Row<'_>]) -> History {
    let mut events: Vec<(i64, Op)> = Vec::new();
    for (p, f, iv, kind, cv, t0, t1, node) in rows {
        let invoke = Op::invoke(*p, *f, iv.clone());
        let done = invoke
            .complete(*kind, cv.clone())
            .at(t1 * 1_000_000)
            .with_extra("node", *node);
        events.push((*t0, invoke.at(t0 * 1_000_000).with_extra("node", *node)));
        events.push((*t1, done));
    }
    events.sort_by_key(|(t, _)| *t);
    let mut h = History::new();
    for (_, op) in events {
        h.push(op);
    }
    h
}

fn kv(k: &str, v: impl Into<Value>) -> Value {
    Value::Vector(vec![Value::from(k), v.into()].into())
}

fn s(v: &str) -> Value {
    Value::from(v)
}

fn explain_only(h: &History, model: ModelKind) -> explain::Explanation {
    let options = CheckOptions {
        model: Some(model),
        parallel: false,
        ..CheckOptions::default()
    };
    let report = check(h, &options).expect("checkable");
    assert_eq!(report.verdict(), Verdict::NotLinearizable);
    let v = report.violations().next().expect("a violation");
    explain::explain(h, v)
}

use OpType::{Info as INFO, Ok as OK};

#[test]
fn stale_read_names_the_write_it_missed_and_who_saw_it() {
    let h = history(&[
        (
            0,
            "write",
            kv("k0", s("a")),
            OK,
            kv("k0", s("a")),
            100,
            200,
            "n0",
        ),
        (
            1,
            "write",
            kv("k0", s("b")),
            OK,
            kv("k0", s("b")),
            1000,
            1100,
            "n1",
        ),
        (
            2,
            "read",
            kv("k0", Value::Nil),
            OK,
            kv("k0", s("b")),
            2000,
            2100,
            "n2",
        ),
        (
            3,
            "read",
            kv("k0", Value::Nil),
            OK,
            kv("k0", s("a")),
            3000,
            3100,
            "n0",
        ),
    ]);
    let e = explain_only(&h, ModelKind::Kv);
    assert_eq!(e.anomaly, Anomaly::StaleRead);
    assert_eq!(
        e.text,
        r#"read of k0 at 3.000 s via n0 returned "a", but write "b" via n1 was acknowledged at 1.100 s, before the read began, and nothing wrote "a" after it; the read should have returned "b" (as the read at 2.000 s did) or a later value"#
    );
    assert_eq!(e.ops, vec![6, 2, 4]);
}

#[test]
fn a_write_overwritten_before_anyone_read_it_still_makes_a_stale_read() {
    // "b" is never read, but "c", written after "b" was acknowledged, is:
    // "b" was overwritten in time, not lost; the read of "a" is stale.
    let h = history(&[
        (
            0,
            "write",
            kv("k0", s("a")),
            OK,
            kv("k0", s("a")),
            100,
            200,
            "n0",
        ),
        (
            1,
            "write",
            kv("k0", s("b")),
            OK,
            kv("k0", s("b")),
            1000,
            1100,
            "n1",
        ),
        (
            2,
            "read",
            kv("k0", Value::Nil),
            OK,
            kv("k0", s("a")),
            2000,
            2100,
            "n2",
        ),
        (
            1,
            "write",
            kv("k0", s("c")),
            OK,
            kv("k0", s("c")),
            3000,
            3100,
            "n1",
        ),
        (
            3,
            "read",
            kv("k0", Value::Nil),
            OK,
            kv("k0", s("c")),
            4000,
            4100,
            "n0",
        ),
    ]);
    let e = explain_only(&h, ModelKind::Kv);
    assert_eq!(e.anomaly, Anomaly::StaleRead);
    assert_eq!(
        e.text,
        r#"read of k0 at 2.000 s via n2 returned "a", but write "b" via n1 was acknowledged at 1.100 s, before the read began, and nothing wrote "a" after it; the read should have returned "b" or a later value (the read at 4.000 s saw "c", written after it)"#
    );
}

#[test]
fn lost_write_is_a_write_no_one_ever_observed() {
    let h = history(&[
        (
            0,
            "write",
            kv("k0", s("a")),
            OK,
            kv("k0", s("a")),
            100,
            200,
            "n0",
        ),
        (
            1,
            "write",
            kv("k0", s("b")),
            OK,
            kv("k0", s("b")),
            1000,
            1100,
            "n1",
        ),
        (
            2,
            "read",
            kv("k0", Value::Nil),
            OK,
            kv("k0", s("a")),
            2000,
            2100,
            "n2",
        ),
        (
            3,
            "read",
            kv("k0", Value::Nil),
            OK,
            kv("k0", s("a")),
            3000,
            3100,
            "n0",
        ),
    ]);
    let e = explain_only(&h, ModelKind::Kv);
    assert_eq!(e.anomaly, Anomaly::LostWrite);
    assert_eq!(
        e.text,
        r#"read of k0 at 2.000 s via n2 returned "a", but write "b" via n1 was acknowledged at 1.100 s, before the read began, and nothing wrote "a" after it; no operation ever observed "b": the acknowledged write was lost"#
    );
}

#[test]
fn read_of_the_initial_value_after_an_acknowledged_write() {
    let h = history(&[
        (0, "write", kv("k1", 5), OK, kv("k1", 5), 100, 200, "n0"),
        (
            1,
            "read",
            kv("k1", Value::Nil),
            OK,
            kv("k1", Value::Nil),
            300,
            400,
            "n1",
        ),
    ]);
    let e = explain_only(&h, ModelKind::Kv);
    assert_eq!(e.anomaly, Anomaly::LostWrite);
    assert_eq!(
        e.text,
        "read of k1 at 0.300 s via n1 returned nil, but write 5 via n0 was acknowledged at 0.200 s, before the read began, and nothing deleted it after it; no operation ever observed 5: the acknowledged write was lost"
    );
}

#[test]
fn read_of_a_value_never_written() {
    let h = history(&[
        (
            0,
            "write",
            kv("k0", s("a")),
            OK,
            kv("k0", s("a")),
            100,
            200,
            "n0",
        ),
        (
            1,
            "read",
            kv("k0", Value::Nil),
            OK,
            kv("k0", s("zz")),
            1000,
            1100,
            "n1",
        ),
    ]);
    let e = explain_only(&h, ModelKind::Kv);
    assert_eq!(e.anomaly, Anomaly::NeverWritten);
    assert_eq!(
        e.text,
        r#"read of k0 at 1.000 s via n1 returned "zz", but no operation wrote "zz"; k0 could hold "a" there"#
    );
    assert_eq!(e.ops, vec![2]);
}

#[test]
fn cas_that_succeeded_against_an_overwritten_value() {
    let h = history(&[
        (0, "write", kv("k0", 1), OK, kv("k0", 1), 100, 200, "n0"),
        (1, "write", kv("k0", 2), OK, kv("k0", 2), 1000, 1100, "n1"),
        (
            2,
            "cas",
            kv("k0", vec![1, 3]),
            OK,
            kv("k0", vec![1, 3]),
            2000,
            2100,
            "n2",
        ),
    ]);
    let e = explain_only(&h, ModelKind::Kv);
    assert_eq!(e.anomaly, Anomaly::CasWrongValue);
    assert_eq!(
        e.text,
        "cas [1 3] of k0 at 2.000 s via n2 succeeded, but k0 held 2 then: write 2 via n1 was acknowledged at 1.100 s, before the cas began, and nothing wrote 1 after it"
    );
}

#[test]
fn cas_against_a_value_never_written() {
    let h = history(&[
        (0, "write", kv("k0", 1), OK, kv("k0", 1), 100, 200, "n0"),
        (
            2,
            "cas",
            kv("k0", vec![7, 3]),
            OK,
            kv("k0", vec![7, 3]),
            2000,
            2100,
            "n2",
        ),
    ]);
    let e = explain_only(&h, ModelKind::Kv);
    assert_eq!(e.anomaly, Anomaly::CasWrongValue);
    assert_eq!(
        e.text,
        "cas [7 3] of k0 at 2.000 s via n2 succeeded, but no operation wrote 7; k0 could hold 1 there"
    );
}

#[test]
fn appends_read_in_an_order_real_time_forbids() {
    let h = history(&[
        (0, "append", kv("k0", 1), OK, kv("k0", 1), 100, 200, "n0"),
        (1, "append", kv("k0", 2), OK, kv("k0", 2), 1000, 1100, "n1"),
        (
            2,
            "read",
            kv("k0", Value::Nil),
            OK,
            kv("k0", vec![2, 1]),
            2000,
            2100,
            "n2",
        ),
    ]);
    let e = explain_only(&h, ModelKind::Kv);
    assert_eq!(e.anomaly, Anomaly::AppendOutOfOrder);
    assert_eq!(
        e.text,
        "read of k0 at 2.000 s via n2 returned [2 1], with 2 before 1, but append 1 via n0 was acknowledged at 0.200 s, before append 2 via n1 began at 1.000 s"
    );
    assert_eq!(e.ops, vec![4, 0, 2]);
}

#[test]
fn reads_that_disagree_on_the_order_of_concurrent_appends() {
    let h = history(&[
        (
            0,
            "append",
            kv("k0", s("x")),
            OK,
            kv("k0", s("x")),
            100,
            900,
            "n0",
        ),
        (
            1,
            "append",
            kv("k0", s("y")),
            OK,
            kv("k0", s("y")),
            100,
            900,
            "n1",
        ),
        (
            2,
            "read",
            kv("k0", Value::Nil),
            OK,
            kv("k0", s("xy")),
            1000,
            1100,
            "n2",
        ),
        (
            3,
            "read",
            kv("k0", Value::Nil),
            OK,
            kv("k0", s("yx")),
            2000,
            2100,
            "n0",
        ),
    ]);
    let e = explain_only(&h, ModelKind::Kv);
    assert_eq!(e.anomaly, Anomaly::AppendOutOfOrder);
    assert_eq!(
        e.text,
        r#"read of k0 at 2.000 s via n0 returned "yx", but the read at 1.000 s via n2 returned "xy": neither order of the appends extends the other"#
    );
}

#[test]
fn acknowledged_append_missing_from_a_later_read() {
    let h = history(&[
        (0, "append", kv("k0", 1), OK, kv("k0", 1), 100, 200, "n0"),
        (1, "append", kv("k0", 2), OK, kv("k0", 2), 300, 400, "n1"),
        (
            2,
            "read",
            kv("k0", Value::Nil),
            OK,
            kv("k0", vec![1]),
            1000,
            1100,
            "n2",
        ),
    ]);
    let e = explain_only(&h, ModelKind::Kv);
    assert_eq!(e.anomaly, Anomaly::LostWrite);
    assert_eq!(
        e.text,
        "read of k0 at 1.000 s via n2 returned [1], without 2, but append 2 via n1 was acknowledged at 0.400 s, before the read began; no read ever observed it: the acknowledged append was lost"
    );
}

#[test]
fn register_history_without_time_or_node_names_lines() {
    let mut h = History::new();
    let w1 = Op::invoke(0, "write", 1);
    h.push(w1.clone());
    h.push(w1.complete(OK, 1));
    let w2 = Op::invoke(1, "write", 2);
    h.push(w2.clone());
    h.push(w2.complete(OK, 2));
    let r = Op::invoke(2, "read", Value::Nil);
    h.push(r.clone());
    h.push(r.complete(OK, 2));
    let r = Op::invoke(3, "read", Value::Nil);
    h.push(r.clone());
    h.push(r.complete(OK, 1));
    let e = explain_only(&h, ModelKind::CasRegister);
    assert_eq!(e.anomaly, Anomaly::StaleRead);
    assert_eq!(
        e.text,
        "read of the register at line 7 returned 1, but write 2 was acknowledged at line 4, before the read began, and nothing wrote 1 after it; the read should have returned 2 (as the read at line 5 did) or a later value"
    );
}

#[test]
fn the_report_text_carries_the_explanation_as_its_second_line() {
    let h = history(&[
        (0, "write", kv("k0", 5), OK, kv("k0", 5), 100, 200, "n0"),
        (
            1,
            "read",
            kv("k0", Value::Nil),
            OK,
            kv("k0", 6),
            300,
            400,
            "n1",
        ),
        (2, "write", kv("k0", 9), INFO, kv("k0", 9), 300, 400, "n1"),
    ]);
    let report = check(&h, &CheckOptions::default()).unwrap();
    let v = report.violations().next().unwrap();
    let text = explain::report_text(&h, v);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "key \"k0\": not linearizable (model kv)");
    assert_eq!(
        lines[1],
        "  why (never-written): read of k0 at 0.300 s via n1 returned 6, but no operation wrote 6; k0 could hold 5 there"
    );
    // One explanation: the checker's own reason (the unique-values path
    // gives one here) is not printed beside it.
    assert!(v.reason.is_some(), "the unique-values path gave no reason");
    let whys = lines
        .iter()
        .filter(|l| l.trim_start().starts_with("why"))
        .count();
    assert_eq!(whys, 1, "{text}");
}

#[test]
fn a_value_a_cas_wrote_on_an_append_key_is_not_called_never_written() {
    // The key mixes appends with a cas that writes a whole string: the read
    // of "v4" is the cas's value, not a string of appends. The violation is
    // the stale read of "x" after the cas was acknowledged.
    let h = history(&[
        (
            0,
            "append",
            kv("k0", s("x")),
            OK,
            kv("k0", s("x")),
            100,
            200,
            "n0",
        ),
        (
            1,
            "cas",
            kv("k0", Value::Vector(vec![s("x"), s("v4")].into())),
            OK,
            kv("k0", Value::Vector(vec![s("x"), s("v4")].into())),
            300,
            400,
            "n1",
        ),
        (
            2,
            "read",
            kv("k0", Value::Nil),
            OK,
            kv("k0", s("v4")),
            500,
            600,
            "n2",
        ),
        (
            3,
            "read",
            kv("k0", Value::Nil),
            OK,
            kv("k0", s("x")),
            700,
            800,
            "n0",
        ),
    ]);
    let e = explain_only(&h, ModelKind::Kv);
    assert_ne!(e.anomaly, Anomaly::NeverWritten, "{}", e.text);
    assert!(!e.text.contains("no operation appended"), "{}", e.text);
}
