//! The server's integration tests against real `server` processes, one
//! module per file of this directory, compiled into one test binary (the
//! dependency tree is linked once, not once per file).
//!
//! Test names keep their file: `cargo test -p server --test integration
//! cluster::` runs the tests of `cluster.rs`. Every file keeps its own port
//! range, so the files' tests can run side by side in this one process.

/// Shared helpers: a local cluster of `server` processes, stopped by PID.
mod common;

mod cli;
mod cluster;
mod storage;
