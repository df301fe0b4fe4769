//! The histories the recorder writes are read and judged by the checker:
//! every op shape the runner produces (read/write/cas/delete/append, `:info`,
//! `:fail`, nemesis ops, `:node` and `:error` extras), a valid history and
//! one with a stale read. The history the run writes (history.edn) reads back
//! as the same ops, with the same verdict.

use std::time::Duration;

use client::Op;
use harness::generator::HistoryOp;
use harness::history::{History, OpType, Value as Edn};
use harness::recorder::Recorder;
use harness::run::check::{check_history, LinVerdict};

fn op(r: &Recorder, p: u64, op: &Op, kind: OpType, read: Option<&str>) {
    r.record_client(
        p,
        OpType::Invoke,
        op.f(),
        op.invoke_value(),
        "127.0.0.1:8000",
        None,
    );
    let value = if kind == OpType::Ok {
        op.ok_value(read.map(str::to_string))
    } else {
        op.invoke_value()
    };
    let err = (kind != OpType::Ok).then(|| "timeout".to_string());
    r.record_client(p, kind, op.f(), value, "127.0.0.1:8000", err);
}

fn put(k: &str, v: &str) -> Op {
    Op::Put {
        key: k.into(),
        value: v.into(),
    }
}
fn get(k: &str) -> Op {
    Op::Get { key: k.into() }
}

fn check(r: &Recorder, name: &str) -> harness::run::check::LinResult {
    let tmp_dir = tempfile::Builder::new()
        .prefix(&format!("harness-recorded-{name}-"))
        .tempdir()
        .unwrap();
    let dir = tmp_dir.path();
    let path = dir.join("history.edn");
    let history = r.snapshot();
    history.write_file(&path).unwrap();
    let read_back = History::from_file(&path).unwrap();
    assert_eq!(read_back.ops, history.ops);
    let res = check_history(&history, dir, Duration::from_secs(10));
    let again = check_history(&read_back, dir, Duration::from_secs(10));
    assert_eq!(res.verdict, again.verdict);
    let files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for k in &res.invalid {
        let t = k.timeline.as_ref().expect("a timeline per invalid key");
        assert!(files.contains(t), "{t} not in {files:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
    res
}

#[test]
fn every_op_shape_checks_as_linearizable() {
    let r = Recorder::new();
    r.record_nemesis(
        "pause",
        Edn::Vector(vec![Edn::string("127.0.0.1:8000")].into()),
        None,
    );
    op(&r, 0, &put("k1", "a"), OpType::Ok, None);
    op(&r, 1, &get("k1"), OpType::Ok, Some("a"));
    op(
        &r,
        0,
        &Op::Cas {
            key: "k1".into(),
            expected: Some("a".into()),
            new: "b".into(),
        },
        OpType::Ok,
        None,
    );
    op(
        &r,
        1,
        &Op::Cas {
            key: "k1".into(),
            expected: Some("zz".into()),
            new: "c".into(),
        },
        OpType::Fail,
        None,
    );
    op(
        &r,
        0,
        &Op::Append {
            key: "k1".into(),
            value: "x;".into(),
        },
        OpType::Ok,
        None,
    );
    op(&r, 1, &get("k1"), OpType::Ok, Some("bx;"));
    op(&r, 0, &Op::Delete { key: "k1".into() }, OpType::Ok, None);
    op(&r, 1, &get("k1"), OpType::Ok, None);
    op(&r, 2, &put("k2", "q"), OpType::Info, None);
    op(&r, 3, &get("k2"), OpType::Ok, Some("q"));
    r.record_nemesis(
        "resume",
        Edn::Vector(vec![Edn::string("127.0.0.1:8000")].into()),
        None,
    );
    let res = check(&r, "valid");
    assert_eq!(res.verdict, LinVerdict::Linearizable, "{res:?}");
    assert_eq!(res.keys_checked, 2);
}

#[test]
fn a_stale_read_is_caught_with_a_timeline() {
    let r = Recorder::new();
    op(&r, 0, &put("k0", "old"), OpType::Ok, None);
    op(&r, 1, &put("k0", "new"), OpType::Ok, None);
    op(&r, 2, &get("k0"), OpType::Ok, Some("old"));
    let res = check(&r, "stale");
    assert_eq!(res.verdict, LinVerdict::NotLinearizable, "{res:?}");
    assert_eq!(res.invalid.len(), 1);
    assert_eq!(res.invalid[0].key, "k0");
}
