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
            data: b(&format!("state@{last_slot}")),
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
                    data: b(&format!("state@{last}")),
                }),
                Write::Compact(last),
            ]))
            .unwrap();
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
            assert!(s.wal_len() <= 10_600);
        }
    }
    let (_s, st, _) = Storage::open(&dir, small).unwrap();
    assert_eq!(st.accepted.len(), 100);
    assert_eq!(st.promised, Some(b("p99")));
}
