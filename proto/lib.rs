//! The paxoskv wire protocol.
//!
//! - [`kv`]: the client-facing API served on `my_addr` (GET, PUT, DELETE, CAS,
//!   APPEND, Status).
//! - [`paxos`]: the replica-to-replica API served on `my_paxos` (Paxos phases,
//!   heartbeats, catch-up, snapshots, forwarding).

/// Client API (`proto/kv.proto`).
pub mod kv {
    tonic::include_proto!("paxoskv.kv");
}

/// Replica-to-replica API (`proto/paxos.proto`).
pub mod paxos {
    tonic::include_proto!("paxoskv.paxos");
}
