//! The checkpoint writer: a thread of its own that writes one checkpoint
//! (encoding the whole state, snapshot included) while the storage thread
//! goes on appending to the next WAL generation; see "Checkpoints off the
//! message path" in [the module documentation](super).

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::error::{io_err, Result, StorageError};
use super::recover;
use super::{DurableState, StorageOptions};

/// A step of writing a checkpoint, where a unit test can stop the writer as
/// a crash would (leaving the files as they are at that moment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(super) enum Step {
    /// Before `checkpoint.tmp` is written.
    Write,
    /// After `checkpoint.tmp` is durable, before the rename.
    Rename,
    /// After the new checkpoint is in place, before the old WAL is deleted.
    RemoveOldWal,
}

/// Test hooks of one checkpoint: wait for a signal before starting, stop
/// (as a crash) before a step.
#[derive(Debug, Default)]
pub(super) struct Hooks {
    #[cfg(test)]
    pub gate: Option<std::sync::mpsc::Receiver<()>>,
    #[cfg(test)]
    pub stop_before: Option<Step>,
    #[cfg(test)]
    pub fail_before: Option<Step>,
}

impl Hooks {
    /// `Ok(false)` if a test stops the writer before `step`, `Err` if it
    /// makes the step fail (ENOSPC).
    #[cfg(not(test))]
    fn go(&self, _step: Step) -> Result<bool> {
        Ok(true)
    }

    #[cfg(test)]
    fn go(&self, step: Step) -> Result<bool> {
        if step == Step::Write {
            if let Some(gate) = &self.gate {
                // A dropped sender opens the gate too.
                let _ = gate.recv();
            }
        }
        if self.fail_before == Some(step) {
            return Err(StorageError::Io {
                action: "write",
                path: PathBuf::from(recover::CHECKPOINT_TMP),
                source: std::io::Error::from_raw_os_error(28),
            });
        }
        Ok(self.stop_before != Some(step))
    }
}

/// What the writer is given: checkpoint `generation` holding `state`, the
/// state as of the first record of WAL `generation` (`first_seq`), and the
/// WAL that checkpoint makes obsolete.
pub(super) struct Job {
    pub dir: PathBuf,
    pub generation: u64,
    pub first_seq: u64,
    pub state: DurableState,
    pub old_wal: PathBuf,
    pub options: StorageOptions,
    pub hooks: Hooks,
}

/// Starts writing `job` on a thread of its own.
pub(super) fn spawn(job: Job) -> Result<JoinHandle<Result<()>>> {
    let dir = job.dir.clone();
    std::thread::Builder::new()
        .name("checkpoint".into())
        .spawn(move || write(job))
        .map_err(io_err("start the checkpoint writer for", &dir))
}

/// Waits for a checkpoint writer and returns its outcome.
pub(super) fn join(handle: JoinHandle<Result<()>>, dir: &Path) -> Result<()> {
    handle.join().unwrap_or_else(|_| {
        Err(StorageError::Failed(format!(
            "the checkpoint writer of {} panicked",
            dir.display()
        )))
    })
}

fn write(job: Job) -> Result<()> {
    if !job.hooks.go(Step::Write)? {
        return Ok(());
    }
    // Encoding the state (and a snapshot not yet encoded) happens here.
    let buf = super::format::encode_checkpoint(job.generation, job.first_seq, &job.state);
    let tmp = job.dir.join(recover::CHECKPOINT_TMP);
    recover::write_file_durably(&tmp, &buf, &job.options)?;
    if !job.hooks.go(Step::Rename)? {
        return Ok(());
    }
    recover::install_checkpoint(&job.dir, &job.options)?;
    if !job.hooks.go(Step::RemoveOldWal)? {
        return Ok(());
    }
    // Best effort: a leftover is removed on the next open.
    let _ = fs::remove_file(&job.old_wal);
    Ok(())
}
