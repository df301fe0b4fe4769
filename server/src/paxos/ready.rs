//! The output of the core: what to persist, what to send, whom to answer.

use serde::{Deserialize, Serialize};

use super::messages::Message;
use super::storage::StorageWrite;
use super::types::{ReplicaId, RequestId, Slot};
use crate::kv::{OpResult, StaleCommand};

/// Why a client request was not answered with a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RequestError {
    /// This replica is not (or no longer) the coordinator, and the command
    /// was **definitely not applied** by this request: it was never proposed.
    /// Forward it to `leader_hint`, or retry elsewhere when `None`.
    #[error("not the coordinator (leader hint: {leader_hint:?}); the command was not applied")]
    NotLeader { leader_hint: Option<ReplicaId> },
    /// The command was proposed, then this replica stopped being coordinator
    /// (or its slot was overtaken by a snapshot) before learning the outcome:
    /// it **may or may not** take effect. Retrying with the same
    /// `(client_id, seq)` is safe: it will not apply twice.
    #[error("outcome unknown: the coordinator lost leadership after proposing (leader hint: {leader_hint:?})")]
    OutcomeUnknown { leader_hint: Option<ReplicaId> },
    /// The coordinator has `pending` requests waiting already: this one was
    /// refused before anything was done, **definitely not applied**. Retry
    /// later.
    #[error(
        "the coordinator is overloaded ({pending} requests waiting); the command was not applied"
    )]
    Overloaded { pending: usize },
    /// This replica's disk is behind: `waiting` batches of writes are
    /// queued for it already, so the runtime refused the request before
    /// handing it to the core (back-pressure): **definitely not applied**.
    /// Retry later. (Never produced by the core itself.)
    #[error(
        "this replica's disk is behind ({waiting} batches of writes waiting); the command was not \
         applied"
    )]
    DiskBehind { waiting: usize },
    /// The session table refused the command (an older sequence number, or
    /// one already used for another command): not applied.
    #[error(transparent)]
    Stale(#[from] StaleCommand),
}

/// A command that took effect (or a read that was answered).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executed {
    pub result: OpResult,
    /// The log slot the command was chosen in; 0 for reads (they get no slot
    /// of their own) and for a retry answered from the session cache.
    pub slot: Slot,
}

/// The answer to one client request.
pub type Reply = Result<Executed, RequestError>;

/// Everything the core wants done after the last inputs.
///
/// **Rule:** every item of `persist` must be durable (written and fsynced, in
/// order) before any of this `Ready`'s `messages` are sent. A promise or an
/// accept must never be announced before it would survive a crash.
///
/// `send_now` holds the messages that depend on no write at all, of this
/// `Ready` or of an earlier one still on its way to disk: the coordinator's
/// accepts, chosen announcements and heartbeats, all in a ballot whose
/// phase 1 a majority completed (its own promise in it was durable before
/// the prepares left, so before any remote promise came back). They may be
/// sent at once, while `persist` is being written: a follower fsyncs an
/// accepted value while the coordinator fsyncs the same one (as Raft
/// leaders do). The coordinator's own vote for what it proposes is a
/// `Message::Accepted` addressed to itself in `messages`: the runtime hands
/// it back to [`step`](super::Replica::step) once `persist` is durable, and
/// only then does the vote count.
///
/// `replies` may be delivered at once, before `persist` is durable, when the
/// cluster has more than one replica: a reply only reports slots that are
/// chosen (or reads of what they applied, or that nothing was done), and a
/// slot is chosen only once a majority accepted it durably (the
/// coordinator's own vote included only after its fsync, above). With a
/// single replica, replies wait for `persist` like messages.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ready {
    pub persist: Vec<StorageWrite>,
    pub messages: Vec<(ReplicaId, Message)>,
    /// Messages that need no write to be durable first (see above).
    pub send_now: Vec<(ReplicaId, Message)>,
    pub replies: Vec<(RequestId, Reply)>,
}

/// Push `msg` for every replica of `0..n` but `me` onto `out`: clones for
/// all but the last, which takes `msg` itself (one copy of a batch of
/// commands fewer per broadcast).
pub(crate) fn push_to_others(
    out: &mut Vec<(ReplicaId, Message)>,
    n: usize,
    me: ReplicaId,
    msg: Message,
) {
    let mut others = (0..n).filter(|r| *r != me).peekable();
    while let Some(r) = others.next() {
        if others.peek().is_some() {
            out.push((r, msg.clone()));
        } else {
            out.push((r, msg));
            return;
        }
    }
}

impl Ready {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty()
            && self.messages.is_empty()
            && self.send_now.is_empty()
            && self.replies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_for_the_others_goes_to_every_replica_but_this_one_once() {
        let hb = Message::CatchUp { first_slot: 7 };
        for (n, me, to) in [
            (1, 0, vec![]),
            (3, 0, vec![1, 2]),
            (3, 1, vec![0, 2]),
            (5, 4, vec![0, 1, 2, 3]),
        ] {
            let mut out = Vec::new();
            push_to_others(&mut out, n, me, hb.clone());
            let got: Vec<ReplicaId> = out.iter().map(|(r, _)| *r).collect();
            assert_eq!(got, to, "n {n}, me {me}");
            assert!(out.iter().all(|(_, m)| *m == hb));
        }
    }
}
