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
//!   zeros, so the file never gets shorter. Usually only the WAL the
//!   checkpoint names is live; while a checkpoint is written in the
//!   background, the next generation continues it (see "Checkpoints off the
//!   message path").
//! - `LOCK`: an advisory lock so two processes never share a directory.
//!
//! A record is fdatasync'ed before [`Storage::write`] returns when its
//! batch holds a promise or an accepted value (see
//! [`WriteBatch::needs_sync`]); a batch of chosen entries only is written
//! without an fsync (losing chosen entries is safe, they are learned again).
//!
//! # What a crash can do, and what it cannot
//!
//! Writes happen in one order: a WAL's header is durable before any record
//! is appended to it, and so are its predecessor (fsynced to its last
//! record) and the checkpoint that starts the chain; records are appended
//! one after another, and every record that a message or reply depended on
//! was fsynced before that message left. A crash therefore damages at most
//! the records written since the last completed fsync, and since those are
//! the last ones of the last WAL, what it leaves is a valid prefix followed
//! by one short or garbled record and then nothing but unused space.
//! Everything else is damage a crash cannot explain: a disk or a person
//! changed data that was durable.
//!
//! The rule on open: checkpoint `g`, then WAL `g` complete from the
//! checkpoint's sequence number, then (if it holds records) WAL `g + 1`
//! whose header continues WAL `g`'s last sequence number; only the last of
//! these files may end in a torn record; replayed in that order. Two live
//! WALs are folded into a new checkpoint right away, on open.
//!
//! | Found on open | Verdict |
//! |---|---|
//! | a short or checksum-failing record with no valid record after it | torn tail: dropped (zeroed), reported in [`RecoveryReport::torn_tail`] |
//! | a bad record followed by any valid record | damage |
//! | a torn record at the end of WAL `g` when WAL `g + 1` holds records | damage (only the last file can be torn) |
//! | WAL `g + 1` whose header does not continue WAL `g`'s last sequence number | damage (records lost between them) |
//! | WAL `g + 1` holding records with a bad header | damage |
//! | a record with the wrong sequence number | damage (records lost, reordered or spliced) |
//! | a record that passes its checksum but does not decode | damage |
//! | a bad, short or unknown checkpoint | damage (the checkpoint is replaced atomically, never torn) |
//! | a WAL whose header does not continue the checkpoint's generation and sequence | damage |
//! | the WAL the checkpoint names is missing (with or without WAL `g + 1`), or WAL files without a checkpoint | damage |
//! | a WAL shorter than it was created | damage (truncated) |
//! | a WAL later than `g + 1` that holds records | damage (checkpoint rolled back) |
//! | WAL `g + 1` holding records, after a complete WAL `g` | a crash mid-checkpoint: replayed, folded into a new checkpoint |
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
//! # Checkpoints off the message path
//!
//! Writing a snapshot or compacting (or a WAL grown past
//! [`StorageOptions::max_wal_bytes`]) makes a checkpoint due: the in-memory
//! mirror, minus everything the snapshot covers, becomes the new
//! checkpoint and the old WAL is deleted, so disk use stays bounded by the
//! size of the state machine plus the log written since the last snapshot.
//! Writing it means encoding the whole state, snapshot included, which can
//! take long; the thread calling [`Storage::write`] is the one that sends
//! the messages and replies waiting for a persist, and a follower whose
//! acks wait for its own checkpoint looks silent to the coordinator. So a
//! checkpoint is written in the background:
//!
//! 1. When one is due, `write` fsyncs WAL `g` (if anything in it is not
//!    yet durable), creates WAL `g + 1` (header with the next sequence
//!    number, fsynced, directory fsynced) and appends there from now on; it
//!    clones the mirror (the snapshot's bytes are shared, not copied) and
//!    returns. Only these two fsyncs are on the caller's path.
//! 2. A thread of its own ([`checkpoint`]) encodes that state (and the
//!    snapshot, handed over unencoded, see [`SnapshotBytes`]), writes
//!    `checkpoint.tmp`, fsyncs it, renames it over `checkpoint` naming
//!    generation `g + 1`, fsyncs the directory and deletes WAL `g`.
//! 3. At most one checkpoint is in flight: one due meanwhile starts with the
//!    first write after it is done, so at most WALs `g` and `g + 1` are live.
//!    A failed checkpoint stops the storage like a failed write.
//!
//! A snapshot or compaction is durable only through a checkpoint; the rest
//! of its batch (promise, accepted, chosen values) goes into a WAL record
//! as usual and is durable when `write` returns. A crash before the
//! checkpoint is in place therefore recovers checkpoint `g` + WAL `g` + WAL
//! `g + 1`: every acknowledged write, without the newest snapshot and
//! compaction. That is safe: the snapshot is the applied prefix of the
//! chosen log, which the recovered state still holds in full (the
//! compaction that would have deleted it is lost with it), or which the
//! replica learns again (a snapshot installed from a peer is sent again);
//! a lost compaction only keeps more log. Nothing else depends on the
//! snapshot being durable: no message or reply waits for it. The simulator
//! (`paxos::sim`) models exactly this loss.

mod checkpoint;
mod error;
mod format;
pub mod layout;
mod recover;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::thread::JoinHandle;

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
    pub data: SnapshotBytes,
}

/// The bytes of a snapshot, possibly encoded only when first needed:
/// encoding a whole state machine takes long, so the storage thread hands
/// it on unencoded and the checkpoint writer encodes it (see "Checkpoints
/// off the message path").
#[derive(Clone)]
pub struct SnapshotBytes(Arc<LazyLock<Bytes, Box<dyn FnOnce() -> Bytes + Send>>>);

impl SnapshotBytes {
    /// Bytes that `encode` produces on first use (on whichever thread uses
    /// them first).
    pub fn later(encode: impl FnOnce() -> Bytes + Send + 'static) -> SnapshotBytes {
        SnapshotBytes(Arc::new(LazyLock::new(Box::new(encode))))
    }
}

impl From<Bytes> for SnapshotBytes {
    fn from(bytes: Bytes) -> SnapshotBytes {
        SnapshotBytes::later(move || bytes)
    }
}

impl std::ops::Deref for SnapshotBytes {
    type Target = Bytes;
    fn deref(&self) -> &Bytes {
        LazyLock::force(&self.0)
    }
}

impl PartialEq for SnapshotBytes {
    fn eq(&self, other: &SnapshotBytes) -> bool {
        **self == **other
    }
}

impl Eq for SnapshotBytes {}

impl std::fmt::Debug for SnapshotBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match LazyLock::get(&self.0) {
            Some(bytes) => bytes.fmt(f),
            None => f.write_str("<not encoded yet>"),
        }
    }
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

    /// True if the batch replaces the snapshot or compacts the log: those
    /// writes are made durable by a checkpoint rather than a WAL record.
    fn rewrites_history(&self) -> bool {
        self.0.iter().any(Write::rewrites_history)
    }

    /// The writes of the batch that go into a WAL record: all but the
    /// snapshot and the compaction.
    fn logged(&self) -> WriteBatch {
        WriteBatch(
            self.0
                .iter()
                .filter(|w| !w.rewrites_history())
                .cloned()
                .collect(),
        )
    }
}

impl Write {
    /// A snapshot or a compaction (durable only through a checkpoint).
    fn rewrites_history(&self) -> bool {
        matches!(self, Write::Snapshot(_) | Write::Compact(_))
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
    /// The checkpoint being written in the background, if any.
    checkpointing: Option<JoinHandle<Result<()>>>,
    /// A checkpoint is due (a snapshot or compaction was written, or the
    /// WAL grew past its size) and starts once the one in flight is done.
    checkpoint_due: bool,
    /// Test hook: the next write or fsync at this point fails with this
    /// errno.
    #[cfg(test)]
    inject: Option<(FaultPoint, i32)>,
    /// Test hooks handed to the next checkpoint writer.
    #[cfg(test)]
    checkpoint_hooks: checkpoint::Hooks,
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
            checkpointing: None,
            checkpoint_due: false,
            options,
            #[cfg(test)]
            inject: None,
            #[cfg(test)]
            checkpoint_hooks: checkpoint::Hooks::default(),
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
        self.collect_checkpoint(false)?;
        if batch.is_empty() {
            return Ok(());
        }
        let rewrites = batch.rewrites_history();
        // A snapshot or compaction becomes durable with the next checkpoint;
        // everything else in the batch is logged now.
        let logged = if rewrites {
            Cow::Owned(batch.logged())
        } else {
            Cow::Borrowed(&batch)
        };
        if !logged.is_empty() {
            self.append(&logged)?;
        }
        drop(logged);
        apply(&mut self.state, batch);
        if rewrites || self.wal_len() > self.options.max_wal_bytes {
            self.checkpoint_due = true;
        }
        if self.checkpoint_due && self.checkpointing.is_none() {
            self.start_checkpoint()?;
        }
        Ok(())
    }

    /// Appends one record holding `batch` and fsyncs it if it needs to be.
    fn append(&mut self, batch: &WriteBatch) -> Result<()> {
        let record = format::encode_record(self.next_seq, batch);
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
            self.sync_wal()?;
        }
        Ok(())
    }

    fn sync_wal(&mut self) -> Result<()> {
        self.injected(FaultPoint::Sync)
            .and_then(|()| self.wal.sync_data())
            .map_err(io_err("fdatasync", &self.wal_path))?;
        self.synced_end = self.wal_end;
        Ok(())
    }

    /// Takes the outcome of the checkpoint in flight if it has finished
    /// (or, with `wait`, once it has). A failed checkpoint fails the
    /// storage like a failed write.
    fn collect_checkpoint(&mut self, wait: bool) -> Result<()> {
        match self.checkpointing.take() {
            Some(h) if wait || h.is_finished() => checkpoint::join(h, &self.dir),
            other => {
                self.checkpointing = other;
                Ok(())
            }
        }
    }

    /// Switches to a new WAL generation at once and writes the checkpoint
    /// that the new WAL continues in the background (see "Checkpoints off
    /// the message path").
    fn start_checkpoint(&mut self) -> Result<()> {
        // The old WAL is complete before the new one gets a record: only
        // the last WAL may have a torn tail.
        if self.options.sync && self.synced_end < self.wal_end {
            self.sync_wal()?;
        }
        let next = self.generation + 1;
        let wal = self
            .injected(FaultPoint::NewWal)
            .map_err(io_err("create", &wal_path(&self.dir, next)))
            .and_then(|()| recover::create_wal(&self.dir, next, self.next_seq, &self.options))?;
        let old = std::mem::replace(&mut self.wal_path, wal_path(&self.dir, next));
        self.generation = next;
        self.wal = wal;
        self.wal_end = WAL_HEADER_LEN as u64;
        self.synced_end = self.wal_end;
        self.attempted_end = self.wal_end;
        self.checkpoint_due = false;
        let job = checkpoint::Job {
            dir: self.dir.clone(),
            generation: next,
            first_seq: self.next_seq,
            state: self.state.clone(),
            old_wal: old,
            options: self.options.clone(),
            #[cfg(test)]
            hooks: std::mem::take(&mut self.checkpoint_hooks),
            #[cfg(not(test))]
            hooks: checkpoint::Hooks::default(),
        };
        self.checkpointing = Some(checkpoint::spawn(job)?);
        Ok(())
    }

    /// Waits for the checkpoint in flight, then writes (and waits for) a
    /// due one (tests only: the runtime never waits).
    #[cfg(test)]
    fn finish_checkpoints(&mut self) -> Result<()> {
        let mut finish = || {
            self.collect_checkpoint(true)?;
            if self.checkpoint_due {
                self.start_checkpoint()?;
                self.collect_checkpoint(true)?;
            }
            Ok(())
        };
        let result = finish();
        if let Err(e) = &result {
            self.fail(e);
        }
        result
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
}

impl Drop for Storage {
    /// Waits for the checkpoint in flight: the files stay consistent, and
    /// nothing writes in the directory once its lock is released.
    fn drop(&mut self) {
        if let Some(h) = self.checkpointing.take() {
            if let Err(e) = checkpoint::join(h, &self.dir) {
                tracing::error!(error = %e, "the last checkpoint failed (the log still holds what it covered)");
            }
        }
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
    /// Creating the next WAL generation.
    NewWal,
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
