//! Follower reads (etcd's follower ReadIndex): a follower answers a `Get`
//! from its own state, after asking the coordinator how far it must have
//! applied the log.
//!
//! 1. Reads a follower receives form one batch until
//!    [`Replica::ready`](super::Replica::ready) sends one
//!    [`Message::ReadIndex`] for it to the coordinator the follower
//!    follows. One request to that coordinator is in flight at a time:
//!    reads that arrive while it is unanswered wait, and all go in the next
//!    request, sent once the answer came (or once the request is
//!    `heartbeat_ticks` old: slow or lost, it holds no one back longer).
//! 2. The coordinator treats the request like a read of its own: it notes
//!    the last slot it has proposed (the read index) and answers with a
//!    [`Message::ReadIndexReply`] once a majority acknowledged, in its
//!    ballot, a heartbeat round sent after the request arrived.
//! 3. The follower serves the batch's reads once it has applied the read
//!    index.
//!
//! Why that is linearizable: every write acknowledged before a read arrived
//! at the follower was chosen before the coordinator received the request,
//! and so sits at or below the read index. A coordinator deposed before the
//! request arrived cannot get its round confirmed (a majority promised a
//! higher ballot and refuses its heartbeats), so it never answers. The
//! answer stays valid even if the follower has meanwhile moved on to
//! another coordinator: the index is a lower bound, and applying more than
//! it only shows writes that were chosen before the read is answered.
//!
//! A batch not answered within `election_ticks` (lost message, coordinator
//! gone, follower lagging far behind) is answered with
//! [`RequestError::NotLeader`]: a read that was never served, which the
//! runtime forwards or the client retries. Request ids carry the replica's
//! incarnation ([`Replica::set_incarnation`](super::Replica::set_incarnation))
//! so that an answer meant for an earlier run of the process, delayed in the
//! network, is never taken for the answer to a new request.

use std::collections::{BTreeMap, BTreeSet};

use super::messages::Message;

use super::ready::{Executed, Ready, RequestError};
use super::types::{ReplicaId, RequestId, Slot};
use crate::kv::{KvStore, OpResult};

/// A batch of reads asked for with one request.
#[derive(Debug)]
struct Batch {
    /// The coordinator asked.
    leader: ReplicaId,
    reads: Vec<(RequestId, String)>,
    /// The read index, once the coordinator answered.
    index: Option<Slot>,
    /// Ticks since it was asked for.
    age: u64,
}

/// A follower's reads waiting for a read index or for the log to reach it.
#[derive(Debug, Default)]
pub struct FollowerReads {
    incarnation: u64,
    next_id: u64,
    /// Reads submitted since the last request went out.
    unsent: Vec<(RequestId, String)>,
    /// Requests sent, by id.
    batches: BTreeMap<u64, Batch>,
}

impl FollowerReads {
    /// Distinguishes this run of the replica from earlier ones.
    pub fn set_incarnation(&mut self, incarnation: u64) {
        self.incarnation = incarnation;
    }

    /// Reads waiting (unsent, asked for, or waiting for the log).
    pub fn len(&self) -> usize {
        self.unsent.len() + self.batches.values().map(|b| b.reads.len()).sum::<usize>()
    }

    /// True when no read waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop the reads of `request_ids`, whose requesters are gone (see
    /// [`super::Replica::cancel`]). Returns how many were dropped.
    pub fn cancel(&mut self, request_ids: &BTreeSet<RequestId>) -> usize {
        let before = self.len();
        self.unsent.retain(|(id, _)| !request_ids.contains(id));
        for b in self.batches.values_mut() {
            b.reads.retain(|(id, _)| !request_ids.contains(id));
        }
        before - self.len()
    }

    /// A `Get` of `key` to serve here.
    pub fn submit(&mut self, request_id: RequestId, key: String) {
        self.unsent.push((request_id, key));
    }

    /// Ask `leader` for a read index for the reads submitted since the last
    /// request, unless a request to it, younger than `patience` ticks, is
    /// still unanswered (they wait for the next); without a leader to ask,
    /// answer them `NotLeader`.
    /// (`join_in_flight`: a planted bug for the tests, add them to the
    /// request in flight instead.)
    pub fn flush(
        &mut self,
        leader: Option<ReplicaId>,
        patience: u64,
        out: &mut Ready,
        join_in_flight: bool,
    ) {
        if self.unsent.is_empty() {
            return;
        }
        let in_flight =
            |b: &Batch| Some(b.leader) == leader && b.index.is_none() && b.age < patience;
        if let Some(b) = self.batches.values_mut().find(|b| in_flight(b)) {
            if join_in_flight {
                b.reads.append(&mut self.unsent);
            }
            return;
        }
        let reads = std::mem::take(&mut self.unsent);
        let Some(leader) = leader else {
            answer_not_leader(reads, None, out);
            return;
        };
        self.next_id += 1;
        let id = self.next_id;
        out.messages.push((
            leader,
            Message::ReadIndex {
                incarnation: self.incarnation,
                id,
            },
        ));
        self.batches.insert(
            id,
            Batch {
                leader,
                reads,
                index: None,
                age: 0,
            },
        );
    }

    /// The coordinator `from` answered request `id` with `read_index`.
    pub fn on_reply(&mut self, from: ReplicaId, incarnation: u64, id: u64, read_index: Slot) {
        if incarnation != self.incarnation {
            return;
        }
        if let Some(b) = self.batches.get_mut(&id).filter(|b| b.leader == from) {
            b.index = Some(b.index.map_or(read_index, |i| i.max(read_index)));
        }
    }

    /// Answer the reads whose read index is applied (`ignore_applied`: a
    /// planted bug for the tests, serve as soon as the index is known).
    pub fn serve(&mut self, applied: Slot, kv: &KvStore, out: &mut Ready, ignore_applied: bool) {
        let done: Vec<u64> = self
            .batches
            .iter()
            .filter(|(_, b)| b.index.is_some_and(|i| i <= applied || ignore_applied))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            let Some(b) = self.batches.remove(&id) else {
                continue;
            };
            for (request_id, key) in b.reads {
                let result = Executed {
                    result: OpResult::Value(kv.read(&key)),
                    slot: 0,
                };
                out.replies.push((request_id, Ok(result)));
            }
        }
    }

    /// One tick: batches older than `timeout` ticks are given up
    /// (`NotLeader`, with `hint`).
    pub fn tick(&mut self, timeout: u64, hint: Option<ReplicaId>, out: &mut Ready) {
        let mut expired = Vec::new();
        for (id, b) in self.batches.iter_mut() {
            b.age += 1;
            if b.age >= timeout {
                expired.push(*id);
            }
        }
        for id in expired {
            if let Some(b) = self.batches.remove(&id) {
                answer_not_leader(b.reads, hint, out);
            }
        }
    }

    /// Give up every read (the replica starts campaigning).
    pub fn fail_all(&mut self, hint: Option<ReplicaId>, out: &mut Ready) {
        answer_not_leader(std::mem::take(&mut self.unsent), hint, out);
        for (_, b) in std::mem::take(&mut self.batches) {
            answer_not_leader(b.reads, hint, out);
        }
    }
}

fn answer_not_leader(reads: Vec<(RequestId, String)>, hint: Option<ReplicaId>, out: &mut Ready) {
    for (request_id, _) in reads {
        out.replies.push((
            request_id,
            Err(RequestError::NotLeader { leader_hint: hint }),
        ));
    }
}
