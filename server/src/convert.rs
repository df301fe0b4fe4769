//! Conversions between the core's types and their protobuf encodings.
//!
//! Encoding never fails. Decoding is where untrusted bytes from the network or
//! the disk become core values, so every decoder checks what the types cannot:
//! required fields are present, replica ids are inside the cluster, slots are
//! not 0, keys and values are within the size limits (the command mapping
//! and its limits are the shared ones of [`paxoskv::op`]). A bad message yields a
//! [`ConvertError`] naming the problem, never a panic.
//!
//! The same encodings serve the wire (`paxos.proto`) and the disk
//! (`storage.rs` stores these bytes), so there is one format to get right.

use bytes::Bytes;
use paxoskv::paxos as pb;
use prost::Message as _;
use thiserror::Error;

use paxoskv::op::OpError;

use crate::kv::{Command, KvStore, Op};
use crate::paxos::{
    AcceptedEntry, Ballot, ChosenEntry, Message, ReplicaId, Slot, Snapshot, StorageWrite, Value,
};
use crate::storage;

/// Why bytes or a protobuf message could not become a core value.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConvertError {
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A replica id outside `0..cluster_size`.
    #[error("replica id {id} is outside the cluster of {count}")]
    BadReplica {
        /// The offending id.
        id: u64,
        /// Cluster size.
        count: usize,
    },
    /// Slot 0 is not a log slot.
    #[error("slot 0 is not a log slot")]
    SlotZero,
    /// A command outside the size limits (see [`paxoskv::op`]).
    #[error(transparent)]
    Op(#[from] OpError),
    /// Bytes that are not a valid protobuf message of the expected type.
    #[error("undecodable {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
}

type Result<T> = std::result::Result<T, ConvertError>;

// ---------------------------------------------------------------- ballots

/// Encodes a ballot.
pub(crate) fn ballot_to_pb(b: Ballot) -> pb::Ballot {
    pb::Ballot {
        round: b.round,
        replica: b.replica as u32,
    }
}

/// Decodes a ballot whose owner must be one of `count` replicas.
pub(crate) fn ballot_from_pb(b: Option<pb::Ballot>, count: usize) -> Result<Ballot> {
    let b = b.ok_or(ConvertError::Missing("ballot"))?;
    let replica = replica_id(b.replica as u64, count)?;
    Ok(Ballot::new(b.round, replica))
}

/// Checks a replica id against the cluster size.
pub(crate) fn replica_id(id: u64, count: usize) -> Result<ReplicaId> {
    if id < count as u64 {
        Ok(id as ReplicaId)
    } else {
        Err(ConvertError::BadReplica { id, count })
    }
}

fn slot(s: u64) -> Result<Slot> {
    if s == 0 {
        Err(ConvertError::SlotZero)
    } else {
        Ok(s)
    }
}

// ---------------------------------------------------------------- commands

fn command_to_pb(c: &Command) -> pb::Command {
    pb::Command {
        client_id: c.client_id,
        seq: c.seq,
        op: Some(c.op.to_command_proto()),
    }
}

fn command_from_pb(c: pb::Command) -> Result<Command> {
    let op = c.op.ok_or(ConvertError::Missing("command.op"))?;
    Ok(Command {
        client_id: c.client_id,
        seq: c.seq,
        op: Op::from_command_proto(op)?,
    })
}

// ---------------------------------------------------------------- values

/// Encodes a log value.
pub(crate) fn value_to_pb(v: &Value) -> pb::Value {
    let kind = match v {
        Value::NoOp => pb::value::Kind::Noop(pb::NoOp {}),
        Value::Batch(cmds) => pb::value::Kind::Batch(pb::CommandBatch {
            commands: cmds.iter().map(command_to_pb).collect(),
        }),
    };
    pb::Value { kind: Some(kind) }
}

/// Decodes a log value.
pub(crate) fn value_from_pb(v: Option<pb::Value>) -> Result<Value> {
    match v.and_then(|v| v.kind) {
        None => Err(ConvertError::Missing("value")),
        Some(pb::value::Kind::Noop(_)) => Ok(Value::NoOp),
        Some(pb::value::Kind::Batch(b)) => Ok(Value::Batch(
            b.commands
                .into_iter()
                .map(command_from_pb)
                .collect::<Result<_>>()?,
        )),
    }
}

fn accepted_to_pb(e: &AcceptedEntry) -> pb::AcceptedEntry {
    pb::AcceptedEntry {
        slot: e.slot,
        ballot: Some(ballot_to_pb(e.ballot)),
        value: Some(value_to_pb(&e.value)),
    }
}

fn accepted_from_pb(e: pb::AcceptedEntry, count: usize) -> Result<AcceptedEntry> {
    Ok(AcceptedEntry {
        slot: slot(e.slot)?,
        ballot: ballot_from_pb(e.ballot, count)?,
        value: value_from_pb(e.value)?,
    })
}

fn chosen_to_pb(e: &ChosenEntry) -> pb::ChosenEntry {
    pb::ChosenEntry {
        slot: e.slot,
        value: Some(value_to_pb(&e.value)),
    }
}

fn chosen_from_pb(e: pb::ChosenEntry) -> Result<ChosenEntry> {
    Ok(ChosenEntry {
        slot: slot(e.slot)?,
        value: value_from_pb(e.value)?,
    })
}

// ---------------------------------------------------------------- snapshots

/// Encodes a snapshot (the state machine as CBOR).
pub(crate) fn snapshot_to_pb(s: &Snapshot) -> pb::Snapshot {
    let mut state = Vec::new();
    // Writing CBOR into a Vec cannot fail for plain data.
    if let Err(e) = ciborium::into_writer(&s.state, &mut state) {
        tracing::error!(error = %e, "cannot encode snapshot state");
    }
    pb::Snapshot {
        last_slot: s.last_slot,
        state: Bytes::from(state),
    }
}

/// Decodes a snapshot.
pub(crate) fn snapshot_from_pb(s: pb::Snapshot) -> Result<Snapshot> {
    let state: KvStore =
        ciborium::from_reader(s.state.as_ref()).map_err(|e| ConvertError::Decode {
            what: "snapshot state",
            reason: e.to_string(),
        })?;
    Ok(Snapshot {
        last_slot: s.last_slot,
        state,
    })
}

// ---------------------------------------------------------------- messages

/// Encodes a Paxos message.
pub(crate) fn message_to_pb(m: &Message) -> pb::PaxosMessage {
    use pb::paxos_message::Kind as K;
    let kind = match m {
        Message::PreVote { ballot, takeover } => K::PreVote(pb::PreVote {
            ballot: Some(ballot_to_pb(*ballot)),
            takeover: *takeover,
        }),
        Message::PreVoteReply { ballot, granted } => K::PreVoteReply(pb::PreVoteReply {
            ballot: Some(ballot_to_pb(*ballot)),
            granted: *granted,
        }),
        Message::Prepare { ballot, first_slot } => K::Prepare(pb::Prepare {
            ballot: Some(ballot_to_pb(*ballot)),
            first_slot: *first_slot,
        }),
        Message::Promise {
            ballot,
            accepted,
            chosen,
            commit_index,
            snapshot,
            accepted_through,
        } => K::Promise(pb::Promise {
            ballot: Some(ballot_to_pb(*ballot)),
            accepted: accepted.iter().map(accepted_to_pb).collect(),
            chosen: chosen.iter().map(chosen_to_pb).collect(),
            commit_index: *commit_index,
            snapshot: snapshot.as_ref().map(snapshot_to_pb),
            accepted_through: accepted_through.unwrap_or(0),
        }),
        Message::Accept {
            ballot,
            slot,
            value,
        } => K::Accept(pb::Accept {
            ballot: Some(ballot_to_pb(*ballot)),
            slot: *slot,
            value: Some(value_to_pb(value)),
        }),
        Message::Accepted { ballot, slot } => K::Accepted(pb::Accepted {
            ballot: Some(ballot_to_pb(*ballot)),
            slot: *slot,
        }),
        Message::Rejected { ballot, promised } => K::Rejected(pb::Rejected {
            ballot: Some(ballot_to_pb(*ballot)),
            promised: Some(ballot_to_pb(*promised)),
        }),
        Message::Chosen { entries } => K::Chosen(pb::Chosen {
            entries: entries.iter().map(chosen_to_pb).collect(),
        }),
        Message::Heartbeat {
            ballot,
            commit_index,
            read_round,
        } => K::Heartbeat(pb::Heartbeat {
            ballot: Some(ballot_to_pb(*ballot)),
            commit_index: *commit_index,
            read_round: *read_round,
        }),
        Message::HeartbeatAck {
            ballot,
            read_round,
            commit_index,
        } => K::HeartbeatAck(pb::HeartbeatAck {
            ballot: Some(ballot_to_pb(*ballot)),
            read_round: *read_round,
            commit_index: *commit_index,
        }),
        Message::CatchUp { first_slot } => K::CatchUp(pb::CatchUp {
            first_slot: *first_slot,
        }),
        Message::Snapshot { snapshot } => K::Snapshot(pb::InstallSnapshot {
            snapshot: Some(snapshot_to_pb(snapshot)),
        }),
        Message::ReadIndex { incarnation, id } => K::ReadIndex(pb::ReadIndex {
            incarnation: *incarnation,
            id: *id,
        }),
        Message::ReadIndexReply {
            ballot,
            incarnation,
            id,
            read_index,
        } => K::ReadIndexReply(pb::ReadIndexReply {
            ballot: Some(ballot_to_pb(*ballot)),
            incarnation: *incarnation,
            id: *id,
            read_index: *read_index,
        }),
        Message::SnapshotChunk {
            last_slot,
            total_bytes,
            offset,
            data,
        } => K::SnapshotChunk(pb::SnapshotChunk {
            last_slot: *last_slot,
            total_bytes: *total_bytes,
            offset: *offset,
            data: Bytes::copy_from_slice(data),
        }),
    };
    pb::PaxosMessage { kind: Some(kind) }
}

/// Decodes and validates a Paxos message from a cluster of `count` replicas.
pub(crate) fn message_from_pb(m: pb::PaxosMessage, count: usize) -> Result<Message> {
    use pb::paxos_message::Kind as K;
    let b = |x| ballot_from_pb(x, count);
    Ok(match m.kind.ok_or(ConvertError::Missing("message kind"))? {
        K::PreVote(p) => Message::PreVote {
            ballot: b(p.ballot)?,
            takeover: p.takeover,
        },
        K::PreVoteReply(p) => Message::PreVoteReply {
            ballot: b(p.ballot)?,
            granted: p.granted,
        },
        K::Prepare(p) => Message::Prepare {
            ballot: b(p.ballot)?,
            first_slot: p.first_slot,
        },
        K::Promise(p) => Message::Promise {
            ballot: b(p.ballot)?,
            accepted: p
                .accepted
                .into_iter()
                .map(|e| accepted_from_pb(e, count))
                .collect::<Result<_>>()?,
            chosen: p
                .chosen
                .into_iter()
                .map(chosen_from_pb)
                .collect::<Result<_>>()?,
            commit_index: p.commit_index,
            snapshot: p.snapshot.map(snapshot_from_pb).transpose()?,
            // Slot 0 is no log slot: 0 means the report is complete.
            accepted_through: (p.accepted_through != 0).then_some(p.accepted_through),
        },
        K::Accept(a) => Message::Accept {
            ballot: b(a.ballot)?,
            slot: slot(a.slot)?,
            value: value_from_pb(a.value)?,
        },
        K::Accepted(a) => Message::Accepted {
            ballot: b(a.ballot)?,
            slot: slot(a.slot)?,
        },
        K::Rejected(r) => Message::Rejected {
            ballot: b(r.ballot)?,
            promised: b(r.promised)?,
        },
        K::Chosen(c) => Message::Chosen {
            entries: c
                .entries
                .into_iter()
                .map(chosen_from_pb)
                .collect::<Result<_>>()?,
        },
        K::Heartbeat(h) => Message::Heartbeat {
            ballot: b(h.ballot)?,
            commit_index: h.commit_index,
            read_round: h.read_round,
        },
        K::HeartbeatAck(h) => Message::HeartbeatAck {
            ballot: b(h.ballot)?,
            read_round: h.read_round,
            commit_index: h.commit_index,
        },
        K::CatchUp(c) => Message::CatchUp {
            first_slot: c.first_slot,
        },
        K::Snapshot(s) => Message::Snapshot {
            snapshot: snapshot_from_pb(s.snapshot.ok_or(ConvertError::Missing("snapshot"))?)?,
        },
        K::ReadIndex(r) => Message::ReadIndex {
            incarnation: r.incarnation,
            id: r.id,
        },
        K::ReadIndexReply(r) => Message::ReadIndexReply {
            ballot: b(r.ballot)?,
            incarnation: r.incarnation,
            id: r.id,
            read_index: r.read_index,
        },
        K::SnapshotChunk(c) => Message::SnapshotChunk {
            last_slot: c.last_slot,
            total_bytes: c.total_bytes,
            offset: c.offset,
            data: c.data.to_vec(),
        },
        // The runtime handles forwarded requests before decoding
        // (`peer.rs`); they are not core messages.
        K::Forward(_) | K::ForwardReply(_) => {
            return Err(ConvertError::Decode {
                what: "peer message",
                reason: "a forwarded request is not a core message".into(),
            })
        }
    })
}

// ---------------------------------------------------------------- storage

/// Encodes one core storage write for [`storage::Storage`], taking it:
/// a snapshot is then moved, not copied, to the checkpoint writer, which
/// encodes it (see [`storage::SnapshotBytes`]).
pub fn write_into_storage(w: StorageWrite) -> storage::Write {
    match w {
        StorageWrite::Snapshot(s) => snapshot_to_storage(s),
        other => write_to_storage(&other),
    }
}

/// A snapshot for storage, encoded (CBOR, then protobuf) on first use.
fn snapshot_to_storage(s: Snapshot) -> storage::Write {
    storage::Write::Snapshot(storage::EncodedSnapshot {
        last_slot: s.last_slot,
        data: storage::SnapshotBytes::later(move || snapshot_to_pb(&s).encode_to_vec().into()),
    })
}

/// Encodes one core storage write for [`storage::Storage`].
pub fn write_to_storage(w: &StorageWrite) -> storage::Write {
    match w {
        StorageWrite::Promise(b) => {
            storage::Write::Promise(ballot_to_pb(*b).encode_to_vec().into())
        }
        StorageWrite::Accept {
            slot,
            ballot,
            value,
        } => storage::Write::Accept(
            *slot,
            pb::AcceptedEntry {
                slot: *slot,
                ballot: Some(ballot_to_pb(*ballot)),
                value: Some(value_to_pb(value)),
            }
            .encode_to_vec()
            .into(),
        ),
        StorageWrite::Chosen { slot, value } => {
            storage::Write::Chosen(*slot, value_to_pb(value).encode_to_vec().into())
        }
        StorageWrite::Snapshot(s) => snapshot_to_storage(s.clone()),
        StorageWrite::Compact { through } => storage::Write::Compact(*through),
    }
}

fn decode<M: prost::Message + Default>(what: &'static str, b: &[u8]) -> Result<M> {
    M::decode(b).map_err(|e| ConvertError::Decode {
        what,
        reason: e.to_string(),
    })
}

/// Rebuilds the core's persistent state from what storage recovered.
pub(crate) fn persistent_from_storage(
    d: &storage::DurableState,
    count: usize,
) -> Result<crate::paxos::PersistentState> {
    let mut p = crate::paxos::PersistentState::default();
    if let Some(b) = &d.promised {
        p.promised = ballot_from_pb(Some(decode("promise", b)?), count)?;
    }
    for (s, bytes) in &d.accepted {
        let e = accepted_from_pb(decode("accepted entry", bytes)?, count)?;
        p.accepted.insert(*s, (e.ballot, e.value));
    }
    for (s, bytes) in &d.chosen {
        p.chosen
            .insert(*s, value_from_pb(Some(decode("chosen value", bytes)?))?);
    }
    if let Some(s) = &d.snapshot {
        p.snapshot = Some(snapshot_from_pb(decode("snapshot", &s.data)?)?);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(k: &str) -> Command {
        Command {
            client_id: 7,
            seq: 3,
            op: Op::Cas {
                key: k.into(),
                expected: None,
                new: "v".into(),
            },
        }
    }

    #[test]
    fn messages_round_trip() {
        let b = Ballot::new(4, 2);
        let v = Value::Batch(vec![cmd("a"), cmd("b")]);
        let msgs = vec![
            Message::Prepare {
                ballot: b,
                first_slot: 9,
            },
            Message::Accept {
                ballot: b,
                slot: 3,
                value: v.clone(),
            },
            Message::Promise {
                ballot: b,
                accepted: vec![AcceptedEntry {
                    slot: 5,
                    ballot: b,
                    value: Value::NoOp,
                }],
                chosen: vec![ChosenEntry {
                    slot: 4,
                    value: v.clone(),
                }],
                commit_index: 4,
                snapshot: Some(Snapshot {
                    last_slot: 2,
                    state: KvStore::new(),
                }),
                accepted_through: Some(7),
            },
            Message::SnapshotChunk {
                last_slot: 9,
                total_bytes: 10,
                offset: 4,
                data: vec![1, 2, 3],
            },
            Message::Rejected {
                ballot: b,
                promised: Ballot::new(5, 0),
            },
            Message::HeartbeatAck {
                ballot: b,
                read_round: 8,
                commit_index: 3,
            },
        ];
        for m in msgs {
            let back = message_from_pb(message_to_pb(&m), 3).unwrap();
            assert_eq!(back, m);
        }
    }

    #[test]
    fn bad_messages_are_errors() {
        let m = message_to_pb(&Message::Prepare {
            ballot: Ballot::new(1, 4),
            first_slot: 1,
        });
        assert!(matches!(
            message_from_pb(m, 3),
            Err(ConvertError::BadReplica { id: 4, count: 3 })
        ));
        let m = message_to_pb(&Message::Accepted {
            ballot: Ballot::new(1, 0),
            slot: 0,
        });
        assert_eq!(message_from_pb(m, 3), Err(ConvertError::SlotZero));
        assert_eq!(
            message_from_pb(pb::PaxosMessage { kind: None }, 3),
            Err(ConvertError::Missing("message kind"))
        );
        let m = message_to_pb(&Message::Accept {
            ballot: Ballot::new(1, 0),
            slot: 1,
            value: Value::Batch(vec![cmd("")]),
        });
        assert_eq!(
            message_from_pb(m, 3),
            Err(ConvertError::Op(OpError::EmptyKey))
        );
    }

    #[test]
    fn storage_round_trip() {
        let mut st = crate::paxos::PersistentState::default();
        let mut d = storage::DurableState::default();
        let writes = vec![
            StorageWrite::Promise(Ballot::new(3, 1)),
            StorageWrite::Accept {
                slot: 1,
                ballot: Ballot::new(3, 1),
                value: Value::Batch(vec![cmd("x")]),
            },
            StorageWrite::Chosen {
                slot: 1,
                value: Value::NoOp,
            },
        ];
        for w in &writes {
            st.apply(w);
            match write_to_storage(w) {
                storage::Write::Promise(b) => d.promised = Some(b),
                storage::Write::Accept(s, b) => {
                    d.accepted.insert(s, b);
                }
                storage::Write::Chosen(s, b) => {
                    d.chosen.insert(s, b);
                }
                _ => unreachable!(),
            }
        }
        assert_eq!(persistent_from_storage(&d, 3).unwrap(), st);
    }
}
