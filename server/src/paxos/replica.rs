//! [`Replica`]: one member of the cluster, gluing acceptor, learner and (when it
//! leads) coordinator together behind the `step` / `tick` / `submit` / `ready`
//! interface described in the [module docs](super).

use std::mem;

use super::acceptor::Acceptor;
#[cfg(test)]
use super::coordinator::PlantedBug;
use super::coordinator::{Candidate, Coordinator, Deposed, Local, PromiseInfo};
use super::learner::Learner;
use super::messages::{ChosenEntry, Message};
use super::read_index::FollowerReads;
use super::ready::{push_to_others, Ready, Reply, RequestError};
use super::snapshot_transfer::{self, BadChunk, Chunk, SnapshotReceiver};
use super::storage::{PersistentState, Snapshot};
use super::types::{
    majority, Ballot, Config, ReadMode, ReplicaId, RequestId, Role, Slot, Value, MAX_SLOT,
};
use crate::kv::{Command, KvStore, Op};

/// A configuration the core refuses to run with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("replica count must be between 1 and 64, got {0}")]
    ReplicaCount(usize),
    #[error("replica id {id} is out of range for {count} replicas")]
    ReplicaId { id: ReplicaId, count: usize },
    #[error("heartbeat_ticks must be at least 1 and election_ticks greater than it (got {heartbeat_ticks} and {election_ticks})")]
    Timing {
        heartbeat_ticks: u64,
        election_ticks: u64,
    },
    #[error("max_batch and max_inflight_slots and max_catchup_entries must be at least 1")]
    Limits,
}

/// A message the core refused. The runtime should log it and carry on: it
/// came from the network and changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("message from unknown replica {from} (the cluster has {count})")]
    UnknownReplica { from: ReplicaId, count: usize },
    #[error("message claims to come from this replica itself")]
    FromSelf,
    #[error("ballot {ballot} names a replica outside the cluster")]
    BadBallot { ballot: Ballot },
    #[error("{kind} of ballot {ballot} sent by replica {from}, which does not own that ballot")]
    NotBallotOwner {
        kind: &'static str,
        ballot: Ballot,
        from: ReplicaId,
    },
    #[error("slot 0 is not a log slot")]
    SlotZero,
    #[error("slot {slot} is beyond any plausible log (limit {limit})", limit = MAX_SLOT)]
    SlotOutOfRange { slot: Slot },
    #[error(transparent)]
    BadChunk(#[from] BadChunk),
}

/// A snapshot of a replica's state for status reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: ReplicaId,
    pub role: Role,
    /// Highest ballot this replica has promised (as acceptor).
    pub promised: Ballot,
    /// The ballot this replica leads or campaigns with, if any.
    pub own_ballot: Option<Ballot>,
    /// The coordinator as far as this replica knows (itself when leading).
    pub leader: Option<ReplicaId>,
    pub commit_index: Slot,
    pub applied_index: Slot,
    pub snapshot_slot: Slot,
    pub digest: u64,
}

/// A pre-vote in progress: we would campaign with `ballot` and count who
/// said yes.
struct PreVoting {
    ballot: Ballot,
    takeover: bool,
    granted: std::collections::BTreeSet<ReplicaId>,
    /// Ticks since we asked: after an election timeout we ask again.
    elapsed: u64,
}

enum RoleState {
    Follower,
    Candidate(Candidate),
    Coordinator(Box<Coordinator>),
}

/// One replica of the Multi-Paxos log and its key-value state machine.
pub struct Replica {
    id: ReplicaId,
    n: usize,
    config: Config,
    acceptor: Acceptor,
    learner: Learner,
    role: RoleState,
    /// The coordinator we last heard a heartbeat from (`None` after a step
    /// down or while someone campaigns).
    leader: Option<ReplicaId>,
    /// The candidate we last promised (while no coordinator is heard): a
    /// campaign in progress, as long as its prepares keep coming (they
    /// reset `election_elapsed`). Phase 1 can take many round trips when
    /// promises come in pieces; a pre-vote for another candidate meanwhile
    /// would start a duel that neither finishes.
    campaigner: Option<ReplicaId>,
    /// The commit index that coordinator announced: when ours reaches it a
    /// higher-priority replica knows it has caught up and may take over.
    leader_commit: Slot,
    /// Ticks since we last heard from a live coordinator (or granted a
    /// prepare; granting a pre-vote does not count).
    election_elapsed: u64,
    /// Ticks we have followed `leader` without missing a heartbeat: a
    /// higher-priority replica takes over only once this is long enough, so
    /// that a flaky one does not make leadership flap.
    steady_ticks: u64,
    /// The pre-vote we are asking for, if any.
    prevote: Option<PreVoting>,
    /// Highest round seen in any ballot: a new campaign goes above it.
    max_round_seen: u64,
    /// Reads served here as a follower, with a read index from the
    /// coordinator ([`super::read_index`]).
    follower_reads: FollowerReads,
    /// A snapshot arriving in chunks ([`super::snapshot_transfer`]).
    snapshot_in: SnapshotReceiver,
    /// Ticks since start, and per replica the snapshot we are sending it
    /// instead of a promise: its slot, when the last window of chunks went
    /// out, and where the next one starts.
    ticks: u64,
    snapshot_sent: Vec<Option<(Slot, u64, usize)>>,
    /// Output accumulated since the last `ready()`.
    out: Ready,
    /// Every slot applied, in order, with its value (snapshot installs show as
    /// a jump): the simulator checks these against each other.
    #[cfg(test)]
    pub(crate) applied_log: Vec<AppliedEvent>,
    /// A deliberate bug, to show that the tests catch it.
    #[cfg(test)]
    pub(crate) planted: Option<PlantedBug>,
}

impl Replica {
    /// Start replica `id` of `replica_count` from what it persisted
    /// (`PersistentState::default()` for a brand-new replica). It starts as a
    /// follower; restoring may already produce writes (a snapshot) in the
    /// first `ready()`.
    pub fn new(
        id: ReplicaId,
        replica_count: usize,
        config: Config,
        restored: PersistentState,
    ) -> Result<Self, ConfigError> {
        if replica_count == 0 || replica_count > 64 {
            return Err(ConfigError::ReplicaCount(replica_count));
        }
        if id >= replica_count {
            return Err(ConfigError::ReplicaId {
                id,
                count: replica_count,
            });
        }
        if config.heartbeat_ticks == 0 || config.election_ticks <= config.heartbeat_ticks {
            return Err(ConfigError::Timing {
                heartbeat_ticks: config.heartbeat_ticks,
                election_ticks: config.election_ticks,
            });
        }
        if config.max_batch == 0
            || config.max_inflight_slots == 0
            || config.max_catchup_entries == 0
        {
            return Err(ConfigError::Limits);
        }
        let learner = Learner::restore(&restored);
        let mut accepted = restored.accepted;
        let accepted = accepted.split_off(&(learner.snapshot_slot() + 1));
        let mut replica = Replica {
            id,
            n: replica_count,
            config,
            acceptor: Acceptor::restore(restored.promised, accepted),
            learner,
            role: RoleState::Follower,
            leader: None,
            campaigner: None,
            leader_commit: 0,
            election_elapsed: 0,
            steady_ticks: 0,
            prevote: None,
            max_round_seen: restored.promised.round,
            follower_reads: FollowerReads::default(),
            snapshot_in: SnapshotReceiver::default(),
            ticks: 0,
            snapshot_sent: vec![None; replica_count],
            out: Ready::default(),
            #[cfg(test)]
            applied_log: Vec::new(),
            #[cfg(test)]
            planted: None,
        };
        replica.apply_committed();
        Ok(replica)
    }

    // ----- inputs -------------------------------------------------------

    /// Handle a message received from replica `from`. An `Err` means the
    /// message was malformed and ignored.
    pub fn step(&mut self, from: ReplicaId, msg: Message) -> Result<(), StepError> {
        if from >= self.n {
            return Err(StepError::UnknownReplica {
                from,
                count: self.n,
            });
        }
        // The one message a replica sends itself: the coordinator's own
        // vote, handed back by the runtime once it is durable (see `Ready`).
        if from == self.id && !matches!(msg, Message::Accepted { .. }) {
            return Err(StepError::FromSelf);
        }
        if let Some(ballot) = msg.ballot() {
            if ballot.replica >= self.n {
                return Err(StepError::BadBallot { ballot });
            }
        }
        let slot = msg.highest_slot();
        if slot > MAX_SLOT {
            return Err(StepError::SlotOutOfRange { slot });
        }
        match &msg {
            Message::PreVote { ballot, .. }
            | Message::Prepare { ballot, .. }
            | Message::Accept { ballot, .. }
            | Message::Heartbeat { ballot, .. }
            | Message::ReadIndexReply { ballot, .. }
                if ballot.replica != from =>
            {
                return Err(StepError::NotBallotOwner {
                    kind: msg.kind(),
                    ballot: *ballot,
                    from,
                });
            }
            Message::Accept { slot: 0, .. } => return Err(StepError::SlotZero),
            Message::Prepare { .. } if self.ignores_prepare_from(from) => return Ok(()),
            _ => {}
        }
        if let Some(ballot) = msg.ballot() {
            self.max_round_seen = self.max_round_seen.max(ballot.round);
            // A leader that learns of a higher ballot steps down at once.
            if self.own_ballot().is_some_and(|own| ballot > own) {
                self.step_down(Some(ballot.replica));
            }
        }
        match msg {
            Message::PreVote { ballot, takeover } => self.on_prevote(from, ballot, takeover),
            Message::PreVoteReply { ballot, granted } => {
                self.on_prevote_reply(from, ballot, granted)
            }
            Message::Prepare { ballot, first_slot } => self.on_prepare(from, ballot, first_slot),
            Message::Promise {
                ballot,
                accepted,
                chosen,
                commit_index: _,
                snapshot,
                accepted_through,
            } => self.on_promise(
                from,
                ballot,
                PromiseInfo {
                    accepted,
                    chosen,
                    snapshot,
                    accepted_through,
                },
            ),
            Message::Accept {
                ballot,
                slot,
                value,
            } => self.on_accept(from, ballot, slot, value),
            Message::Accepted { ballot, slot } => {
                if let Some((c, mut local)) = self.lead() {
                    c.on_accepted(from, ballot, slot, &mut local);
                    self.apply_committed();
                }
            }
            // The step-down above is all a rejection means.
            Message::Rejected { .. } => {}
            Message::Chosen { entries } => self.on_chosen(entries),
            Message::Heartbeat {
                ballot,
                commit_index,
                read_round,
            } => self.on_heartbeat(from, ballot, commit_index, read_round),
            Message::HeartbeatAck {
                ballot,
                read_round,
                commit_index,
            } => {
                if let Some((c, mut local)) = self.lead() {
                    c.on_heartbeat_ack(from, ballot, read_round, commit_index, &mut local);
                }
            }
            Message::CatchUp { first_slot } => {
                self.local().send_catch_up(from, first_slot);
            }
            Message::Snapshot { snapshot } => self.on_snapshot(snapshot),
            Message::SnapshotChunk {
                last_slot,
                total_bytes,
                offset,
                data,
            } => {
                let installed = self.learner.commit_index();
                let chunk = Chunk {
                    last_slot,
                    total: total_bytes,
                    offset,
                    data,
                };
                let done = self.snapshot_in.on_chunk(from, chunk, installed)?;
                if let Some(snapshot) = done {
                    self.on_snapshot(snapshot);
                }
            }
            Message::ReadIndex { incarnation, id } => {
                if let Some((c, mut local)) = self.lead() {
                    c.on_read_index(from, incarnation, id, &mut local);
                }
            }
            Message::ReadIndexReply {
                incarnation,
                id,
                read_index,
                ..
            } => {
                self.follower_reads
                    .on_reply(from, incarnation, id, read_index);
                self.serve_follower_reads();
            }
        }
        Ok(())
    }

    /// Advance logical time by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        let election_timeout = self.election_timeout();
        let heartbeat_ticks = self.config.heartbeat_ticks;
        let hint = self.leader_hint();
        self.follower_reads
            .tick(self.config.election_ticks, hint, &mut self.out);
        match &mut self.role {
            RoleState::Follower => {
                self.election_elapsed += 1;
                if self.election_elapsed > 2 * heartbeat_ticks {
                    self.steady_ticks = 0;
                } else if self.leader.is_some() {
                    self.steady_ticks += 1;
                }
                match &mut self.prevote {
                    Some(p) => {
                        p.elapsed += 1;
                        if p.elapsed >= election_timeout {
                            self.maybe_prevote();
                        }
                    }
                    None => self.maybe_prevote(),
                }
            }
            RoleState::Candidate(c) => {
                c.elapsed += 1;
                if c.elapsed >= election_timeout {
                    // The campaign failed: ask again before the next one.
                    self.step_down(None);
                    self.election_elapsed = election_timeout;
                    self.maybe_prevote();
                } else if c.elapsed % heartbeat_ticks == 0 {
                    // Ask again those that did not answer, or whose answer
                    // is still incomplete (from where it stopped).
                    // Slots we have learned since need no report (phase 1
                    // recovers only slots above our commit index), so we
                    // ask from beyond them: an acceptor that sent us its
                    // snapshot instead of a promise now promises.
                    let ballot = c.ballot;
                    let known = self.learner.commit_index() + 1;
                    let asks: Vec<_> = (0..self.n)
                        .filter_map(|r| match c.promises.get(&r) {
                            None => Some((r, c.first_slot.max(known))),
                            Some(p) => p.accepted_through.map(|s| (r, (s + 1).max(known))),
                        })
                        .collect();
                    for (r, first_slot) in asks {
                        self.send(r, Message::Prepare { ballot, first_slot });
                    }
                }
            }
            RoleState::Coordinator(_) => {
                if let Some((c, mut local)) = self.lead() {
                    let result = c.tick(&mut local);
                    self.deposed_if(result);
                }
            }
        }
    }

    /// A client command. Writes are queued for the next batch; reads follow
    /// the read mode. At a replica that is not the coordinator the answer is
    /// [`RequestError::NotLeader`] (the runtime forwards the request).
    pub fn submit(&mut self, request_id: RequestId, command: Command) {
        let hint = self.leader_hint();
        if let (RoleState::Follower, Some(_), ReadMode::Quorum, Op::Get { key }) = (
            &self.role,
            self.live_leader(),
            self.config.read_mode,
            &command.op,
        ) {
            self.follower_reads.submit(request_id, key.clone());
            return;
        }
        if !matches!(self.role, RoleState::Coordinator(_)) {
            self.reply(
                request_id,
                Err(RequestError::NotLeader { leader_hint: hint }),
            );
            return;
        }
        if let Some((c, mut local)) = self.lead() {
            c.submit(request_id, command, &mut local);
        }
    }

    /// The clients of these requests are gone (deadline passed, RPC
    /// cancelled): commands and reads of theirs that are still queued at
    /// the coordinator, or reads waiting at a follower for a read index, are dropped before they are proposed, and those
    /// requests get no answer. Requests already proposed (or unknown) are
    /// unaffected. Returns how many queued requests were dropped.
    pub fn cancel(&mut self, request_ids: &std::collections::BTreeSet<RequestId>) -> usize {
        let at_follower = self.follower_reads.cancel(request_ids);
        at_follower
            + match &mut self.role {
                RoleState::Coordinator(c) => c.cancel(request_ids),
                _ => 0,
            }
    }

    /// Change how reads are answered (takes effect for reads submitted later).
    pub fn set_read_mode(&mut self, mode: ReadMode) {
        self.config.read_mode = mode;
    }

    // ----- output -------------------------------------------------------

    /// Turn queued commands into proposals, then hand over everything to
    /// persist, send and reply. Persist first, then send and reply.
    pub fn ready(&mut self) -> Ready {
        self.flush();
        let leader = match self.role {
            RoleState::Follower => self.live_leader(),
            _ => None,
        };
        #[allow(unused_mut)]
        let mut join_in_flight = false;
        #[cfg(test)]
        if self.planted == Some(PlantedBug::FollowerReadJoinsInFlight) {
            join_in_flight = true;
        }
        self.follower_reads.flush(
            leader,
            self.config.heartbeat_ticks,
            &mut self.out,
            join_in_flight,
        );
        mem::take(&mut self.out)
    }

    /// Distinguish this run of the replica from every earlier one (call once
    /// after [`Replica::new`] with a number no earlier start used, e.g. the
    /// start time in nanoseconds): follower read requests carry it, so that
    /// a delayed answer to a request of an earlier run is never taken for
    /// the answer to a new one.
    pub fn set_incarnation(&mut self, incarnation: u64) {
        self.follower_reads.set_incarnation(incarnation);
    }

    // ----- status -------------------------------------------------------

    pub fn id(&self) -> ReplicaId {
        self.id
    }

    /// Number of replicas in the cluster.
    pub fn replica_count(&self) -> usize {
        self.n
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn role(&self) -> Role {
        match self.role {
            RoleState::Follower => Role::Follower,
            RoleState::Candidate(_) => Role::Candidate,
            RoleState::Coordinator(_) => Role::Coordinator,
        }
    }

    /// The coordinator as far as this replica knows.
    pub fn leader(&self) -> Option<ReplicaId> {
        match self.role {
            RoleState::Coordinator(_) => Some(self.id),
            RoleState::Candidate(_) => None,
            RoleState::Follower => self.leader,
        }
    }

    pub fn commit_index(&self) -> Slot {
        self.learner.commit_index()
    }

    pub fn applied_index(&self) -> Slot {
        self.learner.applied()
    }

    /// The state machine (read-only).
    pub fn kv(&self) -> &KvStore {
        self.learner.kv()
    }

    /// Digest of the state machine (see [`KvStore::digest`]).
    pub fn digest(&self) -> u64 {
        self.learner.kv().digest()
    }

    pub fn status(&self) -> Status {
        Status {
            id: self.id,
            role: self.role(),
            promised: self.acceptor.promised(),
            own_ballot: self.own_ballot(),
            leader: self.leader(),
            commit_index: self.learner.commit_index(),
            applied_index: self.learner.applied(),
            snapshot_slot: self.learner.snapshot_slot(),
            digest: self.digest(),
        }
    }

    // ----- leadership ---------------------------------------------------

    fn own_ballot(&self) -> Option<Ballot> {
        match &self.role {
            RoleState::Follower => None,
            RoleState::Candidate(c) => Some(c.ballot),
            RoleState::Coordinator(c) => Some(c.ballot()),
        }
    }

    fn leader_hint(&self) -> Option<ReplicaId> {
        self.leader().filter(|l| *l != self.id)
    }

    /// Lower-priority replicas wait longer, so the first live replica in the
    /// configured order normally campaigns first and alone.
    fn election_timeout(&self) -> u64 {
        self.config.election_ticks + self.id as u64 * 2 * self.config.heartbeat_ticks
    }

    /// A higher-priority replica takes over from a live lower-priority
    /// coordinator only once it has applied everything the coordinator
    /// announced as chosen, so a replica coming back does not stall the
    /// cluster while it catches up.
    fn may_take_over(&self) -> bool {
        match self.leader {
            Some(leader) => {
                leader > self.id
                    && self.election_elapsed < self.config.election_ticks
                    && (self.steady_ticks >= self.takeover_ticks() || self.no_prevote())
                    && self.learner.commit_index() >= self.leader_commit
                    && self.learner.applied() == self.learner.commit_index()
            }
            None => false,
        }
    }

    /// How long a higher-priority replica must have heard the coordinator
    /// without a miss before it takes over (hysteresis).
    fn takeover_ticks(&self) -> u64 {
        3 * self.config.election_ticks
    }

    /// The planted bug that restores the behaviour before pre-vote.
    fn no_prevote(&self) -> bool {
        #[cfg(test)]
        return self.planted == Some(PlantedBug::NoPreVote);
        #[cfg(not(test))]
        false
    }

    /// The coordinator we hear, if it is live: ourselves when leading, the
    /// one whose heartbeats reach us as a follower.
    fn live_leader(&self) -> Option<ReplicaId> {
        match self.role {
            RoleState::Coordinator(_) => Some(self.id),
            RoleState::Candidate(_) => None,
            RoleState::Follower => self
                .leader
                .filter(|_| self.election_elapsed < self.config.election_ticks),
        }
    }

    /// As a follower: start (or restart) a pre-vote when the coordinator
    /// went silent, or when we may take over; give up one that is no longer
    /// needed.
    fn maybe_prevote(&mut self) {
        #[cfg(test)]
        if self.planted == Some(PlantedBug::NoPreVote) {
            if self.election_elapsed >= self.election_timeout() || self.may_take_over() {
                self.campaign();
            }
            return;
        }
        let takeover = if self.election_elapsed >= self.election_timeout() {
            false
        } else if self.may_take_over() {
            true
        } else {
            self.prevote = None;
            return;
        };
        let round = self.max_round_seen.max(self.acceptor.promised().round) + 1;
        let ballot = Ballot::new(round, self.id);
        self.prevote = Some(PreVoting {
            ballot,
            takeover,
            granted: std::iter::once(self.id).collect(),
            elapsed: 0,
        });
        self.broadcast(Message::PreVote { ballot, takeover });
        self.maybe_campaign();
    }

    /// Campaign once a majority said yes to our pre-vote.
    fn maybe_campaign(&mut self) {
        if self
            .prevote
            .as_ref()
            .is_some_and(|p| p.granted.len() >= majority(self.n))
        {
            self.campaign();
        }
    }

    /// Would we promise `ballot` to `from`? Yes if no coordinator we hear is
    /// live, or if `from` outranks it and asks to take over. A yes changes
    /// nothing here (no promise, no timer reset): it is only advice.
    fn on_prevote(&mut self, from: ReplicaId, ballot: Ballot, takeover: bool) {
        let promised = self.acceptor.promised();
        if ballot < promised {
            // Tell it the ballot to beat.
            self.send(from, Message::Rejected { ballot, promised });
            return;
        }
        let granted = match self.live_leader() {
            None => !self.campaign_in_progress(from),
            Some(leader) => takeover && from < leader,
        };
        self.send(from, Message::PreVoteReply { ballot, granted });
    }

    /// Another replica than `from` campaigns, and we promised it within an
    /// election timeout (see [`Replica::campaigner`]).
    fn campaign_in_progress(&self, from: ReplicaId) -> bool {
        self.campaigner.is_some_and(|c| c != from && c != self.id)
            && matches!(self.role, RoleState::Follower)
            && self.election_elapsed < self.config.election_ticks
    }

    fn on_prevote_reply(&mut self, from: ReplicaId, ballot: Ballot, granted: bool) {
        let Some(p) = self.prevote.as_mut().filter(|p| p.ballot == ballot) else {
            return;
        };
        if granted && matches!(self.role, RoleState::Follower) {
            p.granted.insert(from);
            self.maybe_campaign();
        }
    }

    /// While we follow a live coordinator (or are one), a campaign by a
    /// replica of lower priority than that coordinator would only disrupt
    /// it: we ignore its prepare (as if it were lost, which is always safe).
    fn ignores_prepare_from(&self, from: ReplicaId) -> bool {
        self.live_leader().is_some_and(|leader| from > leader)
    }

    /// Start phase 1 with a ballot above every ballot seen.
    fn campaign(&mut self) {
        self.step_down(None);
        self.prevote = None;
        self.follower_reads.fail_all(None, &mut self.out);
        let round = self.max_round_seen.max(self.acceptor.promised().round) + 1;
        self.max_round_seen = round;
        let ballot = Ballot::new(round, self.id);
        let first_slot = self.learner.commit_index() + 1;
        let accepted =
            match self
                .acceptor
                .prepare(ballot, first_slot, usize::MAX, &mut self.out.persist)
            {
                Ok((accepted, _)) => accepted,
                // Cannot happen (the ballot is above the promise), but if it did
                // the safe reaction is not to campaign.
                Err(_) => return,
            };
        let mut promises = std::collections::BTreeMap::new();
        promises.insert(
            self.id,
            PromiseInfo {
                accepted,
                chosen: Vec::new(),
                snapshot: None,
                accepted_through: None,
            },
        );
        self.role = RoleState::Candidate(Candidate {
            ballot,
            first_slot,
            promises,
            elapsed: 0,
        });
        self.broadcast(Message::Prepare { ballot, first_slot });
        self.maybe_become_coordinator();
    }

    fn maybe_become_coordinator(&mut self) {
        let RoleState::Candidate(c) = &self.role else {
            return;
        };
        #[allow(unused_mut)]
        let mut complete = c
            .promises
            .values()
            .filter(|p| p.accepted_through.is_none())
            .count();
        #[cfg(test)]
        if self.planted == Some(PlantedBug::IncompletePromiseCounts) {
            complete = c.promises.len();
        }
        if complete < majority(self.n) {
            return;
        }
        let RoleState::Candidate(c) = mem::replace(&mut self.role, RoleState::Follower) else {
            return;
        };
        let ballot = c.ballot;
        // 1. Slots some promiser compacted are covered by its snapshot.
        let best_snapshot = c
            .promises
            .values()
            .filter_map(|p| p.snapshot.as_ref())
            .max_by_key(|s| s.last_slot)
            .cloned();
        if let Some(snapshot) = best_snapshot {
            self.install_snapshot(snapshot);
        }
        // 2. Slots some promiser knows chosen. (A slot we know chosen was
        // accepted by a majority, so some promise reports it anyway; starting
        // from it costs nothing and leaves no hole unproposed.)
        let mut last_slot = self.learner.last_known_slot();
        for p in c.promises.values() {
            for e in &p.chosen {
                last_slot = last_slot.max(e.slot);
                self.learner
                    .learn(e.slot, e.value.clone(), &mut self.out.persist);
            }
        }
        // 3. For every other slot, the value accepted in the highest ballot.
        let commit = self.learner.commit_index();
        let mut highest: std::collections::BTreeMap<Slot, (Ballot, &Value)> = Default::default();
        for p in c.promises.values() {
            for e in p.accepted.iter().filter(|e| e.slot > commit) {
                last_slot = last_slot.max(e.slot);
                let better = highest.get(&e.slot).is_none_or(|(b, _)| e.ballot > *b);
                if better {
                    highest.insert(e.slot, (e.ballot, &e.value));
                }
            }
        }
        let recovered: Vec<(Slot, Value)> = (commit + 1..=last_slot)
            .filter(|slot| !self.learner.is_chosen(*slot))
            .map(|slot| {
                let value = highest
                    .get(&slot)
                    .map_or(Value::NoOp, |(_, v)| (*v).clone());
                (slot, value)
            })
            .collect();
        self.role =
            RoleState::Coordinator(Box::new(Coordinator::new(ballot, self.n, last_slot + 1)));
        self.leader = Some(self.id);
        // 4. Phase 2 for them all in our ballot; holes become no-ops.
        if let Some((c, mut local)) = self.lead() {
            let result = recovered
                .into_iter()
                .try_for_each(|(slot, value)| c.propose(slot, value, &mut local))
                .map(|()| c.broadcast_heartbeat(&mut local));
            self.deposed_if(result);
        }
        self.apply_committed();
    }

    /// Stop leading (if we were) and answer every pending request.
    fn step_down(&mut self, hint: Option<ReplicaId>) {
        let hint = hint.filter(|h| *h != self.id);
        let old = mem::replace(&mut self.role, RoleState::Follower);
        self.leader = None;
        self.election_elapsed = 0;
        self.steady_ticks = 0;
        self.prevote = None;
        if let RoleState::Coordinator(c) = old {
            c.step_down(hint, &mut self.out);
        }
    }

    /// A message from the live coordinator `from` reached us as a follower.
    fn heard_coordinator(&mut self, from: ReplicaId) {
        if self.leader != Some(from) {
            self.steady_ticks = 0;
        }
        self.leader = Some(from);
        self.campaigner = None;
        self.election_elapsed = 0;
        // A pre-vote because the coordinator went silent is moot now.
        if self.prevote.as_ref().is_some_and(|p| !p.takeover) {
            self.prevote = None;
        }
    }

    // ----- acceptor side ------------------------------------------------

    fn on_prepare(&mut self, from: ReplicaId, ballot: Ballot, first_slot: Slot) {
        if first_slot <= self.learner.snapshot_slot() && ballot >= self.acceptor.promised() {
            // The candidate needs slots we compacted: our snapshot covers
            // them. Too large for the promise, it goes first, in chunks; we
            // promise nothing yet (silence is safe), and the candidate, once
            // it installed it, asks again from beyond it.
            // One window of chunks per heartbeat interval (the candidate
            // asks again every heartbeat), each window the next.
            let snapshot = self.learner.snapshot();
            let (slot, next) = match self.snapshot_sent[from] {
                Some((slot, at, _))
                    if slot == snapshot.last_slot
                        && self.ticks < at + self.config.heartbeat_ticks =>
                {
                    return;
                }
                Some((slot, _, next)) if slot == snapshot.last_slot => (slot, next),
                _ => (snapshot.last_slot, 0),
            };
            let encoded_len = self.learner.snapshot_encoded().len();
            if snapshot_transfer::chunk_count(encoded_len, self.config.max_message_bytes) > 1 {
                let (_, _, next) = self.local().send_snapshot_window(from, next);
                self.snapshot_sent[from] = Some((slot, self.ticks, next));
                return;
            }
        }
        // The accepted values are cut by bytes (the candidate asks for the
        // rest), and what we know chosen gets what is left of the budget.
        let budget = self.config.max_message_bytes;
        match self
            .acceptor
            .prepare(ballot, first_slot, budget, &mut self.out.persist)
        {
            Ok((accepted, accepted_through)) => {
                // Someone campaigns: give it time before campaigning ourselves.
                self.election_elapsed = 0;
                if self.leader != Some(from) {
                    self.leader = None;
                    self.campaigner = Some(from);
                }
                let snapshot = (first_slot <= self.learner.snapshot_slot())
                    .then(|| self.learner.snapshot().clone());
                // What we know chosen only saves the candidate work (the
                // accepted values are what phase 1 needs), so a budget cuts
                // it: the rest reaches the new coordinator by catch-up.
                let used: usize = accepted.iter().map(|e| e.value.approx_bytes()).sum();
                let chosen = if used < budget {
                    self.learner
                        .entries_from(first_slot, usize::MAX, budget - used)
                } else {
                    Vec::new()
                };
                self.send(
                    from,
                    Message::Promise {
                        ballot,
                        accepted,
                        chosen,
                        commit_index: self.learner.commit_index(),
                        snapshot,
                        accepted_through,
                    },
                );
            }
            Err(promised) => self.send(from, Message::Rejected { ballot, promised }),
        }
    }

    fn on_accept(&mut self, from: ReplicaId, ballot: Ballot, slot: Slot, value: Value) {
        if slot <= self.learner.snapshot_slot() {
            // Compacted: chosen long ago, and we no longer hold the vote we
            // cast. Voting again blind could count for a stale proposal, so
            // stay silent; the coordinator hears from others or catches up.
            return;
        }
        match self
            .acceptor
            .accept(ballot, slot, &value, &mut self.out.persist)
        {
            Ok(()) => {
                self.election_elapsed = 0;
                self.send(from, Message::Accepted { ballot, slot });
            }
            Err(promised) => self.send(from, Message::Rejected { ballot, promised }),
        }
    }

    fn on_heartbeat(&mut self, from: ReplicaId, ballot: Ballot, commit_index: Slot, round: u64) {
        if !self.acceptor.admits(ballot) {
            let promised = self.acceptor.promised();
            self.send(from, Message::Rejected { ballot, promised });
            return;
        }
        if matches!(self.role, RoleState::Follower) {
            self.heard_coordinator(from);
            self.leader_commit = commit_index;
        }
        self.send(
            from,
            Message::HeartbeatAck {
                ballot,
                read_round: round,
                commit_index: self.learner.commit_index(),
            },
        );
    }

    // ----- coordinator side ---------------------------------------------

    fn on_promise(&mut self, from: ReplicaId, ballot: Ballot, info: PromiseInfo) {
        if let RoleState::Candidate(c) = &mut self.role {
            if c.ballot == ballot {
                let before = c.promises.get(&from).map(|p| p.accepted_through);
                match c.promises.get_mut(&from) {
                    Some(p) => p.merge(info),
                    None => {
                        c.promises.insert(from, info);
                    }
                }
                let after = c.promises.get(&from).and_then(|p| p.accepted_through);
                if let Some(through) = after {
                    if before != Some(Some(through)) {
                        // A new piece, still not the last: ask for the next
                        // one now, and give phase 1 the time it takes.
                        c.elapsed = 0;
                        let first_slot = through + 1;
                        self.send(from, Message::Prepare { ballot, first_slot });
                    }
                }
                self.maybe_become_coordinator();
            }
        }
    }

    /// The coordinator's state and the rest of the replica, borrowed apart,
    /// when this replica leads.
    fn lead(&mut self) -> Option<(&mut Coordinator, Local<'_>)> {
        let RoleState::Coordinator(c) = &mut self.role else {
            return None;
        };
        let local = Local {
            id: self.id,
            n: self.n,
            config: &self.config,
            acceptor: &mut self.acceptor,
            learner: &mut self.learner,
            out: &mut self.out,
            #[cfg(test)]
            planted: self.planted,
        };
        Some((c, local))
    }

    /// The rest of the replica, for the helpers followers share with the
    /// coordinator (catch-up).
    fn local(&mut self) -> Local<'_> {
        Local {
            id: self.id,
            n: self.n,
            config: &self.config,
            acceptor: &mut self.acceptor,
            learner: &mut self.learner,
            out: &mut self.out,
            #[cfg(test)]
            planted: self.planted,
        }
    }

    /// Step down if a coordinator's handler found itself deposed.
    fn deposed_if(&mut self, result: Result<(), Deposed>) {
        if result.is_err() {
            self.step_down(None);
        }
    }

    /// Turn queued commands into proposals and serve reads (coordinator
    /// only).
    fn flush(&mut self) {
        let Some((c, mut local)) = self.lead() else {
            return;
        };
        let result = c.flush(&mut local);
        self.deposed_if(result);
        self.apply_committed();
    }

    // ----- learner side -------------------------------------------------

    fn on_chosen(&mut self, entries: Vec<ChosenEntry>) {
        for e in entries {
            if e.slot == 0 {
                continue;
            }
            if let RoleState::Coordinator(c) = &mut self.role {
                c.on_chosen(e.slot);
            }
            self.learner.learn(e.slot, e.value, &mut self.out.persist);
        }
        self.apply_committed();
    }

    fn on_snapshot(&mut self, snapshot: Snapshot) {
        self.install_snapshot(snapshot);
        self.apply_committed();
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let through = snapshot.last_slot;
        if !self.learner.install(snapshot, &mut self.out.persist) {
            return;
        }
        self.acceptor.compact(through);
        #[cfg(test)]
        self.applied_log.push(AppliedEvent::Snapshot(through));
        // Their slots were applied inside the snapshot: we cannot tell them
        // their result, only that it may have happened.
        if let Some((c, mut local)) = self.lead() {
            c.on_snapshot_installed(through, &mut local);
        }
    }

    /// Apply every committed slot; as coordinator, answer the commands that
    /// were waiting for them; snapshot when due; serve reads now applied.
    fn apply_committed(&mut self) {
        while let Some((slot, results)) = self.learner.apply_next() {
            #[cfg(test)]
            {
                let value = self.learner.value(slot).cloned().unwrap_or(Value::NoOp);
                self.applied_log.push(AppliedEvent::Slot(slot, value));
            }
            if let Some((c, mut local)) = self.lead() {
                c.on_applied(slot, &results, &mut local);
            }
        }
        if let Some(through) = self
            .learner
            .maybe_snapshot(self.config.snapshot_every, &mut self.out.persist)
        {
            self.acceptor.compact(through);
        }
        if let Some((c, mut local)) = self.lead() {
            c.serve_reads(&mut local);
        }
        self.serve_follower_reads();
    }

    /// Serve the follower reads whose read index is applied.
    fn serve_follower_reads(&mut self) {
        #[allow(unused_mut)]
        let mut ignore_applied = false;
        #[cfg(test)]
        if self.planted == Some(PlantedBug::FollowerReadBeforeApplied) {
            ignore_applied = true;
        }
        self.follower_reads.serve(
            self.learner.applied(),
            self.learner.kv(),
            &mut self.out,
            ignore_applied,
        );
    }

    // ----- plumbing -----------------------------------------------------

    fn send(&mut self, to: ReplicaId, msg: Message) {
        self.out.messages.push((to, msg));
    }

    fn broadcast(&mut self, msg: Message) {
        push_to_others(&mut self.out.messages, self.n, self.id, msg);
    }

    fn reply(&mut self, request_id: RequestId, reply: Reply) {
        self.out.replies.push((request_id, reply));
    }
}

/// What the simulator sees a replica apply.
#[cfg(test)]
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AppliedEvent {
    /// `slot` applied with this value.
    Slot(Slot, Value),
    /// A snapshot installed: everything up to this slot, at once.
    Snapshot(Slot),
}
