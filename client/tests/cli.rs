//! The `client` binary driven as a user would: a script on stdin and
//! one-shot commands, against an in-process fake replica. Asserts the exact
//! lines printed and the exit status. Ports 21200-21299.

use crate::common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{refused_addr, Behavior, FakeReplica};
use tokio::io::AsyncWriteExt;

/// Output of one run of the binary.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `client args...` with `stdin` piped in, bounded in time.
async fn client(args: &[&str], stdin: &str) -> Run {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--timeout-ms", "2000", "--attempt-timeout-ms", "500"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("HOME", std::env::temp_dir())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn client");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("client finished in time")
        .expect("client output");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn a_script_on_stdin_prints_one_line_per_command() {
    let fake = FakeReplica::serving(21200).await;
    let script = r#"PUT apple green
get apple
GET nope
put "my key" 'two words'
GET "my key"
DELETE apple
delete apple
CAS k - v1
CAS k wrong v2
cas k v1 v2
APPEND k ' tail'
# a comment, then a blank line

PUT k
QUIT
GET never-run
"#;
    let run = client(&["-a", &fake.addr], script).await;
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "OK",
            "green",
            "(nil)",
            "OK",
            "two words",
            "OK",
            "(not found)",
            "OK",
            "FAILED (current: v1)",
            "OK",
            "v2 tail",
            "error: PUT takes 2 arguments, got 1; usage: PUT key value",
        ],
        "stderr: {}",
        run.stderr
    );
    // One parse error: the script as a whole failed.
    assert_eq!(run.code, Some(1));
    // Every command had its own sequence number, from one session.
    let received = fake.received();
    assert_eq!(received.len(), 11);
    assert!(received
        .windows(2)
        .all(|w| w[0].0 == w[1].0 && w[1].1 == w[0].1 + 1));
}

#[tokio::test]
async fn a_clean_script_exits_zero_and_status_is_one_line() {
    let fake = FakeReplica::serving(21205).await;
    let run = client(&[&fake.addr], "put a 1\nSTATUS\nexit\n").await;
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert_eq!(lines[0], "OK");
    assert!(
        lines[1].contains("role=coordinator") && lines[1].contains("commit=7"),
        "{}",
        lines[1]
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
}

#[tokio::test]
async fn one_shot_commands_print_the_reply_and_set_the_exit_status() {
    let fake = FakeReplica::serving(21210).await;
    let run = client(&["-a", &fake.addr, "put", "apple", "green"], "").await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "OK\n"),
        "{}",
        run.stderr
    );
    // The address as first word, command case-insensitive.
    let run = client(&[&fake.addr, "GET", "apple"], "").await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "green\n"),
        "{}",
        run.stderr
    );
    // CAS with "-" as the old value, given by the shell.
    let run = client(&[&fake.addr, "cas", "pear", "-", "ripe"], "").await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "OK\n"),
        "{}",
        run.stderr
    );
    // Usage error: exit 2, usage on stderr.
    let run = client(&["-a", &fake.addr, "get"], "").await;
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("usage: GET key"), "{}", run.stderr);
    let run = client(&["frob", "k"], "").await;
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("unknown command \"frob\""),
        "{}",
        run.stderr
    );
    let run = client(&["-a", "not an address", "get", "k"], "").await;
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("bad address"), "{}", run.stderr);
}

#[tokio::test]
async fn an_error_reply_names_the_replica_and_exits_one() {
    let fake = FakeReplica::start(21220, &[], Behavior::InvalidArgument, Arc::default()).await;
    let run = client(&["-a", &fake.addr, "put", "", "v"], "").await;
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr.trim_end(),
        format!(
            "error: INVALID_ARGUMENT from {}: empty key (not applied)",
            fake.addr
        )
    );
    let fake =
        FakeReplica::start(21221, &[], Behavior::UnavailableNotApplied, Arc::default()).await;
    let run = client(
        &[
            "-a",
            &fake.addr,
            "--attempt-timeout-ms",
            "100",
            "--timeout-ms",
            "300",
            "put",
            "k",
            "v",
        ],
        "",
    )
    .await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.starts_with(&format!(
            "error: UNAVAILABLE from {}: no majority reachable",
            fake.addr
        )) && run.stderr.trim_end().ends_with("(not applied)"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn one_shot_fails_over_between_addresses() {
    let dead = refused_addr(21230);
    let live = FakeReplica::serving(21231).await;
    let addrs = format!("{dead},{}", live.addr);
    let run = client(&["-a", &addrs, "append", "k", "x"], "").await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "x\n"),
        "{}",
        run.stderr
    );
    let run = client(&["--no-failover", "-a", &addrs, "get", "k"], "").await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains(&format!("CONNECT_FAILED from {dead}")),
        "{}",
        run.stderr
    );
}
