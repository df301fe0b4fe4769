//! Where each record of a data directory lies, for tools that damage them on
//! purpose (the harness's `corrupt` fault) and for tests.
//!
//! [`scan`] reads a data directory (of a stopped replica: it takes no lock)
//! and lists the checkpoint's header and body and, per live WAL file (the
//! one the checkpoint names and, while a checkpoint was being written, the
//! next one), its header and each valid record, with byte ranges. Flipping a bit in or truncating
//! any span is detected when the replica next starts (it refuses, naming the
//! file and offset), except in the span marked [`RecordSpan::tail`]: damage
//! to the last record of the newest WAL cannot be told apart from a write
//! torn by a crash and is dropped (see [`super`]). Truncating a WAL file
//! anywhere is detected (the file was created at its full size), unless the
//! WAL has grown past its created length.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::{io_err, Result};
use super::format::{self, Version, WalHeader, CHECKPOINT_HEADER_LEN, WAL_HEADER_LEN};
use super::recover::{self, CHECKPOINT};

/// What a span of bytes holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// The checkpoint's magic, length and checksum.
    CheckpointHeader,
    /// The checkpoint's generation, sequence number and state.
    CheckpointBody,
    /// A version-2 WAL file header.
    WalHeader,
    /// One WAL record; `seq` is its sequence number (version 1: its index).
    WalRecord {
        /// Sequence number.
        seq: u64,
    },
}

/// One record (or header) of a data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSpan {
    /// The file.
    pub file: PathBuf,
    /// Offset of the first byte.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// What it holds.
    pub kind: SpanKind,
    /// True for the last record of the newest WAL, whose damage looks like
    /// a torn write and is dropped rather than refused.
    pub tail: bool,
}

/// Lists the spans of the data directory `dir`: the checkpoint first, then
/// the WAL it names and the next one if it holds records (every WAL file
/// if there is no readable checkpoint), each up to its last valid record.
pub fn scan(dir: &Path) -> Result<Vec<RecordSpan>> {
    let listing = recover::list(dir)?;
    let mut spans = Vec::new();
    if listing.checkpoint {
        let file = dir.join(CHECKPOINT);
        let len = fs::metadata(&file).map_err(io_err("stat", &file))?.len();
        let header = len.min(CHECKPOINT_HEADER_LEN as u64);
        spans.push(span(&file, 0, header, SpanKind::CheckpointHeader));
        if len > header {
            spans.push(span(&file, header, len - header, SpanKind::CheckpointBody));
        }
    }
    // Only the WAL the checkpoint names is live, and the next one if it
    // holds records (a checkpoint was being written in the background);
    // others are leftovers of an interrupted checkpoint, removed on open.
    // Without a readable checkpoint, all of them.
    let live = fs::read(dir.join(CHECKPOINT))
        .ok()
        .and_then(|buf| format::decode_checkpoint(&buf).ok())
        .map(|c| c.generation);
    let mut wals = Vec::new();
    for (&g, p) in &listing.wals {
        let is_live = match live {
            None => true,
            Some(live) if g == live => true,
            Some(live) => g == live + 1 && recover::holds_records(p)?.is_some(),
        };
        if is_live {
            wals.push(p);
        }
    }
    for file in wals {
        let buf = fs::read(file).map_err(io_err("read", file))?;
        let (mut pos, mut seq, v2) = match format::wal_version(&buf) {
            Version::V2 => match WalHeader::decode(&buf) {
                Ok(h) => {
                    spans.push(span(file, 0, WAL_HEADER_LEN as u64, SpanKind::WalHeader));
                    (WAL_HEADER_LEN, h.first_seq, true)
                }
                Err(_) => continue,
            },
            Version::V1 => (0, 0, false),
            _ => continue,
        };
        loop {
            let rec = if v2 {
                format::read_record(&buf, pos)
            } else {
                format::read_record_v1(&buf, pos)
            };
            let Ok(rec) = rec else { break };
            let kind = SpanKind::WalRecord {
                seq: rec.seq.unwrap_or(seq),
            };
            spans.push(span(file, pos as u64, (rec.end - pos) as u64, kind));
            pos = rec.end;
            seq += 1;
        }
    }
    if let Some(last) = spans.last_mut() {
        last.tail = matches!(last.kind, SpanKind::WalRecord { .. });
    }
    Ok(spans)
}

fn span(file: &Path, offset: u64, len: u64, kind: SpanKind) -> RecordSpan {
    RecordSpan {
        file: file.to_path_buf(),
        offset,
        len,
        kind,
        tail: false,
    }
}
