//! The server's configuration: the seed's protobuf text format, ordinary
//! flags, and the checks that turn them into a [`ServerConfig`].
//!
//! The seed started a replica with one argument in protobuf text format:
//!
//! ```text
//! server "my_addr:'0.0.0.0:8000' my_paxos:'0.0.0.0:9000' fail_rate:0.3 replica:'0.0.0.0:9000' replica:'0.0.0.0:9001'"
//! ```
//!
//! That still works verbatim. The same settings are flags (`--my-addr`,
//! `--my-paxos`, `--replica` repeatable or comma-separated, `--fail-rate`),
//! plus the settings the seed did not have (`--data-dir`, `--read-mode`,
//! timing, snapshots). A flag overrides the text; `--replica` replaces the
//! text's whole replica list.
//!
//! The text format accepted is the subset of protobuf text format the seed
//! used: `field: value` pairs separated by whitespace, newlines, `,` or `;`;
//! values are single- or double-quoted strings or numbers; `#` starts a
//! comment. Every mistake is reported with the field (and line) at fault, so
//! the caller can print it and exit with status 2 ([`ConfigError::exit`]).

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Fields the text format knows.
const TEXT_FIELDS: &str = "my_addr, my_paxos, fail_rate, replica";

/// How the coordinator answers GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadMode {
    /// Linearizable: the coordinator confirms with a majority that it still
    /// leads before answering.
    Quorum,
    /// The seed's design: answer from local state without asking anyone.
    /// Knowingly unsafe (a deposed coordinator can serve stale reads).
    Local,
}

impl fmt::Display for ReadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadMode::Quorum => "quorum",
            ReadMode::Local => "local",
        })
    }
}

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

/// The command line of `server`.
#[derive(Debug, Parser)]
#[command(
    name = "server",
    version,
    about = "One paxoskv replica: a Multi-Paxos replicated key-value store.",
    after_help = "Seed-compatible invocation (protobuf text format):\n  \
        server \"my_addr:'0.0.0.0:8000' my_paxos:'0.0.0.0:9000' fail_rate:0.3 replica:'0.0.0.0:9000' replica:'0.0.0.0:9001' replica:'0.0.0.0:9002'\"\n\
        Flags override the text; --replica replaces its replica list."
)]
struct Cli {
    /// Server config in protobuf text format: my_addr, my_paxos, fail_rate,
    /// replica (repeated). Several arguments are read as one text.
    #[arg(value_name = "CONFIG")]
    config: Vec<String>,
    /// Client-facing gRPC address (host:port).
    #[arg(long, value_name = "HOST:PORT")]
    my_addr: Option<String>,
    /// Replica-facing Paxos address (host:port); must be in the replica list.
    #[arg(long, value_name = "HOST:PORT")]
    my_paxos: Option<String>,
    /// Paxos address of a replica, own included; repeat or comma-separate, in
    /// priority order.
    #[arg(long = "replica", value_name = "HOST:PORT", value_delimiter = ',')]
    replicas: Vec<String>,
    /// Probability in [0, 1] that this acceptor drops a Paxos message.
    #[arg(long, value_name = "P")]
    fail_rate: Option<String>,
    /// Directory for durable state [default: ./data/paxos-<my_paxos port>].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// How GETs are answered: quorum (linearizable) or local (seed, unsafe).
    #[arg(long, value_enum, default_value_t = ReadMode::Quorum)]
    read_mode: ReadMode,
    /// Length of one clock tick, in milliseconds.
    #[arg(long, default_value_t = 10, value_name = "MS")]
    tick_ms: u64,
    /// Ticks between coordinator heartbeats.
    #[arg(long, default_value_t = 5, value_name = "TICKS")]
    heartbeat_ticks: u32,
    /// Ticks of silence after which the coordinator is presumed dead.
    #[arg(long, default_value_t = 30, value_name = "TICKS")]
    election_ticks: u32,
    /// Log slots between snapshots (0: never).
    #[arg(long, default_value_t = 10_000, value_name = "SLOTS")]
    snapshot_every: u64,
    /// Connect to replica ID (its position in the replica list, from 0) at
    /// HOST:PORT instead of its listed address, e.g. through a proxy; repeat
    /// for several replicas. The replica keeps its identity.
    #[arg(long = "peer-dial", value_name = "ID=HOST:PORT")]
    peer_dial: Vec<String>,
}

/// The settings found in the text format, before flags and checks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextConfig {
    /// `my_addr`, if given.
    pub my_addr: Option<String>,
    /// `my_paxos`, if given.
    pub my_paxos: Option<String>,
    /// `fail_rate`, if given (already checked to be in [0, 1]).
    pub fail_rate: Option<f64>,
    /// Every `replica`, in order.
    pub replicas: Vec<String>,
}

/// Parses the command line (`args` includes argv\[0\]) into a checked
/// configuration.
pub fn parse_args<I, T>(args: I) -> Result<ServerConfig, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    let text = parse_text(&cli.config.join("\n"))?;
    let my_addr = cli.my_addr.or(text.my_addr).ok_or(ConfigError::Missing {
        field: "my_addr",
        flag: "my-addr",
    })?;
    let my_paxos = cli.my_paxos.or(text.my_paxos).ok_or(ConfigError::Missing {
        field: "my_paxos",
        flag: "my-paxos",
    })?;
    let fail_rate = match cli.fail_rate {
        Some(s) => parse_fail_rate(&s)?,
        None => text.fail_rate.unwrap_or(0.0),
    };
    let replicas: Vec<String> = if cli.replicas.is_empty() {
        text.replicas
    } else {
        cli.replicas.iter().map(|r| r.trim().to_owned()).collect()
    };

    let my_addr_hp = check_address("my_addr", &my_addr)?;
    let my_paxos_hp = check_address("my_paxos", &my_paxos)?;
    if my_addr_hp == my_paxos_hp {
        return Err(ConfigError::Invalid {
            field: "my_addr",
            reason: format!("my_addr and my_paxos are both {my_addr}; they need different ports"),
        });
    }
    if replicas.is_empty() {
        return Err(ConfigError::NoReplicas);
    }
    let mut parsed: Vec<HostPort> = Vec::with_capacity(replicas.len());
    for r in &replicas {
        let hp = check_address("replica", r)?;
        if parsed.contains(&hp) {
            return Err(ConfigError::DuplicateReplica { addr: r.clone() });
        }
        parsed.push(hp);
    }
    let replica_id =
        find_self(&my_paxos_hp, &parsed).ok_or_else(|| ConfigError::NotInReplicas {
            my_paxos: my_paxos.clone(),
            replicas: replicas.clone(),
        })?;

    if cli.tick_ms == 0 {
        return Err(ConfigError::Invalid {
            field: "tick_ms",
            reason: "must be at least 1".into(),
        });
    }
    if cli.heartbeat_ticks == 0 {
        return Err(ConfigError::Invalid {
            field: "heartbeat_ticks",
            reason: "must be at least 1".into(),
        });
    }
    if cli.election_ticks <= cli.heartbeat_ticks {
        return Err(ConfigError::Invalid {
            field: "election_ticks",
            reason: format!(
                "{} must be greater than heartbeat_ticks ({}), or a live coordinator looks dead",
                cli.election_ticks, cli.heartbeat_ticks
            ),
        });
    }
    let data_dir = cli
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("./data/paxos-{}", my_paxos_hp.port)));

    let dial = parse_peer_dials(&cli.peer_dial, &replicas, replica_id)?;

    Ok(ServerConfig {
        my_addr,
        my_paxos,
        replicas,
        dial,
        replica_id,
        fail_rate,
        data_dir,
        read_mode: cli.read_mode,
        tick: Duration::from_millis(cli.tick_ms),
        heartbeat_ticks: cli.heartbeat_ticks,
        election_ticks: cli.election_ticks,
        snapshot_every: cli.snapshot_every,
    })
}

/// Resolves `--peer-dial ID=HOST:PORT` values into the dial address of each
/// replica (the listed address where none is given).
fn parse_peer_dials(
    values: &[String],
    replicas: &[String],
    me: usize,
) -> Result<Vec<String>, ConfigError> {
    let mut dial = replicas.to_vec();
    let mut given = vec![false; replicas.len()];
    for v in values {
        let bad = |reason: String| ConfigError::Invalid {
            field: "peer_dial",
            reason: format!("{v:?}: {reason}"),
        };
        let (id, addr) = v
            .split_once('=')
            .ok_or_else(|| bad("expected ID=HOST:PORT, e.g. 1=127.0.0.1:19001".into()))?;
        let id: usize = id.trim().parse().map_err(|_| {
            bad(format!(
                "{:?} is not a replica id (the position in the replica list, 0..{})",
                id.trim(),
                replicas.len() - 1
            ))
        })?;
        if id >= replicas.len() {
            return Err(bad(format!(
                "there is no replica {id}: the list has {} (ids 0..{})",
                replicas.len(),
                replicas.len() - 1
            )));
        }
        if id == me {
            return Err(bad(format!(
                "replica {id} is this replica, which never dials itself"
            )));
        }
        if given[id] {
            return Err(bad(format!("replica {id} is given twice")));
        }
        check_address("peer_dial", addr)?;
        given[id] = true;
        dial[id] = addr.trim().to_owned();
    }
    Ok(dial)
}

/// Parses a fail rate: a number in [0, 1].
fn parse_fail_rate(s: &str) -> Result<f64, ConfigError> {
    let bad = |reason: &str| ConfigError::BadFailRate {
        value: s.to_owned(),
        reason: reason.to_owned(),
    };
    let v: f64 = s.trim().parse().map_err(|_| bad("not a number"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(bad("must be in [0, 1]"));
    }
    Ok(v)
}

/// A checked `host:port`, host lower-cased (IPv6 without brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPort {
    host: String,
    port: u16,
}

impl HostPort {
    /// Whether the host names this machine (loopback or wildcard).
    fn is_local(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
    }
}

/// Checks that `value` is `host:port` (host: name, IPv4, or bracketed IPv6;
/// port 1-65535).
fn check_address(field: &'static str, value: &str) -> Result<HostPort, ConfigError> {
    let bad = |reason: &str| ConfigError::BadAddress {
        field,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let v = value.trim();
    if v.is_empty() {
        return Err(bad("empty; expected host:port"));
    }
    let (host, port) = v
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port"))?;
    let host = if let Some(inner) = host.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| bad("unclosed [ in IPv6 host"))?;
        inner
            .parse::<Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address in brackets"))?;
        inner.to_owned()
    } else {
        if host.contains(':') {
            return Err(bad("IPv6 hosts need brackets: [::1]:9000"));
        }
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        {
            return Err(bad("host has invalid characters"));
        }
        host.to_ascii_lowercase()
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(bad("port must be a number in 1..=65535")),
    };
    Ok(HostPort { host, port })
}

/// Finds this replica in the list: the entry equal to `me`, or else the one
/// entry on the same port when `me` listens on a wildcard or loopback host
/// and that entry also names this machine (e.g. my_paxos `0.0.0.0:9001` with
/// replica `127.0.0.1:9001`).
fn find_self(me: &HostPort, replicas: &[HostPort]) -> Option<usize> {
    if let Some(i) = replicas.iter().position(|r| r == me) {
        return Some(i);
    }
    if !me.is_local() {
        return None;
    }
    let mut candidates = replicas
        .iter()
        .enumerate()
        .filter(|(_, r)| r.port == me.port && r.is_local());
    let first = candidates.next()?;
    if candidates.next().is_some() {
        return None;
    }
    Some(first.0)
}

/// One lexical token of the text format, with its 1-based position.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A field name.
    Ident(String),
    /// `:`
    Colon,
    /// A quoted string, quotes removed and escapes resolved.
    Str(String),
    /// An unquoted number (or other bare word that is not a field name).
    Bare(String),
    /// `,` or `;` between fields.
    Sep,
}

/// Splits the text format into tokens with their (line, column).
fn lex(text: &str) -> Result<Vec<(Token, usize, usize)>, ConfigError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let (mut line, mut col) = (1usize, 1usize);
    let syntax = |line, column, message: String| ConfigError::Syntax {
        line,
        column,
        message,
    };
    while let Some(&c) = chars.peek() {
        let (tl, tc) = (line, col);
        let mut bump = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let c = chars.next();
            if c == Some('\n') {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
            c
        };
        match c {
            c if c.is_whitespace() => {
                bump(&mut chars);
            }
            '#' => {
                while let Some(&c) = chars.peek() {
                    if c == '\n' {
                        break;
                    }
                    bump(&mut chars);
                }
            }
            ':' => {
                bump(&mut chars);
                out.push((Token::Colon, tl, tc));
            }
            ',' | ';' => {
                bump(&mut chars);
                out.push((Token::Sep, tl, tc));
            }
            '\'' | '"' => {
                let quote = c;
                bump(&mut chars);
                let mut s = String::new();
                loop {
                    match bump(&mut chars) {
                        None | Some('\n') => {
                            return Err(syntax(tl, tc, format!("unterminated {quote} string")))
                        }
                        Some(c) if c == quote => break,
                        Some('\\') => match bump(&mut chars) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(e @ ('\\' | '\'' | '"')) => s.push(e),
                            Some(e) => {
                                return Err(syntax(
                                    tl,
                                    tc,
                                    format!("unknown escape \\{e} in string"),
                                ))
                            }
                            None => {
                                return Err(syntax(tl, tc, format!("unterminated {quote} string")))
                            }
                        },
                        Some(c) => s.push(c),
                    }
                }
                out.push((Token::Str(s), tl, tc));
            }
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.') => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.') {
                        s.push(c);
                        bump(&mut chars);
                    } else {
                        break;
                    }
                }
                let is_ident = s
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                out.push((
                    if is_ident {
                        Token::Ident(s)
                    } else {
                        Token::Bare(s)
                    },
                    tl,
                    tc,
                ));
            }
            other => {
                return Err(syntax(tl, tc, format!("unexpected character {other:?}")));
            }
        }
    }
    Ok(out)
}

/// Parses the seed's text format (see the module doc).
pub fn parse_text(text: &str) -> Result<TextConfig, ConfigError> {
    let tokens = lex(text)?;
    let mut cfg = TextConfig::default();
    let mut i = 0;
    let end = |i: usize| -> (usize, usize) {
        tokens
            .get(i)
            .map(|(_, l, c)| (*l, *c))
            .or_else(|| tokens.last().map(|(_, l, c)| (*l, *c)))
            .unwrap_or((1, 1))
    };
    while i < tokens.len() {
        let (tok, line, column) = &tokens[i];
        let field = match tok {
            Token::Sep => {
                i += 1;
                continue;
            }
            Token::Ident(name) => name.clone(),
            other => {
                return Err(ConfigError::Syntax {
                    line: *line,
                    column: *column,
                    message: format!("expected a field name, found {}", describe(other)),
                })
            }
        };
        let line = *line;
        if !matches!(
            field.as_str(),
            "my_addr" | "my_paxos" | "fail_rate" | "replica"
        ) {
            return Err(ConfigError::UnknownField { field, line });
        }
        match tokens.get(i + 1) {
            Some((Token::Colon, _, _)) => {}
            other => {
                let (l, c) = other.map(|(_, l, c)| (*l, *c)).unwrap_or_else(|| end(i));
                return Err(ConfigError::Syntax {
                    line: l,
                    column: c,
                    message: format!("expected `:` after `{field}`"),
                });
            }
        }
        let value = match tokens.get(i + 2) {
            Some((Token::Str(s), _, _)) => Value::Str(s.clone()),
            Some((Token::Bare(s), _, _)) | Some((Token::Ident(s), _, _)) => Value::Bare(s.clone()),
            other => {
                let (l, c) = other.map(|(_, l, c)| (*l, *c)).unwrap_or_else(|| end(i));
                return Err(ConfigError::Syntax {
                    line: l,
                    column: c,
                    message: format!("expected a value for `{field}`"),
                });
            }
        };
        i += 3;
        let wrong = |message: &str| ConfigError::WrongType {
            field: field.clone(),
            line,
            message: message.to_owned(),
        };
        let twice = || ConfigError::DuplicateField {
            field: field.clone(),
            line,
        };
        match field.as_str() {
            "my_addr" | "my_paxos" | "replica" => {
                let Value::Str(s) = value else {
                    return Err(wrong("must be a quoted 'host:port' string"));
                };
                let slot = match field.as_str() {
                    "my_addr" => &mut cfg.my_addr,
                    "my_paxos" => &mut cfg.my_paxos,
                    _ => {
                        cfg.replicas.push(s);
                        continue;
                    }
                };
                if slot.is_some() {
                    return Err(twice());
                }
                *slot = Some(s);
            }
            _ => {
                if cfg.fail_rate.is_some() {
                    return Err(twice());
                }
                let s = match value {
                    Value::Str(s) | Value::Bare(s) => s,
                };
                cfg.fail_rate = Some(parse_fail_rate(&s)?);
            }
        }
    }
    Ok(cfg)
}

/// A field's value as written.
enum Value {
    /// Quoted.
    Str(String),
    /// Unquoted (a number, or a mistake).
    Bare(String),
}

fn describe(tok: &Token) -> String {
    match tok {
        Token::Ident(s) => format!("`{s}`"),
        Token::Colon => "`:`".into(),
        Token::Str(s) => format!("string {s:?}"),
        Token::Bare(s) => format!("`{s}`"),
        Token::Sep => "separator".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_line(n: usize) -> String {
        format!(
            "my_addr:'0.0.0.0:800{n}' my_paxos:'0.0.0.0:900{n}' fail_rate:0.3 \
             replica:'0.0.0.0:9000' replica:'0.0.0.0:9001' replica:'0.0.0.0:9002' \
             replica:'0.0.0.0:9003' replica:'0.0.0.0:9004'"
        )
    }

    fn parse(args: &[&str]) -> Result<ServerConfig, ConfigError> {
        parse_args(std::iter::once("server").chain(args.iter().copied()))
    }

    #[test]
    fn the_five_seed_lines_parse_verbatim() {
        for n in 0..5 {
            let line = seed_line(n);
            let cfg = parse(&[&line]).expect("seed line");
            assert_eq!(cfg.my_addr, format!("0.0.0.0:800{n}"));
            assert_eq!(cfg.my_paxos, format!("0.0.0.0:900{n}"));
            assert_eq!(cfg.replica_id, n);
            assert_eq!(cfg.replicas.len(), 5);
            assert_eq!(cfg.replicas[4], "0.0.0.0:9004");
            assert_eq!(cfg.fail_rate, 0.3);
            assert_eq!(cfg.data_dir, PathBuf::from(format!("./data/paxos-900{n}")));
            assert_eq!(cfg.read_mode, ReadMode::Quorum);
            assert_eq!(cfg.tick, Duration::from_millis(10));
            assert!(cfg.election_ticks > cfg.heartbeat_ticks);
        }
    }

    #[test]
    fn text_format_allows_both_quotes_separators_newlines_and_comments() {
        let text = "# replica 1 of 3\n\
                    my_addr: \"127.0.0.1:8001\", my_paxos:'127.0.0.1:9001';\n\
                    fail_rate: 1   # never answers\n\
                    replica:'127.0.0.1:9000'\n replica : '127.0.0.1:9001',replica:\"127.0.0.1:9002\"\n";
        let t = parse_text(text).expect("valid");
        assert_eq!(t.my_addr.as_deref(), Some("127.0.0.1:8001"));
        assert_eq!(t.my_paxos.as_deref(), Some("127.0.0.1:9001"));
        assert_eq!(t.fail_rate, Some(1.0));
        assert_eq!(
            t.replicas,
            ["127.0.0.1:9000", "127.0.0.1:9001", "127.0.0.1:9002"]
        );
        let t = parse_text("fail_rate:'0.25' fail_rate_is_not_here:1");
        assert!(
            matches!(t, Err(ConfigError::UnknownField { ref field, .. }) if field == "fail_rate_is_not_here")
        );
        assert_eq!(parse_text("").expect("empty"), TextConfig::default());
        assert_eq!(
            parse_text("fail_rate:.5").expect("num").fail_rate,
            Some(0.5)
        );
        assert_eq!(parse_text("fail_rate:0").expect("num").fail_rate, Some(0.0));
    }

    #[test]
    fn unknown_field_is_named_with_its_line() {
        let e = parse_text("my_addr:'h:1'\nmy_adr:'h:2'").expect_err("typo");
        let msg = e.to_string();
        assert!(
            msg.contains("unknown field `my_adr`") && msg.contains("line 2"),
            "{msg}"
        );
        assert!(msg.contains("my_paxos"), "lists known fields: {msg}");
    }

    #[test]
    fn bad_fail_rates_name_the_field() {
        for (text, why) in [
            ("fail_rate:abc", "not a number"),
            ("fail_rate:'x'", "not a number"),
            ("fail_rate:1.5", "[0, 1]"),
            ("fail_rate:-0.1", "[0, 1]"),
            ("fail_rate:nan", "[0, 1]"),
        ] {
            let e = parse_text(text).expect_err(text);
            let msg = e.to_string();
            assert!(
                msg.contains("fail_rate") && msg.contains(why),
                "{text}: {msg}"
            );
        }
        let e = parse(&["--fail-rate", "2", &seed_line(0)]).expect_err("flag");
        assert!(matches!(e, ConfigError::BadFailRate { .. }), "{e}");
    }

    #[test]
    fn syntax_errors_point_at_line_and_column() {
        let e = parse_text("my_addr '0.0.0.0:8000'").expect_err("no colon");
        assert!(
            e.to_string().contains("expected `:` after `my_addr`"),
            "{e}"
        );
        let e = parse_text("my_addr:'0.0.0.0:8000").expect_err("open quote");
        assert!(
            matches!(
                e,
                ConfigError::Syntax {
                    line: 1,
                    column: 9,
                    ..
                }
            ),
            "{e}"
        );
        let e = parse_text("my_addr:").expect_err("no value");
        assert!(
            e.to_string().contains("expected a value for `my_addr`"),
            "{e}"
        );
        let e = parse_text("\n  'x'").expect_err("no field");
        assert!(
            matches!(
                e,
                ConfigError::Syntax {
                    line: 2,
                    column: 3,
                    ..
                }
            ),
            "{e}"
        );
        let e = parse_text("my_addr:{}").expect_err("brace");
        assert!(e.to_string().contains("unexpected character '{'"), "{e}");
        let e = parse_text("my_addr:8000").expect_err("number for address");
        assert!(e.to_string().contains("`my_addr` must be a quoted"), "{e}");
        let e = parse_text("my_addr:'a:1' my_addr:'a:2'").expect_err("twice");
        assert!(e.to_string().contains("`my_addr` given twice"), "{e}");
    }

    #[test]
    fn flags_alone_configure_a_replica() {
        let cfg = parse(&[
            "--my-addr",
            "127.0.0.1:8001",
            "--my-paxos",
            "127.0.0.1:9001",
            "--replica",
            "127.0.0.1:9000,127.0.0.1:9001",
            "--replica",
            "127.0.0.1:9002",
            "--fail-rate",
            "0.1",
            "--data-dir",
            "/tmp/x",
            "--read-mode",
            "local",
            "--tick-ms",
            "5",
            "--heartbeat-ticks",
            "2",
            "--election-ticks",
            "10",
            "--snapshot-every",
            "0",
        ])
        .expect("flags");
        assert_eq!(
            cfg.replicas,
            ["127.0.0.1:9000", "127.0.0.1:9001", "127.0.0.1:9002"]
        );
        assert_eq!(cfg.replica_id, 1);
        assert_eq!(cfg.fail_rate, 0.1);
        assert_eq!(cfg.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(cfg.read_mode, ReadMode::Local);
        assert_eq!(cfg.tick, Duration::from_millis(5));
        assert_eq!((cfg.heartbeat_ticks, cfg.election_ticks), (2, 10));
        assert_eq!(cfg.snapshot_every, 0);
    }

    #[test]
    fn peer_dial_moves_where_a_peer_is_dialed_not_who_it_is() {
        let base = [
            "--my-addr",
            "127.0.0.1:8001",
            "--my-paxos",
            "127.0.0.1:9001",
            "--replica",
            "127.0.0.1:9000,127.0.0.1:9001,127.0.0.1:9002",
        ];
        let with = |extra: &[&str]| {
            let mut a = base.to_vec();
            a.extend_from_slice(extra);
            parse(&a)
        };
        let cfg = with(&[
            "--peer-dial",
            "2=127.0.0.1:19012",
            "--peer-dial",
            "0=localhost:19010",
        ])
        .expect("peer dial");
        assert_eq!(cfg.replica_id, 1);
        assert_eq!(cfg.replicas[2], "127.0.0.1:9002");
        assert_eq!(
            cfg.dial,
            ["localhost:19010", "127.0.0.1:9001", "127.0.0.1:19012"]
        );
        assert_eq!(with(&[]).expect("no dial").dial, cfg.replicas);
        for (bad, says) in [
            ("2:127.0.0.1:1", "ID=HOST:PORT"),
            ("x=127.0.0.1:1", "not a replica id"),
            ("3=127.0.0.1:1", "no replica 3"),
            ("1=127.0.0.1:1", "this replica"),
            ("0=nowhere", "peer_dial address"),
        ] {
            let e = with(&["--peer-dial", bad]).expect_err(bad).to_string();
            assert!(e.contains(says) && e.contains("peer_dial"), "{bad}: {e}");
        }
        let e = with(&["--peer-dial", "0=a:1", "--peer-dial", "0=b:2"])
            .expect_err("twice")
            .to_string();
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn flags_override_the_text() {
        let line = seed_line(2);
        let cfg = parse(&[&line, "--fail-rate", "0", "--my-addr", "127.0.0.1:7002"]).expect("ok");
        assert_eq!(cfg.fail_rate, 0.0);
        assert_eq!(cfg.my_addr, "127.0.0.1:7002");
        assert_eq!(cfg.my_paxos, "0.0.0.0:9002");
        // --replica replaces the whole list.
        let cfg = parse(&[&line, "--replica", "0.0.0.0:9002,0.0.0.0:9005"]).expect("ok");
        assert_eq!(cfg.replicas, ["0.0.0.0:9002", "0.0.0.0:9005"]);
        assert_eq!(cfg.replica_id, 0);
    }

    #[test]
    fn missing_settings_are_named() {
        let e = parse(&["my_addr:'0.0.0.0:8000' replica:'0.0.0.0:9000'"]).expect_err("no paxos");
        assert!(e.to_string().contains("missing my_paxos"), "{e}");
        assert!(e.to_string().contains("--my-paxos"), "{e}");
        let e = parse(&["my_paxos:'0.0.0.0:9000' replica:'0.0.0.0:9000'"]).expect_err("no addr");
        assert!(e.to_string().contains("missing my_addr"), "{e}");
        let e = parse(&["my_addr:'0.0.0.0:8000' my_paxos:'0.0.0.0:9000'"]).expect_err("none");
        assert!(matches!(e, ConfigError::NoReplicas), "{e}");
        let e = parse(&[]).expect_err("nothing");
        assert!(matches!(e, ConfigError::Missing { .. }), "{e}");
    }

    #[test]
    fn my_paxos_must_be_a_replica_and_the_list_is_shown() {
        let e = parse(&["my_addr:'0.0.0.0:8000' my_paxos:'0.0.0.0:9009' replica:'0.0.0.0:9000' replica:'0.0.0.0:9001'"])
            .expect_err("not listed");
        assert_eq!(
            e.to_string(),
            "my_paxos 0.0.0.0:9009 is not in the replica list (0.0.0.0:9000, 0.0.0.0:9001)"
        );
    }

    #[test]
    fn a_wildcard_my_paxos_finds_its_loopback_entry() {
        let cfg = parse(&["my_addr:'0.0.0.0:8001' my_paxos:'0.0.0.0:9001' replica:'127.0.0.1:9000' replica:'localhost:9001'"])
            .expect("found by port");
        assert_eq!(cfg.replica_id, 1);
        // A remote host on the same port is not "me".
        let e =
            parse(&["my_addr:'10.0.0.1:8001' my_paxos:'10.0.0.1:9001' replica:'10.0.0.2:9001'"])
                .expect_err("remote");
        assert!(matches!(e, ConfigError::NotInReplicas { .. }), "{e}");
    }

    #[test]
    fn duplicate_replicas_are_rejected() {
        let e = parse(&["my_addr:'0.0.0.0:8000' my_paxos:'0.0.0.0:9000' replica:'0.0.0.0:9000' replica:'0.0.0.0:9000'"])
            .expect_err("dup");
        assert_eq!(e.to_string(), "replica 0.0.0.0:9000 is listed twice");
    }

    #[test]
    fn addresses_must_be_host_port() {
        for (args, field) in [
            (
                vec![
                    "--my-addr",
                    "localhost",
                    "--my-paxos",
                    "h:9",
                    "--replica",
                    "h:9",
                ],
                "my_addr",
            ),
            (
                vec![
                    "--my-addr",
                    "h:8",
                    "--my-paxos",
                    "h:99999",
                    "--replica",
                    "h:9",
                ],
                "my_paxos",
            ),
            (
                vec![
                    "--my-addr",
                    "h:8",
                    "--my-paxos",
                    "h:9",
                    "--replica",
                    "h:9,h",
                ],
                "replica",
            ),
            (
                vec![
                    "--my-addr",
                    "::1:8",
                    "--my-paxos",
                    "h:9",
                    "--replica",
                    "h:9",
                ],
                "my_addr",
            ),
        ] {
            let e = parse(&args).expect_err("bad address");
            assert!(
                matches!(&e, ConfigError::BadAddress { field: f, .. } if *f == field),
                "{args:?}: {e}"
            );
            assert!(
                e.to_string().starts_with(&format!("bad {field} address")),
                "{e}"
            );
        }
        let cfg = parse(&[
            "--my-addr",
            "[::1]:8000",
            "--my-paxos",
            "[::1]:9000",
            "--replica",
            "[::1]:9000",
        ])
        .expect("ipv6");
        assert_eq!(cfg.replica_id, 0);
        let e = parse(&["--my-addr", "h:9", "--my-paxos", "h:9", "--replica", "h:9"])
            .expect_err("same");
        assert!(e.to_string().contains("different ports"), "{e}");
    }

    #[test]
    fn timing_must_make_sense() {
        let line = seed_line(0);
        let e = parse(&[&line, "--tick-ms", "0"]).expect_err("tick");
        assert!(e.to_string().contains("tick_ms"), "{e}");
        let e = parse(&[&line, "--heartbeat-ticks", "10", "--election-ticks", "10"])
            .expect_err("election");
        assert!(e.to_string().contains("election_ticks"), "{e}");
        let e = parse(&[&line, "--read-mode", "fast"]).expect_err("read mode");
        assert!(matches!(e, ConfigError::Cli(_)), "{e}");
    }

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
