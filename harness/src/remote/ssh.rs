//! SSH to one node through the system `ssh`, one multiplexed connection per
//! node.
//!
//! [`Session::connect`] starts a ControlMaster (`ssh -M -N`) as a child of
//! the harness (registered like a replica, so it dies with the harness) and
//! waits, within the deadline, until its control socket is up; every later
//! command (`ssh -o ControlMaster=no -o ControlPath=...`) rides on it, so a
//! command costs a round trip, not a handshake. The system `ssh` reads
//! `~/.ssh/config` as usual; `BatchMode=yes` makes a refused key an error
//! instead of a password prompt. Every command has a deadline: past it the
//! local `ssh` is killed and the error names the host and the command. When
//! the master dies (a lost connection), the next command reconnects, with
//! backoff, before it gives up.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use super::HostSpec;

/// What went wrong with a remote command, always naming the host.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{host}: cannot connect over ssh: {reason}")]
    Connect { host: String, reason: String },
    #[error("{host}: `{what}` did not finish within {after:?} (killed)")]
    Timeout {
        host: String,
        what: String,
        after: Duration,
    },
    #[error("{host}: `{what}` failed ({status}): {stderr}")]
    Failed {
        host: String,
        what: String,
        status: String,
        stderr: String,
    },
    #[error("{host}: cannot run ssh: {source}")]
    Spawn {
        host: String,
        source: std::io::Error,
    },
}

/// Quotes `s` for a POSIX shell (single quotes).
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// One node's SSH connection.
pub struct Session {
    /// The node and `user@host:port`, for errors.
    pub name: String,
    spec: HostSpec,
    control: PathBuf,
    /// The ControlMaster's stderr, for the reason a connection failed.
    master_log: PathBuf,
    timeout: Duration,
    master: Mutex<Option<Child>>,
    /// Set by [`Session::close`]: no reconnecting after that.
    closed: AtomicBool,
}

impl Session {
    /// Connects to `spec` within `timeout`; `name` names it in errors; the
    /// control socket goes in `control_dir` (a short path: sockets have a
    /// length limit), named `key`.
    pub fn connect(
        name: String,
        spec: &HostSpec,
        control_dir: &Path,
        key: &str,
        timeout: Duration,
    ) -> Result<Session, SshError> {
        let s = Session {
            name,
            spec: spec.clone(),
            control: control_dir.join(format!("{key}.sock")),
            master_log: control_dir.join(format!("{key}.log")),
            timeout,
            master: Mutex::new(None),
            closed: AtomicBool::new(false),
        };
        s.start_master()?;
        Ok(s)
    }

    /// The deadline of one command.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `ssh` with the options every invocation shares (destination last).
    fn ssh(&self) -> Command {
        let mut c = Command::new("ssh");
        let secs = self.timeout.as_secs().max(1);
        c.args(["-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!("ConnectTimeout={secs}"))
            .args(["-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3"])
            .arg("-o")
            .arg(format!("ControlPath={}", self.control.display()));
        if let Some(p) = self.spec.port {
            c.arg("-p").arg(p.to_string());
        }
        if let Some(u) = &self.spec.user {
            c.arg("-l").arg(u);
        }
        if let Some(i) = &self.spec.identity {
            c.arg("-i").arg(i).args(["-o", "IdentitiesOnly=yes"]);
        }
        for o in &self.spec.ssh_options {
            c.arg("-o").arg(o);
        }
        c
    }

    fn start_master(&self) -> Result<(), SshError> {
        let connect = |reason: String| SshError::Connect {
            host: self.name.clone(),
            reason,
        };
        let _ = std::fs::remove_file(&self.control);
        let log = File::create(&self.master_log)
            .map_err(|e| connect(format!("{}: {e}", self.master_log.display())))?;
        let mut cmd = self.ssh();
        cmd.args([
            "-M",
            "-N",
            "-o",
            "ControlMaster=yes",
            "-o",
            "ControlPersist=no",
        ])
        .arg(&self.spec.host)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
        let mut child = crate::cluster::spawn_child(cmd).map_err(|e| SshError::Spawn {
            host: self.name.clone(),
            source: e,
        })?;
        let deadline = Instant::now() + self.timeout;
        loop {
            if self.control.exists() {
                *self.master.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
                return Ok(());
            }
            if let Ok(Some(st)) = child.try_wait() {
                crate::cluster::unregister(child.id() as i32);
                let why = std::fs::read_to_string(&self.master_log).unwrap_or_default();
                let why = why.trim();
                return Err(connect(if why.is_empty() {
                    format!("ssh exited ({st})")
                } else {
                    why.to_string()
                }));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                crate::cluster::unregister(child.id() as i32);
                return Err(connect(format!("no connection within {:?}", self.timeout)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the ControlMaster is gone (it exited: connection lost).
    fn master_gone(&self) -> bool {
        let mut m = self.master.lock().unwrap_or_else(|e| e.into_inner());
        match m.as_mut() {
            None => true,
            Some(c) => match c.try_wait() {
                Ok(None) => false,
                _ => {
                    crate::cluster::unregister(c.id() as i32);
                    *m = None;
                    true
                }
            },
        }
    }

    /// Reconnects after a lost connection: three tries, 0.2 s, 0.4 s, 0.8 s
    /// apart.
    fn reconnect(&self) -> Result<(), SshError> {
        let mut last = None;
        for k in 0..3 {
            std::thread::sleep(Duration::from_millis(200 << k));
            match self.start_master() {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried"))
    }

    /// Runs `script` with `sh -c` on the node within the deadline; its stdout
    /// on success. `what` names it in errors.
    pub fn run(&self, what: &str, script: &str) -> Result<String, SshError> {
        let out = self.run_with(what, script, None, None, self.timeout)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Like [`Session::run`]: `stdin` fed from a local file, stdout into a
    /// local file (`stdout`) or returned raw, with its own deadline.
    pub fn run_with(
        &self,
        what: &str,
        script: &str,
        stdin: Option<&Path>,
        stdout: Option<&Path>,
        timeout: Duration,
    ) -> Result<Output, SshError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(SshError::Connect {
                host: self.name.clone(),
                reason: format!("connection already closed (running `{what}`)"),
            });
        }
        if self.master_gone() {
            self.reconnect()?;
        }
        match self.run_once(what, script, stdin, stdout, timeout) {
            // ssh's own failure (255) with the master gone: the connection
            // was lost; reconnect and try once more.
            Err(SshError::Failed { status, .. })
                if status.contains("255") && self.master_gone() =>
            {
                self.reconnect()?;
                self.run_once(what, script, stdin, stdout, timeout)
            }
            r => r,
        }
    }

    fn run_once(
        &self,
        what: &str,
        script: &str,
        stdin: Option<&Path>,
        stdout: Option<&Path>,
        timeout: Duration,
    ) -> Result<Output, SshError> {
        let spawn = |source| SshError::Spawn {
            host: self.name.clone(),
            source,
        };
        let mut cmd = self.ssh();
        cmd.args(["-o", "ControlMaster=no"])
            .arg(&self.spec.host)
            .arg(format!("sh -c {}", quote(script)))
            .stderr(Stdio::piped());
        match stdout {
            Some(p) => cmd.stdout(File::create(p).map_err(spawn)?),
            None => cmd.stdout(Stdio::piped()),
        };
        match stdin {
            Some(p) => cmd.stdin(File::open(p).map_err(spawn)?),
            None => cmd.stdin(Stdio::null()),
        };
        let child = cmd.spawn().map_err(spawn)?;
        let pid = child.id() as i32;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(timeout) {
            Ok(out) => out.map_err(spawn)?,
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                return Err(SshError::Timeout {
                    host: self.name.clone(),
                    what: what.to_string(),
                    after: timeout,
                });
            }
        };
        if out.status.success() {
            Ok(out)
        } else {
            let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if stderr.is_empty() {
                stderr = "no message".into();
            }
            Err(SshError::Failed {
                host: self.name.clone(),
                what: what.to_string(),
                status: out.status.to_string(),
                stderr,
            })
        }
    }

    /// Closes the connection (`ssh -O exit`, then the master is killed).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut m = self.master.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut c) = m.take() {
            let exit = self
                .ssh()
                .args(["-O", "exit"])
                .arg(&self.spec.host)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(mut e) = exit {
                let deadline = Instant::now() + Duration::from_secs(2);
                while Instant::now() < deadline && matches!(e.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = e.kill();
                let _ = e.wait();
            }
            let _ = c.kill();
            let _ = c.wait();
            crate::cluster::unregister(c.id() as i32);
        }
        let _ = std::fs::remove_file(&self.control);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

/// The SHA-256 of a local file, with the system's `sha256sum`.
pub fn local_sha256(path: &Path) -> std::io::Result<String> {
    let out = Command::new("sha256sum").arg(path).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "sha256sum {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut s = String::new();
    out.stdout.as_slice().read_to_string(&mut s)?;
    Ok(s.split_whitespace().next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        assert_eq!(quote("/tmp/a-b_c.d"), "/tmp/a-b_c.d");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", quote("x'y $HOME \"z\"")))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x'y $HOME \"z\"");
    }
}
