//! The bytes of one file that were written but not yet made durable.
//!
//! A [`Pending`] sits in front of the file's backing copy (which always holds
//! exactly what the last fsync made durable) and records, page by page, what
//! the application wrote since, plus the file's current size. Reads see the
//! pending pages over the backing bytes; an fsync ([`Pending::flush`]) writes
//! them into the backing file and fsyncs it; losing them is just dropping the
//! value.
//!
//! Invariants, relied on by [`Pending::read`]:
//! - `size >= cut`: `cut` is the smallest size the file had since it was last
//!   durable; backing bytes at or past `cut` are no longer part of the file
//!   (a truncate removed them), so they read as zeros unless a page covers
//!   them.
//! - every byte of a pending page at or past `size` is zero.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Granularity of the in-memory copy (the kernel's page size on x86-64).
pub const PAGE: u64 = 4096;

/// Unsynced contents of one file (see the module documentation).
#[derive(Debug)]
pub struct Pending {
    size: u64,
    cut: u64,
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl Pending {
    /// Nothing pending yet over a durable file of `durable_len` bytes.
    pub fn new(durable_len: u64) -> Pending {
        Pending {
            size: durable_len,
            cut: durable_len,
            pages: BTreeMap::new(),
        }
    }

    /// The file's current (not necessarily durable) size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes held in memory (for the loss report).
    pub fn dirty_bytes(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    /// Writes `data` at `offset`, reading the untouched part of each newly
    /// dirtied page from `backing`.
    pub fn write(&mut self, backing: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let index = pos / PAGE;
            let in_page = (pos % PAGE) as usize;
            let n = ((PAGE - pos % PAGE).min(end - pos)) as usize;
            let page = self.page_mut(backing, index)?;
            let from = (pos - offset) as usize;
            page[in_page..in_page + n].copy_from_slice(&data[from..from + n]);
            pos += n as u64;
        }
        self.size = self.size.max(end);
        Ok(())
    }

    /// Sets the size to `len`: bytes past it are gone, and reading up to a
    /// larger `len` gives zeros.
    pub fn truncate(&mut self, len: u64) {
        if len < self.size {
            self.cut = self.cut.min(len);
            let first_dropped = len.div_ceil(PAGE);
            self.pages.split_off(&first_dropped);
            if !len.is_multiple_of(PAGE) {
                if let Some(page) = self.pages.get_mut(&(len / PAGE)) {
                    page[(len % PAGE) as usize..].fill(0);
                }
            }
        }
        self.size = len;
    }

    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    pub fn read(&self, backing: &File, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        let end = self.size.min(offset.saturating_add(len as u64));
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let mut pos = offset;
        while pos < end {
            let index = pos / PAGE;
            let in_page = (pos % PAGE) as usize;
            let n = ((PAGE - pos % PAGE).min(end - pos)) as usize;
            let to = (pos - offset) as usize;
            match self.pages.get(&index) {
                Some(page) => out[to..to + n].copy_from_slice(&page[in_page..in_page + n]),
                None => read_durable(backing, self.cut, pos, &mut out[to..to + n])?,
            }
            pos += n as u64;
        }
        Ok(out)
    }

    /// Makes everything durable: writes the pending pages into `backing`
    /// and fdatasyncs it. The caller then drops `self`.
    pub fn flush(&self, backing: &File) -> io::Result<()> {
        self.write_back(backing)?;
        backing.sync_data()
    }

    /// Writes the pending pages into `backing` and sets its size, without
    /// syncing it.
    pub fn write_back(&self, backing: &File) -> io::Result<()> {
        backing.set_len(self.cut)?;
        for (&index, page) in &self.pages {
            let start = index * PAGE;
            let n = (self.size - start).min(PAGE) as usize;
            backing.write_all_at(&page[..n], start)?;
        }
        backing.set_len(self.size)
    }

    fn page_mut(&mut self, backing: &File, index: u64) -> io::Result<&mut [u8]> {
        if !self.pages.contains_key(&index) {
            let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
            // Only bytes that are still part of the file are loaded: past
            // `size` a page must stay zero (see the invariants).
            let keep = self.size.saturating_sub(index * PAGE).min(PAGE) as usize;
            read_durable(backing, self.cut, index * PAGE, &mut page[..keep])?;
            self.pages.insert(index, page);
        }
        Ok(self.pages.get_mut(&index).expect("inserted above"))
    }
}

/// Fills `buf` with the backing bytes at `offset`, as zeros at or past `cut`
/// and past the backing file's end.
fn read_durable(backing: &File, cut: u64, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    buf.fill(0);
    let avail = cut.saturating_sub(offset).min(buf.len() as u64) as usize;
    let mut done = 0;
    while done < avail {
        let n = backing.read_at(&mut buf[done..avail], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn backing(bytes: &[u8]) -> (tempdir::Dir, File) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("f");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        (dir, f)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "lazyfs-pending-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    /// A model of the file as a plain byte vector, for comparison.
    fn apply_model(model: &mut Vec<u8>, offset: usize, data: &[u8]) {
        if model.len() < offset + data.len() {
            model.resize(offset + data.len(), 0);
        }
        model[offset..offset + data.len()].copy_from_slice(data);
    }

    #[test]
    fn reads_see_writes_over_the_durable_bytes() {
        let durable: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let (_d, f) = backing(&durable);
        let mut p = Pending::new(durable.len() as u64);
        let mut model = durable.clone();
        p.write(&f, 4000, b"hello").unwrap();
        apply_model(&mut model, 4000, b"hello");
        p.write(&f, 12_000, b"tail").unwrap();
        apply_model(&mut model, 12_000, b"tail");
        assert_eq!(p.read(&f, 0, 20_000).unwrap(), model);
        // The backing file is untouched until a flush.
        assert_eq!(std::fs::read(_d.0.join("f")).unwrap(), durable);
        p.flush(&f).unwrap();
        assert_eq!(std::fs::read(_d.0.join("f")).unwrap(), model);
    }

    #[test]
    fn truncate_then_extend_reads_zeros_not_old_bytes() {
        let (_d, f) = backing(&[7u8; 9000]);
        let mut p = Pending::new(9000);
        p.truncate(100);
        p.truncate(6000);
        let got = p.read(&f, 0, 10_000).unwrap();
        assert_eq!(got.len(), 6000);
        assert!(got[..100].iter().all(|&b| b == 7));
        assert!(got[100..].iter().all(|&b| b == 0));
        p.write(&f, 5000, b"x").unwrap();
        let got = p.read(&f, 0, 10_000).unwrap();
        assert_eq!(got[5000], b'x');
        assert!(got[100..5000].iter().all(|&b| b == 0));
        p.flush(&f).unwrap();
        assert_eq!(std::fs::read(_d.0.join("f")).unwrap(), got);
    }

    #[test]
    fn randomized_against_a_byte_vector() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..50 {
            let start: Vec<u8> = (0..rng.random_range(0..20_000))
                .map(|_| rng.random())
                .collect();
            let (d, f) = backing(&start);
            let mut p = Pending::new(start.len() as u64);
            let mut model = start.clone();
            for _ in 0..30 {
                if rng.random_bool(0.2) {
                    let len = rng.random_range(0..25_000);
                    p.truncate(len as u64);
                    model.resize(len, 0);
                } else {
                    let off = rng.random_range(0..25_000);
                    let data: Vec<u8> = (0..rng.random_range(1..9000))
                        .map(|_| rng.random())
                        .collect();
                    p.write(&f, off as u64, &data).unwrap();
                    apply_model(&mut model, off, &data);
                }
                let off = rng.random_range(0..26_000u64);
                let got = p.read(&f, off, 10_000).unwrap();
                let lo = (off as usize).min(model.len());
                let hi = (off as usize + 10_000).min(model.len());
                assert_eq!(got, model[lo..hi]);
            }
            p.flush(&f).unwrap();
            assert_eq!(std::fs::read(d.0.join("f")).unwrap(), model);
        }
    }
}
