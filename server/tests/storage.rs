//! Damaged and unusable data directories, as a user meets them with real
//! processes: a replica whose WAL was damaged in the middle refuses to start
//! (exit 1, naming file and offset) while the others keep serving; a torn
//! last record is dropped and logged; with `--unsafe-no-fsync` the same
//! damage resets the replica instead; a foreign or unreadable data directory
//! is named.

use crate::common;

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{server_bin, Cluster, Proc, TempDir, FAST};
use server::storage::layout::{self, SpanKind};

const START: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_wal_refuses_to_start_and_the_others_keep_serving() {
    let mut c = Cluster::start("damaged", 3, 26000, FAST);
    c.wait_leader(&[0, 1, 2], START).await;
    let mut cl = c.client();
    for i in 0..40 {
        cl.put(&format!("d{i}"), &format!("v{i}"))
            .await
            .expect("put");
    }
    c.kill(2);
    // One byte of a record in the middle of replica 2's WAL.
    let data = c.root().join("data-2");
    let records: Vec<_> = layout::scan(&data)
        .expect("scan")
        .into_iter()
        .filter(|s| matches!(s.kind, SpanKind::WalRecord { .. }))
        .collect();
    assert!(records.len() >= 10, "{records:?}");
    let victim = &records[records.len() / 2];
    let wal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&victim.file)
        .expect("open wal");
    let at = victim.offset + victim.len / 2;
    let mut byte = [0u8];
    wal.read_exact_at(&mut byte, at).expect("read");
    wal.write_all_at(&[byte[0] ^ 0x01], at).expect("flip");
    drop(wal);
    let damaged = std::fs::read(&victim.file).expect("read wal");

    c.spawn(2);
    let status = c.procs[2]
        .as_mut()
        .expect("spawned")
        .wait_exit(Duration::from_secs(15));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", c.logs());
    let log = std::fs::read_to_string(c.log_path(2)).expect("log");
    for needle in [
        &victim.file.display().to_string(),
        &format!("damaged at byte {}", victim.offset),
        "a valid record follows",
        "Refusing to start",
    ] {
        assert!(log.contains(needle), "missing {needle:?} in:\n{log}");
    }
    assert_eq!(
        std::fs::read(&victim.file).expect("read wal"),
        damaged,
        "the refusal left the file as it was"
    );
    // The other two still form a majority.
    for i in 40..50 {
        cl.put(&format!("d{i}"), "after").await.expect("put after");
    }
    let r = cl.get("d7").await.expect("get");
    assert_eq!(r.value.as_deref(), Some("v7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_record_is_dropped_and_logged_on_restart() {
    let mut c = Cluster::start("torn", 3, 26200, FAST);
    c.wait_leader(&[0, 1, 2], START).await;
    let mut cl = c.client();
    for i in 0..20 {
        cl.put(&format!("t{i}"), "v").await.expect("put");
    }
    c.kill(1);
    // A crash in the middle of a write: half a record after the last one.
    let data = c.root().join("data-1");
    let spans = layout::scan(&data).expect("scan data dir");
    let last = spans.last().expect("a record");
    assert!(last.tail, "{last:?}");
    let torn_at = last.offset + last.len;
    let wal = std::fs::OpenOptions::new()
        .write(true)
        .open(&last.file)
        .expect("open wal");
    wal.write_all_at(&[b'P', b'X', b'R', b'2', 1, 2, 3, 4, 5, 6, 7], torn_at)
        .expect("write wal");
    drop(wal);
    c.spawn(1);
    for i in 20..30 {
        cl.put(&format!("t{i}"), "v").await.expect("put");
    }
    c.wait_converged(&[0, 1, 2], Duration::from_secs(20)).await;
    let log = std::fs::read_to_string(c.log_path(1)).expect("log");
    assert!(log.contains("dropped a torn last WAL record"), "{log}");
    assert!(log.contains(&format!("offset={torn_at}")), "{log}");
}

/// `--unsafe-no-fsync` reaches storage: the same damage that is refused
/// with fsync on resets the directory (the replica forgets its state, which
/// is what the flag's warning says).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fsync_a_damaged_wal_resets_the_replica() {
    let mut flags = FAST.to_vec();
    flags.push("--unsafe-no-fsync");
    let mut c = Cluster::start("nofsync", 1, 26300, &flags);
    c.wait_leader(&[0], START).await;
    let mut cl = c.client();
    for i in 0..10 {
        cl.put(&format!("n{i}"), "v").await.expect("put");
    }
    c.kill(0);
    let data = c.root().join("data-0");
    let records: Vec<_> = layout::scan(&data)
        .expect("scan")
        .into_iter()
        .filter(|s| matches!(s.kind, SpanKind::WalRecord { .. }))
        .collect();
    assert!(records.len() >= 3, "{records:?}");
    let victim = &records[1];
    let wal = std::fs::OpenOptions::new()
        .write(true)
        .open(&victim.file)
        .expect("open wal");
    wal.write_all_at(b"XXXX", victim.offset).expect("damage");
    drop(wal);
    c.spawn(0);
    c.wait_leader(&[0], START).await;
    let log = std::fs::read_to_string(c.log_path(0)).expect("log");
    assert!(
        log.contains("--unsafe-no-fsync: nothing is fsynced"),
        "{log}"
    );
    assert!(
        log.contains("reset to empty; this replica has forgotten"),
        "{log}"
    );
    let r = cl.get("n5").await.expect("get");
    assert_eq!(r.value, None, "the state was forgotten");
}

/// Runs `server` on data directory `data` (as user `uid` if given) and
/// returns its exit code and stderr.
fn start_on(data: &std::path::Path, port: u16, uid: Option<u32>) -> (Option<i32>, String) {
    let dir = TempDir::new("storage-cli");
    let err_path = dir.0.join("stderr");
    let paxos = format!("127.0.0.1:{}", port + 1);
    let mut cmd = Command::new(server_bin());
    cmd.arg("--my-addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--my-paxos")
        .arg(&paxos)
        .arg("--replica")
        .arg(&paxos)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&err_path).expect("stderr file"));
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let mut p = Proc::new(cmd.spawn().expect("spawn server"));
    let status = p.wait_exit(Duration::from_secs(10));
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    (status.and_then(|s| s.code()), stderr)
}

#[test]
fn a_foreign_data_directory_is_named_and_left_alone() {
    let dir = TempDir::new("foreign");
    std::fs::write(dir.0.join("thesis.tex"), "precious").expect("write");
    let (code, stderr) = start_on(&dir.0, 26100, None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&dir.0.display().to_string())
            && stderr.contains("thesis.tex")
            && stderr.contains("not a paxoskv data directory"),
        "{stderr}"
    );
    let entries: Vec<_> = std::fs::read_dir(&dir.0).expect("ls").collect();
    assert_eq!(entries.len(), 1, "nothing was created in it");
}

/// Permission checks do not apply to root, so as root the server runs as
/// `nobody` (uid 65534); otherwise the directory is made unreadable.
#[test]
fn an_unreadable_data_directory_is_named() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = TempDir::new("unreadable");
    let data = root.0.join("data");
    std::fs::create_dir(&data).expect("mkdir");
    // A directory we just created is owned by our effective uid.
    let is_root =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&data).expect("stat")) == 0;
    let mode = if is_root { 0o700 } else { 0o000 };
    // The temp root must be traversable by the other user.
    std::fs::set_permissions(&root.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(mode)).expect("chmod");
    let (code, stderr) = start_on(&data, 26110, is_root.then_some(65534));
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&data.display().to_string()) && stderr.contains("Permission denied"),
        "{stderr}"
    );
}
