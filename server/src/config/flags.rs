//! The command line of `server` (clap): the text-format argument and the
//! flags, read into [`Cli`] and then resolved by [`super::validate`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Parser;

use super::{text, validate, ConfigError, ReadMode, ServerConfig};

/// The command line of `server`.
#[derive(Debug, Parser)]
#[command(
    name = "server",
    version,
    about = "One paxoskv replica: a Multi-Paxos replicated key-value store.",
    after_help = "Invocation of the original C++ project (protobuf text format):\n  \
        server \"my_addr:'0.0.0.0:8000' my_paxos:'0.0.0.0:9000' fail_rate:0.3 replica:'0.0.0.0:9000' replica:'0.0.0.0:9001' replica:'0.0.0.0:9002'\"\n\
        Flags override the text; --replica replaces its replica list."
)]
pub(super) struct Cli {
    /// Server config in protobuf text format: my_addr, my_paxos, fail_rate,
    /// replica (repeated). Several arguments are read as one text.
    #[arg(value_name = "CONFIG")]
    pub(super) config: Vec<String>,
    /// Client-facing gRPC address (host:port).
    #[arg(long, value_name = "HOST:PORT")]
    pub(super) my_addr: Option<String>,
    /// Replica-facing Paxos address (host:port); must be in the replica list.
    #[arg(long, value_name = "HOST:PORT")]
    pub(super) my_paxos: Option<String>,
    /// Paxos address of a replica, own included; repeat or comma-separate, in
    /// priority order.
    #[arg(long = "replica", value_name = "HOST:PORT", value_delimiter = ',')]
    pub(super) replicas: Vec<String>,
    /// Probability in [0, 1] that this acceptor drops a Paxos message.
    #[arg(long, value_name = "P")]
    pub(super) fail_rate: Option<String>,
    /// Directory for durable state [default: ./data/paxos-<my_paxos port>].
    #[arg(long, value_name = "DIR")]
    pub(super) data_dir: Option<PathBuf>,
    /// How GETs are answered: quorum (linearizable) or local (the original
    /// C++ project's reads, unsafe).
    #[arg(long, default_value_t = ReadMode::Quorum, value_parser = read_mode_parser())]
    pub(super) read_mode: ReadMode,
    /// Length of one clock tick, in milliseconds.
    #[arg(long, default_value_t = 10, value_name = "MS")]
    pub(super) tick_ms: u64,
    /// Ticks between coordinator heartbeats.
    #[arg(long, default_value_t = 5, value_name = "TICKS")]
    pub(super) heartbeat_ticks: u32,
    /// Ticks of silence after which the coordinator is presumed dead.
    #[arg(long, default_value_t = 30, value_name = "TICKS")]
    pub(super) election_ticks: u32,
    /// Log slots between snapshots (0: never).
    #[arg(long, default_value_t = 10_000, value_name = "SLOTS")]
    pub(super) snapshot_every: u64,
    /// Byte budget of one replica-to-replica message: batches, catch-ups,
    /// promises and snapshot chunks are cut at about this size (1024 to
    /// 64 MiB).
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES")]
    pub(super) max_message_bytes: usize,
    /// Threads of the async runtime that serves gRPC and runs the core (the
    /// storage thread comes on top). 1 wastes no CPU on cross-thread
    /// wake-ups; more help only when parsing client requests, not the core,
    /// limits throughput.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(super) worker_threads: usize,
    /// Connect to replica ID (its position in the replica list, from 0) at
    /// HOST:PORT instead of its listed address, e.g. through a proxy; repeat
    /// for several replicas. The replica keeps its identity.
    #[arg(long = "peer-dial", value_name = "ID=HOST:PORT")]
    pub(super) peer_dial: Vec<String>,
    /// UNSAFE, for testing the harness only: never fsync or fdatasync any
    /// file or directory. Acknowledged writes can be lost in a crash or power
    /// failure, and a damaged data directory is reset to empty instead of
    /// refused.
    #[arg(long)]
    pub(super) unsafe_no_fsync: bool,
}

/// `--read-mode`: the names of [`ReadMode`], each with its help line.
fn read_mode_parser() -> impl TypedValueParser<Value = ReadMode> {
    PossibleValuesParser::new([
        PossibleValue::new(ReadMode::Quorum.as_str()).help(
            "Linearizable: the coordinator confirms with a majority that it still leads \
             before answering",
        ),
        PossibleValue::new(ReadMode::Local.as_str()).help(
            "The original C++ project's design: answer from local state without asking \
             anyone. Knowingly unsafe (a deposed coordinator can serve stale reads)",
        ),
    ])
    .try_map(|s| s.parse::<ReadMode>())
}

/// Parses the command line (`args` includes argv\[0\]) into a checked
/// configuration.
pub fn parse_args<I, T>(args: I) -> Result<ServerConfig, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    let text = text::parse_text(&cli.config.join("\n"))?;
    validate::resolve(cli, text)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::parse;
    use super::*;

    #[test]
    fn help_and_unknown_flags_go_through_clap() {
        match parse(&["--help"]) {
            Err(ConfigError::Cli(e)) => {
                assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
                let help = e.to_string();
                assert!(
                    help.contains("--my-paxos") && help.contains("--read-mode"),
                    "{help}"
                );
                assert!(
                    help.contains("--unsafe-no-fsync") && help.contains("UNSAFE"),
                    "{help}"
                );
                assert!(help.contains("my_addr:'0.0.0.0:8000'"), "{help}");
            }
            other => panic!("{other:?}"),
        }
        match parse(&["--bogus"]) {
            Err(ConfigError::Cli(e)) => assert_eq!(e.exit_code(), 2),
            other => panic!("{other:?}"),
        }
    }
}
