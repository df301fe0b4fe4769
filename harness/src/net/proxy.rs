//! One directed link as an in-process TCP proxy, with rules that change at
//! run time (like toxiproxy).
//!
//! A [`LinkProxy`] listens on its own port and forwards every connection to
//! one upstream address: the harness tells replica `i` to dial replica `j`
//! through the proxy of link `i -> j`, so everything `i` sends to `j` crosses
//! it (and `j`'s answers on that connection come back through it). The
//! link's [`Rules`] apply to both directions of every connection on it, and
//! can be set at any time:
//!
//! - **pass**: bytes are copied as they come;
//! - **blackhole** ([`Cut::Blackhole`], a pulled cable): bytes vanish and
//!   connections hang. Open connections stay open but every byte read is
//!   dropped; new connections are accepted (the kernel completes the TCP
//!   handshake before any proxy could refuse it) and then hear nothing. A
//!   connection that lost bytes cannot continue once the link heals (TCP
//!   would have retransmitted them; they are gone), so the heal resets it and
//!   the endpoints reconnect, as they would after their keep-alives expired;
//! - **reset** ([`Cut::Reset`]): open connections are reset (RST) at once and
//!   new ones are reset as soon as they are accepted;
//! - **delay**: every chunk read is written `latency + uniform(0, jitter)`
//!   after it was read, order kept;
//! - **slow**: each direction of each connection is paced to `bandwidth`
//!   bytes per second.
//!
//! Delay and bandwidth combine with each other and with a cut. Dropping the
//! [`LinkProxy`] closes its listener and every connection on it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long the proxy waits for the upstream to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes read at once.
const CHUNK: usize = 64 << 10;
/// Chunks in flight between the reading and the writing side of one
/// direction (bounds the memory a delayed or slow link holds).
const IN_FLIGHT: usize = 64;

/// How a cut link behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cut {
    /// Bytes vanish, connections hang.
    Blackhole,
    /// Connections are reset.
    Reset,
}

impl Cut {
    pub fn as_str(self) -> &'static str {
        match self {
            Cut::Blackhole => "blackhole",
            Cut::Reset => "reset",
        }
    }
}

/// What a link does to its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rules {
    /// None: the link passes bytes.
    pub cut: Option<Cut>,
    /// Added to every chunk.
    pub latency: Duration,
    /// A uniform random extra delay in `[0, jitter]` per chunk.
    pub jitter: Duration,
    /// Bytes per second per direction and connection; None: unlimited.
    pub bandwidth: Option<u64>,
}

/// The rules and what connections must know about their history.
#[derive(Debug, Clone, Copy, Default)]
struct State {
    rules: Rules,
    /// Bumped each time a reset cut is applied: connections opened before
    /// the bump are reset.
    resets: u64,
    /// Bumped each time a blackhole ends: connections that lost bytes (or
    /// were opened during it) are reset.
    heals: u64,
}

/// A proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr} for link {link} (is the port in use? proxy ports are set by cluster.base_proxy_port)")]
    Bind {
        addr: SocketAddr,
        link: String,
        source: std::io::Error,
    },
    #[error("cannot serve the proxy of link {link}")]
    Serve {
        link: String,
        source: std::io::Error,
    },
}

/// The rules of one directed link, shared by every connection that carries
/// its bytes (one [`LinkProxy`]'s, or the connections of several inbound
/// proxies, [`super::inbound`]).
#[derive(Debug)]
pub struct Link {
    name: String,
    state: watch::Sender<State>,
    /// Connections currently open on the link.
    open: Arc<AtomicUsize>,
}

impl Link {
    /// A link that passes everything; `name` (e.g. `n0->n2`) appears in
    /// errors and logs.
    pub fn new(name: impl Into<String>) -> Link {
        Link {
            name: name.into(),
            state: watch::channel(State::default()).0,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The link's name, e.g. `n0->n2`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rules in force.
    pub fn rules(&self) -> Rules {
        self.state.borrow().rules
    }

    /// Connections open on the link right now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Changes the rules; takes effect at once on every connection.
    pub fn update(&self, change: impl FnOnce(&mut Rules)) {
        self.state.send_modify(|s| {
            let before = s.rules.cut;
            change(&mut s.rules);
            if s.rules.cut == Some(Cut::Reset) && before != Some(Cut::Reset) {
                s.resets += 1;
            }
            if before == Some(Cut::Blackhole) && s.rules.cut != Some(Cut::Blackhole) {
                s.heals += 1;
            }
        });
    }

    /// Cuts the link (`Some`) or lets it pass again (`None`).
    pub fn set_cut(&self, cut: Option<Cut>) {
        self.update(|r| r.cut = cut);
    }

    /// What a connection watches to follow the link's rules.
    pub(crate) fn watch(&self) -> Direction {
        Direction {
            state: self.state.subscribe(),
        }
    }

    /// Counts a connection open on the link until the guard drops.
    pub(crate) fn opened(&self) -> OpenGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.open.clone())
    }
}

/// Decrements a link's open-connection count when dropped.
pub(crate) struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The rules one direction of a connection follows: the link whose bytes it
/// carries.
#[derive(Debug, Clone)]
pub(crate) struct Direction {
    state: watch::Receiver<State>,
}

/// One directed link's proxy.
#[derive(Debug)]
pub struct LinkProxy {
    link: Arc<Link>,
    addr: SocketAddr,
    upstream: SocketAddr,
    accept: JoinHandle<()>,
}

impl LinkProxy {
    /// Listens on `listen` (must be free) and forwards to `upstream`.
    /// `name` (e.g. `n0->n2`) appears in errors. Must run inside a tokio
    /// runtime.
    pub fn bind(
        name: impl Into<String>,
        listen: SocketAddr,
        upstream: SocketAddr,
    ) -> Result<LinkProxy, ProxyError> {
        let link = Arc::new(Link::new(name));
        let listener = reserve(link.name(), listen)?;
        Self::start(link, listener, upstream)
    }

    /// Serves a listener from [`reserve`] under `link`'s rules. Must run
    /// inside a tokio runtime.
    pub fn start(
        link: Arc<Link>,
        listener: std::net::TcpListener,
        upstream: SocketAddr,
    ) -> Result<LinkProxy, ProxyError> {
        let (addr, listener) = serve_listener(link.name(), listener)?;
        let accept = tokio::spawn(accept_loop(listener, upstream, link.clone()));
        Ok(LinkProxy {
            link,
            addr,
            upstream,
            accept,
        })
    }

    /// The rules of the link.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The link's name, e.g. `n0->n2`.
    pub fn name(&self) -> &str {
        self.link.name()
    }

    /// The address to dial instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The rules in force.
    pub fn rules(&self) -> Rules {
        self.link.rules()
    }

    /// Connections open through the proxy right now.
    pub fn open_connections(&self) -> usize {
        self.link.open_connections()
    }

    /// Changes the rules; takes effect at once on every connection.
    pub fn update(&self, change: impl FnOnce(&mut Rules)) {
        self.link.update(change)
    }

    /// Cuts the link (`Some`) or lets it pass again (`None`).
    pub fn set_cut(&self, cut: Option<Cut>) {
        self.link.set_cut(cut)
    }
}

/// Binds a port without serving it yet (so that a set of proxies can check
/// all their ports before any starts). `link` names it in the error.
pub fn reserve(link: &str, listen: SocketAddr) -> Result<std::net::TcpListener, ProxyError> {
    let bind_err = |source| ProxyError::Bind {
        addr: listen,
        link: link.to_string(),
        source,
    };
    let l = std::net::TcpListener::bind(listen).map_err(bind_err)?;
    l.set_nonblocking(true).map_err(bind_err)?;
    Ok(l)
}

/// A reserved listener, ready for tokio, and its address.
pub(crate) fn serve_listener(
    link: &str,
    listener: std::net::TcpListener,
) -> Result<(SocketAddr, TcpListener), ProxyError> {
    let serve_err = |source| ProxyError::Serve {
        link: link.to_string(),
        source,
    };
    let addr = listener.local_addr().map_err(serve_err)?;
    Ok((addr, TcpListener::from_std(listener).map_err(serve_err)?))
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        // The listener closes with the accept task; the connections see the
        // state channel close and end.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, link: Arc<Link>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors or similar: do not spin.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        // Both directions of the connection follow the link's rules.
        let guard = link.opened();
        tokio::spawn(serve(client, upstream, link.watch(), link.watch(), guard));
    }
}

/// Closes a socket with an RST instead of a FIN.
pub(crate) fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Why a connection must end now, if it must.
fn must_end(s: &State, opened: &State, lost: bool, held: bool) -> bool {
    s.resets != opened.resets || (s.heals != opened.heals && (lost || held))
}

/// Waits until the connection must be reset because of one direction's
/// rules (or the proxy is gone).
async fn until_reset(dir: Direction, opened: State, lost: Arc<AtomicBool>, held: bool) {
    let mut state = dir.state;
    loop {
        if must_end(
            &state.borrow_and_update(),
            &opened,
            lost.load(Ordering::Relaxed),
            held,
        ) {
            return;
        }
        if state.changed().await.is_err() {
            // The link is gone (the network was dropped).
            return;
        }
    }
}

/// Waits until either direction's rules reset the connection.
async fn until_either_resets(
    up: &Direction,
    down: &Direction,
    opened: (State, State),
    lost: &Arc<AtomicBool>,
    held: bool,
) {
    tokio::select! {
        _ = until_reset(up.clone(), opened.0, lost.clone(), held) => {}
        _ = until_reset(down.clone(), opened.1, lost.clone(), held) => {}
    }
}

/// One connection: connect upstream and copy both ways, what the client
/// sends under `up`'s rules and what the upstream answers under `down`'s.
/// A reset cut of either direction resets the whole connection (TCP has no
/// half reset). `_open` counts the connection while it lasts.
pub(crate) async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    up: Direction,
    down: Direction,
    _open: OpenGuard,
) {
    let opened = (*up.state.borrow(), *down.state.borrow());
    if opened.0.rules.cut == Some(Cut::Reset) || opened.1.rules.cut == Some(Cut::Reset) {
        reset(&client);
        return;
    }
    let _ = client.set_nodelay(true);
    let lost = Arc::new(AtomicBool::new(false));
    if opened.0.rules.cut == Some(Cut::Blackhole) {
        // Opened while what the client sends vanishes: it never reached the
        // upstream. Swallow what it sends until the heal, then reset it.
        let mut buf = vec![0u8; CHUNK];
        let swallow = async {
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    // Closed by the client: nothing left to hold.
                    std::future::pending::<()>().await;
                }
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = swallow => {}
            _ = until_either_resets(&up, &down, opened, &lost, true) => {}
        }
        reset(&client);
        return;
    }
    let mut server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await
    {
        Ok(Ok(s)) => s,
        // The upstream is down: the client sees what it would see dialing
        // it directly, a refused (reset) connection.
        _ => {
            reset(&client);
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let ended = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        let to_server = pump(cr, sw, up.state.clone(), lost.clone());
        let to_client = pump(sr, cw, down.state.clone(), lost.clone());
        tokio::select! {
            _ = async { tokio::join!(to_server, to_client) } => false,
            _ = until_either_resets(&up, &down, opened, &lost, false) => true,
        }
    };
    if ended {
        reset(&client);
        reset(&server);
    }
}

/// A chunk read, or the end of the direction.
enum Piece {
    Bytes(Instant, Vec<u8>),
    /// EOF or a read error: shut the writing side down.
    End,
}

/// Copies one direction: a reading side that stamps each chunk with the time
/// it was read, and a writing side that applies the rules.
async fn pump<R, W>(mut from: R, mut to: W, state: watch::Receiver<State>, lost: Arc<AtomicBool>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<Piece>(IN_FLIGHT);
    let read = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Piece::End).await;
                    return;
                }
                Ok(n) => {
                    if tx
                        .send(Piece::Bytes(Instant::now(), buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let write = async move {
        // Deliveries keep their order: never before the previous one.
        let mut last = Instant::now();
        while let Some(piece) = rx.recv().await {
            let bytes = match piece {
                Piece::End => break,
                Piece::Bytes(at, bytes) => {
                    let rules = state.borrow().rules;
                    let jitter = if rules.jitter.is_zero() {
                        Duration::ZERO
                    } else {
                        rand::rng().random_range(Duration::ZERO..=rules.jitter)
                    };
                    let due = (at + rules.latency + jitter).max(last);
                    tokio::time::sleep_until(due).await;
                    last = due;
                    bytes
                }
            };
            // The cut in force when the chunk is due decides.
            if state.borrow().rules.cut.is_some() {
                lost.store(true, Ordering::Relaxed);
                continue;
            }
            if write_paced(&mut to, &bytes, &state).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// Writes `bytes`, in slices paced to the link's bandwidth if it has one.
async fn write_paced<W: AsyncWrite + Unpin>(
    to: &mut W,
    bytes: &[u8],
    state: &watch::Receiver<State>,
) -> std::io::Result<()> {
    let Some(bw) = state.borrow().rules.bandwidth.filter(|b| *b > 0) else {
        return to.write_all(bytes).await;
    };
    // Slices of 1/50 s of bandwidth: smooth enough, few wake-ups.
    let slice = ((bw / 50) as usize).clamp(256, CHUNK);
    for part in bytes.chunks(slice) {
        let started = Instant::now();
        to.write_all(part).await?;
        let budget = Duration::from_secs_f64(part.len() as f64 / bw as f64);
        tokio::time::sleep_until(started + budget).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn a_port_in_use_is_an_error_naming_it() {
        // Port 25960: this helper's range.
        let first = LinkProxy::bind("n0->n1", local(25960), local(1)).unwrap();
        let err = LinkProxy::bind("n1->n0", first.addr(), local(1)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&first.addr().port().to_string()), "{msg}");
        assert!(msg.contains("n1->n0"), "{msg}");
    }
}
