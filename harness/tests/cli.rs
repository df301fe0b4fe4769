//! `harness check` as a user runs it: output lines, reports and exit statuses.

use std::path::PathBuf;
use std::process::Command;

fn histories() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/histories"
    ));
    assert!(
        dir.is_dir(),
        "reference histories not found at {}",
        dir.display()
    );
    dir
}

fn harness(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .output()
        .expect("run harness");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// A fresh temporary directory, removed when dropped.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("harness-cli-{name}-"))
        .tempdir()
        .expect("create a temp dir")
}

#[test]
fn linearizable_histories_exit_0() {
    let h = histories();
    let ok = h.join("kv/c01-ok.edn");
    let etcd = h.join("etcd/etcd_005.edn");
    let (code, out) = harness(&["check", ok.to_str().unwrap(), etcd.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("model=kv (inferred)") && out.contains("model=cas-register (inferred)"),
        "{out}"
    );
    assert!(out.contains("2 files: 2 linearizable"), "{out}");
}

#[test]
fn a_violation_exits_1_and_writes_reports() {
    let h = histories();
    let out_tmp = temp_dir("violation");
    let out_dir = out_tmp.path();
    let bad = h.join("kv/c01-bad.edn");
    let ok = h.join("kv/c01-ok.edn");
    let (code, out) = harness(&[
        "check",
        "--model",
        "kv",
        "--out",
        out_dir.to_str().unwrap(),
        bad.to_str().unwrap(),
        ok.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("NOT linearizable") && out.contains("key \"7\""),
        "{out}"
    );
    assert!(out.contains("longest linearizable prefix"), "{out}");
    let html = std::fs::read_to_string(out_dir.join("c01-bad/timeline-7.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("<title>"));
    assert!(out_dir.join("c01-bad/report.txt").is_file());
    assert!(!out_dir.join("c01-ok").exists());
    let _ = std::fs::remove_dir_all(out_dir);
}

#[test]
fn unreadable_input_exits_2_and_names_the_line() {
    let tmp_dir = temp_dir("unreadable");
    let dir = tmp_dir.path();
    let bad = dir.join("bad.edn");
    std::fs::write(&bad, "{:process 0, :type :invoke, :f :read, :value nil}\n{:process 0 :type :ok :f :read :value [1 2}\n").unwrap();
    let (code, out) = harness(&["check", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("UNREADABLE") && out.contains("line 2"),
        "{out}"
    );
    let (code, out) = harness(&["check", dir.join("missing.edn").to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_exhausted_budget_exits_2() {
    let h = histories();
    let etcd = h.join("etcd/etcd_002.edn");
    let (code, out) = harness(&["check", "--max-states", "5", etcd.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unknown"), "{out}");
}

#[test]
fn usage_errors_exit_2() {
    let (code, out) = harness(&["check", "--model", "queue", "x.edn"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unknown model"), "{out}");
    let (code, _) = harness(&["check"]);
    assert_eq!(code, 2);
}
