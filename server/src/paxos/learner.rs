//! The learner: which slots are chosen, and the state machine they build.
//!
//! Chosen slots may be learned in any order (from the coordinator's
//! broadcasts, from catch-up, from promises); they are applied strictly in slot
//! order, up to the commit index (the end of the gap-free chosen prefix). Every
//! `snapshot_every` applied slots the learner snapshots the state machine and
//! compacts the log; a replica that needs compacted slots gets the snapshot.

use std::cell::OnceCell;
use std::collections::BTreeMap;

use super::messages::ChosenEntry;
use super::storage::{PersistentState, Snapshot, StorageWrite};
use super::types::{Slot, Value};
use crate::kv::{KvStore, OpResult, StaleCommand};

/// The result of applying one slot: each command's `(client_id, seq)` with
/// its result, in order.
pub type SlotResults = Vec<((u64, u64), Result<OpResult, StaleCommand>)>;

#[derive(Debug, Default)]
pub struct Learner {
    /// Chosen values not yet compacted away (applied or not).
    chosen: BTreeMap<Slot, Value>,
    /// Every slot up to here is chosen (and known to this replica).
    commit_index: Slot,
    /// Every slot up to here is applied to `kv`. Never above `commit_index`.
    applied: Slot,
    /// The replicated state machine.
    kv: KvStore,
    /// The latest snapshot; slots up to its `last_slot` are no longer in
    /// `chosen`. Kept in memory to send to replicas that fall behind it.
    snapshot: Snapshot,
    /// `snapshot` encoded for transfer, made on first use and dropped with
    /// the snapshot (see [`super::snapshot_transfer::encode`]).
    snapshot_encoded: OnceCell<Vec<u8>>,
}

impl Learner {
    /// Rebuild from disk: start from the snapshot, then re-learn the chosen
    /// slots above it. The caller applies them (see [`Learner::apply_next`]).
    pub fn restore(state: &PersistentState) -> Self {
        let snapshot = state.snapshot.clone().unwrap_or_default();
        let mut learner = Learner {
            chosen: state
                .chosen
                .range(snapshot.last_slot + 1..)
                .map(|(s, v)| (*s, v.clone()))
                .collect(),
            commit_index: snapshot.last_slot,
            applied: snapshot.last_slot,
            kv: snapshot.state.clone(),
            snapshot,
            snapshot_encoded: OnceCell::new(),
        };
        learner.advance_commit();
        learner
    }

    pub fn commit_index(&self) -> Slot {
        self.commit_index
    }

    pub fn applied(&self) -> Slot {
        self.applied
    }

    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Slots up to here are compacted away.
    /// The latest snapshot encoded for transfer, encoded once per snapshot.
    pub fn snapshot_encoded(&self) -> &[u8] {
        self.snapshot_encoded
            .get_or_init(|| super::snapshot_transfer::encode(&self.snapshot))
    }

    pub fn snapshot_slot(&self) -> Slot {
        self.snapshot.last_slot
    }

    /// The highest slot known chosen (gaps below it may remain).
    pub fn last_known_slot(&self) -> Slot {
        self.chosen
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .max(self.commit_index)
    }

    pub fn is_chosen(&self, slot: Slot) -> bool {
        slot <= self.snapshot.last_slot || self.chosen.contains_key(&slot)
    }

    /// Record that `slot` is chosen with `value`. Returns false if it was
    /// already known (nothing to persist).
    pub fn learn(&mut self, slot: Slot, value: Value, persist: &mut Vec<StorageWrite>) -> bool {
        if slot == 0 || self.is_chosen(slot) {
            return false;
        }
        persist.push(StorageWrite::Chosen {
            slot,
            value: value.clone(),
        });
        self.chosen.insert(slot, value);
        self.advance_commit();
        true
    }

    fn advance_commit(&mut self) {
        while self.chosen.contains_key(&(self.commit_index + 1)) {
            self.commit_index += 1;
        }
    }

    /// Apply the next committed slot, if any, and return its results.
    pub fn apply_next(&mut self) -> Option<(Slot, SlotResults)> {
        if self.applied >= self.commit_index {
            return None;
        }
        let slot = self.applied + 1;
        let value = self.chosen.get(&slot)?;
        let results = match value {
            Value::NoOp => Vec::new(),
            Value::Batch(commands) => commands
                .iter()
                .map(|cmd| ((cmd.client_id, cmd.seq), self.kv.apply(cmd)))
                .collect(),
        };
        self.applied = slot;
        Some((slot, results))
    }

    /// The chosen value of `slot`, if still in the log.
    pub fn value(&self, slot: Slot) -> Option<&Value> {
        self.chosen.get(&slot)
    }

    /// Chosen entries from `first_slot` on, at most `limit` of them and
    /// about `max_bytes` (always at least one, if there is one).
    pub fn entries_from(
        &self,
        first_slot: Slot,
        limit: usize,
        max_bytes: usize,
    ) -> Vec<ChosenEntry> {
        let mut bytes = 0;
        self.chosen
            .range(first_slot..)
            .take(limit)
            .take_while(|(_, value)| {
                let first = bytes == 0;
                bytes += value.approx_bytes();
                first || bytes <= max_bytes
            })
            .map(|(slot, value)| ChosenEntry {
                slot: *slot,
                value: value.clone(),
            })
            .collect()
    }

    /// Snapshot the applied state if `every` slots were applied since the
    /// last snapshot. Returns the slot compacted through.
    pub fn maybe_snapshot(&mut self, every: u64, persist: &mut Vec<StorageWrite>) -> Option<Slot> {
        if every == 0 || self.applied < self.snapshot.last_slot + every {
            return None;
        }
        self.snapshot = Snapshot {
            last_slot: self.applied,
            state: self.kv.clone(),
        };
        self.snapshot_encoded = OnceCell::new();
        self.chosen = self.chosen.split_off(&(self.applied + 1));
        persist.push(StorageWrite::Snapshot(self.snapshot.clone()));
        persist.push(StorageWrite::Compact {
            through: self.applied,
        });
        Some(self.applied)
    }

    /// Replace the state by a snapshot from another replica if it is ahead of
    /// everything this replica has chosen. Returns true if installed.
    pub fn install(&mut self, snapshot: Snapshot, persist: &mut Vec<StorageWrite>) -> bool {
        if snapshot.last_slot <= self.commit_index {
            return false;
        }
        let through = snapshot.last_slot;
        self.kv = snapshot.state.clone();
        self.applied = through;
        self.commit_index = through;
        self.chosen = self.chosen.split_off(&(through + 1));
        self.snapshot = snapshot;
        self.snapshot_encoded = OnceCell::new();
        self.advance_commit();
        persist.push(StorageWrite::Snapshot(self.snapshot.clone()));
        persist.push(StorageWrite::Compact { through });
        true
    }
}
