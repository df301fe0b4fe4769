//! The cluster's network as the harness sees it: one proxy per directed
//! replica-to-replica link, so the nemesis can cut, delay and slow links
//! without root.
//!
//! - [`proxy`]: one link's TCP proxy and its rules (pass, blackhole, reset,
//!   delay, bandwidth).
//! - [`grudge`]: partition shapes (isolate, halves, bridge, majorities-ring,
//!   one-way, explicit groups) as pure functions to the set of cut links.
//!
//! [`Network`] owns the proxies of a cluster of `n` replicas. The proxy of
//! link `i -> j` listens on `base_port + i * n + j` ([`link_port`]); replica
//! `i` is started with `--peer-dial j=<that address>` for every `j != i`
//! ([`Network::peer_dials`]), so everything it sends to `j` crosses that
//! proxy. The ports `base_port .. base_port + n * n` are the proxy range; the
//! diagonal (`i * n + i`) is left unused. Every port is bound when the
//! network starts, so a port in use is an error naming it before any replica
//! runs; the listeners live in the harness process and close with it (also
//! when it is killed).

pub mod grudge;
pub mod proxy;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub use grudge::{Grudge, Shape, ShapeError};
pub use proxy::{Cut, LinkProxy, ProxyError, Rules};

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
}

/// The proxies of one cluster.
#[derive(Debug)]
pub struct Network {
    n: usize,
    /// `links[from][to]`; None on the diagonal.
    links: Vec<Vec<Option<LinkProxy>>>,
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
        if n == 0 {
            return Ok(Network {
                n,
                links: Vec::new(),
            });
        }
        let end = link_port(base_port, n, n - 1, n - 1) + 1;
        if end > 65536 {
            return Err(NetworkError::PortRange {
                base: base_port,
                end,
            });
        }
        let resolve = |addr: &str| -> Result<SocketAddr, NetworkError> {
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
        };
        let up: Vec<SocketAddr> = upstreams
            .iter()
            .map(|a| resolve(a))
            .collect::<Result<_, _>>()?;
        // Every port first: one in use fails the start before any proxy
        // serves (and the ones bound so far close at once).
        let mut reserved = Vec::with_capacity(n);
        for from in 0..n {
            let mut row = Vec::with_capacity(n);
            for to in 0..n {
                if from == to {
                    row.push(None);
                    continue;
                }
                let name = format!("n{from}->n{to}");
                let port = link_port(base_port, n, from, to);
                let listen = resolve(&format!("{host}:{port}"))?;
                row.push(Some((name.clone(), LinkProxy::reserve(&name, listen)?)));
            }
            reserved.push(row);
        }
        let mut links = Vec::with_capacity(n);
        for row in reserved {
            let mut out = Vec::with_capacity(n);
            for (to, cell) in row.into_iter().enumerate() {
                out.push(match cell {
                    Some((name, l)) => Some(LinkProxy::start(name, l, up[to])?),
                    None => None,
                });
            }
            links.push(out);
        }
        Ok(Network { n, links })
    }

    pub fn nodes(&self) -> usize {
        self.n
    }

    /// The proxy of link `from -> to`.
    pub fn link(&self, from: usize, to: usize) -> Option<&LinkProxy> {
        self.links.get(from)?.get(to)?.as_ref()
    }

    fn all(&self) -> impl Iterator<Item = (usize, usize, &LinkProxy)> {
        self.links.iter().enumerate().flat_map(|(f, row)| {
            row.iter()
                .enumerate()
                .filter_map(move |(t, l)| l.as_ref().map(|l| (f, t, l)))
        })
    }

    /// The `--peer-dial` values of replica `i`: `ID=HOST:PORT` for every
    /// other replica.
    pub fn peer_dials(&self, i: usize) -> Vec<String> {
        (0..self.n)
            .filter_map(|j| self.link(i, j).map(|l| format!("{j}={}", l.addr())))
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
