//! `harness run WORKLOAD.yaml`: see [`crate::run`].

use std::path::PathBuf;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::EXIT_ERROR;
use crate::run::{run as run_workload, RunOptions};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The workload file (YAML; see README.md ("Workload YAML")).
    #[arg(value_name = "WORKLOAD")]
    pub workload: PathBuf,
    /// The `server` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// Root of the store directory.
    #[arg(long, default_value = "store", value_name = "DIR")]
    pub store: PathBuf,
    /// Overrides the workload's cluster.base_client_port.
    #[arg(long, value_name = "PORT")]
    pub base_client_port: Option<u16>,
    /// Overrides the workload's cluster.base_paxos_port.
    #[arg(long, value_name = "PORT")]
    pub base_paxos_port: Option<u16>,
    /// Overrides the workload's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Overrides the workload's duration (e.g. 10s).
    #[arg(long, value_parser = parse_dur)]
    pub duration: Option<std::time::Duration>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

fn parse_dur(s: &str) -> Result<std::time::Duration, String> {
    crate::workload::parse_duration(s)
}

/// Runs `harness run`; returns the exit status.
pub fn run(args: &RunArgs) -> i32 {
    let cancel = CancellationToken::new();
    super::install_signal_handler(cancel.clone());
    let opts = RunOptions {
        workload: args.workload.clone(),
        server_bin: args.server_bin.clone(),
        store: args.store.clone(),
        base_client_port: args.base_client_port,
        base_paxos_port: args.base_paxos_port,
        seed: args.seed,
        duration: args.duration,
        progress: !args.no_progress,
        print_summary: true,
    };
    match run_workload(&opts, cancel) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            eprintln!("harness: {e:#}");
            EXIT_ERROR
        }
    }
}
