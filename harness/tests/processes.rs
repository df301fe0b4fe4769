//! Process management against a stand-in `server` (a shell script that
//! sleeps): start, pause, resume, kill, restart, stop, and no orphans when
//! the harness is stopped by SIGTERM or dies by SIGKILL.
//!
//! Ports 24000-24199 (nothing listens on them: the stand-in never opens one).
//! Also `harness run` interrupted by SIGINT while waiting for the cluster,
//! a server that cannot start, and the nemesis (targets, faults, heals,
//! records) over stand-ins.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::cluster::{registered_pids, Cluster, ClusterConfig, NodeState};
use harness::workload::ReadMode;

/// Writes an executable stand-in for `server` that ignores its arguments.
fn fake_server(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("fake-server.sh");
    std::fs::write(
        &p,
        "#!/bin/sh\necho \"fake server $*\" >&2\nexec sleep 600\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A fresh temporary directory, removed when dropped.
fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("harness-{name}-"))
        .tempdir()
        .expect("create a temp dir")
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

/// State letter of a process (R, S, T, ...).
fn state(pid: i32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit(')')
        .next()?
        .split_whitespace()
        .next()
        .map(str::to_string)
}

fn wait_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn config(dir: &Path, base: u16) -> ClusterConfig {
    ClusterConfig {
        server_bin: fake_server(dir),
        replicas: 3,
        host: "127.0.0.1".into(),
        base_client_port: base,
        base_paxos_port: base + 50,
        fail_rate: 0.0,
        read_mode: ReadMode::Quorum,
        extra_flags: vec!["--tick-ms".into(), "10".into()],
        dir: dir.to_path_buf(),
        command_lines: None,
    }
}

#[test]
fn start_pause_kill_restart_stop() {
    let tmp_dir = tmp("procs");
    let dir = tmp_dir.path();
    let mut c = Cluster::new(config(dir, 24000)).unwrap();
    c.start_all().unwrap();
    let pids: Vec<i32> = c.nodes.iter().map(|n| n.pid().unwrap()).collect();
    assert!(pids.iter().all(|&p| alive(p)));
    assert!(pids.iter().all(|p| registered_pids().contains(p)));
    // The command line follows the server's CLI contract.
    let args = c.server_args(1);
    let joined = args.join(" ");
    assert!(
        joined.starts_with(
            "--my-addr 127.0.0.1:24001 --my-paxos 127.0.0.1:24051 --replica 127.0.0.1:24050"
        ),
        "{joined}"
    );
    assert!(
        joined.contains("--read-mode quorum") && joined.ends_with("--tick-ms 10"),
        "{joined}"
    );

    c.pause(0).unwrap();
    assert!(wait_until(Duration::from_secs(5), || state(pids[0])
        .as_deref()
        == Some("T")));
    assert!(c.pause(0).is_err(), "a paused node cannot be paused again");
    c.resume(0).unwrap();
    assert!(wait_until(Duration::from_secs(5), || state(pids[0])
        .as_deref()
        != Some("T")));

    c.kill(1).unwrap();
    assert!(!alive(pids[1]));
    assert_eq!(c.nodes[1].state, NodeState::Down);
    c.start(1).unwrap();
    let restarted = c.nodes[1].pid().unwrap();
    assert_ne!(restarted, pids[1]);
    assert_eq!(c.nodes[1].starts, 2);

    // A paused node is stopped too.
    c.pause(2).unwrap();
    drop(c);
    for p in [pids[0], restarted, pids[2]] {
        assert!(!alive(p), "pid {p} survived the cluster");
    }
    let log = std::fs::read_to_string(dir.join("n1.log")).unwrap();
    assert_eq!(log.matches("=== harness: start").count(), 2, "{log}");
}

/// Children of `pid` (from /proc).
fn children(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                let ppid = s
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().nth(1));
                if ppid == Some(&pid.to_string()) {
                    out.push(p);
                }
            }
        }
    }
    out
}

fn harness_cluster(dir: &Path, base: u16) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["cluster", "3", "--base-client-port", &base.to_string()])
        .args(["--base-paxos-port", &(base + 50).to_string()])
        .arg("--server-bin")
        .arg(fake_server(dir))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn harness_cluster_stops_its_replicas_on_sigterm() {
    let tmp_dir = tmp("cluster-term");
    let dir = tmp_dir.path();
    let mut h = harness_cluster(dir, 24010);
    let hp = h.id();
    assert!(wait_until(Duration::from_secs(10), || children(hp).len() == 3));
    let kids = children(hp);
    unsafe { libc::kill(hp as i32, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = h.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > end {
            let _ = h.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    let mut out = String::new();
    use std::io::Read;
    h.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(
        out.contains("n2  client 127.0.0.1:24012  paxos 127.0.0.1:24062"),
        "{out}"
    );
    assert!(out.contains("stopped 3 replicas"), "{out}");
    assert!(wait_until(Duration::from_secs(5), || kids
        .iter()
        .all(|&k| !alive(k))));
}

#[test]
fn replicas_die_with_a_killed_harness() {
    let tmp_dir = tmp("cluster-kill");
    let dir = tmp_dir.path();
    let mut h = harness_cluster(dir, 24020);
    let hp = h.id();
    assert!(wait_until(Duration::from_secs(10), || children(hp).len() == 3));
    let kids = children(hp);
    h.kill().unwrap(); // SIGKILL: no cleanup code runs; PDEATHSIG does it.
    h.wait().unwrap();
    let gone = wait_until(Duration::from_secs(5), || kids.iter().all(|&k| !alive(k)));
    for &k in &kids {
        if alive(k) {
            unsafe { libc::kill(k, libc::SIGKILL) };
        }
    }
    assert!(gone, "orphans left: {kids:?}");
}

#[test]
fn harness_run_interrupted_exits_2_and_stops_its_replicas() {
    let tmp_dir = tmp("run-int");
    let dir = tmp_dir.path();
    let fake = fake_server(dir);
    let wl = dir.join("w.yaml");
    std::fs::write(
        &wl,
        "duration: 30s\ncluster:\n  base_client_port: 24030\n  base_paxos_port: 24080\n  startup_timeout: 60s\n",
    )
    .unwrap();
    let mut h = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg(&wl)
        .arg("--server-bin")
        .arg(&fake)
        .arg("--store")
        .arg(dir.join("store"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let hp = h.id();
    assert!(wait_until(Duration::from_secs(10), || children(hp).len() == 3));
    let kids = children(hp);
    unsafe { libc::kill(hp as i32, libc::SIGINT) };
    let end = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = h.try_wait().unwrap() {
            break s.code();
        }
        if Instant::now() > end {
            let _ = h.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(2));
    assert!(wait_until(Duration::from_secs(5), || kids
        .iter()
        .all(|&k| !alive(k))));
    // The run dir still says what happened.
    let res = std::fs::read_to_string(dir.join("store/latest/results.json")).unwrap();
    assert!(res.contains("\"interrupted\": true"), "{res}");
}

#[test]
fn a_server_that_cannot_start_is_reported_quickly_with_its_log() {
    let tmp_dir = tmp("run-bad");
    let dir = tmp_dir.path();
    std::fs::create_dir_all(dir).unwrap();
    let bad = dir.join("bad-server.sh");
    std::fs::write(
        &bad,
        "#!/bin/sh\necho \"error: address 127.0.0.1:24040 in use\" >&2\nexit 2\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
    let wl = dir.join("w.yaml");
    std::fs::write(
        &wl,
        "duration: 30s\ncluster:\n  base_client_port: 24040\n  base_paxos_port: 24090\n",
    )
    .unwrap();
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg(&wl)
        .arg("--server-bin")
        .arg(&bad)
        .arg("--store")
        .arg(dir.join("store"))
        .arg("--no-progress")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("exited during startup") && stdout.contains("in use"),
        "{stdout}"
    );
}

#[test]
fn nemesis_targets_faults_heals_and_records() {
    use harness::nemesis::{FaultEnv, Nemesis, NemesisState};
    use harness::recorder::Recorder;
    use harness::workload::{FaultKind, Target};
    use rand::SeedableRng;
    use std::sync::{Arc, Mutex};

    let tmp_dir = tmp("nemesis");
    let dir = tmp_dir.path();
    let mut cfg = config(dir, 24100);
    cfg.replicas = 5;
    let mut cluster = Cluster::new(cfg).unwrap();
    cluster.start_all().unwrap();
    let db = harness::db::paxoskv::from_cluster(cluster);
    let nemesis = Nemesis {
        db: db.clone(),
        recorder: Recorder::new(),
        state: Arc::new(Mutex::new(NemesisState::default())),
        env: FaultEnv::new(0.0, Duration::from_millis(200)),
        stop: tokio_util::sync::CancellationToken::new(),
    };
    let pause = nemesis.fault(FaultKind::Pause, None);
    let kill = nemesis.fault(FaultKind::Kill, None);
    let fail_rate = nemesis.fault(FaultKind::FailRate, Some(0.5));
    let (pause, kill, fail_rate) = (pause.as_ref(), kill.as_ref(), fail_rate.as_ref());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let n = &nemesis;
        assert_eq!(n.resolve(Target::Minority, pause, &mut rng).await.len(), 2);
        assert_eq!(n.resolve(Target::Majority, pause, &mut rng).await.len(), 3);
        assert_eq!(
            n.resolve(Target::All, kill, &mut rng).await,
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(n.resolve(Target::Random, kill, &mut rng).await.len(), 1);
        // The stand-ins answer no Status: no leader, no target.
        assert!(n.resolve(Target::Leader, pause, &mut rng).await.is_empty());

        let (hit, w) = n.apply(pause, &[2]).await;
        assert_eq!(hit, vec![2]);
        assert_eq!(
            n.state.lock().unwrap().active(),
            vec!["pause n2".to_string()]
        );
        // A paused node is not paused or killed again, but its fail_rate may change.
        assert!(n.resolve(Target::Node(2), pause, &mut rng).await.is_empty());
        assert!(n.resolve(Target::Node(2), kill, &mut rng).await.is_empty());
        assert_eq!(
            n.resolve(Target::Node(2), fail_rate, &mut rng).await,
            vec![2]
        );
        let (killed, _) = n.apply(kill, &[4]).await;
        assert_eq!(killed, vec![4]);
        n.heal(pause, &hit, Some(w)).await;
        assert!(n.state.lock().unwrap().windows[0].end.is_some());
        // Everything left is healed at the end: n4 restarts.
        n.heal_all().await;
    });
    assert!(db.states().iter().all(|s| *s == NodeState::Running));
    assert_eq!(db.procs().starts(4), 2);
    let h: Vec<String> = nemesis
        .recorder
        .snapshot()
        .ops
        .iter()
        .map(|e| e.to_edn())
        .collect();
    let fs: Vec<&str> = h
        .iter()
        .map(|l| l.split(":f :").nth(1).unwrap().split(',').next().unwrap())
        .collect();
    assert_eq!(fs, vec!["pause", "kill", "resume", "restart"], "{h:#?}");
    assert!(h[0].contains(":process :nemesis") && h[0].contains("[\"127.0.0.1:24102\"]"));
    drop(nemesis);
    db.procs().stop_all(Duration::from_secs(1));
}
