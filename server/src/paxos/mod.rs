//! The Multi-Paxos core: a pure, deterministic state machine.
//!
//! No I/O, no clocks, no threads, no randomness: the runtime feeds inputs in
//! and carries outputs out, so the same inputs always give the same outputs
//! (which is what lets the simulator replay thousands of schedules).
//!
//! # Roles
//! Every replica is an acceptor ([`acceptor`]) and a learner ([`learner`]).
//! The coordinator — normally the first live replica in the configured order —
//! is the only proposer and the distinguished learner ([`coordinator`]): a new
//! coordinator runs phase 1 once for all open slots, adopts the highest
//! accepted value per slot, fills holes with no-ops, then runs phase 2 per slot,
//! batching client commands (`max_batch` per slot) and pipelining
//! (`max_inflight_slots` slots in flight). It broadcasts what is chosen and
//! catches up replicas that are behind (log entries, or a snapshot when the
//! entries were compacted), one catch-up in flight per replica: the next
//! goes out when the replica's heartbeat answer shows the last one arrived,
//! or after `2 * heartbeat_ticks` without it (presumed lost).
//!
//! Every message is bounded by bytes (`max_message_bytes`): batches and
//! catch-ups are cut at the budget, a snapshot travels in chunks installed
//! atomically once complete ([`snapshot_transfer`]; two chunks per
//! catch-up, window after window, so that the runtime's bounded queue to a
//! peer never has to drop them), and a promise reports
//! its accepted values in pieces (the candidate asks again from where a
//! piece stopped, and counts the promise once complete); an acceptor whose
//! snapshot a candidate needs sends it in chunks first and promises once
//! asked again from beyond it.
//!
//! # How the runtime drives a [`Replica`]
//! ```text
//! let restored = <load PersistentState from disk, or default() if fresh>;
//! let mut replica = Replica::new(my_id, replica_count, config, restored)?;
//! loop {
//!     select! {
//!         every tick interval        => replica.tick(),
//!         peer message (from, msg)   => replica.step(from, msg)  // Err: log, ignore
//!         client request (id, cmd)   => replica.submit(id, cmd),
//!     }
//!     let ready = replica.ready();
//!     0. send ready.send_now at once (they depend on no write);
//!     1. write every ready.persist item, in order, and fsync;
//!     2. only then send ready.messages (best effort: a failed send is a
//!        lost message, which the protocol tolerates; one addressed to this
//!        replica itself, its own vote, goes back into step(my_id, msg))
//!        and deliver ready.replies to the waiting clients (with several
//!        replicas the replies may go before step 1, see `Ready`).
//! }
//! ```
//! - **Persist before send.** A `Ready`'s messages may depend on its writes
//!   (a promise, an accepted value). Sending them before the fsync lets a
//!   crash break a promise. `send_now` holds those that depend on none
//!   (the coordinator's accepts, chosen and heartbeats), so a follower's
//!   fsync of an accepted value overlaps the coordinator's; the
//!   coordinator's own vote counts only when its `Accepted` to itself comes
//!   back after the fsync. Replies may go at once when there is more than
//!   one replica (they depend only on votes a majority made durable, see
//!   [`Ready`]). Several inputs may be handled before calling `ready()`
//!   (that is how batches form).
//! - **Restoring.** Apply every [`StorageWrite`] in order to a
//!   [`PersistentState`] (see [`PersistentState::apply`]), or store the
//!   equivalent: promise, accepted (slot → ballot, value), chosen (slot →
//!   value), latest snapshot, and delete entries `<= through` on
//!   `Compact { through }`. After a crash, `Replica::new(.., restored)` with
//!   what reached the disk is safe. Writes of one `Ready` that did not all
//!   reach the disk are fine too, provided none of its messages went out.
//! - **Senders.** `from` in `step(from, msg)` is the sender's index in the
//!   replica list; carry it in the envelope of every peer message (prepares,
//!   accepts and heartbeats from a replica that does not own their ballot are
//!   refused).
//! - **fail_rate.** To make an acceptor fail a message, simply do not call
//!   `step` for it.
//! - **Client requests.** `submit(request_id, command)`; the answer comes back
//!   in some later `Ready::replies` with the same id. Every submitted request
//!   is answered exactly once while the process lives (unless cancelled, below):
//!   - `Ok(Executed { result, slot })`: applied (writes: exactly once, via
//!     the session table, in log slot `slot`; reads: linearizable in
//!     [`ReadMode::Quorum`], slot 0).
//!   - `Err(NotLeader { leader_hint })`: this replica is not the coordinator
//!     (or stopped being it before proposing): **not applied**. Forward the
//!     request to `leader_hint`, or let the client retry.
//!   - `Err(OutcomeUnknown { .. })`: proposed, then leadership was lost: it
//!     may or may not take effect; a retry with the same `(client_id, seq)`
//!     is safe.
//!   - `Err(Stale(..))`: the client reused an old sequence number.
//!
//!   [`Replica::cancel`] is the exception: when a client has gone (its
//!   deadline passed, it cancelled the RPC), the runtime cancels its
//!   requests; those still queued at the coordinator are dropped before
//!   they are proposed, and cancelled requests get no answer.
//!
//!   Reads (`Op::Get`) carry a `(client_id, seq)` like writes, but never
//!   touch the session table. A retry of a write that is already applied is
//!   answered at once with its cached result; a retry of one that is queued
//!   or in flight joins it and gets the same answer (it is not proposed
//!   twice). When the coordinator loses its majority, pending requests are
//!   answered within `election_ticks` (check-quorum, quorum read mode: `NotLeader` for those
//!   not yet proposed, `OutcomeUnknown` for the others); the runtime should
//!   still apply its own client deadline.
//! - **Status.** [`Replica::status`] gives role, promised ballot, leader,
//!   commit and applied index, and the state machine [`digest`](Replica::digest).
//! - **Timing.** Suggested: tick every 10 ms, `heartbeat_ticks: 5` (50 ms),
//!   `election_ticks: 30` (300 ms). Ticks only need to be roughly regular;
//!   a paused process simply ticks late, which the protocol tolerates.
//!
//! # Leadership
//! A follower that hears no coordinator heartbeat for `election_ticks` (plus
//! `2 * heartbeat_ticks` per rank below the top, so that the first live
//! replica normally campaigns alone) first asks for a **pre-vote**: "would
//! you promise my next ballot?". Nothing is promised or persisted; a replica
//! says yes only if it does not hear a live coordinator itself, and a yes
//! does not reset its own election timer. Only with a majority's yes does
//! the replica start phase 1. So a replica that merely lost touch (a lossy
//! link, a listener that receives nothing) can neither raise the promises
//! that would depose a coordinator the others still hear, nor keep resetting
//! the others' timers with prepares nobody can answer.
//!
//! A higher-priority replica that comes back follows the current
//! coordinator until its log has caught up with the coordinator's announced
//! commit index **and** it has heard every heartbeat for `3 *
//! election_ticks` (hysteresis: a flaky one does not make leadership flap),
//! then asks for a takeover pre-vote, which replicas grant to a replica that
//! outranks their coordinator, and takes over. A coordinator steps down at
//! once when it sees a higher ballot, and (in [`ReadMode::Quorum`]) when it
//! has not heard from a majority for `election_ticks` (check-quorum, so that its pending requests
//! are answered; what keeps a deposed coordinator from deciding anything is
//! the acceptors' promises, not this timer).
//!
//! # Reads
//! [`ReadMode::Quorum`] (read-index): a `Get` is answered once a majority has
//! acknowledged, in the coordinator's ballot, a heartbeat sent after the read
//! arrived, and the log is applied up to the last slot proposed when it
//! arrived. A follower that hears a live coordinator serves a `Get` itself
//! with a read index obtained from the coordinator ([`read_index`]).
//! [`ReadMode::Local`] answers at once from local state and turns
//! check-quorum off: the original C++ project's unsafe behaviour (a coordinator cut off by a
//! partition serves stale reads until it sees a higher ballot), kept so the
//! harness can catch it.
//!
//! # Tests
//! `scenarios` tells the protocol as stories (a deposed coordinator waking up,
//! a hole filled with a no-op, a returning replica catching up before it
//! takes over, a lossy follower that cannot depose a healthy coordinator...).
//! `sim` runs 2000 random schedules per `cargo test` over 3 and 5 replicas
//! with a hostile network (clients included), crashes (some losing durable
//! records), pauses and jittered clocks, and checks agreement, a leader
//! while a majority is healthy, liveness after healing, exactly-once and
//! linearizable reads; `PAXOS_SIM_SCHEDULES=n` runs more, and a failing seed
//! prints its replay command. Bugs planted behind a test-only switch
//! (`PlantedBug`) show that the tests catch them.

pub mod acceptor;
pub mod coordinator;
pub mod learner;
pub mod messages;
pub mod read_index;
pub mod ready;
pub mod replica;
pub mod snapshot_transfer;
pub mod storage;
pub mod types;

#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod sim;

pub use messages::{AcceptedEntry, ChosenEntry, Message};
pub use ready::{Executed, Ready, Reply, RequestError};
pub use replica::{ConfigError, Replica, Status, StepError};
pub use storage::{PersistentState, Snapshot, StorageWrite};
pub use types::{Ballot, Config, ReadMode, ReplicaId, RequestId, Role, Slot, Value, MAX_SLOT};

pub use crate::kv::{Command, KvStore, Op, OpResult, StaleCommand};
