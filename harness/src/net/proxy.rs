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

/// One directed link's proxy.
#[derive(Debug)]
pub struct LinkProxy {
    name: String,
    addr: SocketAddr,
    upstream: SocketAddr,
    state: watch::Sender<State>,
    /// Connections currently open through the proxy.
    open: Arc<AtomicUsize>,
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
        let name = name.into();
        let listener = Self::reserve(&name, listen)?;
        Self::start(name, listener, upstream)
    }

    /// Binds the port without serving it yet (so that a set of proxies can
    /// check all their ports before any starts).
    pub fn reserve(name: &str, listen: SocketAddr) -> Result<std::net::TcpListener, ProxyError> {
        let bind_err = |source| ProxyError::Bind {
            addr: listen,
            link: name.to_string(),
            source,
        };
        let l = std::net::TcpListener::bind(listen).map_err(bind_err)?;
        l.set_nonblocking(true).map_err(bind_err)?;
        Ok(l)
    }

    /// Serves a listener from [`LinkProxy::reserve`]. Must run inside a
    /// tokio runtime.
    pub fn start(
        name: String,
        listener: std::net::TcpListener,
        upstream: SocketAddr,
    ) -> Result<LinkProxy, ProxyError> {
        let serve_err = |source| ProxyError::Serve {
            link: name.clone(),
            source,
        };
        let addr = listener.local_addr().map_err(serve_err)?;
        let listener = TcpListener::from_std(listener).map_err(serve_err)?;
        let (state, rx) = watch::channel(State::default());
        let open = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(accept_loop(listener, upstream, rx, open.clone()));
        Ok(LinkProxy {
            name,
            addr,
            upstream,
            state,
            open,
            accept,
        })
    }

    /// The link's name, e.g. `n0->n2`.
    pub fn name(&self) -> &str {
        &self.name
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
        self.state.borrow().rules
    }

    /// Connections open through the proxy right now.
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
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        // The listener closes with the accept task; the connections see the
        // state channel close and end.
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    state: watch::Receiver<State>,
    open: Arc<AtomicUsize>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors or similar: do not spin.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let s = *state.borrow();
        if s.rules.cut == Some(Cut::Reset) {
            reset(&client);
            continue;
        }
        let _ = client.set_nodelay(true);
        let open = open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        let state = state.clone();
        tokio::spawn(async move {
            serve(client, upstream, state).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Closes a socket with an RST instead of a FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Why a connection must end now, if it must.
fn must_end(s: &State, opened: &State, lost: bool, held: bool) -> bool {
    s.resets != opened.resets || (s.heals != opened.heals && (lost || held))
}

/// Waits until the connection must be reset (or the proxy is gone).
async fn until_reset(
    mut state: watch::Receiver<State>,
    opened: State,
    lost: Arc<AtomicBool>,
    held: bool,
) {
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
            return;
        }
    }
}

/// One connection: connect upstream and copy both ways under the rules.
async fn serve(mut client: TcpStream, upstream: SocketAddr, state: watch::Receiver<State>) {
    let opened = *state.borrow();
    let lost = Arc::new(AtomicBool::new(false));
    if opened.rules.cut == Some(Cut::Blackhole) {
        // Opened during a blackhole: it never reached the upstream. Swallow
        // what it sends until the heal, then reset it.
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
            _ = until_reset(state.clone(), opened, lost.clone(), true) => {}
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
        let up = pump(cr, sw, state.clone(), lost.clone());
        let down = pump(sr, cw, state.clone(), lost.clone());
        tokio::select! {
            _ = async { tokio::join!(up, down) } => false,
            _ = until_reset(state, opened, lost, false) => true,
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
