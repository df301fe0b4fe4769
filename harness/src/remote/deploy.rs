//! What the harness runs on a node, as POSIX `sh` scripts: the layout of the
//! directory it owns there, and the scripts that prepare it, start a replica
//! detached, signal, stop and kill it, and pack its files for download.
//!
//! The owned dir (`cluster.hosts[i].dir`) holds `bin/server` (the uploaded
//! binary, kept between runs and replaced when its checksum differs), the
//! marker file `.paxoskv-harness`, and `run/`: node `n<i>`'s data dir
//! `run/n<i>/`, its log `run/n<i>.log`, and the PID files of the replica
//! (`n<i>.pid`) and of the wrapper shell that waits for it and records its
//! exit status (`n<i>.wpid`, `n<i>.exit`). The wrapper is started with
//! `setsid`, so it and the replica form a session and process group of their
//! own that outlive the SSH command; a kill and a stop end the whole group.
//!
//! The harness only ever deletes `run/n<i>*` of its own nodes, and refuses a
//! dir that is not empty and has no marker (it did not create it). The
//! replica's environment carries `PAXOSKV_HARNESS_NODE=<its run path>`, so
//! that [`prepare`] can recognise, and kill, a replica a crashed harness left
//! behind without ever killing a process that merely reuses its PID.

use super::ssh::quote;

/// The marker file in a dir the harness owns.
pub const MARKER: &str = ".paxoskv-harness";

/// Where node `name`'s files lie on its host, under the owned dir `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub base: String,
    /// `n<i>`.
    pub name: String,
}

/// `alive PID`: true while the process exists and is not a zombie.
const ALIVE: &str = r#"alive() { s=$(sed 's/.*) //' /proc/"$1"/stat 2>/dev/null | cut -c1); [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]; }"#;

impl Layout {
    pub fn bin(&self) -> String {
        format!("{}/bin/server", self.base)
    }
    pub fn run_dir(&self) -> String {
        format!("{}/run", self.base)
    }
    pub fn data_dir(&self) -> String {
        format!("{}/run/{}", self.base, self.name)
    }
    fn head(&self) -> String {
        format!(
            "d={}; n={}\n{ALIVE}\n",
            quote(&self.base),
            quote(&self.name)
        )
    }
}

/// Claims the owned dir (refusing a foreign one), kills what a crashed
/// harness left of this node, wipes its files and reports the login's uid
/// (`uid=N`) and the checksum of the binary already there (`sha=HEX`).
pub fn prepare(l: &Layout) -> String {
    format!(
        r#"{head}set -e
if [ -e "$d" ] && [ ! -e "$d/{MARKER}" ] && [ -n "$(ls -A "$d" 2>/dev/null)" ]; then
  echo "$d is not empty and was not made by the harness (no $d/{MARKER}): refusing to touch it; give the node another cluster.hosts dir" >&2
  exit 3
fi
mkdir -p "$d/bin" "$d/run"
touch "$d/{MARKER}"
for f in "$d/run/$n.wpid" "$d/run/$n.pid"; do
  [ -s "$f" ] || continue
  p=$(cat "$f")
  if alive "$p" && tr '\0' '\n' < /proc/"$p"/environ 2>/dev/null | grep -qxF "PAXOSKV_HARNESS_NODE=$d/run/$n"; then
    kill -KILL -- -"$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
    echo "stale=$p"
  fi
done
rm -rf "$d/run/$n" "$d/run/$n.log" "$d/run/$n.pid" "$d/run/$n.wpid" "$d/run/$n.exit"
mkdir -p "$d/run/$n"
echo "uid=$(id -u)"
if [ -f "$d/bin/server" ]; then echo "sha=$(sha256sum "$d/bin/server" | cut -d' ' -f1)"; fi
"#,
        head = l.head()
    )
}

/// Replaces `bin/server` with the bytes on stdin (atomically: a temporary
/// file per node, then a rename).
pub fn upload(l: &Layout) -> String {
    format!(
        r#"{head}set -e
t="$d/bin/.server.$n.tmp"
cat > "$t"
chmod 755 "$t"
mv -f "$t" "$d/bin/server"
"#,
        head = l.head()
    )
}

/// Starts `argv` detached (start number `start`), appending to the node's
/// log; prints `pid=P wpid=W`.
pub fn start(l: &Layout, argv: &[String], start: u32, rust_log: &str) -> String {
    let line = argv.join(" ");
    let banner = format!("=== harness: start #{start} of {}: {line}", l.name);
    let words: Vec<String> = argv.iter().map(|a| quote(a)).collect();
    format!(
        r#"{head}set -e
cd "$d/run"
rm -f "$n.pid" "$n.wpid" "$n.exit"
mkdir -p "$n"
printf '%s\n' {banner} >> "$n.log"
PAXOSKV_HARNESS_NODE="$d/run/$n" RUST_LOG={rust_log} setsid sh -c 'echo $$ > "$0.wpid"; "$@" >> "$0.log" 2>&1 < /dev/null & echo $! > "$0.pid"; wait $!; echo $? > "$0.exit"' "$n" {words} > /dev/null 2>&1 < /dev/null &
i=0
while [ ! -s "$n.pid" ] || [ ! -s "$n.wpid" ]; do
  i=$((i+1)); [ $i -le 200 ] || {{ echo "no PID file after 10 s" >&2; exit 1; }}
  sleep 0.05
done
echo "pid=$(cat "$n.pid") wpid=$(cat "$n.wpid")"
"#,
        head = l.head(),
        banner = quote(&banner),
        rust_log = quote(rust_log),
        words = words.join(" "),
    )
}

/// Sends `signal` (STOP, CONT) to the replica `pid`.
pub fn signal(pid: u32, signal: &str) -> String {
    format!("kill -{signal} {pid}")
}

/// Waits up to `ticks` × 50 ms for `$p` to be gone (true when it is).
fn wait_gone(ticks: u32) -> String {
    format!(r#"i=0; while alive "$p" && [ $i -lt {ticks} ]; do sleep 0.05; i=$((i+1)); done"#)
}

/// SIGKILLs the node's process group and waits (5 s) until the replica is
/// gone.
pub fn kill(l: &Layout, pid: u32, wpid: u32) -> String {
    format!(
        r#"{head}p={pid}; w={wpid}
kill -KILL -- -"$w" 2>/dev/null || true
kill -KILL "$p" 2>/dev/null || true
{wait}
if alive "$p"; then echo "$n (pid $p) still alive 5 s after SIGKILL" >&2; exit 1; fi
"#,
        head = l.head(),
        wait = wait_gone(100)
    )
}

/// Clean stop: SIGTERM and SIGCONT to the replica, SIGKILL to its group
/// after `grace_ms`; waits until it is gone.
pub fn stop(l: &Layout, pid: u32, wpid: u32, grace_ms: u64) -> String {
    format!(
        r#"{head}p={pid}; w={wpid}
kill -TERM "$p" 2>/dev/null || true
kill -CONT "$p" 2>/dev/null || true
{grace}
kill -KILL -- -"$w" 2>/dev/null || true
kill -KILL "$p" 2>/dev/null || true
{wait}
if alive "$p"; then echo "$n (pid $p) still alive after SIGKILL" >&2; exit 1; fi
"#,
        head = l.head(),
        grace = wait_gone((grace_ms / 50).max(1) as u32),
        wait = wait_gone(100)
    )
}

/// `running`, or `exit=CODE` (`exit=unknown` if the wrapper did not record
/// one) with the end of the log after it.
pub fn status(l: &Layout, pid: u32) -> String {
    format!(
        r#"{head}p={pid}
if alive "$p"; then echo running; exit 0; fi
sleep 0.1
echo "exit=$(cat "$d/run/$n.exit" 2>/dev/null || echo unknown)"
tail -c 65536 "$d/run/$n.log" 2>/dev/null || true
"#,
        head = l.head()
    )
}

/// A tar of the node's data dir and log on stdout.
pub fn pack(l: &Layout) -> String {
    format!(
        r#"{head}cd "$d/run" && tar -cf - "$n" "$n.log""#,
        head = l.head()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sh(script: &str) -> (bool, String, String) {
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn layout(dir: &std::path::Path) -> Layout {
        Layout {
            base: dir.join("owned").display().to_string(),
            name: "n0".into(),
        }
    }

    #[test]
    fn prepare_claims_an_empty_dir_and_refuses_a_foreign_one() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        let (ok, out, err) = sh(&prepare(&l));
        assert!(ok, "{err}");
        assert!(out.contains("uid="), "{out}");
        assert!(tmp.path().join("owned").join(MARKER).exists());
        assert!(tmp.path().join("owned/run/n0").is_dir());
        // Someone else's dir with files in it: untouched.
        let foreign = tmp.path().join("foreign");
        std::fs::create_dir_all(&foreign).unwrap();
        std::fs::write(foreign.join("precious"), "x").unwrap();
        let l2 = Layout {
            base: foreign.display().to_string(),
            name: "n0".into(),
        };
        let (ok, _, err) = sh(&prepare(&l2));
        assert!(!ok);
        assert!(err.contains("refusing to touch it"), "{err}");
        assert!(foreign.join("precious").exists());
        assert!(!foreign.join("run").exists());
    }

    #[test]
    fn a_detached_node_starts_stops_and_records_its_exit() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout(tmp.path());
        assert!(sh(&prepare(&l)).0);
        let argv = vec!["sh".into(), "-c".into(), "echo hello; sleep 30".into()];
        let (ok, out, err) = sh(&start(&l, &argv, 1, "info"));
        assert!(ok, "{err}");
        let nums: Vec<u32> = out
            .split_whitespace()
            .filter_map(|w| w.split('=').nth(1)?.parse().ok())
            .collect();
        let (pid, wpid) = (nums[0], nums[1]);
        let (_, st, _) = sh(&status(&l, pid));
        assert_eq!(st.trim(), "running");
        let (ok, _, err) = sh(&stop(&l, pid, wpid, 2000));
        assert!(ok, "{err}");
        let (_, st, _) = sh(&status(&l, pid));
        assert!(st.starts_with("exit="), "{st}");
        assert!(st.contains("hello"), "{st}");
        let log = std::fs::read_to_string(tmp.path().join("owned/run/n0.log")).unwrap();
        assert!(log.contains("=== harness: start #1 of n0"), "{log}");
        // A replica left behind by a crashed harness is found by its
        // environment and killed by the next prepare.
        let (_, out, _) = sh(&start(&l, &argv, 2, "info"));
        let pid: u32 = out.split(['=', ' ']).nth(1).unwrap().parse().unwrap();
        let (ok, out, err) = sh(&prepare(&l));
        assert!(ok, "{err}");
        assert!(out.contains("stale="), "{out}");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (_, st, _) = sh(&status(&l, pid));
        assert!(st.starts_with("exit="), "{st}");
    }
}
