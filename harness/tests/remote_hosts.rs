//! `cluster.hosts`: the harness drives nodes over SSH.
//!
//! - three test hosts made of network namespaces (`pkv-h1..3`, veth pairs on
//!   the bridge `pkvbr0`, addresses 10.231.0.11-13, the control host at
//!   10.231.0.1), each running Debian's `sshd` with a throwaway host key and
//!   an authorized key the test generates; a short pause + kill + partition
//!   workload against them: exit 0, every node's log and data dir collected
//!   into the store, no process left in any namespace, no iptables chain
//!   left, the namespaces removed (a Drop guard removes them on failure
//!   too). Needs root, `ip netns`, sshd, ssh, ssh-keygen and iptables; fails
//!   saying what is missing and how to install it;
//! - an unreachable host (a port that never answers, one that refuses):
//!   exit 2 within the deadline, naming the host (loopback ports
//!   30990-30999).

use crate::common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{harness_run, scratch};

const BRIDGE: &str = "pkvbr0";
const HOSTS: usize = 3;

fn ns(k: usize) -> String {
    format!("pkv-h{}", k + 1)
}

fn addr(k: usize) -> String {
    format!("10.231.0.{}", 11 + k)
}

/// Runs a command; Err with its stderr if it fails.
fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) -> String {
    sh(args).unwrap_or_else(|e| panic!("{e}"))
}

/// What the namespace hosts need, with how to get it; empty if all there.
fn missing() -> Vec<String> {
    let mut out = Vec::new();
    if sh(&["id", "-u"]).map(|u| u.trim() == "0") != Ok(true) {
        out.push("root (network namespaces and sshd need it): run the test as root".into());
    }
    for (cmd, pkg) in [
        ("ip", "iproute2"),
        ("/usr/sbin/sshd", "openssh-server"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
        ("iptables", "iptables"),
        ("sha256sum", "coreutils"),
        ("tar", "tar"),
    ] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {cmd}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            out.push(format!("`{cmd}`: apt-get install {pkg}"));
        }
    }
    out
}

/// Three namespace hosts with sshd; everything removed on drop.
struct Lab {
    dir: tempfile::TempDir,
    sshd: Vec<Child>,
}

impl Lab {
    fn key(&self) -> PathBuf {
        self.dir.path().join("id")
    }

    /// Removes what a previous (crashed) run of this test left.
    fn clean_leftovers() {
        for k in 0..HOSTS {
            if let Ok(pids) = sh(&["ip", "netns", "pids", &ns(k)]) {
                for p in pids.split_whitespace() {
                    let _ = sh(&["kill", "-KILL", p]);
                }
            }
            // The veth pair goes with its host end at once (a deleted
            // namespace's devices linger while the kernel tears it down).
            let _ = sh(&["ip", "link", "del", &format!("pkvv{k}")]);
            let _ = sh(&["ip", "netns", "del", &ns(k)]);
        }
        let _ = sh(&["ip", "link", "del", BRIDGE]);
    }

    fn new() -> Lab {
        let missing = missing();
        assert!(
            missing.is_empty(),
            "the remote-hosts test needs: {} (.ci/run installs the packages when missing)",
            missing.join("; ")
        );
        Lab::clean_leftovers();
        let mut lab = Lab {
            dir: scratch("remote"),
            sshd: Vec::new(),
        };
        let d = lab.dir.path().to_path_buf();
        let ds = |f: &str| d.join(f).display().to_string();
        for key in ["id", "host_key"] {
            must(&[
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                &ds(key),
            ]);
        }
        std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        must(&["ip", "link", "add", BRIDGE, "type", "bridge"]);
        must(&["ip", "addr", "add", "10.231.0.1/24", "dev", BRIDGE]);
        must(&["ip", "link", "set", BRIDGE, "up"]);
        for k in 0..HOSTS {
            let (n, host_if, peer_if) = (ns(k), format!("pkvv{k}"), format!("pkvp{k}"));
            let cidr = format!("{}/24", addr(k));
            must(&["ip", "netns", "add", &n]);
            must(&[
                "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
            ]);
            must(&["ip", "link", "set", &peer_if, "netns", &n]);
            must(&["ip", "link", "set", &host_if, "master", BRIDGE, "up"]);
            must(&[
                "ip", "netns", "exec", &n, "ip", "addr", "add", &cidr, "dev", &peer_if,
            ]);
            must(&[
                "ip", "netns", "exec", &n, "ip", "link", "set", &peer_if, "up",
            ]);
            must(&["ip", "netns", "exec", &n, "ip", "link", "set", "lo", "up"]);
            let config = d.join(format!("sshd-{n}.conf"));
            let mut f = std::fs::File::create(&config).unwrap();
            write!(
                f,
                "ListenAddress {}:22\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
                 UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel ERROR\n",
                addr(k),
                ds("host_key"),
                ds("authorized_keys"),
                ds(&format!("sshd-{n}.pid")),
            )
            .unwrap();
            let log = std::fs::File::create(d.join(format!("sshd-{n}.log"))).unwrap();
            let child = Command::new("ip")
                .args(["netns", "exec", &n, "/usr/sbin/sshd", "-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start sshd");
            lab.sshd.push(child);
        }
        // Every sshd answers (10 s).
        let deadline = Instant::now() + Duration::from_secs(10);
        for k in 0..HOSTS {
            let sa: SocketAddr = format!("{}:22", addr(k)).parse().unwrap();
            while TcpStream::connect_timeout(&sa, Duration::from_millis(300)).is_err() {
                let log = std::fs::read_to_string(d.join(format!("sshd-{}.log", ns(k))));
                assert!(
                    Instant::now() < deadline,
                    "sshd in {} does not listen on {sa}: {log:?}",
                    ns(k)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        lab
    }

    /// PIDs in namespace `k` that are not sshd (the listener or a session).
    fn replicas(&self, k: usize) -> Vec<String> {
        self.strays(k)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() != "sshd")
            })
            .collect()
    }

    /// Waits (5 s) until namespace `k` holds nothing but its sshd listener.
    fn assert_empty(&self, k: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let strays = self.strays(k);
            if strays.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes left in {}: {strays:?}",
                ns(k)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// PIDs in namespace `k` other than its sshd listener.
    fn strays(&self, k: usize) -> Vec<String> {
        let sshd = self.sshd[k].id().to_string();
        let listener = std::fs::read_to_string(self.dir.path().join(format!("sshd-{}.pid", ns(k))))
            .unwrap_or_default();
        sh(&["ip", "netns", "pids", &ns(k)])
            .unwrap_or_default()
            .split_whitespace()
            .filter(|p| *p != sshd && *p != listener.trim())
            .map(String::from)
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.sshd {
            let _ = c.kill();
            let _ = c.wait();
        }
        Lab::clean_leftovers();
    }
}

fn workload(lab: &Lab) -> String {
    let d = lab.dir.path();
    let mut hosts = String::new();
    for k in 0..HOSTS {
        hosts.push_str(&format!(
            "    - host: {}\n      user: root\n      identity: {}\n      dir: {}\n      ssh_options: [UserKnownHostsFile={}, StrictHostKeyChecking=accept-new]\n",
            addr(k),
            lab.key().display(),
            d.join("remote").join(ns(k)).display(),
            d.join("known_hosts").display(),
        ));
    }
    format!(
        r#"
name: remote-hosts
description: remote hosts e2e, pause + kill + partition on 3 namespace hosts
seed: 5
duration: 12s
cluster:
  replicas: 3
  base_client_port: 30700
  base_paxos_port: 30710
  ssh_timeout: 30s
  hosts:
{hosts}clients:
  concurrency: 6
  rate: 60
  request_timeout: 1s
operations:
  keys: 4
  mix: {{get: 50, put: 35, cas: 15}}
nemesis:
  - fault: pause
    target: random
    start: 1500ms
    duration: 2s
  - fault: kill
    target: random
    start: 4500ms
    duration: 2s
  - fault: partition
    shape: isolate
    target: leader
    start: 8s
    duration: 2500ms
final:
  recovery_timeout: 20s
  convergence_timeout: 15s
checkers:
  time_limit: 60s
"#
    )
}

#[test]
fn a_workload_runs_across_three_namespace_hosts_and_leaves_nothing_behind() {
    let lab = Lab::new();
    let path = lab.dir.path().join("remote-hosts.yaml");
    std::fs::write(&path, workload(&lab)).unwrap();
    let store = lab.dir.path().join("store");
    let r = harness_run(&path, &store, &[], Duration::from_secs(120));
    assert_eq!(
        r.code,
        Some(0),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    let run = store.join("remote-hosts").join("latest");
    let history = std::fs::read_to_string(run.join("history.edn")).unwrap();
    let nemesis: Vec<&str> = history.lines().filter(|l| l.contains(":nemesis")).collect();
    for f in [
        ":pause",
        ":resume",
        ":kill",
        ":restart",
        ":partition",
        ":heal-partition",
    ] {
        assert!(
            nemesis
                .iter()
                .any(|l| l.contains(&format!(":f {f},")) && !l.contains(":error")),
            "no {f} without an error in the history:\n{}",
            nemesis.join("\n")
        );
    }
    for i in 0..HOSTS {
        let log = std::fs::read_to_string(run.join(format!("n{i}.log")))
            .unwrap_or_else(|e| panic!("n{i}.log not collected: {e}"));
        assert!(
            log.contains(&format!("=== harness: start #1 of n{i}")),
            "{log}"
        );
        let data: Vec<_> = std::fs::read_dir(run.join(format!("n{i}")))
            .unwrap_or_else(|e| panic!("n{i}/ not collected: {e}"))
            .collect();
        assert!(!data.is_empty(), "n{i}/ is empty");
    }
    let timings = std::fs::read_to_string(run.join("remote.json")).unwrap();
    assert!(timings.contains("\"collect_s\": "), "{timings}");
    // Nothing left on the hosts: no process (the SSH sessions close with
    // the harness), no iptables chain.
    for k in 0..HOSTS {
        lab.assert_empty(k);
        let rules = must(&["ip", "netns", "exec", &ns(k), "iptables", "-S"]);
        assert!(!rules.contains("PAXOSKV-HARNESS"), "{}: {rules}", ns(k));
    }
    after_a_crash(&lab, &path);
    drop(lab);
    let left = must(&["ip", "netns", "list"]);
    for k in 0..HOSTS {
        assert!(
            !left.contains(&ns(k)),
            "namespace {} not removed: {left}",
            ns(k)
        );
    }
    assert!(
        sh(&["ip", "link", "show", BRIDGE]).is_err(),
        "bridge {BRIDGE} not removed"
    );
}

/// Whether a TCP connection from namespace `from` to `to:22` opens (2 s).
fn reaches(from: usize, to: usize) -> bool {
    let probe = format!("exec 3<>/dev/tcp/{}/22", addr(to));
    sh(&[
        "ip",
        "netns",
        "exec",
        &ns(from),
        "timeout",
        "2",
        "bash",
        "-c",
        &probe,
    ])
    .is_ok()
}

/// A harness that dies mid-run leaves its replicas running on the hosts
/// (they are detached) and its iptables chain; the next start on those
/// hosts kills them, removes the chain and skips the upload (same
/// checksum). Then the firewall cuts exactly the links of a grudge and
/// heals them, and dropping the cluster leaves nothing behind.
///
/// The death is simulated in this process rather than by killing a
/// `harness run` at a random moment: a remote command cut in the middle
/// may leave a login shell's own state behind (pyenv's rehash lock in
/// root's .bashrc, for one), which is not what this checks.
fn after_a_crash(lab: &Lab, workload: &Path) {
    let w = harness::workload::Workload::load(workload).unwrap();
    let crashed = lab.dir.path().join("crashed");
    std::fs::create_dir_all(&crashed).unwrap();
    let db = harness::remote::open(&w, &common::server_bin(), &crashed).unwrap();
    db.procs().start_all().unwrap();
    // The harness dies: no Drop runs, and its children (the SSH masters)
    // die with it.
    std::mem::forget(db);
    harness::cluster::kill_registered();
    for k in 0..HOSTS {
        assert!(
            !lab.replicas(k).is_empty(),
            "n{k} did not outlive the dead harness"
        );
    }
    // Its chain, with a rule in it.
    let chain = iptables_chain();
    let _ = sh(&["ip", "netns", "exec", &ns(0), "iptables", "-N", chain]);
    must(&[
        "ip",
        "netns",
        "exec",
        &ns(0),
        "iptables",
        "-A",
        chain,
        "-s",
        &addr(1),
        "-j",
        "DROP",
    ]);
    must(&[
        "ip",
        "netns",
        "exec",
        &ns(0),
        "iptables",
        "-I",
        "INPUT",
        "-j",
        chain,
    ]);
    assert!(!reaches(1, 0), "the planted rule does not cut n1 -> n0");

    let dir = lab.dir.path().join("reopened");
    std::fs::create_dir_all(&dir).unwrap();
    let db = harness::remote::open(&w, &common::server_bin(), &dir).unwrap();
    let timings = std::fs::read_to_string(dir.join("remote.json")).unwrap();
    for k in 0..HOSTS {
        assert!(
            timings.contains(&format!("\"n{k} pid ")),
            "n{k} not killed: {timings}"
        );
        assert!(
            lab.replicas(k).is_empty(),
            "{}: {:?}",
            ns(k),
            lab.replicas(k)
        );
    }
    assert!(
        timings.contains("\"uploaded\": []"),
        "uploaded again: {timings}"
    );
    assert!(reaches(1, 0), "the crashed run's rule is still there");

    let fw = db
        .firewall
        .clone()
        .expect("a partitioning workload has a firewall");
    let isolate_n0 = harness::net::Grudge::between(HOSTS, &[0], &[1, 2]);
    assert_eq!(
        fw.partition(&isolate_n0, harness::net::Cut::Reset),
        Vec::<String>::new()
    );
    assert!(fw.is_cut());
    assert!(!reaches(1, 0) && !reaches(0, 2), "n0 is not cut off");
    assert!(reaches(1, 2), "n1 -> n2 was cut too");
    let control = format!("{}:22", addr(0)).parse().unwrap();
    assert!(
        TcpStream::connect_timeout(&control, Duration::from_secs(2)).is_ok(),
        "the control host was cut off too"
    );
    assert_eq!(fw.heal(), Vec::<String>::new());
    assert!(
        reaches(1, 0) && reaches(0, 2),
        "the heal did not restore n0's links"
    );
    drop(fw);
    drop(db);
    for k in 0..HOSTS {
        lab.assert_empty(k);
        let rules = must(&["ip", "netns", "exec", &ns(k), "iptables", "-S"]);
        assert!(!rules.contains(chain), "{}: {rules}", ns(k));
    }
}

fn iptables_chain() -> &'static str {
    harness::remote::iptables::CHAIN
}

fn one_host_workload(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("unreachable.yaml");
    std::fs::write(
        &path,
        format!(
            "duration: 2s\ncluster:\n  replicas: 1\n  base_client_port: 30995\n  base_paxos_port: 30996\n  ssh_timeout: 2s\n  hosts:\n    - host: 127.0.0.1\n      port: {port}\n      ssh_options: [UserKnownHostsFile=/dev/null, StrictHostKeyChecking=no]\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn an_unreachable_host_is_an_error_naming_it_within_the_deadline() {
    let dir = scratch("remote-unreachable");
    // A port that accepts and never speaks: only the deadline ends it.
    let silent = TcpListener::bind("127.0.0.1:30990").expect("port 30990 is free");
    let r = harness_run(
        &one_host_workload(dir.path(), 30990),
        &dir.path().join("store"),
        &[],
        Duration::from_secs(30),
    );
    drop(silent);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("n0 (127.0.0.1:30990)") && r.stderr.contains("cannot connect"),
        "{}",
        r.stderr
    );
    assert!(r.elapsed < Duration::from_secs(20), "took {:?}", r.elapsed);
    // A port where nothing listens: refused at once.
    let r = harness_run(
        &one_host_workload(dir.path(), 30991),
        &dir.path().join("store"),
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("n0 (127.0.0.1:30991)"), "{}", r.stderr);
}
