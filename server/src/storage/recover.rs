//! Reading a data directory back on open, and the rule that tells a torn
//! tail (repaired) from damage (refused); see [the module
//! documentation](super) for why the rule is what it is.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use nix::unistd::{lseek, Whence};

use super::error::{damaged, io_err, Result, StorageError};
use super::format::{self, BadRecord, Version, WalHeader, WAL_HEADER_LEN};
use super::{apply, DurableState, RecoveryReport, StorageOptions, TornTail};

pub(super) const CHECKPOINT: &str = "checkpoint";
pub(super) const CHECKPOINT_TMP: &str = "checkpoint.tmp";
pub(super) const LOCK: &str = "LOCK";

/// Path of the WAL file of `generation`.
pub(super) fn wal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("wal-{generation:016}.log"))
}

fn wal_generation(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The files of a data directory, by role.
#[derive(Debug, Default)]
pub(super) struct Listing {
    pub checkpoint: bool,
    pub checkpoint_tmp: bool,
    pub wals: BTreeMap<u64, PathBuf>,
}

/// Lists `dir`, refusing a directory that holds anything paxoskv does not
/// write (`lost+found` of a filesystem root is allowed).
pub(super) fn list(dir: &Path) -> Result<Listing> {
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir).map_err(io_err("read data directory", dir))? {
        let entry = entry.map_err(io_err("read data directory", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        match &*name {
            CHECKPOINT => listing.checkpoint = true,
            CHECKPOINT_TMP => listing.checkpoint_tmp = true,
            LOCK | "lost+found" => {}
            other => match wal_generation(other) {
                Some(g) => {
                    listing.wals.insert(g, entry.path());
                }
                None => {
                    return Err(StorageError::Foreign {
                        dir: dir.to_path_buf(),
                        entry: other.to_string(),
                    })
                }
            },
        }
    }
    Ok(listing)
}

/// What [`recover`] hands to the storage: the state and an open WAL to
/// append to.
pub(super) struct Recovered {
    pub generation: u64,
    pub next_seq: u64,
    pub state: DurableState,
    pub wal: File,
    /// Offset where the next record goes.
    pub wal_end: u64,
    pub report: RecoveryReport,
}

/// Recovers the (locked) directory `dir`.
pub(super) fn recover(dir: &Path, options: &StorageOptions) -> Result<Recovered> {
    let listing = list(dir)?;
    match recover_listing(dir, &listing, options) {
        Err(e) if e.is_damage() && !options.sync => {
            // --unsafe-no-fsync: nothing was ever promised durable, so a crash
            // can leave anything behind. Start over, as the flag's
            // documentation warns.
            for p in listing.wals.values() {
                fs::remove_file(p).map_err(io_err("remove", p))?;
            }
            let mut r = start_fresh(dir, options)?;
            r.report.reset_after_damage = Some(e.to_string());
            Ok(r)
        }
        r => r,
    }
}

fn recover_listing(dir: &Path, listing: &Listing, options: &StorageOptions) -> Result<Recovered> {
    // Leftovers of a crash in the middle of a checkpoint, removed once the
    // directory has been found sound (a refused one is left as it is).
    let mut garbage = Vec::new();
    if listing.checkpoint_tmp {
        // The old checkpoint stands.
        garbage.push(dir.join(CHECKPOINT_TMP));
    }
    let recovered = if listing.checkpoint {
        with_checkpoint(dir, listing, options, &mut garbage)?
    } else {
        without_checkpoint(dir, listing, options)?
    };
    for p in &garbage {
        match fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err("remove", p)(e))
            }
            _ => {}
        }
    }
    Ok(recovered)
}

fn with_checkpoint(
    dir: &Path,
    listing: &Listing,
    options: &StorageOptions,
    garbage: &mut Vec<PathBuf>,
) -> Result<Recovered> {
    let path = dir.join(CHECKPOINT);
    let buf = fs::read(&path).map_err(io_err("read", &path))?;
    match format::checkpoint_version(&buf) {
        Version::Newer(version) => {
            return Err(StorageError::NewerFormat {
                file: path,
                version,
            })
        }
        Version::Unknown => {
            return Err(damaged(
                &path,
                0,
                "it does not start with the checkpoint magic",
            ))
        }
        Version::V1 | Version::V2 => {}
    }
    let ckpt = format::decode_checkpoint(&buf).map_err(|(at, why)| damaged(&path, at, why))?;
    if ckpt.version == Version::V1 {
        let wal = listing.wals.get(&ckpt.generation).cloned();
        let stale: Vec<_> = listing
            .wals
            .iter()
            .filter(|(g, _)| **g != ckpt.generation)
            .map(|(_, p)| p.clone())
            .collect();
        return upgrade_v1(dir, ckpt.generation, ckpt.state, wal, stale, options);
    }

    let g = ckpt.generation;
    // The log continues in WAL g and, if a checkpoint was being written in
    // the background when the process stopped, in WAL g + 1 (see
    // "Checkpoints off the message path" in the module documentation).
    let mut next_wal = None;
    for (&other, p) in &listing.wals {
        if other < g {
            // Covered by the checkpoint; a crash came before its deletion.
            garbage.push(p.clone());
        } else if other == g + 1 && holds_records(p)?.is_some() {
            next_wal = Some(p.clone());
        } else if other > g {
            // Created by a switch that crashed before its first record
            // (g + 1), or by nothing this version does (later ones): it can
            // hold nothing, since nothing is appended to a WAL before its
            // predecessor is complete and the checkpoint before that is in
            // place.
            if let Some(at) = holds_records(p)? {
                return Err(damaged(
                    p,
                    at,
                    format!(
                        "this WAL holds records but the checkpoint names generation {g}, \
                         more than one before it: the checkpoint is older than the log \
                         (restored from a backup?)"
                    ),
                ));
            }
            garbage.push(p.clone());
        }
    }
    let path = wal_path(dir, g);
    if !listing.wals.contains_key(&g) {
        if let Some(next) = &next_wal {
            return Err(damaged(
                next,
                WAL_HEADER_LEN as u64,
                format!(
                    "this WAL holds records but the WAL it continues (generation {g}, the one \
                     the checkpoint names) is missing: a WAL generation was deleted, or the \
                     checkpoint is older than the log (restored from a backup?)"
                ),
            ));
        }
        return Err(damaged(
            &path,
            0,
            format!(
                "the file is missing, but the checkpoint says the log continues in it \
                 (generation {g}): a WAL generation was deleted"
            ),
        ));
    }
    let mut state = ckpt.state;
    let (wal, replay) = read_wal(&path, g, ckpt.next_seq, "the checkpoint", &mut state)?;
    let Some(next) = next_wal else {
        let mut report = RecoveryReport {
            records: replay.records,
            ..RecoveryReport::default()
        };
        if let Some(torn) = replay.torn {
            // Overwrite the torn bytes so that they cannot be mistaken for
            // data later (the file keeps its created length).
            let zeros = vec![0u8; torn.bytes as usize];
            wal.write_all_at(&zeros, torn.offset)
                .map_err(io_err("write", &path))?;
            if options.sync {
                wal.sync_data().map_err(io_err("fdatasync", &path))?;
            }
            report.torn_tail = Some(torn);
        }
        return Ok(Recovered {
            generation: g,
            next_seq: ckpt.next_seq + replay.records,
            state,
            wal,
            wal_end: replay.end as u64,
            report,
        });
    };
    // WAL g was complete (fsynced) before WAL g + 1 got its first record:
    // only the last file can be torn.
    if let Some(torn) = replay.torn {
        return Err(damaged(
            &path,
            torn.offset,
            format!(
                "{}, but the log continues in {}: a crash can only tear the last record of \
                 the last WAL, so data that was on disk has been damaged",
                torn.problem,
                next.display()
            ),
        ));
    }
    let first_next = ckpt.next_seq + replay.records;
    let previous = format!("WAL generation {g}");
    let (_, replay_next) = read_wal(&next, g + 1, first_next, &previous, &mut state)?;
    // Two live WALs: fold them into a checkpoint now (on open, off any
    // message path), so that a running storage has at most one checkpoint
    // behind its current WAL.
    let next_seq = first_next + replay_next.records;
    let generation = g + 2;
    let file = start_generation(dir, generation, next_seq, &state, options)?;
    garbage.push(path);
    garbage.push(next);
    Ok(Recovered {
        generation,
        next_seq,
        state,
        wal: file,
        wal_end: WAL_HEADER_LEN as u64,
        report: RecoveryReport {
            records: replay.records + replay_next.records,
            torn_tail: replay_next.torn,
            ..RecoveryReport::default()
        },
    })
}

/// Reads the version-2 WAL `path` of `generation`, which must continue
/// `what` (the checkpoint or the previous WAL) from record `first_seq`,
/// and replays it into `state`. Refuses a truncated file or a header that
/// does not continue.
fn read_wal(
    path: &Path,
    generation: u64,
    first_seq: u64,
    what: &str,
    state: &mut DurableState,
) -> Result<(File, Replay)> {
    let (wal, buf, file_len) = open_wal(path)?;
    if file_len < WAL_HEADER_LEN as u64 {
        return Err(damaged(
            path,
            file_len,
            format!(
                "the file is {file_len} bytes long, shorter than a WAL header \
                 ({WAL_HEADER_LEN} bytes): it was truncated"
            ),
        ));
    }
    match format::wal_version(&buf) {
        Version::Newer(version) => {
            return Err(StorageError::NewerFormat {
                file: path.to_path_buf(),
                version,
            })
        }
        Version::V2 => {}
        Version::V1 | Version::Unknown => {
            return Err(damaged(
                path,
                0,
                "the file has no WAL header, but its checkpoint is of a format whose WAL files all have one",
            ))
        }
    }
    let header = WalHeader::decode(&buf).map_err(|why| damaged(path, 0, why))?;
    if header.generation != generation || header.first_seq != first_seq {
        return Err(damaged(
            path,
            8,
            format!(
                "the WAL does not continue {what}: its header says generation {} from \
                 record {}, {what} expects generation {generation} from record {first_seq}",
                header.generation, header.first_seq
            ),
        ));
    }
    if file_len < header.created_len {
        return Err(damaged(
            path,
            file_len,
            format!(
                "the file is {file_len} bytes long but was created with {}: it was truncated",
                header.created_len
            ),
        ));
    }
    let replay = replay(path, &buf, WAL_HEADER_LEN, Some(header.first_seq), state)?;
    Ok((wal, replay))
}

/// A directory without a checkpoint: new, a new one whose creation was
/// interrupted, a version-1 directory (which had no checkpoint before its
/// first compaction), or one whose checkpoint was deleted.
fn without_checkpoint(
    dir: &Path,
    listing: &Listing,
    options: &StorageOptions,
) -> Result<Recovered> {
    let only_first = listing.wals.len() == 1 && listing.wals.contains_key(&0);
    if listing.wals.is_empty() {
        return start_fresh(dir, options);
    }
    if only_first {
        let path = listing.wals[&0].clone();
        let (_, buf, _) = open_wal(&path)?;
        match format::wal_version(&buf) {
            // A version-1 WAL (or the empty one version 1 created on open).
            Version::V1 => {
                return upgrade_v1(dir, 0, DurableState::default(), Some(path), vec![], options)
            }
            // Created by an interrupted start_fresh: nothing can be in it.
            Version::V2 if first_record(&path)?.is_none() => return start_fresh(dir, options),
            Version::Newer(version) => {
                return Err(StorageError::NewerFormat {
                    file: path,
                    version,
                })
            }
            _ => {}
        }
    }
    let names: Vec<String> = listing
        .wals
        .values()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    Err(damaged(
        &dir.join(CHECKPOINT),
        0,
        format!(
            "the checkpoint is missing, but WAL files exist ({}): it was deleted",
            names.join(", ")
        ),
    ))
}

/// Starts a new, empty directory: generation 0 from record 0.
fn start_fresh(dir: &Path, options: &StorageOptions) -> Result<Recovered> {
    let state = DurableState::default();
    let wal = start_generation(dir, 0, 0, &state, options)?;
    Ok(Recovered {
        generation: 0,
        next_seq: 0,
        state,
        wal,
        wal_end: WAL_HEADER_LEN as u64,
        report: RecoveryReport::default(),
    })
}

/// Reads a version-1 directory (checkpoint `generation`, WAL `wal`) and
/// rewrites it in the current format as the next generation.
fn upgrade_v1(
    dir: &Path,
    generation: u64,
    mut state: DurableState,
    wal: Option<PathBuf>,
    stale: Vec<PathBuf>,
    options: &StorageOptions,
) -> Result<Recovered> {
    let mut report = RecoveryReport {
        upgraded_from: Some(1),
        ..RecoveryReport::default()
    };
    if let Some(path) = &wal {
        let (_, buf, _) = open_wal(path)?;
        let replay = replay(path, &buf, 0, None, &mut state)?;
        report.records = replay.records;
        report.torn_tail = replay.torn;
    }
    let next = generation + 1;
    let file = start_generation(dir, next, 0, &state, options)?;
    for p in wal.iter().chain(&stale) {
        fs::remove_file(p).map_err(io_err("remove", p))?;
    }
    Ok(Recovered {
        generation: next,
        next_seq: 0,
        state,
        wal: file,
        wal_end: WAL_HEADER_LEN as u64,
        report,
    })
}

/// Makes generation `generation` the current one: creates its WAL
/// (preallocated, durable), then atomically replaces the checkpoint with one
/// holding `state` and naming that WAL. Returns the new WAL.
pub(super) fn start_generation(
    dir: &Path,
    generation: u64,
    first_seq: u64,
    state: &DurableState,
    options: &StorageOptions,
) -> Result<File> {
    let wal = create_wal(dir, generation, first_seq, options)?;
    write_checkpoint(dir, generation, first_seq, state, options)?;
    Ok(wal)
}

/// Creates the WAL of `generation`, whose first record will be number
/// `first_seq`: header, preallocated length, and (with fsync) both the file
/// and its name durable before it is returned, so that a record appended to
/// it is never found after a crash behind a missing or torn header.
pub(super) fn create_wal(
    dir: &Path,
    generation: u64,
    first_seq: u64,
    options: &StorageOptions,
) -> Result<File> {
    let path = wal_path(dir, generation);
    let header = WalHeader {
        generation,
        first_seq,
        created_len: WAL_HEADER_LEN as u64 + options.max_wal_bytes,
    };
    let wal = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    wal.write_all_at(&header.encode(), 0)
        .map_err(io_err("write", &path))?;
    // Preallocated (sparse): a shortened file is then a sign of truncation,
    // never of a crash, whose unsynced appends read back as zeros.
    wal.set_len(header.created_len)
        .map_err(io_err("preallocate", &path))?;
    if options.sync {
        wal.sync_all().map_err(io_err("fsync", &path))?;
        // The WAL's name must be durable before a checkpoint names it and
        // before a record is appended to it.
        sync_dir(dir)?;
    }
    Ok(wal)
}

/// Atomically replaces the checkpoint with one holding `state` and naming
/// the WAL `generation` that continues it from record `first_seq`:
/// `checkpoint.tmp` is written and fsynced, renamed over `checkpoint`, and
/// the directory fsynced.
pub(super) fn write_checkpoint(
    dir: &Path,
    generation: u64,
    first_seq: u64,
    state: &DurableState,
    options: &StorageOptions,
) -> Result<()> {
    let buf = format::encode_checkpoint(generation, first_seq, state);
    write_file_durably(&dir.join(CHECKPOINT_TMP), &buf, options)?;
    install_checkpoint(dir, options)
}

/// Creates (or replaces) `path` holding `buf`, fsynced.
pub(super) fn write_file_durably(path: &Path, buf: &[u8], options: &StorageOptions) -> Result<()> {
    let f = File::create(path).map_err(io_err("create", path))?;
    f.write_all_at(buf, 0).map_err(io_err("write", path))?;
    if options.sync {
        f.sync_all().map_err(io_err("fsync", path))?;
    }
    Ok(())
}

/// Renames a durable `checkpoint.tmp` over `checkpoint` and makes the
/// rename durable.
pub(super) fn install_checkpoint(dir: &Path, options: &StorageOptions) -> Result<()> {
    let ckpt = dir.join(CHECKPOINT);
    fs::rename(dir.join(CHECKPOINT_TMP), &ckpt)
        .map_err(io_err("rename checkpoint.tmp over", &ckpt))?;
    if options.sync {
        sync_dir(dir)?;
    }
    Ok(())
}

pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Opens a WAL and reads it up to the end of its data: a preallocated WAL is
/// sparse after its last write, so the read stops at the first hole where
/// the filesystem reports one (any other filesystem reads the whole file).
/// Returns the file, its bytes and its length.
fn open_wal(path: &Path) -> Result<(File, Vec<u8>, u64)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    let data = match lseek(&file, 0, Whence::SeekHole) {
        // Data after the hole (a crash can leave one in unsynced appends):
        // read everything, so that recovery sees it.
        Ok(hole) if hole >= 0 && lseek(&file, hole, Whence::SeekData).is_err() => {
            (hole as u64).min(len)
        }
        _ => len,
    };
    // Positioned reads: the lseek calls above moved the file offset.
    let mut buf = vec![0u8; data as usize];
    file.read_exact_at(&mut buf, 0)
        .map_err(io_err("read", path))?;
    Ok((file, buf, len))
}

/// Offset of the first record of a version-2 WAL, if it has a valid one.
fn first_record(path: &Path) -> Result<Option<u64>> {
    let (_, buf, _) = open_wal(path)?;
    if WalHeader::decode(&buf).is_err() {
        return Ok(None);
    }
    Ok(format::read_record(&buf, WAL_HEADER_LEN)
        .ok()
        .map(|_| WAL_HEADER_LEN as u64))
}

/// Offset of a valid record anywhere in the WAL `path` after its header
/// (whether or not the header itself is sound), if it holds one.
pub(super) fn holds_records(path: &Path) -> Result<Option<u64>> {
    let (_, buf, _) = open_wal(path)?;
    Ok(valid_record_after(&buf, WAL_HEADER_LEN, buf.len(), Some(0)).map(|at| at as u64))
}

/// The outcome of replaying one WAL.
struct Replay {
    records: u64,
    /// Offset just after the last valid record.
    end: usize,
    torn: Option<TornTail>,
}

/// Replays the records of `buf` from `start` into `state`. `first_seq` is the
/// sequence number the first record must carry (`None`: version 1, records
/// are unnumbered).
///
/// The rule: a record that is short or fails its checksum is a torn tail,
/// dropped, if nothing valid follows it; if any valid record follows, the
/// damage is not the last write's and opening fails. A valid record with
/// the wrong sequence number, or one that passes its checksum but does not
/// decode, fails too (a crash produces neither).
fn replay(
    path: &Path,
    buf: &[u8],
    start: usize,
    first_seq: Option<u64>,
    state: &mut DurableState,
) -> Result<Replay> {
    // Everything after the last non-zero byte is unused preallocated space.
    let data_end = buf
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1)
        .max(start);
    let read = |pos| match first_seq {
        Some(_) => format::read_record(buf, pos),
        None => format::read_record_v1(buf, pos),
    };
    let mut pos = start;
    let mut index = 0u64;
    while pos < data_end {
        let expected = first_seq.map(|s| s + index);
        let number = expected.unwrap_or(index);
        match read(pos) {
            Ok(rec) => {
                if let (Some(seq), Some(expected)) = (rec.seq, expected) {
                    if seq != expected {
                        return Err(damaged(
                            path,
                            pos as u64,
                            format!(
                                "this record is number {seq} where number {expected} must be: \
                                 records are missing or out of order"
                            ),
                        ));
                    }
                }
                apply(state, rec.batch);
                index += 1;
                pos = rec.end;
            }
            Err(BadRecord::Undecodable(why)) => {
                return Err(damaged(
                    path,
                    pos as u64,
                    format!("record {number} passes its checksum but does not decode ({why})"),
                ))
            }
            Err(bad) => {
                if let Some(later) = valid_record_after(buf, pos + 1, data_end, expected) {
                    return Err(damaged(
                        path,
                        pos as u64,
                        format!(
                            "record {number} {bad}, but a valid record follows at byte {later}: \
                             a crash can only tear the last record, so data that was on disk \
                             has been damaged"
                        ),
                    ));
                }
                return Ok(Replay {
                    records: index,
                    end: pos,
                    torn: Some(TornTail {
                        file: path.to_path_buf(),
                        offset: pos as u64,
                        bytes: (data_end - pos) as u64,
                        problem: format!("record {number} {bad}"),
                    }),
                });
            }
        }
    }
    Ok(Replay {
        records: index,
        end: pos,
        torn: None,
    })
}

/// The offset of the first valid record in `buf[from..end]`: for version 2
/// one with a sequence number of at least `min_seq`, for version 1
/// (`min_seq` `None`) any checksummed non-empty record.
fn valid_record_after(buf: &[u8], from: usize, end: usize, min_seq: Option<u64>) -> Option<usize> {
    let end = end.min(buf.len());
    match min_seq {
        Some(min_seq) => {
            let magic = format::RECORD_MAGIC;
            (from..end.saturating_sub(magic.len() - 1))
                .filter(|&p| &buf[p..p + magic.len()] == magic)
                .find(|&p| match format::read_record(buf, p) {
                    Ok(r) => r.seq.is_some_and(|s| s >= min_seq),
                    Err(BadRecord::Undecodable(_)) => true,
                    Err(_) => false,
                })
        }
        None => (from..end).find(|&p| {
            matches!(
                format::read_record_v1(&buf[..end], p),
                Ok(_) | Err(BadRecord::Undecodable(_))
            )
        }),
    }
}
