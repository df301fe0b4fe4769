//! paxoskv harness: Jepsen-style testing of a real cluster.
//!
//! `harness run workload.yaml` starts a cluster of `server` processes
//! ([`cluster`]), drives concurrent clients ([`generator`], [`run`]) while the
//! [`nemesis`] breaks it on schedule, records the history ([`recorder`]),
//! checks it and writes a report ([`report`]) into the store ([`store`]).

pub mod cli;
pub mod cluster;
pub mod generator;
pub mod recorder;
pub mod workload;
pub mod nemesis;
pub mod progress;
pub mod report;
pub mod run;
pub mod store;
