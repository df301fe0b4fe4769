//! Durable replica state: a checksummed, sequence-numbered write-ahead log
//! plus an atomically replaced checkpoint, and the rule that decides on
//! start whether what is on disk can be trusted.
//!
//! What a replica must not forget across a crash is small and has a simple
//! shape: the highest promised ballot, the accepted value of each log slot,
//! the chosen log above the latest snapshot, and the snapshot itself. This
//! module stores exactly that and treats the contents as opaque bytes (the
//! runtime encodes core types with protobuf, see `convert.rs`), so it knows
//! nothing of Paxos and can be tested on its own. The byte formats are in
//! `format.rs`; [`layout`] lists where each record lies, for fault injection.
//!
//! # Layout of a data directory
//!
//! - `checkpoint`: the whole durable state at some moment (snapshot, promise,
//!   accepted values, chosen log), the generation `g` of the WAL that
//!   continues it and the sequence number of that WAL's first record.
//!   Written to `checkpoint.tmp`, fsynced, renamed over `checkpoint`, then
//!   the directory is fsynced, so it is always either the old or the new one.
//! - `wal-<g>.log`: a header (generation, first sequence number, created
//!   length), then one record per [`Storage::write`], each with a magic, its
//!   sequence number and a crc32. The file is created at its full size
//!   ([`StorageOptions::max_wal_bytes`], sparse) and made durable, with the
//!   directory, before the checkpoint that names it: records overwrite
//!   zeros, so the file never gets shorter.
//! - `LOCK`: an advisory lock so two processes never share a directory.
//!
//! A record is fdatasync'ed before [`Storage::write`] returns when its
//! batch holds a promise or an accepted value (see
//! [`WriteBatch::needs_sync`]); a batch of chosen entries only is written
//! without an fsync (losing chosen entries is safe, they are learned again).
//!
//! # What a crash can do, and what it cannot
//!
//! Writes happen in one order: the WAL and the checkpoint that names it are
//! durable before any record is appended; records are appended one after
//! another, and every record that a message or reply depended on was
//! fsynced before that message left. A crash therefore damages at most the
//! records written since the last completed fsync, and since those are the
//! last ones in the file, what it leaves is a valid prefix followed by one
//! short or garbled record and then nothing but unused space. Everything else
//! is damage a crash cannot explain: a disk or a person changed data that
//! was durable.
//!
//! | Found on open | Verdict |
//! |---|---|
//! | a short or checksum-failing record with no valid record after it | torn tail: dropped (zeroed), reported in [`RecoveryReport::torn_tail`] |
//! | a bad record followed by any valid record | damage |
//! | a record with the wrong sequence number | damage (records lost, reordered or spliced) |
//! | a record that passes its checksum but does not decode | damage |
//! | a bad, short or unknown checkpoint | damage (the checkpoint is replaced atomically, never torn) |
//! | a WAL whose header does not continue the checkpoint's generation and sequence | damage |
//! | the WAL the checkpoint names is missing, or WAL files without a checkpoint | damage |
//! | a WAL shorter than it was created | damage (truncated) |
//! | a WAL newer than the checkpoint that holds records | damage (checkpoint rolled back) |
//! | a newer WAL without records, an older WAL, `checkpoint.tmp` | a crash mid-checkpoint: removed |
//! | files of a later format version | refused ([`StorageError::NewerFormat`]) |
//! | files paxoskv never writes | refused ([`StorageError::Foreign`]) |
//! | a version-1 directory (before sequence numbers) | read with the same rule, rewritten as version 2 |
//!
//! A dropped torn tail may have been acknowledged, but only in a way that is
//! safe to forget: a record holding a vote is fsynced before anything
//! depending on it is sent, so a torn one was never relied on as durable,
//! while a record of chosen entries is written without an fsync and its
//! replies may have gone out, which is safe because chosen entries are
//! learned again from the acceptors (a majority of which made their accepted
//! values durable before the value counted as chosen).
//!
//! # Why damage refuses to start
//!
//! An acceptor's promise and accepted values are what make Paxos safe: a
//! coordinator that collected promises from a majority proposes the value of
//! the highest accepted ballot among them, on the guarantee that each of
//! those acceptors still remembers what it acknowledged. An acceptor that
//! lost part of that memory and votes anyway can complete a majority that
//! "sees" no value in a slot where another majority already chose one, and
//! the new coordinator then chooses a second value for the same slot: two
//! replicas apply different commands, acknowledged writes are lost. Dropping
//! the damaged records (the old behaviour) is exactly that, and so is
//! starting empty. A replica that refuses to start is merely unavailable,
//! and the cluster keeps serving while a majority is up; so refusing is the
//! safe choice (etcd refuses on a WAL checksum mismatch for the same reason),
//! and the error names the file, the byte offset, what is wrong and what to
//! do ([`error::DAMAGE_ADVICE`]).
//!
//! The rule cannot tell damage to the *last* record apart from a torn
//! write (a flipped bit there looks like a crash): that record is dropped
//! like a torn tail. [`layout::RecordSpan::tail`] marks it.
//!
//! # Write failures
//!
//! A failed write or fsync (ENOSPC, EIO) is returned and poisons the
//! storage: every later [`Storage::write`] fails with
//! [`StorageError::Failed`] without touching the disk, because after a
//! failed fsync the kernel may have dropped the dirty pages and a retried
//! fsync can report success for data that is gone (PostgreSQL's
//! "fsyncgate"). The bytes written since the last successful fsync are
//! overwritten with zeros (best effort) so that a restart does not read
//! back, from the page cache, a record that never reached the disk. The
//! caller must not send what depended on the failed write (the runtime
//! exits).
//!
//! # `--unsafe-no-fsync`
//!
//! With [`StorageOptions::sync`] off, no file or directory is ever fsynced,
//! so nothing is durable and a crash may leave any file in any state; damage
//! found on open then resets the directory to empty
//! ([`RecoveryReport::reset_after_damage`]) instead of refusing. This exists
//! so the harness can show what losing unsynced writes does.
//!
//! # Bounded disk use
//!
//! Writing a snapshot or compacting (or a WAL grown past
//! [`StorageOptions::max_wal_bytes`]) triggers a checkpoint: the in-memory
//! mirror minus everything the snapshot covers is written as the new
//! checkpoint and a fresh WAL generation starts (with the same sequence
//! numbering); the old WAL is deleted. Disk use is thus bounded by the size
//! of the state machine plus the log written since the last snapshot.

mod error;
mod format;
pub mod layout;
mod recover;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::paxos::Slot;
use error::{io_err, Result};
pub use error::{StorageError, DAMAGE_ADVICE};
use format::{RECORD_HEADER_LEN, WAL_HEADER_LEN};
use recover::{wal_path, LOCK};

/// A state-machine snapshot in its encoded form, covering every slot up to
/// and including `last_slot` (the core's is [`crate::paxos::Snapshot`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedSnapshot {
    /// Highest slot whose command is reflected in `data`.
    pub last_slot: Slot,
    /// Encoded state machine (opaque to storage).
    pub data: Bytes,
}

/// Everything a replica had made durable, as recovered on open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurableState {
    /// Encoded highest promised ballot, if any promise was ever made.
    pub promised: Option<Bytes>,
    /// Encoded accepted (ballot, value) per slot above the snapshot.
    pub accepted: BTreeMap<Slot, Bytes>,
    /// Encoded chosen value per slot above the snapshot.
    pub chosen: BTreeMap<Slot, Bytes>,
    /// The latest snapshot, if any.
    pub snapshot: Option<EncodedSnapshot>,
}

/// One durable change. The contents are opaque encodings chosen by the
/// caller; only slots are interpreted (for compaction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// A new promise (replaces the previous one).
    Promise(Bytes),
    /// A newly accepted value (replaces an earlier one of the same slot).
    Accept(Slot, Bytes),
    /// A newly chosen value.
    Chosen(Slot, Bytes),
    /// A new snapshot (replaces the previous one if it is newer).
    Snapshot(EncodedSnapshot),
    /// Accepted and chosen entries up to and including this slot are covered
    /// by the snapshot and are deleted.
    Compact(Slot),
}

/// The writes of one `Ready`, applied in order and made durable together with
/// one fsync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch(pub Vec<Write>);

impl WriteBatch {
    /// True if the batch holds nothing to write.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends a write.
    pub fn push(&mut self, w: Write) {
        self.0.push(w);
    }

    /// True if the batch holds an acceptor vote (a promise or an accepted
    /// value): those must be on disk before anything that depends on them is
    /// sent. A batch of chosen entries only is written without an fsync of
    /// its own: losing chosen entries in a crash is safe (they are learned
    /// again from the acceptors), and the next synced write makes them
    /// durable anyway, since the WAL is one file written in order. This keeps
    /// an fsync off the coordinator's reply path.
    pub fn needs_sync(&self) -> bool {
        self.0
            .iter()
            .any(|w| matches!(w, Write::Promise(_) | Write::Accept(..)))
    }

    /// True if the batch replaces the snapshot or compacts the log: such a
    /// batch is made durable by a checkpoint rather than a WAL record.
    fn rewrites_history(&self) -> bool {
        self.0
            .iter()
            .any(|w| matches!(w, Write::Snapshot(_) | Write::Compact(_)))
    }
}

/// Tuning knobs of [`Storage`].
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// Size a WAL file is created with; when its records grow past this, a
    /// checkpoint starts a new one (bounds replay time and disk use).
    pub max_wal_bytes: u64,
    /// fsync files and directories. Off only for `--unsafe-no-fsync` and for
    /// tests that measure nothing about durability: then nothing is durable
    /// (see the module documentation).
    pub sync: bool,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            max_wal_bytes: 64 << 20,
            sync: true,
        }
    }
}

/// A torn record dropped on open (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The WAL file.
    pub file: PathBuf,
    /// Offset of the torn record.
    pub offset: u64,
    /// Bytes dropped (overwritten with zeros).
    pub bytes: u64,
    /// What was wrong with the record.
    pub problem: String,
}

/// What [`Storage::open`] found while recovering.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// WAL records replayed.
    pub records: u64,
    /// The torn last record that was dropped, if any.
    pub torn_tail: Option<TornTail>,
    /// The format version the directory was upgraded from, if it was.
    pub upgraded_from: Option<u8>,
    /// Only without fsync: the damage for which the directory was reset to
    /// empty.
    pub reset_after_damage: Option<String>,
}

/// The durable state of one replica (see the module documentation).
pub struct Storage {
    dir: PathBuf,
    options: StorageOptions,
    /// Current WAL generation, its path and file.
    generation: u64,
    wal_path: PathBuf,
    wal: File,
    /// Sequence number of the next record.
    next_seq: u64,
    /// Offset where the next record goes.
    wal_end: u64,
    /// End of the last record known durable (fsynced).
    synced_end: u64,
    /// End of the furthest write attempted (a failed write may have left
    /// bytes up to here).
    attempted_end: u64,
    /// Mirror of what is on disk, used to write checkpoints.
    state: DurableState,
    /// Set by the first failed write: why the storage stopped.
    failed: Option<String>,
    /// Test hook: the next write or fsync at this point fails with this
    /// errno.
    #[cfg(test)]
    inject: Option<(FaultPoint, i32)>,
    /// Held for the lifetime of the storage: the directory lock.
    _lock: nix::fcntl::Flock<File>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("dir", &self.dir)
            .field("generation", &self.generation)
            .field("next_seq", &self.next_seq)
            .field("wal_end", &self.wal_end)
            .field("failed", &self.failed)
            .finish()
    }
}

impl Storage {
    /// Opens (creating if needed) the data directory `dir`, recovers its
    /// state and returns it with the storage positioned for appends. Damage
    /// a crash cannot explain is [`StorageError::Damaged`].
    pub fn open(
        dir: &Path,
        options: StorageOptions,
    ) -> Result<(Storage, DurableState, RecoveryReport)> {
        match std::fs::metadata(dir) {
            Ok(m) if !m.is_dir() => {
                return Err(StorageError::Io {
                    action: "use as data directory",
                    path: dir.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotADirectory,
                        "it is not a directory",
                    ),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io_err("create data directory", dir))?;
            }
            Err(e) => return Err(io_err("open data directory", dir)(e)),
        }
        // Refuse a foreign directory before creating anything in it.
        recover::list(dir)?;
        let lock_path = dir.join(LOCK);
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("create", &lock_path))?;
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| StorageError::Locked(dir.to_path_buf()))?;

        let r = recover::recover(dir, &options)?;
        let storage = Storage {
            dir: dir.to_path_buf(),
            generation: r.generation,
            wal_path: wal_path(dir, r.generation),
            wal: r.wal,
            next_seq: r.next_seq,
            wal_end: r.wal_end,
            synced_end: r.wal_end,
            attempted_end: r.wal_end,
            state: r.state.clone(),
            failed: None,
            options,
            #[cfg(test)]
            inject: None,
            _lock: lock,
        };
        Ok((storage, r.state, r.report))
    }

    /// Makes `batch` durable: when this returns `Ok`, a crash at any later
    /// moment recovers all of it (chosen-only batches: see
    /// [`WriteBatch::needs_sync`]). A snapshot in the batch also compacts
    /// the log. After an error every later call fails (see the module
    /// documentation).
    pub fn write(&mut self, batch: WriteBatch) -> Result<()> {
        if let Some(why) = &self.failed {
            return Err(StorageError::Failed(why.clone()));
        }
        let result = self.write_unchecked(batch);
        if let Err(e) = &result {
            self.fail(e);
        }
        result
    }

    fn write_unchecked(&mut self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let rewrites = batch.rewrites_history();
        if !rewrites {
            let record = format::encode_record(self.next_seq, &batch);
            if record.len() - RECORD_HEADER_LEN > format::MAX_RECORD as usize {
                return Err(StorageError::TooLarge(record.len()));
            }
            self.attempted_end = self.wal_end + record.len() as u64;
            self.injected(FaultPoint::Write)
                .and_then(|()| self.wal.write_all_at(&record, self.wal_end))
                .map_err(io_err("write", &self.wal_path))?;
            self.wal_end += record.len() as u64;
            self.next_seq += 1;
            if self.options.sync && batch.needs_sync() {
                self.injected(FaultPoint::Sync)
                    .and_then(|()| self.wal.sync_data())
                    .map_err(io_err("fdatasync", &self.wal_path))?;
                self.synced_end = self.wal_end;
            }
        }
        apply(&mut self.state, batch);
        if rewrites || self.wal_len() > self.options.max_wal_bytes {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Stops the storage after `e`: no later write touches the disk, and the
    /// unsynced bytes are zeroed so that a restart does not trust them.
    fn fail(&mut self, e: &StorageError) {
        self.failed = Some(e.to_string());
        if self.attempted_end > self.synced_end {
            let zeros = vec![0u8; (self.attempted_end - self.synced_end) as usize];
            // Best effort, and never trusted: the result only decides nothing.
            let _ = self.wal.write_all_at(&zeros, self.synced_end);
            if self.options.sync {
                let _ = self.wal.sync_data();
            }
        }
    }

    /// The durable state as of the last successful write.
    pub fn state(&self) -> &DurableState {
        &self.state
    }

    /// Bytes of records in the current WAL (for tests and metrics).
    pub fn wal_len(&self) -> u64 {
        self.wal_end - WAL_HEADER_LEN as u64
    }

    /// Test hook (see [`Storage::inject`]); a no-op outside unit tests.
    #[cfg(not(test))]
    fn injected(&mut self, _at: FaultPoint) -> std::io::Result<()> {
        Ok(())
    }

    #[cfg(test)]
    fn injected(&mut self, at: FaultPoint) -> std::io::Result<()> {
        match self.inject {
            Some((point, errno)) if point == at => {
                self.inject = None;
                Err(std::io::Error::from_raw_os_error(errno))
            }
            _ => Ok(()),
        }
    }

    /// Writes the whole mirrored state as a new checkpoint and starts a new,
    /// empty WAL generation.
    fn checkpoint(&mut self) -> Result<()> {
        let next = self.generation + 1;
        let wal =
            recover::start_generation(&self.dir, next, self.next_seq, &self.state, &self.options)?;
        let old = std::mem::replace(&mut self.wal_path, wal_path(&self.dir, next));
        self.generation = next;
        self.wal = wal;
        self.wal_end = WAL_HEADER_LEN as u64;
        self.synced_end = self.wal_end;
        self.attempted_end = self.wal_end;
        // Best effort: a leftover is removed on the next open.
        let _ = std::fs::remove_file(old);
        Ok(())
    }
}

/// Where a unit test can make a write fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
enum FaultPoint {
    /// Appending a record.
    Write,
    /// The fdatasync after it.
    Sync,
}

/// Applies a batch to the in-memory state (the same function serves replay
/// and live writes, so both see identical semantics).
fn apply(state: &mut DurableState, batch: WriteBatch) {
    for w in batch.0 {
        match w {
            Write::Promise(p) => state.promised = Some(p),
            Write::Accept(slot, v) => {
                state.accepted.insert(slot, v);
            }
            Write::Chosen(slot, v) => {
                state.chosen.insert(slot, v);
            }
            Write::Snapshot(snap) => {
                let newer = state
                    .snapshot
                    .as_ref()
                    .is_none_or(|old| old.last_slot <= snap.last_slot);
                if newer {
                    state.snapshot = Some(snap);
                }
            }
            Write::Compact(through) => {
                let keep_from = through.saturating_add(1);
                state.accepted = state.accepted.split_off(&keep_from);
                state.chosen = state.chosen.split_off(&keep_from);
            }
        }
    }
}
