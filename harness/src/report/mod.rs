//! Reports of a run: statistics and results.json ([`results`]), plots
//! ([`plots`]) and the end-of-run summary ([`summary`]).

pub mod plots;
pub mod results;
