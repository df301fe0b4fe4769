//! Local clusters of real server processes for the benchmark: paxoskv
//! (`server`) and etcd, each replica on 127.0.0.1, its data in a temporary
//! directory, killed by PID on drop. Also reads the CPU time the kernel
//! accounted to those processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// Which system a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// This project's `server`.
    Paxoskv,
    /// etcd 3.4 (`etcd` on PATH or `--etcd-bin`).
    Etcd,
}

impl System {
    /// The name printed in tables.
    pub fn name(self) -> &'static str {
        match self {
            System::Paxoskv => "paxoskv",
            System::Etcd => "etcd",
        }
    }
}

/// A running cluster: its processes (killed by PID on drop), the client
/// addresses of its replicas, and its data directory (removed on drop).
pub struct Cluster {
    /// The system it runs.
    pub system: System,
    /// Client address (`host:port`) of each replica.
    pub addrs: Vec<String>,
    children: Vec<Child>,
    root: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Cluster {
    fn empty(system: System, root: PathBuf) -> anyhow::Result<Cluster> {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
        Ok(Cluster {
            system,
            addrs: Vec::new(),
            children: Vec::new(),
            root,
        })
    }

    fn spawn(&mut self, mut cmd: Command, log: &str) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.root.join(log))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {:?}", cmd.get_program()))?;
        self.children.push(child);
        Ok(())
    }

    /// Starts `n` paxoskv replicas: client ports `base..`, Paxos ports
    /// `base + 50..`.
    pub fn paxoskv(bin: &Path, n: usize, base: u16, root: PathBuf) -> anyhow::Result<Cluster> {
        let mut cl = Cluster::empty(System::Paxoskv, root)?;
        let paxos = |i: usize| format!("127.0.0.1:{}", base + 50 + i as u16);
        for i in 0..n {
            let addr = format!("127.0.0.1:{}", base + i as u16);
            let mut cmd = Command::new(bin);
            cmd.arg("--my-addr")
                .arg(&addr)
                .arg("--my-paxos")
                .arg(paxos(i))
                .arg("--data-dir")
                .arg(cl.root.join(format!("data-{i}")))
                .env("RUST_LOG", "warn");
            for r in 0..n {
                cmd.arg("--replica").arg(paxos(r));
            }
            cl.spawn(cmd, &format!("server-{i}.log"))?;
            cl.addrs.push(addr);
        }
        Ok(cl)
    }

    /// Starts `n` etcd members: client ports `base..`, peer ports
    /// `base + 50..`.
    pub fn etcd(bin: &Path, n: usize, base: u16, root: PathBuf) -> anyhow::Result<Cluster> {
        let mut cl = Cluster::empty(System::Etcd, root)?;
        let peer = |i: usize| format!("http://127.0.0.1:{}", base + 50 + i as u16);
        let initial: Vec<String> = (0..n).map(|i| format!("e{i}={}", peer(i))).collect();
        for i in 0..n {
            let addr = format!("127.0.0.1:{}", base + i as u16);
            let mut cmd = Command::new(bin);
            cmd.arg("--name")
                .arg(format!("e{i}"))
                .arg("--data-dir")
                .arg(cl.root.join(format!("data-{i}")))
                .arg("--listen-client-urls")
                .arg(format!("http://{addr}"))
                .arg("--advertise-client-urls")
                .arg(format!("http://{addr}"))
                .arg("--listen-peer-urls")
                .arg(peer(i))
                .arg("--initial-advertise-peer-urls")
                .arg(peer(i))
                .arg("--initial-cluster")
                .arg(initial.join(","))
                .arg("--initial-cluster-state")
                .arg("new")
                .arg("--initial-cluster-token")
                .arg(format!("loadgen-{}", std::process::id()))
                .arg("--log-level")
                .arg("warn");
            cl.spawn(cmd, &format!("etcd-{i}.log"))?;
            cl.addrs.push(addr);
        }
        Ok(cl)
    }

    /// CPU seconds (user + system) the kernel has accounted to the cluster's
    /// processes so far (`/proc/<pid>/stat`, fields 14 and 15, in USER_HZ =
    /// 100 ticks per second, the value Linux exposes on every architecture).
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let mut total = 0.0;
        for c in &self.children {
            total += process_cpu_seconds(c.id())?;
        }
        Ok(total)
    }
}

/// CPU seconds (user + system) the kernel has accounted to process `pid` so
/// far (`/proc/<pid>/stat`, fields 14 and 15, in USER_HZ = 100 ticks per
/// second, the value Linux exposes on every architecture).
pub fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // The command name (field 2) may hold spaces: fields after it start
    // past the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("malformed {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    let mut ticks = 0u64;
    for f in [11, 12] {
        ticks += fields
            .get(f)
            .and_then(|s| s.parse::<u64>().ok())
            .with_context(|| format!("malformed {path}"))?;
    }
    Ok(ticks as f64 / 100.0)
}

/// The machine's (idle + iowait, total) CPU ticks so far, over all CPUs
/// (the `cpu` line of `/proc/stat`).
pub fn machine_ticks() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no `cpu` line in /proc/stat")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse::<u64>().context("malformed /proc/stat"))
        .collect::<anyhow::Result<_>>()?;
    // user nice system idle iowait irq softirq steal (guest is in user).
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    let total = ticks.iter().take(8).sum();
    Ok((idle, total))
}
