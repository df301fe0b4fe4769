//! Storage on real files (no FUSE): recovery of every batch, the torn-tail
//! rule against each kind of damage, failed writes, the legacy format.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::layout::{self, SpanKind};
use super::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "paxoskv-storage-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = fs::remove_dir_all(&d);
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

fn opts() -> StorageOptions {
    StorageOptions {
        max_wal_bytes: 1 << 20,
        sync: true,
    }
}

fn open(dir: &Path) -> Result<(Storage, DurableState, RecoveryReport)> {
    Storage::open(dir, opts())
}

/// Writes one synced record per slot in `slots`, each accepting `value`.
fn accepts(dir: &Path, slots: std::ops::Range<u64>, value: &str) {
    let (mut s, _, _) = open(dir).unwrap();
    for slot in slots {
        s.write(WriteBatch(vec![
            Write::Promise(b(&format!("p{slot}"))),
            Write::Accept(slot, b(value)),
        ]))
        .unwrap();
    }
}

fn snapshot(dir: &Path, last_slot: Slot) {
    let (mut s, _, _) = open(dir).unwrap();
    s.write(WriteBatch(vec![
        Write::Snapshot(EncodedSnapshot {
            last_slot,
            data: b(&format!("state@{last_slot}")).into(),
        }),
        Write::Compact(last_slot),
    ]))
    .unwrap();
}

fn record_spans(dir: &Path) -> Vec<layout::RecordSpan> {
    layout::scan(dir)
        .unwrap()
        .into_iter()
        .filter(|s| matches!(s.kind, SpanKind::WalRecord { .. }))
        .collect()
}

fn flip(file: &Path, offset: u64) {
    let mut buf = fs::read(file).unwrap();
    buf[offset as usize] ^= 0x10;
    fs::write(file, &buf).unwrap();
}

/// Asserts that opening `dir` is refused as damage of `file` at `offset`,
/// and returns the message.
fn refused(dir: &Path, file: &Path, offset: u64) -> String {
    match open(dir) {
        Err(e @ StorageError::Damaged { .. }) => {
            let StorageError::Damaged {
                file: f, offset: o, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((f.as_path(), *o), (file, offset), "{e}");
            let msg = e.to_string();
            assert!(msg.contains(&file.display().to_string()), "{msg}");
            assert!(msg.contains(&format!("byte {offset}")), "{msg}");
            assert!(msg.contains("Refusing to start"), "{msg}");
            msg
        }
        Err(e) => panic!(
            "expected damage of {} at {offset}, got: {e}",
            file.display()
        ),
        Ok(_) => panic!("expected damage of {} at {offset}, opened", file.display()),
    }
}

#[test]
fn reopen_recovers_every_batch() {
    let dir = TempDir::new("reopen");
    {
        let (mut s, st, _) = open(&dir).unwrap();
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
    let (_s, st, report) = open(&dir).unwrap();
    assert_eq!(report.records, 2);
    assert_eq!(report.torn_tail, None);
    assert_eq!(st.promised, Some(b("b2")));
    assert_eq!(st.accepted.get(&2), Some(&b("a2'")));
    assert_eq!(st.accepted.len(), 2);
    assert_eq!(st.chosen.get(&1), Some(&b("c1")));
}

#[test]
fn directory_is_locked_while_open() {
    let dir = TempDir::new("lock");
    let (s, _, _) = open(&dir).unwrap();
    assert!(matches!(open(&dir), Err(StorageError::Locked(_))));
    drop(s);
    assert!(open(&dir).is_ok());
}

/// Tears the last record at many lengths (the rest of it reads as zeros, as
/// in a preallocated file after a crash): it is dropped and reported, the
/// first record survives, and appends continue after it.
#[test]
fn torn_last_record_is_dropped_and_reported() {
    let dir = TempDir::new("torn");
    accepts(&dir, 0..1, "first");
    {
        let (mut s, _, _) = open(&dir).unwrap();
        s.write(WriteBatch(vec![
            Write::Promise(b("p")),
            Write::Accept(2, b("second")),
            Write::Accept(3, b("third")),
        ]))
        .unwrap();
    }
    let spans = record_spans(&dir);
    let (first, last) = (&spans[0], &spans[1]);
    let wal = last.file.clone();
    let full = fs::read(&wal).unwrap();
    // Every length inside the record header, then every 5th byte.
    let cuts = (1..format::RECORD_HEADER_LEN as u64).chain((20..last.len).step_by(5));
    for cut in cuts.map(|c| last.offset + c) {
        let mut torn = full.clone();
        torn[cut as usize..(last.offset + last.len) as usize].fill(0);
        fs::write(&wal, &torn).unwrap();
        let (s, st, report) = open(&dir).unwrap();
        assert_eq!(report.records, 1, "cut at {cut}");
        let tail = report.torn_tail.expect("a torn tail");
        assert_eq!(
            (tail.file.as_path(), tail.offset),
            (wal.as_path(), last.offset)
        );
        // Up to the last non-zero byte left of the record.
        assert!(
            tail.bytes > 0 && tail.bytes <= cut - last.offset,
            "cut at {cut}"
        );
        assert_eq!(st.accepted.len(), 1);
        assert_eq!(st.promised, Some(b("p0")));
        assert_eq!(s.wal_len(), first.len);
        drop(s);
        // Zeroed on disk, so the next open finds a clean end.
        let (_, _, again) = open(&dir).unwrap();
        assert_eq!(again.torn_tail, None);
    }
    // Garbage instead of zeros after the last record is torn too.
    let mut garbage = full[..(last.offset) as usize].to_vec();
    garbage.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]);
    garbage.resize(full.len(), 0);
    fs::write(&wal, &garbage).unwrap();
    let (mut s, _, report) = open(&dir).unwrap();
    assert_eq!(report.torn_tail.map(|t| t.bytes), Some(11));
    s.write(WriteBatch(vec![Write::Accept(9, b("after"))]))
        .unwrap();
    drop(s);
    let (_, st, report) = open(&dir).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(st.accepted.keys().copied().collect::<Vec<_>>(), vec![0, 9]);
}

#[test]
fn bad_record_in_the_middle_is_refused() {
    let dir = TempDir::new("middle");
    accepts(&dir, 0..3, "value");
    let spans = record_spans(&dir);
    let mid = &spans[1];
    // A payload byte, the length field, the magic: each is refused.
    for at in [mid.len - 1, 5, 0] {
        let before = fs::read(&mid.file).unwrap();
        flip(&mid.file, mid.offset + at);
        let msg = refused(&dir, &mid.file, mid.offset);
        assert!(msg.contains("valid record follows"), "{msg}");
        fs::write(&mid.file, &before).unwrap();
    }
    // Nothing was changed by the refusals.
    let (_, st, report) = open(&dir).unwrap();
    assert_eq!((report.records, st.accepted.len()), (3, 3));
}

/// A valid record beyond a hole in the file (where the filesystem reports
/// one) is still found: the read does not stop at the first hole when data
/// follows it.
#[test]
fn a_valid_record_beyond_a_hole_is_found() {
    let dir = TempDir::new("hole");
    accepts(&dir, 0..1, "v");
    let r0 = record_spans(&dir)[0].clone();
    let later = 256 * 1024;
    let rec = format::encode_record(5, &WriteBatch(vec![Write::Accept(5, b("far"))]));
    let f = fs::OpenOptions::new().write(true).open(&r0.file).unwrap();
    // Record 1 is missing (zeros), record 5 lies far behind a hole.
    f.write_all_at(&rec, later).unwrap();
    drop(f);
    let msg = refused(&dir, &r0.file, r0.offset + r0.len);
    assert!(
        msg.contains(&format!("valid record follows at byte {later}")),
        "{msg}"
    );
}

#[test]
fn records_out_of_sequence_are_refused() {
    let dir = TempDir::new("sequence");
    accepts(&dir, 0..3, "same-size");
    let spans = record_spans(&dir);
    let (r1, r2) = (&spans[1], &spans[2]);
    assert_eq!(r1.len, r2.len);
    let mut buf = fs::read(&r1.file).unwrap();
    let (a, b) = (r1.offset as usize, r2.offset as usize);
    let n = r1.len as usize;
    let second = buf[a..a + n].to_vec();
    buf.copy_within(b..b + n, a);
    buf[b..b + n].copy_from_slice(&second);
    fs::write(&r1.file, &buf).unwrap();
    let msg = refused(&dir, &r1.file, r1.offset);
    assert!(msg.contains("out of order"), "{msg}");
}

#[test]
fn bad_checkpoint_is_refused() {
    let dir = TempDir::new("ckpt");
    accepts(&dir, 0..2, "v");
    snapshot(&dir, 1);
    let ckpt = dir.join("checkpoint");
    let good = fs::read(&ckpt).unwrap();
    flip(&ckpt, good.len() as u64 - 1);
    let msg = refused(&dir, &ckpt, 16);
    assert!(msg.contains("checksum"), "{msg}");
    fs::write(&ckpt, &good[..good.len() - 3]).unwrap();
    refused(&dir, &ckpt, 8);
    fs::write(&ckpt, b"something else entirely").unwrap();
    refused(&dir, &ckpt, 0);
    fs::write(&ckpt, &good).unwrap();
    assert!(open(&dir).is_ok());
}

#[test]
fn missing_wal_generation_is_refused() {
    let dir = TempDir::new("missing");
    accepts(&dir, 0..2, "v");
    snapshot(&dir, 1);
    let wal = dir.join(format!("wal-{:016}.log", 1));
    assert!(
        wal.exists(),
        "fresh start is generation 0, one checkpoint later 1"
    );
    fs::remove_file(&wal).unwrap();
    let msg = refused(&dir, &wal, 0);
    assert!(msg.contains("missing"), "{msg}");
}

#[test]
fn checkpoint_without_its_wal_continuation_is_refused() {
    let dir = TempDir::new("continue");
    accepts(&dir, 0..2, "v");
    let old_wal = record_spans(&dir)[0].file.clone();
    let saved = fs::read(&old_wal).unwrap();
    snapshot(&dir, 1);
    let new_wal = dir.join(format!("wal-{:016}.log", 1));
    // The old generation's WAL under the new one's name.
    fs::write(&new_wal, &saved).unwrap();
    let msg = refused(&dir, &new_wal, 8);
    assert!(msg.contains("does not continue the checkpoint"), "{msg}");
}

#[test]
fn rolled_back_checkpoint_is_refused() {
    let dir = TempDir::new("rollback");
    accepts(&dir, 0..2, "v");
    let ckpt = dir.join("checkpoint");
    let old = fs::read(&ckpt).unwrap();
    snapshot(&dir, 1);
    accepts(&dir, 2..4, "v");
    fs::write(&ckpt, &old).unwrap();
    let newer = dir.join(format!("wal-{:016}.log", 1));
    let msg = refused(&dir, &newer, 40);
    assert!(msg.contains("older than the log"), "{msg}");
}

/// What a crash in the middle of a checkpoint leaves (the next
/// generation's empty WAL, `checkpoint.tmp`, the old generation's WAL) is
/// removed, but only from a directory found sound.
#[test]
fn leftovers_of_an_interrupted_checkpoint_are_removed() {
    let dir = TempDir::new("leftovers");
    accepts(&dir, 0..2, "v");
    snapshot(&dir, 1);
    accepts(&dir, 2..4, "v");
    let older = dir.join(format!("wal-{:016}.log", 0));
    let newer = dir.join(format!("wal-{:016}.log", 2));
    let tmp = dir.join("checkpoint.tmp");
    fs::write(&older, b"covered by the checkpoint").unwrap();
    let header = format::WalHeader {
        generation: 2,
        first_seq: 4,
        created_len: 4096,
    };
    let mut empty = header.encode().to_vec();
    empty.resize(4096, 0);
    fs::write(&newer, &empty).unwrap();
    fs::write(&tmp, b"half a checkpoint").unwrap();
    // Refused while the current WAL is damaged: nothing is removed.
    let current = record_spans(&dir)[0].clone();
    let good = fs::read(&current.file).unwrap();
    flip(&current.file, current.offset + 1);
    accepts_would_fail(&dir);
    assert!(older.exists() && newer.exists() && tmp.exists());
    fs::write(&current.file, &good).unwrap();
    let (_, st, report) = open(&dir).unwrap();
    assert_eq!((report.records, st.accepted.len()), (2, 2));
    assert!(!older.exists() && !newer.exists() && !tmp.exists());
}

/// Opening fails (the directory is damaged).
fn accepts_would_fail(dir: &Path) {
    assert!(matches!(open(dir), Err(StorageError::Damaged { .. })));
}

#[test]
fn truncated_wal_is_refused_wherever_it_is_cut() {
    let dir = TempDir::new("truncate");
    accepts(&dir, 0..3, "v");
    let spans = record_spans(&dir);
    let wal = spans[0].file.clone();
    let full = fs::read(&wal).unwrap();
    for cut in [0, 17] {
        fs::write(&wal, &full[..cut]).unwrap();
        let msg = refused(&dir, &wal, cut as u64);
        assert!(msg.contains("truncated"), "{msg}");
    }
    for s in &spans {
        for cut in [s.offset, s.offset + s.len / 2, s.offset + s.len] {
            fs::write(&wal, &full[..cut as usize]).unwrap();
            let msg = refused(&dir, &wal, cut);
            assert!(msg.contains("truncated"), "{msg}");
        }
    }
}

#[test]
fn wal_without_checkpoint_is_refused() {
    let dir = TempDir::new("nockpt");
    accepts(&dir, 0..2, "v");
    let ckpt = dir.join("checkpoint");
    fs::remove_file(&ckpt).unwrap();
    let msg = refused(&dir, &ckpt, 0);
    assert!(msg.contains("checkpoint is missing"), "{msg}");
}

#[test]
fn foreign_or_unusable_directories_are_named() {
    let dir = TempDir::new("foreign");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("notes.txt"), "mine").unwrap();
    let e = open(&dir).unwrap_err();
    assert!(matches!(e, StorageError::Foreign { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("notes.txt") && msg.contains("not a paxoskv data directory"),
        "{msg}"
    );
    assert!(
        !dir.join("LOCK").exists(),
        "nothing created in a foreign directory"
    );

    let file = dir.join("notes.txt");
    let e = open(&file).unwrap_err().to_string();
    assert!(
        e.contains("notes.txt") && e.contains("not a directory"),
        "{e}"
    );

    let root = TempDir::new("lostfound");
    fs::create_dir_all(root.join("lost+found")).unwrap();
    assert!(open(&root).is_ok(), "a filesystem root is fine");
}

#[test]
fn newer_format_is_refused_by_name() {
    let dir = TempDir::new("newer");
    accepts(&dir, 0..1, "v");
    let ckpt = dir.join("checkpoint");
    let mut buf = fs::read(&ckpt).unwrap();
    buf[7] = b'3';
    fs::write(&ckpt, &buf).unwrap();
    let e = open(&dir).unwrap_err();
    assert!(
        matches!(e, StorageError::NewerFormat { version: 3, .. }),
        "{e}"
    );
}

/// A version-1 directory (no WAL header, no sequence numbers) is read with
/// the same rule and rewritten in the current format.
#[test]
fn version_1_directories_are_read_and_upgraded() {
    let batch = |slot: u64| {
        WriteBatch(vec![
            Write::Promise(b(&format!("p{slot}"))),
            Write::Accept(slot, b("v1-value")),
        ])
    };
    let v1_wal = |slots: std::ops::Range<u64>| {
        slots
            .flat_map(|s| format::encode_record_v1(&batch(s)))
            .collect::<Vec<u8>>()
    };
    // Before its first compaction: only wal-0, with a torn tail.
    let dir = TempDir::new("v1");
    fs::create_dir_all(&dir).unwrap();
    let mut wal = v1_wal(0..3);
    wal.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
    fs::write(dir.join("wal-0000000000000000.log"), &wal).unwrap();
    fs::write(dir.join("LOCK"), "").unwrap();
    {
        let (_s, st, report) = open(&dir).unwrap();
        assert_eq!(report.upgraded_from, Some(1));
        assert_eq!(report.records, 3);
        assert_eq!(report.torn_tail.map(|t| t.bytes), Some(6));
        assert_eq!(st.accepted.len(), 3);
    }
    assert!(!dir.join("wal-0000000000000000.log").exists());
    let (_s, st, report) = open(&dir).unwrap();
    assert_eq!((report.upgraded_from, st.accepted.len()), (None, 3));
    drop(_s);

    // After a compaction: checkpoint of generation 4 and wal-4.
    let dir = TempDir::new("v1ckpt");
    fs::create_dir_all(&dir).unwrap();
    let mut st = DurableState {
        promised: Some(b("p-old")),
        ..DurableState::default()
    };
    st.chosen.insert(7, b("c7"));
    fs::write(dir.join("checkpoint"), format::encode_checkpoint_v1(4, &st)).unwrap();
    let wal_path = dir.join("wal-0000000000000004.log");
    fs::write(&wal_path, v1_wal(8..10)).unwrap();
    {
        let (_s, got, report) = open(&dir).unwrap();
        assert_eq!(report.upgraded_from, Some(1));
        assert_eq!(got.chosen.get(&7), Some(&b("c7")));
        assert_eq!(got.promised, Some(b("p9")));
        assert_eq!(got.accepted.len(), 2);
    }
    // Damage in the middle of a version-1 WAL is refused too.
    let dir = TempDir::new("v1bad");
    fs::create_dir_all(&dir).unwrap();
    let mut wal = v1_wal(0..3);
    let first = format::encode_record_v1(&batch(0)).len();
    wal[first + 10] ^= 1;
    let path = dir.join("wal-0000000000000000.log");
    fs::write(&path, &wal).unwrap();
    refused(&dir, &path, first as u64);
}

/// Every span [`layout::scan`] lists is a real record: flipping a bit in
/// any of them is refused at the span's file, except the tail, which is
/// dropped like a torn write.
#[test]
fn layout_lists_every_record_and_damage_to_each_is_caught() {
    let dir = TempDir::new("layout");
    accepts(&dir, 0..3, "v");
    snapshot(&dir, 1);
    accepts(&dir, 3..6, "w");
    let spans = layout::scan(&dir).unwrap();
    let kinds: Vec<_> = spans.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        vec![
            SpanKind::CheckpointHeader,
            SpanKind::CheckpointBody,
            SpanKind::WalHeader,
            SpanKind::WalRecord { seq: 3 },
            SpanKind::WalRecord { seq: 4 },
            SpanKind::WalRecord { seq: 5 },
        ],
        "sequence numbers continue across generations"
    );
    assert_eq!(spans.iter().filter(|s| s.tail).count(), 1);
    assert!(spans.last().unwrap().tail);
    for w in spans.windows(2) {
        if w[0].file == w[1].file {
            assert_eq!(w[0].offset + w[0].len, w[1].offset, "{w:?}");
        }
    }
    for s in &spans {
        let before = fs::read(&s.file).unwrap();
        flip(&s.file, s.offset + s.len / 2);
        match open(&dir) {
            Ok((_, _, report)) => {
                assert!(s.tail, "damage to {s:?} was accepted");
                assert_eq!(report.torn_tail.map(|t| t.offset), Some(s.offset));
            }
            Err(e) => {
                assert!(!s.tail, "{e}");
                let StorageError::Damaged { file, .. } = &e else {
                    panic!("{e}")
                };
                assert_eq!(file, &s.file, "{e}");
            }
        }
        fs::write(&s.file, &before).unwrap();
    }
}

/// A failed fsync poisons the storage and what it covered is not read back.
#[test]
fn failed_fsync_stops_the_storage_and_is_not_trusted() {
    for (point, action) in [
        (FaultPoint::Sync, "fdatasync"),
        (FaultPoint::Write, "write"),
    ] {
        let dir = TempDir::new("enospc");
        let (mut s, _, _) = open(&dir).unwrap();
        s.write(WriteBatch(vec![Write::Accept(1, b("durable"))]))
            .unwrap();
        s.write(WriteBatch(vec![Write::Chosen(1, b("unsynced"))]))
            .unwrap();
        s.inject = Some((point, 28)); // ENOSPC
        let e = s
            .write(WriteBatch(vec![Write::Accept(2, b("lost"))]))
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(action) && msg.contains("No space left"),
            "{msg}"
        );
        let e = s
            .write(WriteBatch(vec![Write::Accept(3, b("later"))]))
            .unwrap_err();
        assert!(matches!(e, StorageError::Failed(_)), "{e}");
        assert!(e.to_string().contains("No space left"), "{e}");
        drop(s);
        let (_, st, report) = open(&dir).unwrap();
        assert_eq!(st.accepted.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(report.torn_tail, None, "the unsynced bytes were zeroed");
    }
}

#[test]
fn without_fsync_damage_resets_instead_of_refusing() {
    let dir = TempDir::new("nosync");
    accepts(&dir, 0..3, "v");
    let mid = record_spans(&dir)[1].clone();
    flip(&mid.file, mid.offset + 3);
    refused(&dir, &mid.file, mid.offset);
    let unsafe_opts = StorageOptions {
        sync: false,
        ..opts()
    };
    let (_, st, report) = Storage::open(&dir, unsafe_opts).unwrap();
    assert_eq!(st, DurableState::default());
    let why = report.reset_after_damage.expect("reset");
    assert!(why.contains("valid record follows"), "{why}");
}

#[test]
fn snapshot_compacts_log_and_bounds_disk() {
    let dir = TempDir::new("compact");
    let value = Bytes::from(vec![7u8; 1000]);
    {
        let (mut s, _, _) = open(&dir).unwrap();
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
                Write::Snapshot(EncodedSnapshot {
                    last_slot: last,
                    data: b(&format!("state@{last}")).into(),
                }),
                Write::Compact(last),
            ]))
            .unwrap();
            s.finish_checkpoints().unwrap();
            assert_eq!(s.wal_len(), 0);
            assert_eq!(s.state().accepted.len(), 5);
        }
    }
    // Blocks in use (the WAL is preallocated sparse).
    let total: u64 = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
        .sum();
    assert!(total < 40_000, "disk use {total} bytes");
    let (_s, st, _) = open(&dir).unwrap();
    assert_eq!(st.snapshot.as_ref().map(|s| s.last_slot), Some(994));
    assert_eq!(
        st.chosen.keys().copied().collect::<Vec<_>>(),
        (995..1000).collect::<Vec<_>>()
    );
}

#[test]
fn wal_size_limit_triggers_checkpoint() {
    let dir = TempDir::new("walsize");
    let small = StorageOptions {
        max_wal_bytes: 10_000,
        sync: false,
    };
    {
        let (mut s, _, _) = Storage::open(&dir, small.clone()).unwrap();
        for slot in 0..100u64 {
            s.write(WriteBatch(vec![
                Write::Promise(b(&format!("p{slot}"))),
                Write::Accept(slot, Bytes::from(vec![1u8; 500])),
            ]))
            .unwrap();
            // A checkpoint in flight defers the next one: the limit holds
            // once the background writer has caught up.
            s.finish_checkpoints().unwrap();
            assert!(s.wal_len() <= 10_600);
        }
    }
    let (_s, st, _) = Storage::open(&dir, small).unwrap();
    assert_eq!(st.accepted.len(), 100);
    assert_eq!(st.promised, Some(b("p99")));
}

// ------------------------------------------- checkpoints in the background

/// A batch that accepts `slot` and snapshots (and compacts) through it.
fn snapshot_with_accept(slot: Slot) -> WriteBatch {
    WriteBatch(vec![
        Write::Promise(b(&format!("p{slot}"))),
        Write::Accept(slot, b("v")),
        Write::Snapshot(EncodedSnapshot {
            last_slot: slot,
            data: b(&format!("state@{slot}")).into(),
        }),
        Write::Compact(slot),
    ])
}

fn accept(s: &mut Storage, slot: Slot) {
    s.write(WriteBatch(vec![
        Write::Promise(b(&format!("p{slot}"))),
        Write::Accept(slot, b("v")),
    ]))
    .unwrap();
}

fn wal_files(dir: &Path) -> Vec<u64> {
    let mut gens: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("wal-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    gens.sort();
    gens
}

/// Leaves checkpoint 0, a complete WAL 0 (slots 0..3) and WAL 1 holding
/// slots 3..6 after it, as a crash does while checkpoint 1 (with the
/// snapshot through slot 3) is being written before `stop`.
fn crash_mid_checkpoint(dir: &Path, stop: checkpoint::Step) {
    let (mut s, _, _) = open(dir).unwrap();
    for slot in 0..3 {
        accept(&mut s, slot);
    }
    s.checkpoint_hooks.stop_before = Some(stop);
    s.write(snapshot_with_accept(3)).unwrap();
    for slot in 4..6 {
        accept(&mut s, slot);
    }
}

/// The WAL writes of a batch that snapshots are durable when `write`
/// returns; the snapshot is durable once its checkpoint is; a crash at any
/// step in between recovers every acknowledged write, with the snapshot
/// and compaction either both there or both lost.
#[test]
fn a_crash_at_each_checkpoint_step_recovers_every_acknowledged_write() {
    use checkpoint::Step;
    for stop in [Step::Write, Step::Rename, Step::RemoveOldWal] {
        let dir = TempDir::new("ckptcrash");
        crash_mid_checkpoint(&dir, stop);
        assert_eq!(wal_files(&dir), vec![0, 1], "{stop:?}");
        assert_eq!(dir.join("checkpoint.tmp").exists(), stop == Step::Rename);
        for _reopen in 0..2 {
            let (_, st, report) = open(&dir).unwrap();
            assert_eq!(report.torn_tail, None);
            assert_eq!(st.promised, Some(b("p5")), "{stop:?}");
            let installed = stop == Step::RemoveOldWal;
            assert_eq!(
                st.snapshot.as_ref().map(|s| s.last_slot),
                installed.then_some(3),
                "{stop:?}"
            );
            let expected: Vec<Slot> = if installed {
                vec![4, 5]
            } else {
                // The compaction was lost with the snapshot: more log.
                (0..6).collect()
            };
            assert_eq!(st.accepted.keys().copied().collect::<Vec<_>>(), expected);
            assert_eq!(wal_files(&dir).len(), 1, "{stop:?}: folded on open");
            assert!(!dir.join("checkpoint.tmp").exists());
        }
        let (mut s, _, _) = open(&dir).unwrap();
        accept(&mut s, 6);
        drop(s);
        let (_, st, _) = open(&dir).unwrap();
        assert_eq!(st.promised, Some(b("p6")), "{stop:?}");
    }
}

/// A crash right after the switch, before the new WAL has a record: the
/// log goes on in the old WAL.
#[test]
fn a_crash_before_the_first_record_of_the_next_wal_keeps_the_old_one() {
    let dir = TempDir::new("ckptempty");
    {
        let (mut s, _, _) = open(&dir).unwrap();
        accept(&mut s, 0);
        s.checkpoint_hooks.stop_before = Some(checkpoint::Step::Write);
        s.write(snapshot_with_accept(1)).unwrap();
    }
    assert_eq!(wal_files(&dir), vec![0, 1]);
    let (mut s, st, report) = open(&dir).unwrap();
    assert_eq!((report.records, st.accepted.len()), (2, 2));
    assert_eq!(st.snapshot, None);
    assert_eq!(wal_files(&dir), vec![0], "the empty next WAL was removed");
    accept(&mut s, 2);
    drop(s);
    let (_, st, _) = open(&dir).unwrap();
    assert_eq!(st.accepted.len(), 3);
    // A next WAL cut off before its header was complete: the same.
    let (s, _, _) = open(&dir).unwrap();
    drop(s);
    fs::write(dir.join(format!("wal-{:016}.log", 1)), b"PXKV").unwrap();
    let (_, st, _) = open(&dir).unwrap();
    assert_eq!(st.accepted.len(), 3);
}

/// The checkpoint writer held on a barrier: writes, their fsyncs and
/// their acknowledgements go on in the next WAL, and the snapshot
/// becomes durable once the writer is let go.
#[test]
fn a_slow_checkpoint_does_not_delay_writes() {
    let dir = TempDir::new("ckptslow");
    let (gate_tx, gate) = std::sync::mpsc::channel::<()>();
    let (mut s, _, _) = open(&dir).unwrap();
    accept(&mut s, 0);
    s.checkpoint_hooks.gate = Some(gate);
    s.write(snapshot_with_accept(1)).unwrap();
    let (acks_tx, acks) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        for slot in 2..50 {
            accept(&mut s, slot);
            acks_tx.send(slot).unwrap();
        }
        s
    });
    for slot in 2..50 {
        let acked = acks
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a write waited for the checkpoint writer held at its gate");
        assert_eq!(acked, slot);
    }
    let mut s = writer.join().unwrap();
    // Still the old checkpoint: the writes went to WAL 1 meanwhile, and
    // a crash now recovers all of them (from checkpoint 0, WAL 0, WAL 1).
    let ckpt = format::decode_checkpoint(&fs::read(dir.join("checkpoint")).unwrap()).unwrap();
    assert_eq!(ckpt.generation, 0);
    assert!(s.wal_len() > 0);
    let copy = TempDir::new("ckptslow-copy");
    fs::create_dir_all(&copy).unwrap();
    for e in fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "LOCK" {
            fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
    }
    let (_, st, _) = open(&copy).unwrap();
    assert_eq!(st.accepted.len(), 50);
    assert_eq!(st.snapshot, None, "not yet checkpointed");
    drop(gate_tx);
    s.finish_checkpoints().unwrap();
    drop(s);
    let (_, st, _) = open(&dir).unwrap();
    assert_eq!(st.snapshot.as_ref().map(|s| s.last_slot), Some(1));
    assert_eq!(
        st.accepted.keys().copied().collect::<Vec<_>>(),
        (2..50).collect::<Vec<_>>()
    );
    assert_eq!(wal_files(&dir), vec![1]);
}

/// A snapshot written while a checkpoint is in flight waits for it, and
/// is in the next one.
#[test]
fn a_snapshot_during_a_checkpoint_goes_into_the_next_one() {
    let dir = TempDir::new("ckptdefer");
    let (gate_tx, gate) = std::sync::mpsc::channel::<()>();
    {
        let (mut s, _, _) = open(&dir).unwrap();
        s.checkpoint_hooks.gate = Some(gate);
        s.write(snapshot_with_accept(1)).unwrap();
        accept(&mut s, 2);
        s.write(snapshot_with_accept(3)).unwrap();
        assert_eq!(wal_files(&dir), vec![0, 1], "at most two WALs live");
        drop(gate_tx);
        s.finish_checkpoints().unwrap();
        assert_eq!(wal_files(&dir), vec![2]);
    }
    let (_, st, _) = open(&dir).unwrap();
    assert_eq!(st.snapshot.as_ref().map(|s| s.last_slot), Some(3));
    assert!(st.accepted.is_empty());
}

/// A failing checkpoint writer stops the storage; what the WAL holds is
/// still recovered.
#[test]
fn a_failed_checkpoint_stops_the_storage() {
    let dir = TempDir::new("ckptfail");
    {
        let (mut s, _, _) = open(&dir).unwrap();
        s.checkpoint_hooks.fail_before = Some(checkpoint::Step::Rename);
        s.write(snapshot_with_accept(1)).unwrap();
        accept(&mut s, 2);
        let e = s.finish_checkpoints().unwrap_err();
        assert!(e.to_string().contains("No space left"), "{e}");
        let e = s
            .write(WriteBatch(vec![Write::Accept(3, b("v"))]))
            .unwrap_err();
        assert!(matches!(e, StorageError::Failed(_)), "{e}");
    }
    let (_, st, _) = open(&dir).unwrap();
    assert_eq!(st.accepted.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(st.snapshot, None);
}

/// Failures on the storage thread's part of a checkpoint (sealing the old
/// WAL, creating the next) stop the storage like a failed write.
#[test]
fn a_failed_switch_to_the_next_wal_stops_the_storage() {
    for point in [FaultPoint::Sync, FaultPoint::NewWal] {
        let dir = TempDir::new("ckptswitch");
        {
            let (mut s, _, _) = open(&dir).unwrap();
            accept(&mut s, 0);
            // Unsynced: the switch must seal it.
            s.write(WriteBatch(vec![Write::Chosen(0, b("v"))])).unwrap();
            s.inject = Some((point, 28));
            let snap_only = WriteBatch(vec![
                Write::Snapshot(EncodedSnapshot {
                    last_slot: 0,
                    data: b("state@0").into(),
                }),
                Write::Compact(0),
            ]);
            assert!(s.write(snap_only).is_err(), "{point:?}");
            assert!(matches!(
                s.write(WriteBatch(vec![Write::Accept(1, b("v"))])),
                Err(StorageError::Failed(_))
            ));
        }
        let (_, st, _) = open(&dir).unwrap();
        assert_eq!(st.accepted.len(), 1, "{point:?}");
        assert_eq!(st.snapshot, None, "{point:?}");
    }
}

/// With two live WALs (a checkpoint was being written), damage is still
/// refused: a torn record in the first, a gap in the sequence numbers, the
/// first missing, a later WAL holding records.
#[test]
fn damage_across_two_live_wals_is_refused() {
    let setup = |name: &str| {
        let dir = TempDir::new(name);
        crash_mid_checkpoint(&dir, checkpoint::Step::Write);
        let first = dir.join(format!("wal-{:016}.log", 0));
        let next = dir.join(format!("wal-{:016}.log", 1));
        (dir, first, next)
    };
    // The last record of the first WAL is not a tail any more.
    let (dir, first, _) = setup("two-torn");
    let spans = record_spans(&dir);
    let last_of_first = spans.iter().rfind(|s| s.file == first).unwrap().clone();
    assert!(!last_of_first.tail);
    flip(&first, last_of_first.offset + last_of_first.len / 2);
    let msg = refused(&dir, &first, last_of_first.offset);
    assert!(msg.contains("continues in"), "{msg}");
    // A gap: the first WAL lost its last record (zeroed, as if never
    // written), so the next one does not continue it.
    let (dir, first, next) = setup("two-gap");
    let mut buf = fs::read(&first).unwrap();
    let start = last_of_first.offset as usize;
    buf[start..start + last_of_first.len as usize].fill(0);
    fs::write(&first, &buf).unwrap();
    let msg = refused(&dir, &next, 8);
    assert!(msg.contains("does not continue WAL generation 0"), "{msg}");
    // The first WAL deleted.
    let (dir, first, next) = setup("two-missing");
    fs::remove_file(&first).unwrap();
    let msg = refused(&dir, &next, WAL_HEADER_LEN as u64);
    assert!(msg.contains("is missing"), "{msg}");
    // A damaged header of the next WAL, records after it.
    let (dir, _, next) = setup("two-header");
    flip(&next, 12);
    refused(&dir, &next, 0);
    // A later WAL than the next one holding records.
    let (dir, _, next) = setup("two-later");
    let later = dir.join(format!("wal-{:016}.log", 2));
    fs::copy(&next, &later).unwrap();
    let msg = refused(&dir, &later, WAL_HEADER_LEN as u64);
    assert!(msg.contains("older than the log"), "{msg}");
    // The first WAL truncated.
    let (dir, first, _) = setup("two-truncated");
    let len = fs::metadata(&first).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let msg = refused(&dir, &first, len - 1);
    assert!(msg.contains("truncated"), "{msg}");
}

/// [`layout::scan`] lists the records of both live WALs, and the tail is
/// the last record of the second: damage anywhere else is refused.
#[test]
fn layout_covers_two_live_wals() {
    let dir = TempDir::new("two-layout");
    crash_mid_checkpoint(&dir, checkpoint::Step::Write);
    let spans = layout::scan(&dir).unwrap();
    let seqs: Vec<u64> = spans
        .iter()
        .filter_map(|s| match s.kind {
            SpanKind::WalRecord { seq } => Some(seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, (0..6).collect::<Vec<_>>());
    assert_eq!(
        spans
            .iter()
            .filter(|s| s.kind == SpanKind::WalHeader)
            .count(),
        2
    );
    assert_eq!(spans.iter().filter(|s| s.tail).count(), 1);
    assert!(spans.last().unwrap().tail);
    for s in &spans {
        let before = fs::read(&s.file).unwrap();
        flip(&s.file, s.offset + s.len / 2);
        match open(&dir) {
            Ok((storage, _, report)) => {
                assert!(s.tail, "damage to {s:?} was accepted");
                assert_eq!(report.torn_tail.map(|t| t.offset), Some(s.offset));
                // The open folded both WALs into a new checkpoint: put the
                // crashed state back for the next span.
                drop(storage);
                for e in fs::read_dir(&dir).unwrap() {
                    fs::remove_file(e.unwrap().path()).unwrap();
                }
                crash_mid_checkpoint(&dir, checkpoint::Step::Write);
                continue;
            }
            Err(e) => {
                assert!(!s.tail, "{e}");
                let StorageError::Damaged { file, .. } = &e else {
                    panic!("{e}")
                };
                assert_eq!(file, &s.file, "{e}");
            }
        }
        fs::write(&s.file, &before).unwrap();
    }
}
