//! The runtime that drives the pure Paxos core with real time, disk and
//! network.
//!
//! # Tasks
//! - **The core task** owns the [`Replica`]. It is fed through one bounded
//!   channel ([`Input`]: peer messages, client commands with a reply channel,
//!   status queries) and a tick interval. After each wake-up it drains every
//!   input already queued (so concurrent client commands land in one batch,
//!   one slot) and then takes the core's [`Ready`](crate::paxos::Ready).
//! - **The storage thread** receives those Readys in order. It merges all
//!   Readys that queued up while the previous fsync ran into one
//!   [`WriteBatch`] (group commit), makes it durable with one fsync, and only
//!   then sends their messages and answers their clients. Because it is a
//!   single FIFO, no message ever leaves before the writes of its own and
//!   every earlier Ready are on disk, while the core keeps working during
//!   the fsync (pipelining). The messages that depend on no write
//!   (`Ready::send_now`: the coordinator's accepts, chosen announcements and
//!   heartbeats) leave from the core task at once, so the followers fsync
//!   an accepted value while the coordinator fsyncs it; the coordinator's
//!   own vote comes back from the storage thread, after its fsync, on a
//!   channel of its own. Client replies do not wait for it when there
//!   are several replicas: a reply depends only on votes a majority already
//!   made durable (see [`Ready`](crate::paxos::Ready)), so the core task
//!   answers at once instead of behind the next group's fsync.
//! - **Back-pressure.** The channel to the storage thread is bounded
//!   ([`MAX_QUEUED_READYS`]). A Ready that finds it full waits in the core
//!   task, in order, and while one waits the disk is behind: new client
//!   commands are refused at once with `DiskBehind` (surely not applied)
//!   instead of queueing without bound.
//! - **Peer tasks** ([`crate::peer`]) carry messages to the other replicas.
//!
//! A storage error is fatal: a replica that cannot make its promises durable
//! must not answer anyone, so the process logs the error and exits.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::convert;
use crate::kv::Command;
use crate::paxos::{self, Message, ReadMode, Replica, ReplicaId, Reply, RequestId, Role};
use crate::peer::Peers;
use crate::shutdown::Shutdown;
use crate::storage::{Storage, StorageOptions, WriteBatch};

/// Slots a coordinator keeps in flight (proposed, not yet chosen).
///
/// Measured with `examples/loadgen` (3 replicas, 64 clients, 100-byte PUTs,
/// 2 shared cores): 16 slots in flight gave ~3 commands per slot and
/// 5-6k ops/s with p99 45-65 ms; 1-2 slots gave ~15-25 commands per slot and
/// 8-11k ops/s with p99 11-18 ms. Every slot costs a round of messages,
/// fsyncs and wake-ups on every replica, so on a CPU-bound machine bigger
/// batches beat deeper pipelines; two slots keep the disk and the network
/// busy while the next batch forms.
pub const MAX_INFLIGHT_SLOTS: u64 = 2;
/// Most client commands in one slot.
pub const MAX_BATCH: usize = 256;
/// Readys queued for the storage thread before the core stops taking
/// client commands (back-pressure: they are refused with
/// [`RequestError::DiskBehind`](paxos::RequestError::DiskBehind), surely not
/// applied). One group commit takes them all (`MAX_GROUP`).
pub const MAX_QUEUED_READYS: usize = MAX_GROUP;

/// Everything the runtime needs to start a replica.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This replica's index in `replicas`.
    pub id: ReplicaId,
    /// Paxos addresses of all replicas, in priority order.
    pub replicas: Vec<String>,
    /// The address this replica connects to in order to reach each replica,
    /// indexed like `replicas`: normally the same, but `--peer-dial` may send
    /// the connection elsewhere (e.g. through the harness's link proxy). The
    /// replicas' identities stay the positions in `replicas`.
    pub dial: Vec<String>,
    /// Client-facing address of this replica.
    pub my_addr: String,
    /// Replica-facing address of this replica.
    pub my_paxos: String,
    /// Directory of the durable state.
    pub data_dir: PathBuf,
    /// Initial acceptor drop probability.
    pub fail_rate: f64,
    /// How GETs are answered.
    pub read_mode: ReadMode,
    /// Interval between core ticks.
    pub tick: Duration,
    /// Core timing and batching settings.
    pub core: paxos::Config,
    /// fsync files and directories; off only with `--unsafe-no-fsync`
    /// (nothing is then durable, see [`crate::storage`]).
    pub sync: bool,
}

/// One input of the core task.
#[derive(Debug)]
pub enum Input {
    /// A message from another replica (already validated and past fail_rate).
    Peer {
        /// Sender.
        from: ReplicaId,
        /// The message.
        msg: Message,
    },
    /// A client command; the answer arrives on `reply` once durable.
    Client {
        /// The command.
        command: Command,
        /// Where to send the answer.
        reply: oneshot::Sender<Reply>,
    },
    /// A status query, answered at once.
    Status {
        /// Where to send the answer.
        reply: oneshot::Sender<NodeStatus>,
    },
}

/// What the Status RPC reports, taken from the core.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// The core's view.
    pub core: paxos::Status,
    /// Keys in the state machine.
    pub keys: u64,
}

/// State shared by the runtime's tasks and the gRPC services.
#[derive(Debug)]
pub struct Shared {
    /// This replica's index.
    pub id: ReplicaId,
    /// Number of replicas.
    pub cluster_size: usize,
    /// Paxos addresses of all replicas.
    pub replicas: Vec<String>,
    /// Where to connect to reach each replica ([`NodeConfig::dial`]).
    pub dial: Vec<String>,
    /// This replica's client address.
    pub my_addr: String,
    /// This replica's Paxos address.
    pub my_paxos: String,
    /// Read mode, for the status report.
    pub read_mode: ReadMode,
    /// Tick interval (used as the retry pause of waiting requests).
    pub tick: Duration,
    /// Acceptor drop probability, as `f64` bits (changed at run time).
    fail_rate: AtomicU64,
    /// Client addresses of the other replicas, learned from their envelopes.
    client_addrs: Mutex<Vec<String>>,
    /// The coordinator this replica follows, or [`NO_REPLICA`]
    /// ([`Shared::coordinator_to_forward_to`]).
    follows: AtomicUsize,
}

/// [`Shared::follows`] when this replica follows no one.
const NO_REPLICA: usize = usize::MAX;

impl Shared {
    /// The current acceptor drop probability.
    pub fn fail_rate(&self) -> f64 {
        f64::from_bits(self.fail_rate.load(Ordering::Relaxed))
    }

    /// Sets the drop probability and returns the previous one.
    pub fn set_fail_rate(&self, rate: f64) -> f64 {
        f64::from_bits(self.fail_rate.swap(rate.to_bits(), Ordering::Relaxed))
    }

    /// Records the client address replica `id` announced.
    pub fn learn_client_addr(&self, id: ReplicaId, addr: &str) {
        if let Ok(mut addrs) = self.client_addrs.lock() {
            if let Some(slot) = addrs.get_mut(id) {
                if slot != addr {
                    *slot = addr.to_string();
                }
            }
        }
    }

    /// Where a write that arrives here goes without a trip through the core:
    /// the coordinator this replica follows, as of the core task's last
    /// wake-up. `None` while this replica coordinates, campaigns, or knows
    /// no coordinator. The core would answer such a write `NotLeader`
    /// naming the same replica; a stale answer costs what a stale hint
    /// always did (the forwarded attempt is refused and retried).
    pub fn coordinator_to_forward_to(&self) -> Option<ReplicaId> {
        let id = self.follows.load(Ordering::Relaxed);
        (id != NO_REPLICA).then_some(id)
    }

    fn set_follows(&self, coordinator: Option<ReplicaId>) {
        self.follows
            .store(coordinator.unwrap_or(NO_REPLICA), Ordering::Relaxed);
    }

    /// The client address of replica `id`, if known.
    pub fn client_addr(&self, id: ReplicaId) -> Option<String> {
        if id == self.id {
            return Some(self.my_addr.clone());
        }
        let addrs = self.client_addrs.lock().ok()?;
        addrs.get(id).filter(|a| !a.is_empty()).cloned()
    }
}

/// Why a command could not be handed to the core.
#[derive(Debug, thiserror::Error)]
#[error("the replica is shutting down")]
pub struct NodeStopped;

/// A cheap, cloneable handle to a running node.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    tx: mpsc::Sender<Input>,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Outbound peer channels.
    pub peers: Arc<Peers>,
    /// The node's shutdown flag.
    pub shutdown: Shutdown,
}

impl NodeHandle {
    /// Hands a command to the core and waits for its answer.
    pub async fn submit(&self, command: Command) -> Result<Reply, NodeStopped> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Input::Client { command, reply })
            .await
            .map_err(|_| NodeStopped)?;
        rx.await.map_err(|_| NodeStopped)
    }

    /// Queries the core's status.
    pub async fn status(&self) -> Result<NodeStatus, NodeStopped> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Input::Status { reply })
            .await
            .map_err(|_| NodeStopped)?;
        rx.await.map_err(|_| NodeStopped)
    }

    /// Delivers a peer message to the core (waits if the core is busy).
    pub async fn deliver(&self, from: ReplicaId, msg: Message) -> Result<(), NodeStopped> {
        self.tx
            .send(Input::Peer { from, msg })
            .await
            .map_err(|_| NodeStopped)
    }
}

/// Errors starting a node.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be opened or recovered.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// What storage holds does not decode.
    #[error("data directory holds undecodable state: {0}")]
    Decode(#[from] convert::ConvertError),
    /// The core refused the configuration.
    #[error("invalid configuration: {0}")]
    Config(#[from] paxos::ConfigError),
    /// A thread could not be started.
    #[error("cannot start the storage thread: {0}")]
    Thread(std::io::Error),
}

/// A Ready on its way to the storage thread: writes first, then effects.
struct Job {
    writes: Vec<paxos::StorageWrite>,
    messages: Vec<(ReplicaId, Message)>,
    replies: Vec<(oneshot::Sender<Reply>, Reply)>,
}

/// A started node: its handle and the tasks to wait for when stopping.
#[derive(Debug)]
pub struct Started {
    /// Handle for the services.
    pub handle: NodeHandle,
    /// The core task; ends after the shutdown flag triggers.
    pub core: tokio::task::JoinHandle<()>,
    /// The storage thread; ends once the core task has ended and every
    /// queued write is durable (so a clean stop leaves no torn record).
    pub storage: std::thread::JoinHandle<()>,
}

/// Opens storage, restores the core and starts the core task, the storage
/// thread and the peer tasks.
pub fn start(config: NodeConfig, shutdown: Shutdown) -> Result<Started, StartError> {
    let n = config.replicas.len();
    if !config.sync {
        tracing::warn!(
            "--unsafe-no-fsync: nothing is fsynced; a crash or power failure can lose \
             acknowledged writes, and a damaged data directory is reset to empty"
        );
    }
    let (storage, durable, report) = Storage::open(
        &config.data_dir,
        StorageOptions {
            sync: config.sync,
            ..StorageOptions::default()
        },
    )?;
    if let Some(torn) = &report.torn_tail {
        tracing::warn!(
            file = %torn.file.display(),
            offset = torn.offset,
            bytes = torn.bytes,
            problem = %torn.problem,
            "dropped a torn last WAL record (a crash interrupted its write; a vote is fsynced \
             before it is sent and chosen entries are learned again, so nothing relied on it)"
        );
    }
    if let Some(version) = report.upgraded_from {
        tracing::info!(version, "upgraded the data directory to the current format");
    }
    if let Some(damage) = &report.reset_after_damage {
        tracing::error!(
            %damage,
            "--unsafe-no-fsync: the data directory was damaged and has been reset to empty; \
             this replica has forgotten its votes"
        );
    }
    let restored = convert::persistent_from_storage(&durable, n)?;
    tracing::info!(
        dir = %config.data_dir.display(),
        records = report.records,
        promised = %restored.promised,
        accepted = restored.accepted.len(),
        chosen = restored.chosen.len(),
        snapshot = restored.snapshot_slot(),
        "recovered durable state"
    );
    let mut core_config = config.core.clone();
    core_config.read_mode = config.read_mode;
    let mut replica = Replica::new(config.id, n, core_config, restored)?;
    // Distinct for every start of this process (follower reads, see
    // `Replica::set_incarnation`).
    let incarnation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    replica.set_incarnation(incarnation);

    let shared = Arc::new(Shared {
        id: config.id,
        cluster_size: n,
        replicas: config.replicas.clone(),
        dial: config.dial.clone(),
        my_addr: config.my_addr.clone(),
        my_paxos: config.my_paxos.clone(),
        read_mode: config.read_mode,
        tick: config.tick,
        fail_rate: AtomicU64::new(config.fail_rate.to_bits()),
        client_addrs: Mutex::new(vec![String::new(); n]),
        follows: AtomicUsize::new(NO_REPLICA),
    });
    let peers = Arc::new(Peers::start(shared.clone(), shutdown.clone()));

    let (job_tx, job_rx) = mpsc::channel::<Job>(MAX_QUEUED_READYS);
    // The coordinator's own votes, back from the storage thread once durable.
    let (own_tx, own_rx) = mpsc::unbounded_channel();
    let storage_peers = peers.clone();
    let me = config.id;
    let storage = std::thread::Builder::new()
        .name("storage".into())
        .spawn(move || storage_thread(storage, job_rx, storage_peers, me, own_tx))
        .map_err(StartError::Thread)?;

    let (tx, rx) = mpsc::channel(65_536);
    let core = tokio::spawn(core_task(
        replica,
        Inputs { rx, own: own_rx },
        job_tx,
        shared.clone(),
        peers.clone(),
        config.tick,
        shutdown.clone(),
    ));
    Ok(Started {
        handle: NodeHandle {
            tx,
            shared,
            peers,
            shutdown,
        },
        core,
        storage,
    })
}

/// Most inputs handled before a Ready is taken (bounds the latency a flood of
/// inputs can add to the first of them).
const MAX_DRAIN: usize = 4096;

/// What the core task listens to besides its tick.
struct Inputs {
    /// Peer messages, client commands, status queries.
    rx: mpsc::Receiver<Input>,
    /// Messages the core sent itself (its own votes), once durable.
    own: mpsc::UnboundedReceiver<Message>,
}

async fn core_task(
    mut replica: Replica,
    inputs: Inputs,
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    peers: Arc<Peers>,
    tick: Duration,
    shutdown: Shutdown,
) {
    let Inputs { mut rx, mut own } = inputs;
    let mut queue = StorageQueue::new(jobs.clone());
    let me = replica.id();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waiting: HashMap<RequestId, oneshot::Sender<Reply>> = HashMap::new();
    let mut next_request: RequestId = 1;
    let mut last_role = replica.role();
    let mut last_leader = replica.leader();
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = interval.tick() => {
                replica.tick();
                cancel_abandoned(&mut replica, &mut waiting);
            }
            input = rx.recv() => match input {
                None => break,
                Some(input) => {
                    handle(&mut replica, input, &mut waiting, &mut next_request, queue.behind())
                }
            },
            Some(msg) = own.recv() => step_own(&mut replica, me, msg),
            permit = jobs.reserve(), if queue.behind().is_some() => match permit {
                Ok(permit) => queue.send_first(permit),
                Err(_) => {
                    tracing::error!("storage thread is gone; stopping");
                    break;
                }
            },
        }
        while let Ok(msg) = own.try_recv() {
            step_own(&mut replica, me, msg);
        }
        for _ in 0..MAX_DRAIN {
            match rx.try_recv() {
                Ok(input) => handle(
                    &mut replica,
                    input,
                    &mut waiting,
                    &mut next_request,
                    queue.behind(),
                ),
                Err(_) => break,
            }
        }
        let ready = replica.ready();
        if (replica.role(), replica.leader()) != (last_role, last_leader) {
            last_role = replica.role();
            last_leader = replica.leader();
            shared.set_follows(last_leader.filter(|_| last_role == Role::Follower));
            let st = replica.status();
            tracing::info!(
                role = %st.role,
                leader = ?st.leader,
                promised = %st.promised,
                ballot = ?st.own_ballot.map(|b| b.to_string()),
                commit = st.commit_index,
                "role change"
            );
        }
        if ready.is_empty() {
            continue;
        }
        // Accepts, chosen announcements and heartbeats wait for no write:
        // the followers fsync while we do.
        peers.send_all(&ready.send_now);
        let mut replies: Vec<_> = ready
            .replies
            .into_iter()
            .filter_map(|(id, reply)| waiting.remove(&id).map(|tx| (tx, reply)))
            .collect();
        // With more than one replica a reply never depends on this Ready's
        // writes (see `paxos::Ready`): it leaves now instead of behind the
        // next fsync.
        if replica.replica_count() > 1 {
            for (tx, reply) in replies.drain(..) {
                let _ = tx.send(reply);
            }
        }
        if ready.persist.is_empty() && ready.messages.is_empty() && replies.is_empty() {
            continue;
        }
        let job = Job {
            writes: ready.persist,
            messages: ready.messages,
            replies,
        };
        if queue.push(job).is_err() {
            tracing::error!("storage thread is gone; stopping");
            break;
        }
    }
    // A clean stop writes what still waits for the disk too.
    for job in queue.backlog.drain(..) {
        if jobs.send(job).await.is_err() {
            break;
        }
    }
    tracing::debug!("core task stopped");
}

/// The core's end of the bounded channel to the storage thread. A Ready
/// that does not fit waits here, in order (it cannot be dropped: the core
/// already counts on its writes), and while any waits the disk is behind
/// and client commands are refused rather than queued without bound.
struct StorageQueue {
    tx: mpsc::Sender<Job>,
    backlog: VecDeque<Job>,
}

impl StorageQueue {
    fn new(tx: mpsc::Sender<Job>) -> Self {
        StorageQueue {
            tx,
            backlog: VecDeque::new(),
        }
    }

    /// Queues `job` behind the waiting ones. Err: the storage thread is gone.
    fn push(&mut self, job: Job) -> Result<(), NodeStopped> {
        self.backlog.push_back(job);
        while let Some(job) = self.backlog.pop_front() {
            match self.tx.try_send(job) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(job)) => {
                    self.backlog.push_front(job);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(NodeStopped),
            }
        }
        Ok(())
    }

    /// Hands the oldest waiting Ready over, into the room `permit` holds.
    fn send_first(&mut self, permit: mpsc::Permit<'_, Job>) {
        if let Some(job) = self.backlog.pop_front() {
            permit.send(job);
        }
    }

    /// How many Readys wait for room, if any do (the disk is behind).
    fn behind(&self) -> Option<usize> {
        (!self.backlog.is_empty()).then_some(self.backlog.len())
    }
}

/// Drop the requests whose client is gone (its deadline passed or it
/// cancelled the RPC: the receiving end of the reply channel is closed), so
/// that the coordinator does not propose commands nobody waits for.
fn cancel_abandoned(
    replica: &mut Replica,
    waiting: &mut HashMap<RequestId, oneshot::Sender<Reply>>,
) {
    let gone: BTreeSet<RequestId> = waiting
        .iter()
        .filter(|(_, tx)| tx.is_closed())
        .map(|(id, _)| *id)
        .collect();
    if gone.is_empty() {
        return;
    }
    for id in &gone {
        waiting.remove(id);
    }
    let dropped = replica.cancel(&gone);
    if dropped > 0 {
        tracing::debug!(dropped, "dropped queued requests whose client is gone");
    }
}

/// Hands the core a message it sent itself, now durable.
fn step_own(replica: &mut Replica, me: ReplicaId, msg: Message) {
    if let Err(e) = replica.step(me, msg) {
        tracing::warn!(error = %e, "ignored an own message");
    }
}

fn handle(
    replica: &mut Replica,
    input: Input,
    waiting: &mut HashMap<RequestId, oneshot::Sender<Reply>>,
    next_request: &mut RequestId,
    disk_behind: Option<usize>,
) {
    match input {
        Input::Client { reply, .. } if disk_behind.is_some() => {
            let waiting = disk_behind.unwrap_or_default();
            let _ = reply.send(Err(paxos::RequestError::DiskBehind { waiting }));
        }
        Input::Peer { from, msg } => {
            let kind = msg.kind();
            if let Err(e) = replica.step(from, msg) {
                tracing::warn!(from, kind, error = %e, "ignored a bad peer message");
            }
        }
        Input::Client { command, reply } => {
            let id = *next_request;
            *next_request += 1;
            waiting.insert(id, reply);
            replica.submit(id, command);
        }
        Input::Status { reply } => {
            let _ = reply.send(NodeStatus {
                core: replica.status(),
                keys: replica.kv().len() as u64,
            });
        }
    }
}

/// Most Readys merged into one fsync.
const MAX_GROUP: usize = 1024;

fn storage_thread(
    mut storage: Storage,
    mut jobs: mpsc::Receiver<Job>,
    peers: Arc<Peers>,
    me: ReplicaId,
    own: mpsc::UnboundedSender<Message>,
) {
    while let Some(first) = jobs.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        let mut batch = WriteBatch::default();
        for job in &mut group {
            for w in std::mem::take(&mut job.writes) {
                batch.push(convert::write_into_storage(w));
            }
        }
        if let Err(e) = storage.write(batch) {
            // Answering anyone now could break a promise after a crash.
            tracing::error!(
                error = %e,
                "cannot make state durable (disk full or failing?); nothing that depends on it \
                 was sent; exiting"
            );
            std::process::exit(1);
        }
        for job in group {
            peers.send_all(&job.messages);
            for (to, msg) in job.messages {
                if to == me {
                    // The core task is gone when this fails: stopping.
                    let _ = own.send(msg);
                }
            }
            for (tx, reply) in job.replies {
                let _ = tx.send(reply);
            }
        }
    }
    tracing::debug!("storage thread stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Op;
    use crate::paxos::{Ballot, PersistentState, RequestError, StorageWrite};

    /// A Ready whose one write tells which it was.
    fn job(i: u64) -> Job {
        Job {
            writes: vec![StorageWrite::Promise(Ballot {
                round: i,
                replica: 0,
            })],
            messages: Vec::new(),
            replies: Vec::new(),
        }
    }

    fn which(job: &Job) -> u64 {
        match job.writes[0] {
            StorageWrite::Promise(b) => b.round,
            _ => unreachable!(),
        }
    }

    #[tokio::test]
    async fn a_disk_that_is_behind_refuses_client_commands_and_keeps_every_ready_in_order() {
        let (tx, mut rx) = mpsc::channel::<Job>(2);
        let mut queue = StorageQueue::new(tx.clone());
        for i in 1..=5 {
            queue.push(job(i)).unwrap();
        }
        // Two fit in the channel; three wait in the core, none is lost.
        assert_eq!(queue.behind(), Some(3));
        // Meanwhile a client command is refused at once, surely not
        // applied, and the core never sees it.
        let mut replica = Replica::new(0, 3, paxos::Config::default(), PersistentState::default())
            .expect("valid config");
        let mut waiting = HashMap::new();
        let mut next_request = 1;
        let (reply, answer) = oneshot::channel();
        let command = Command {
            client_id: 1,
            seq: 1,
            op: Op::Put {
                key: "k".into(),
                value: "v".into(),
            },
        };
        handle(
            &mut replica,
            Input::Client { command, reply },
            &mut waiting,
            &mut next_request,
            queue.behind(),
        );
        assert_eq!(
            answer.await.unwrap(),
            Err(RequestError::DiskBehind { waiting: 3 })
        );
        assert!(waiting.is_empty());
        assert!(replica.ready().is_empty(), "the core saw nothing");
        // The storage thread takes the first two; the waiting ones follow
        // as room appears, in order.
        let mut seen = Vec::new();
        for _ in 0..2 {
            seen.push(which(&rx.recv().await.unwrap()));
        }
        while queue.behind().is_some() {
            let permit = tx.reserve().await.unwrap();
            queue.send_first(permit);
            seen.push(which(&rx.recv().await.unwrap()));
        }
        assert_eq!(seen, vec![1, 2, 3, 4, 5]);
        // Caught up: commands are taken again.
        let (reply, _answer) = oneshot::channel();
        let command = Command {
            client_id: 1,
            seq: 1,
            op: Op::Get { key: "k".into() },
        };
        handle(
            &mut replica,
            Input::Client { command, reply },
            &mut waiting,
            &mut next_request,
            queue.behind(),
        );
        assert_eq!(waiting.len(), 1);
    }
}
