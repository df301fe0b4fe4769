//! The server's configuration: the protobuf text format of the original C++
//! project, ordinary flags, and the checks that turn them into a
//! [`ServerConfig`].
//!
//! The original C++ project started a replica with one argument in protobuf
//! text format:
//!
//! ```text
//! server "my_addr:'0.0.0.0:8000' my_paxos:'0.0.0.0:9000' fail_rate:0.3 replica:'0.0.0.0:9000' replica:'0.0.0.0:9001'"
//! ```
//!
//! That still works verbatim. The same settings are flags (`--my-addr`,
//! `--my-paxos`, `--replica` repeatable or comma-separated, `--fail-rate`),
//! plus the settings the original did not have (`--data-dir`, `--read-mode`,
//! timing, snapshots). A flag overrides the text; `--replica` replaces the
//! text's whole replica list. Every mistake is reported with the field (and
//! line) at fault, so the caller can print it and exit with status 2
//! ([`ConfigError::exit`]).
//!
//! - `text.rs`: the text format's parser ([`parse_text`]).
//! - `flags.rs`: the command line ([`parse_args`]).
//! - `validate.rs`: flags over text, and the checks (addresses, the replica
//!   list, fail rate, timing).

mod flags;
mod text;
mod validate;

use std::path::PathBuf;
use std::time::Duration;

pub use flags::parse_args;
pub use paxoskv::ReadMode;
use text::TEXT_FIELDS;
pub use text::{parse_text, TextConfig};
pub use validate::MAX_WORKER_THREADS;

/// Everything a replica needs to know to start.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Client-facing gRPC address to listen on (`host:port`).
    pub my_addr: String,
    /// Replica-facing (Paxos) address to listen on (`host:port`).
    pub my_paxos: String,
    /// Paxos addresses of all replicas, own included, in priority order.
    pub replicas: Vec<String>,
    /// Where to connect to reach each replica, indexed like `replicas`: the
    /// listed address unless `--peer-dial ID=HOST:PORT` names another (e.g.
    /// a proxy between the replicas). Identities stay the list positions.
    pub dial: Vec<String>,
    /// Position of this replica (`my_paxos`) in `replicas`.
    pub replica_id: usize,
    /// Probability in [0, 1] that this replica, as an acceptor, drops a Paxos
    /// message without answering.
    pub fail_rate: f64,
    /// Where this replica keeps its durable state.
    pub data_dir: PathBuf,
    /// How GETs are answered.
    pub read_mode: ReadMode,
    /// Length of one logical clock tick.
    pub tick: Duration,
    /// Ticks between coordinator heartbeats.
    pub heartbeat_ticks: u32,
    /// Ticks without hearing from a live coordinator before a replica
    /// considers it dead (always more than `heartbeat_ticks`).
    pub election_ticks: u32,
    /// Log slots between snapshots; 0 disables snapshots.
    pub snapshot_every: u64,
    /// Byte budget of one replica-to-replica message (`--max-message-bytes`).
    pub max_message_bytes: usize,
    /// Threads of the async runtime (`--worker-threads`, 1 to
    /// [`MAX_WORKER_THREADS`]).
    pub worker_threads: usize,
    /// `--unsafe-no-fsync`: skip every fsync (knowingly unsafe, for the
    /// harness to show what losing unsynced writes does).
    pub unsafe_no_fsync: bool,
}

/// A configuration mistake, naming the field and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text config is not well-formed.
    #[error("config text line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The text config names a field that does not exist.
    #[error("config text line {line}: unknown field `{field}` (known fields: {TEXT_FIELDS})")]
    UnknownField {
        /// The unknown name.
        field: String,
        /// 1-based line where it appears.
        line: usize,
    },
    /// A single-valued field is given twice in the text config.
    #[error("config text line {line}: `{field}` given twice")]
    DuplicateField {
        /// The repeated field.
        field: String,
        /// 1-based line of the second occurrence.
        line: usize,
    },
    /// A field has a value of the wrong type (e.g. a number for an address).
    #[error("config text line {line}: `{field}` {message}")]
    WrongType {
        /// The field.
        field: String,
        /// 1-based line.
        line: usize,
        /// What was expected.
        message: String,
    },
    /// A required setting is missing.
    #[error("missing {field}: give {field}:'host:port' in the config text or --{flag}")]
    Missing {
        /// Text-format name of the setting.
        field: &'static str,
        /// Flag name of the setting.
        flag: &'static str,
    },
    /// `fail_rate` is not a number in [0, 1].
    #[error("bad fail_rate {value:?}: {reason}")]
    BadFailRate {
        /// The value as given.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// An address is not `host:port`.
    #[error("bad {field} address {value:?}: {reason}")]
    BadAddress {
        /// The setting holding the address (`my_addr`, `my_paxos`, `replica`).
        field: &'static str,
        /// The address as given.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// No replica addresses were given.
    #[error("empty replica list: list every replica's Paxos address, own included, with replica:'host:port' or --replica")]
    NoReplicas,
    /// The same replica is listed twice.
    #[error("replica {addr} is listed twice")]
    DuplicateReplica {
        /// The repeated address.
        addr: String,
    },
    /// `my_paxos` is not one of the replicas.
    #[error("my_paxos {my_paxos} is not in the replica list ({})", .replicas.join(", "))]
    NotInReplicas {
        /// This replica's Paxos address.
        my_paxos: String,
        /// The replica list.
        replicas: Vec<String>,
    },
    /// Another setting is out of range.
    #[error("bad {field}: {reason}")]
    Invalid {
        /// The flag at fault.
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// Command-line usage error, or `--help` / `--version`.
    #[error("{0}")]
    Cli(#[from] clap::Error),
}

impl ConfigError {
    /// Prints the error and exits: `--help`/`--version` print to stdout and
    /// exit 0; everything else prints to stderr and exits 2.
    pub fn exit(&self) -> ! {
        match self {
            ConfigError::Cli(e) => e.exit(),
            other => {
                eprintln!("server: {other}");
                eprintln!("run `server --help` for usage");
                std::process::exit(2)
            }
        }
    }
}

#[cfg(test)]
mod test_support {
    use super::{parse_args, ConfigError, ServerConfig};

    /// The invocation of replica `n` of the original project's five.
    pub(super) fn original_line(n: usize) -> String {
        format!(
            "my_addr:'0.0.0.0:800{n}' my_paxos:'0.0.0.0:900{n}' fail_rate:0.3 \
             replica:'0.0.0.0:9000' replica:'0.0.0.0:9001' replica:'0.0.0.0:9002' \
             replica:'0.0.0.0:9003' replica:'0.0.0.0:9004'"
        )
    }

    pub(super) fn parse(args: &[&str]) -> Result<ServerConfig, ConfigError> {
        parse_args(std::iter::once("server").chain(args.iter().copied()))
    }
}
