//! paxoskv replica: the Multi-Paxos core and the runtime that drives it.
//!
//! - [`config`]: the command line (the original C++ project's text format
//!   and flags).
//! - [`paxos`] and [`kv`]: the pure core (no I/O) and the state machine.
//! - [`storage`]: durable state (checksummed WAL + atomic checkpoints).
//! - [`convert`]: core types ⇄ protobuf, with validation of network input.
//! - [`envelope`]: outgoing peer envelopes of messages encoded once.
//! - [`node`]: the runtime task that drives the core, and the storage thread.
//! - [`peer`]: outbound peer channels and the `Paxos` gRPC service.
//! - [`service`]: the client-facing `Kv` gRPC service; [`forward`]: client
//!   requests a follower forwards to the coordinator on the peer streams.
//! - [`run`]: wiring a whole replica together; [`shutdown`]: clean stop.

pub mod config;
pub mod convert;
pub mod envelope;
pub mod forward;
pub mod kv;
pub mod node;
pub mod paxos;
pub mod peer;
pub mod run;
pub mod service;
pub mod shutdown;
pub mod storage;
