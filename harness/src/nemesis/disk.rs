//! Disk faults: what a crash does to data that was never made durable, and
//! what a bad disk does to data that was.
//!
//! - `lose-unsynced` (Jepsen's `lose-unfsynced-writes`): SIGKILL the node,
//!   then its lazyfs mount ([`crate::lazyfs`]) drops every write and
//!   directory change the node had not fsynced; healed by restarting it on
//!   the same data dir. A workload using this fault runs every node on a
//!   lazyfs mount ([`crate::workload::Workload::needs_lazyfs`]).
//! - `corrupt` (`mode: bitflip | truncate`): SIGKILL the node, flip one bit
//!   in, or truncate its file inside, one span of its WAL or checkpoint, then
//!   restart it. The span is chosen at random among those whose damage the
//!   database must detect: every span of
//!   [`Processes::durable_records`](crate::db::Processes::durable_records)
//!   except the `tail` (the newest WAL's last record), whose damage a torn
//!   write could explain. The server is expected to refuse to start; the op records what
//!   was damaged and the outcome, `:refused` (with the error the node
//!   logged) or `:started` (damage not detected: also an error of the op).
//!   Healed by putting the original bytes back and restarting, so a replica
//!   that refused rejoins with exactly the state it had, never with a
//!   forgotten vote.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::Rng;

use super::{Applied, Fault};
use crate::db::{BoxFuture, Db, NodeState, RecordSpan};
use crate::history::Value;
use crate::lazyfs::Loss;
use crate::workload::CorruptMode;

/// SIGKILL a running node and drop what it had not fsynced; restart it on
/// heal.
pub struct LoseUnsynced;

impl Fault for LoseUnsynced {
    fn name(&self) -> &'static str {
        "lose-unsynced"
    }
    fn heal_name(&self) -> &'static str {
        "restart"
    }
    /// The nodes must run on lazyfs (the workload's replicas are mounted
    /// when it schedules this fault).
    fn check_available(&self, db: &Db) -> Result<()> {
        if db.procs().on_lazyfs() {
            Ok(())
        } else {
            bail!("the nodes' data dirs are not lazyfs mounts")
        }
    }
    fn can_target(&self, state: NodeState) -> bool {
        state == NodeState::Running
    }
    fn apply<'a>(&'a self, db: &'a Db, nodes: &'a [usize]) -> BoxFuture<'a, Applied> {
        Box::pin(async move {
            let mut out = Applied::default();
            for &i in nodes {
                let mut p = db.procs();
                if let Err(e) = p.kill(i) {
                    out.errors.push(format!("n{i}: {e:#}"));
                    continue;
                }
                out.hit.push(i);
                match p.lose_unsynced(i) {
                    Ok(loss) => out.details.push(loss_value(&loss)),
                    Err(e) => out.errors.push(format!("n{i}: {e:#}")),
                }
            }
            out
        })
    }
    fn heal<'a>(&'a self, db: &'a Db, nodes: &'a [usize]) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move { restart_down(db, nodes) })
    }
    fn lingering(&self, db: &Db, _ran: bool) -> Vec<usize> {
        let states = db.states();
        (0..states.len())
            .filter(|&i| states[i] == NodeState::Down)
            .collect()
    }
}

/// Restarts those of `nodes` that are down; returns the errors.
fn restart_down(db: &Db, nodes: &[usize]) -> Vec<String> {
    let mut p = db.procs();
    let mut errors = Vec::new();
    for &i in nodes {
        if p.state(i) == NodeState::Down {
            if let Err(e) = p.start(i) {
                errors.push(format!("{e:#}"));
            }
        }
    }
    errors
}

fn kw(k: &str) -> Value {
    Value::keyword(k)
}

fn loss_value(loss: &Loss) -> Value {
    Value::Map(
        vec![
            (kw("files"), Value::Int(loss.files as i64)),
            (kw("bytes"), Value::Int(loss.bytes as i64)),
            (kw("dir-changes"), Value::Int(loss.dir_changes as i64)),
        ]
        .into(),
    )
}

/// What it takes to undo one corruption.
#[derive(Debug, Clone)]
struct Repair {
    file: PathBuf,
    /// Where the saved bytes go back.
    offset: u64,
    /// The original bytes from `offset` (trailing zeros trimmed).
    original: Vec<u8>,
    /// The file's original length.
    len: u64,
}

impl Repair {
    fn restore(&self) -> Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .open(&self.file)
            .with_context(|| format!("cannot reopen {}", self.file.display()))?;
        f.write_all_at(&self.original, self.offset)
            .and_then(|()| f.set_len(self.len))
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot restore {}", self.file.display()))
    }
}

/// The corruptions not yet undone, by node: shared by every `corrupt` entry
/// of a run (and by the final heal).
#[derive(Debug, Default)]
pub struct DiskState {
    repairs: Mutex<BTreeMap<usize, Repair>>,
}

impl DiskState {
    fn repairs(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, Repair>> {
        self.repairs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Damage one record of a stopped node, restart it and see it refuse;
/// restore the bytes and restart it on heal.
pub struct Corrupt {
    pub mode: CorruptMode,
    pub state: Arc<DiskState>,
    /// How long a restarted node has to refuse before it counts as started.
    pub refuse_timeout: Duration,
}

/// What `corrupt` did to one file.
#[derive(Debug)]
struct Damage {
    file: PathBuf,
    span: RecordSpan,
    /// First byte changed (bitflip) or the new length (truncate).
    at: u64,
}

impl Fault for Corrupt {
    fn name(&self) -> &'static str {
        "corrupt"
    }
    fn heal_name(&self) -> &'static str {
        "repair"
    }
    fn can_target(&self, state: NodeState) -> bool {
        state == NodeState::Running
    }
    fn apply<'a>(&'a self, db: &'a Db, nodes: &'a [usize]) -> BoxFuture<'a, Applied> {
        Box::pin(async move {
            let mut out = Applied::default();
            for &i in nodes {
                match self.corrupt_one(db, i).await {
                    Ok((detail, error)) => {
                        out.hit.push(i);
                        out.details.push(detail);
                        out.errors.extend(error);
                    }
                    Err(e) => out.errors.push(format!("n{i}: {e:#}")),
                }
            }
            out
        })
    }
    fn heal<'a>(&'a self, db: &'a Db, nodes: &'a [usize]) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let mut errors = Vec::new();
            for &i in nodes {
                let Some(repair) = self.state.repairs().remove(&i) else {
                    continue;
                };
                let mut p = db.procs();
                if p.state(i) != NodeState::Down {
                    // It started on the damaged dir (or is paused): stop it
                    // before putting the bytes back.
                    if p.state(i) == NodeState::Paused {
                        let _ = p.resume(i);
                    }
                    let _ = p.kill(i);
                }
                if let Err(e) = repair.restore().and_then(|()| p.start(i)) {
                    errors.push(format!("n{i}: {e:#}"));
                }
            }
            errors
        })
    }
    fn describe(&self) -> Option<Value> {
        Some(kw(self.mode.as_str()))
    }
    /// Nodes whose damage is not undone yet.
    fn lingering(&self, _db: &Db, _ran: bool) -> Vec<usize> {
        self.state.repairs().keys().copied().collect()
    }
}

impl Corrupt {
    /// Kills node `i`, damages its data dir, restarts it and waits for it to
    /// refuse. Returns the op detail and, if it did not refuse, an error.
    async fn corrupt_one(&self, db: &Db, i: usize) -> Result<(Value, Option<String>)> {
        let (spans, log) = {
            let mut p = db.procs();
            p.kill(i)?;
            (p.durable_records(i), p.files(i).log_path)
        };
        let mode = self.mode;
        let damaged = match spans {
            Ok(spans) => tokio::task::spawn_blocking(move || damage(&spans, mode)).await?,
            Err(e) => Err(e),
        };
        let (damage, repair) = match damaged {
            Ok(d) => d,
            Err(e) => {
                // Nothing was changed: bring the node back as it was.
                db.procs().start(i)?;
                return Err(e);
            }
        };
        self.state.repairs().insert(i, repair);
        let log_len = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        db.procs().start(i)?;
        let exit = wait_exit(db, i, self.refuse_timeout).await;
        let mut detail = vec![
            (kw("mode"), kw(mode.as_str())),
            (kw("file"), Value::string(file_name(&damage.file))),
            (kw("span"), Value::string(damage.span.what.clone())),
            (kw("offset"), Value::Int(damage.at as i64)),
        ];
        let error = match exit {
            Some(status) => {
                let said = refusal_line(&log, log_len).unwrap_or_else(|| status.clone());
                detail.push((kw("outcome"), kw("refused")));
                detail.push((kw("said"), Value::string(said)));
                None
            }
            None => {
                detail.push((kw("outcome"), kw("started")));
                Some(format!(
                    "n{i} started on a damaged data dir ({} of {} at byte {}): the damage went undetected",
                    mode.as_str(),
                    file_name(&damage.file),
                    damage.at
                ))
            }
        };
        Ok((Value::Map(detail.into()), error))
    }
}

/// Waits up to `timeout` for node `i` to exit; returns how it exited.
async fn wait_exit(db: &Db, i: usize, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = db.procs().check_exited(i) {
            return Some(st.to_string());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The line the node logged about the damage (after byte `from` of its log).
fn refusal_line(log: &Path, from: u64) -> Option<String> {
    let text = fs::read(log).ok()?;
    let text = String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).into_owned();
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("damaged") || l.contains("Refusing"))?;
    // The error up to the advice that follows it (see the server's README).
    let line = line.split(". Refusing").next().unwrap_or(line);
    let line = line.split("cannot start replica: ").last().unwrap_or(line);
    Some(line.chars().take(300).collect())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// Damages one detectable span among `spans` (see the module
/// documentation) and returns what it did and how to undo it.
fn damage(spans: &[RecordSpan], mode: CorruptMode) -> Result<(Damage, Repair)> {
    let candidates: Vec<&RecordSpan> = spans.iter().filter(|s| !s.tail && s.len > 0).collect();
    if candidates.is_empty() {
        bail!(
            "no record whose damage is detectable yet ({} spans; damage to the last one could be a torn write)",
            spans.len()
        );
    }
    let mut rng = rand::rng();
    let span = candidates[rng.random_range(0..candidates.len())].clone();
    let file = span.file.clone();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&file)
        .with_context(|| format!("cannot open {}", file.display()))?;
    let len = f.metadata()?.len();
    let at = span.offset + rng.random_range(0..span.len);
    let repair = match mode {
        CorruptMode::Bitflip => {
            let mut byte = [0u8];
            f.read_exact_at(&mut byte, at)?;
            let flipped = byte[0] ^ (1u8 << rng.random_range(0..8));
            f.write_all_at(&[flipped], at)?;
            Repair {
                file: file.clone(),
                offset: at,
                original: byte.to_vec(),
                len,
            }
        }
        CorruptMode::Truncate => {
            let mut tail = vec![0u8; (len - at) as usize];
            f.read_exact_at(&mut tail, at)?;
            let keep = tail.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            tail.truncate(keep);
            f.set_len(at)?;
            Repair {
                file: file.clone(),
                offset: at,
                original: tail,
                len,
            }
        }
    };
    f.sync_all()?;
    Ok((Damage { file, span, at }, repair))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(file: &Path) -> Vec<RecordSpan> {
        // Three 100-byte records followed by zeros (a preallocated WAL).
        (0..3)
            .map(|k| RecordSpan {
                file: file.to_path_buf(),
                offset: k * 100,
                len: 100,
                what: format!("WAL record {k}"),
                tail: k == 2,
            })
            .collect()
    }

    #[test]
    fn damage_never_touches_the_tail_and_the_repair_restores_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wal");
        let mut original: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8 + 1).collect();
        original.resize(4096, 0);
        for mode in [CorruptMode::Bitflip, CorruptMode::Truncate] {
            for _ in 0..20 {
                fs::write(&file, &original).unwrap();
                let (damage, repair) = damage(&spans(&file), mode).unwrap();
                assert!(damage.at < 200, "{mode:?} hit the tail at {}", damage.at);
                let now = fs::read(&file).unwrap();
                match mode {
                    CorruptMode::Bitflip => {
                        let diff: Vec<usize> =
                            (0..now.len()).filter(|&i| now[i] != original[i]).collect();
                        assert_eq!(diff, [damage.at as usize]);
                        assert_eq!((now[diff[0]] ^ original[diff[0]]).count_ones(), 1);
                    }
                    CorruptMode::Truncate => assert_eq!(now.len() as u64, damage.at),
                }
                repair.restore().unwrap();
                assert_eq!(fs::read(&file).unwrap(), original);
            }
        }
    }

    #[test]
    fn nothing_to_damage_is_an_error_that_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wal");
        fs::write(&file, [1u8; 100]).unwrap();
        let only_tail = vec![RecordSpan {
            file: file.clone(),
            offset: 0,
            len: 100,
            what: "WAL record 0".into(),
            tail: true,
        }];
        let e = damage(&only_tail, CorruptMode::Bitflip)
            .unwrap_err()
            .to_string();
        assert!(e.contains("torn write"), "{e}");
        assert_eq!(fs::read(&file).unwrap(), [1u8; 100]);
    }
}
