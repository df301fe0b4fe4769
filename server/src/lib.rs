//! paxoskv replica: the Multi-Paxos core and the runtime that drives it.

pub mod kv;
pub mod paxos;
pub mod storage;
