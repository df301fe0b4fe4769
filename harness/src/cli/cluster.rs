//! `harness cluster N`: the original C++ project's `run_server.py`. Starts N replicas (client
//! ports `8000+i`, Paxos ports `9000+i` by default), prints their addresses,
//! and keeps them running until Ctrl-C or SIGTERM, then stops them all by
//! PID. A replica that exits on its own is reported.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{EXIT_ERROR, EXIT_VALID};
use crate::cluster::{find_server_bin, Cluster, ClusterConfig};
use crate::db::paxoskv::wait_for_coordinator;
use crate::workload::ReadMode;

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Number of replicas.
    #[arg(value_name = "N", value_parser = clap::value_parser!(u16).range(1..=15))]
    pub replicas: u16,
    /// Address the replicas listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Client port of replica i is BASE+i.
    #[arg(long, default_value_t = 8000)]
    pub base_client_port: u16,
    /// Paxos port of replica i is BASE+i.
    #[arg(long, default_value_t = 9000)]
    pub base_paxos_port: u16,
    /// Acceptor fail_rate of every replica.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// quorum (linearizable) or local (the original C++ project's unsafe reads).
    #[arg(long, default_value = "quorum", value_parser = str::parse::<ReadMode>)]
    pub read_mode: ReadMode,
    /// Directory for the data dirs and logs (default: `store/cluster/<time>`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The `server` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// Extra flags for every server, after `--`.
    #[arg(last = true)]
    pub server_flags: Vec<String>,
}

/// Runs `harness cluster`; returns the exit status.
pub fn run(args: &ClusterArgs) -> i32 {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness cluster: {e:#}");
            EXIT_ERROR
        }
    }
}

fn run_inner(args: &ClusterArgs) -> anyhow::Result<i32> {
    if !(0.0..=1.0).contains(&args.fail_rate) {
        anyhow::bail!("--fail-rate {} is not in [0, 1]", args.fail_rate);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    super::install_signal_handler(stop.clone());
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => PathBuf::from("store/cluster")
            .join(crate::store::timestamp(std::time::SystemTime::now())),
    };
    let config = ClusterConfig {
        server_bin: find_server_bin(args.server_bin.as_deref())?,
        replicas: usize::from(args.replicas),
        host: args.host.clone(),
        base_client_port: args.base_client_port,
        base_paxos_port: args.base_paxos_port,
        fail_rate: args.fail_rate,
        read_mode: args.read_mode,
        extra_flags: args.server_flags.clone(),
        dir: dir.clone(),
        command_lines: None,
    };
    let mut cluster = Cluster::new(config)?;
    cluster.start_all()?;
    for n in &cluster.nodes {
        println!(
            "n{}  client {}  paxos {}  pid {}  log {}",
            n.id,
            n.client_addr,
            n.paxos_addr,
            n.pid().unwrap_or(0),
            n.log_path.display()
        );
    }
    let addrs = cluster.client_addrs();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let waited = rt.block_on(async {
        tokio::select! {
            r = wait_for_coordinator(&addrs, Duration::from_secs(20)) => Some(r),
            _ = stop.cancelled() => None,
        }
    });
    match waited {
        Some(Ok(l)) => println!("coordinator: n{l} ({}); Ctrl-C stops the cluster", addrs[l]),
        Some(Err(e)) => eprintln!("harness cluster: warning: {e:#}; Ctrl-C stops the cluster"),
        None => {}
    }
    println!("client addresses: {}", addrs.join(","));
    while !stop.is_cancelled() {
        std::thread::sleep(Duration::from_millis(200));
        if stop.is_cancelled() {
            break;
        }
        for i in 0..cluster.nodes.len() {
            if let Some(st) = cluster.check_exited(i) {
                eprintln!(
                    "harness cluster: n{i} exited ({st}); see {}",
                    cluster.nodes[i].log_path.display()
                );
            }
        }
    }
    cluster.stop_all(Duration::from_secs(3));
    println!("stopped {} replicas", cluster.nodes.len());
    Ok(EXIT_VALID)
}
