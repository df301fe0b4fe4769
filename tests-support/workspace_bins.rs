//! Finding another package's binary from an integration test.
//!
//! Cargo gives a test only its own package's binaries (`CARGO_BIN_EXE_*`).
//! The end-to-end tests also need `server` and `client`, so they bring every
//! binary of the workspace up to date once per test binary with
//! `cargo build --workspace --bins --examples`. That command resolves the
//! same feature set as `cargo test --workspace` (the README's test command),
//! so after it nothing is recompiled; `cargo build -p server` would resolve a
//! smaller set and rebuild some thirty dependencies a second time.
//!
//! Included by path from `harness/tests/common` and `client/tests/tty`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding the workspace's binaries, built and up to date.
/// `own_bin` is the calling test's own binary (`env!("CARGO_BIN_EXE_...")`),
/// which names the target dir and profile.
pub fn workspace_bin_dir(own_bin: &str, manifest_dir: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = Path::new(own_bin)
                .parent()
                .expect("a test binary has a parent dir")
                .to_path_buf();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--workspace", "--bins", "--examples"])
                .current_dir(manifest_dir);
            if dir.file_name().is_some_and(|d| d == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("cannot run cargo (is it on PATH?)");
            assert!(
                status.success(),
                "`cargo build --workspace --bins --examples` failed"
            );
            dir
        })
        .clone()
}

/// One binary of the workspace by name (`server`, `client`, `harness`).
pub fn workspace_bin(own_bin: &str, manifest_dir: &str, name: &str) -> PathBuf {
    let path = workspace_bin_dir(own_bin, manifest_dir).join(name);
    assert!(
        path.is_file(),
        "no {name} binary at {} after cargo build",
        path.display()
    );
    path
}
