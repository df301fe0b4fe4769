//! Drives the interactive `client` REPL as a person at a terminal would:
//! the client runs on a pseudo-terminal (its controlling terminal, so
//! Ctrl-C raises SIGINT as in a real one), the test types or pastes bytes
//! into the master side, and [`Screen`], a minimal terminal emulator, turns
//! what the client wrote back into the lines a person would see.
//!
//! Also starts a real one-replica `server` ([`Server`]) that a test can
//! pause (SIGSTOP) to make a command slow. Every process is stopped by its
//! PID on drop; every wait has a deadline.
#![allow(dead_code)] // each test file uses a different part of it

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::pty::{openpty, Winsize};
use nix::sys::signal::{kill, Signal};
use nix::sys::termios::{tcgetattr, LocalFlags, Termios};
use nix::unistd::Pid;

/// Columns and rows of the pseudo-terminal (the tmux window).
pub const COLS: u16 = 120;
const ROWS: u16 = 30;

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty directory named after the test.
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("paxoskv-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[path = "../../../tests-support/workspace_bins.rs"]
mod workspace_bins;

/// The `server` binary of this workspace's target dir, up to date.
pub fn server_bin() -> PathBuf {
    workspace_bins::workspace_bin(
        env!("CARGO_BIN_EXE_client"),
        env!("CARGO_MANIFEST_DIR"),
        "server",
    )
}

/// A real one-replica paxoskv server on 127.0.0.1, killed by PID on drop.
pub struct Server {
    child: Child,
    /// Client-facing `host:port`.
    pub addr: String,
    dir: TempDir,
}

impl Server {
    /// Starts a replica serving clients on `port` (Paxos on `port + 1`) and
    /// waits until it is coordinator.
    pub fn start(name: &str, port: u16) -> Server {
        let dir = TempDir::new(name);
        let addr = format!("127.0.0.1:{port}");
        let paxos = format!("127.0.0.1:{}", port + 1);
        let log = File::create(dir.0.join("server.log")).expect("server log");
        let child = Command::new(server_bin())
            .args([
                "--my-addr",
                &addr,
                "--my-paxos",
                &paxos,
                "--replica",
                &paxos,
            ])
            .arg("--data-dir")
            .arg(dir.0.join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn server");
        let server = Server { child, addr, dir };
        server.wait_coordinator(Duration::from_secs(20));
        server
    }

    fn wait_coordinator(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let out = Command::new(env!("CARGO_BIN_EXE_client"))
                .args(["--timeout-ms", "1000", &self.addr, "status"])
                .stdin(Stdio::null())
                .output()
                .expect("run client status");
            if String::from_utf8_lossy(&out.stdout).contains("role=coordinator") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server on {} not coordinator within {within:?}; log:\n{}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Freezes the server (SIGSTOP): commands hang until [`Server::resume`].
    pub fn pause(&self) {
        kill(self.pid(), Signal::SIGSTOP).expect("SIGSTOP server");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        kill(self.pid(), Signal::SIGCONT).expect("SIGCONT server");
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL by PID works on a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything the client wrote to its terminal, shared with the reader
/// thread.
#[derive(Default)]
struct Output {
    bytes: Mutex<Vec<u8>>,
    grew: Condvar,
}

/// The interactive `client` on a pseudo-terminal.
pub struct Repl {
    child: Child,
    master: File,
    output: Arc<Output>,
    /// `$HOME` of the client, where its history file lives.
    pub home: TempDir,
}

impl Repl {
    /// Starts `client args...` with a pseudo-terminal as its controlling
    /// terminal and stdin/stdout/stderr, `$HOME` in a fresh directory
    /// (holding `history`, if given, as the history file).
    pub fn start(name: &str, args: &[&str], history: Option<&[u8]>) -> Repl {
        let home = TempDir::new(&format!("{name}-home"));
        if let Some(text) = history {
            std::fs::write(history_path(&home.0), text).expect("write history");
        }
        let size = Winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&size), None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup pty"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_client"));
        cmd.args(args)
            .env("HOME", &home.0)
            .env("TERM", "xterm")
            .env_remove("RUST_LOG")
            .stdin(stdio(&slave))
            .stdout(stdio(&slave))
            .stderr(stdio(&slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                if nix::libc::ioctl(0, nix::libc::TIOCSCTTY as _, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn client on a pty");
        // Only the child keeps the slave open: its exit ends the reader.
        drop(slave);
        let master = File::from(pty.master);
        let output = Arc::new(Output::default());
        let mut reader = master.try_clone().expect("dup pty master");
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the child (the last slave holder) is gone.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                sink.bytes.lock().unwrap().extend_from_slice(&buf[..n]);
                sink.grew.notify_all();
            }
        });
        Repl {
            child,
            master,
            output,
            home,
        }
    }

    /// Sends bytes as typed (or pasted, if several lines at once).
    pub fn send(&mut self, bytes: &str) {
        self.master
            .write_all(bytes.as_bytes())
            .expect("write to pty");
        self.master.flush().expect("flush pty");
    }

    /// Everything the client wrote so far, raw.
    pub fn raw(&self) -> String {
        String::from_utf8_lossy(&self.output.bytes.lock().unwrap()).into_owned()
    }

    /// The lines on the screen now.
    pub fn screen(&self) -> Vec<String> {
        Screen::render(&self.raw())
    }

    /// Waits until the screen satisfies `done`, at most `within`; returns
    /// the screen then, or panics with it (naming `what`).
    pub fn wait_for(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut bytes = self.output.bytes.lock().unwrap();
        loop {
            let screen = Screen::render(&String::from_utf8_lossy(&bytes));
            if done(&screen) {
                return screen;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "timed out after {within:?} waiting for {what}; screen:\n{}",
                    screen.join("\n")
                );
            }
            bytes = self
                .output
                .grew
                .wait_timeout(bytes, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Waits until the screen ends with `lines` (the last one being the
    /// line the cursor is on, usually a prompt).
    pub fn wait_tail(&self, lines: &[&str], within: Duration) -> Vec<String> {
        self.wait_for(&format!("the screen to end with {lines:?}"), within, |s| {
            s.len() >= lines.len() && s[s.len() - lines.len()..] == *lines
        })
    }

    /// The terminal's mode now, as the client set it (read through the
    /// master side, which reports the slave's).
    pub fn termios(&self) -> Termios {
        tcgetattr(&self.master).expect("tcgetattr on the pty")
    }

    /// Waits until the line editor has handed the terminal back (its raw
    /// mode has no ISIG; the REPL's mode between lines has), i.e. the line
    /// just typed is being run; then a little longer, so the REPL is
    /// surely listening for Ctrl-C.
    pub fn wait_running(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.termios().local_flags.contains(LocalFlags::ISIG) {
            assert!(
                Instant::now() < deadline,
                "line editor still reading after {within:?}; screen:\n{}",
                self.screen().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Sends `sig` to the client, by PID.
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).expect("signal client");
    }

    /// Waits for the client to exit, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait client") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "client still running after {within:?}; screen:\n{}",
                self.screen().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The history file's bytes (empty if there is none).
    pub fn history_bytes(&self) -> Vec<u8> {
        std::fs::read(history_path(&self.home.0)).unwrap_or_default()
    }

    /// The entries of the history file, in order.
    pub fn history(&self) -> Vec<String> {
        let text = std::fs::read_to_string(history_path(&self.home.0)).unwrap_or_default();
        text.lines()
            .filter(|l| *l != "#V2" && !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Repl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the client keeps its history under `home`.
pub fn history_path(home: &Path) -> PathBuf {
    home.join(".paxoskv_client_history")
}

/// A minimal terminal: printable characters, CR, LF, BS, TAB, and the CSI
/// sequences a line editor uses (cursor moves, erase in line/display);
/// everything else is ignored. Lines never scroll away.
#[derive(Debug, Default)]
pub struct Screen {
    lines: Vec<Vec<char>>,
    row: usize,
    col: usize,
}

impl Screen {
    /// The visible lines after `output`, trailing blanks trimmed, up to the
    /// cursor's line.
    pub fn render(output: &str) -> Vec<String> {
        let mut s = Screen::default();
        s.lines.push(Vec::new());
        let mut chars = output.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => s.col = 0,
                '\n' => s.down(1),
                '\x08' => s.col = s.col.saturating_sub(1),
                '\t' => s.col = (s.col / 8 + 1) * 8,
                '\x1b' => match chars.next() {
                    Some('[') => {
                        let mut params = String::new();
                        let mut fin = None;
                        for c in chars.by_ref() {
                            if ('\x40'..='\x7e').contains(&c) {
                                fin = Some(c);
                                break;
                            }
                            params.push(c);
                        }
                        if let Some(f) = fin {
                            s.csi(&params, f);
                        }
                    }
                    Some(']') => {
                        // OSC: up to BEL or ESC \.
                        for c in chars.by_ref() {
                            if c == '\x07' || c == '\\' {
                                break;
                            }
                        }
                    }
                    _ => {}
                },
                c if c < ' ' || c == '\x7f' => {}
                c => s.put(c),
            }
        }
        s.lines.truncate(s.row + 1);
        s.lines
            .iter()
            .map(|l| l.iter().collect::<String>().trim_end().to_owned())
            .collect()
    }

    fn down(&mut self, n: usize) {
        self.row += n;
        while self.lines.len() <= self.row {
            self.lines.push(Vec::new());
        }
    }

    fn put(&mut self, c: char) {
        if self.col >= usize::from(COLS) {
            self.col = 0;
            self.down(1);
        }
        let line = &mut self.lines[self.row];
        while line.len() <= self.col {
            line.push(' ');
        }
        line[self.col] = c;
        self.col += 1;
    }

    fn csi(&mut self, params: &str, fin: char) {
        if params.starts_with('?') {
            return; // private modes (bracketed paste, cursor visibility)
        }
        let n = params
            .split(';')
            .next()
            .and_then(|p| p.parse::<usize>().ok());
        let count = n.unwrap_or(1).max(1);
        match fin {
            'A' => self.row = self.row.saturating_sub(count),
            'B' => self.down(count),
            'C' => self.col += count,
            'D' => self.col = self.col.saturating_sub(count),
            'G' => self.col = count - 1,
            'K' => {
                let line = &mut self.lines[self.row];
                match n.unwrap_or(0) {
                    0 => line.truncate(self.col),
                    1 => line.iter_mut().take(self.col + 1).for_each(|c| *c = ' '),
                    _ => line.clear(),
                }
            }
            'J' if n.unwrap_or(0) == 0 => {
                self.lines[self.row].truncate(self.col);
                self.lines.truncate(self.row + 1);
            }
            _ => {}
        }
    }
}

#[test]
fn the_screen_shows_what_a_line_editor_leaves_visible() {
    // A prompt redrawn after each key, an edit with cursor moves, an
    // erased line, and echo-less output.
    let out = "banner\r\n> P\r\x1b[K> PU\r\x1b[K> PUT\r\n\x1b[?2004hOK\r\n> abc\x1b[2Dx\x1b[K\r\n> gone\r\x1b[K> ";
    assert_eq!(Screen::render(out), ["banner", "> PUT", "OK", "> ax", ">"]);
}
