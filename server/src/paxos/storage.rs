//! What a replica must keep on disk, and the writes that change it.
//!
//! The core never writes anything itself: each [`Ready`](super::Ready) lists
//! [`StorageWrite`]s, in order, and the runtime must make them durable (fsync)
//! before sending that `Ready`'s messages or replies. Applying the writes in
//! order to a [`PersistentState`] (see [`PersistentState::apply`]) gives
//! exactly what [`Replica::new`](super::Replica::new) needs after a restart.
//!
//! Why each piece is durable:
//! - the promise and the accepted values are the acceptor's vote: forgetting
//!   them after a crash lets two different values be chosen for one slot;
//! - chosen slots and snapshots only save catch-up work: losing them is safe,
//!   the replica learns them again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::types::{Ballot, Slot, Value};
use crate::kv::KvStore;

/// The state machine as of a slot: everything chosen up to and including
/// `last_slot` applied to an empty store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub last_slot: Slot,
    pub state: KvStore,
}

/// One durable change, to be written in the order given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StorageWrite {
    /// The acceptor promised this ballot (replaces the previous promise).
    Promise(Ballot),
    /// The acceptor accepted `value` in `ballot` for `slot` (replaces any
    /// earlier accepted value of that slot).
    Accept {
        slot: Slot,
        ballot: Ballot,
        value: Value,
    },
    /// `slot` is chosen with `value`.
    Chosen { slot: Slot, value: Value },
    /// A new snapshot (replaces the previous one).
    Snapshot(Snapshot),
    /// Accepted and chosen entries up to and including `through` are covered
    /// by the snapshot and may be deleted.
    Compact { through: Slot },
}

/// Everything a replica reads back from disk when it starts. `Default` is a
/// fresh replica.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PersistentState {
    /// Highest ballot promised ([`Ballot::ZERO`] when none).
    pub promised: Ballot,
    /// Per slot, the last value accepted and its ballot.
    pub accepted: BTreeMap<Slot, (Ballot, Value)>,
    /// Slots known chosen and not yet compacted.
    pub chosen: BTreeMap<Slot, Value>,
    /// Latest snapshot, if any.
    pub snapshot: Option<Snapshot>,
}

impl PersistentState {
    /// Apply one write, as a disk would. The runtime may use this to keep an
    /// in-memory mirror; the simulator uses it as its disk.
    pub fn apply(&mut self, write: &StorageWrite) {
        match write {
            StorageWrite::Promise(ballot) => self.promised = *ballot,
            StorageWrite::Accept {
                slot,
                ballot,
                value,
            } => {
                self.accepted.insert(*slot, (*ballot, value.clone()));
            }
            StorageWrite::Chosen { slot, value } => {
                self.chosen.insert(*slot, value.clone());
            }
            StorageWrite::Snapshot(snapshot) => self.snapshot = Some(snapshot.clone()),
            StorageWrite::Compact { through } => {
                self.accepted = self.accepted.split_off(&(through + 1));
                self.chosen = self.chosen.split_off(&(through + 1));
            }
        }
    }

    /// Slot of the snapshot, 0 when there is none.
    pub fn snapshot_slot(&self) -> Slot {
        self.snapshot.as_ref().map_or(0, |s| s.last_slot)
    }
}
