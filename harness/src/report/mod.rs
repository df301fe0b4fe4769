//! Reports for humans: files written next to a run's history.
//!
//! - [`timeline`]: `timeline.html`, the ops of an invalid key on a time axis.

pub mod timeline;
