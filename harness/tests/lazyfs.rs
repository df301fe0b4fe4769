//! The lazyfs mount, for real through FUSE: what fsync makes durable
//! survives `lose_unsynced`, nothing else does, files read back what was
//! written, and a real 3-replica cluster runs on three mounts (and keeps its
//! acknowledged writes when a replica loses its unsynced writes).
//!
//! Needs /dev/fuse and fusermount3 (`apt-get install fuse3`): without them
//! every test here FAILS, saying what is missing. Ports 26500-26519.

use crate::common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::lazyfs::{self, LazyMount};

/// A scratch dir with `backing/` and `mnt/`, mounted; unmounted (by Drop)
/// even when an assertion fails.
struct Mounted {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    mount: Option<LazyMount>,
}

impl Mounted {
    fn new(name: &str) -> Mounted {
        if let Err(e) = lazyfs::check_available() {
            panic!("{e}");
        }
        let tmp = common::scratch(&format!("lazyfs-{name}"));
        let dir = tmp.path().to_path_buf();
        let mount = LazyMount::mount(&dir.join("backing"), &dir.join("mnt"))
            .unwrap_or_else(|e| panic!("{e}"));
        Mounted {
            _tmp: tmp,
            dir,
            mount: Some(mount),
        }
    }
    fn mnt(&self) -> PathBuf {
        self.mount.as_ref().unwrap().mountpoint().to_path_buf()
    }
    fn backing(&self) -> PathBuf {
        self.dir.join("backing")
    }
    fn lose(&self) -> lazyfs::Loss {
        self.mount.as_ref().unwrap().lose_unsynced().unwrap()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(m) = self.mount.take() {
            let mp = m.mountpoint().to_path_buf();
            m.unmount().unwrap();
            assert!(!is_mounted(&mp), "{} still mounted", mp.display());
        }
    }
}

fn is_mounted(p: &Path) -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
}

fn sync_dir(p: &Path) {
    File::open(p).unwrap().sync_all().unwrap();
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
fn files_read_back_what_was_written() {
    let m = Mounted::new("readback");
    let p = m.mnt().join("f");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    fs::write(&p, &data).unwrap();
    assert_eq!(fs::read(&p).unwrap(), data);
    assert_eq!(fs::metadata(&p).unwrap().len(), 100_000);
    // Overwrite in the middle, append, truncate: as a normal file would.
    let mut f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    f.seek(SeekFrom::Start(5000)).unwrap();
    f.write_all(b"middle").unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b"end").unwrap();
    let mut expect = data.clone();
    expect[5000..5006].copy_from_slice(b"middle");
    expect.extend_from_slice(b"end");
    let mut got = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut got).unwrap();
    assert_eq!(got, expect);
    f.set_len(10).unwrap();
    drop(f);
    assert_eq!(fs::read(&p).unwrap(), &expect[..10]);
    fs::create_dir(m.mnt().join("d")).unwrap();
    fs::write(m.mnt().join("d/x"), b"x").unwrap();
    assert_eq!(names(&m.mnt()), ["d", "f"]);
    assert_eq!(names(&m.mnt().join("d")), ["x"]);
    // Nothing was synced: the backing dir has the names but no data yet.
    assert_eq!(fs::metadata(m.backing().join("f")).unwrap().len(), 0);
}

#[test]
fn fsynced_data_survives_a_loss_and_unsynced_data_does_not() {
    let m = Mounted::new("data");
    let p = m.mnt().join("wal");
    let mut f = File::create(&p).unwrap();
    sync_dir(&m.mnt());
    f.write_all(b"synced;").unwrap();
    f.sync_data().unwrap();
    f.write_all(b"not synced").unwrap();
    drop(f);
    assert_eq!(fs::read(&p).unwrap(), b"synced;not synced");
    let loss = m.lose();
    assert_eq!(loss.files, 1);
    assert_eq!(fs::read(&p).unwrap(), b"synced;");
    assert_eq!(fs::read(m.backing().join("wal")).unwrap(), b"synced;");
    // A file never fsynced loses everything, even though it was closed.
    fs::write(m.mnt().join("wal"), b"rewritten").unwrap();
    m.lose();
    assert_eq!(fs::read(&p).unwrap(), b"synced;");
}

#[test]
fn rename_without_directory_fsync_is_undone() {
    let m = Mounted::new("rename");
    let ckpt = m.mnt().join("checkpoint");
    let tmp = m.mnt().join("checkpoint.tmp");
    let mut f = File::create(&ckpt).unwrap();
    f.write_all(b"old").unwrap();
    f.sync_all().unwrap();
    sync_dir(&m.mnt());
    // Replace it atomically, but forget the directory fsync.
    let mut f = File::create(&tmp).unwrap();
    f.write_all(b"new").unwrap();
    f.sync_all().unwrap();
    fs::rename(&tmp, &ckpt).unwrap();
    fs::remove_file(m.mnt().join("checkpoint")).ok();
    File::create(m.mnt().join("new-file")).unwrap();
    assert_eq!(names(&m.mnt()), ["new-file"]);
    let loss = m.lose();
    assert!(loss.dir_changes >= 4, "{loss:?}");
    assert_eq!(names(&m.mnt()), ["checkpoint"]);
    assert_eq!(fs::read(&ckpt).unwrap(), b"old");
    // With the directory fsync it sticks.
    let mut f = File::create(&tmp).unwrap();
    f.write_all(b"new").unwrap();
    f.sync_all().unwrap();
    fs::rename(&tmp, &ckpt).unwrap();
    sync_dir(&m.mnt());
    m.lose();
    assert_eq!(names(&m.mnt()), ["checkpoint"]);
    assert_eq!(fs::read(&ckpt).unwrap(), b"new");
}

#[test]
fn unmount_writes_back_and_removes_the_mount() {
    let mut m = Mounted::new("unmount");
    fs::write(m.mnt().join("f"), b"kept at a clean unmount").unwrap();
    let mount = m.mount.take().unwrap();
    let mp = mount.mountpoint().to_path_buf();
    assert!(lazyfs::registered_mounts().contains(&mp));
    mount.unmount().unwrap();
    assert!(!is_mounted(&mp));
    assert!(!lazyfs::registered_mounts().contains(&mp));
    assert_eq!(
        fs::read(m.backing().join("f")).unwrap(),
        b"kept at a clean unmount"
    );
}

/// Mounts left by a harness that died by SIGKILL are detached by the next
/// one: a child process (this test binary, re-run as a helper) mounts and is
/// killed.
#[test]
fn a_killed_harness_leaves_a_mount_that_the_next_start_cleans() {
    if let Ok(dir) = std::env::var("LAZYFS_TEST_MOUNT_AND_HANG") {
        let dir = PathBuf::from(dir);
        let m = LazyMount::mount(&dir.join("backing"), &dir.join("mnt")).unwrap();
        fs::write(dir.join("ready"), m.mountpoint().to_str().unwrap()).unwrap();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    lazyfs::check_available().unwrap_or_else(|e| panic!("{e}"));
    let tmp = common::scratch("lazyfs-stale");
    let dir = tmp.path().to_path_buf();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        // A filter, not `--exact`: the full name carries this file's module.
        .args([
            "a_killed_harness_leaves_a_mount_that_the_next_start_cleans",
            "--nocapture",
        ])
        .env("LAZYFS_TEST_MOUNT_AND_HANG", &dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = dir.join("ready");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ready.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mp = fs::read_to_string(&ready).map(PathBuf::from);
    child.kill().unwrap();
    child.wait().unwrap();
    let mp = mp.expect("the helper did not mount within 30 s");
    assert!(is_mounted(&mp), "the killed helper's mount should be left");
    let cleaned = lazyfs::clean_stale_mounts();
    assert!(cleaned.contains(&mp), "{cleaned:?}");
    assert!(!is_mounted(&mp));
}

/// The real server on three mounts: a few PUTs, then a replica is killed and
/// loses its unsynced writes, restarts, and the cluster still answers with
/// every acknowledged value.
#[test]
fn a_real_cluster_runs_on_lazyfs_and_survives_a_loss() {
    use harness::cluster::{Cluster, ClusterConfig};
    use harness::workload::ReadMode;
    lazyfs::check_available().unwrap_or_else(|e| panic!("{e}"));
    let tmp = common::scratch("lazyfs-cluster");
    let dir = tmp.path().to_path_buf();
    let config = ClusterConfig {
        server_bin: common::server_bin(),
        replicas: 3,
        host: "127.0.0.1".into(),
        base_client_port: 26500,
        base_paxos_port: 26510,
        fail_rate: 0.0,
        read_mode: ReadMode::Quorum,
        extra_flags: vec![],
        dir: dir.clone(),
        command_lines: None,
    };
    let mut cluster = Cluster::new(config).unwrap();
    cluster.mount_lazyfs().unwrap_or_else(|e| panic!("{e:#}"));
    assert!(cluster.on_lazyfs());
    let mountpoints: Vec<PathBuf> = cluster.nodes.iter().map(|n| n.data_dir.clone()).collect();
    let mut cluster = ClusterGuard(cluster);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addrs = cluster.0.client_addrs();
    rt.block_on(async {
        cluster.0.start_all().unwrap();
        harness::db::paxoskv::wait_for_coordinator(&addrs, Duration::from_secs(30))
            .await
            .unwrap();
        let mut c = client::Client::new(addrs.clone(), Default::default()).unwrap();
        for i in 0..10 {
            c.put(&format!("k{i}"), &format!("v{i}")).await.unwrap();
        }
        // A follower crashes and loses what it had not synced.
        let st = harness::db::paxoskv::statuses(&addrs, Duration::from_secs(1)).await;
        let leader = harness::db::paxoskv::leader_of(&st).unwrap();
        let victim = (leader + 1) % 3;
        cluster.0.kill(victim).unwrap();
        let loss = cluster.0.lose_unsynced(victim).unwrap();
        eprintln!("n{victim} lost {loss:?}");
        cluster.0.start(victim).unwrap();
        for i in 10..15 {
            c.put(&format!("k{i}"), &format!("v{i}")).await.unwrap();
        }
        harness::db::paxoskv::wait_for_coordinator(&addrs, Duration::from_secs(30))
            .await
            .unwrap();
        for i in 0..15 {
            let r = c.get(&format!("k{i}")).await.unwrap();
            assert_eq!(r.value.as_deref(), Some(format!("v{i}").as_str()));
        }
    });
    cluster.0.stop_all(Duration::from_secs(5));
    drop(cluster);
    for m in &mountpoints {
        assert!(!is_mounted(m), "{} still mounted", m.display());
    }
    // The data stayed in the backing dirs.
    for i in 0..3 {
        let files = names(&dir.join(format!("n{i}")));
        assert!(
            files.iter().any(|f| f.starts_with("wal-")),
            "n{i}: {files:?}"
        );
    }
}

/// Stops the cluster (and so unmounts its mounts) even when an assertion
/// fails.
struct ClusterGuard(harness::cluster::Cluster);
impl Drop for ClusterGuard {
    fn drop(&mut self) {
        self.0.stop_all(Duration::from_secs(2));
    }
}
