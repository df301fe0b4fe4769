//! Network faults in the workload YAML: `partition` (shapes, groups, cut),
//! `delay` and `slow`; bad values are errors naming the field and its line.

use harness::net::{Cut, Shape};
use harness::workload::{FaultKind, Target, Workload};

fn err(yaml: &str) -> String {
    match Workload::parse(yaml, "w.yaml") {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

fn with_nemesis(replicas: usize, entry: &str) -> String {
    format!("duration: 10s\ncluster:\n  replicas: {replicas}\nnemesis:\n{entry}")
}

#[test]
fn network_faults_parse() {
    let y = with_nemesis(
        5,
        "  - fault: partition\n    shape: majorities-ring\n    start: 1s\n    duration: 2s\n\
         \x20 - fault: partition\n    groups: [[n0, n1, n2], [n2, n3, n4]]\n    cut: reset\n    duration: 1s\n\
         \x20 - fault: delay\n    target: leader\n    latency: 50ms\n    jitter: 20ms\n    duration: 3s\n\
         \x20 - fault: slow\n    target: all\n    bandwidth: 100kB/s\n    duration: 3s\n\
         \x20 - fault: partition\n    duration: 1s\n",
    );
    let w = Workload::parse(&y, "w.yaml").unwrap();
    assert!(w.uses_network());
    let n = &w.nemesis;
    assert_eq!(n[0].fault, FaultKind::Partition);
    assert_eq!(n[0].partition_shape(), Shape::MajoritiesRing);
    assert_eq!(
        n[1].partition_shape(),
        Shape::Groups(vec![vec![0, 1, 2], vec![2, 3, 4]])
    );
    assert_eq!(n[1].cut, Some(Cut::Reset));
    assert_eq!(n[2].latency.unwrap().0.as_millis(), 50);
    assert_eq!(n[2].jitter.unwrap().0.as_millis(), 20);
    assert_eq!(n[3].bandwidth.unwrap().0, 100_000);
    // Defaults: isolate a random node, blackholed.
    assert_eq!(n[4].partition_shape(), Shape::Isolate);
    assert_eq!(n[4].target, Target::Random);
    assert_eq!(n[4].cut, None);
    // The workload as run parses again to the same faults.
    let again = Workload::parse(&w.to_yaml(), "again.yaml").unwrap();
    assert_eq!(again.nemesis[1].partition_shape(), n[1].partition_shape());
    assert_eq!(again.nemesis[3].bandwidth, n[3].bandwidth);
    // Without network faults, no proxies.
    let plain = Workload::parse("duration: 1s\n", "w.yaml").unwrap();
    assert!(!plain.uses_network());
}

#[test]
fn bad_network_faults_are_named_with_their_line() {
    let e = err(&with_nemesis(
        3,
        "  - fault: partition\n    shape: triangle\n    duration: 1s\n",
    ));
    assert!(
        e.contains("unknown shape")
            && e.contains("majorities-ring")
            && e.contains("nemesis[0]")
            && e.contains("line 5"),
        "{e}"
    );
    let e = err(&with_nemesis(
        3,
        "  - fault: partition\n    groups: [[n0, n1], [n5]]\n    duration: 1s\n",
    ));
    assert!(
        e.contains("w.yaml:6") && e.contains("nemesis.0.groups") && e.contains("n5"),
        "{e}"
    );
    let e = err(&with_nemesis(
        3,
        "  - fault: partition\n    groups: [[n0, n1]]\n    duration: 1s\n",
    ));
    assert!(e.contains("w.yaml:6") && e.contains("leave out n2"), "{e}");
    let e = err(&with_nemesis(
        3,
        "  - fault: partition\n    groups: [[n0, leader], [n2]]\n    duration: 1s\n",
    ));
    assert!(e.contains("nodes such as n0"), "{e}");
    let e = err(&with_nemesis(1, "  - fault: partition\n    duration: 1s\n"));
    assert!(
        e.contains("w.yaml:5") && e.contains("at least 2 replicas"),
        "{e}"
    );
    let e = err(&with_nemesis(
        3,
        "  - fault: delay\n    target: all\n    duration: 1s\n",
    ));
    assert!(
        e.contains("w.yaml:5") && e.contains("needs a `latency`"),
        "{e}"
    );
    let e = err(&with_nemesis(
        3,
        "  - fault: delay\n    latency: -5ms\n    duration: 1s\n",
    ));
    assert!(
        e.contains("invalid duration") && e.contains("line 6"),
        "{e}"
    );
    let e = err(&with_nemesis(
        3,
        "  - fault: slow\n    bandwidth: fast\n    duration: 1s\n",
    ));
    assert!(
        e.contains("invalid bandwidth") && e.contains("line 6"),
        "{e}"
    );
    let e = err(&with_nemesis(
        3,
        "  - fault: pause\n    latency: 5ms\n    duration: 1s\n",
    ));
    assert!(
        e.contains("nemesis.0.latency") && e.contains("only a delay fault"),
        "{e}"
    );
    let e = err(&with_nemesis(
        3,
        "  - fault: partition\n    shape: bridge\n    groups: [[n0], [n1, n2]]\n    duration: 1s\n",
    ));
    assert!(e.contains("either a shape or groups"), "{e}");
    let e = err(&with_nemesis(
        2,
        "  - fault: partition\n    shape: bridge\n    duration: 1s\n",
    ));
    assert!(e.contains("bridge needs at least 3"), "{e}");
    let e = err(&with_nemesis(
        3,
        "  - fault: partition\n    cut: drop\n    duration: 1s\n",
    ));
    assert!(e.contains("cut") || e.contains("blackhole"), "{e}");
    let e = err(
        "duration: 10s\ncluster:\n  base_proxy_port: 8001\nnemesis:\n  - fault: partition\n    duration: 1s\n",
    );
    assert!(
        e.contains("cluster.base_proxy_port") && e.contains("overlap client ports"),
        "{e}"
    );
}
