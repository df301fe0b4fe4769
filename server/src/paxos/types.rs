//! The words of the protocol: replicas, ballots, slots, log values, the
//! configuration of a replica and the role it plays.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::kv::Command;

/// Index of a replica in the configured replica list. The order is the
/// priority: replica 0 is the preferred coordinator, then 1, and so on.
pub type ReplicaId = usize;

/// Position in the replicated log. Slot 0 is never used: it stands for "nothing
/// yet" (an empty log has commit index 0).
pub type Slot = u64;

/// No real log gets near this; messages naming a higher slot are refused, so
/// that `slot + 1` never overflows.
pub const MAX_SLOT: Slot = 1 << 62;

/// Chosen by the runtime to match a reply to the request it answers.
pub type RequestId = u64;

/// A ballot number. Ballots are totally ordered by `(round, replica)`, so two
/// replicas never campaign with the same ballot. Only `replica` may propose in
/// a ballot it owns.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    pub round: u64,
    pub replica: ReplicaId,
}

impl Ballot {
    /// The ballot no one owns: every real ballot is greater. A fresh acceptor
    /// has promised it.
    pub const ZERO: Ballot = Ballot {
        round: 0,
        replica: 0,
    };

    pub fn new(round: u64, replica: ReplicaId) -> Self {
        Ballot { round, replica }
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.round, self.replica)
    }
}

/// What a log slot holds: a batch of client commands, or a no-op that a new
/// coordinator uses to fill a hole no one accepted anything for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    NoOp,
    Batch(Vec<Command>),
}

/// How the coordinator answers `Get` (the type all crates share; pure data).
pub use paxoskv::ReadMode;

/// Tunables of one replica. Times are in ticks: the runtime calls
/// [`Replica::tick`](super::Replica::tick) at a fixed interval (e.g. 10 ms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// The coordinator sends heartbeats (and re-sends unanswered prepares and
    /// accepts) every this many ticks.
    pub heartbeat_ticks: u64,
    /// A follower that has not heard from the coordinator (nor from any
    /// higher-priority replica) for this many ticks starts phase 1; lower
    /// priority replicas wait `heartbeat_ticks * 2` more ticks per rank so
    /// that the highest-priority live replica normally wins without a duel.
    /// A coordinator that has not heard from a majority for this many ticks
    /// steps down (check-quorum), so requests do not hang on a minority.
    pub election_ticks: u64,
    /// How `Get` is answered.
    pub read_mode: ReadMode,
    /// At most this many client commands in one slot.
    pub max_batch: usize,
    /// At most this many proposed but not yet chosen slots.
    pub max_inflight_slots: u64,
    /// Take a snapshot and compact the log every this many applied slots
    /// (0: never).
    pub snapshot_every: u64,
    /// At most this many chosen entries in one catch-up message; a follower
    /// further behind than the oldest entry still in the log gets a snapshot.
    pub max_catchup_entries: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat_ticks: 2,
            election_ticks: 10,
            read_mode: ReadMode::Quorum,
            max_batch: 64,
            max_inflight_slots: 16,
            snapshot_every: 1000,
            max_catchup_entries: 256,
        }
    }
}

/// The role a replica plays right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Acceptor and learner only; forwards client requests.
    Follower,
    /// Running phase 1 for its own ballot.
    Candidate,
    /// Phase 1 done: the only proposer, and the distinguished learner.
    Coordinator,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Coordinator => "coordinator",
        };
        f.write_str(s)
    }
}

/// The number of votes that make a majority of `n` replicas.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}
