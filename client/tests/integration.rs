//! The client's integration tests, one module per file of this directory,
//! compiled into one test binary (the dependency tree is linked once, not
//! once per file).
//!
//! Test names keep their file: `cargo test -p client --test integration
//! failover::` runs the tests of `failover.rs`. Every file keeps its own
//! port range, so the files' tests can run side by side in this one process.

/// A scripted in-process fake of the `Kv` service.
mod common;
/// The REPL on a pseudo-terminal, and a real one-replica server.
mod tty;

mod cli;
mod failover;
mod repl_tty;
