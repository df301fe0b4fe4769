//! A lazyfs-like file system: a replica's data dir that forgets what was
//! never fsynced.
//!
//! SIGKILL keeps the page cache, so killing a replica never tests its
//! durability promise ("nothing is acknowledged before its fsync"). A
//! [`LazyMount`] is a FUSE mount, served by a thread of the harness, that
//! passes through to a backing directory but keeps in memory what was
//! written and not yet made durable: file data until an fsync or fdatasync of
//! that file, creates, renames and unlinks until an fsync of their directory
//! ([`state`] has the exact rules). [`LazyMount::lose_unsynced`] drops all of
//! it, leaving the backing directory in its last durable state, as a power
//! failure would (Jepsen's lazyfs and `lose-unfsynced-writes`).
//!
//! - [`state`]: the bookkeeping (inodes, pending data, directory undo log),
//!   on plain paths and tested without FUSE;
//! - [`pending`]: one file's unsynced pages;
//! - `fuse`: the `fuser` request handlers over the state;
//! - [`mount`]: mounting, unmounting, the registry of live mounts and the
//!   cleanup of mounts left by a killed harness.

pub mod mount;
pub mod pending;
pub mod state;

mod fuse;

pub use mount::{
    check_available, clean_stale_mounts, registered_mounts, unmount_registered, LazyFsError,
    LazyMount,
};
pub use state::Loss;
