//! Messages replicas send each other. The runtime carries them (as protobuf over
//! gRPC); the core never assumes they arrive, arrive once or arrive in order.
//!
//! Naming follows Paxos Made Simple: phase 1 is `Prepare`/`Promise`, phase 2 is
//! `Accept`/`Accepted`, and `Chosen` is what the distinguished learner (the
//! coordinator) tells the others.

use serde::{Deserialize, Serialize};

use super::storage::Snapshot;
use super::types::{Ballot, Slot, Value};

/// A value an acceptor accepted, reported in its promise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedEntry {
    pub slot: Slot,
    pub ballot: Ballot,
    pub value: Value,
}

/// A slot known to be chosen, with its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChosenEntry {
    pub slot: Slot,
    pub value: Value,
}

/// One replica-to-replica message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Pre-vote: "would you promise `ballot` if I asked?" A replica asks
    /// before campaigning and campaigns only with a majority's yes, so that
    /// one that merely lost touch cannot raise promises and depose a
    /// coordinator the others still hear. `takeover`: a higher-priority
    /// replica that hears the coordinator and has caught up with it wants to
    /// take over. Nothing is promised or persisted.
    PreVote { ballot: Ballot, takeover: bool },
    /// Answer to a pre-vote. A yes does not reset the voter's election timer.
    PreVoteReply { ballot: Ballot, granted: bool },
    /// Phase 1a, sent by a candidate once for all slots from `first_slot` on.
    Prepare { ballot: Ballot, first_slot: Slot },
    /// Phase 1b: the acceptor promised `ballot`. It reports what it accepted
    /// and what it knows is chosen from `first_slot` on, and, when it compacted
    /// slots the candidate asked about, its snapshot (which covers them) if
    /// it fits in one message; a larger one it sends first, as
    /// [`Message::SnapshotChunk`]s, instead of promising, and promises when
    /// asked again from beyond it. Both reports are cut by bytes: `accepted_through` is `Some(slot)`
    /// when the accepted values reported stop at `slot`, and the candidate
    /// must ask again (same ballot) from the next slot before it counts this
    /// promise; the chosen entries only save work and are simply cut.
    Promise {
        ballot: Ballot,
        accepted: Vec<AcceptedEntry>,
        chosen: Vec<ChosenEntry>,
        commit_index: Slot,
        snapshot: Option<Snapshot>,
        accepted_through: Option<Slot>,
    },
    /// Phase 2a: the coordinator of `ballot` proposes `value` for `slot`.
    Accept {
        ballot: Ballot,
        slot: Slot,
        value: Value,
    },
    /// Phase 2b: the acceptor accepted `slot` in `ballot`.
    Accepted { ballot: Ballot, slot: Slot },
    /// Negative answer to a `Prepare`, `Accept` or `Heartbeat` in `ballot`:
    /// the acceptor has promised the higher ballot `promised`.
    Rejected { ballot: Ballot, promised: Ballot },
    /// Slots known chosen: broadcast by the coordinator as they are chosen,
    /// and sent by anyone to a replica that is behind (catch-up).
    Chosen { entries: Vec<ChosenEntry> },
    /// The coordinator of `ballot` is alive; its log is chosen up to
    /// `commit_index`. `read_round` numbers the heartbeat so that the answer
    /// can confirm leadership for reads that arrived before it was sent.
    Heartbeat {
        ballot: Ballot,
        commit_index: Slot,
        read_round: u64,
    },
    /// Answer to a heartbeat the acceptor did not reject. `commit_index` is
    /// the sender's, so that the coordinator knows who needs catching up.
    HeartbeatAck {
        ballot: Ballot,
        read_round: u64,
        commit_index: Slot,
    },
    /// "Send me the chosen slots from `first_slot` on": a coordinator asks a
    /// replica that is ahead of it.
    CatchUp { first_slot: Slot },
    /// The state machine as of `snapshot.last_slot`, for a replica that needs
    /// slots already compacted away.
    Snapshot { snapshot: Snapshot },
    /// A follower asks the coordinator for a read index for the reads it
    /// holds (etcd's follower ReadIndex, see [`super::read_index`]).
    /// `incarnation` and `id` name the request (unique across the
    /// follower's restarts); the answer echoes them.
    ReadIndex { incarnation: u64, id: u64 },
    /// The coordinator of `ballot` confirmed, with a majority, a heartbeat
    /// round sent after request `id` arrived; `read_index` is the last slot
    /// it had proposed then. The follower serves the request's reads once it
    /// applied that slot.
    ReadIndexReply {
        ballot: Ballot,
        incarnation: u64,
        id: u64,
        read_index: Slot,
    },
    /// Part of a snapshot too large for one message (see
    /// [`super::snapshot_transfer`]): bytes `offset..offset + data.len()`
    /// of the encoded snapshot of `last_slot`, `total_bytes` long. Sent
    /// instead of [`Message::Snapshot`].
    SnapshotChunk {
        last_slot: Slot,
        total_bytes: u64,
        offset: u64,
        data: Vec<u8>,
    },
}

impl Message {
    /// The ballot the message speaks for, if any.
    pub fn ballot(&self) -> Option<Ballot> {
        match self {
            Message::Prepare { ballot, .. }
            | Message::Promise { ballot, .. }
            | Message::Accept { ballot, .. }
            | Message::Accepted { ballot, .. }
            | Message::Heartbeat { ballot, .. }
            | Message::HeartbeatAck { ballot, .. }
            | Message::ReadIndexReply { ballot, .. } => Some(*ballot),
            Message::Rejected { promised, .. } => Some(*promised),
            // A pre-vote ballot is only a question: no one may step down
            // because of it.
            Message::PreVote { .. }
            | Message::PreVoteReply { .. }
            | Message::Chosen { .. }
            | Message::CatchUp { .. }
            | Message::Snapshot { .. }
            | Message::SnapshotChunk { .. }
            | Message::ReadIndex { .. } => None,
        }
    }

    /// The highest slot the message mentions (0 if none), to reject
    /// nonsense before it can overflow arithmetic.
    pub fn highest_slot(&self) -> Slot {
        match self {
            Message::Prepare { first_slot, .. } | Message::CatchUp { first_slot } => *first_slot,
            Message::Promise {
                accepted,
                chosen,
                commit_index,
                snapshot,
                accepted_through,
                ..
            } => accepted
                .iter()
                .map(|e| e.slot)
                .chain(chosen.iter().map(|e| e.slot))
                .chain(snapshot.iter().map(|s| s.last_slot))
                .chain(*accepted_through)
                .fold(*commit_index, Slot::max),
            Message::Accept { slot, .. } | Message::Accepted { slot, .. } => *slot,
            Message::Chosen { entries } => entries.iter().map(|e| e.slot).max().unwrap_or(0),
            Message::Heartbeat { commit_index, .. }
            | Message::HeartbeatAck { commit_index, .. } => *commit_index,
            Message::Snapshot { snapshot } => snapshot.last_slot,
            Message::SnapshotChunk { last_slot, .. } => *last_slot,
            Message::ReadIndexReply { read_index, .. } => *read_index,
            Message::Rejected { .. }
            | Message::PreVote { .. }
            | Message::PreVoteReply { .. }
            | Message::ReadIndex { .. } => 0,
        }
    }

    /// A short name, for logs and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::PreVote { .. } => "pre-vote",
            Message::PreVoteReply { .. } => "pre-vote-reply",
            Message::Prepare { .. } => "prepare",
            Message::Promise { .. } => "promise",
            Message::Accept { .. } => "accept",
            Message::Accepted { .. } => "accepted",
            Message::Rejected { .. } => "rejected",
            Message::Chosen { .. } => "chosen",
            Message::Heartbeat { .. } => "heartbeat",
            Message::HeartbeatAck { .. } => "heartbeat-ack",
            Message::CatchUp { .. } => "catch-up",
            Message::Snapshot { .. } => "snapshot",
            Message::ReadIndex { .. } => "read-index",
            Message::ReadIndexReply { .. } => "read-index-reply",
            Message::SnapshotChunk { .. } => "snapshot-chunk",
        }
    }
}
