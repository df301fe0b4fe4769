//! `harness serve`: see [`crate::serve`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

use super::{EXIT_ERROR, EXIT_VALID};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Root of the store directory.
    #[arg(long, default_value = "store", value_name = "DIR")]
    pub store: PathBuf,
    /// The port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), value_name = "ADDR")]
    pub bind: IpAddr,
}

/// Runs `harness serve` until SIGINT or SIGTERM; returns the exit status.
pub fn run(args: &ServeArgs) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("harness: cannot start the runtime: {e}");
            return EXIT_ERROR;
        }
    };
    let result = rt.block_on(async {
        let listener =
            crate::serve::bind(&args.store, SocketAddr::new(args.bind, args.port)).await?;
        let addr = listener
            .local_addr()
            .map_err(crate::serve::ServeError::Serve)?;
        println!(
            "harness serve: the runs of {} at http://{addr}/ (Ctrl-C to stop)",
            args.store.display()
        );
        crate::serve::serve(listener, args.store.clone(), stop_signal()).await
    });
    match result {
        Ok(()) => EXIT_VALID,
        Err(e) => {
            eprintln!("harness: {e}");
            EXIT_ERROR
        }
    }
}

/// Completes on the first SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
