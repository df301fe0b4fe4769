//! Orchestration of a run.
pub mod worker;
