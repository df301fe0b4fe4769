//! [`Replica`]: one member of the cluster, gluing acceptor, learner and (when it
//! leads) coordinator together behind the `step` / `tick` / `submit` / `ready`
//! interface described in the [module docs](super).

use std::mem;

use super::acceptor::Acceptor;
use super::coordinator::{Candidate, CatchUpSent, Coordinator, PendingRead, PromiseInfo, Proposal};
use super::learner::Learner;
use super::messages::{ChosenEntry, Message};
use super::ready::{Executed, Ready, Reply, RequestError};
use super::storage::{PersistentState, Snapshot};
use super::types::{
    majority, Ballot, Config, ReadMode, ReplicaId, RequestId, Role, Slot, Value, MAX_SLOT,
};
use crate::kv::{Command, KvStore, OpResult};

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
    /// The commit index that coordinator announced: when ours reaches it a
    /// higher-priority replica knows it has caught up and may take over.
    leader_commit: Slot,
    /// Ticks since we last heard from a live coordinator (or granted a
    /// prepare).
    election_elapsed: u64,
    /// Highest round seen in any ballot: a new campaign goes above it.
    max_round_seen: u64,
    /// Output accumulated since the last `ready()`.
    out: Ready,
    /// Every slot applied, in order, with its value (snapshot installs show as
    /// a jump): the simulator checks these against each other.
    #[cfg(test)]
    pub(crate) applied_log: Vec<AppliedEvent>,
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
            leader_commit: 0,
            election_elapsed: 0,
            max_round_seen: restored.promised.round,
            out: Ready::default(),
            #[cfg(test)]
            applied_log: Vec::new(),
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
        if from == self.id {
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
            Message::Prepare { ballot, .. }
            | Message::Accept { ballot, .. }
            | Message::Heartbeat { ballot, .. }
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
            Message::Prepare { ballot, first_slot } => self.on_prepare(from, ballot, first_slot),
            Message::Promise {
                ballot,
                accepted,
                chosen,
                commit_index: _,
                snapshot,
            } => self.on_promise(
                from,
                ballot,
                PromiseInfo {
                    accepted,
                    chosen,
                    snapshot,
                },
            ),
            Message::Accept {
                ballot,
                slot,
                value,
            } => self.on_accept(from, ballot, slot, value),
            Message::Accepted { ballot, slot } => self.on_accepted(from, ballot, slot),
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
            } => self.on_heartbeat_ack(from, ballot, read_round, commit_index),
            Message::CatchUp { first_slot } => {
                self.send_catch_up(from, first_slot);
            }
            Message::Snapshot { snapshot } => self.on_snapshot(snapshot),
        }
        Ok(())
    }

    /// Advance logical time by one tick.
    pub fn tick(&mut self) {
        let election_timeout = self.election_timeout();
        let heartbeat_ticks = self.config.heartbeat_ticks;
        match &mut self.role {
            RoleState::Follower => {
                self.election_elapsed += 1;
                if self.election_elapsed >= election_timeout || self.may_take_over() {
                    self.campaign();
                }
            }
            RoleState::Candidate(c) => {
                c.elapsed += 1;
                if c.elapsed >= election_timeout {
                    self.campaign();
                } else if c.elapsed % heartbeat_ticks == 0 {
                    let (ballot, first_slot) = (c.ballot, c.first_slot);
                    let missing: Vec<_> = (0..self.n)
                        .filter(|r| !c.promises.contains_key(r))
                        .collect();
                    for r in missing {
                        self.send(r, Message::Prepare { ballot, first_slot });
                    }
                }
            }
            RoleState::Coordinator(c) => {
                for (r, t) in c.silent_ticks.iter_mut().enumerate() {
                    if r != self.id {
                        *t += 1;
                    }
                }
                for sent in c.catchup.iter_mut().flatten() {
                    sent.age += 1;
                }
                if !c.has_quorum(self.id, self.config.election_ticks) {
                    // Check-quorum: cut off from a majority, we could neither
                    // decide nor confirm reads; answer everyone and stop.
                    self.step_down(None);
                    return;
                }
                c.heartbeat_elapsed += 1;
                if c.heartbeat_elapsed >= heartbeat_ticks {
                    self.broadcast_heartbeat();
                    self.resend_accepts();
                }
            }
        }
    }

    /// A client command. Writes are queued for the next batch; reads follow
    /// the read mode. At a replica that is not the coordinator the answer is
    /// [`RequestError::NotLeader`] (the runtime forwards the request).
    pub fn submit(&mut self, request_id: RequestId, command: Command) {
        let hint = self.leader_hint();
        if !matches!(self.role, RoleState::Coordinator(_)) {
            self.reply(
                request_id,
                Err(RequestError::NotLeader { leader_hint: hint }),
            );
            return;
        }
        // A retry of a command already applied: its cached result, at once.
        if let Some(session) = self.learner.kv().session(command.client_id) {
            if !command.op.is_read_only() && command.seq <= session.last_seq {
                let reply = if command.seq == session.last_seq {
                    // The slot it was applied in is not remembered.
                    Ok(Executed {
                        result: session.last_result.clone(),
                        slot: 0,
                    })
                } else {
                    Err(RequestError::Stale(crate::kv::StaleCommand {
                        client_id: command.client_id,
                        seq: command.seq,
                        last_seq: session.last_seq,
                    }))
                };
                self.reply(request_id, reply);
                return;
            }
        }
        let RoleState::Coordinator(c) = &mut self.role else {
            return;
        };
        match (&command.op, self.config.read_mode) {
            (crate::kv::Op::Get { key }, ReadMode::Local) => {
                let value = self.learner.kv().read(key);
                self.reply(request_id, Ok(read_result(value)));
            }
            (crate::kv::Op::Get { key }, ReadMode::Quorum) => {
                c.reads.push(PendingRead {
                    request_id,
                    key: key.clone(),
                    read_index: (c.next_slot - 1).max(self.learner.commit_index()),
                    round: c.read_round + 1,
                });
                c.round_needed = true;
            }
            _ => {
                let key = (command.client_id, command.seq);
                if let Some(retries) = c.retries.get_mut(&key) {
                    retries.push(request_id);
                } else {
                    c.retries.insert(key, Vec::new());
                    c.queue.push_back((request_id, command));
                }
            }
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
        mem::take(&mut self.out)
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
            RoleState::Coordinator(c) => Some(c.ballot),
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
                    && self.learner.commit_index() >= self.leader_commit
                    && self.learner.applied() == self.learner.commit_index()
            }
            None => false,
        }
    }

    /// While we follow a live coordinator (or are one), a campaign by a
    /// replica of lower priority than that coordinator would only disrupt
    /// it: we ignore its prepare (as if it were lost, which is always safe).
    fn ignores_prepare_from(&self, from: ReplicaId) -> bool {
        let live_leader = match self.role {
            RoleState::Coordinator(_) => Some(self.id),
            RoleState::Candidate(_) => None,
            RoleState::Follower => self
                .leader
                .filter(|_| self.election_elapsed < self.config.election_ticks),
        };
        live_leader.is_some_and(|leader| from > leader)
    }

    /// Start phase 1 with a ballot above every ballot seen.
    fn campaign(&mut self) {
        self.step_down(None);
        let round = self.max_round_seen.max(self.acceptor.promised().round) + 1;
        self.max_round_seen = round;
        let ballot = Ballot::new(round, self.id);
        let first_slot = self.learner.commit_index() + 1;
        let accepted = match self
            .acceptor
            .prepare(ballot, first_slot, &mut self.out.persist)
        {
            Ok(accepted) => accepted,
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
        if c.promises.len() < majority(self.n) {
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
        for (slot, value) in recovered {
            self.propose(slot, value);
        }
        self.broadcast_heartbeat();
        self.apply_committed();
    }

    /// Stop leading (if we were) and answer every pending request.
    fn step_down(&mut self, hint: Option<ReplicaId>) {
        let hint = hint.filter(|h| *h != self.id);
        let old = mem::replace(&mut self.role, RoleState::Follower);
        self.leader = None;
        self.election_elapsed = 0;
        if let RoleState::Coordinator(mut c) = old {
            for (request_id, cmd) in c.queue {
                let retries = c.retries.remove(&key_of(&cmd)).unwrap_or_default();
                for request_id in std::iter::once(request_id).chain(retries) {
                    self.reply(
                        request_id,
                        Err(RequestError::NotLeader { leader_hint: hint }),
                    );
                }
            }
            for (request_id, cmd) in c.waiting.into_values().flatten() {
                let retries = c.retries.remove(&key_of(&cmd)).unwrap_or_default();
                for request_id in std::iter::once(request_id).chain(retries) {
                    self.reply(
                        request_id,
                        Err(RequestError::OutcomeUnknown { leader_hint: hint }),
                    );
                }
            }
            for read in c.reads {
                self.reply(
                    read.request_id,
                    Err(RequestError::NotLeader { leader_hint: hint }),
                );
            }
        }
    }

    // ----- acceptor side ------------------------------------------------

    fn on_prepare(&mut self, from: ReplicaId, ballot: Ballot, first_slot: Slot) {
        match self
            .acceptor
            .prepare(ballot, first_slot, &mut self.out.persist)
        {
            Ok(accepted) => {
                // Someone campaigns: give it time before campaigning ourselves.
                self.election_elapsed = 0;
                if self.leader != Some(from) {
                    self.leader = None;
                }
                let snapshot = (first_slot <= self.learner.snapshot_slot())
                    .then(|| self.learner.snapshot().clone());
                let chosen = self.learner.entries_from(first_slot, usize::MAX);
                self.send(
                    from,
                    Message::Promise {
                        ballot,
                        accepted,
                        chosen,
                        commit_index: self.learner.commit_index(),
                        snapshot,
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
            self.leader = Some(from);
            self.leader_commit = commit_index;
            self.election_elapsed = 0;
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
                c.promises.insert(from, info);
                self.maybe_become_coordinator();
            }
        }
    }

    /// Propose `value` for `slot` in our ballot: vote for it ourselves, ask
    /// everyone else.
    fn propose(&mut self, slot: Slot, value: Value) {
        let RoleState::Coordinator(c) = &mut self.role else {
            return;
        };
        let ballot = c.ballot;
        if self
            .acceptor
            .accept(ballot, slot, &value, &mut self.out.persist)
            .is_err()
        {
            // Our own acceptor promised a higher ballot: we are deposed.
            self.step_down(None);
            return;
        }
        let mut votes = vec![false; self.n];
        votes[self.id] = true;
        c.inflight.insert(
            slot,
            Proposal {
                value: value.clone(),
                votes,
            },
        );
        c.next_slot = c.next_slot.max(slot + 1);
        self.broadcast(Message::Accept {
            ballot,
            slot,
            value,
        });
        self.check_chosen(slot);
    }

    fn on_accepted(&mut self, from: ReplicaId, ballot: Ballot, slot: Slot) {
        let RoleState::Coordinator(c) = &mut self.role else {
            return;
        };
        if c.ballot != ballot {
            return;
        }
        c.silent_ticks[from] = 0;
        if let Some(p) = c.inflight.get_mut(&slot) {
            p.votes[from] = true;
        }
        self.check_chosen(slot);
    }

    /// If a majority accepted our proposal for `slot`, it is chosen: learn it,
    /// tell everyone, apply.
    fn check_chosen(&mut self, slot: Slot) {
        let RoleState::Coordinator(c) = &mut self.role else {
            return;
        };
        let chosen = c
            .inflight
            .get(&slot)
            .is_some_and(|p| p.vote_count() >= majority(self.n));
        if !chosen {
            return;
        }
        let Some(p) = c.inflight.remove(&slot) else {
            return;
        };
        self.learner
            .learn(slot, p.value.clone(), &mut self.out.persist);
        self.broadcast(Message::Chosen {
            entries: vec![ChosenEntry {
                slot,
                value: p.value,
            }],
        });
        self.apply_committed();
    }

    fn on_heartbeat_ack(&mut self, from: ReplicaId, ballot: Ballot, round: u64, commit: Slot) {
        let timeout = self.catchup_timeout();
        let RoleState::Coordinator(c) = &mut self.role else {
            return;
        };
        if c.ballot != ballot {
            return;
        }
        c.silent_ticks[from] = 0;
        c.acked_round[from] = c.acked_round[from].max(round);
        let previous = mem::replace(&mut c.follower_commit[from], commit);
        let own_commit = self.learner.commit_index();
        // A follower a few slots behind is usually just behind our latest
        // `Chosen` broadcasts, which are on their way; catch it up only when it
        // made no progress since its last answer or is further behind than
        // the pipeline.
        let stalled = commit == previous;
        let far_behind = commit + self.config.max_inflight_slots < own_commit;
        // At most one catch-up in flight per replica: the next goes out once
        // this answer shows the last one arrived, or once it is presumed lost.
        let in_flight = c.catchup[from].is_some_and(|s| commit < s.through && s.age < timeout);
        if !in_flight {
            c.catchup[from] = None;
        }
        if commit < own_commit && (stalled || far_behind) {
            if !in_flight {
                let through = self.send_catch_up(from, commit + 1);
                if let RoleState::Coordinator(c) = &mut self.role {
                    c.catchup[from] = through.map(|through| CatchUpSent { through, age: 0 });
                }
            }
        } else if commit > own_commit {
            self.send(
                from,
                Message::CatchUp {
                    first_slot: own_commit + 1,
                },
            );
        }
        self.serve_reads();
    }

    fn broadcast_heartbeat(&mut self) {
        let commit_index = self.learner.commit_index();
        let RoleState::Coordinator(c) = &mut self.role else {
            return;
        };
        c.read_round += 1;
        c.acked_round[self.id] = c.read_round;
        c.round_needed = false;
        c.heartbeat_elapsed = 0;
        let msg = Message::Heartbeat {
            ballot: c.ballot,
            commit_index,
            read_round: c.read_round,
        };
        self.broadcast(msg);
    }

    /// Re-send accepts nobody answered yet (messages get lost).
    fn resend_accepts(&mut self) {
        let RoleState::Coordinator(c) = &self.role else {
            return;
        };
        let mut msgs = Vec::new();
        for (slot, p) in &c.inflight {
            for (r, voted) in p.votes.iter().enumerate() {
                if !voted && r != self.id {
                    msgs.push((
                        r,
                        Message::Accept {
                            ballot: c.ballot,
                            slot: *slot,
                            value: p.value.clone(),
                        },
                    ));
                }
            }
        }
        self.out.messages.extend(msgs);
    }

    /// Turn queued commands into batches, within the pipelining window, and
    /// send a heartbeat round for reads that arrived since the last one.
    fn flush(&mut self) {
        loop {
            let RoleState::Coordinator(c) = &mut self.role else {
                return;
            };
            if c.queue.is_empty() || c.inflight.len() as u64 >= self.config.max_inflight_slots {
                break;
            }
            let take = c.queue.len().min(self.config.max_batch);
            let batch: Vec<_> = c.queue.drain(..take).collect();
            let slot = c.next_slot;
            let commands = batch.iter().map(|(_, cmd)| cmd.clone()).collect();
            c.waiting.insert(slot, batch);
            self.propose(slot, Value::Batch(commands));
        }
        if let RoleState::Coordinator(c) = &self.role {
            if c.round_needed {
                self.broadcast_heartbeat();
            }
        }
        self.serve_reads();
    }

    /// Answer reads whose leadership round a majority confirmed and whose
    /// read index is applied.
    fn serve_reads(&mut self) {
        let applied = self.learner.applied();
        let RoleState::Coordinator(c) = &mut self.role else {
            return;
        };
        if c.reads.is_empty() {
            return;
        }
        let confirmed = c.confirmed_round();
        let (done, waiting): (Vec<_>, Vec<_>) = c
            .reads
            .drain(..)
            .partition(|r| r.round <= confirmed && r.read_index <= applied);
        c.reads = waiting;
        for read in done {
            let value = self.learner.kv().read(&read.key);
            self.reply(read.request_id, Ok(read_result(value)));
        }
    }

    // ----- learner side -------------------------------------------------

    fn on_chosen(&mut self, entries: Vec<ChosenEntry>) {
        for e in entries {
            if e.slot == 0 {
                continue;
            }
            if let RoleState::Coordinator(c) = &mut self.role {
                c.inflight.remove(&e.slot);
                c.next_slot = c.next_slot.max(e.slot + 1);
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
        let mut orphans = Vec::new();
        if let RoleState::Coordinator(c) = &mut self.role {
            c.inflight = c.inflight.split_off(&(through + 1));
            c.next_slot = c.next_slot.max(through + 1);
            let later = c.waiting.split_off(&(through + 1));
            for (request_id, cmd) in mem::replace(&mut c.waiting, later).into_values().flatten() {
                orphans.push(request_id);
                orphans.extend(c.retries.remove(&key_of(&cmd)).unwrap_or_default());
            }
        }
        // Their slots were applied inside the snapshot: we cannot tell them
        // their result, only that it may have happened.
        for request_id in orphans {
            self.reply(
                request_id,
                Err(RequestError::OutcomeUnknown {
                    leader_hint: Some(self.id),
                }),
            );
        }
    }

    /// Send `to` what it needs from `first_slot` on: chosen entries (at most
    /// `max_catchup_entries`), or our snapshot if they were compacted. Returns
    /// the last slot sent, if anything was.
    fn send_catch_up(&mut self, to: ReplicaId, first_slot: Slot) -> Option<Slot> {
        if first_slot <= self.learner.snapshot_slot() {
            let snapshot = self.learner.snapshot().clone();
            let through = snapshot.last_slot;
            self.send(to, Message::Snapshot { snapshot });
            Some(through)
        } else {
            let entries = self
                .learner
                .entries_from(first_slot, self.config.max_catchup_entries);
            let through = entries.last()?.slot;
            self.send(to, Message::Chosen { entries });
            Some(through)
        }
    }

    /// Ticks after which a catch-up not seen to arrive counts as lost and may
    /// be sent again: two heartbeat intervals, time for the heartbeat after it
    /// to be answered.
    fn catchup_timeout(&self) -> u64 {
        2 * self.config.heartbeat_ticks
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
            let RoleState::Coordinator(c) = &mut self.role else {
                continue;
            };
            let Some(waiters) = c.waiting.remove(&slot) else {
                continue;
            };
            for (request_id, cmd) in waiters {
                let reply = match results
                    .iter()
                    .find(|(key, _)| *key == key_of(&cmd))
                    .map(|(_, r)| r.clone())
                {
                    Some(result) => result
                        .map(|result| Executed { result, slot })
                        .map_err(RequestError::from),
                    // Another value was chosen in that slot.
                    None => Err(RequestError::OutcomeUnknown {
                        leader_hint: Some(self.id),
                    }),
                };
                let retries = c.retries.remove(&key_of(&cmd)).unwrap_or_default();
                for request_id in retries {
                    self.out.replies.push((request_id, reply.clone()));
                }
                self.out.replies.push((request_id, reply));
            }
        }
        if let Some(through) = self
            .learner
            .maybe_snapshot(self.config.snapshot_every, &mut self.out.persist)
        {
            self.acceptor.compact(through);
        }
        self.serve_reads();
    }

    // ----- plumbing -----------------------------------------------------

    fn send(&mut self, to: ReplicaId, msg: Message) {
        self.out.messages.push((to, msg));
    }

    fn broadcast(&mut self, msg: Message) {
        for r in (0..self.n).filter(|r| *r != self.id) {
            self.out.messages.push((r, msg.clone()));
        }
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

/// A read's answer: reads get no slot of their own.
fn read_result(value: Option<String>) -> Executed {
    Executed {
        result: OpResult::Value(value),
        slot: 0,
    }
}

fn key_of(cmd: &Command) -> (u64, u64) {
    (cmd.client_id, cmd.seq)
}
