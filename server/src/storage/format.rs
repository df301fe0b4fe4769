//! The bytes on disk: the WAL file header, WAL records and the checkpoint,
//! in the current format (version 2) and the legacy one (version 1, read
//! only so that an existing data directory can be upgraded).
//!
//! Version 2, all integers little-endian:
//!
//! - WAL file header (40 bytes): `"PXKVWAL2"`, generation `u64`, sequence
//!   number of its first record `u64`, the length the file was created with
//!   (`u64`, see [`super`] on preallocation), crc32 of the preceding 32 bytes
//!   `u32`, 4 zero bytes.
//! - WAL record (20-byte header + payload): `"PXR2"`, payload length `u32`,
//!   sequence number `u64`, crc32 over the length, the sequence number and
//!   the payload `u32`, then the payload: the encoded [`WriteBatch`]. The
//!   magic and the sequence number make a record recognisable on its own, so
//!   recovery can look for valid records *after* a damaged one.
//! - Checkpoint: `"PXKVCKP2"`, body length `u64`, crc32 of the body `u32`,
//!   then the body: generation of the WAL that continues it `u64`, sequence
//!   number of that WAL's first record `u64`, the state as encoded writes.
//!
//! Version 1 (before sequence numbers): WAL files without a header holding
//! records `[len u32][crc32 u32][payload]`, checkpoint `"PXKVCKP1"` with a
//! body of generation `u64` and encoded writes.

use bytes::Bytes;

use super::{DurableState, EncodedSnapshot, Write, WriteBatch};

pub(super) const WAL_MAGIC: &[u8; 8] = b"PXKVWAL2";
/// What every version of the WAL header starts with (followed by the version digit).
pub(super) const WAL_MAGIC_STEM: &[u8; 7] = b"PXKVWAL";
pub(super) const WAL_HEADER_LEN: usize = 40;
pub(super) const RECORD_MAGIC: &[u8; 4] = b"PXR2";
pub(super) const RECORD_HEADER_LEN: usize = 20;
#[cfg(test)]
pub(super) const CHECKPOINT_MAGIC_V1: &[u8; 8] = b"PXKVCKP1";
pub(super) const CHECKPOINT_MAGIC: &[u8; 8] = b"PXKVCKP2";
/// What every version of the checkpoint starts with.
pub(super) const CHECKPOINT_MAGIC_STEM: &[u8; 7] = b"PXKVCKP";
pub(super) const CHECKPOINT_HEADER_LEN: usize = 20;
/// Upper bound on one WAL record; a larger length field is damage.
pub(super) const MAX_RECORD: u32 = 1 << 30;

const TAG_PROMISED: u8 = 1;
const TAG_ACCEPTED: u8 = 2;
const TAG_CHOSEN: u8 = 3;
const TAG_SNAPSHOT: u8 = 4;
const TAG_COMPACT: u8 = 5;

/// The header of a version-2 WAL file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WalHeader {
    pub generation: u64,
    pub first_seq: u64,
    /// Length of the file when it was created (preallocated).
    pub created_len: u64,
}

impl WalHeader {
    pub fn encode(&self) -> [u8; WAL_HEADER_LEN] {
        let mut h = [0u8; WAL_HEADER_LEN];
        h[0..8].copy_from_slice(WAL_MAGIC);
        h[8..16].copy_from_slice(&self.generation.to_le_bytes());
        h[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        h[24..32].copy_from_slice(&self.created_len.to_le_bytes());
        let crc = crc32fast::hash(&h[0..32]);
        h[32..36].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Decodes the header at the start of `buf`; `Err` says what is wrong.
    pub fn decode(buf: &[u8]) -> Result<WalHeader, String> {
        if buf.len() < WAL_HEADER_LEN {
            return Err(format!(
                "the file header is cut short ({} of {WAL_HEADER_LEN} bytes)",
                buf.len()
            ));
        }
        if &buf[0..8] != WAL_MAGIC {
            return Err("the file header does not start with the WAL magic".into());
        }
        let crc = le_u32(&buf[32..36]);
        if crc32fast::hash(&buf[0..32]) != crc {
            return Err("the file header fails its checksum".into());
        }
        Ok(WalHeader {
            generation: le_u64(&buf[8..16]),
            first_seq: le_u64(&buf[16..24]),
            created_len: le_u64(&buf[24..32]),
        })
    }
}

/// Which format a file's first bytes announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Version {
    /// Version 1 (WAL files have no header).
    V1,
    /// The current version.
    V2,
    /// A later version of paxoskv wrote this file.
    Newer(u8),
    /// Not a paxoskv file of any version.
    Unknown,
}

/// The version of a WAL file, from its first bytes. A version-1 WAL has no
/// header: it starts with a record length, which is never the magic
/// (that would be a record over 1 GiB).
pub(super) fn wal_version(buf: &[u8]) -> Version {
    stem_version(buf, WAL_MAGIC_STEM).unwrap_or(Version::V1)
}

/// The version of a checkpoint file, from its first bytes.
pub(super) fn checkpoint_version(buf: &[u8]) -> Version {
    stem_version(buf, CHECKPOINT_MAGIC_STEM).unwrap_or(Version::Unknown)
}

fn stem_version(buf: &[u8], stem: &[u8; 7]) -> Option<Version> {
    if buf.len() < 8 || &buf[0..7] != stem {
        return None;
    }
    Some(match buf[7] {
        b'1' => Version::V1,
        b'2' => Version::V2,
        d @ b'3'..=b'9' => Version::Newer(d - b'0'),
        _ => Version::Unknown,
    })
}

/// Why the bytes at some offset are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum BadRecord {
    /// The record would run past the end of the file.
    Short { need: usize, have: usize },
    /// No record magic where a record must start.
    NoMagic,
    /// The length field is impossible.
    TooLong(u32),
    /// The checksum does not match.
    Checksum,
    /// Checksum fine but the payload does not decode.
    Undecodable(String),
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadRecord::Short { need, have } => {
                write!(f, "cut short ({have} of {need} bytes present)")
            }
            BadRecord::NoMagic => write!(f, "not a record (no record magic)"),
            BadRecord::TooLong(n) => write!(f, "has an impossible length field ({n} bytes)"),
            BadRecord::Checksum => write!(f, "fails its checksum"),
            BadRecord::Undecodable(why) => write!(f, "does not decode ({why})"),
        }
    }
}

/// A record read from a WAL.
#[derive(Clone, Debug)]
pub(super) struct Record {
    /// Sequence number (version 1: `None`, records are numbered by position).
    pub seq: Option<u64>,
    pub batch: WriteBatch,
    /// Offset just after the record.
    pub end: usize,
}

/// Encodes `batch` as a version-2 record with sequence number `seq`.
pub(super) fn encode_record(seq: u64, batch: &WriteBatch) -> Vec<u8> {
    // Sized once: growing a group commit's record (tens of KiB) by doubling
    // cost ~2.5% of a replica's CPU, in copies and fresh zeroed pages.
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + ops_len(batch));
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&[0u8; 16]);
    encode_ops(batch, &mut out);
    let len = (out.len() - RECORD_HEADER_LEN) as u32;
    out[4..8].copy_from_slice(&len.to_le_bytes());
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out[4..16]);
    h.update(&out[RECORD_HEADER_LEN..]);
    let crc = h.finalize();
    out[16..20].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Reads the version-2 record starting at `pos`.
pub(super) fn read_record(buf: &[u8], pos: usize) -> Result<Record, BadRecord> {
    let have = buf.len().saturating_sub(pos);
    if have < RECORD_HEADER_LEN {
        return Err(BadRecord::Short {
            need: RECORD_HEADER_LEN,
            have,
        });
    }
    let h = &buf[pos..pos + RECORD_HEADER_LEN];
    if &h[0..4] != RECORD_MAGIC {
        return Err(BadRecord::NoMagic);
    }
    let len = le_u32(&h[4..8]);
    if len > MAX_RECORD {
        return Err(BadRecord::TooLong(len));
    }
    let need = RECORD_HEADER_LEN + len as usize;
    if have < need {
        return Err(BadRecord::Short { need, have });
    }
    let payload = &buf[pos + RECORD_HEADER_LEN..pos + need];
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h[4..16]);
    hasher.update(payload);
    if hasher.finalize() != le_u32(&h[16..20]) {
        return Err(BadRecord::Checksum);
    }
    let batch = decode_ops(payload).map_err(BadRecord::Undecodable)?;
    Ok(Record {
        seq: Some(le_u64(&h[8..16])),
        batch,
        end: pos + need,
    })
}

/// Reads the version-1 record starting at `pos`. An empty record is never
/// written (empty batches are skipped), so eight zero bytes are not one.
pub(super) fn read_record_v1(buf: &[u8], pos: usize) -> Result<Record, BadRecord> {
    let have = buf.len().saturating_sub(pos);
    if have < 8 {
        return Err(BadRecord::Short { need: 8, have });
    }
    let len = le_u32(&buf[pos..pos + 4]);
    let crc = le_u32(&buf[pos + 4..pos + 8]);
    if len == 0 {
        return Err(BadRecord::NoMagic);
    }
    if len > MAX_RECORD {
        return Err(BadRecord::TooLong(len));
    }
    let need = 8 + len as usize;
    if have < need {
        return Err(BadRecord::Short { need, have });
    }
    let payload = &buf[pos + 8..pos + need];
    if crc32fast::hash(payload) != crc {
        return Err(BadRecord::Checksum);
    }
    let batch = decode_ops(payload).map_err(BadRecord::Undecodable)?;
    Ok(Record {
        seq: None,
        batch,
        end: pos + need,
    })
}

/// A decoded checkpoint.
#[derive(Clone, Debug)]
pub(super) struct Checkpoint {
    pub version: Version,
    /// Generation of the WAL that continues this checkpoint.
    pub generation: u64,
    /// Sequence number of that WAL's first record (version 1: 0).
    pub next_seq: u64,
    pub state: DurableState,
}

/// Encodes a version-2 checkpoint.
pub(super) fn encode_checkpoint(generation: u64, next_seq: u64, state: &DurableState) -> Vec<u8> {
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
    let mut body = Vec::new();
    body.extend_from_slice(&generation.to_le_bytes());
    body.extend_from_slice(&next_seq.to_le_bytes());
    encode_ops(&batch, &mut body);
    let mut out = Vec::with_capacity(body.len() + CHECKPOINT_HEADER_LEN);
    out.extend_from_slice(CHECKPOINT_MAGIC);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a checkpoint of version 1 or 2. `Err` gives the byte offset of
/// the problem and what it is.
pub(super) fn decode_checkpoint(buf: &[u8]) -> Result<Checkpoint, (u64, String)> {
    let version = checkpoint_version(buf);
    if !matches!(version, Version::V1 | Version::V2) {
        return Err((0, "does not start with the checkpoint magic".into()));
    }
    if buf.len() < CHECKPOINT_HEADER_LEN {
        return Err((
            buf.len() as u64,
            format!(
                "the header is cut short ({} of {CHECKPOINT_HEADER_LEN} bytes)",
                buf.len()
            ),
        ));
    }
    let len = le_u64(&buf[8..16]);
    let crc = le_u32(&buf[16..20]);
    let body = &buf[CHECKPOINT_HEADER_LEN..];
    if len != body.len() as u64 {
        return Err((
            8,
            format!("the header says {len} bytes follow but {} do", body.len()),
        ));
    }
    if crc32fast::hash(body) != crc {
        return Err((16, "fails its checksum".into()));
    }
    let fixed = if version == Version::V1 { 8 } else { 16 };
    if body.len() < fixed {
        return Err((CHECKPOINT_HEADER_LEN as u64, "the body is cut short".into()));
    }
    let generation = le_u64(&body[0..8]);
    let next_seq = if version == Version::V1 {
        0
    } else {
        le_u64(&body[8..16])
    };
    let batch = decode_ops(&body[fixed..]).map_err(|why| {
        (
            (CHECKPOINT_HEADER_LEN + fixed) as u64,
            format!("the state does not decode ({why})"),
        )
    })?;
    let mut state = DurableState::default();
    super::apply(&mut state, batch);
    Ok(Checkpoint {
        version,
        generation,
        next_seq,
        state,
    })
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Bytes [`encode_ops`] writes for `batch`.
fn ops_len(batch: &WriteBatch) -> usize {
    let bytes = |b: &[u8]| 4 + b.len();
    batch
        .0
        .iter()
        .map(|w| match w {
            Write::Snapshot(snap) => 1 + 8 + bytes(&snap.data),
            Write::Promise(p) => 1 + bytes(p),
            Write::Accept(_, v) | Write::Chosen(_, v) => 1 + 8 + bytes(v),
            Write::Compact(_) => 1 + 8,
        })
        .sum()
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
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
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
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(le_u64(self.take(8)?))
    }
    fn bytes(&mut self) -> Result<Bytes, String> {
        let n = le_u32(self.take(4)?) as usize;
        Ok(Bytes::copy_from_slice(self.take(n)?))
    }
}

fn decode_ops(payload: &[u8]) -> Result<WriteBatch, String> {
    let mut batch = WriteBatch::default();
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
                Write::Snapshot(EncodedSnapshot {
                    last_slot,
                    data: r.bytes()?.into(),
                })
            }
            TAG_COMPACT => Write::Compact(r.u64()?),
            t => return Err(format!("unknown write tag {t}")),
        };
        batch.push(w);
    }
    Ok(batch)
}

/// Encodes a version-1 record (only tests write the legacy format, to prove
/// it is still read).
#[cfg(test)]
pub(super) fn encode_record_v1(batch: &WriteBatch) -> Vec<u8> {
    let mut payload = Vec::new();
    encode_ops(batch, &mut payload);
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Encodes a version-1 checkpoint (tests only, see [`encode_record_v1`]).
#[cfg(test)]
pub(super) fn encode_checkpoint_v1(generation: u64, state: &DurableState) -> Vec<u8> {
    let v2 = encode_checkpoint(generation, 0, state);
    // Same layout minus the next_seq field.
    let body_v2 = &v2[CHECKPOINT_HEADER_LEN..];
    let mut body = Vec::new();
    body.extend_from_slice(&body_v2[0..8]);
    body.extend_from_slice(&body_v2[16..]);
    let mut out = Vec::new();
    out.extend_from_slice(CHECKPOINT_MAGIC_V1);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_sized_exactly_once() {
        let batch = WriteBatch(vec![
            Write::Promise(Bytes::from_static(b"ballot")),
            Write::Accept(7, Bytes::from(vec![1u8; 3000])),
            Write::Chosen(6, Bytes::from(vec![2u8; 200])),
            Write::Snapshot(EncodedSnapshot {
                last_slot: 5,
                data: Bytes::from_static(b"state").into(),
            }),
            Write::Compact(5),
            Write::Chosen(7, Bytes::new()),
        ]);
        let record = encode_record(9, &batch);
        assert_eq!(record.len(), RECORD_HEADER_LEN + ops_len(&batch));
        assert_eq!(record.capacity(), record.len(), "no growth, no slack");
        let back = read_record(&record, 0).expect("reads back");
        assert_eq!(back.batch, batch);
        assert_eq!(back.seq, Some(9));
    }
}
