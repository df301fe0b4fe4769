//! Durable replica state: a checksummed write-ahead log plus an atomically
//! replaced checkpoint file.
//!
//! What a replica must not forget across a crash is small and has a simple
//! shape: the highest promised ballot, the accepted value of each log slot,
//! the chosen log above the latest snapshot, and the snapshot itself. This
//! module stores exactly that and treats the contents as opaque bytes (the
//! runtime encodes core types with protobuf, see `convert.rs`), so it knows
//! nothing of Paxos and can be tested on its own.
//!
//! # Layout of a data directory
//!
//! - `checkpoint`: the whole durable state at some moment (snapshot, promise,
//!   accepted values, chosen log) and the generation `g` of the WAL that
//!   continues it. Written to `checkpoint.tmp`, fsynced, renamed over
//!   `checkpoint`, then the directory is fsynced, so it is always either the
//!   old or the new one, never a mix.
//! - `wal-<g>.log`: records appended since that checkpoint. Each record is
//!   `[len: u32 LE][crc32 of payload: u32 LE][payload]` and holds one whole
//!   [`WriteBatch`]; it is fdatasync'ed before [`Storage::write`] returns
//!   (group commit: one fsync per batch, however many writes it holds) when
//!   the batch holds a promise or an accepted value (see
//!   [`WriteBatch::needs_sync`]).
//! - `LOCK`: an advisory lock so two processes never share a directory.
//!
//! On open the checkpoint is loaded and the WAL replayed; a record that is
//! short (torn write) or fails its checksum ends the log: it and everything
//! after it are truncated away and never applied. A batch is therefore either
//! wholly durable or wholly absent, which is what the caller relies on when it
//! sends the messages that depend on it.
//!
//! # Bounded disk use
//!
//! Writing a snapshot or compacting (or a WAL grown past [`StorageOptions::max_wal_bytes`])
//! triggers a checkpoint: the in-memory mirror minus everything the snapshot
//! covers is written as the new checkpoint and a fresh WAL generation starts;
//! the old WAL is deleted. Disk use is thus bounded by the size of the state
//! machine plus the log written since the last snapshot.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use thiserror::Error;

/// Log slot number, as in the Paxos core.
pub type Slot = u64;

/// A state-machine snapshot covering every slot up to and including
/// `last_slot`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
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
    pub snapshot: Option<Snapshot>,
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
    Snapshot(Snapshot),
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
    /// Checkpoint when the WAL grows past this many bytes even without a
    /// snapshot (bounds replay time and disk use).
    pub max_wal_bytes: u64,
    /// fsync on every write (turn off only in tests that measure nothing
    /// about durability).
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

/// Errors of the storage layer.
#[derive(Debug, Error)]
pub enum StorageError {
    /// An I/O error, with the file it happened on.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another process")]
    Locked(PathBuf),
    /// The checkpoint file exists but is damaged (it is written atomically,
    /// so this is real corruption, not a crash artefact).
    #[error("checkpoint {path} is corrupt: {reason}")]
    CorruptCheckpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

type Result<T> = std::result::Result<T, StorageError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

const CHECKPOINT_MAGIC: &[u8; 8] = b"PXKVCKP1";
const TAG_PROMISED: u8 = 1;
const TAG_ACCEPTED: u8 = 2;
const TAG_CHOSEN: u8 = 3;
const TAG_SNAPSHOT: u8 = 4;
const TAG_COMPACT: u8 = 5;
/// Upper bound on one WAL record; anything larger is treated as corruption.
const MAX_RECORD: u32 = 1 << 30;

/// The durable state of one replica (see the module documentation).
pub struct Storage {
    dir: PathBuf,
    options: StorageOptions,
    /// Current WAL generation and file, positioned at its end.
    generation: u64,
    wal: File,
    wal_len: u64,
    /// Mirror of what is on disk, used to write checkpoints.
    state: DurableState,
    /// Held for the lifetime of the storage: the directory lock.
    _lock: nix::fcntl::Flock<File>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("dir", &self.dir)
            .field("generation", &self.generation)
            .field("wal_len", &self.wal_len)
            .finish()
    }
}

/// What [`Storage::open`] found while recovering.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// WAL records replayed.
    pub records: u64,
    /// Bytes of torn or corrupt WAL tail that were discarded.
    pub discarded_bytes: u64,
}

impl Storage {
    /// Opens (creating if needed) the data directory `dir`, recovers its
    /// state and returns it with the storage positioned for appends.
    pub fn open(
        dir: &Path,
        options: StorageOptions,
    ) -> Result<(Storage, DurableState, RecoveryReport)> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join("LOCK");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| StorageError::Locked(dir.to_path_buf()))?;

        let ckpt_path = dir.join("checkpoint");
        let (generation, mut state) = match fs::read(&ckpt_path) {
            Ok(buf) => {
                decode_checkpoint(&buf).map_err(|reason| StorageError::CorruptCheckpoint {
                    path: ckpt_path.clone(),
                    reason,
                })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (0, DurableState::default()),
            Err(e) => return Err(io_err(&ckpt_path)(e)),
        };
        // A crash between writing a checkpoint and deleting the old WAL leaves
        // stale generations behind: they are covered by the checkpoint.
        remove_stale_wals(dir, generation)?;

        let wal_path = wal_path(dir, generation);
        let mut wal = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&wal_path)
            .map_err(io_err(&wal_path))?;
        let mut buf = Vec::new();
        wal.read_to_end(&mut buf).map_err(io_err(&wal_path))?;
        let mut report = RecoveryReport::default();
        let mut pos = 0usize;
        while let Some((payload, next)) = read_record(&buf, pos) {
            let mut batch = WriteBatch::default();
            if decode_ops(payload, &mut batch).is_err() {
                break;
            }
            apply(&mut state, batch);
            report.records += 1;
            pos = next;
        }
        if pos < buf.len() {
            report.discarded_bytes = (buf.len() - pos) as u64;
            wal.set_len(pos as u64).map_err(io_err(&wal_path))?;
            wal.sync_all().map_err(io_err(&wal_path))?;
        }
        wal.seek(SeekFrom::Start(pos as u64))
            .map_err(io_err(&wal_path))?;
        sync_dir(dir)?;
        let storage = Storage {
            dir: dir.to_path_buf(),
            options,
            generation,
            wal,
            wal_len: pos as u64,
            state: state.clone(),
            _lock: lock,
        };
        Ok((storage, state, report))
    }

    /// Makes `batch` durable: when this returns `Ok`, a crash at any later
    /// moment recovers all of it. A snapshot in the batch also compacts the
    /// log (see the module documentation).
    pub fn write(&mut self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let has_snapshot = batch.rewrites_history();
        if !has_snapshot {
            let mut payload = Vec::new();
            encode_ops(&batch, &mut payload);
            let mut record = Vec::with_capacity(payload.len() + 8);
            record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            record.extend_from_slice(&payload);
            let path = wal_path(&self.dir, self.generation);
            self.wal.write_all(&record).map_err(io_err(&path))?;
            if self.options.sync && batch.needs_sync() {
                self.wal.sync_data().map_err(io_err(&path))?;
            }
            self.wal_len += record.len() as u64;
        }
        apply(&mut self.state, batch);
        if has_snapshot || self.wal_len > self.options.max_wal_bytes {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// The durable state as of the last successful write.
    pub fn state(&self) -> &DurableState {
        &self.state
    }

    /// Bytes currently in the WAL (for tests and metrics).
    pub fn wal_len(&self) -> u64 {
        self.wal_len
    }

    /// Writes the whole mirrored state as a new checkpoint and starts a new,
    /// empty WAL generation.
    fn checkpoint(&mut self) -> Result<()> {
        let next = self.generation + 1;
        let buf = encode_checkpoint(next, &self.state);
        let tmp = self.dir.join("checkpoint.tmp");
        let ckpt = self.dir.join("checkpoint");
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(&buf).map_err(io_err(&tmp))?;
            if self.options.sync {
                f.sync_all().map_err(io_err(&tmp))?;
            }
        }
        // The new WAL must exist before the checkpoint naming it does, or a
        // crash in between would be recovered with an empty log anyway; both
        // orders are safe, this one keeps open() simple.
        let new_wal_path = wal_path(&self.dir, next);
        let new_wal = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&new_wal_path)
            .map_err(io_err(&new_wal_path))?;
        fs::rename(&tmp, &ckpt).map_err(io_err(&ckpt))?;
        if self.options.sync {
            sync_dir(&self.dir)?;
        }
        let old = wal_path(&self.dir, self.generation);
        self.generation = next;
        self.wal = new_wal;
        self.wal_len = 0;
        // Best effort: a leftover is removed on the next open.
        let _ = fs::remove_file(old);
        Ok(())
    }
}

fn wal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("wal-{generation:016}.log"))
}

fn remove_stale_wals(dir: &Path, generation: u64) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(g) = name
            .strip_prefix("wal-")
            .and_then(|s| s.strip_suffix(".log"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            if g != generation {
                let p = entry.path();
                fs::remove_file(&p).map_err(io_err(&p))?;
            }
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
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

/// Returns the payload of the record at `pos` and the position after it, or
/// `None` if the record is short or fails its checksum.
fn read_record(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let header = buf.get(pos..pos + 8)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let end = pos + 8 + len as usize;
    let payload = buf.get(pos + 8..end)?;
    (crc32fast::hash(payload) == crc).then_some((payload, end))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn encode_ops(batch: &WriteBatch, out: &mut Vec<u8>) {
    for w in &batch.0 {
        match w {
            Write::Snapshot(snap) => {
                out.push(TAG_SNAPSHOT);
                out.extend_from_slice(&snap.last_slot.to_le_bytes());
                put_bytes(out, &snap.data);
            }
            Write::Promise(p) => {
                out.push(TAG_PROMISED);
                put_bytes(out, p);
            }
            Write::Accept(slot, v) => {
                out.push(TAG_ACCEPTED);
                out.extend_from_slice(&slot.to_le_bytes());
                put_bytes(out, v);
            }
            Write::Chosen(slot, v) => {
                out.push(TAG_CHOSEN);
                out.extend_from_slice(&slot.to_le_bytes());
                put_bytes(out, v);
            }
            Write::Compact(through) => {
                out.push(TAG_COMPACT);
                out.extend_from_slice(&through.to_le_bytes());
            }
        }
    }
}

/// A cursor over an encoded payload; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!(
                "truncated: need {n} bytes, have {}",
                self.buf.len()
            ));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> std::result::Result<Bytes, String> {
        let n = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(n)?))
    }
}

fn decode_ops(payload: &[u8], batch: &mut WriteBatch) -> std::result::Result<(), String> {
    let mut r = Reader { buf: payload };
    while !r.buf.is_empty() {
        let w = match r.u8()? {
            TAG_PROMISED => Write::Promise(r.bytes()?),
            TAG_ACCEPTED => {
                let slot = r.u64()?;
                Write::Accept(slot, r.bytes()?)
            }
            TAG_CHOSEN => {
                let slot = r.u64()?;
                Write::Chosen(slot, r.bytes()?)
            }
            TAG_SNAPSHOT => {
                let last_slot = r.u64()?;
                Write::Snapshot(Snapshot {
                    last_slot,
                    data: r.bytes()?,
                })
            }
            TAG_COMPACT => Write::Compact(r.u64()?),
            t => return Err(format!("unknown record tag {t}")),
        };
        batch.push(w);
    }
    Ok(())
}

fn encode_checkpoint(generation: u64, state: &DurableState) -> Vec<u8> {
    let mut batch = WriteBatch::default();
    if let Some(s) = &state.snapshot {
        batch.push(Write::Snapshot(s.clone()));
    }
    if let Some(p) = &state.promised {
        batch.push(Write::Promise(p.clone()));
    }
    for (s, v) in &state.accepted {
        batch.push(Write::Accept(*s, v.clone()));
    }
    for (s, v) in &state.chosen {
        batch.push(Write::Chosen(*s, v.clone()));
    }
    let mut payload = Vec::new();
    payload.extend_from_slice(&generation.to_le_bytes());
    encode_ops(&batch, &mut payload);
    let mut out = Vec::with_capacity(payload.len() + 20);
    out.extend_from_slice(CHECKPOINT_MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

fn decode_checkpoint(buf: &[u8]) -> std::result::Result<(u64, DurableState), String> {
    let mut r = Reader { buf };
    if r.take(8)? != CHECKPOINT_MAGIC {
        return Err("bad magic".into());
    }
    let len = r.u64()?;
    let crc = r.u32()?;
    if len != r.buf.len() as u64 {
        return Err(format!("length {len} but {} bytes follow", r.buf.len()));
    }
    if crc32fast::hash(r.buf) != crc {
        return Err("checksum mismatch".into());
    }
    let generation = r.u64()?;
    let mut batch = WriteBatch::default();
    decode_ops(r.buf, &mut batch)?;
    let mut state = DurableState::default();
    apply(&mut state, batch);
    Ok((generation, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "paxoskv-storage-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn opts() -> StorageOptions {
        StorageOptions::default()
    }

    #[test]
    fn reopen_recovers_every_batch() {
        let dir = tmpdir("reopen");
        {
            let (mut s, st, _) = Storage::open(&dir, opts()).unwrap();
            assert_eq!(st, DurableState::default());
            s.write(WriteBatch(vec![
                Write::Promise(b("b1")),
                Write::Accept(1, b("a1")),
                Write::Accept(2, b("a2")),
            ]))
            .unwrap();
            s.write(WriteBatch(vec![
                Write::Promise(b("b2")),
                Write::Accept(2, b("a2'")),
                Write::Chosen(1, b("c1")),
            ]))
            .unwrap();
        }
        let (_s, st, report) = Storage::open(&dir, opts()).unwrap();
        assert_eq!(report.records, 2);
        assert_eq!(report.discarded_bytes, 0);
        assert_eq!(st.promised, Some(b("b2")));
        assert_eq!(st.accepted.get(&2), Some(&b("a2'")));
        assert_eq!(st.accepted.len(), 2);
        assert_eq!(st.chosen.get(&1), Some(&b("c1")));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn directory_is_locked_while_open() {
        let dir = tmpdir("lock");
        let (_s, _, _) = Storage::open(&dir, opts()).unwrap();
        assert!(matches!(
            Storage::open(&dir, opts()),
            Err(StorageError::Locked(_))
        ));
        drop(_s);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Cuts the WAL at every possible length inside the last record: the last
    /// batch is either wholly there or wholly absent, never half.
    #[test]
    fn torn_tail_is_truncated_not_applied() {
        let dir = tmpdir("torn");
        {
            let (mut s, _, _) = Storage::open(&dir, opts()).unwrap();
            s.write(WriteBatch(vec![Write::Accept(1, b("first"))]))
                .unwrap();
            s.write(WriteBatch(vec![
                Write::Promise(b("p")),
                Write::Accept(2, b("second")),
                Write::Accept(3, b("third")),
            ]))
            .unwrap();
        }
        let wal = wal_path(&dir, 0);
        let full = fs::read(&wal).unwrap();
        let first_len = 8 + u32::from_le_bytes(full[0..4].try_into().unwrap()) as usize;
        for cut in first_len..full.len() {
            fs::write(&wal, &full[..cut]).unwrap();
            let (s, st, report) = Storage::open(&dir, opts()).unwrap();
            assert_eq!(report.records, 1, "cut at {cut}");
            assert_eq!(report.discarded_bytes, (cut - first_len) as u64);
            assert_eq!(st.accepted.len(), 1);
            assert_eq!(st.promised, None);
            assert_eq!(s.wal_len(), first_len as u64);
            drop(s);
            // Truncated on disk too.
            assert_eq!(fs::metadata(&wal).unwrap().len(), first_len as u64);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_record_ends_the_log() {
        let dir = tmpdir("corrupt");
        {
            let (mut s, _, _) = Storage::open(&dir, opts()).unwrap();
            for i in 0..3u64 {
                s.write(WriteBatch(vec![Write::Accept(i, b("value"))]))
                    .unwrap();
            }
        }
        let wal = wal_path(&dir, 0);
        let mut full = fs::read(&wal).unwrap();
        let rec = full.len() / 3;
        full[rec + 12] ^= 0xff; // flip a payload byte of the second record
        fs::write(&wal, &full).unwrap();
        let (mut s, st, report) = Storage::open(&dir, opts()).unwrap();
        assert_eq!(report.records, 1);
        assert_eq!(st.accepted.keys().copied().collect::<Vec<_>>(), vec![0]);
        // Appending after recovery works and survives another reopen.
        s.write(WriteBatch(vec![Write::Accept(9, b("after"))]))
            .unwrap();
        drop(s);
        let (_s, st, report) = Storage::open(&dir, opts()).unwrap();
        assert_eq!(report.discarded_bytes, 0);
        assert_eq!(st.accepted.keys().copied().collect::<Vec<_>>(), vec![0, 9]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn snapshot_compacts_log_and_bounds_disk() {
        let dir = tmpdir("compact");
        let value = Bytes::from(vec![7u8; 1000]);
        {
            let (mut s, _, _) = Storage::open(&dir, opts()).unwrap();
            for round in 0..20u64 {
                for i in 0..50u64 {
                    let slot = round * 50 + i;
                    s.write(WriteBatch(vec![
                        Write::Accept(slot, value.clone()),
                        Write::Chosen(slot, value.clone()),
                    ]))
                    .unwrap();
                }
                let last = round * 50 + 44;
                s.write(WriteBatch(vec![
                    Write::Snapshot(Snapshot {
                        last_slot: last,
                        data: b(&format!("state@{last}")),
                    }),
                    Write::Compact(last),
                ]))
                .unwrap();
                assert_eq!(s.wal_len(), 0);
                assert_eq!(s.state().accepted.len(), 5);
            }
        }
        let total: u64 = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total < 30_000, "disk use {total} bytes");
        let (_s, st, _) = Storage::open(&dir, opts()).unwrap();
        assert_eq!(st.snapshot.as_ref().map(|s| s.last_slot), Some(994));
        assert_eq!(
            st.chosen.keys().copied().collect::<Vec<_>>(),
            (995..1000).collect::<Vec<_>>()
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wal_size_limit_triggers_checkpoint() {
        let dir = tmpdir("walsize");
        {
            let (mut s, _, _) = Storage::open(
                &dir,
                StorageOptions {
                    max_wal_bytes: 10_000,
                    sync: false,
                },
            )
            .unwrap();
            for slot in 0..100u64 {
                s.write(WriteBatch(vec![
                    Write::Promise(b(&format!("p{slot}"))),
                    Write::Accept(slot, Bytes::from(vec![1u8; 500])),
                ]))
                .unwrap();
                assert!(s.wal_len() <= 10_600);
            }
        }
        let (_s, st, _) = Storage::open(&dir, opts()).unwrap();
        assert_eq!(st.accepted.len(), 100);
        assert_eq!(st.promised, Some(b("p99")));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_checkpoint_is_an_error() {
        let dir = tmpdir("ckpt");
        {
            let (mut s, _, _) = Storage::open(&dir, opts()).unwrap();
            s.write(WriteBatch(vec![Write::Snapshot(Snapshot {
                last_slot: 3,
                data: b("snap"),
            })]))
            .unwrap();
        }
        let p = dir.join("checkpoint");
        let mut buf = fs::read(&p).unwrap();
        let n = buf.len();
        buf[n - 1] ^= 1;
        fs::write(&p, &buf).unwrap();
        assert!(matches!(
            Storage::open(&dir, opts()),
            Err(StorageError::CorruptCheckpoint { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
