//! State of a replica that leads: a [`Candidate`] running phase 1, then a
//! [`Coordinator`] running phase 2 per slot and serving reads.
//!
//! These are plain data with small helpers (vote counting, read
//! confirmation); [`Replica`](super::Replica) drives them, because every
//! transition also involves the local acceptor and learner.

use std::collections::{BTreeMap, VecDeque};

use super::messages::{AcceptedEntry, ChosenEntry};
use super::storage::Snapshot;
use super::types::{majority, Ballot, ReplicaId, RequestId, Slot, Value};
use crate::kv::Command;

/// What one acceptor answered to our prepare.
#[derive(Debug)]
pub struct PromiseInfo {
    pub accepted: Vec<AcceptedEntry>,
    pub chosen: Vec<ChosenEntry>,
    pub snapshot: Option<Snapshot>,
}

/// A replica running phase 1 for `ballot`.
#[derive(Debug)]
pub struct Candidate {
    pub ballot: Ballot,
    /// Phase 1 covers every slot from here on (our commit index + 1 when we
    /// started).
    pub first_slot: Slot,
    /// Promises received, own included.
    pub promises: BTreeMap<ReplicaId, PromiseInfo>,
    /// Ticks since the campaign started.
    pub elapsed: u64,
}

/// A value proposed in the current ballot and not yet chosen.
#[derive(Debug)]
pub struct Proposal {
    pub value: Value,
    /// `votes[r]`: replica r accepted it in our ballot.
    pub votes: Vec<bool>,
}

impl Proposal {
    pub fn vote_count(&self) -> usize {
        self.votes.iter().filter(|v| **v).count()
    }
}

/// A `Get` waiting for the read-index conditions.
#[derive(Debug)]
pub struct PendingRead {
    pub request_id: RequestId,
    pub key: String,
    /// Last slot the coordinator had proposed (or recovered) when the read
    /// arrived: every write acknowledged before the read is at or below it.
    pub read_index: Slot,
    /// The first heartbeat round sent after the read arrived; a majority must
    /// acknowledge this round (or a later one) in our ballot.
    pub round: u64,
}

/// A catch-up (chosen entries or a snapshot) sent to a lagging replica and
/// not yet seen to arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchUpSent {
    /// The last slot it covers: once the replica reports a commit index at
    /// least this high, it arrived.
    pub through: Slot,
    /// Ticks since it was sent: after a timeout it counts as lost.
    pub age: u64,
}

/// A replica that completed phase 1 for `ballot`: the only proposer.
#[derive(Debug)]
pub struct Coordinator {
    pub ballot: Ballot,
    /// The next slot to propose into.
    pub next_slot: Slot,
    /// Proposed, not yet known chosen.
    pub inflight: BTreeMap<Slot, Proposal>,
    /// Client commands not yet proposed (the next batches).
    pub queue: VecDeque<(RequestId, Command)>,
    /// Proposed commands waiting for their slot to be applied.
    pub waiting: BTreeMap<Slot, Vec<(RequestId, Command)>>,
    /// Every command in `queue` or `waiting`, by `(client_id, seq)`, with the
    /// ids of later requests for the same command (client retries). A retry
    /// joins the first request and gets the same answer instead of being
    /// proposed again: retries must not multiply the load.
    pub retries: BTreeMap<(u64, u64), Vec<RequestId>>,
    /// Reads waiting for confirmation and for the log to be applied.
    pub reads: Vec<PendingRead>,
    /// Number of the last heartbeat round sent.
    pub read_round: u64,
    /// A read arrived since the last heartbeat: send a round now.
    pub round_needed: bool,
    /// Per replica, the highest heartbeat round it acknowledged in our ballot
    /// (our own entry is the last round sent).
    pub acked_round: Vec<u64>,
    /// Per replica, ticks since it last answered us in our ballot
    /// (check-quorum).
    pub silent_ticks: Vec<u64>,
    /// Per replica, the commit index it last reported.
    pub follower_commit: Vec<Slot>,
    /// Per replica, the catch-up in flight to it, if any: at most one at a
    /// time, so a replica far behind is not flooded with a catch-up per
    /// heartbeat answer.
    pub catchup: Vec<Option<CatchUpSent>>,
    /// Ticks since the last heartbeat.
    pub heartbeat_elapsed: u64,
}

impl Coordinator {
    pub fn new(ballot: Ballot, n: usize, next_slot: Slot) -> Self {
        Coordinator {
            ballot,
            next_slot,
            inflight: BTreeMap::new(),
            queue: VecDeque::new(),
            waiting: BTreeMap::new(),
            retries: BTreeMap::new(),
            reads: Vec::new(),
            read_round: 0,
            round_needed: false,
            acked_round: vec![0; n],
            silent_ticks: vec![0; n],
            follower_commit: vec![0; n],
            catchup: vec![None; n],
            heartbeat_elapsed: 0,
        }
    }

    /// The highest heartbeat round acknowledged by a majority (own included).
    pub fn confirmed_round(&self) -> u64 {
        let mut rounds = self.acked_round.clone();
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        rounds[majority(rounds.len()) - 1]
    }

    /// Does a majority (own included) still answer us?
    pub fn has_quorum(&self, me: ReplicaId, election_ticks: u64) -> bool {
        let live = self
            .silent_ticks
            .iter()
            .enumerate()
            .filter(|(r, t)| *r == me || **t < election_ticks)
            .count();
        live >= majority(self.silent_ticks.len())
    }
}
