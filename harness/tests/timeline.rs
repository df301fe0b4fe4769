//! The timeline page: fault windows, nodes, the explanation's ops linked to
//! their history lines, and its size bound on a large history.

use harness::checker::{check, CheckOptions, ModelKind, OpRef, Violation};
use harness::history::{History, Op, OpType, Outcome, Value};
use harness::report::timeline;

fn kv(k: &str, v: impl Into<Value>) -> Value {
    Value::Vector(vec![Value::from(k), v.into()].into())
}

/// `n` sequential writes and reads of k0 on three nodes, a pause window
/// every 1000 ops, and one read spanning all of it that returns a value
/// nobody wrote (so every op overlaps the anomaly's window).
fn large_history(n: i64) -> History {
    let mut h = History::new();
    let long = Op::invoke(99, "read", kv("k0", Value::Nil))
        .at(0)
        .with_extra("node", "n2");
    h.push(long.clone());
    let mut t = 1;
    for i in 0..n {
        if i % 1000 == 0 {
            h.push(Op::nemesis(OpType::Info, "pause", vec![Value::from("n1")]).at(t));
        }
        if i % 1000 == 500 {
            h.push(Op::nemesis(OpType::Info, "resume", vec![Value::from("n1")]).at(t));
        }
        let node = format!("n{}", i % 3);
        let (f, v) = if i % 2 == 0 {
            (
                "write",
                kv("k0", format!("value-{i:06}-{}", "x".repeat(40))),
            )
        } else {
            (
                "read",
                kv("k0", format!("value-{:06}-{}", i - 1, "x".repeat(40))),
            )
        };
        let inv = Op::invoke(i % 5, f, v.clone())
            .at(t)
            .with_extra("node", node.clone());
        h.push(inv.clone());
        h.push(
            inv.complete(OpType::Ok, v)
                .at(t + 5)
                .with_extra("node", node),
        );
        t += 10;
    }
    h.push(
        long.complete(OpType::Ok, kv("k0", "never"))
            .at(t)
            .with_extra("node", "n2"),
    );
    h
}

#[test]
fn page_of_a_200k_op_history_stays_within_its_bound() {
    let h = large_history(200_000);
    // The violation as the checker reports it (a search of 200k concurrent
    // ops takes too long for a test in a debug build): the long read.
    let last = h.ops.len() - 1;
    let v = Violation {
        key: Some(Value::from("k0")),
        model: ModelKind::Kv,
        op: OpRef {
            invoke: 0,
            complete: Some(last),
            process: 99,
            f: "read".into(),
            outcome: Outcome::Ok,
            input: kv("k0", Value::Nil),
            output: Some(kv("k0", "never")),
        },
        pending: vec![],
        prefix: vec![],
        state: "nil".into(),
        reason: None,
    };
    let v = &v;
    let page = timeline::render(&h, v);
    assert!(
        page.len() < timeline::MAX_PAGE_BYTES,
        "page of {} bytes exceeds the bound of {}",
        page.len(),
        timeline::MAX_PAGE_BYTES
    );
    let bars = page.matches("data-t0=").count();
    eprintln!("timeline page: {} bytes, {bars} bars", page.len());
    assert!(bars <= timeline::MAX_OPS, "{bars} bars drawn");
    assert!(
        page.contains(&format!("{} of 200001 ops", timeline::MAX_OPS)),
        "count line"
    );
    assert!(page.matches(r#"<g class="fault">"#).count() <= timeline::MAX_FAULTS);
    assert!(page.contains(r#"id="anomaly""#));
    assert!(page.contains("never-written"));
}

#[test]
fn page_shows_faults_nodes_and_links_the_explanation_to_history_lines() {
    let mut h = History::new();
    let op = |p: i64, f: &str, v: Value, t: i64, node: &str| {
        Op::invoke(p, f, v)
            .at(t * 1_000_000)
            .with_extra("node", node)
    };
    let w1 = op(0, "write", kv("k0", 1), 100, "127.0.0.1:8001");
    h.push(w1.clone());
    h.push(w1.complete(OpType::Ok, kv("k0", 1)).at(200_000_000));
    h.push(Op::nemesis(OpType::Info, "pause", vec![Value::from("127.0.0.1:8002")]).at(300_000_000));
    let w2 = op(1, "write", kv("k0", 2), 1000, "127.0.0.1:8001");
    h.push(w2.clone());
    h.push(w2.complete(OpType::Ok, kv("k0", 2)).at(1_100_000_000));
    let w3 = op(3, "write", kv("k0", 3), 1900, "127.0.0.1:8003");
    h.push(w3.clone());
    let r = op(2, "read", kv("k0", Value::Nil), 2000, "127.0.0.1:8002");
    h.push(r.clone());
    h.push(r.complete(OpType::Ok, kv("k0", 1)).at(2_100_000_000));
    h.push(w3.complete(OpType::Info, kv("k0", 3)).at(2_200_000_000));
    h.push(
        Op::nemesis(OpType::Info, "resume", vec![Value::from("127.0.0.1:8002")]).at(2_500_000_000),
    );
    let report = check(&h, &CheckOptions::default()).unwrap();
    let v = report.violations().next().unwrap();
    let page = timeline::render(&h, v);
    // The fault window with its kind and node, closed by its heal.
    assert!(
        page.contains("fault pause 127.0.0.1:8002\nfrom 0.300 s to 2.500 s"),
        "{page}"
    );
    // The explanation on top, its ops linked to their lines, quoted below.
    assert!(page.contains("<b>lost-write:</b> read of k0 at 2.000 s via 127.0.0.1:8002 returned 1"));
    assert!(page.contains(r##"<a href="#line-4" class="why">"##));
    assert!(page.contains(r#"<span id="line-4">line 4: {:index 3, :time 1000000000, :process 1, :type :invoke, :f :write, :value [&quot;k0&quot; 2], :node &quot;127.0.0.1:8001&quot;}</span>"#));
    // Nodes: the serving node in the hover text and the legend.
    assert!(page.contains("served by node 127.0.0.1:8003"));
    assert!(page.contains(r#"<span style="border-left:8px solid #1b9e77">127.0.0.1:8001</span>"#));
    // The :info write is open-ended.
    assert!(
        page.contains(":write [&quot;k0&quot; 3] …"),
        "open-ended label"
    );
}
