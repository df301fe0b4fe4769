//! paxoskv harness: Jepsen-style testing of a real cluster.
//!
//! `harness run workload.yaml` starts a cluster of `server` processes
//! ([`cluster`], behind the database seam [`db`]), drives concurrent clients ([`generator`], [`run`]) while the
//! [`nemesis`] breaks it on schedule, records the history ([`recorder`]),
//! checks it and writes a report ([`report`]) into the store ([`store`]).
//!
//! - [`history`]: Jepsen histories (op model, EDN read/write, pairing).
//! - [`checker`]: linearizability checker (models, per-key WGL search).
//! - [`report`]: human-facing outputs (timeline.html, plots, summary).
//! - [`lazyfs`]: a FUSE data dir that loses what was never fsynced.
//! - [`cli`]: the `harness` command line (subcommands).
//! - [`net`]: per-link TCP proxies and partition shapes (network faults).
//! - [`serve`]: `harness serve`, the store's runs as local web pages.
//! - [`remote`]: nodes on remote hosts over SSH (`cluster.hosts`).

pub mod checker;
pub mod cli;
pub mod cluster;
pub mod db;
pub mod generator;
pub mod history;
pub mod lazyfs;
pub mod nemesis;
pub mod net;
pub mod progress;
pub mod recorder;
pub mod remote;
pub mod report;
pub mod run;
pub mod serve;
pub mod store;
pub mod units;
pub mod workload;
