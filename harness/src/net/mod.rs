//! The cluster's network as the harness sees it: proxies between the
//! replicas, so the nemesis can cut, delay and slow each directed link
//! without root.
//!
//! - [`proxy`]: the rules of one directed link ([`Link`]: pass, blackhole,
//!   reset, delay, bandwidth) and one link's TCP proxy ([`LinkProxy`]).
//! - [`inbound`]: one proxy per destination node, for systems whose nodes
//!   all dial one advertised address per node (etcd), with [`dialer`]
//!   telling which node dialled each connection.
//! - [`grudge`]: partition shapes (isolate, halves, bridge, majorities-ring,
//!   one-way, explicit groups) as pure functions to the set of cut links.
//!
//! [`Network`] owns the links and proxies of a cluster of `n` replicas, in
//! one of two layouts:
//!
//! - per link ([`Network::start`], paxoskv): the proxy of link `i -> j`
//!   listens on `base_port + i * n + j` ([`link_port`]); replica `i` is
//!   started with `--peer-dial j=<that address>` for every `j != i`
//!   ([`Network::peer_dials`]), so everything it sends to `j` crosses that
//!   proxy. The ports `base_port .. base_port + n * n` are the proxy range;
//!   the diagonal (`i * n + i`) is left unused.
//! - per destination ([`Network::start_inbound`], etcd): node `j`'s proxy
//!   listens on `base_port + j`, the address `j` advertises to its peers.
//!
//! Every port is bound when the network starts, so a port in use is an
//! error naming it before any replica runs; the listeners live in the
//! harness process and close with it (also when it is killed).

pub mod dialer;
pub mod grudge;
pub mod inbound;
pub mod proxy;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use dialer::ProcDialers;
pub use grudge::{Grudge, Shape, ShapeError};
pub use inbound::InboundProxy;
pub use proxy::{Cut, Link, LinkProxy, ProxyError, Rules};

/// The port of the proxy of link `from -> to` in a cluster of `n`.
pub fn link_port(base_port: u16, n: usize, from: usize, to: usize) -> u32 {
    u32::from(base_port) + (from * n + to) as u32
}

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("proxy ports {base}..{end} do not fit below 65536 (cluster.base_proxy_port)")]
    PortRange { base: u16, end: u32 },
    #[error("cannot resolve {addr}: {reason}")]
    Resolve { addr: String, reason: String },
    #[error("the inbound proxies find which node dialled in /proc (Linux only), but {reason}")]
    NoProc { reason: String },
}

/// The proxies of one cluster.
#[derive(Debug)]
pub struct Network {
    n: usize,
    /// `links[from][to]`: the rules of each directed link; None on the
    /// diagonal.
    links: Vec<Vec<Option<Arc<Link>>>>,
    /// `dial[from][to]`: where `from` reaches `to`.
    dial: Vec<Vec<Option<SocketAddr>>>,
    /// Per-link proxies ([`Network::start`]).
    _link_proxies: Vec<LinkProxy>,
    /// Per-destination proxies ([`Network::start_inbound`]).
    inbound: Vec<InboundProxy>,
    /// Connections the inbound proxies reset because no node dialled them.
    strangers: Arc<AtomicUsize>,
}

fn resolve(addr: &str) -> Result<SocketAddr, NetworkError> {
    addr.to_socket_addrs()
        .map_err(|e| NetworkError::Resolve {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| NetworkError::Resolve {
            addr: addr.to_string(),
            reason: "no address".into(),
        })
}

/// One [`Link`] per directed link of `n` nodes.
fn new_links(n: usize) -> Vec<Vec<Option<Arc<Link>>>> {
    (0..n)
        .map(|f| {
            (0..n)
                .map(|t| (f != t).then(|| Arc::new(Link::new(format!("n{f}->n{t}")))))
                .collect()
        })
        .collect()
}

impl Network {
    /// Binds one proxy per directed link; `upstreams[j]` is replica `j`'s
    /// real Paxos address, proxies listen on `host`. Must run inside a tokio
    /// runtime.
    pub fn start(
        host: &str,
        base_port: u16,
        upstreams: &[String],
    ) -> Result<Network, NetworkError> {
        let n = upstreams.len();
        let links = new_links(n);
        if n > 0 {
            let end = link_port(base_port, n, n - 1, n - 1) + 1;
            if end > 65536 {
                return Err(NetworkError::PortRange {
                    base: base_port,
                    end,
                });
            }
        }
        let up: Vec<SocketAddr> = upstreams
            .iter()
            .map(|a| resolve(a))
            .collect::<Result<_, _>>()?;
        // Every port first: one in use fails the start before any proxy
        // serves (and the ones bound so far close at once).
        let mut reserved = Vec::new();
        for (from, row) in links.iter().enumerate() {
            for (to, link) in row.iter().enumerate() {
                if let Some(link) = link {
                    let port = link_port(base_port, n, from, to);
                    let listen = resolve(&format!("{host}:{port}"))?;
                    reserved.push((from, to, proxy::reserve(link.name(), listen)?));
                }
            }
        }
        let mut dial = vec![vec![None; n]; n];
        let mut proxies = Vec::with_capacity(reserved.len());
        for (from, to, listener) in reserved {
            let link = links[from][to].clone().expect("off the diagonal");
            let p = LinkProxy::start(link, listener, up[to])?;
            dial[from][to] = Some(p.addr());
            proxies.push(p);
        }
        Ok(Network {
            n,
            links,
            dial,
            _link_proxies: proxies,
            inbound: Vec::new(),
            strangers: Arc::default(),
        })
    }

    /// Binds one proxy per destination node ([`inbound`]), for systems whose
    /// nodes all dial one advertised address per peer: node `j`'s proxy
    /// listens on `host:base_port + j` and forwards to `upstreams[j]`;
    /// `dialers` tells which node dialled each connection. Must run inside a
    /// tokio runtime.
    pub fn start_inbound(
        host: &str,
        base_port: u16,
        upstreams: &[String],
        dialers: ProcDialers,
    ) -> Result<Network, NetworkError> {
        ProcDialers::check_available().map_err(|reason| NetworkError::NoProc { reason })?;
        let n = upstreams.len();
        let end = u32::from(base_port) + n as u32;
        if end > 65536 {
            return Err(NetworkError::PortRange {
                base: base_port,
                end,
            });
        }
        let links = new_links(n);
        let up: Vec<SocketAddr> = upstreams
            .iter()
            .map(|a| resolve(a))
            .collect::<Result<_, _>>()?;
        let mut reserved = Vec::with_capacity(n);
        for to in 0..n {
            let listen = resolve(&format!("{host}:{}", u32::from(base_port) + to as u32))?;
            reserved.push(proxy::reserve(&format!("* -> n{to}"), listen)?);
        }
        let dialers = Arc::new(dialers);
        let strangers = Arc::new(AtomicUsize::new(0));
        let mut inbound = Vec::with_capacity(n);
        for (to, listener) in reserved.into_iter().enumerate() {
            let of = inbound::LinksOf {
                to,
                from: (0..n).map(|f| links[f][to].clone()).collect(),
                back: (0..n).map(|f| links[to][f].clone()).collect(),
                strangers: strangers.clone(),
            };
            inbound.push(InboundProxy::start(listener, up[to], of, dialers.clone())?);
        }
        let dial = (0..n)
            .map(|f| {
                (0..n)
                    .map(|t| (f != t).then(|| inbound[t].addr()))
                    .collect()
            })
            .collect();
        Ok(Network {
            n,
            links,
            dial,
            _link_proxies: Vec::new(),
            inbound,
            strangers,
        })
    }

    pub fn nodes(&self) -> usize {
        self.n
    }

    /// The rules of link `from -> to`.
    pub fn link(&self, from: usize, to: usize) -> Option<&Link> {
        self.links.get(from)?.get(to)?.as_deref()
    }

    /// Where `from` dials to reach `to` (a proxy's address).
    pub fn dial_addr(&self, from: usize, to: usize) -> Option<SocketAddr> {
        *self.dial.get(from)?.get(to)?
    }

    /// With inbound proxies, the one address every node dials to reach
    /// `to`: what `to` advertises.
    pub fn inbound_addr(&self, to: usize) -> Option<SocketAddr> {
        self.inbound.get(to).map(|p| p.addr())
    }

    /// Connections the inbound proxies reset because no node dialled them
    /// (a dialler [`ProcDialers`] could not find).
    pub fn strangers(&self) -> usize {
        self.strangers.load(Ordering::Relaxed)
    }

    fn all(&self) -> impl Iterator<Item = (usize, usize, &Link)> {
        self.links.iter().enumerate().flat_map(|(f, row)| {
            row.iter()
                .enumerate()
                .filter_map(move |(t, l)| l.as_deref().map(|l| (f, t, l)))
        })
    }

    /// The `--peer-dial` values of replica `i`: `ID=HOST:PORT` for every
    /// other replica.
    pub fn peer_dials(&self, i: usize) -> Vec<String> {
        (0..self.n)
            .filter_map(|j| self.dial_addr(i, j).map(|a| format!("{j}={a}")))
            .collect()
    }

    /// Cuts exactly the links of `grudge` (`cut` says how) and lets every
    /// other link pass.
    pub fn partition(&self, grudge: &Grudge, cut: Cut) {
        for (f, t, l) in self.all() {
            l.set_cut((!grudge.passes(f, t)).then_some(cut));
        }
    }

    /// Lets every link pass again (delays and bandwidth limits stay).
    pub fn heal_partition(&self) {
        for (_, _, l) in self.all() {
            l.set_cut(None);
        }
    }

    /// The links that touch one of `nodes` (both directions), or every link
    /// if `nodes` is None.
    pub fn links_of(&self, nodes: Option<&[usize]>) -> Vec<(usize, usize)> {
        self.all()
            .map(|(f, t, _)| (f, t))
            .filter(|(f, t)| nodes.is_none_or(|ns| ns.contains(f) || ns.contains(t)))
            .collect()
    }

    /// Sets latency and jitter on `links`.
    pub fn delay(&self, links: &[(usize, usize)], latency: Duration, jitter: Duration) {
        for &(f, t) in links {
            if let Some(l) = self.link(f, t) {
                l.update(|r| {
                    r.latency = latency;
                    r.jitter = jitter;
                });
            }
        }
    }

    /// Limits `links` to `bandwidth` bytes/s (None: unlimited).
    pub fn slow(&self, links: &[(usize, usize)], bandwidth: Option<u64>) {
        for &(f, t) in links {
            if let Some(l) = self.link(f, t) {
                l.update(|r| r.bandwidth = bandwidth);
            }
        }
    }

    /// Every link back to pass, no delay, no limit.
    pub fn heal_all(&self) {
        for (_, _, l) in self.all() {
            l.update(|r| *r = Rules::default());
        }
    }

    /// The rules of every link that does not simply pass, as `n0->n1` and a
    /// description: for logs and the progress bar.
    pub fn faulty_links(&self) -> Vec<(String, Rules)> {
        self.all()
            .filter(|(_, _, l)| l.rules() != Rules::default())
            .map(|(_, _, l)| (l.name().to_string(), l.rules()))
            .collect()
    }

    /// Connections open through all proxies.
    pub fn open_connections(&self) -> usize {
        self.all().map(|(_, _, l)| l.open_connections()).sum()
    }
}
