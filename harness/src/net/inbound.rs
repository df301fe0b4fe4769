//! Inbound proxies: one per destination node, for systems whose nodes all
//! dial one advertised peer address per node (etcd's peer URLs), so that a
//! node cannot be told to dial each peer through a proxy of its own link.
//!
//! The [`InboundProxy`] of node `j` listens on the address `j` advertises
//! and forwards to `j`'s real peer port. For each connection it asks
//! [`ProcDialers`] which node `i` dialled, then copies what `i` sends under
//! the rules of link `i -> j` and what `j` answers under those of `j -> i`
//! ([`super::proxy::serve`]). So every byte `i` sends to `j` crosses link
//! `i -> j`, whoever dialled the connection that carries it (etcd's stream
//! messages travel on responses to the receiver's request): a blackhole,
//! delay or bandwidth limit holds in exactly the grudged direction. A reset
//! cut resets the connections that carry either direction. A connection
//! whose dialler is not a node is reset (and counted,
//! [`super::Network::strangers`]); a node dialling itself
//! passes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::dialer::ProcDialers;
use super::proxy::{self, Direction, Link, OpenGuard, ProxyError};

/// Tries to find a connection's dialler (a process may still be setting its
/// socket up when the connection is accepted).
const IDENTIFY_TRIES: u32 = 3;

/// The proxy in front of one node's peer port.
#[derive(Debug)]
pub struct InboundProxy {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

/// The links of one destination node `to`.
#[derive(Debug, Clone)]
pub(crate) struct LinksOf {
    pub to: usize,
    /// `from[i]`: link `i -> to` (None for `to` itself).
    pub from: Vec<Option<Arc<Link>>>,
    /// `back[i]`: link `to -> i` (None for `to` itself).
    pub back: Vec<Option<Arc<Link>>>,
    /// Connections reset because their dialler is not a node.
    pub strangers: Arc<AtomicUsize>,
}

impl InboundProxy {
    /// Serves a listener from [`proxy::reserve`] for node `links.to`, whose
    /// real peer address is `upstream`. Must run inside a tokio runtime.
    pub(crate) fn start(
        listener: std::net::TcpListener,
        upstream: SocketAddr,
        links: LinksOf,
        dialers: Arc<ProcDialers>,
    ) -> Result<InboundProxy, ProxyError> {
        let name = format!("* -> n{}", links.to);
        let (addr, listener) = proxy::serve_listener(&name, listener)?;
        let accept = tokio::spawn(accept_loop(listener, upstream, links, dialers));
        Ok(InboundProxy { addr, accept })
    }

    /// The address the node advertises to its peers.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for InboundProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    links: LinksOf,
    dialers: Arc<ProcDialers>,
) {
    // A node dialling itself: a link of its own, never faulted, that lives
    // as long as the proxy (its connections end with it).
    let own = Arc::new(Link::new(format!("n{0}->n{0}", links.to)));
    let links = Arc::new(links);
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            // Out of file descriptors or similar: do not spin.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let (links, dialers, own) = (links.clone(), dialers.clone(), own.clone());
        tokio::spawn(async move {
            let from = match client.local_addr() {
                Ok(local) => identify(&dialers, peer, local).await,
                Err(_) => None,
            };
            // Only the directions' watches stay with the connection, so that
            // it ends when the links are dropped with the network.
            let directions = directions(&links, from, &own);
            let strangers = links.strangers.clone();
            drop((links, own));
            match directions {
                Some((up, down, open)) => proxy::serve(client, upstream, up, down, open).await,
                None => {
                    strangers.fetch_add(1, Ordering::Relaxed);
                    proxy::reset(&client);
                }
            }
        });
    }
}

/// The dialler of `peer -> local`, retried briefly.
async fn identify(
    dialers: &Arc<ProcDialers>,
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<usize> {
    for attempt in 0..IDENTIFY_TRIES {
        let d = dialers.clone();
        let found = tokio::task::spawn_blocking(move || d.node_of(peer, local))
            .await
            .ok()
            .flatten();
        if found.is_some() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt + 1))).await;
    }
    None
}

/// What the connection dialled by `from` follows: what it sends, what it
/// is answered, and the link it counts on. None: no node dialled it.
fn directions(
    links: &LinksOf,
    from: Option<usize>,
    own: &Link,
) -> Option<(Direction, Direction, OpenGuard)> {
    let from = from?;
    if from == links.to {
        return Some((own.watch(), own.watch(), own.opened()));
    }
    let there = links.from.get(from)?.as_ref()?;
    let back = links.back.get(from)?.as_ref()?;
    Some((there.watch(), back.watch(), there.opened()))
}
