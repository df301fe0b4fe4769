//! Starting and stopping a whole replica: storage and core ([`crate::node`]),
//! the `Kv` service on `my_addr` and the `Paxos` service on `my_paxos`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use crate::node::{self, NodeConfig};
use crate::peer::PaxosService;
use crate::service::{Executor, KvService};
use crate::shutdown::Shutdown;

/// How long open requests get to finish after shutdown is triggered.
const DRAIN_TIME: Duration = Duration::from_secs(2);

async fn bind(what: &str, addr: &str) -> anyhow::Result<TcpIncoming> {
    let sock: SocketAddr = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("{what} `{addr}` is not a valid address"))?
        .next()
        .with_context(|| format!("{what} `{addr}` resolves to nothing"))?;
    let listener = TcpListener::bind(sock)
        .await
        .with_context(|| format!("cannot listen on {what} {addr}"))?;
    Ok(TcpIncoming::from(listener).with_nodelay(Some(true)))
}

/// Runs a replica until `shutdown` triggers, then stops it cleanly.
pub async fn run(config: NodeConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    // Bind first: a port in use is reported before anything else happens.
    let client_incoming = bind("my_addr", &config.my_addr).await?;
    let paxos_incoming = bind("my_paxos", &config.my_paxos).await?;
    let (my_addr, my_paxos) = (config.my_addr.clone(), config.my_paxos.clone());
    let node::Started {
        handle,
        core,
        storage,
    } = node::start(config, shutdown.clone()).context("cannot start replica")?;
    let executor = Arc::new(Executor::new(handle.clone()));
    let kv = KvService::new(handle.clone(), executor.clone()).into_server();
    let paxos = PaxosService::new(handle.clone(), executor).into_server();

    let s1 = shutdown.clone();
    let client_server = Server::builder()
        .add_service(kv)
        .serve_with_incoming_shutdown(client_incoming, async move { s1.wait().await });
    let s2 = shutdown.clone();
    let paxos_server = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_millis(500)))
        .http2_keepalive_timeout(Some(Duration::from_millis(1500)))
        .add_service(paxos)
        .serve_with_incoming_shutdown(paxos_incoming, async move { s2.wait().await });
    tracing::info!(
        id = handle.shared.id,
        replicas = ?handle.shared.replicas,
        %my_addr,
        %my_paxos,
        "replica serving"
    );
    let servers = async {
        tokio::try_join!(
            async { client_server.await.context("client service failed") },
            async { paxos_server.await.context("paxos service failed") },
        )
    };
    tokio::pin!(servers);
    tokio::select! {
        r = &mut servers => { r?; }
        _ = shutdown.wait() => {
            // Give open requests a moment to finish, then stop regardless.
            if tokio::time::timeout(DRAIN_TIME, &mut servers).await.is_err() {
                tracing::warn!("requests still open after {DRAIN_TIME:?}; stopping anyway");
            }
        }
    }
    shutdown.trigger();
    let _ = tokio::time::timeout(DRAIN_TIME, core).await;
    // The storage thread finishes the writes already queued, then ends.
    let joined = tokio::task::spawn_blocking(move || storage.join());
    if tokio::time::timeout(DRAIN_TIME, joined).await.is_err() {
        tracing::warn!("storage thread still busy after {DRAIN_TIME:?}; stopping anyway");
    }
    Ok(())
}
