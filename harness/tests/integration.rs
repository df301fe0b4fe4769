//! The harness's integration tests, one module per file of this directory,
//! compiled into one test binary: linking the whole dependency tree (tokio,
//! tonic, the checker) once instead of once per file is what keeps a
//! from-scratch `cargo test --workspace` within its time on two cores.
//!
//! Test names keep their file: `cargo test -p harness --test integration
//! e2e_run::` runs the tests of `e2e_run.rs`, and a full name such as
//! `lazyfs::unmount_writes_back_and_removes_the_mount` runs one test. Every
//! file keeps its own port range (its module doc says which), so the files'
//! tests can run side by side in this one process.
//!
//! One file is not here: `exec_run.rs` is a test binary of its own
//! (`--test exec_run`). Its runs start a python process and a `client` per
//! op, enough load for two cores, so they run alone, as they did before
//! the merge, not next to another file's tests.

/// Shared helpers: binaries, `harness run` with a deadline, scratch dirs.
mod common;

mod brute_force;
mod cli;
mod e2e_network;
mod e2e_run;
mod etcd_run;
mod explain;
mod lazyfs;
mod net_proxy;
mod no_fsync;
mod processes;
mod property;
mod recorded_history;
mod reference_histories;
mod remote_hosts;
mod rules;
mod serve_browser;
mod timeline;
mod workload_network;
mod workload_yaml;
