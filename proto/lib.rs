//! The paxoskv wire protocol, and the vocabulary the server, the client and
//! the harness share.
//!
//! - [`kv`]: the client-facing API served on `my_addr` (GET, PUT, DELETE, CAS,
//!   APPEND, Status).
//! - [`paxos`]: the replica-to-replica API served on `my_paxos` (Paxos phases,
//!   heartbeats, catch-up, snapshots, forwarding).
//! - [`op`]: the command type [`Op`], its mapping to and from the protobuf
//!   request, and the key and value size limits.
//! - [`outcome`]: whether a failed command may have taken effect
//!   ([`Outcome`], the `paxoskv-outcome` trailer), and whether a transport
//!   error means nothing was sent.
//! - [`read_mode`]: how the coordinator answers GET ([`ReadMode`]).
//! - [`addr`]: the `host:port` parser ([`HostPort`]).

pub mod addr;
pub mod op;
pub mod outcome;
pub mod read_mode;

pub use addr::{AddrError, HostPort};
pub use op::{Op, OpError, MAX_KEY_BYTES, MAX_VALUE_BYTES};
pub use outcome::{refused_before_sending, Outcome, OUTCOME_TRAILER};
pub use read_mode::ReadMode;

/// Client API (`proto/kv.proto`).
pub mod kv {
    tonic::include_proto!("paxoskv.kv");
}

/// Replica-to-replica API (`proto/paxos.proto`).
pub mod paxos {
    tonic::include_proto!("paxoskv.paxos");
}
