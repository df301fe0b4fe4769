//! State and logic of a replica that leads: a [`Candidate`] running phase 1,
//! then a [`Coordinator`] running phase 2 per slot and serving reads.
//!
//! The coordinator's handlers live here, as methods of [`Coordinator`] (as
//! etcd's raft keeps `stepLeader` apart from `stepFollower`). They touch the
//! rest of the replica only through [`Local`]: the local acceptor (the
//! coordinator votes for its own proposals), the learner and the output. A
//! handler that finds the coordinator deposed returns [`Deposed`]; the
//! [`Replica`](super::Replica) then steps down, because changing roles
//! involves more than the coordinator.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::mem;

use super::acceptor::Acceptor;
use super::learner::{Learner, SlotResults};
use super::messages::{AcceptedEntry, ChosenEntry, Message};
use super::ready::{push_to_others, Executed, Ready, Reply, RequestError};
use super::snapshot_transfer;
use super::storage::Snapshot;
use super::types::{
    command_bytes, majority, Ballot, Config, ReadMode, ReplicaId, RequestId, Slot, Value,
};
use crate::kv::{op_digest, Command, Op, OpResult, StaleCommand};

/// What one acceptor answered to our prepare (all its pieces so far).
#[derive(Debug)]
pub struct PromiseInfo {
    pub accepted: Vec<AcceptedEntry>,
    pub chosen: Vec<ChosenEntry>,
    pub snapshot: Option<Snapshot>,
    /// `Some(slot)`: the accepted values reported so far stop at `slot` (the
    /// report was cut by bytes); the promise counts only once complete.
    pub accepted_through: Option<Slot>,
}

impl PromiseInfo {
    /// Add the next piece of the same promise. Every piece of a promise of
    /// one ballot reports the same accepted values (while the acceptor
    /// keeps that promise it accepts nothing below it, and we propose
    /// nothing before phase 1 ends), so pieces add up whatever their order;
    /// each answers a prepare from a slot at most one past what earlier
    /// pieces covered, so coverage stays contiguous.
    pub fn merge(&mut self, piece: PromiseInfo) {
        self.accepted_through = match (self.accepted_through, piece.accepted_through) {
            (None, _) | (_, None) => None,
            (Some(a), Some(b)) => Some(a.max(b)),
        };
        let known: BTreeSet<Slot> = self.accepted.iter().map(|e| e.slot).collect();
        self.accepted.extend(
            piece
                .accepted
                .into_iter()
                .filter(|e| !known.contains(&e.slot)),
        );
        self.chosen.extend(piece.chosen);
        if piece.snapshot.as_ref().map(|s| s.last_slot)
            > self.snapshot.as_ref().map(|s| s.last_slot)
        {
            self.snapshot = piece.snapshot;
        }
    }
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

/// The coordinator learned that it no longer leads (its own acceptor
/// promised a higher ballot, or a majority stopped answering): the replica
/// must step down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deposed;

/// Deliberate bugs the simulator and the scenario tests must catch (see
/// `sim.rs`): they exist only in test builds.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PlantedBug {
    /// Confirm a read with the heartbeat round already sent when it arrived
    /// (`round: read_round` instead of `read_round + 1`).
    ReadRoundNotAhead,
    /// Count heartbeat acks of any ballot towards read confirmation.
    AckOfAnyBallot,
    /// The behaviour before pre-vote: campaign at once when the election
    /// timer fires, take over as soon as caught up (no hysteresis).
    NoPreVote,
    /// A follower serves a read as soon as it knows the read index, before
    /// it has applied the log up to it.
    FollowerReadBeforeApplied,
    /// The coordinator counts its own vote for a proposal at once, before
    /// its accepted value is durable (while the accepts already left).
    OwnVoteBeforeFsync,
    /// A candidate counts a promise whose accepted values were cut short by
    /// bytes as if it were complete.
    IncompletePromiseCounts,
    /// A follower adds the reads that arrive while its read-index request
    /// is in flight to that request's batch (answered with a read index
    /// taken before they arrived) instead of holding them for the next.
    FollowerReadJoinsInFlight,
}

/// The rest of the replica, as the coordinator's handlers see it.
pub struct Local<'a> {
    pub id: ReplicaId,
    pub n: usize,
    pub config: &'a Config,
    pub acceptor: &'a mut Acceptor,
    pub learner: &'a mut Learner,
    pub out: &'a mut Ready,
    #[cfg(test)]
    pub(crate) planted: Option<PlantedBug>,
}

impl Local<'_> {
    pub fn send(&mut self, to: ReplicaId, msg: Message) {
        self.out.messages.push((to, msg));
    }

    pub fn broadcast(&mut self, msg: Message) {
        push_to_others(&mut self.out.messages, self.n, self.id, msg);
    }

    pub fn reply(&mut self, request_id: RequestId, reply: Reply) {
        self.out.replies.push((request_id, reply));
    }

    /// Send a message that depends on no write (see [`Ready::send_now`]).
    pub fn send_now(&mut self, to: ReplicaId, msg: Message) {
        self.out.send_now.push((to, msg));
    }

    /// Send to every other replica a message that depends on no write.
    pub fn broadcast_now(&mut self, msg: Message) {
        push_to_others(&mut self.out.send_now, self.n, self.id, msg);
    }

    /// Send `to` what it needs from `first_slot` on: chosen entries (at most
    /// `max_catchup_entries`), or our snapshot if they were compacted (in
    /// chunks of `max_message_bytes`, see [`super::snapshot_transfer`]).
    /// Returns the last slot sent and the number of messages, if anything
    /// was sent.
    pub fn send_catch_up(&mut self, to: ReplicaId, first_slot: Slot) -> Option<(Slot, u64)> {
        if first_slot <= self.learner.snapshot_slot() {
            let through = self.learner.snapshot_slot();
            let chunks = snapshot_transfer::chunk_window(
                through,
                self.learner.snapshot_encoded(),
                self.config.max_message_bytes,
                0,
                usize::MAX,
            );
            let count = chunks.len() as u64;
            for chunk in chunks {
                self.send(to, chunk);
            }
            Some((through, count))
        } else {
            let entries = self.learner.entries_from(
                first_slot,
                self.config.max_catchup_entries,
                self.config.max_message_bytes,
            );
            let through = entries.last()?.slot;
            self.send(to, Message::Chosen { entries });
            Some((through, 1))
        }
    }

    /// Send `to` the next window of our snapshot's chunks, from chunk
    /// `start` (wrapping around): at most [`SNAPSHOT_WINDOW`] chunks, so
    /// that a large snapshot does not overflow the runtime's queue to that
    /// peer (which drops what does not fit); the receiver keeps the chunks
    /// across windows. Returns the snapshot's slot, the chunks sent and
    /// where the next window starts.
    pub fn send_snapshot_window(&mut self, to: ReplicaId, start: usize) -> (Slot, u64, usize) {
        let through = self.learner.snapshot_slot();
        let encoded = self.learner.snapshot_encoded();
        let max_bytes = self.config.max_message_bytes;
        let total = snapshot_transfer::chunk_count(encoded.len(), max_bytes);
        let start = if start < total { start } else { 0 };
        let window =
            snapshot_transfer::chunk_window(through, encoded, max_bytes, start, SNAPSHOT_WINDOW);
        let count = window.len();
        for chunk in window {
            self.send(to, chunk);
        }
        (through, count as u64, start + count)
    }

    #[cfg(test)]
    fn planted(&self, bug: PlantedBug) -> bool {
        self.planted == Some(bug)
    }
}

/// At most this many snapshot chunks per catch-up (see
/// [`Local::send_snapshot_window`]): with the default 4 MiB budget, 8 MiB,
/// half of what the runtime queues for one peer.
pub const SNAPSHOT_WINDOW: usize = 2;

/// A value proposed in the current ballot and not yet chosen.
#[derive(Debug)]
struct Proposal {
    value: Value,
    /// `votes[r]`: replica r accepted it in our ballot.
    votes: Vec<bool>,
}

impl Proposal {
    fn vote_count(&self) -> usize {
        self.votes.iter().filter(|v| **v).count()
    }
}

/// Who waits for a read's confirmation.
#[derive(Debug)]
enum ReadOrigin {
    /// A client's `Get` of `key` at this replica.
    Client { request_id: RequestId, key: String },
    /// A follower's read-index request (see [`super::read_index`]): it is
    /// answered with the read index and serves the reads itself.
    Follower {
        from: ReplicaId,
        incarnation: u64,
        id: u64,
    },
}

/// A read waiting for the read-index conditions.
#[derive(Debug)]
struct PendingRead {
    origin: ReadOrigin,
    /// Last slot the coordinator had proposed (or recovered) when the read
    /// arrived: every write acknowledged before the read is at or below it.
    read_index: Slot,
    /// The first heartbeat round sent after the read arrived; a majority must
    /// acknowledge this round (or a later one) in our ballot.
    round: u64,
}

/// A catch-up (chosen entries or a snapshot) sent to a lagging replica and
/// not yet seen to arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CatchUpSent {
    /// The last slot it covers: once the replica reports a commit index at
    /// least this high, it arrived.
    through: Slot,
    /// Ticks since it was sent: after a timeout it counts as lost.
    age: u64,
    /// That timeout: one catch-up timeout per message (a snapshot in many
    /// chunks takes longer to arrive, and is not sent again meanwhile).
    timeout: u64,
}

/// A replica that completed phase 1 for its ballot: the only proposer.
#[derive(Debug)]
pub struct Coordinator {
    ballot: Ballot,
    /// The next slot to propose into.
    next_slot: Slot,
    /// Proposed, not yet known chosen.
    inflight: BTreeMap<Slot, Proposal>,
    /// Client commands not yet proposed (the next batches).
    queue: VecDeque<(RequestId, Command)>,
    /// Proposed commands waiting for their slot to be applied.
    waiting: BTreeMap<Slot, Vec<(RequestId, Command)>>,
    /// Every command in `queue` or `waiting`, by `(client_id, seq)`, with the
    /// ids of later requests for the same command (client retries). A retry
    /// joins the first request and gets the same answer instead of being
    /// proposed again: retries must not multiply the load.
    /// The digest of the command is kept too: a different command under the
    /// same key is refused, not joined.
    retries: BTreeMap<(u64, u64), (u64, Vec<RequestId>)>,
    /// Reads waiting for confirmation and for the log to be applied.
    reads: Vec<PendingRead>,
    /// Number of the last heartbeat round sent.
    read_round: u64,
    /// A read arrived since the last heartbeat: send a round now.
    round_needed: bool,
    /// Per replica, the highest heartbeat round it acknowledged in our ballot
    /// (our own entry is the last round sent).
    acked_round: Vec<u64>,
    /// Per replica, ticks since it last answered us in our ballot
    /// (check-quorum).
    silent_ticks: Vec<u64>,
    /// Per replica, the commit index it last reported.
    follower_commit: Vec<Slot>,
    /// Per replica, the catch-up in flight to it, if any: at most one at a
    /// time, so a replica far behind is not flooded with a catch-up per
    /// heartbeat answer.
    catchup: Vec<Option<CatchUpSent>>,
    /// Per replica being sent our snapshot: its slot and the chunk the next
    /// window starts at.
    snapshot_cursor: Vec<(Slot, usize)>,
    /// Ticks since the last heartbeat.
    heartbeat_elapsed: u64,
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
            snapshot_cursor: vec![(0, 0); n],
            heartbeat_elapsed: 0,
        }
    }

    /// The ballot this coordinator leads in.
    pub fn ballot(&self) -> Ballot {
        self.ballot
    }

    /// The highest heartbeat round acknowledged by a majority (own included).
    fn confirmed_round(&self) -> u64 {
        let mut rounds = self.acked_round.clone();
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        rounds[majority(rounds.len()) - 1]
    }

    /// Does a majority (own included) still answer us?
    fn has_quorum(&self, me: ReplicaId, election_ticks: u64) -> bool {
        let live = self
            .silent_ticks
            .iter()
            .enumerate()
            .filter(|(r, t)| *r == me || **t < election_ticks)
            .count();
        live >= majority(self.silent_ticks.len())
    }

    // ----- inputs -------------------------------------------------------

    /// One tick: age the silences and catch-ups, check the quorum, send the
    /// heartbeat when due (and re-send unanswered accepts with it).
    pub fn tick(&mut self, local: &mut Local) -> Result<(), Deposed> {
        for (r, t) in self.silent_ticks.iter_mut().enumerate() {
            if r != local.id {
                *t += 1;
            }
        }
        for sent in self.catchup.iter_mut().flatten() {
            sent.age += 1;
        }
        // Check-quorum: cut off from a majority, we could neither decide nor
        // confirm reads; answer everyone and stop. Not in the local read
        // mode: there, as in the original design, only a higher ballot
        // deposes a coordinator, so one that is cut off keeps answering reads
        // from its own state (knowingly unsafe; the harness catches it).
        if local.config.read_mode == ReadMode::Quorum
            && !self.has_quorum(local.id, local.config.election_ticks)
        {
            return Err(Deposed);
        }
        self.heartbeat_elapsed += 1;
        if self.heartbeat_elapsed >= local.config.heartbeat_ticks {
            self.broadcast_heartbeat(local);
            self.resend_accepts(local);
        }
        Ok(())
    }

    /// A client command: a retry of an applied write is answered from the
    /// session cache, a read follows the read mode, a write joins the queue
    /// (or the request it retries).
    pub fn submit(&mut self, request_id: RequestId, command: Command, local: &mut Local) {
        if !command.op.is_read_only() {
            if let Some(answer) = local.learner.kv().answer_from_session(&command) {
                // The slot it was applied in is not remembered.
                let reply = answer
                    .map(|result| Executed { result, slot: 0 })
                    .map_err(RequestError::from);
                local.reply(request_id, reply);
                return;
            }
        }
        let pending = self.queue.len() + self.reads.len();
        let joins = self.retries.contains_key(&key_of(&command));
        if pending >= local.config.max_pending && !joins {
            local.reply(request_id, Err(RequestError::Overloaded { pending }));
            return;
        }
        match (&command.op, local.config.read_mode) {
            (Op::Get { key }, ReadMode::Local) => {
                let value = local.learner.kv().read(key);
                local.reply(request_id, Ok(read_result(value)));
            }
            (Op::Get { key }, ReadMode::Quorum) => {
                let origin = ReadOrigin::Client {
                    request_id,
                    key: key.clone(),
                };
                self.push_read(origin, local);
            }
            _ => {
                let key = key_of(&command);
                let digest = op_digest(&command.op);
                match self.retries.get_mut(&key) {
                    Some((first, retries)) if *first == digest => retries.push(request_id),
                    // The same (client id, seq) for another command: never
                    // proposed, and not answered with the first one's result.
                    Some(_) => local.reply(
                        request_id,
                        Err(RequestError::Stale(StaleCommand::Reused {
                            client_id: command.client_id,
                            seq: command.seq,
                        })),
                    ),
                    None => {
                        self.retries.insert(key, (digest, Vec::new()));
                        self.queue.push_back((request_id, command));
                    }
                }
            }
        }
    }

    /// A follower asks for a read index (see [`super::read_index`]):
    /// answered like a read of our own, once a round sent after it is
    /// confirmed.
    pub fn on_read_index(&mut self, from: ReplicaId, incarnation: u64, id: u64, local: &mut Local) {
        if self.reads.len() >= local.config.max_pending {
            // Unanswered: the follower gives up and forwards its reads.
            return;
        }
        let origin = ReadOrigin::Follower {
            from,
            incarnation,
            id,
        };
        self.push_read(origin, local);
    }

    /// Queue a read, to be confirmed by the first heartbeat round sent after
    /// it arrived (or a later one).
    fn push_read(&mut self, origin: ReadOrigin, local: &Local) {
        #[allow(unused_mut)]
        let mut round = self.read_round + 1;
        #[cfg(test)]
        if local.planted(PlantedBug::ReadRoundNotAhead) {
            round = self.read_round;
        }
        self.reads.push(PendingRead {
            origin,
            read_index: (self.next_slot - 1).max(local.learner.commit_index()),
            round,
        });
        self.round_needed = true;
    }

    /// The requesters of `request_ids` are gone (their deadline passed or
    /// they cancelled): drop what of theirs is not proposed yet, so that a
    /// backlog of abandoned commands is not decided for nobody. A command
    /// a live retry joined stays queued, now for that retry. Proposed ones
    /// run their course (they may be chosen; their answers go nowhere).
    /// Cancelled requests get no answer. Returns how many queued commands
    /// and reads were dropped.
    pub fn cancel(&mut self, request_ids: &BTreeSet<RequestId>) -> usize {
        let before = self.queue.len() + self.reads.len();
        for (_, retries) in self.retries.values_mut() {
            retries.retain(|id| !request_ids.contains(id));
        }
        let retries = &mut self.retries;
        self.queue.retain_mut(|(request_id, cmd)| {
            if !request_ids.contains(request_id) {
                return true;
            }
            match retries.get_mut(&key_of(cmd)) {
                Some((_, joined)) if !joined.is_empty() => {
                    *request_id = joined.remove(0);
                    true
                }
                _ => {
                    retries.remove(&key_of(cmd));
                    false
                }
            }
        });
        self.reads.retain(|r| match &r.origin {
            ReadOrigin::Client { request_id, .. } => !request_ids.contains(request_id),
            // A follower's read-index request: its clients' reads wait at
            // the follower, which cancels them there.
            ReadOrigin::Follower { .. } => true,
        });
        before - (self.queue.len() + self.reads.len())
    }

    /// An acceptor accepted `slot` in `ballot`. The caller applies what got
    /// chosen.
    pub fn on_accepted(&mut self, from: ReplicaId, ballot: Ballot, slot: Slot, local: &mut Local) {
        if self.ballot != ballot {
            return;
        }
        self.silent_ticks[from] = 0;
        if let Some(p) = self.inflight.get_mut(&slot) {
            p.votes[from] = true;
        }
        self.check_chosen(slot, local);
    }

    /// A replica answered our heartbeat: it is alive (check-quorum), confirms
    /// a read round, and tells how far its log reaches, so that we catch it
    /// up (or catch up from it).
    pub fn on_heartbeat_ack(
        &mut self,
        from: ReplicaId,
        ballot: Ballot,
        round: u64,
        commit: Slot,
        local: &mut Local,
    ) {
        #[allow(unused_mut)]
        let mut ours = self.ballot == ballot;
        #[cfg(test)]
        if local.planted(PlantedBug::AckOfAnyBallot) {
            ours = true;
        }
        if !ours {
            return;
        }
        self.silent_ticks[from] = 0;
        self.acked_round[from] = self.acked_round[from].max(round);
        let previous = mem::replace(&mut self.follower_commit[from], commit);
        let own_commit = local.learner.commit_index();
        // A follower a few slots behind is usually just behind our latest
        // `Chosen` broadcasts, which are on their way; catch it up only when it
        // made no progress since its last answer or is further behind than
        // the pipeline.
        let stalled = commit == previous;
        let far_behind = commit + local.config.max_inflight_slots < own_commit;
        // At most one catch-up in flight per replica: the next goes out once
        // this answer shows the last one arrived, or once it is presumed lost.
        let timeout = catchup_timeout(local.config);
        let in_flight = self.catchup[from].is_some_and(|s| commit < s.through && s.age < s.timeout);
        if !in_flight {
            self.catchup[from] = None;
        }
        if commit < own_commit && (stalled || far_behind) {
            if !in_flight {
                let sent = if commit < local.learner.snapshot_slot() {
                    // Window after window of the snapshot's chunks, until
                    // the replica has them all and installs it.
                    let (slot, start) = self.snapshot_cursor[from];
                    let start = if slot == local.learner.snapshot_slot() {
                        start
                    } else {
                        0
                    };
                    let (through, count, next) = local.send_snapshot_window(from, start);
                    self.snapshot_cursor[from] = (through, next);
                    Some((through, count))
                } else {
                    local.send_catch_up(from, commit + 1)
                };
                self.catchup[from] = sent.map(|(through, count)| CatchUpSent {
                    through,
                    age: 0,
                    timeout: timeout * count,
                });
            }
        } else if commit > own_commit {
            local.send(
                from,
                Message::CatchUp {
                    first_slot: own_commit + 1,
                },
            );
        }
        self.serve_reads(local);
    }

    /// `slot` is known chosen (from a `Chosen` message): stop proposing it.
    pub fn on_chosen(&mut self, slot: Slot) {
        self.inflight.remove(&slot);
        self.next_slot = self.next_slot.max(slot + 1);
    }

    /// A snapshot through `through` was installed: slots it covers are no
    /// longer ours to decide, and their waiting requests can only be told
    /// that their command may have happened.
    pub fn on_snapshot_installed(&mut self, through: Slot, local: &mut Local) {
        self.inflight = self.inflight.split_off(&(through + 1));
        self.next_slot = self.next_slot.max(through + 1);
        let later = self.waiting.split_off(&(through + 1));
        let mut orphans = Vec::new();
        for (request_id, cmd) in mem::replace(&mut self.waiting, later)
            .into_values()
            .flatten()
        {
            orphans.push(request_id);
            orphans.extend(self.retries.remove(&key_of(&cmd)).unwrap_or_default().1);
        }
        for request_id in orphans {
            local.reply(
                request_id,
                Err(RequestError::OutcomeUnknown {
                    leader_hint: Some(local.id),
                }),
            );
        }
    }

    /// `slot` was applied with `results`: answer the requests waiting for it
    /// (and their retries).
    pub fn on_applied(&mut self, slot: Slot, results: &SlotResults, local: &mut Local) {
        let Some(waiters) = self.waiting.remove(&slot) else {
            return;
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
                    leader_hint: Some(local.id),
                }),
            };
            let retries = self.retries.remove(&key_of(&cmd)).unwrap_or_default().1;
            for request_id in retries {
                local.reply(request_id, reply.clone());
            }
            local.reply(request_id, reply);
        }
    }

    // ----- proposing ----------------------------------------------------

    /// Propose `value` for `slot` in our ballot: vote for it ourselves, ask
    /// everyone else. The accepts leave at once, while our own accepted
    /// value is written; our vote counts once that write is durable (the
    /// runtime hands our `Accepted` to ourselves back after the fsync).
    pub fn propose(&mut self, slot: Slot, value: Value, local: &mut Local) -> Result<(), Deposed> {
        let ballot = self.ballot;
        if local
            .acceptor
            .accept(ballot, slot, &value, &mut local.out.persist)
            .is_err()
        {
            // Our own acceptor promised a higher ballot: we are deposed.
            return Err(Deposed);
        }
        let mut votes = vec![false; local.n];
        #[allow(unused_mut)]
        let mut own_vote_now = false;
        #[cfg(test)]
        if local.planted(PlantedBug::OwnVoteBeforeFsync) {
            own_vote_now = true;
        }
        if own_vote_now {
            votes[local.id] = true;
        } else {
            local.send(local.id, Message::Accepted { ballot, slot });
        }
        self.inflight.insert(
            slot,
            Proposal {
                value: value.clone(),
                votes,
            },
        );
        self.next_slot = self.next_slot.max(slot + 1);
        local.broadcast_now(Message::Accept {
            ballot,
            slot,
            value,
        });
        self.check_chosen(slot, local);
        Ok(())
    }

    /// If a majority accepted our proposal for `slot`, it is chosen: learn it
    /// and tell everyone. The caller applies it.
    fn check_chosen(&mut self, slot: Slot, local: &mut Local) {
        let chosen = self
            .inflight
            .get(&slot)
            .is_some_and(|p| p.vote_count() >= majority(local.n));
        if !chosen {
            return;
        }
        let Some(p) = self.inflight.remove(&slot) else {
            return;
        };
        local
            .learner
            .learn(slot, p.value.clone(), &mut local.out.persist);
        local.broadcast_now(Message::Chosen {
            entries: vec![ChosenEntry {
                slot,
                value: p.value,
            }],
        });
    }

    /// Turn queued commands into batches, within the pipelining window, and
    /// send a heartbeat round for reads that arrived since the last one.
    pub fn flush(&mut self, local: &mut Local) -> Result<(), Deposed> {
        while !self.queue.is_empty()
            && (self.inflight.len() as u64) < local.config.max_inflight_slots
        {
            // At most `max_batch` commands and about `max_message_bytes`.
            let mut bytes = 0;
            let take = self
                .queue
                .iter()
                .take(local.config.max_batch)
                .take_while(|(_, cmd)| {
                    let first = bytes == 0;
                    bytes += command_bytes(cmd);
                    first || bytes <= local.config.max_message_bytes
                })
                .count();
            let batch: Vec<_> = self.queue.drain(..take).collect();
            let slot = self.next_slot;
            let commands = batch.iter().map(|(_, cmd)| cmd.clone()).collect();
            self.waiting.insert(slot, batch);
            self.propose(slot, Value::Batch(commands), local)?;
        }
        // One round per wake-up: every read (and follower read-index
        // request) that arrived since the last round shares this one.
        // (Holding new rounds while one is unconfirmed, as a follower holds
        // its read-index requests, cost leader GETs throughput in
        // `examples/loadgen` A/B runs and saved no CPU consistently.)
        if self.round_needed {
            self.broadcast_heartbeat(local);
        }
        Ok(())
    }

    pub fn broadcast_heartbeat(&mut self, local: &mut Local) {
        self.read_round += 1;
        self.acked_round[local.id] = self.read_round;
        self.round_needed = false;
        self.heartbeat_elapsed = 0;
        local.broadcast_now(Message::Heartbeat {
            ballot: self.ballot,
            commit_index: local.learner.commit_index(),
            read_round: self.read_round,
        });
    }

    /// Re-send accepts nobody answered yet (messages get lost).
    fn resend_accepts(&self, local: &mut Local) {
        for (slot, p) in &self.inflight {
            for (r, voted) in p.votes.iter().enumerate() {
                if !voted && r != local.id {
                    local.send_now(
                        r,
                        Message::Accept {
                            ballot: self.ballot,
                            slot: *slot,
                            value: p.value.clone(),
                        },
                    );
                }
            }
        }
    }

    /// Answer reads whose leadership round a majority confirmed and whose
    /// read index is applied.
    pub fn serve_reads(&mut self, local: &mut Local) {
        if self.reads.is_empty() {
            return;
        }
        let applied = local.learner.applied();
        let confirmed = self.confirmed_round();
        // A follower's request needs only the confirmation: it waits for
        // its own log to reach the read index.
        let (done, waiting): (Vec<_>, Vec<_>) = self.reads.drain(..).partition(|r| {
            r.round <= confirmed
                && (r.read_index <= applied || matches!(r.origin, ReadOrigin::Follower { .. }))
        });
        self.reads = waiting;
        for read in done {
            match read.origin {
                ReadOrigin::Client { request_id, key } => {
                    let value = local.learner.kv().read(&key);
                    local.reply(request_id, Ok(read_result(value)));
                }
                ReadOrigin::Follower {
                    from,
                    incarnation,
                    id,
                } => local.send(
                    from,
                    Message::ReadIndexReply {
                        ballot: self.ballot,
                        incarnation,
                        id,
                        read_index: read.read_index,
                    },
                ),
            }
        }
    }

    /// Stop leading: answer every pending request. Queued commands and reads
    /// were never proposed (not applied); proposed ones may still be chosen.
    pub fn step_down(self, hint: Option<ReplicaId>, out: &mut Ready) {
        let Coordinator {
            queue,
            waiting,
            mut retries,
            reads,
            ..
        } = self;
        let mut answer = |request_id, cmd: &Command, error: RequestError| {
            let retries = retries.remove(&key_of(cmd)).unwrap_or_default().1;
            for request_id in std::iter::once(request_id).chain(retries) {
                out.replies.push((request_id, Err(error.clone())));
            }
        };
        for (request_id, cmd) in queue {
            answer(
                request_id,
                &cmd,
                RequestError::NotLeader { leader_hint: hint },
            );
        }
        for (request_id, cmd) in waiting.into_values().flatten() {
            answer(
                request_id,
                &cmd,
                RequestError::OutcomeUnknown { leader_hint: hint },
            );
        }
        // A follower's request goes unanswered: the follower gives up on
        // its own.
        for read in reads {
            if let ReadOrigin::Client { request_id, .. } = read.origin {
                out.replies.push((
                    request_id,
                    Err(RequestError::NotLeader { leader_hint: hint }),
                ));
            }
        }
    }
}

/// Ticks after which a catch-up not seen to arrive counts as lost and may be
/// sent again: two heartbeat intervals, time for the heartbeat after it to be
/// answered.
fn catchup_timeout(config: &Config) -> u64 {
    2 * config.heartbeat_ticks
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
