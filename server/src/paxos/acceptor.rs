//! The acceptor: the voting memory of Paxos. It promises ballots (phase 1) and
//! accepts values (phase 2), and never goes back on either.
//!
//! Every change it makes is returned as a [`StorageWrite`] that must be durable
//! before the answer leaves the replica: this is what makes a crash-restarted
//! acceptor keep its word.

use std::collections::BTreeMap;

use super::messages::AcceptedEntry;
use super::storage::StorageWrite;
use super::types::{Ballot, Slot, Value};

#[derive(Debug, Default)]
pub struct Acceptor {
    /// Highest ballot promised. Prepares and accepts of lower ballots are
    /// rejected.
    promised: Ballot,
    /// Per slot, the last value accepted and the ballot it was accepted in.
    /// Slots covered by a snapshot are dropped (see [`Acceptor::compact`]).
    accepted: BTreeMap<Slot, (Ballot, Value)>,
}

impl Acceptor {
    /// An acceptor as restored from disk.
    pub fn restore(promised: Ballot, accepted: BTreeMap<Slot, (Ballot, Value)>) -> Self {
        Acceptor { promised, accepted }
    }

    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// Phase 1b. Promise `ballot` unless a higher one was promised; on success
    /// returns the values accepted from `first_slot` on, about `max_bytes`
    /// of them (by [`Value::approx_bytes`], at least one), and, when that
    /// cut the report short, the last slot it covers: the candidate asks
    /// again from the next one. Re-promising the ballot already promised is
    /// allowed (a duplicated or retried prepare, or the next piece).
    pub fn prepare(
        &mut self,
        ballot: Ballot,
        first_slot: Slot,
        max_bytes: usize,
        persist: &mut Vec<StorageWrite>,
    ) -> Result<(Vec<AcceptedEntry>, Option<Slot>), Ballot> {
        if ballot < self.promised {
            return Err(self.promised);
        }
        self.raise_promise(ballot, persist);
        let mut bytes = 0;
        let mut entries = Vec::new();
        let mut rest = self.accepted.range(first_slot..);
        for (slot, (ballot, value)) in rest.by_ref() {
            bytes += value.approx_bytes();
            if !entries.is_empty() && bytes > max_bytes {
                // Slot `slot` did not fit: covered through the one before.
                return Ok((entries, Some(slot - 1)));
            }
            entries.push(AcceptedEntry {
                slot: *slot,
                ballot: *ballot,
                value: value.clone(),
            });
        }
        Ok((entries, None))
    }

    /// Phase 2b. Accept `value` for `slot` in `ballot` unless a higher ballot
    /// was promised. Accepting implies promising `ballot`.
    pub fn accept(
        &mut self,
        ballot: Ballot,
        slot: Slot,
        value: &Value,
        persist: &mut Vec<StorageWrite>,
    ) -> Result<(), Ballot> {
        if ballot < self.promised {
            return Err(self.promised);
        }
        self.raise_promise(ballot, persist);
        if self.accepted.get(&slot) != Some(&(ballot, value.clone())) {
            self.accepted.insert(slot, (ballot, value.clone()));
            persist.push(StorageWrite::Accept {
                slot,
                ballot,
                value: value.clone(),
            });
        }
        Ok(())
    }

    /// Would a message of `ballot` be accepted now? (Used to answer
    /// heartbeats, which change nothing durable.)
    pub fn admits(&self, ballot: Ballot) -> bool {
        ballot >= self.promised
    }

    /// Forget accepted values up to and including `through`: they are chosen
    /// and covered by a snapshot, which answers for them from now on.
    pub fn compact(&mut self, through: Slot) {
        self.accepted = self.accepted.split_off(&(through + 1));
    }

    fn raise_promise(&mut self, ballot: Ballot, persist: &mut Vec<StorageWrite>) {
        if ballot > self.promised {
            self.promised = ballot;
            persist.push(StorageWrite::Promise(ballot));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acceptor_keeps_its_promise_and_reports_what_it_accepted() {
        let mut acceptor = Acceptor::default();
        let mut persist = Vec::new();
        let b1 = Ballot::new(1, 0);
        let b2 = Ballot::new(1, 1);
        assert!(acceptor.accept(b1, 3, &Value::NoOp, &mut persist).is_ok());
        assert_eq!(
            persist,
            vec![
                StorageWrite::Promise(b1),
                StorageWrite::Accept {
                    slot: 3,
                    ballot: b1,
                    value: Value::NoOp
                }
            ]
        );
        persist.clear();
        let (reported, cut) = acceptor.prepare(b2, 2, usize::MAX, &mut persist).unwrap();
        assert_eq!((reported.len(), cut), (1, None));
        assert_eq!(reported[0].ballot, b1);
        // The old coordinator is now refused, and told who outranks it.
        assert_eq!(acceptor.accept(b1, 4, &Value::NoOp, &mut persist), Err(b2));
        assert_eq!(acceptor.prepare(b1, 1, usize::MAX, &mut persist), Err(b2));
        // A duplicated prepare of the promised ballot is answered again,
        // without a new write.
        persist.clear();
        assert!(acceptor.prepare(b2, 1, usize::MAX, &mut persist).is_ok());
        assert!(persist.is_empty());
    }

    #[test]
    fn a_promise_reports_accepted_values_in_byte_bounded_pieces() {
        let mut acceptor = Acceptor::default();
        let mut persist = Vec::new();
        let b1 = Ballot::new(1, 0);
        for slot in [2, 3, 5, 6] {
            acceptor
                .accept(b1, slot, &Value::NoOp, &mut persist)
                .unwrap();
        }
        let b2 = Ballot::new(2, 1);
        // A no-op counts 8 bytes: two fit in 16, the report stops at slot 3
        // (slot 4 was never accepted, slot 5 is the next to ask for).
        let (piece, cut) = acceptor.prepare(b2, 1, 16, &mut persist).unwrap();
        assert_eq!(piece.iter().map(|e| e.slot).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(cut, Some(4));
        let (piece, cut) = acceptor.prepare(b2, 5, 16, &mut persist).unwrap();
        assert_eq!(piece.iter().map(|e| e.slot).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(cut, None);
        // At least one entry, however small the budget.
        let (piece, cut) = acceptor.prepare(b2, 1, 0, &mut persist).unwrap();
        assert_eq!((piece.len(), cut), (1, Some(2)));
    }
}
