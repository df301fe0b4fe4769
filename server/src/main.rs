//! `server`: one paxoskv replica.
//!
//! Parses the configuration (the original C++ project's text format and/or flags, see
//! [`server::config`]), sets up logging to stderr (`RUST_LOG`, default
//! `info`), and runs the replica until SIGTERM or SIGINT, which stop it
//! cleanly with exit status 0. A malformed configuration exits with status 2;
//! a replica that cannot start (port in use, unreadable data directory)
//! exits with status 1.

use server::config::{self, ServerConfig};

/// mimalloc: a replica allocates and frees many small buffers per request
/// (protobuf, h2 frames, commands), often on different threads (the core
/// task, the storage thread, the gRPC workers). With glibc's malloc that
/// was 14% of the CPU samples under a PUT load (malloc, free and
/// `malloc_consolidate`; `perf record`, 2026-12-01).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use server::node::{self, NodeConfig};
use server::paxos;
use server::shutdown::{termination_signal, Shutdown};

fn node_config(c: ServerConfig) -> NodeConfig {
    let core = paxos::Config {
        heartbeat_ticks: u64::from(c.heartbeat_ticks),
        election_ticks: u64::from(c.election_ticks),
        snapshot_every: c.snapshot_every,
        max_message_bytes: c.max_message_bytes,
        max_inflight_slots: node::MAX_INFLIGHT_SLOTS,
        max_batch: node::MAX_BATCH,
        ..paxos::Config::default()
    };
    NodeConfig {
        id: c.replica_id,
        dial: c.dial,
        replicas: c.replicas,
        my_addr: c.my_addr,
        my_paxos: c.my_paxos,
        data_dir: c.data_dir,
        fail_rate: c.fail_rate,
        read_mode: c.read_mode,
        tick: c.tick,
        core,
        sync: !c.unsafe_no_fsync,
    }
}

fn main() {
    let config = match config::parse_args(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("server: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = Shutdown::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            match termination_signal().await {
                Ok(sig) => tracing::info!(signal = sig, "shutting down"),
                Err(e) => tracing::error!(error = %e, "cannot listen for signals"),
            }
            trigger.trigger();
        });
        server::run::run(node_config(config), shutdown).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => tracing::info!("stopped"),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("server: {e:#}");
            std::process::exit(1);
        }
    }
}
