//! Reports of a run: statistics ([`results`]), plots ([`plots`]) and the
//! end-of-run summary ([`summary`]).

pub mod plots;
pub mod results;
pub mod summary;
