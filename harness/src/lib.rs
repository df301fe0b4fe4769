//! paxoskv harness: Jepsen-style testing of a real cluster.
//!
//! - [`history`]: Jepsen histories (op model, EDN read/write, pairing).
//! - [`checker`]: linearizability checker (models, per-key WGL search).
//! - [`report`]: human-facing outputs (timeline.html).
//! - [`cli`]: the `harness` command line (subcommands).

pub mod checker;
pub mod cli;
pub mod history;
pub mod report;
