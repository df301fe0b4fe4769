//! The errors of the storage layer, each naming the file it is about.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// What an operator should do about a [`StorageError::Damaged`] directory.
pub const DAMAGE_ADVICE: &str = "Refusing to start: votes (promises, accepted values) that \
this replica acknowledged may be stored there, and voting without them could let two different \
values be chosen for one slot. Keep the directory as it is and leave this replica stopped (the \
others keep serving while a majority is up); see README, \"Damaged data directory\"";

/// Errors of the storage layer.
#[derive(Debug, Error)]
pub enum StorageError {
    /// An I/O error, with what was being done and to which file.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "fdatasync", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Another process holds the data directory.
    #[error("data directory {} is in use by another process", .0.display())]
    Locked(PathBuf),
    /// The directory holds files that paxoskv did not write.
    #[error(
        "{} is not a paxoskv data directory: it holds {entry:?}, which paxoskv never writes; \
         give --data-dir an empty or new directory for a new replica",
        dir.display()
    )]
    Foreign {
        /// The data directory.
        dir: PathBuf,
        /// The first entry that is not ours.
        entry: String,
    },
    /// A file written by a later version of paxoskv.
    #[error(
        "{} was written by a newer paxoskv (format version {version}); run that version",
        file.display()
    )]
    NewerFormat {
        /// The file.
        file: PathBuf,
        /// The version it announces.
        version: u8,
    },
    /// The durable state is damaged in a way a crash cannot explain (see the
    /// module documentation): the replica must not vote with it.
    #[error("{}: damaged at byte {offset}: {problem}. {DAMAGE_ADVICE}", file.display())]
    Damaged {
        /// The damaged (or missing) file.
        file: PathBuf,
        /// Byte offset of the damage in that file.
        offset: u64,
        /// What is wrong.
        problem: String,
    },
    /// An earlier write or fsync failed; the storage refuses every later one
    /// (a failed fsync is never retried and trusted).
    #[error("storage stopped after an earlier failure ({0}); nothing more is written")]
    Failed(String),
    /// One batch encodes to more than a record can hold.
    #[error("a write batch of {0} bytes is larger than a WAL record can be (1 GiB)")]
    TooLarge(usize),
}

impl StorageError {
    /// True for damage that recovery refuses (as opposed to I/O trouble).
    pub fn is_damage(&self) -> bool {
        matches!(self, StorageError::Damaged { .. })
    }
}

pub(super) type Result<T> = std::result::Result<T, StorageError>;

/// Builds the mapper of an `io::Error` on `path` while doing `action`.
pub(super) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn damaged(file: &Path, offset: u64, problem: impl Into<String>) -> StorageError {
    StorageError::Damaged {
        file: file.to_path_buf(),
        offset,
        problem: problem.into(),
    }
}
