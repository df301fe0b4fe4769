//! Deterministic simulation of a cluster under faults.
//!
//! One seed fixes everything: the network drops, duplicates (sometimes long
//! after the original), delays (with rare stragglers) and reorders messages,
//! keeping each link's messages that are due together in send order (each
//! link is a stream); partitions cut replicas off, and one-way cuts make a
//! replica deaf (it sends, hears nothing), mute, or break one direction of
//! one link; replicas crash (losing all that was not persisted, even half of
//! a `Ready`'s writes, and any snapshot or compaction that no checkpoint
//! holds yet: the runtime writes checkpoints in the background) and restart
//! from their disk; a crash may also lose durable WAL records beyond the
//! torn one, after which the replica refuses
//! to start and stays down (the storage rule; at most a minority per
//! schedule); replicas pause, and one that resumes handles the client
//! requests in its socket buffers before its backlog of peer messages;
//! replica clocks jitter (a tick skipped, two at once); acceptors fail
//! messages (`fail_rate`); a `Ready`'s writes reach the disk up to
//! `fsync_delay` ticks after it is taken, in order, its `send_now`
//! messages leave at once and its other messages after the writes (the
//! runtime's pipelined storage thread), so a crash loses every write not
//! yet durable. Clients send requests and get replies through the
//! same lossy network, to whichever replica they believe leads; they time
//! out and try the next replica, and may give up on a command (its outcome
//! stays unknown) and move on to their next sequence number. After the fault
//! phase everything heals and the run continues until every client command
//! completes and the replicas converge.
//!
//! Checked for every schedule:
//! - no two replicas apply different values at the same slot, and each one
//!   applies slots in order (so each applied sequence is a prefix of the
//!   longest);
//! - when a slot is first applied, a majority holds its value durably
//!   (accepted, chosen or under a snapshot);
//! - during faults: while a majority has been healthy (up, running,
//!   connected both ways, no fail_rate) for `leaderless_bound` ticks, some
//!   running replica leads;
//! - once faults heal, every submitted command completes within a bound, and
//!   all replicas converge to the same applied index and digest;
//! - every acknowledged write takes effect exactly once in the chosen log,
//!   with the result the client was told;
//! - reads (in quorum mode) are linearizable with respect to the chosen order
//!   and real time.
//!
//! Schedules mix five profiles: a broad one (2 in 8), one that hunts
//! stale reads (frequent pauses, clients sent anywhere), a crash storm, a
//! slow network (long delays and one-way cuts, timeouts scaled to match)
//! and, in 3 of 8, a returning coordinator (a Jepsen-style nemesis that
//! kills the coordinator and stops one process at a time for several
//! election timeouts, on a quiet network, mostly reads; and, as its long
//! operation, a [`Chain`]: followers asleep through their coordinator's
//! restart and re-election, whose late acks of the old ballot reach the
//! new one, then the coordinator asleep through its deposal and the
//! others' writes, woken to reads). The nemesis stops a coordinator at the
//! moment a majority has answered its latest heartbeat round, and places
//! clients around a stopped process (see [`Lure`]): some write to whoever
//! leads now, the others send their reads to the stopped one just before
//! it wakes; a process that resumes reads its sockets before its timer
//! fires nine times in ten. Message budgets are small (`max_message_bytes`
//! 400, in half of the schedules 120 or 60), so batches, catch-ups and promises are
//! cut by bytes (a promise's accepted values come in pieces) and snapshots
//! travel in chunks, which the network drops, duplicates and reorders. How
//! sharp this is was measured by breaking the core on purpose. Tests here
//! assert that the default schedules catch: a read confirmed by the
//! heartbeat round already sent when it arrived (planted bug
//! `ReadRoundNotAhead`), a read confirmed by heartbeat acks of an earlier
//! ballot (`AckOfAnyBallot`, which takes the chain), a follower read
//! served before the follower applied its read index
//! (`FollowerReadBeforeApplied`), a follower read that joins the
//! read-index request already in flight (`FollowerReadJoinsInFlight`), a coordinator that counts its own vote
//! before its fsync (`OwnVoteBeforeFsync`), an acceptor that forgets its promises,
//! local reads, a replica that votes again after losing durable records,
//! and (with tiny message budgets) a candidate that counts a promise cut
//! short by bytes as complete (`IncompletePromiseCounts`). Earlier measurements also caught adopting the lowest instead
//! of the highest accepted value, a read index at the commit index instead
//! of the last proposed slot, an acceptor accepting below its promise, and
//! not persisting promises or accepted values. `count_planted_hits` lists
//! the schedules that catch each planted bug, and checks that the correct
//! core passes each of them. Of the 2000 default schedules (and, in
//! brackets, of the windows from seeds 10, 20 and 30 million,
//! `PAXOS_SIM_FIRST_SEED`): `ReadRoundNotAhead` 22 (18, 20, 18),
//! `AckOfAnyBallot` 58 (49, 63, 49), `FollowerReadBeforeApplied` 32 (19,
//! 26, 22), `OwnVoteBeforeFsync` 34 (23, 32, 32), `IncompletePromiseCounts`
//! 13 (16, 20, 23), since the nemesis's last operation runs its course
//! before the heal, a woken process reads its sockets first more often and
//! lured clients send it more of their reads
//! (it was 14 (11, 8, 6), 24 (25, 25, 22), 26 (19, 23, 34), 33 (26, 23, 26),
//! 15 (16, 14, 18)); before the nemesis timed its stops and placed the
//! clients they were 1, 3, 11, 30 and 5 of the 2000. With follower
//! read-index requests one in flight at a time (merged after these), the
//! windows from the default seed and from 10 million give
//! `ReadRoundNotAhead` 20 and 23, `AckOfAnyBallot` 45 and 57,
//! `FollowerReadBeforeApplied` 27 and 22, `FollowerReadJoinsInFlight` 42
//! and 47, `OwnVoteBeforeFsync` 33 and 29, `IncompletePromiseCounts` 16
//! and 11. The scenario test
//! `heartbeat_acks_of_an_earlier_ballot_confirm_no_read` tells the
//! `AckOfAnyBallot` story step by step.
//!
//! A failure prints its seed and the command that replays it:
//! `PAXOS_SIM_SEED=<seed> cargo test -p server --lib paxos::sim::replay -- --ignored --nocapture`.
//! `PAXOS_SIM_SCHEDULES=<n>` runs more schedules per test.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::coordinator::PlantedBug;
use super::replica::AppliedEvent;
use super::types::majority;
use super::*;

/// The knobs of one schedule.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub replicas: usize,
    pub clients: usize,
    /// Ticks of faults before everything heals.
    pub fault_ticks: u64,
    /// Ticks allowed after healing for every command to complete and every
    /// replica to converge.
    pub heal_bound: u64,
    pub drop_p: f64,
    pub dup_p: f64,
    /// A duplicate arrives up to this many ticks after it was sent (a
    /// retransmission long after the original).
    pub dup_delay: u64,
    pub max_delay: u64,
    /// Per tick, probability of a crash, of a restart, of a pause, of a resume.
    pub crash_p: f64,
    pub restart_p: f64,
    pub pause_p: f64,
    pub resume_p: f64,
    /// A nemesis in the manner of Jepsen's: every `nemesis_every / 2` to
    /// `3 * nemesis_every / 2` ticks (0: never) it kills the coordinator
    /// (restarted by `restart_p`), or stops the coordinator or a follower
    /// (one process at a time) for 2 to 5 election timeouts (SIGSTOP: long
    /// enough for the others to change leadership behind its back). Its
    /// operations overlap: a follower sleeps through a coordinator's
    /// restart and re-election and wakes to answer the old ballot's
    /// heartbeats; a coordinator sleeps through its deposal and wakes to a
    /// read.
    pub nemesis_every: u64,
    /// Probability that a nemesis operation is its long one, a chain of
    /// stops and a kill (see [`Chain`]) rather than a single stop or kill.
    pub nemesis_chain_p: f64,
    /// Per tick, probability that a replica gets cut off (healing uses
    /// `resume_p`).
    pub partition_p: f64,
    /// Probability that a crash, pause or partition hits the coordinator
    /// rather than a random replica.
    pub target_leader_p: f64,
    /// Highest acceptor fail_rate drawn.
    pub max_fail_rate: f64,
    /// Probability that a client sends an attempt to a random replica
    /// instead of the one it believes leads.
    pub retarget_p: f64,
    /// Ticks before a client gives up an attempt and retries elsewhere.
    pub request_timeout: u64,
    /// Out of ten commands, how many are reads.
    pub read_tenths: u32,
    /// Attempts after which a client gives up a command (its outcome stays
    /// unknown) and moves on to its next sequence number; 0: never.
    pub give_up_after: u32,
    /// Per tick, probability of cutting one direction of one link, or of
    /// making a replica deaf (it sends but receives nothing) or mute.
    pub one_way_p: f64,
    /// Per tick and replica, probability that its clock skips a tick, and
    /// that it ticks twice.
    pub jitter_p: f64,
    /// Probability that a message is a straggler, delayed up to
    /// `long_delay` ticks (a stuck connection, a retransmission).
    pub long_delay_p: f64,
    pub long_delay: u64,
    /// Probability that a crash also loses durable records beyond the torn
    /// one (a damaged WAL): the replica then refuses to start and stays down.
    pub tail_loss_p: f64,
    /// While a majority has been healthy (up, running, fully connected, no
    /// fail_rate) for this many ticks, some replica must lead.
    pub leaderless_bound: u64,
    /// The old rule, a planted bug: a replica that lost durable records
    /// restarts with what is left and votes again.
    pub votes_after_tail_loss: bool,
    /// A bug planted in the core, to show the simulator catches it.
    pub planted: Option<PlantedBug>,
    /// Ticks a `Ready`'s writes take to become durable (drawn from
    /// `0..=fsync_delay`, in order, like the runtime's storage thread):
    /// until then a crash may lose them and their `messages` wait, while
    /// its `send_now` messages (and, with several replicas, its replies)
    /// have left already.
    pub fsync_delay: u64,
    /// Deliberately broken variants, to show the simulator can fail.
    pub read_mode: ReadMode,
    /// Restart with an empty disk (the acceptor forgets its promises).
    pub amnesia: bool,
    /// Which profile drew this schedule (for `count_planted_hits`).
    pub profile: &'static str,
    pub core: Config,
}

impl SimConfig {
    pub fn new(replicas: usize, rng: &mut StdRng) -> Self {
        let base = Self::base(replicas, rng);
        let mut cfg = match rng.random_range(0..8) {
            0 => base.hunting_stale_reads(),
            1 => base.crash_storm(),
            2 => base.slow_network(),
            3..=5 => base.returning_coordinator(),
            _ => base,
        };
        // Often a budget so small that a promise's accepted values come in
        // several pieces and every snapshot in many chunks.
        if rng.random_bool(0.5) {
            cfg.core.max_message_bytes = [60, 60, 120][rng.random_range(0..3)];
        }
        cfg
    }

    /// Acceptors crash and restart all the time, so that a replica often
    /// answers a stale coordinator right after a restart: this is where a
    /// promise or an accepted value that did not survive would show.
    pub fn crash_storm(self) -> Self {
        SimConfig {
            profile: "crash storm",
            crash_p: 0.1,
            restart_p: 0.4,
            pause_p: 0.05,
            resume_p: 0.2,
            target_leader_p: 0.2,
            tail_loss_p: 0.2,
            ..self
        }
    }

    /// The nemesis (see [`SimConfig::nemesis_every`]) on an otherwise quiet
    /// network, for longer: a coordinator crashes while a follower is
    /// paused and is elected again; later it is paused and deposed, and
    /// asked to read when it wakes. Mostly reads, so that a read has no
    /// write in flight to wait for: this is where a read confirmed by an
    /// old heartbeat round, or by acks of an earlier ballot, would show.
    pub fn returning_coordinator(self) -> Self {
        SimConfig {
            profile: "returning coordinator",
            clients: 8,
            fault_ticks: 150 + self.fault_ticks / 2,
            crash_p: 0.0,
            restart_p: 0.8,
            pause_p: 0.0,
            resume_p: 0.05,
            nemesis_every: 15,
            nemesis_chain_p: 0.6,
            partition_p: 0.0,
            one_way_p: 0.0,
            max_fail_rate: 0.0,
            drop_p: self.drop_p / 4.0,
            long_delay_p: 0.0,
            tail_loss_p: 0.0,
            target_leader_p: 0.5,
            retarget_p: 0.5,
            request_timeout: 15,
            read_tenths: 8,
            // Long accepted histories (no compaction), which promises
            // report in pieces under small budgets.
            core: Config {
                snapshot_every: 0,
                ..self.core
            },
            ..self
        }
    }

    /// A slow, lumpy network: long delays, stragglers and one-way cuts, with
    /// timeouts scaled to match.
    pub fn slow_network(self) -> Self {
        SimConfig {
            profile: "slow network",
            max_delay: 8,
            long_delay_p: 0.02,
            long_delay: 60,
            one_way_p: 0.02,
            request_timeout: 80,
            heal_bound: 600,
            leaderless_bound: 400,
            core: Config {
                heartbeat_ticks: 3,
                election_ticks: 24,
                ..self.core
            },
            ..self
        }
    }

    /// Stale reads need a paused coordinator to be asked a read while
    /// another one leads: pause often, many clients sent anywhere, short
    /// client timeouts so that they find the new coordinator quickly.
    pub fn hunting_stale_reads(self) -> Self {
        SimConfig {
            profile: "stale reads",
            clients: 8,
            pause_p: 0.05,
            resume_p: 0.1,
            retarget_p: 0.5,
            request_timeout: 15,
            // Old heartbeat acks outlive a leadership change.
            dup_p: 0.1,
            long_delay_p: 0.03,
            long_delay: 40,
            ..self
        }
    }

    fn base(replicas: usize, rng: &mut StdRng) -> Self {
        let mut cfg = SimConfig {
            replicas,
            clients: rng.random_range(2..=4),
            fault_ticks: rng.random_range(100..250),
            heal_bound: 300,
            drop_p: rng.random_range(0.0..0.2),
            dup_p: rng.random_range(0.0..0.1),
            max_delay: rng.random_range(1..=4),
            dup_delay: 0,
            crash_p: rng.random_range(0.0..0.03),
            restart_p: 0.1,
            pause_p: rng.random_range(0.0..0.03),
            resume_p: 0.1,
            nemesis_every: 0,
            nemesis_chain_p: 0.6,
            partition_p: rng.random_range(0.0..0.03),
            target_leader_p: rng.random_range(0.0..0.8),
            max_fail_rate: rng.random_range(0.0..0.3),
            retarget_p: 0.1,
            request_timeout: 40,
            give_up_after: [0, 3, 6][rng.random_range(0..3)],
            read_tenths: 4,
            one_way_p: rng.random_range(0.0..0.015),
            jitter_p: rng.random_range(0.0..0.1),
            long_delay_p: rng.random_range(0.0..0.01),
            long_delay: 20,
            tail_loss_p: rng.random_range(0.0..0.2),
            leaderless_bound: 200,
            votes_after_tail_loss: false,
            planted: None,
            fsync_delay: 0,
            read_mode: ReadMode::Quorum,
            amnesia: false,
            profile: "broad",
            core: Config {
                heartbeat_ticks: 2,
                election_ticks: 10,
                read_mode: ReadMode::Quorum,
                max_batch: rng.random_range(1..=4),
                max_inflight_slots: rng.random_range(1..=4),
                snapshot_every: [0, 3, 10][rng.random_range(0..3)],
                max_catchup_entries: rng.random_range(1..=8),
                // Small enough that catch-ups and batches are cut by bytes,
                // and that clients meet an overloaded coordinator.
                max_message_bytes: 400,
                max_pending: 6,
            },
        };
        cfg.dup_delay = 3 * cfg.max_delay;
        cfg.fsync_delay = rng.random_range(0..=3);
        cfg
    }
}

/// What a schedule did, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimStats {
    pub ticks: u64,
    pub messages: u64,
    pub writes_acked: u64,
    pub reads_acked: u64,
    pub crashes: u64,
    /// Crashes that left only part of a `Ready`'s writes on disk.
    pub torn_crashes: u64,
    /// Crashes that lost durable records too (the replica stays down).
    pub tail_losses: u64,
    /// Crashes that lost a snapshot or compaction no checkpoint held yet.
    pub lost_history: u64,
    /// Commands whose client gave up on them.
    pub given_up: u64,
    /// Longest run of ticks with a healthy majority and no coordinator.
    pub longest_leaderless: u64,
    /// Times a new ballot started leading.
    pub leader_changes: u64,
    pub slots_chosen: u64,
    /// Snapshot chunks delivered, and snapshots installed (from chunks, or
    /// carried by a promise).
    pub snapshot_chunks: u64,
    pub snapshots_installed: u64,
    /// Promises delivered cut short by bytes (more pieces to ask for).
    pub promise_pieces: u64,
    /// Nemesis chains (see `Chain`) started, and carried to their end.
    pub chains_started: u64,
    pub chains_done: u64,
    /// Ticks from healing until every command completed and replicas
    /// converged (the maximum over schedules when summed up).
    pub ticks_to_recover: u64,
}

struct Node {
    replica: Option<Replica>,
    /// The disk: a checkpoint and the records written since, in order. A
    /// snapshot or compaction is durable only once a checkpoint holds it
    /// (the runtime writes checkpoints in the background, see
    /// `crate::storage`): in `wal` it is lost by a crash.
    checkpoint: PersistentState,
    wal: Vec<StorageWrite>,
    /// The checkpoint being written: it covers `wal[..covers]` and is in
    /// place once `CHECKPOINT_LAG` more writes are durable.
    checkpointing: Option<Checkpointing>,
    /// It lost durable records and refuses to start: it stays down.
    refused: bool,
    paused: bool,
    /// A pause by the nemesis ends at this tick (others end at random).
    resume_at: Option<u64>,
    /// Just resumed: it handles the client requests waiting in its socket
    /// buffers before the peer messages.
    clients_first: bool,
    /// Cut off by a network partition: all its messages, both ways, are lost.
    isolated: bool,
    fail_rate: f64,
    /// Last slot this incarnation applied (for the in-order check).
    last_applied: Slot,
    /// Healthy (up, running, connected, no fail_rate) since this tick.
    healthy_since: Option<u64>,
    /// Readys whose writes are not durable yet, oldest first.
    unsynced: std::collections::VecDeque<Unsynced>,
}

/// A `Ready` on its way to disk: its writes, and what waits for them.
struct Unsynced {
    durable_at: u64,
    writes: Vec<StorageWrite>,
    messages: Vec<(ReplicaId, Message)>,
    replies: Vec<(RequestId, Reply)>,
}

/// Records in a WAL before the simulated storage writes a checkpoint.
const CHECKPOINT_EVERY: usize = 40;
/// Writes made durable while a checkpoint is written in the background.
const CHECKPOINT_LAG: usize = 3;

/// A checkpoint in flight (see `Node::checkpointing`).
struct Checkpointing {
    covers: usize,
    writes_since: usize,
}

/// A write that only a checkpoint makes durable.
fn rewrites_history(w: &StorageWrite) -> bool {
    matches!(w, StorageWrite::Snapshot(_) | StorageWrite::Compact { .. })
}

impl Node {
    /// Make one write durable. A snapshot or compaction (or a long WAL)
    /// starts a checkpoint, unless one is in flight.
    fn persist(&mut self, write: &StorageWrite) {
        self.wal.push(write.clone());
        if let Some(c) = &mut self.checkpointing {
            c.writes_since += 1;
            if c.writes_since > CHECKPOINT_LAG {
                let covers = c.covers.min(self.wal.len());
                for w in self.wal.drain(..covers) {
                    self.checkpoint.apply(&w);
                }
                self.checkpointing = None;
            }
        }
        if self.checkpointing.is_none()
            && (self.wal.len() >= CHECKPOINT_EVERY || self.wal.iter().any(rewrites_history))
        {
            self.checkpointing = Some(Checkpointing {
                covers: self.wal.len(),
                writes_since: 0,
            });
        }
    }

    /// A crash stops the checkpoint in flight: the snapshots and
    /// compactions no checkpoint holds yet are lost. True if there were any.
    fn lose_unchecked_history(&mut self) -> bool {
        self.checkpointing = None;
        let before = self.wal.len();
        self.wal.retain(|w| !rewrites_history(w));
        self.wal.len() < before
    }

    /// What a restart reads back.
    fn disk(&self) -> PersistentState {
        let mut state = self.checkpoint.clone();
        for w in self.wal.iter().filter(|w| !rewrites_history(w)) {
            state.apply(w);
        }
        state
    }
}

struct Envelope {
    deliver_at: u64,
    to: ReplicaId,
    payload: Payload,
    /// Send order: messages on one link that are due together arrive in
    /// the order they were sent (each link is a stream).
    sent: u64,
}

impl Envelope {
    /// The stream it travels on: (sender, receiver), clients being
    /// [`CLIENTS`].
    fn link(&self) -> (ReplicaId, ReplicaId) {
        match &self.payload {
            Payload::Peer(from, _) => (*from, self.to),
            Payload::Client(..) => (CLIENTS, self.to),
            Payload::Reply(from, ..) => (*from, CLIENTS),
        }
    }
}

/// Peer messages and client requests share the network: a paused replica
/// finds both in its socket buffers when it resumes, in any order.
enum Payload {
    Peer(ReplicaId, Message),
    Client(RequestId, Command),
    /// A replica's answer on its way back to the client.
    Reply(ReplicaId, RequestId, Reply),
}

/// A client command in progress.
struct Pending {
    cmd: Command,
    /// Logical time of the first attempt (invocation).
    invoked: u64,
    request: RequestId,
    /// Tick after which the current attempt is given up and retried.
    deadline: u64,
    /// Retry at this tick (after a NotLeader answer), to whom.
    retry_at: Option<u64>,
    /// Attempts so far.
    attempts: u32,
}

struct Client {
    id: u64,
    next_seq: u64,
    target: ReplicaId,
    pending: Option<Pending>,
}

struct WriteRecord {
    client: u64,
    seq: u64,
    invoked: u64,
    acked: u64,
    result: OpResult,
}

struct ReadRecord {
    key: String,
    invoked: u64,
    acked: u64,
    value: Option<String>,
}

/// Invoke time of every write command ever submitted (first attempt).
type Invocations = HashMap<(u64, u64), u64>;

struct Sim {
    cfg: SimConfig,
    rng: StdRng,
    nodes: Vec<Node>,
    net: Vec<Envelope>,
    clients: Vec<Client>,
    /// Request id → client index.
    requests: HashMap<RequestId, usize>,
    next_request: RequestId,
    /// Replica restarts so far (numbers their incarnations).
    starts: u64,
    now: u64,
    /// Logical clock of client events, finer than ticks (real-time order).
    clock: u64,
    healed: bool,
    /// Every slot any replica applied, with its value: all must agree.
    chosen: BTreeMap<Slot, Value>,
    writes: Vec<WriteRecord>,
    reads: Vec<ReadRecord>,
    invocations: Invocations,
    stats: SimStats,
    trace: Option<Vec<String>>,
    /// `cut[from][to]`: messages from `from` to `to` are lost (one way).
    cut: Vec<Vec<bool>>,
    /// Since when a healthy majority has had no coordinator.
    leaderless_since: Option<u64>,
    /// Messages sent so far (numbers envelopes).
    sent: u64,
    /// The ballot of the latest coordinator seen.
    leading: Option<Ballot>,
    /// When the nemesis acts next.
    next_nemesis: u64,
    /// The nemesis's long operation in progress, if any.
    chain: Option<Chain>,
    /// The process the nemesis stopped last, while clients that still
    /// believe in it send it requests (see [`Lure`]).
    lure: Option<Lure>,
    /// A stop the nemesis has decided on, due at its victim's next
    /// heartbeat (see [`Sim::stop_after_heartbeat`]).
    stopping: Option<Stopping>,
    /// A follower the nemesis cut off, and the coordinator it kills when
    /// the follower comes back (see [`Sim::nemesis`]).
    cutoff: Option<Cutoff>,
}

#[derive(Clone, Copy, Debug)]
struct Cutoff {
    follower: ReplicaId,
    leader: ReplicaId,
    until: u64,
}

#[derive(Clone, Debug)]
struct Stopping {
    id: ReplicaId,
    ticks: u64,
    /// Stopped at this tick at the latest.
    by: u64,
    /// Its latest heartbeat round (ballot and number), and who acked it.
    round: Option<(Ballot, u64)>,
    acks: Vec<bool>,
}

/// Clients placed around a process stopped by the nemesis: half of them
/// (the odd ones) know who leads now and send their commands there, so
/// that the others write behind the stopped one's back; the other half
/// still believe in the stopped one and, in the last ticks before it
/// resumes, send it most of their reads, timed so that they still wait
/// for its answer when it wakes (and handles them first, before its
/// backlog of peer messages). A stopped coordinator wakes deposed to reads
/// of keys written meanwhile, a stopped follower wakes behind to reads it
/// must serve from a read index.
#[derive(Clone, Copy, Debug)]
struct Lure {
    to: ReplicaId,
    from: u64,
    until: u64,
}

/// The nemesis's long operation, a chain of process stops and a kill that
/// leaves a coordinator holding heartbeat acks of its own earlier ballot,
/// deposed while asleep:
/// 1. all but a bare majority of the followers are stopped while the
///    coordinator numbers heartbeat rounds, which pile up in their socket
///    buffers;
/// 2. the coordinator is killed, restarted, and (with the followers still
///    asleep) elected again, numbering its rounds from 1 in the new ballot;
/// 3. the sleepers wake and answer the old ballot's heartbeats first, with
///    round numbers the new ballot has not reached;
/// 4. the coordinator is stopped for a few election timeouts: the others
///    depose it and go on writing; it wakes to client requests.
#[derive(Clone, Debug)]
enum Chain {
    Asleep {
        leader: ReplicaId,
        ballot: Ballot,
        sleepers: Vec<ReplicaId>,
        until: u64,
    },
    Reelecting {
        leader: ReplicaId,
        ballot: Ballot,
        sleepers: Vec<ReplicaId>,
        restart_at: u64,
        until: u64,
    },
    Woken {
        leader: ReplicaId,
        until: u64,
    },
}

/// Replies travel to clients as envelopes addressed to this pseudo-replica.
const CLIENTS: ReplicaId = usize::MAX;

const KEYS: [&str; 3] = ["a", "b", "c"];

impl Sim {
    fn new(seed: u64, cfg: SimConfig, trace: bool) -> Self {
        let rng = StdRng::seed_from_u64(seed ^ 0x5eed_5eed);
        let n = cfg.replicas;
        let mut core = cfg.core.clone();
        core.read_mode = cfg.read_mode;
        let nodes = (0..n)
            .map(|id| {
                let mut replica = Replica::new(id, n, core.clone(), PersistentState::default())
                    .expect("valid config");
                replica.planted = cfg.planted;
                Node {
                    replica: Some(replica),
                    checkpoint: PersistentState::default(),
                    checkpointing: None,
                    wal: Vec::new(),
                    refused: false,
                    paused: false,
                    resume_at: None,
                    clients_first: false,
                    isolated: false,
                    fail_rate: 0.0,
                    last_applied: 0,
                    healthy_since: Some(0),
                    unsynced: Default::default(),
                }
            })
            .collect();
        let clients = (0..cfg.clients)
            .map(|i| Client {
                id: i as u64 + 1,
                next_seq: 1,
                target: i % n,
                pending: None,
            })
            .collect();
        let mut cfg = cfg;
        cfg.core = core;
        Sim {
            cfg,
            rng,
            nodes,
            net: Vec::new(),
            clients,
            requests: HashMap::new(),
            next_request: 1,
            starts: 0,
            now: 0,
            clock: 0,
            healed: false,
            chosen: BTreeMap::new(),
            writes: Vec::new(),
            reads: Vec::new(),
            invocations: HashMap::new(),
            stats: SimStats::default(),
            trace: trace.then(Vec::new),
            cut: vec![vec![false; n]; n],
            leaderless_since: None,
            sent: 0,
            leading: None,
            next_nemesis: 0,
            chain: None,
            lure: None,
            stopping: None,
            cutoff: None,
        }
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(format!("t={} {}", self.now, line()));
        }
    }

    fn run(&mut self) -> Result<SimStats, String> {
        // The nemesis's last operation runs its course (within a bound)
        // rather than being cut short by the heal.
        let limit = 2 * self.cfg.fault_ticks;
        while self.now < self.cfg.fault_ticks || (self.nemesis_busy() && self.now < limit) {
            self.faults()?;
            self.step_tick()?;
            self.client_actions(true)?;
            self.check_leader_during_faults()?;
        }
        let fault_end = self.now;
        self.heal();
        let deadline = self.now + self.cfg.heal_bound;
        loop {
            if self.now >= deadline {
                let pending: Vec<_> = self
                    .clients
                    .iter()
                    .filter_map(|c| c.pending.as_ref().map(|p| (c.id, p.cmd.seq)))
                    .collect();
                let status: Vec<_> = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.replica.as_ref().map(|r| r.status()))
                    .collect();
                return Err(format!(
                    "liveness: not done {} ticks after healing; pending {pending:?}; status {status:?}",
                    self.cfg.heal_bound
                ));
            }
            self.step_tick()?;
            // Keep the load going for a while after healing so that commands
            // submitted to a healed cluster are checked too, then drain.
            self.client_actions(self.now < fault_end + 30)?;
            if self.now > fault_end + 30 && self.quiescent() {
                break;
            }
        }
        self.stats.ticks_to_recover = self.now - fault_end;
        self.check_final()?;
        self.stats.ticks = self.now;
        Ok(self.stats)
    }

    // ----- faults --------------------------------------------------------

    /// The nemesis's current operation has not run its course: a chain, a
    /// stop waiting for its moment, a cut-off follower, or a process it
    /// stopped (with the clients lured to it) that has not woken yet.
    fn nemesis_busy(&self) -> bool {
        self.chain.is_some()
            || self.stopping.is_some()
            || self.cutoff.is_some()
            || self.lure.is_some_and(|l| self.now <= l.until)
    }

    /// A fault's target: like Jepsen's nemeses, often the current
    /// coordinator (that is where leadership changes and their races come
    /// from), otherwise anyone.
    fn victim(&mut self) -> ReplicaId {
        let n = self.cfg.replicas;
        if self.rng.random_bool(self.cfg.target_leader_p) {
            let leaders: Vec<_> = (0..n)
                .filter(|id| {
                    self.nodes[*id]
                        .replica
                        .as_ref()
                        .is_some_and(|r| r.role() == Role::Coordinator)
                })
                .collect();
            if !leaders.is_empty() {
                return leaders[self.rng.random_range(0..leaders.len())];
            }
        }
        self.rng.random_range(0..n)
    }

    fn faults(&mut self) -> Result<(), String> {
        let n = self.cfg.replicas;
        let id = self.victim();
        if self.rng.random_bool(self.cfg.crash_p) && self.nodes[id].replica.is_some() {
            self.crash(id)?;
        }
        let id = self.rng.random_range(0..n);
        if self.nodes[id].replica.is_none() && self.rng.random_bool(self.cfg.restart_p) {
            self.restart(id);
        }
        let id = self.victim();
        if self.rng.random_bool(self.cfg.pause_p) {
            self.log(|| format!("pause {id}"));
            self.nodes[id].paused = true;
        }
        let id = self.rng.random_range(0..n);
        if self.nodes[id].paused
            && self.nodes[id].resume_at.is_none()
            && self.rng.random_bool(self.cfg.resume_p)
        {
            self.resume(id);
        }
        for id in 0..n {
            if self.nodes[id].resume_at.is_some_and(|at| at <= self.now) {
                self.resume(id);
            }
        }
        let id = self.victim();
        if self.rng.random_bool(self.cfg.partition_p) {
            self.log(|| format!("isolate {id}"));
            self.nodes[id].isolated = true;
        }
        let id = self.rng.random_range(0..n);
        let cut_off = self.cutoff.is_some_and(|c| c.follower == id);
        if self.nodes[id].isolated && !cut_off && self.rng.random_bool(self.cfg.resume_p) {
            self.log(|| format!("reconnect {id}"));
            self.nodes[id].isolated = false;
        }
        if self.rng.random_bool(self.cfg.one_way_p) {
            let id = self.victim();
            match self.rng.random_range(0..3) {
                0 => {
                    // A wedged listener: it sends, but hears nothing.
                    self.log(|| format!("deafen {id}"));
                    (0..n).for_each(|from| self.cut[from][id] = from != id);
                }
                1 => {
                    self.log(|| format!("mute {id}"));
                    (0..n).for_each(|to| self.cut[id][to] = to != id);
                }
                _ => {
                    let to = self.rng.random_range(0..n);
                    self.log(|| format!("cut {id}->{to}"));
                    self.cut[id][to] = id != to;
                }
            }
        }
        let id = self.rng.random_range(0..n);
        if self.rng.random_bool(self.cfg.resume_p / 2.0) {
            (0..n).for_each(|to| self.cut[id][to] = false);
            (0..n).for_each(|from| self.cut[from][id] = false);
        }
        if self.cfg.max_fail_rate > 0.0 && self.rng.random_bool(0.02) {
            let id = self.rng.random_range(0..n);
            self.nodes[id].fail_rate = self.rng.random_range(0.0..=self.cfg.max_fail_rate);
        }
        if let Some(cut) = self.cutoff.filter(|c| c.until <= self.now) {
            self.cutoff = None;
            self.log(|| format!("nemesis: reconnect {}, kill {}", cut.follower, cut.leader));
            self.nodes[cut.follower].isolated = false;
            if self.nodes[cut.leader].replica.is_some() {
                self.crash(cut.leader)?;
            }
        }
        if let Some(stop) = self.stopping.clone().filter(|s| s.by <= self.now) {
            self.pause_until(stop.id, self.now + stop.ticks);
        }
        if let Some(chain) = self.chain.take() {
            self.chain = self.chain_step(chain)?;
        } else if self.cfg.nemesis_every > 0 && self.now >= self.next_nemesis {
            self.nemesis()?;
        }
        Ok(())
    }

    /// One operation of the nemesis (see [`SimConfig::nemesis_every`]).
    fn nemesis(&mut self) -> Result<(), String> {
        let every = self.cfg.nemesis_every;
        self.next_nemesis = self.now + self.rng.random_range(every / 2..=every * 3 / 2);
        let n = self.cfg.replicas;
        let leader = (0..n).find(|id| {
            self.running(*id)
                && self.nodes[*id]
                    .replica
                    .as_ref()
                    .is_some_and(|r| r.role() == Role::Coordinator)
        });
        let election = self.cfg.core.election_ticks;
        let until = self.now + self.rng.random_range(2 * election..=5 * election);
        // One process stopped at a time, so that the others can go on.
        let one_paused = self.nodes.iter().any(|node| node.paused)
            || self.stopping.is_some()
            || self.cutoff.is_some();
        if let (Some(id), false) = (leader, one_paused) {
            if self.rng.random_bool(self.cfg.nemesis_chain_p) {
                self.chain = self.chain_start(id);
                return Ok(());
            }
        }
        match (self.rng.random_range(0..3), leader) {
            (0, Some(id)) if one_paused || self.rng.random_bool(0.3) => self.crash(id)?,
            (0, Some(id)) => {
                // A follower cut off (it misses the accepts and learns
                // nothing) while the coordinator goes on; the coordinator
                // dies as it comes back: the one that lags may well
                // campaign first, and must learn from the promises what the
                // others accepted meanwhile.
                let followers: Vec<_> = (0..n)
                    .filter(|f| *f != id && self.running(*f) && !self.nodes[*f].isolated)
                    .collect();
                if !followers.is_empty() {
                    let follower = followers[self.rng.random_range(0..followers.len())];
                    self.log(|| format!("nemesis: cut off {follower} until t={until}"));
                    self.nodes[follower].isolated = true;
                    self.cutoff = Some(Cutoff {
                        follower,
                        leader: id,
                        until,
                    });
                }
            }
            _ if one_paused => {}
            (1, Some(id)) => self.stop_after_heartbeat(id, until - self.now),
            (_, leader) => {
                let followers: Vec<_> = (0..n)
                    .filter(|id| Some(*id) != leader && self.running(*id))
                    .collect();
                if !followers.is_empty() {
                    let id = followers[self.rng.random_range(0..followers.len())];
                    self.pause_until(id, until);
                }
            }
        }
        Ok(())
    }

    /// Step 1 of a [`Chain`]: stop all but a bare majority's followers of
    /// coordinator `leader` for 2 to 5 election timeouts.
    fn chain_start(&mut self, leader: ReplicaId) -> Option<Chain> {
        let ballot = self.nodes[leader].replica.as_ref()?.status().own_ballot?;
        let n = self.cfg.replicas;
        // It must win the election again: every replica that outranks it
        // sleeps (if that is few enough), then others at random.
        let (mut sleepers, mut followers): (Vec<_>, Vec<_>) = (0..n)
            .filter(|id| *id != leader && self.running(*id))
            .partition(|id| *id < leader);
        let count = n - majority(n);
        if sleepers.len() > count || sleepers.len() + followers.len() < count {
            return None;
        }
        while sleepers.len() < count {
            sleepers.push(followers.swap_remove(self.rng.random_range(0..followers.len())));
        }
        self.log(|| format!("nemesis chain: {sleepers:?} asleep under {leader} ({ballot})"));
        for id in &sleepers {
            // Woken by the chain, not at random.
            self.pause_until(*id, u64::MAX);
        }
        let election = self.cfg.core.election_ticks;
        let until = self.now + self.rng.random_range(2 * election..=5 * election);
        self.stats.chains_started += 1;
        Some(Chain::Asleep {
            leader,
            ballot,
            sleepers,
            until,
        })
    }

    /// The next step of a [`Chain`], when due; `None` once done (or given
    /// up because the cluster went another way).
    fn chain_step(&mut self, chain: Chain) -> Result<Option<Chain>, String> {
        let election = self.cfg.core.election_ticks;
        let leads_in = |sim: &Self, id: ReplicaId| {
            sim.nodes[id]
                .replica
                .as_ref()
                .filter(|r| r.role() == Role::Coordinator)
                .and_then(|r| r.status().own_ballot)
        };
        Ok(match chain {
            Chain::Asleep { until, .. } if self.now < until => Some(chain),
            Chain::Asleep {
                leader,
                ballot,
                sleepers,
                ..
            } => {
                if leads_in(self, leader) != Some(ballot) || !self.running(leader) {
                    self.wake(&sleepers);
                    return Ok(None);
                }
                self.log(|| format!("nemesis chain: kill {leader}"));
                self.crash(leader)?;
                let heartbeat = self.cfg.core.heartbeat_ticks;
                Some(Chain::Reelecting {
                    leader,
                    ballot,
                    sleepers,
                    restart_at: self.now + self.rng.random_range(1..=heartbeat),
                    until: self.now + 5 * election,
                })
            }
            Chain::Reelecting {
                leader,
                ballot,
                sleepers,
                restart_at,
                until,
            } => {
                if self.nodes[leader].replica.is_none() && self.now >= restart_at {
                    self.restart(leader);
                }
                let again = leads_in(self, leader).is_some_and(|b| b > ballot);
                if again || self.now >= until {
                    self.wake(&sleepers);
                }
                if !again {
                    return Ok((self.now < until).then_some(Chain::Reelecting {
                        leader,
                        ballot,
                        sleepers,
                        restart_at,
                        until,
                    }));
                }
                self.log(|| format!("nemesis chain: {leader} leads again"));
                // Their acks must arrive before it is stopped.
                let settle = self.cfg.max_delay + 2;
                Some(Chain::Woken {
                    leader,
                    until: self.now + settle + self.rng.random_range(0..=election / 2),
                })
            }
            Chain::Woken { until, .. } if self.now < until => Some(chain),
            Chain::Woken { leader, .. } => {
                // Long enough for the others to elect a coordinator and
                // write, and for clients to try it again; the nemesis
                // leaves them alone meanwhile.
                let ticks = self.rng.random_range(3 * election..=6 * election);
                if self.running(leader) {
                    self.stop_after_heartbeat(leader, ticks);
                    self.stats.chains_done += 1;
                }
                self.next_nemesis = self.now + ticks + self.cfg.core.heartbeat_ticks;
                None
            }
        })
    }

    fn wake(&mut self, sleepers: &[ReplicaId]) {
        for id in sleepers {
            if self.nodes[*id].paused {
                self.resume(*id);
            }
        }
    }

    /// Stop coordinator `id` for `ticks` at the moment a majority has
    /// answered its latest heartbeat round (or within a few heartbeat
    /// intervals anyway): it wakes sure of its leadership as of that
    /// round, while the others have moved on.
    fn stop_after_heartbeat(&mut self, id: ReplicaId, ticks: u64) {
        let by = self.now + 3 * self.cfg.core.heartbeat_ticks;
        self.stopping = Some(Stopping {
            id,
            ticks,
            by,
            round: None,
            acks: vec![false; self.cfg.replicas],
        });
    }

    /// Replica `to` handled `msg` from `from`: is it the ack that confirms
    /// the latest round of the coordinator the nemesis is about to stop?
    fn completes_round(&mut self, from: ReplicaId, to: ReplicaId, msg: &Message) -> bool {
        let n = self.cfg.replicas;
        let Some(stop) = self.stopping.as_mut().filter(|s| s.id == to) else {
            return false;
        };
        if let Message::HeartbeatAck {
            ballot, read_round, ..
        } = msg
        {
            if stop.round == Some((*ballot, *read_round)) && from != to {
                stop.acks[from] = true;
                return stop.acks.iter().filter(|a| **a).count() + 1 >= majority(n);
            }
        }
        false
    }

    fn pause_until(&mut self, id: ReplicaId, until: u64) {
        if self.stopping.as_ref().is_some_and(|s| s.id == id) {
            self.stopping = None;
        }
        self.log(|| format!("nemesis: pause {id} until t={until}"));
        self.nodes[id].paused = true;
        self.nodes[id].resume_at = Some(until);
        if until != u64::MAX {
            // Attempts sent from `from` on are still awaited when it wakes
            // and its answer has come back.
            let window = self
                .cfg
                .request_timeout
                .saturating_sub(self.cfg.max_delay + 2);
            self.lure = Some(Lure {
                to: id,
                from: until.saturating_sub(window),
                until,
            });
        }
    }

    fn resume(&mut self, id: ReplicaId) {
        self.log(|| format!("resume {id}"));
        self.nodes[id].paused = false;
        self.nodes[id].resume_at = None;
        self.nodes[id].clients_first = true;
    }

    /// Kill a replica. Sometimes it dies in the middle of persisting a
    /// `Ready`: only a prefix of the writes reaches the disk, and none of the
    /// messages or replies leave.
    fn crash(&mut self, id: ReplicaId) -> Result<(), String> {
        self.stats.crashes += 1;
        let Some(mut replica) = self.nodes[id].replica.take() else {
            return Ok(());
        };
        let ready = replica.ready();
        // What it applied in memory counts for the safety check too.
        self.check_applied(id, std::mem::take(&mut replica.applied_log))?;
        // Writes still on their way to disk, this Ready's last: a prefix
        // of them made it. What waited for them never left.
        let mut writes: Vec<StorageWrite> = std::mem::take(&mut self.nodes[id].unsynced)
            .into_iter()
            .flat_map(|u| u.writes)
            .collect();
        writes.extend(ready.persist);
        let keep = if writes.is_empty() {
            0
        } else {
            self.rng.random_range(0..=writes.len())
        };
        for w in &writes[..keep] {
            self.nodes[id].persist(w);
        }
        if keep < writes.len() {
            self.stats.torn_crashes += 1;
        }
        if self.nodes[id].lose_unchecked_history() {
            self.stats.lost_history += 1;
        }
        // Messages that waited for no write may have left already.
        for (to, msg) in ready.send_now {
            self.send(id, to, msg);
        }
        // Replies need not wait for the writes (see `Ready`): those of the
        // torn Ready may have left already.
        if self.cfg.replicas > 1 {
            for (request, reply) in ready.replies {
                self.post(self.now + 1, CLIENTS, Payload::Reply(id, request, reply));
            }
        }
        self.log(|| format!("crash {id} (persisted {keep}/{})", writes.len()));
        // A damaged WAL: records that were durable, and acknowledged, are
        // gone too. At most a minority may be lost this way, so that the
        // others can still go on.
        let refused = self.nodes.iter().filter(|n| n.refused).count();
        let wal = self.nodes[id].wal.len();
        if wal > 0
            && refused < (self.cfg.replicas - 1) / 2
            && self.rng.random_bool(self.cfg.tail_loss_p)
        {
            let lost = self.rng.random_range(1..=wal.min(8));
            self.nodes[id].wal.truncate(wal - lost);
            self.stats.tail_losses += 1;
            self.log(|| format!("{id} lost {lost} durable records"));
            if !self.cfg.votes_after_tail_loss {
                // The storage sees the damage and refuses to start: the
                // replica stays down until an operator rebuilds it.
                self.nodes[id].refused = true;
            }
        }
        Ok(())
    }

    fn restart(&mut self, id: ReplicaId) {
        if self.nodes[id].refused {
            return;
        }
        if self.cfg.amnesia {
            self.nodes[id].checkpoint = PersistentState::default();
            self.nodes[id].wal.clear();
            self.nodes[id].checkpointing = None;
        }
        let disk = self.nodes[id].disk();
        self.nodes[id].last_applied = disk.snapshot_slot();
        let mut replica =
            Replica::new(id, self.cfg.replicas, self.cfg.core.clone(), disk).expect("valid config");
        replica.planted = self.cfg.planted;
        // Every start is a new incarnation (the first ones are 0).
        self.starts += 1;
        replica.set_incarnation(self.starts);
        self.nodes[id].replica = Some(replica);
        self.nodes[id].paused = false;
        self.nodes[id].resume_at = None;
        self.log(|| format!("restart {id}"));
    }

    fn heal(&mut self) {
        self.log(|| "heal".to_string());
        self.healed = true;
        // The nemesis stops no one any more.
        self.stopping = None;
        self.lure = None;
        self.cutoff = None;
        for id in 0..self.cfg.replicas {
            if self.nodes[id].replica.is_none() {
                self.restart(id);
            }
            self.nodes[id].paused = false;
            self.nodes[id].resume_at = None;
            self.nodes[id].isolated = false;
            self.nodes[id].fail_rate = 0.0;
        }
        self.cut = vec![vec![false; self.cfg.replicas]; self.cfg.replicas];
    }

    /// Up, running, connected both ways to everyone, failing nothing.
    fn healthy(&self, id: ReplicaId) -> bool {
        let node = &self.nodes[id];
        self.running(id)
            && !node.isolated
            && node.fail_rate == 0.0
            && (0..self.cfg.replicas).all(|r| !self.cut[id][r] && !self.cut[r][id])
    }

    /// Liveness during faults: while a majority has been healthy for
    /// `leaderless_bound` ticks, some running replica leads.
    fn check_leader_during_faults(&mut self) -> Result<(), String> {
        let n = self.cfg.replicas;
        let now = self.now;
        for id in 0..n {
            let healthy = self.healthy(id);
            let node = &mut self.nodes[id];
            node.healthy_since = match (healthy, node.healthy_since) {
                (true, None) => Some(now),
                (true, since) => since,
                (false, _) => None,
            };
        }
        let steady = self
            .nodes
            .iter()
            .filter(|n| n.healthy_since.is_some())
            .count();
        let newest = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .filter(|r| r.role() == Role::Coordinator)
            .filter_map(|r| r.status().own_ballot)
            .max();
        if newest.is_some_and(|b| Some(b) > self.leading) {
            self.leading = newest;
            self.stats.leader_changes += 1;
        }
        let led = (0..n).any(|id| {
            self.running(id)
                && self.nodes[id]
                    .replica
                    .as_ref()
                    .is_some_and(|r| r.role() == Role::Coordinator)
        });
        if steady < majority(n) || led {
            self.leaderless_since = None;
            return Ok(());
        }
        // Leaderless with a healthy majority: since when?
        let healthy_majority_since = {
            let mut since: Vec<u64> = self.nodes.iter().filter_map(|n| n.healthy_since).collect();
            since.sort_unstable();
            since[majority(n) - 1]
        };
        let since = *self.leaderless_since.get_or_insert(now);
        let waited = now - since.max(healthy_majority_since);
        self.stats.longest_leaderless = self.stats.longest_leaderless.max(waited);
        if waited > self.cfg.leaderless_bound {
            return Err(format!(
                "liveness: a majority has been healthy for {waited} ticks and nobody leads"
            ));
        }
        Ok(())
    }

    /// The running coordinator of the highest ballot, if any.
    fn coordinator(&self) -> Option<ReplicaId> {
        (0..self.cfg.replicas)
            .filter(|id| self.running(*id))
            .filter_map(|id| {
                let r = self.nodes[id].replica.as_ref()?;
                (r.role() == Role::Coordinator).then_some((r.status().own_ballot, id))
            })
            .max()
            .map(|(_, id)| id)
    }

    fn running(&self, id: ReplicaId) -> bool {
        self.nodes[id].replica.is_some() && !self.nodes[id].paused
    }

    // ----- time and network ----------------------------------------------

    fn step_tick(&mut self) -> Result<(), String> {
        self.now += 1;
        for id in 0..self.cfg.replicas {
            if self.running(id) {
                self.sync(id);
                // Clocks are only roughly regular: now and then a replica's
                // tick comes late (skipped) or two come at once.
                let ticks = if self.nodes[id].clients_first && self.rng.random_bool(0.9) {
                    // Just resumed, it reads its sockets before its timer
                    // fires (see `clients_first`).
                    0
                } else if self.healed || self.cfg.jitter_p == 0.0 {
                    1
                } else if self.rng.random_bool(self.cfg.jitter_p) {
                    0
                } else if self.rng.random_bool(self.cfg.jitter_p) {
                    2
                } else {
                    1
                };
                for _ in 0..ticks {
                    if let Some(r) = self.nodes[id].replica.as_mut() {
                        r.tick();
                    }
                }
                self.flush(id)?;
            }
        }
        // Deliver what is due, in random order (reordering). Messages to a
        // paused replica stay in its socket buffer until it resumes.
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            let to = self.net[i].to;
            let held = to != CLIENTS && self.nodes[to].paused;
            if self.net[i].deliver_at <= self.now && !held {
                due.push(self.net.swap_remove(i));
            } else {
                i += 1;
            }
        }
        // A replica just resumed handles the client requests in its socket
        // buffers first (they sit on other connections), then the backlog
        // of peer messages.
        let (mut urgent, mut due): (Vec<_>, Vec<_>) = due.into_iter().partition(|e| {
            e.to != CLIENTS
                && matches!(e.payload, Payload::Client(..))
                && self.nodes[e.to].clients_first
                && !self.nodes[e.to].paused
        });
        urgent.reverse();
        for node in &mut self.nodes {
            if !node.paused {
                node.clients_first = false;
            }
        }
        while !urgent.is_empty() || !due.is_empty() {
            let e = match urgent.pop() {
                Some(e) => e,
                None => {
                    // A random stream, then its oldest due message.
                    let link = due[self.rng.random_range(0..due.len())].link();
                    let oldest = (0..due.len())
                        .filter(|i| due[*i].link() == link)
                        .min_by_key(|i| due[*i].sent)
                        .expect("the stream has a message");
                    due.swap_remove(oldest)
                }
            };
            let to = e.to;
            if to == CLIENTS {
                if let Payload::Reply(from, request, reply) = e.payload {
                    self.on_reply(from, request, reply)?;
                }
                continue;
            }
            if self.nodes[to].paused {
                // Stays in the socket buffer until the process resumes.
                self.net.push(Envelope {
                    deliver_at: self.now + 1,
                    ..e
                });
                continue;
            }
            if !self.running(to) {
                continue;
            }
            match e.payload {
                Payload::Peer(from, msg) => {
                    let fail_rate = self.nodes[to].fail_rate;
                    if from != to
                        && !self.healed
                        && fail_rate > 0.0
                        && self.rng.random_bool(fail_rate)
                    {
                        continue;
                    }
                    self.stats.messages += 1;
                    match &msg {
                        Message::SnapshotChunk { .. } => self.stats.snapshot_chunks += 1,
                        Message::Promise {
                            accepted_through: Some(_),
                            ..
                        } => self.stats.promise_pieces += 1,
                        _ => {}
                    }
                    if self.trace.is_some() {
                        let line = match &msg {
                            Message::Accept { ballot, slot, .. } => {
                                format!("accept {ballot} s{slot}")
                            }
                            Message::Accepted { ballot, slot } => {
                                format!("accepted {ballot} s{slot}")
                            }
                            Message::Chosen { entries } => format!(
                                "chosen {:?}",
                                entries.iter().map(|e| e.slot).collect::<Vec<_>>()
                            ),
                            Message::Snapshot { snapshot } => {
                                format!("snapshot {}", snapshot.last_slot)
                            }
                            Message::SnapshotChunk {
                                last_slot,
                                total_bytes,
                                offset,
                                data,
                            } => format!(
                                "snapshot {last_slot} bytes {offset}+{} of {total_bytes}",
                                data.len()
                            ),
                            Message::Heartbeat {
                                ballot,
                                commit_index,
                                read_round,
                            } => format!("hb {ballot} r{read_round} c{commit_index}"),
                            Message::HeartbeatAck {
                                ballot,
                                commit_index,
                                read_round,
                            } => format!("hback {ballot} r{read_round} c{commit_index}"),
                            m => format!("{m:?}"),
                        };
                        self.log(|| format!("{from}->{to} {line}"));
                    }
                    let confirms = self.completes_round(from, to, &msg);
                    if let Some(r) = self.nodes[to].replica.as_mut() {
                        if let Err(err) = r.step(from, msg) {
                            return Err(format!(
                                "replica {to} refused a well-formed message: {err}"
                            ));
                        }
                    }
                    if confirms {
                        // Stopped right after it handled that answer (and
                        // sent what it sends then).
                        self.flush(to)?;
                        let ticks = self.stopping.as_ref().map_or(0, |s| s.ticks);
                        self.pause_until(to, self.now + ticks);
                        continue;
                    }
                }
                Payload::Client(request, cmd) => {
                    self.log(|| format!("{to} handles request {request}: {cmd:?}"));
                    if let Some(r) = self.nodes[to].replica.as_mut() {
                        r.submit(request, cmd);
                    }
                }
                Payload::Reply(..) => {}
            }
            if !self.healed && self.rng.random_bool(self.cfg.crash_p / 4.0) {
                // Dies while handling it: its writes may be half on disk, and
                // nothing it meant to send leaves.
                self.crash(to)?;
                continue;
            }
            self.flush(to)?;
        }
        Ok(())
    }

    /// Take a replica's output: persist, check what it applied, then send and
    /// answer.
    fn flush(&mut self, id: ReplicaId) -> Result<(), String> {
        let Some(replica) = self.nodes[id].replica.as_mut() else {
            return Ok(());
        };
        let ready = replica.ready();
        let applied = std::mem::take(&mut replica.applied_log);
        self.check_applied(id, applied)?;
        let round = ready.send_now.iter().find_map(|(_, msg)| match msg {
            Message::Heartbeat {
                ballot, read_round, ..
            } => Some((*ballot, *read_round)),
            _ => None,
        });
        if let Some(stop) = self
            .stopping
            .as_mut()
            .filter(|s| s.id == id && round.is_some())
        {
            // A new round: wait for its answers.
            stop.round = round;
            stop.acks.iter_mut().for_each(|a| *a = false);
        }
        for (to, msg) in ready.send_now {
            self.send(id, to, msg);
        }
        let mut replies = ready.replies;
        if self.cfg.replicas > 1 {
            // Replies need not wait for the writes (see `Ready`).
            for (request, reply) in replies.drain(..) {
                self.answer(id, request, reply);
            }
        }
        // The writes become durable in order, each batch after the last.
        let after = self.nodes[id].unsynced.back().map_or(0, |u| u.durable_at);
        let delay = self.rng.random_range(0..=self.cfg.fsync_delay);
        self.nodes[id].unsynced.push_back(Unsynced {
            durable_at: (self.now + delay).max(after),
            writes: ready.persist,
            messages: ready.messages,
            replies,
        });
        self.sync(id);
        Ok(())
    }

    /// Make durable what replica `id`'s disk has finished writing, then
    /// send what waited for it.
    fn sync(&mut self, id: ReplicaId) {
        while self.nodes[id]
            .unsynced
            .front()
            .is_some_and(|u| u.durable_at <= self.now)
        {
            let Some(u) = self.nodes[id].unsynced.pop_front() else {
                break;
            };
            for w in &u.writes {
                self.nodes[id].persist(w);
            }
            for (to, msg) in u.messages {
                self.send(id, to, msg);
            }
            for (request, reply) in u.replies {
                self.answer(id, request, reply);
            }
        }
    }

    /// Send a reply back to the clients.
    fn answer(&mut self, id: ReplicaId, request: RequestId, reply: Reply) {
        // Answers travel back over the same lossy network.
        if self.lost_between_client_and(id) {
            return;
        }
        let deliver_at = self.now + self.delay();
        self.post(deliver_at, CLIENTS, Payload::Reply(id, request, reply));
    }

    /// A delay for one message: mostly up to `max_delay`, now and then a
    /// straggler.
    fn delay(&mut self) -> u64 {
        if !self.healed && self.rng.random_bool(self.cfg.long_delay_p) {
            self.rng.random_range(0..=self.cfg.long_delay)
        } else {
            self.rng.random_range(0..=self.cfg.max_delay)
        }
    }

    /// Is a message between a client and replica `id` lost? (Partitions cut
    /// clients off too; one-way cuts are between replicas only.)
    fn lost_between_client_and(&mut self, id: ReplicaId) -> bool {
        !self.healed && (self.nodes[id].isolated || self.rng.random_bool(self.cfg.drop_p))
    }

    fn post(&mut self, deliver_at: u64, to: ReplicaId, payload: Payload) {
        self.sent += 1;
        self.net.push(Envelope {
            deliver_at,
            to,
            payload,
            sent: self.sent,
        });
    }

    fn send(&mut self, from: ReplicaId, to: ReplicaId, msg: Message) {
        if from == to {
            // Its own vote, handed back by its storage: no network.
            self.post(self.now, to, Payload::Peer(from, msg));
            return;
        }
        let faulty = !self.healed;
        if faulty && (self.nodes[from].isolated || self.nodes[to].isolated || self.cut[from][to]) {
            return;
        }
        if faulty && self.rng.random_bool(self.cfg.drop_p) {
            return;
        }
        if faulty && self.rng.random_bool(self.cfg.dup_p) {
            let deliver_at = self.now + self.rng.random_range(0..=self.cfg.dup_delay);
            self.post(deliver_at, to, Payload::Peer(from, msg.clone()));
        }
        let deliver_at = self.now + self.delay();
        self.post(deliver_at, to, Payload::Peer(from, msg));
    }

    // ----- safety: what replicas apply ------------------------------------

    fn check_applied(&mut self, id: ReplicaId, events: Vec<AppliedEvent>) -> Result<(), String> {
        for event in events {
            match event {
                AppliedEvent::Slot(slot, value) => {
                    let last = self.nodes[id].last_applied;
                    if slot != last + 1 {
                        return Err(format!(
                            "replica {id} applied slot {slot} right after slot {last}"
                        ));
                    }
                    self.nodes[id].last_applied = slot;
                    match self.chosen.get(&slot) {
                        Some(v) if *v != value => {
                            return Err(format!(
                                "replica {id} applied {value:?} at slot {slot}, another replica applied {v:?}"
                            ));
                        }
                        Some(_) => {}
                        None => {
                            // Chosen means a majority accepted it durably.
                            let holders = self.durable_holders(slot, &value);
                            if holders < majority(self.cfg.replicas) {
                                return Err(format!(
                                    "replica {id} applied {value:?} at slot {slot}, which only \
                                     {holders} replicas hold durably"
                                ));
                            }
                            self.stats.slots_chosen += 1;
                            self.chosen.insert(slot, value);
                        }
                    }
                }
                AppliedEvent::Snapshot(slot) => {
                    self.stats.snapshots_installed += 1;
                    let last = self.nodes[id].last_applied;
                    if slot <= last {
                        return Err(format!(
                            "replica {id} installed a snapshot at {slot} behind its applied slot {last}"
                        ));
                    }
                    self.nodes[id].last_applied = slot;
                }
            }
        }
        Ok(())
    }

    /// Replicas whose disk holds `value` for `slot` (accepted or chosen,
    /// or under a snapshot that covers it). One that refuses to start after
    /// losing durable records counts too: it held what it lost (the model's
    /// damage, see `tail_loss_p`), and it no longer votes.
    fn durable_holders(&self, slot: Slot, value: &Value) -> usize {
        let holds = |w: &StorageWrite| match w {
            StorageWrite::Accept {
                slot: s, value: v, ..
            }
            | StorageWrite::Chosen { slot: s, value: v } => *s == slot && v == value,
            // Not durable until a checkpoint holds it.
            StorageWrite::Promise(_) | StorageWrite::Snapshot(_) | StorageWrite::Compact { .. } => {
                false
            }
        };
        self.nodes
            .iter()
            .filter(|n| {
                let cp = &n.checkpoint;
                n.refused
                    || cp.accepted.get(&slot).is_some_and(|(_, v)| v == value)
                    || cp.chosen.get(&slot) == Some(value)
                    || cp.snapshot.as_ref().is_some_and(|s| s.last_slot >= slot)
                    || n.wal.iter().any(holds)
            })
            .count()
    }

    // ----- clients -------------------------------------------------------

    fn client_actions(&mut self, new_ops: bool) -> Result<(), String> {
        for i in 0..self.clients.len() {
            let now = self.now;
            let c = &self.clients[i];
            match &c.pending {
                None if new_ops && self.rng.random_bool(0.3) => {
                    let cmd = self.random_command(i);
                    self.clock += 1;
                    let invoked = self.clock;
                    if !cmd.op.is_read_only() {
                        self.invocations.insert((cmd.client_id, cmd.seq), invoked);
                    }
                    self.clients[i].pending = Some(Pending {
                        cmd,
                        invoked,
                        request: 0,
                        deadline: 0,
                        retry_at: Some(now),
                        attempts: 0,
                    });
                    self.attempt(i)?;
                }
                Some(p) if p.retry_at.is_some_and(|t| t <= now) || p.deadline <= now => {
                    let give_up = self.cfg.give_up_after;
                    if !self.healed && give_up > 0 && p.attempts >= give_up {
                        // Gives up: the outcome stays unknown, and the
                        // client moves on to its next sequence number.
                        let (client, seq) = (p.cmd.client_id, p.cmd.seq);
                        self.log(|| format!("client {client} gives up {seq}"));
                        self.clients[i].pending = None;
                        self.stats.given_up += 1;
                        continue;
                    }
                    if p.deadline <= now && p.retry_at.is_none() {
                        // Timed out: try the next one.
                        let n = self.cfg.replicas;
                        self.clients[i].target = (self.clients[i].target + 1) % n;
                    }
                    self.attempt(i)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn random_command(&mut self, i: usize) -> Command {
        let c = &mut self.clients[i];
        let (client_id, seq) = (c.id, c.next_seq);
        c.next_seq += 1;
        let key = KEYS[self.rng.random_range(0..KEYS.len())].to_string();
        let value = format!("{client_id}.{seq}");
        let mut roll = self.rng.random_range(0..10);
        if roll < self.cfg.read_tenths {
            roll = 0;
        } else if self.cfg.read_tenths != 4 {
            roll = self.rng.random_range(4..10);
        }
        let op = match roll {
            0..=3 => Op::Get { key },
            4..=5 => Op::Put { key, value },
            6 => Op::Delete { key },
            7 => Op::Append { key, value },
            _ => {
                // Expect something plausible: the last write of some client.
                let expected = self.writes.last().map(|w| match &w.result {
                    OpResult::Appended(v) => v.clone(),
                    _ => format!("{}.{}", w.client, w.seq),
                });
                Op::Cas {
                    key,
                    expected,
                    new: value,
                }
            }
        };
        Command { client_id, seq, op }
    }

    /// Send the pending command of client `i` (again) to its target.
    fn attempt(&mut self, i: usize) -> Result<(), String> {
        if self.rng.random_bool(self.cfg.retarget_p) {
            self.clients[i].target = self.rng.random_range(0..self.cfg.replicas);
        }
        if let Some(lure) = self.lure.filter(|l| self.now < l.until) {
            let read = self.clients[i]
                .pending
                .as_ref()
                .is_some_and(|p| p.cmd.op.is_read_only());
            if i % 2 == 1 {
                if let Some(leader) = self.coordinator() {
                    self.clients[i].target = leader;
                }
            } else if read && self.now >= lure.from && self.rng.random_bool(0.9) {
                self.clients[i].target = lure.to;
            }
        }
        let request = self.next_request;
        self.next_request += 1;
        let now = self.now;
        let target = self.clients[i].target;
        let Some(p) = self.clients[i].pending.as_mut() else {
            return Ok(());
        };
        p.request = request;
        p.deadline = now + self.cfg.request_timeout;
        p.retry_at = None;
        p.attempts += 1;
        let cmd = p.cmd.clone();
        self.requests.insert(request, i);
        self.log(|| format!("client {} -> {target}: {cmd:?}", cmd.client_id));
        // Through the lossy network: dropped, cut off by a partition, or
        // delivered a while later (held while the replica is paused, lost if
        // it is down then).
        if self.lost_between_client_and(target) {
            return Ok(());
        }
        let deliver_at = now + 1 + self.delay();
        self.post(deliver_at, target, Payload::Client(request, cmd));
        Ok(())
    }

    fn on_reply(
        &mut self,
        from: ReplicaId,
        request: RequestId,
        reply: Reply,
    ) -> Result<(), String> {
        let Some(&i) = self.requests.get(&request) else {
            return Err(format!("reply to unknown request {request}"));
        };
        self.log(|| format!("{from} -> client {}: {reply:?}", i + 1));
        let now = self.now;
        let c = &mut self.clients[i];
        let Some(p) = c.pending.as_mut().filter(|p| p.request == request) else {
            return Ok(()); // an answer to an attempt the client gave up on
        };
        match reply {
            Ok(Executed { result, slot }) => {
                self.clock += 1;
                let p = c.pending.take().expect("pending");
                // A write names the slot it was chosen in (0 only when
                // answered from the session cache); a read names none.
                let in_slot = match self.chosen.get(&slot) {
                    Some(Value::Batch(cmds)) => cmds
                        .iter()
                        .any(|c| (c.client_id, c.seq) == (p.cmd.client_id, p.cmd.seq)),
                    _ => false,
                };
                if p.cmd.op.is_read_only() && slot != 0
                    || !p.cmd.op.is_read_only() && slot != 0 && !in_slot
                {
                    return Err(format!(
                        "{:?} was answered with slot {slot}, which does not hold it",
                        p.cmd
                    ));
                }
                if let Op::Get { key } = &p.cmd.op {
                    let OpResult::Value(value) = result else {
                        return Err(format!("a get was answered with {result:?}"));
                    };
                    self.stats.reads_acked += 1;
                    self.reads.push(ReadRecord {
                        key: key.clone(),
                        invoked: p.invoked,
                        acked: self.clock,
                        value,
                    });
                } else {
                    self.stats.writes_acked += 1;
                    self.writes.push(WriteRecord {
                        client: p.cmd.client_id,
                        seq: p.cmd.seq,
                        invoked: p.invoked,
                        acked: self.clock,
                        result,
                    });
                }
            }
            Err(RequestError::NotLeader { leader_hint }) => {
                c.target = leader_hint.unwrap_or((from + 1) % self.cfg.replicas);
                p.retry_at = Some(now + 1);
            }
            Err(RequestError::Overloaded { .. } | RequestError::DiskBehind { .. }) => {
                p.retry_at = Some(now + 2);
            }
            Err(RequestError::OutcomeUnknown { leader_hint }) => {
                c.target = leader_hint.unwrap_or((from + 1) % self.cfg.replicas);
                p.retry_at = Some(now + 1);
            }
            Err(RequestError::Stale(e)) => {
                return Err(format!("client retried its latest command and got {e}"));
            }
        }
        Ok(())
    }

    fn quiescent(&self) -> bool {
        if self.clients.iter().any(|c| c.pending.is_some()) {
            return false;
        }
        let statuses: Vec<_> = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref().map(|r| r.status()))
            .collect();
        let refused = self.nodes.iter().filter(|n| n.refused).count();
        statuses.len() == self.cfg.replicas - refused
            && statuses.iter().any(|s| s.role == Role::Coordinator)
            && statuses.iter().all(|s| {
                s.applied_index == statuses[0].applied_index && s.digest == statuses[0].digest
            })
    }

    // ----- final checks --------------------------------------------------

    fn check_final(&mut self) -> Result<(), String> {
        // The chosen log must have no gaps up to the replicas' applied index.
        let applied = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .map(|r| r.applied_index())
            .max()
            .unwrap_or(0);
        // Replay the chosen log; remember where each write took effect.
        let mut kv = KvStore::new();
        let mut effective: HashMap<(u64, u64), (usize, OpResult)> = HashMap::new();
        // Per key: (position, value after) at each effective write.
        let mut history: HashMap<String, Vec<(usize, Option<String>)>> = HashMap::new();
        let mut invoked_at: Vec<u64> = Vec::new(); // by position - 1
        for slot in 1..=applied {
            let Some(value) = self.chosen.get(&slot) else {
                // Covered by a snapshot everywhere: never seen applied. Only
                // possible if every replica installed a snapshot past it,
                // which needs someone to have applied it first.
                return Err(format!("slot {slot} applied by no replica"));
            };
            let Value::Batch(cmds) = value else { continue };
            for cmd in cmds {
                let fresh = kv
                    .session(cmd.client_id)
                    .is_none_or(|s| s.last_seq < cmd.seq);
                let result = kv.apply(cmd);
                if !fresh {
                    continue;
                }
                let Ok(result) = result else { continue };
                invoked_at.push(*self.invocations.get(&(cmd.client_id, cmd.seq)).ok_or_else(
                    || format!("slot {slot} holds a command never submitted: {cmd:?}"),
                )?);
                let position = invoked_at.len();
                if effective
                    .insert((cmd.client_id, cmd.seq), (position, result))
                    .is_some()
                {
                    return Err(format!("{cmd:?} took effect twice"));
                }
                let key = cmd.op.key().to_string();
                history
                    .entry(key.clone())
                    .or_default()
                    .push((position, kv.read(&key)));
            }
        }
        for (id, node) in self.nodes.iter().enumerate() {
            if let Some(r) = &node.replica {
                if r.digest() != kv.digest() {
                    return Err(format!("replica {id} digest differs from the chosen log's"));
                }
            }
        }
        // Acknowledged writes: in the log once, with the result the client got.
        let mut position_of_ack = Vec::new();
        for w in &self.writes {
            match effective.get(&(w.client, w.seq)) {
                None => {
                    return Err(format!(
                        "acknowledged write {}.{} is not in the chosen log",
                        w.client, w.seq
                    ))
                }
                Some((_, result)) if *result != w.result => {
                    return Err(format!(
                        "write {}.{} was answered {:?} but took effect as {result:?}",
                        w.client, w.seq, w.result
                    ))
                }
                Some((position, _)) => position_of_ack.push((w.acked, *position, w.invoked)),
            }
        }
        // Real-time order of writes: a write invoked after another was
        // acknowledged must come after it in the log.
        let mut latest_invoke_before = Vec::with_capacity(invoked_at.len() + 1);
        latest_invoke_before.push(0u64);
        for t in &invoked_at {
            let m = *latest_invoke_before.last().unwrap_or(&0);
            latest_invoke_before.push(m.max(*t));
        }
        for (acked, position, _) in &position_of_ack {
            if latest_invoke_before[position - 1] > *acked {
                return Err(format!(
                    "write #{position} is ordered after a write invoked once it was acknowledged"
                ));
            }
        }
        self.check_reads(&history, &position_of_ack, &invoked_at)
    }

    /// Each read must observe the state after some prefix `p` of the
    /// effective writes with: every write acknowledged before the read was
    /// invoked inside the prefix; no write invoked after the read's answer
    /// inside it; and no earlier prefix than a read that completed before it
    /// was invoked.
    fn check_reads(
        &self,
        history: &HashMap<String, Vec<(usize, Option<String>)>>,
        acks: &[(u64, usize, u64)],
        invoked_at: &[u64],
    ) -> Result<(), String> {
        let mut acks_by_time: Vec<(u64, usize)> = acks.iter().map(|(t, p, _)| (*t, *p)).collect();
        acks_by_time.sort_unstable();
        // prefix max of positions acknowledged by time
        let mut max_pos = Vec::with_capacity(acks_by_time.len());
        let mut m = 0;
        for (_, p) in &acks_by_time {
            m = m.max(*p);
            max_pos.push(m);
        }
        let lower_from_writes = |t: u64| -> usize {
            let k = acks_by_time.partition_point(|(at, _)| *at < t);
            if k == 0 {
                0
            } else {
                max_pos[k - 1]
            }
        };
        // Upper bound: the first write invoked after time t sits at position
        // `first_after(t)`; the prefix must stop before it.
        let mut first_invoked_after: Vec<(u64, usize)> = invoked_at
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, i + 1))
            .collect();
        first_invoked_after.sort_unstable();
        let mut suffix_min = vec![usize::MAX; first_invoked_after.len() + 1];
        for i in (0..first_invoked_after.len()).rev() {
            suffix_min[i] = suffix_min[i + 1].min(first_invoked_after[i].1);
        }
        let upper_at = |t: u64| -> usize {
            let k = first_invoked_after.partition_point(|(it, _)| *it <= t);
            match suffix_min[k] {
                usize::MAX => invoked_at.len(),
                p => p - 1,
            }
        };
        let mut reads: Vec<&ReadRecord> = self.reads.iter().collect();
        reads.sort_by_key(|r| r.invoked);
        // (acked time, minimal feasible prefix) of reads checked so far.
        let mut done: Vec<(u64, usize)> = Vec::new();
        for r in reads {
            let mut lower = lower_from_writes(r.invoked);
            for (acked, p) in &done {
                if *acked < r.invoked {
                    lower = lower.max(*p);
                }
            }
            let upper = upper_at(r.acked);
            let changes: &[(usize, Option<String>)] =
                history.get(&r.key).map_or(&[], |v| v.as_slice());
            let value_at = |p: usize| -> Option<String> {
                let k = changes.partition_point(|(pos, _)| *pos <= p);
                if k == 0 {
                    None
                } else {
                    changes[k - 1].1.clone()
                }
            };
            let mut feasible = None;
            if lower <= upper {
                if value_at(lower) == r.value {
                    feasible = Some(lower);
                } else {
                    feasible = changes
                        .iter()
                        .filter(|(pos, _)| *pos > lower && *pos <= upper)
                        .find(|(_, v)| *v == r.value)
                        .map(|(pos, _)| *pos);
                }
            }
            match feasible {
                Some(p) => done.push((r.acked, p)),
                None => {
                    return Err(format!(
                        "non-linearizable read of {:?}: got {:?}, but the state must be between write #{lower} (value {:?}) and write #{upper}",
                        r.key,
                        r.value,
                        value_at(lower)
                    ))
                }
            }
        }
        Ok(())
    }
}

// ----- running schedules ----------------------------------------------------

fn schedules(default: u64) -> u64 {
    std::env::var("PAXOS_SIM_SCHEDULES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn config_for(seed: u64) -> SimConfig {
    let mut rng = StdRng::seed_from_u64(seed);
    let replicas = if seed.is_multiple_of(2) { 3 } else { 5 };
    SimConfig::new(replicas, &mut rng)
}

fn run_seed(seed: u64, tweak: impl Fn(&mut SimConfig), trace: bool) -> Result<SimStats, String> {
    let mut cfg = config_for(seed);
    tweak(&mut cfg);
    let mut sim = Sim::new(seed, cfg, trace);
    let result = sim.run();
    if let (Err(_), Some(trace)) = (&result, &sim.trace) {
        for line in trace.iter().rev().take(400).rev() {
            eprintln!("{line}");
        }
    }
    result
}

/// Run `count` seeds from `first`, panicking on the first violation.
fn run_many(name: &str, first: u64, count: u64) {
    let start = Instant::now();
    let mut total = SimStats::default();
    for seed in first..first + count {
        match run_seed(seed, |_| {}, false) {
            Ok(s) => {
                total.ticks += s.ticks;
                total.messages += s.messages;
                total.writes_acked += s.writes_acked;
                total.reads_acked += s.reads_acked;
                total.crashes += s.crashes;
                total.torn_crashes += s.torn_crashes;
                total.tail_losses += s.tail_losses;
                total.lost_history += s.lost_history;
                total.given_up += s.given_up;
                total.leader_changes += s.leader_changes;
                total.longest_leaderless = total.longest_leaderless.max(s.longest_leaderless);
                total.slots_chosen += s.slots_chosen;
                total.snapshot_chunks += s.snapshot_chunks;
                total.snapshots_installed += s.snapshots_installed;
                total.promise_pieces += s.promise_pieces;
                total.chains_started += s.chains_started;
                total.chains_done += s.chains_done;
                total.ticks_to_recover = total.ticks_to_recover.max(s.ticks_to_recover);
            }
            Err(violation) => panic!(
                "seed {seed} failed: {violation}\n  replay: PAXOS_SIM_SEED={seed} cargo test -p server --lib paxos::sim::replay -- --ignored --nocapture"
            ),
        }
    }
    let elapsed = start.elapsed();
    eprintln!(
        "{name}: {count} schedules in {elapsed:.1?} ({:.0}/s): {total:?}",
        count as f64 / elapsed.as_secs_f64()
    );
}

// Even seeds simulate 3 replicas, odd seeds 5. Two tests of 1000 schedules
// each (by default) so that they run in parallel.

#[test]
fn random_schedules_batch_a() {
    run_many("sim A", 0, schedules(1000));
}

#[test]
fn random_schedules_batch_b() {
    run_many("sim B", 1_000_000, schedules(1000));
}

/// `PAXOS_SIM_SEED=<seed>`: replay one schedule with a trace of its last
/// events on failure.
#[test]
#[ignore]
fn replay() {
    let seed = std::env::var("PAXOS_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mode = std::env::var("PAXOS_SIM_BREAK").unwrap_or_default();
    let result = run_seed(
        seed,
        |cfg| match mode.as_str() {
            "local-reads" => cfg.read_mode = ReadMode::Local,
            "amnesia" => cfg.amnesia = true,
            "read-round" => cfg.planted = Some(PlantedBug::ReadRoundNotAhead),
            "any-ballot" => cfg.planted = Some(PlantedBug::AckOfAnyBallot),
            "own-vote" => cfg.planted = Some(PlantedBug::OwnVoteBeforeFsync),
            "incomplete-promise" => cfg.planted = Some(PlantedBug::IncompletePromiseCounts),
            "tail-votes" => cfg.votes_after_tail_loss = true,
            _ => {}
        },
        true,
    );
    match result {
        Ok(stats) => eprintln!("seed {seed}: ok {stats:?}"),
        Err(v) => panic!("seed {seed}: {v}"),
    }
}

/// Many more schedules: `PAXOS_SIM_SCHEDULES=100000 cargo test -p server
/// --release --lib paxos::sim::soak -- --ignored --nocapture`.
#[test]
#[ignore]
fn soak() {
    run_many("soak", 10_000_000, schedules(20_000));
}

/// The simulator can fail: find the first seed (of a bounded number) where
/// the broken variant violates a property.
fn find_violation(tweak: impl Fn(&mut SimConfig) + Copy, limit: u64) -> Option<(u64, String)> {
    (0..limit).find_map(|seed| run_seed(seed, tweak, false).err().map(|e| (seed, e)))
}

#[test]
fn the_simulator_catches_stale_local_reads() {
    let found = find_violation(
        |cfg| {
            cfg.read_mode = ReadMode::Local;
            cfg.replicas = 3;
            *cfg = cfg.clone().hunting_stale_reads();
        },
        1000,
    );
    let (seed, violation) = found.expect("local reads should be caught");
    eprintln!("local reads: seed {seed}: {violation}");
    assert!(violation.contains("linearizable"), "{violation}");
}

#[test]
fn the_simulator_catches_an_acceptor_that_forgets_its_promises() {
    let found = find_violation(
        |cfg| {
            cfg.amnesia = true;
            cfg.crash_p = 0.05;
        },
        300,
    );
    let (seed, violation) = found.expect("amnesia should be caught");
    eprintln!("amnesia: seed {seed}: {violation}");
}

#[test]
fn the_simulator_catches_a_read_confirmed_by_a_heartbeat_sent_before_it() {
    // Planted: a read waits for the round already sent, not the next one.
    // The default schedules (both batches) must catch it.
    let found = find_violation_in_default_schedules(|cfg| {
        cfg.planted = Some(PlantedBug::ReadRoundNotAhead)
    });
    let (seed, violation) = found.expect("a read confirmed by an old round should be caught");
    eprintln!("read round not ahead: seed {seed}: {violation}");
    assert!(violation.contains("linearizable"), "{violation}");
}

#[test]
fn a_replica_that_lost_durable_records_stays_down_and_the_old_rule_is_caught() {
    // The rule: a replica whose disk lost records beyond a torn last one
    // refuses to start. Under it, frequent tail losses are safe (the
    // default schedules include them too)...
    let frequent = |cfg: &mut SimConfig| {
        *cfg = cfg.clone().crash_storm();
        cfg.tail_loss_p = 0.5;
    };
    let mut losses = 0;
    let mut lost_history = 0;
    for seed in 0..200 {
        let stats = run_seed(seed, frequent, false)
            .unwrap_or_else(|e| panic!("seed {seed} failed under the safe rule: {e}"));
        losses += stats.tail_losses;
        lost_history += stats.lost_history;
    }
    assert!(losses > 50, "only {losses} tail losses");
    // The same storm also loses snapshots and compactions that no
    // checkpoint held yet (the runtime writes checkpoints in the
    // background), safely.
    assert!(lost_history >= 3, "only {lost_history} snapshots lost");
    // ...while restarting with what is left and voting again is caught.
    let found = find_violation(
        move |cfg| {
            frequent(cfg);
            cfg.votes_after_tail_loss = true;
        },
        2000,
    );
    let (seed, violation) = found.expect("voting after losing durable records should be caught");
    eprintln!("votes after tail loss: seed {seed}: {violation}");
}

/// The first seed of the default run (batch A, then batch B) where the
/// broken variant violates a property.
fn find_violation_in_default_schedules(
    tweak: impl Fn(&mut SimConfig) + Copy,
) -> Option<(u64, String)> {
    let count = schedules(1000);
    (0..count)
        .chain(1_000_000..1_000_000 + count)
        .find_map(|seed| run_seed(seed, tweak, false).err().map(|e| (seed, e)))
}

/// Leadership changes with one lossy follower, with and without pre-vote
/// (the measurement of issue 13): `cargo test -p server --lib
/// paxos::sim::leadership_with_a_lossy_follower -- --ignored --nocapture`.
/// Timing as deployed (10 ms ticks, heartbeat 5, election 30); replica 2
/// fails that share of the messages it receives; no client load (accepts
/// would reset its timer too); nothing else goes wrong.
#[test]
#[ignore]
fn leadership_with_a_lossy_follower() {
    let (minutes, runs) = (5, 3);
    for fail_rate in [0.3, 0.6, 0.8] {
        for planted in [Some(PlantedBug::NoPreVote), None] {
            let mut changes = Vec::new();
            for seed in 0..runs {
                let mut rng = StdRng::seed_from_u64(seed);
                let mut cfg = SimConfig::base(3, &mut rng);
                cfg.fault_ticks = minutes * 6000;
                (cfg.drop_p, cfg.dup_p, cfg.max_delay, cfg.dup_delay) = (0.0, 0.0, 1, 1);
                (cfg.crash_p, cfg.pause_p, cfg.partition_p, cfg.one_way_p) = (0.0, 0.0, 0.0, 0.0);
                (cfg.jitter_p, cfg.long_delay_p, cfg.max_fail_rate) = (0.0, 0.0, 0.0);
                cfg.core.heartbeat_ticks = 5;
                cfg.core.election_ticks = 30;
                (cfg.core.snapshot_every, cfg.core.max_catchup_entries) = (1000, 256);
                cfg.heal_bound = 5000;
                // Idle: accepts would reset the lossy follower's timer too.
                cfg.clients = 0;
                cfg.planted = planted;
                let mut sim = Sim::new(seed, cfg, false);
                sim.nodes[2].fail_rate = fail_rate;
                let stats = sim.run().expect("no violation");
                changes.push(stats.leader_changes - 1);
            }
            let per_minute = changes.iter().sum::<u64>() as f64 / (runs * minutes) as f64;
            let name = if planted.is_some() {
                "before (no pre-vote)"
            } else {
                "with pre-vote"
            };
            eprintln!("fail_rate {fail_rate}, {name}: leadership changes after the first election in {runs} runs of {minutes} simulated minutes: {changes:?} ({per_minute:.2}/min)");
        }
    }
}

/// Which of the default schedules catch each planted core bug, and in
/// which profiles: `cargo test -p server --lib
/// paxos::sim::count_planted_hits -- --ignored --nocapture`.
/// `PAXOS_SIM_FIRST_SEED=<s>` shifts both windows (seeds `s..` and
/// `1_000_000 + s..`; keep `s` even so that each window keeps its mix of 3
/// and 5 replicas), to check that a bug is caught in other windows too;
/// `PAXOS_SIM_BUGS=ReadRoundNotAhead,AckOfAnyBallot` counts only those.
#[test]
#[ignore]
fn count_planted_hits() {
    let count = schedules(1000);
    let first: u64 = std::env::var("PAXOS_SIM_FIRST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let only = std::env::var("PAXOS_SIM_BUGS").unwrap_or_default();
    let bugs: Vec<PlantedBug> = [
        PlantedBug::ReadRoundNotAhead,
        PlantedBug::AckOfAnyBallot,
        PlantedBug::OwnVoteBeforeFsync,
        PlantedBug::FollowerReadBeforeApplied,
        PlantedBug::IncompletePromiseCounts,
        PlantedBug::FollowerReadJoinsInFlight,
    ]
    .into_iter()
    .filter(|bug| only.is_empty() || only.split(',').any(|b| b == format!("{bug:?}")))
    .collect();
    // One thread per bug: each line is printed when its bug is done.
    std::thread::scope(|scope| {
        for bug in bugs {
            scope.spawn(move || {
                let mut by_profile: BTreeMap<&str, u64> = BTreeMap::new();
                let hits: Vec<u64> = (first..first + count)
                    .chain(1_000_000 + first..1_000_000 + first + count)
                    .filter(|seed| {
                        let caught = run_seed(*seed, |cfg| cfg.planted = Some(bug), false).is_err();
                        if caught {
                            // A hit only if the correct core passes it.
                            if let Err(e) = run_seed(*seed, |_| {}, false) {
                                panic!("seed {seed} fails without a planted bug: {e}");
                            }
                            *by_profile.entry(config_for(*seed).profile).or_default() += 1;
                        }
                        caught
                    })
                    .collect();
                eprintln!(
                    "{bug:?} (seeds from {first}): {} hits {by_profile:?}: {hits:?}",
                    hits.len()
                );
            });
        }
    });
}

#[test]
fn the_simulator_catches_a_follower_read_served_before_its_read_index_is_applied() {
    // Planted: a follower serves as soon as it knows the read index.
    let found = find_violation_in_default_schedules(|cfg| {
        cfg.planted = Some(PlantedBug::FollowerReadBeforeApplied)
    });
    let (seed, violation) = found.expect("a follower read before its read index should be caught");
    eprintln!("follower read before applied: seed {seed}: {violation}");
    assert!(violation.contains("linearizable"), "{violation}");
}

#[test]
fn the_simulator_catches_a_follower_read_joining_the_request_in_flight() {
    // Planted: reads that arrive at a follower while its read-index
    // request is in flight join that request, whose read index the
    // coordinator may have taken before a write they must see.
    let found = find_violation_in_default_schedules(|cfg| {
        cfg.planted = Some(PlantedBug::FollowerReadJoinsInFlight)
    });
    let (seed, violation) =
        found.expect("a follower read joining the request in flight should be caught");
    eprintln!("follower read joins in flight: seed {seed}: {violation}");
    assert!(violation.contains("linearizable"), "{violation}");
}

#[test]
fn the_simulator_catches_a_coordinator_counting_its_own_vote_before_its_fsync() {
    // Planted: the accepts leave before the coordinator's own accepted
    // value is durable, and it counts its own vote at once; a crash before
    // the fsync then loses a vote that chose a value.
    let found = find_violation_in_default_schedules(|cfg| {
        cfg.planted = Some(PlantedBug::OwnVoteBeforeFsync)
    });
    let (seed, violation) = found.expect("an own vote counted before its fsync should be caught");
    eprintln!("own vote before fsync: seed {seed}: {violation}");
}

#[test]
fn the_simulator_catches_heartbeat_acks_of_an_earlier_ballot() {
    // Planted: heartbeat acks count towards a read whatever their ballot.
    // It takes the nemesis's chain (see `Chain`) to show.
    let found =
        find_violation_in_default_schedules(|cfg| cfg.planted = Some(PlantedBug::AckOfAnyBallot));
    let (seed, violation) = found.expect("acks of an earlier ballot should be caught");
    eprintln!("ack of any ballot: seed {seed}: {violation}");
    assert!(violation.contains("linearizable"), "{violation}");
}

#[test]
fn the_simulator_catches_a_candidate_that_counts_an_incomplete_promise() {
    // Tiny budgets and no compaction make long accepted histories that
    // promises report in many pieces, and crashes make candidates that lag:
    // safe as it is...
    let tiny = |cfg: &mut SimConfig| {
        cfg.core.max_message_bytes = 60;
        cfg.core.snapshot_every = 0;
        *cfg = cfg.clone().crash_storm();
    };
    for seed in 0..300 {
        if let Err(e) = run_seed(seed, tiny, false) {
            panic!("seed {seed} failed with tiny budgets: {e}");
        }
    }
    // ...while counting a promise cut short as complete (planted) is caught.
    let found = find_violation(
        move |cfg| {
            tiny(cfg);
            cfg.planted = Some(PlantedBug::IncompletePromiseCounts);
        },
        500,
    );
    let (seed, violation) = found.expect("an incomplete promise counted should be caught");
    eprintln!("incomplete promise counts: seed {seed}: {violation}");
}
