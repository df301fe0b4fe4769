//! What the mount knows: its inodes, open handles, unsynced file data and
//! unsynced directory changes, over a backing directory.
//!
//! The backing directory always holds the namespace as the application sees
//! it (creates, renames and unlinks are applied at once) and, for each file,
//! the bytes that were last made durable. Two kinds of state are kept in
//! memory until they are made durable:
//!
//! - **file data**: each file's [`Pending`] writes and truncations, written
//!   into the backing file by an fsync or fdatasync of that file;
//! - **directory changes**: an undo log of creates, unlinks, rmdirs and
//!   renames. They are made durable *in the order they were made*: an fsync
//!   of a directory makes durable every change up to the last one that touched
//!   that directory (a journaling file system commits its journal in order).
//!   An unlinked file is kept in a trash directory beside the backing
//!   directory until its unlink is durable, so that it can be put back.
//!
//! [`State::lose_unsynced`] drops the pending data and undoes the undurable
//! directory changes, newest first: the backing directory is then exactly
//! its last durable state. Metadata other than names and sizes (modes,
//! owners, times) is passed straight through and never lost.
//!
//! Everything here works on plain paths, so it is tested without FUSE.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::pending::Pending;

/// Inode number of the mount's root, as FUSE numbers it.
pub const ROOT: u64 = 1;

/// One file or directory the kernel was told about.
#[derive(Debug)]
struct Node {
    /// Where it lives now under the backing directory (or in the trash).
    path: PathBuf,
    /// The backing file, opened on first use (follows renames).
    file: Option<File>,
    pending: Option<Pending>,
    /// Open handles (the kernel's open files).
    open: u32,
    /// Its unlink is durable: delete the trashed copy once it is closed.
    doomed: bool,
}

/// A directory change that is not durable yet, with how to undo it.
#[derive(Debug)]
enum Undo {
    Created { path: PathBuf, dir: bool },
    Unlinked { path: PathBuf, trash: PathBuf },
    RemovedDir { path: PathBuf, mode: u32 },
    Renamed { from: PathBuf, to: PathBuf },
}

#[derive(Debug)]
struct Change {
    /// Inodes of the directories it changed.
    dirs: Vec<u64>,
    undo: Undo,
}

/// What [`State::lose_unsynced`] threw away.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loss {
    /// Files whose unsynced writes were dropped.
    pub files: usize,
    /// Bytes of unsynced pages dropped (whole pages).
    pub bytes: u64,
    /// Directory changes undone (creates, unlinks, rmdirs, renames).
    pub dir_changes: usize,
}

/// A node's attributes: the backing metadata plus the size the application
/// sees.
#[derive(Debug)]
pub struct Entry {
    pub ino: u64,
    pub meta: fs::Metadata,
    pub size: u64,
}

/// The mount's state (see the module documentation).
#[derive(Debug)]
pub struct State {
    root: PathBuf,
    trash: PathBuf,
    nodes: HashMap<u64, Node>,
    /// Backing inode number to our inode number.
    by_backing: HashMap<u64, u64>,
    next_ino: u64,
    handles: HashMap<u64, u64>,
    next_fh: u64,
    log: Vec<Change>,
    next_trash: u64,
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl State {
    /// State over the existing directory `root`; its trash is `<root>.trash`
    /// (emptied: anything left there by a killed harness is not part of the
    /// file system).
    pub fn new(root: &Path) -> io::Result<State> {
        let root = root.canonicalize()?;
        let mut trash = root.clone().into_os_string();
        trash.push(".trash");
        let trash = PathBuf::from(trash);
        if trash.exists() {
            fs::remove_dir_all(&trash)?;
        }
        fs::create_dir(&trash)?;
        let mut state = State {
            root: root.clone(),
            trash,
            nodes: HashMap::new(),
            by_backing: HashMap::new(),
            next_ino: ROOT + 1,
            handles: HashMap::new(),
            next_fh: 1,
            log: Vec::new(),
            next_trash: 0,
        };
        let meta = fs::metadata(&root)?;
        state.by_backing.insert(meta.ino(), ROOT);
        state.nodes.insert(ROOT, Node::at(root));
        Ok(state)
    }

    /// The backing directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `ino` lives now in the backing directory (or the trash).
    pub fn path_of(&self, ino: u64) -> io::Result<PathBuf> {
        Ok(self.node(ino)?.path.clone())
    }

    fn node(&self, ino: u64) -> io::Result<&Node> {
        self.nodes.get(&ino).ok_or_else(|| errno(libc::ENOENT))
    }

    fn node_mut(&mut self, ino: u64) -> io::Result<&mut Node> {
        self.nodes.get_mut(&ino).ok_or_else(|| errno(libc::ENOENT))
    }

    fn child_path(&self, parent: u64, name: &OsStr) -> io::Result<PathBuf> {
        if name.is_empty() || name == "." || name == ".." || name.as_encoded_bytes().contains(&b'/')
        {
            return Err(errno(libc::EINVAL));
        }
        Ok(self.node(parent)?.path.join(name))
    }

    /// Our inode for the backing file at `path` (assigned on first sight).
    fn ino_at(&mut self, path: &Path, meta: &fs::Metadata) -> u64 {
        if let Some(&ino) = self.by_backing.get(&meta.ino()) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.path = path.to_path_buf();
                return ino;
            }
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.by_backing.insert(meta.ino(), ino);
        self.nodes.insert(ino, Node::at(path.to_path_buf()));
        ino
    }

    fn entry(&self, ino: u64, meta: fs::Metadata) -> Entry {
        let size = match self.nodes.get(&ino).and_then(|n| n.pending.as_ref()) {
            Some(p) => p.size(),
            None => meta.len(),
        };
        Entry { ino, meta, size }
    }

    /// The entry `name` in directory `parent`.
    pub fn lookup(&mut self, parent: u64, name: &OsStr) -> io::Result<Entry> {
        let path = self.child_path(parent, name)?;
        let meta = fs::symlink_metadata(&path)?;
        let ino = self.ino_at(&path, &meta);
        Ok(self.entry(ino, meta))
    }

    /// Attributes of `ino`.
    pub fn getattr(&self, ino: u64) -> io::Result<Entry> {
        let meta = fs::symlink_metadata(&self.node(ino)?.path)?;
        Ok(self.entry(ino, meta))
    }

    /// Changes mode, owner and/or size; a size change is unsynced data.
    pub fn setattr(
        &mut self,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
    ) -> io::Result<Entry> {
        let path = self.node(ino)?.path.clone();
        if let Some(mode) = mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
        }
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::lchown(&path, uid, gid)?;
        }
        if let Some(size) = size {
            self.pending_mut(ino)?.truncate(size);
        }
        self.getattr(ino)
    }

    /// Names in directory `ino` with their inodes and whether each is a
    /// directory (without "." and "..").
    pub fn readdir(
        &mut self,
        ino: u64,
    ) -> io::Result<Vec<(u64, fs::FileType, std::ffi::OsString)>> {
        let dir = self.node(ino)?.path.clone();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = match fs::symlink_metadata(entry.path()) {
                Ok(m) => m,
                Err(_) => continue,
            };
            let child = self.ino_at(&entry.path(), &meta);
            out.push((child, meta.file_type(), entry.file_name()));
        }
        Ok(out)
    }

    /// Opens `ino`, returning a handle.
    pub fn open(&mut self, ino: u64) -> io::Result<u64> {
        let node = self.node_mut(ino)?;
        node.open += 1;
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, ino);
        Ok(fh)
    }

    /// Closes handle `fh`.
    pub fn release(&mut self, fh: u64) {
        let Some(ino) = self.handles.remove(&fh) else {
            return;
        };
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        node.open = node.open.saturating_sub(1);
        if node.open == 0 && node.doomed {
            let node = self.nodes.remove(&ino).expect("looked up above");
            let _ = fs::remove_file(&node.path);
        }
    }

    /// Creates the regular file `name` in `parent` (an existing one is just
    /// opened unless `exclusive`), returning its entry.
    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        exclusive: bool,
    ) -> io::Result<Entry> {
        let path = self.child_path(parent, name)?;
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode & 0o7777)
            .open(&path)
        {
            Ok(f) => {
                self.log.push(Change {
                    dirs: vec![parent],
                    undo: Undo::Created {
                        path: path.clone(),
                        dir: false,
                    },
                });
                f
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !exclusive => {
                OpenOptions::new().read(true).write(true).open(&path)?
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let ino = self.ino_at(&path, &meta);
        let node = self.node_mut(ino)?;
        node.file = Some(file);
        Ok(self.entry(ino, meta))
    }

    /// Creates the directory `name` in `parent`.
    pub fn mkdir(&mut self, parent: u64, name: &OsStr, mode: u32) -> io::Result<Entry> {
        let path = self.child_path(parent, name)?;
        fs::DirBuilder::new().mode(mode & 0o7777).create(&path)?;
        self.log.push(Change {
            dirs: vec![parent],
            undo: Undo::Created {
                path: path.clone(),
                dir: true,
            },
        });
        let meta = fs::symlink_metadata(&path)?;
        let ino = self.ino_at(&path, &meta);
        Ok(self.entry(ino, meta))
    }

    /// Removes the file `name` from `parent` (into the trash until durable).
    pub fn unlink(&mut self, parent: u64, name: &OsStr) -> io::Result<()> {
        let path = self.child_path(parent, name)?;
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            return Err(errno(libc::EISDIR));
        }
        self.trash_file(parent, &path, &meta)
    }

    fn trash_file(&mut self, parent: u64, path: &Path, meta: &fs::Metadata) -> io::Result<()> {
        let trash = self.trash.join(self.next_trash.to_string());
        self.next_trash += 1;
        fs::rename(path, &trash)?;
        if let Some(node) = self
            .by_backing
            .get(&meta.ino())
            .and_then(|ino| self.nodes.get_mut(ino))
        {
            node.path = trash.clone();
        }
        self.log.push(Change {
            dirs: vec![parent],
            undo: Undo::Unlinked {
                path: path.to_path_buf(),
                trash,
            },
        });
        Ok(())
    }

    /// Removes the empty directory `name` from `parent`.
    pub fn rmdir(&mut self, parent: u64, name: &OsStr) -> io::Result<()> {
        let path = self.child_path(parent, name)?;
        let mode = fs::symlink_metadata(&path)?.mode();
        fs::remove_dir(&path)?;
        self.log.push(Change {
            dirs: vec![parent],
            undo: Undo::RemovedDir { path, mode },
        });
        Ok(())
    }

    /// Renames `parent/name` to `new_parent/new_name`, replacing a file or an
    /// empty directory there unless `no_replace`.
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> io::Result<()> {
        let from = self.child_path(parent, name)?;
        let to = self.child_path(new_parent, new_name)?;
        let from_meta = fs::symlink_metadata(&from)?;
        if from == to {
            return Ok(());
        }
        if let Ok(to_meta) = fs::symlink_metadata(&to) {
            if no_replace {
                return Err(errno(libc::EEXIST));
            }
            match (from_meta.is_dir(), to_meta.is_dir()) {
                (false, true) => return Err(errno(libc::EISDIR)),
                (true, false) => return Err(errno(libc::ENOTDIR)),
                (true, true) => self.rmdir(new_parent, new_name)?,
                (false, false) => self.trash_file(new_parent, &to, &to_meta)?,
            }
        }
        fs::rename(&from, &to)?;
        self.move_paths(&from, &to);
        let dirs = if parent == new_parent {
            vec![parent]
        } else {
            vec![parent, new_parent]
        };
        self.log.push(Change {
            dirs,
            undo: Undo::Renamed { from, to },
        });
        Ok(())
    }

    /// Points every node at or under `from` at the same place under `to`.
    fn move_paths(&mut self, from: &Path, to: &Path) {
        for node in self.nodes.values_mut() {
            if let Ok(rest) = node.path.strip_prefix(from) {
                node.path = if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                };
            }
        }
    }

    fn backing_file(&mut self, ino: u64) -> io::Result<&File> {
        let node = self.node_mut(ino)?;
        if node.file.is_none() {
            node.file = Some(OpenOptions::new().read(true).write(true).open(&node.path)?);
        }
        Ok(node.file.as_ref().expect("opened above"))
    }

    fn pending_mut(&mut self, ino: u64) -> io::Result<&mut Pending> {
        let durable_len = self.backing_file(ino)?.metadata()?.len();
        let node = self.node_mut(ino)?;
        Ok(node
            .pending
            .get_or_insert_with(|| Pending::new(durable_len)))
    }

    /// Reads up to `len` bytes of `ino` at `offset`.
    pub fn read(&mut self, ino: u64, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        self.backing_file(ino)?;
        let node = self.node(ino)?;
        let file = node.file.as_ref().expect("opened above");
        match &node.pending {
            Some(p) => p.read(file, offset, len),
            None => Pending::new(file.metadata()?.len()).read(file, offset, len),
        }
    }

    /// Writes `data` at `offset` of `ino`, in memory only.
    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> io::Result<()> {
        self.pending_mut(ino)?;
        let node = self.node_mut(ino)?;
        let file = node.file.as_ref().expect("opened by pending_mut");
        node.pending
            .as_mut()
            .expect("created by pending_mut")
            .write(file, offset, data)
    }

    /// fsync/fdatasync of a file: its data becomes durable.
    pub fn fsync(&mut self, ino: u64) -> io::Result<()> {
        self.backing_file(ino)?;
        let node = self.node_mut(ino)?;
        let file = node.file.as_ref().expect("opened above");
        match &node.pending {
            Some(p) => p.flush(file)?,
            None => file.sync_data()?,
        }
        node.pending = None;
        Ok(())
    }

    /// fsync of a directory: every directory change up to the last one that
    /// touched it becomes durable (see the module documentation).
    pub fn fsyncdir(&mut self, ino: u64) -> io::Result<()> {
        let path = self.node(ino)?.path.clone();
        if let Some(last) = self.log.iter().rposition(|c| c.dirs.contains(&ino)) {
            for change in self.log.drain(..=last).collect::<Vec<_>>() {
                if let Undo::Unlinked { trash, .. } = change.undo {
                    self.forget_trashed(&trash);
                }
            }
        }
        File::open(&path)?.sync_all()
    }

    /// An unlink is durable: the trashed copy goes now, or when last closed.
    fn forget_trashed(&mut self, trash: &Path) {
        let open = self
            .nodes
            .iter()
            .find(|(_, n)| n.path == trash)
            .map(|(&i, n)| (i, n.open));
        match open {
            Some((ino, n)) if n > 0 => self.nodes.get_mut(&ino).expect("found").doomed = true,
            other => {
                if let Some((ino, _)) = other {
                    self.nodes.remove(&ino);
                }
                let _ = fs::remove_file(trash);
            }
        }
    }

    /// Drops every unsynced write and undoes every undurable directory
    /// change: the backing directory is back at its last durable state.
    /// Errors while undoing are collected; the first one is returned after
    /// undoing everything else.
    pub fn lose_unsynced(&mut self) -> io::Result<Loss> {
        let mut loss = Loss::default();
        for node in self.nodes.values_mut() {
            if let Some(p) = node.pending.take() {
                loss.files += 1;
                loss.bytes += p.dirty_bytes();
            }
        }
        let mut first_err = None;
        while let Some(change) = self.log.pop() {
            loss.dir_changes += 1;
            if let Err(e) = self.undo(change.undo) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(loss),
        }
    }

    fn undo(&mut self, undo: Undo) -> io::Result<()> {
        match undo {
            Undo::Created { path, dir: true } => fs::remove_dir(&path),
            Undo::Created { path, dir: false } => fs::remove_file(&path),
            Undo::Unlinked { path, trash } => {
                fs::rename(&trash, &path)?;
                self.move_paths(&trash, &path);
                Ok(())
            }
            Undo::RemovedDir { path, mode } => {
                fs::DirBuilder::new().mode(mode & 0o7777).create(&path)
            }
            Undo::Renamed { from, to } => {
                fs::rename(&to, &from)?;
                self.move_paths(&to, &from);
                Ok(())
            }
        }
    }

    /// For a clean unmount: writes every pending page into its backing file
    /// (as an operating system eventually would, without fsync), keeps the
    /// directory changes and empties the trash.
    pub fn write_back(&mut self) -> io::Result<()> {
        let mut first_err = None;
        for node in self.nodes.values_mut() {
            if let (Some(p), Some(f)) = (node.pending.take(), node.file.as_ref()) {
                if let Err(e) = p.write_back(f) {
                    first_err.get_or_insert(e);
                }
            }
            node.file = None;
        }
        self.log.clear();
        if let Err(e) = fs::remove_dir_all(&self.trash) {
            first_err.get_or_insert(e);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Node {
    fn at(path: PathBuf) -> Node {
        Node {
            path,
            file: None,
            pending: None,
            open: 0,
            doomed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            let p = std::env::temp_dir().join(format!("lazyfs-state-{}-{tag}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(p.join("root")).unwrap();
            Tmp(p)
        }
        fn root(&self) -> PathBuf {
            self.0.join("root")
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn synced_data_survives_and_unsynced_data_is_lost() {
        let t = Tmp::new("data");
        let mut s = State::new(&t.root()).unwrap();
        let f = s.create(ROOT, OsStr::new("wal"), 0o644, true).unwrap().ino;
        s.fsyncdir(ROOT).unwrap();
        s.write(f, 0, b"durable").unwrap();
        s.fsync(f).unwrap();
        s.write(f, 7, b"+lost").unwrap();
        assert_eq!(s.read(f, 0, 100).unwrap(), b"durable+lost");
        assert_eq!(s.getattr(f).unwrap().size, 12);
        let loss = s.lose_unsynced().unwrap();
        assert_eq!((loss.files, loss.dir_changes), (1, 0));
        assert_eq!(s.read(f, 0, 100).unwrap(), b"durable");
        assert_eq!(fs::read(t.root().join("wal")).unwrap(), b"durable");
    }

    #[test]
    fn undurable_directory_changes_are_undone_newest_first() {
        let t = Tmp::new("dirs");
        let mut s = State::new(&t.root()).unwrap();
        let old = s
            .create(ROOT, OsStr::new("checkpoint"), 0o644, true)
            .unwrap()
            .ino;
        s.write(old, 0, b"old").unwrap();
        s.fsync(old).unwrap();
        s.fsyncdir(ROOT).unwrap();
        // The atomic-replace dance without the final directory fsync.
        let tmp = s
            .create(ROOT, OsStr::new("checkpoint.tmp"), 0o644, true)
            .unwrap()
            .ino;
        s.write(tmp, 0, b"new").unwrap();
        s.fsync(tmp).unwrap();
        s.rename(
            ROOT,
            OsStr::new("checkpoint.tmp"),
            ROOT,
            OsStr::new("checkpoint"),
            false,
        )
        .unwrap();
        s.mkdir(ROOT, OsStr::new("d"), 0o755).unwrap();
        assert_eq!(names(&t.root()), ["checkpoint", "d"]);
        assert_eq!(fs::read(t.root().join("checkpoint")).unwrap(), b"new");
        let loss = s.lose_unsynced().unwrap();
        assert_eq!(loss.dir_changes, 4); // create, trash the old, rename, mkdir
        assert_eq!(names(&t.root()), ["checkpoint"]);
        assert_eq!(fs::read(t.root().join("checkpoint")).unwrap(), b"old");
        let e = s.lookup(ROOT, OsStr::new("checkpoint")).unwrap();
        assert_eq!(e.ino, old);
        assert_eq!(s.read(old, 0, 10).unwrap(), b"old");
    }

    #[test]
    fn a_directory_fsync_makes_earlier_changes_durable_too() {
        let t = Tmp::new("prefix");
        let mut s = State::new(&t.root()).unwrap();
        let d = s.mkdir(ROOT, OsStr::new("d"), 0o755).unwrap().ino;
        s.create(d, OsStr::new("a"), 0o644, true).unwrap();
        s.create(ROOT, OsStr::new("b"), 0o644, true).unwrap();
        s.fsyncdir(d).unwrap(); // durable: mkdir d, create d/a; not: create b
        s.unlink(d, OsStr::new("a")).unwrap();
        let loss = s.lose_unsynced().unwrap();
        assert_eq!(loss.dir_changes, 2);
        assert_eq!(names(&t.root()), ["d"]);
        assert_eq!(names(&t.root().join("d")), ["a"]);
    }

    #[test]
    fn a_durable_unlink_empties_the_trash_when_closed() {
        let t = Tmp::new("trash");
        let mut s = State::new(&t.root()).unwrap();
        let f = s.create(ROOT, OsStr::new("x"), 0o644, true).unwrap().ino;
        let fh = s.open(f).unwrap();
        s.fsyncdir(ROOT).unwrap();
        s.unlink(ROOT, OsStr::new("x")).unwrap();
        s.fsyncdir(ROOT).unwrap();
        assert_eq!(names(&s.trash.clone()).len(), 1, "still open");
        s.write(f, 0, b"still writable").unwrap();
        s.fsync(f).unwrap();
        s.release(fh);
        assert!(names(&s.trash.clone()).is_empty());
        assert!(s.lose_unsynced().unwrap() == Loss::default());
        assert!(names(&t.root()).is_empty());
    }

    #[test]
    fn bad_names_and_missing_entries_are_errors() {
        let t = Tmp::new("bad");
        let mut s = State::new(&t.root()).unwrap();
        for bad in ["", ".", "..", "a/b"] {
            assert!(s.lookup(ROOT, OsStr::new(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(
            s.lookup(ROOT, OsStr::new("nope")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(s.getattr(999).is_err());
        s.mkdir(ROOT, OsStr::new("d"), 0o755).unwrap();
        assert!(s.unlink(ROOT, OsStr::new("d")).is_err());
        s.create(ROOT, OsStr::new("f"), 0o644, true).unwrap();
        assert!(s.create(ROOT, OsStr::new("f"), 0o644, true).is_err());
        assert!(s
            .rename(ROOT, OsStr::new("d"), ROOT, OsStr::new("f"), true)
            .is_err());
    }
}
