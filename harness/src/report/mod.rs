//! Reports for humans: files written next to a run's history.
//!
//! - [`results`]: statistics of a run (ops by outcome, throughput, latency).
//! - [`explain`]: why a key is not linearizable, in words.
//! - [`plots`]: `latency.svg` and `rate.svg`.
//! - [`summary`]: the one-screen summary at the end of a run.
//! - [`timeline`]: `timeline.html`, the ops of an invalid key on a time axis.

pub mod explain;
pub mod plots;
pub mod results;
pub mod summary;
pub mod timeline;
