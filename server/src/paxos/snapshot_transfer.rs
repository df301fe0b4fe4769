//! Chunked snapshot transfer: a snapshot (the whole state machine) can be
//! far larger than one message, so it travels as
//! [`Message::SnapshotChunk`]s of at most `max_message_bytes` of data each.
//!
//! The sender encodes the snapshot once (CBOR; the learner keeps the bytes
//! until its next snapshot) and cuts the bytes into
//! chunks, each naming the snapshot (`last_slot`), the total length and its
//! offset. The receiver ([`SnapshotReceiver`]) keeps the chunks of one
//! snapshot per sender and hands a snapshot over only once every byte has
//! arrived and it decodes, so that it is installed atomically or not at
//! all:
//! - a duplicated chunk, or one of a snapshot older than the one being
//!   received from the same sender or already installed, is ignored;
//! - chunks may arrive in any order (they are put in place by offset);
//! - a chunk of a newer snapshot supersedes a half-received one of the
//!   same sender (its chunks are dropped); what another sender left half
//!   received (a deposed coordinator, a candidate that gave up) does not
//!   block the transfer of the coordinator, even of an older snapshot,
//!   and is dropped once a snapshot at least as new is installed;
//! - what is held per sender stays under twice the snapshot's announced
//!   size (overlapping chunks that would exceed it start the transfer
//!   over);
//! - a lost chunk leaves the transfer incomplete: nothing is installed, and
//!   the next catch-up the sender sends (it retries, see the coordinator)
//!   fills the gap or supersedes it.
//!
//! Pure like the rest of the core: no I/O, and nothing that is not
//! complete reaches the learner.

use std::collections::BTreeMap;

use super::messages::Message;
use super::storage::Snapshot;
use super::types::{ReplicaId, Slot};

/// The chunks that send `snapshot`, each with at most `max_bytes` of data
/// (at least one byte).
pub fn chunks(snapshot: &Snapshot, max_bytes: usize) -> Vec<Message> {
    chunk_window(
        snapshot.last_slot,
        &encode(snapshot),
        max_bytes,
        0,
        usize::MAX,
    )
}

/// `snapshot` encoded for transfer (CBOR). The learner encodes each
/// snapshot once and keeps the bytes ([`super::learner::Learner::snapshot_encoded`]),
/// so that the windows of a transfer, and the transfers to several
/// replicas, do not encode the whole state again.
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let mut bytes = Vec::new();
    // Writing CBOR into a Vec cannot fail for plain data; if it did, the
    // snapshot would have no chunks and simply not be sent.
    if ciborium::into_writer(snapshot, &mut bytes).is_err() {
        return Vec::new();
    }
    bytes
}

/// How many chunks of at most `max_bytes` an encoded snapshot of `len`
/// bytes takes.
pub fn chunk_count(len: usize, max_bytes: usize) -> usize {
    len.div_ceil(max_bytes.max(1))
}

/// Chunks `start..start + count` (fewer at the end) of the snapshot of
/// slot `last_slot` whose encoding is `encoded`.
pub fn chunk_window(
    last_slot: Slot,
    encoded: &[u8],
    max_bytes: usize,
    start: usize,
    count: usize,
) -> Vec<Message> {
    let max_bytes = max_bytes.max(1);
    let total = encoded.len() as u64;
    encoded
        .chunks(max_bytes)
        .enumerate()
        .skip(start)
        .take(count)
        .map(|(i, data)| Message::SnapshotChunk {
            last_slot,
            total_bytes: total,
            offset: (i * max_bytes) as u64,
            data: data.to_vec(),
        })
        .collect()
}

/// A chunk that cannot belong to any snapshot: its data reaches past the
/// length it announces.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("snapshot chunk at offset {offset} with {len} bytes exceeds the announced {total} bytes")]
pub struct BadChunk {
    pub offset: u64,
    pub len: u64,
    pub total: u64,
}

/// One snapshot being received.
#[derive(Debug)]
struct Partial {
    last_slot: Slot,
    total: u64,
    /// Chunks by offset.
    pieces: BTreeMap<u64, Vec<u8>>,
}

impl Partial {
    /// Did every byte arrive? (Checked without copying anything.)
    fn complete(&self) -> bool {
        let mut covered = 0u64;
        for (offset, data) in &self.pieces {
            if *offset > covered {
                return false; // a gap
            }
            covered = covered.max(offset + data.len() as u64);
        }
        covered == self.total
    }

    /// The bytes, once complete. Chunks of one snapshot cut the same bytes:
    /// an overlapping one (cut by another budget) adds only what is new.
    fn assemble(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.total as usize);
        for (offset, data) in &self.pieces {
            let skip = bytes.len() - *offset as usize;
            if skip < data.len() {
                bytes.extend_from_slice(&data[skip..]);
            }
        }
        bytes
    }

    fn held(&self) -> u64 {
        self.pieces.values().map(|d| d.len() as u64).sum()
    }
}

/// One chunk as received: `data` lies at `offset` of the `total` bytes of
/// the encoded snapshot of every slot up to `last_slot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub last_slot: Slot,
    pub total: u64,
    pub offset: u64,
    pub data: Vec<u8>,
}

/// The receiving end: reassembles one snapshot per sender.
#[derive(Debug, Default)]
pub struct SnapshotReceiver {
    partials: BTreeMap<ReplicaId, Partial>,
}

impl SnapshotReceiver {
    /// Take one chunk from `from`; `installed` is the slot the learner
    /// already has (its commit index: an older snapshot is no use).
    /// Returns the snapshot once complete, which ends the transfer (and
    /// every other one of a snapshot no newer).
    pub fn on_chunk(
        &mut self,
        from: ReplicaId,
        chunk: Chunk,
        installed: Slot,
    ) -> Result<Option<Snapshot>, BadChunk> {
        let Chunk {
            last_slot,
            total,
            offset,
            data,
        } = chunk;
        let len = data.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > total) || (len == 0 && total > 0) {
            return Err(BadChunk { offset, len, total });
        }
        if last_slot <= installed {
            self.partials.retain(|_, p| p.last_slot > installed);
            return Ok(None);
        }
        match self.partials.get(&from) {
            Some(p) if p.last_slot > last_slot => return Ok(None),
            Some(p) if p.last_slot == last_slot && p.total == total => {}
            // A newer snapshot (or the same one encoded differently)
            // supersedes what this sender left half received.
            _ => {
                self.partials.insert(
                    from,
                    Partial {
                        last_slot,
                        total,
                        pieces: BTreeMap::new(),
                    },
                );
            }
        }
        let partial = self.partials.get_mut(&from).expect("set above");
        let known = partial.pieces.get(&offset).map_or(0, Vec::len);
        if data.len() > known {
            // Overlapping chunks (cut by different budgets) could pile up:
            // past twice the snapshot's size, start over from this one.
            if partial.held() - known as u64 + len > total.saturating_mul(2) {
                partial.pieces.clear();
            }
            partial.pieces.insert(offset, data);
        }
        if !partial.complete() {
            return Ok(None);
        }
        let bytes = partial.assemble();
        self.partials.retain(|_, p| p.last_slot > last_slot);
        let snapshot: Snapshot = match ciborium::from_reader(bytes.as_slice()) {
            Ok(s) => s,
            // Complete but not a snapshot: a sender's bug; drop it, the
            // next catch-up tries again.
            Err(_) => return Ok(None),
        };
        Ok((snapshot.last_slot == last_slot).then_some(snapshot))
    }

    /// Bytes held for the snapshot being received.
    pub fn pending_bytes(&self) -> usize {
        self.partials
            .values()
            .map(|p| p.pieces.values().map(Vec::len).sum::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{Command, KvStore, Op};

    fn snapshot(last_slot: Slot, keys: usize) -> Snapshot {
        let mut state = KvStore::new();
        for i in 0..keys {
            state
                .apply(&Command {
                    client_id: 1,
                    seq: i as u64 + 1,
                    op: Op::Put {
                        key: format!("key{i}"),
                        value: "v".repeat(50),
                    },
                })
                .unwrap();
        }
        Snapshot { last_slot, state }
    }

    fn chunk(last_slot: Slot, total: u64, offset: u64, data: Vec<u8>) -> Chunk {
        Chunk {
            last_slot,
            total,
            offset,
            data,
        }
    }

    fn parts(m: &Message) -> Chunk {
        match m {
            Message::SnapshotChunk {
                last_slot,
                total_bytes,
                offset,
                data,
            } => chunk(*last_slot, *total_bytes, *offset, data.clone()),
            m => panic!("not a chunk: {m:?}"),
        }
    }

    fn feed(rx: &mut SnapshotReceiver, m: &Message) -> Option<Snapshot> {
        rx.on_chunk(0, parts(m), 0).unwrap()
    }

    #[test]
    fn a_snapshot_is_cut_by_bytes_and_installed_only_when_complete() {
        let snap = snapshot(40, 30);
        let chunks = chunks(&snap, 256);
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| parts(c).data.len() <= 256));
        let mut rx = SnapshotReceiver::default();
        // In reverse order, with every chunk twice: nothing until the last
        // missing byte arrives, then the snapshot exactly.
        let (last, rest) = chunks.split_first().unwrap();
        for c in rest.iter().rev() {
            assert_eq!(feed(&mut rx, c), None);
            assert_eq!(feed(&mut rx, c), None);
        }
        assert!(rx.pending_bytes() > 0);
        assert_eq!(feed(&mut rx, last), Some(snap.clone()));
        assert_eq!(rx.pending_bytes(), 0);
        // A duplicate after completion starts a transfer that never ends
        // unless completed again: harmless, and an older one is ignored.
        assert_eq!(
            rx.on_chunk(0, chunk(40, 1, 0, vec![0]), 40).unwrap(),
            None,
            "already installed"
        );
    }

    #[test]
    fn a_lost_chunk_installs_nothing_and_a_newer_snapshot_supersedes() {
        let old = snapshot(10, 20);
        let new = snapshot(20, 25);
        let mut rx = SnapshotReceiver::default();
        let old_chunks = chunks(&old, 200);
        // One chunk lost: never complete.
        for c in &old_chunks[1..] {
            assert_eq!(feed(&mut rx, c), None);
        }
        // A newer snapshot's chunks replace the half-received one...
        let new_chunks = chunks(&new, 300);
        for c in &new_chunks[..new_chunks.len() - 1] {
            assert_eq!(feed(&mut rx, c), None);
        }
        // ...a late chunk of the older one changes nothing...
        assert_eq!(feed(&mut rx, &old_chunks[0]), None);
        // ...and the newer one completes.
        assert_eq!(feed(&mut rx, new_chunks.last().unwrap()), Some(new));
        // A resent transfer with another budget fills a gap too.
        let mut rx = SnapshotReceiver::default();
        for c in &old_chunks[1..] {
            feed(&mut rx, c);
        }
        let mut done = None;
        for c in chunks(&old, 500).iter().take(1) {
            done = feed(&mut rx, c);
        }
        assert_eq!(done, Some(old));
    }

    #[test]
    fn a_newer_snapshot_half_received_from_another_sender_does_not_block_an_older_one() {
        // A deposed coordinator (replica 3) sent part of its snapshot at
        // slot 15 and stopped; the coordinator (replica 0) sends its
        // snapshot at slot 13, which must still install.
        let newer = snapshot(15, 20);
        let older = snapshot(13, 18);
        let mut rx = SnapshotReceiver::default();
        let newer_chunks = chunks(&newer, 100);
        for c in &newer_chunks[..2] {
            assert_eq!(rx.on_chunk(3, parts(c), 0).unwrap(), None);
        }
        let mut done = None;
        for c in &chunks(&older, 100) {
            done = rx.on_chunk(0, parts(c), 0).unwrap();
        }
        assert_eq!(done, Some(older));
        // The half-received newer one stays, and completes if its sender
        // comes back...
        assert!(rx.pending_bytes() > 0);
        let mut done = None;
        for c in &newer_chunks[2..] {
            done = rx.on_chunk(3, parts(c), 13).unwrap();
        }
        assert_eq!(done, Some(newer));
        // ...and nothing is left over.
        assert_eq!(rx.pending_bytes(), 0);
    }

    #[test]
    fn overlapping_chunks_hold_at_most_twice_the_snapshot() {
        let mut rx = SnapshotReceiver::default();
        // One-byte steps of 8-byte chunks over 16 bytes: never complete
        // without offset 0, and never more than 32 bytes held.
        for offset in 1..=8 {
            assert_eq!(
                rx.on_chunk(0, chunk(5, 16, offset, vec![0; 8]), 0).unwrap(),
                None
            );
            assert!(rx.pending_bytes() <= 32, "{}", rx.pending_bytes());
        }
    }

    #[test]
    fn a_chunk_past_its_announced_length_is_refused() {
        let mut rx = SnapshotReceiver::default();
        assert!(rx.on_chunk(0, chunk(5, 10, 8, vec![0; 4]), 0).is_err());
        assert!(rx
            .on_chunk(0, chunk(5, 10, u64::MAX, vec![0; 4]), 0)
            .is_err());
        assert!(rx.on_chunk(0, chunk(5, 10, 0, Vec::new()), 0).is_err());
        assert_eq!(rx.pending_bytes(), 0);
    }
}
