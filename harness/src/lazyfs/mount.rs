//! Mounting and unmounting, and never leaving a mount behind.
//!
//! A [`LazyMount`] serves one mount point from a thread of the harness
//! process. Mounts are removed by three layers, as processes are in
//! `cluster`:
//!
//! 1. [`LazyMount`] unmounts when dropped (errors and panics that unwind);
//! 2. every live mount point is kept in a process-wide registry, which
//!    [`unmount_registered`] detaches; the CLI calls it on SIGINT/SIGTERM
//!    after killing the replicas;
//! 3. a harness killed by SIGKILL leaves its mounts behind (their file system
//!    name carries its PID): [`clean_stale_mounts`], run before every mount,
//!    detaches those whose PID is no longer alive.
//!
//! Mounting needs `/dev/fuse` and, without CAP_SYS_ADMIN, the setuid helper
//! `fusermount3` (Debian package `fuse3`); [`check_available`] says which is
//! missing. No libfuse is linked: `fuser` speaks the protocol itself.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use fuser::{BackgroundSession, Config, MountOption};
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use thiserror::Error;

use super::fuse::LazyFuse;
use super::state::{Loss, State};

/// File system name of our mounts is this plus the harness PID, e.g.
/// `paxoskv-lazyfs.4242` in /proc/self/mountinfo.
pub const FSNAME_PREFIX: &str = "paxoskv-lazyfs.";

/// Why a lazyfs mount could not be made or used.
#[derive(Debug, Error)]
pub enum LazyFsError {
    /// FUSE cannot work on this machine; the text says what is missing and
    /// how to get it.
    #[error("FUSE is not available: {0}")]
    Unavailable(String),
    #[error("cannot mount lazyfs at {}: {source}", mountpoint.display())]
    Mount {
        mountpoint: PathBuf,
        source: io::Error,
    },
    #[error("lazyfs at {}: {source}", mountpoint.display())]
    Io {
        mountpoint: PathBuf,
        source: io::Error,
    },
}

/// Checks that a mount can be made: `/dev/fuse` opens and `fusermount3` is
/// on PATH.
pub fn check_available() -> Result<(), LazyFsError> {
    const CONTAINER: &str = "in a container, run it with --device /dev/fuse --cap-add SYS_ADMIN";
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        return Err(LazyFsError::Unavailable(
            if e.kind() == io::ErrorKind::NotFound {
                format!("/dev/fuse does not exist (load the kernel module with `modprobe fuse`; {CONTAINER})")
            } else {
                format!("cannot open /dev/fuse: {e} ({CONTAINER})")
            },
        ));
    }
    if find_on_path("fusermount3").is_none() && find_on_path("fusermount").is_none() {
        return Err(LazyFsError::Unavailable(
            "fusermount3 is not on PATH (Debian/Ubuntu: `apt-get install fuse3`)".into(),
        ));
    }
    Ok(())
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn registry() -> &'static Mutex<BTreeSet<PathBuf>> {
    static REG: OnceLock<Mutex<BTreeSet<PathBuf>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(BTreeSet::new()))
}

fn registry_lock() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    registry().lock().unwrap_or_else(|p| p.into_inner())
}

/// Mount points currently mounted by this process.
pub fn registered_mounts() -> Vec<PathBuf> {
    registry_lock().iter().cloned().collect()
}

/// Detaches every mount of this process (for the signal path; the replicas
/// using them should be killed first). Returns how many there were.
pub fn unmount_registered() -> usize {
    let mounts: Vec<PathBuf> = std::mem::take(&mut *registry_lock()).into_iter().collect();
    for m in &mounts {
        let _ = detach(m);
    }
    mounts.len()
}

/// Lazy unmount: at once for new users, for good when the last one lets go.
/// Without the privilege (not root) through `fusermount3 -u -z`.
fn detach(mountpoint: &Path) -> io::Result<()> {
    match umount2(mountpoint, MntFlags::MNT_DETACH) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => {
            let helper = if find_on_path("fusermount3").is_some() {
                "fusermount3"
            } else {
                "fusermount"
            };
            let out = std::process::Command::new(helper)
                .args(["-u", "-z", "--"])
                .arg(mountpoint)
                .output()?;
            if out.status.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "{helper} -u -z {}: {}",
                    mountpoint.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )))
            }
        }
        Err(e) => Err(io::Error::from_raw_os_error(e as i32)),
    }
}

/// Detaches lazyfs mounts left by harness processes that are gone (see the
/// module documentation) and returns their mount points.
pub fn clean_stale_mounts() -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut cleaned = Vec::new();
    for (mountpoint, pid) in info.lines().filter_map(parse_mountinfo_line) {
        let alive = pid == std::process::id()
            || !matches!(
                kill(Pid::from_raw(pid as i32), None),
                Err(nix::errno::Errno::ESRCH)
            );
        if !alive && detach(&mountpoint).is_ok() {
            let _ = fs::remove_dir(&mountpoint);
            cleaned.push(mountpoint);
        }
    }
    cleaned
}

/// The mount point and owner PID of a mountinfo line that is one of ours.
fn parse_mountinfo_line(line: &str) -> Option<(PathBuf, u32)> {
    let (left, right) = line.split_once(" - ")?;
    let mountpoint = left.split(' ').nth(4)?;
    let mut right = right.split(' ');
    let fstype = right.next()?;
    let source = right.next()?;
    if !fstype.starts_with("fuse") {
        return None;
    }
    let pid = source.strip_prefix(FSNAME_PREFIX)?.parse().ok()?;
    Some((PathBuf::from(unescape_mountinfo(mountpoint)), pid))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if b[i] == b'\\' => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A mounted lazyfs (see the parent module).
pub struct LazyMount {
    mountpoint: PathBuf,
    backing: PathBuf,
    state: Arc<Mutex<State>>,
    session: Option<BackgroundSession>,
}

impl std::fmt::Debug for LazyMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyMount")
            .field("mountpoint", &self.mountpoint)
            .field("backing", &self.backing)
            .finish()
    }
}

impl LazyMount {
    /// Mounts at `mountpoint` (created if needed) a file system whose durable
    /// contents are the directory `backing` (created if needed).
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<LazyMount, LazyFsError> {
        check_available()?;
        clean_stale_mounts();
        let io_err = |source| LazyFsError::Io {
            mountpoint: mountpoint.to_path_buf(),
            source,
        };
        fs::create_dir_all(backing).map_err(io_err)?;
        fs::create_dir_all(mountpoint).map_err(io_err)?;
        let mountpoint = mountpoint.canonicalize().map_err(io_err)?;
        let state = Arc::new(Mutex::new(State::new(backing).map_err(io_err)?));
        let backing = state.lock().expect("fresh").root().to_path_buf();
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(format!("{FSNAME_PREFIX}{}", std::process::id())),
            MountOption::Subtype("lazyfs".into()),
            MountOption::NoAtime,
        ];
        let fs = LazyFuse {
            state: state.clone(),
        };
        let session =
            fuser::spawn_mount(fs, &mountpoint, &config).map_err(|source| LazyFsError::Mount {
                mountpoint: mountpoint.clone(),
                source,
            })?;
        registry_lock().insert(mountpoint.clone());
        Ok(LazyMount {
            mountpoint,
            backing,
            state,
            session: Some(session),
        })
    }

    /// Where the file system is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The directory holding its durable contents.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// Drops everything not made durable (see [`State::lose_unsynced`]).
    /// Call it with no process using the mount, as a crash would leave it.
    pub fn lose_unsynced(&self) -> Result<Loss, LazyFsError> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lose_unsynced()
            .map_err(|source| LazyFsError::Io {
                mountpoint: self.mountpoint.clone(),
                source,
            })
    }

    /// Unmounts (lazily if it is still in use) and writes whatever was not
    /// synced into the backing directory, as an orderly shutdown of the
    /// machine would.
    pub fn unmount(mut self) -> Result<(), LazyFsError> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> Result<(), LazyFsError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        if session.umount_and_join().is_err() {
            // Busy (a process still has a file open) or already gone: detach
            // it; the serving thread ends when the last user lets go.
            match detach(&self.mountpoint) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(source) => {
                    return Err(LazyFsError::Io {
                        mountpoint: self.mountpoint.clone(),
                        source,
                    })
                }
            }
        }
        registry_lock().remove(&self.mountpoint);
        let _ = fs::remove_dir(&self.mountpoint);
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_back()
            .map_err(|source| LazyFsError::Io {
                mountpoint: self.mountpoint.clone(),
                source,
            })
    }
}

impl Drop for LazyMount {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner() {
            eprintln!("harness: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_of_ours_are_recognised() {
        let ours = "812 31 0:95 / /tmp/store/a\\040b/mnt/n0 rw,nosuid,nodev,noatime - fuse.lazyfs paxoskv-lazyfs.4242 rw,user_id=0,group_id=0";
        assert_eq!(
            parse_mountinfo_line(ours),
            Some((PathBuf::from("/tmp/store/a b/mnt/n0"), 4242))
        );
        let other = "30 1 0:27 / /sys rw - sysfs sysfs rw";
        assert_eq!(parse_mountinfo_line(other), None);
        let other_fuse = "40 1 0:50 / /mnt/x rw - fuse.sshfs user@host: rw";
        assert_eq!(parse_mountinfo_line(other_fuse), None);
        assert_eq!(unescape_mountinfo("a\\134b\\011"), "a\\b\t");
    }
}
