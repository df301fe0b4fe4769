//! Replica-to-replica transport: outbound peer channels and the `Paxos` gRPC
//! service.
//!
//! # Outbound
//! Every other replica gets its own task and its own queue, bounded in
//! messages and in bytes
//! ([`Peers::send`] never blocks: when a peer's queue is full — the peer is
//! slow, paused or dead — the message is dropped, which Paxos tolerates). The
//! task keeps one `Deliver` stream open to the peer and writes everything
//! queued into it as one [`Envelope`](pb::Envelope) per wake-up. Messages
//! are queued encoded ([`crate::envelope`]): a message for several peers
//! ([`Peers::send_all`]) is encoded once and its bytes shared. When the
//! stream breaks (the peer died or restarted) it reconnects with exponential
//! backoff, discarding what queued up meanwhile (stale by then; the core
//! re-sends what matters). HTTP/2 keep-alives detect a peer that stopped
//! answering without closing its socket (SIGSTOP).
//!
//! # Inbound
//! `PaxosService::deliver` validates each envelope (sender in range and not
//! us, addressed to us, same cluster size), decodes each message
//! ([`crate::convert`]), drops acceptor-bound messages with probability
//! `fail_rate`, and hands the rest to the core task. Forwarded client
//! requests and their answers ([`crate::forward`]) travel on the same
//! streams and are handled here, outside the core.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paxoskv::kv as pkv;
use paxoskv::paxos as pb;
use pb::paxos_client::PaxosClient;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::convert;
use crate::envelope::{self, Encoded, EnvelopeCodec, OutEnvelope};
use crate::node::{NodeHandle, Shared};
use crate::paxos::{Message, ReplicaId};
use crate::service::Executor;
use crate::shutdown::Shutdown;

/// Largest message accepted on the Paxos port (batches of large values and
/// snapshots travel there).
pub const MAX_PAXOS_MESSAGE: usize = 256 << 20;
/// Messages queued per peer before new ones are dropped (a peer that far
/// behind is caught up by the core anyway; the bound also caps memory).
const PEER_QUEUE: usize = 1024;
/// Messages per envelope.
const MAX_ENVELOPE_MESSAGES: usize = 512;
/// Encoded bytes queued per peer before new messages are dropped: bounds
/// memory when a peer is slow, and the work spent on messages it would get
/// too late (e.g. repeated catch-up batches while it is far behind).
const MAX_QUEUED_BYTES: usize = 16 << 20;
/// An envelope stops taking more messages once it holds this many bytes
/// (one message alone may be larger, up to [`MAX_PAXOS_MESSAGE`]).
const MAX_ENVELOPE_BYTES: usize = 4 << 20;
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Builds the endpoint used for every connection to the peer at `addr`.
fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_millis(500))
        .keep_alive_timeout(Duration::from_millis(1500))
        .keep_alive_while_idle(true))
}

/// A message in a peer queue.
type Queued = Encoded;

/// The sending side of one peer's queue.
#[derive(Debug)]
struct PeerQueue {
    tx: mpsc::Sender<Queued>,
    /// Encoded bytes waiting in the queue (bounded by [`MAX_QUEUED_BYTES`]).
    bytes: Arc<AtomicUsize>,
}

/// Outbound channels to every other replica.
#[derive(Debug)]
pub struct Peers {
    me: ReplicaId,
    queues: Vec<Option<PeerQueue>>,
    channels: Vec<Option<Channel>>,
    dropped: AtomicU64,
}

impl Peers {
    /// Starts one outbound task per other replica. Must run inside a tokio
    /// runtime.
    pub fn start(shared: Arc<Shared>, shutdown: Shutdown) -> Peers {
        let mut queues = Vec::new();
        let mut channels = Vec::new();
        for (to, addr) in shared.dial.iter().enumerate() {
            if to == shared.id {
                queues.push(None);
                channels.push(None);
                continue;
            }
            let channel = match endpoint(addr) {
                Ok(e) => e.connect_lazy(),
                Err(e) => {
                    tracing::error!(peer = to, addr, error = %e, "bad peer address");
                    queues.push(None);
                    channels.push(None);
                    continue;
                }
            };
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            let bytes = Arc::new(AtomicUsize::new(0));
            tokio::spawn(outbound(
                shared.clone(),
                to,
                channel.clone(),
                Inbox {
                    rx,
                    bytes: bytes.clone(),
                },
                shutdown.clone(),
            ));
            queues.push(Some(PeerQueue { tx, bytes }));
            channels.push(Some(channel));
        }
        Peers {
            me: shared.id,
            queues,
            channels,
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues `msg` for replica `to`; drops it if that peer's queue is full.
    /// Never blocks.
    pub fn send(&self, to: ReplicaId, msg: &Message) {
        if to == self.me {
            return;
        }
        self.enqueue(to, || encode(msg));
    }

    /// Queues each message for its replica, like [`Peers::send`], but
    /// encodes a message only once for a run of equal messages (a
    /// broadcast: the core lists it once per peer, one after the other).
    /// Messages to this replica itself are skipped.
    pub fn send_all(&self, messages: &[(ReplicaId, Message)]) {
        let mut last: Option<(&Message, Encoded)> = None;
        for (to, msg) in messages {
            if *to == self.me {
                continue;
            }
            self.enqueue(*to, || match &last {
                Some((m, bytes)) if *m == msg => bytes.clone(),
                _ => {
                    let bytes = encode(msg);
                    last = Some((msg, bytes.clone()));
                    bytes
                }
            });
        }
    }

    /// Queues an already encoded message (a forwarded client request or its
    /// answer, see [`crate::forward`]) for replica `to`. Returns false if it
    /// was dropped (full queue, or no such peer). Never blocks.
    pub fn send_pb(&self, to: ReplicaId, msg: pb::PaxosMessage) -> bool {
        to != self.me && self.enqueue(to, || envelope::encode(&msg))
    }

    /// Queues the message `encode` builds, unless the queue is full.
    fn enqueue(&self, to: ReplicaId, encode: impl FnOnce() -> Encoded) -> bool {
        let Some(Some(q)) = self.queues.get(to) else {
            return false;
        };
        // A full queue (in bytes) drops the message before paying for its
        // encoding; an empty queue always takes one, however large.
        let sent = q.bytes.load(Ordering::Relaxed) < MAX_QUEUED_BYTES && {
            let m = encode();
            let len = m.len();
            q.bytes.fetch_add(len, Ordering::Relaxed);
            match q.tx.try_send(m) {
                Ok(()) => true,
                Err(_) => {
                    q.bytes.fetch_sub(len, Ordering::Relaxed);
                    false
                }
            }
        };
        if !sent {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::debug!(peer = to, dropped = n, "peer queue full; dropping messages");
            }
        }
        sent
    }

    /// A client for the `Paxos` service of replica `to` (for forwarding).
    pub fn client(&self, to: ReplicaId) -> Option<PaxosClient<Channel>> {
        let ch = self.channels.get(to)?.clone()?;
        Some(
            PaxosClient::new(ch)
                .max_decoding_message_size(MAX_PAXOS_MESSAGE)
                .max_encoding_message_size(MAX_PAXOS_MESSAGE),
        )
    }
}

/// The receiving side of one peer's queue; keeps the byte count current.
struct Inbox {
    rx: mpsc::Receiver<Queued>,
    bytes: Arc<AtomicUsize>,
}

impl Inbox {
    async fn recv(&mut self) -> Option<Queued> {
        let q = self.rx.recv().await?;
        self.bytes.fetch_sub(q.len(), Ordering::Relaxed);
        Some(q)
    }

    fn try_recv(&mut self) -> Option<Queued> {
        let q = self.rx.try_recv().ok()?;
        self.bytes.fetch_sub(q.len(), Ordering::Relaxed);
        Some(q)
    }
}

/// Keeps a `Deliver` stream open to peer `to` and pumps its queue into it.
async fn outbound(
    shared: Arc<Shared>,
    to: ReplicaId,
    channel: Channel,
    mut queue: Inbox,
    shutdown: Shutdown,
) {
    let mut backoff = BACKOFF_MIN;
    let mut connected_before = false;
    loop {
        let (tx, rx) = mpsc::channel::<OutEnvelope>(4);
        let started = Instant::now();
        let call = deliver(channel.clone(), rx);
        tokio::pin!(call);
        let mut sent = 0u64;
        let outcome: Result<(), Status> = loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                r = &mut call => break r.map(|_| ()),
                m = queue.recv() => {
                    let Some(m) = m else { return };
                    let mut bytes = m.len();
                    let mut messages = vec![m];
                    while messages.len() < MAX_ENVELOPE_MESSAGES && bytes < MAX_ENVELOPE_BYTES {
                        match queue.try_recv() {
                            Some(m) => {
                                bytes += m.len();
                                messages.push(m);
                            }
                            None => break,
                        }
                    }
                    let env = OutEnvelope {
                        from: shared.id as u32,
                        to: to as u32,
                        cluster_size: shared.cluster_size as u32,
                        sender_addr: shared.my_addr.clone(),
                        messages,
                    };
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        r = &mut call => break r.map(|_| ()),
                        res = tx.send(env) => if res.is_err() {
                            break Ok(());
                        },
                    }
                    sent += 1;
                    if sent == 1 && !connected_before {
                        connected_before = true;
                        tracing::info!(peer = to, "connected to peer");
                    }
                }
            }
        };
        match &outcome {
            Err(e) if sent > 0 => {
                tracing::info!(peer = to, code = ?e.code(), error = %e.message(), "peer stream broke; reconnecting")
            }
            Err(e) => tracing::debug!(peer = to, code = ?e.code(), "cannot reach peer"),
            Ok(()) => tracing::debug!(peer = to, "peer closed the stream"),
        }
        if started.elapsed() > Duration::from_secs(2) {
            backoff = BACKOFF_MIN;
        }
        // Discard what queues up while disconnected: it would be stale.
        let wake = tokio::time::Instant::now() + backoff;
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep_until(wake) => break,
                m = queue.recv() => if m.is_none() { return },
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Encodes a core message for the peer queues.
fn encode(msg: &Message) -> Encoded {
    envelope::encode(&convert::message_to_pb(msg))
}

/// One `Paxos.Deliver` call to the peer behind `channel`, sending what
/// arrives on `envelopes` (the generated client's `deliver`, with
/// [`EnvelopeCodec`] for messages encoded beforehand).
async fn deliver(
    channel: Channel,
    envelopes: mpsc::Receiver<OutEnvelope>,
) -> Result<Response<pb::DeliverSummary>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(MAX_PAXOS_MESSAGE)
        .max_encoding_message_size(MAX_PAXOS_MESSAGE);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("peer channel not ready: {e}")))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/paxoskv.paxos.Paxos/Deliver");
    grpc.client_streaming(
        Request::new(ReceiverStream::new(envelopes)),
        path,
        EnvelopeCodec,
    )
    .await
}

/// True for messages addressed to this replica in its acceptor role: the
/// ones `fail_rate` drops.
fn acceptor_bound(m: &Message) -> bool {
    matches!(
        m,
        Message::PreVote { .. }
            | Message::Prepare { .. }
            | Message::Accept { .. }
            | Message::Heartbeat { .. }
    )
}

/// The `Paxos` gRPC service (served on `my_paxos`).
#[derive(Clone, Debug)]
pub struct PaxosService {
    node: NodeHandle,
    executor: Arc<Executor>,
}

impl PaxosService {
    /// A service feeding `node`; forwarded client requests go to `executor`.
    pub fn new(node: NodeHandle, executor: Arc<Executor>) -> Self {
        PaxosService { node, executor }
    }

    /// The tonic server wrapper with the Paxos size limits.
    pub fn into_server(self) -> pb::paxos_server::PaxosServer<Self> {
        pb::paxos_server::PaxosServer::new(self)
            .max_decoding_message_size(MAX_PAXOS_MESSAGE)
            .max_encoding_message_size(MAX_PAXOS_MESSAGE)
    }

    /// Executes a request that replica `from` forwarded on its stream and
    /// queues the answer back to it (see [`crate::forward`]).
    fn execute_forwarded(&self, from: ReplicaId, req: pb::ForwardRequest) {
        let executor = self.executor.clone();
        let peers = self.node.peers.clone();
        let deadline = tokio::time::Instant::now() + crate::forward::budget(&req);
        let id = req.id;
        let Some(mut request) = req.request else {
            let answer = Err(Status::invalid_argument(
                "forwarded request without a request",
            ));
            peers.send_pb(from, crate::forward::reply_for(id, answer));
            return;
        };
        request.forwarded = true;
        tokio::spawn(async move {
            let answer = executor.execute(request, deadline).await;
            // Dropped if the queue back is full: the follower times out.
            peers.send_pb(from, crate::forward::reply_for(id, answer));
        });
    }

    /// Checks an envelope's header; returns the sender.
    fn validate(&self, env: &pb::Envelope) -> Result<ReplicaId, Status> {
        let shared = &self.node.shared;
        if env.cluster_size as usize != shared.cluster_size {
            return Err(Status::invalid_argument(format!(
                "cluster size mismatch: sender has {}, this replica has {}",
                env.cluster_size, shared.cluster_size
            )));
        }
        let from = convert::replica_id(env.from as u64, shared.cluster_size)
            .map_err(|e| Status::invalid_argument(format!("sender: {e}")))?;
        if from == shared.id {
            return Err(Status::invalid_argument(
                "envelope claims to come from the receiving replica",
            ));
        }
        if env.to as usize != shared.id {
            return Err(Status::invalid_argument(format!(
                "envelope for replica {} delivered to replica {}",
                env.to, shared.id
            )));
        }
        Ok(from)
    }
}

type DeliverResult = Result<Response<pb::DeliverSummary>, Status>;

#[tonic::async_trait]
impl pb::paxos_server::Paxos for PaxosService {
    async fn deliver(&self, request: Request<Streaming<pb::Envelope>>) -> DeliverResult {
        let mut stream = request.into_inner();
        let mut envelopes = 0u64;
        let shutdown = self.node.shutdown.clone();
        loop {
            let env = tokio::select! {
                _ = shutdown.wait() => return Err(Status::unavailable("replica shutting down")),
                e = stream.message() => e?,
            };
            let Some(env) = env else { break };
            envelopes += 1;
            let from = self.validate(&env)?;
            if !env.sender_addr.is_empty() {
                self.node.shared.learn_client_addr(from, &env.sender_addr);
            }
            let fail_rate = self.node.shared.fail_rate();
            for m in env.messages {
                let m = match m.kind {
                    Some(pb::paxos_message::Kind::Forward(req)) => {
                        self.execute_forwarded(from, req);
                        continue;
                    }
                    Some(pb::paxos_message::Kind::ForwardReply(reply)) => {
                        self.executor.forwarder().on_reply(reply);
                        continue;
                    }
                    kind => pb::PaxosMessage { kind },
                };
                let msg = match convert::message_from_pb(m, self.node.shared.cluster_size) {
                    Ok(msg) => msg,
                    Err(e) => {
                        tracing::warn!(from, error = %e, "dropped an undecodable peer message");
                        continue;
                    }
                };
                if fail_rate > 0.0 && acceptor_bound(&msg) && rand::rng().random_bool(fail_rate) {
                    continue;
                }
                if self.node.deliver(from, msg).await.is_err() {
                    return Err(Status::unavailable("replica shutting down"));
                }
            }
        }
        Ok(Response::new(pb::DeliverSummary { envelopes }))
    }

    async fn forward(
        &self,
        request: Request<pkv::ExecuteRequest>,
    ) -> Result<Response<pkv::ExecuteReply>, Status> {
        let deadline = crate::service::request_deadline(request.metadata());
        let mut req = request.into_inner();
        req.forwarded = true;
        self.executor
            .execute(req, deadline)
            .await
            .map(Response::new)
    }
}
