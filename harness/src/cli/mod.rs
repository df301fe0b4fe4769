//! The `harness` command line.
//!
//! Subcommands are variants of [`Command`], each implemented in its own
//! module (`check.rs`, `run.rs`, `cluster.rs`, `serve.rs`). A first argument ending in
//! `.yaml`/`.yml` means `run` ([`normalize_args`]), so `harness workload.yaml`
//! is `harness run workload.yaml`.
//!
//! Exit statuses (README, "The harness"): 0 valid, 1 anomaly found, 2 could
//! not run or could not decide.

pub mod check;
pub mod cluster;
pub mod run;
pub mod serve;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

/// Jepsen-style testing of paxoskv.
#[derive(Debug, Parser)]
#[command(name = "harness", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check Jepsen EDN histories for linearizability.
    Check(check::CheckArgs),
    /// Run a workload: start a cluster, inject faults, record, check, report.
    Run(run::RunArgs),
    /// Start N local replicas and keep them running until Ctrl-C.
    Cluster(cluster::ClusterArgs),
    /// Serve the store's runs as web pages (read-only, 127.0.0.1 by default).
    Serve(serve::ServeArgs),
}

/// Exit statuses of every subcommand (0 valid, 1 anomaly, 2 error).
pub use crate::run::verdict::{EXIT_ANOMALY, EXIT_ERROR, EXIT_VALID};

/// Inserts the implicit `run` subcommand: `harness x.yaml ...` →
/// `harness run x.yaml ...`.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let first_is_yaml = args.get(1).is_some_and(|a| {
        let a = a.to_string_lossy();
        !a.starts_with('-') && (a.ends_with(".yaml") || a.ends_with(".yml"))
    });
    if first_is_yaml {
        args.insert(1, OsString::from("run"));
    }
    args
}

/// Parses the arguments and runs the subcommand; returns the exit status.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(normalize_args(args)) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                EXIT_ERROR
            } else {
                EXIT_VALID
            };
        }
    };
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Cluster(args) => cluster::run(&args),
        Command::Serve(args) => serve::run(&args),
    }
}

/// Listens for SIGINT and SIGTERM on a thread of its own: the first sets
/// `cancel` (the command stops early and cleans up); a second kills every
/// child process by PID, detaches every lazyfs mount and exits with status 2
/// at once. The handlers are registered before this returns, so a signal
/// that arrives once the command has started children is never the default
/// (deadly) one.
pub fn install_signal_handler(cancel: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("harness: warning: cannot listen for signals (no runtime)");
        return;
    };
    let registered = {
        let _in_runtime = rt.enter();
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    let (Ok(mut int), Ok(mut term)) = registered else {
        eprintln!("harness: warning: cannot listen for SIGINT/SIGTERM");
        return;
    };
    let _ = std::thread::Builder::new()
        .name("harness-signals".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut first = true;
                loop {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    if first {
                        eprintln!(
                            "\nharness: interrupted, stopping the cluster (again to kill at once)"
                        );
                        cancel.cancel();
                        first = false;
                    } else {
                        let n = crate::cluster::kill_registered();
                        eprintln!("harness: killed {n} processes");
                        crate::lazyfs::unmount_registered();
                        std::process::exit(EXIT_ERROR);
                    }
                }
            });
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_yaml_first_argument_means_run() {
        assert_eq!(
            normalize_args(os(&["harness", "w.yaml", "--x"])),
            os(&["harness", "run", "w.yaml", "--x"])
        );
        assert_eq!(
            normalize_args(os(&["harness", "check", "h.edn"])),
            os(&["harness", "check", "h.edn"])
        );
    }

    #[test]
    fn parses_check() {
        let cli = Cli::try_parse_from(os(&["harness", "check", "--model", "kv", "a.edn", "b.edn"]))
            .unwrap();
        let Command::Check(args) = cli.command else {
            panic!("not check")
        };
        assert_eq!(args.files.len(), 2);
        assert_eq!(args.model, Some(crate::checker::ModelKind::Kv));
    }

    #[test]
    fn parses_run_and_cluster() {
        let cli = Cli::try_parse_from(normalize_args(os(&[
            "harness",
            "w.yaml",
            "--base-client-port",
            "24000",
        ])))
        .unwrap();
        assert!(matches!(cli.command, Command::Run(ref a) if a.base_client_port == Some(24000)));
        let cli =
            Cli::try_parse_from(os(&["harness", "cluster", "5", "--fail-rate", "0.1"])).unwrap();
        assert!(matches!(cli.command, Command::Cluster(ref a) if a.replicas == 5));
    }
}
