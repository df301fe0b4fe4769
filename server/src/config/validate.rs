//! From flags and text to a checked [`ServerConfig`]: a flag overrides the
//! text, `--replica` replaces the text's replica list; then every setting is
//! checked (addresses are `host:port`, this replica is in the replica list
//! exactly once, the fail rate is in [0, 1], the timing makes sense, the
//! message budget is within bounds, each `--peer-dial` names another
//! replica once).

use std::path::PathBuf;
use std::time::Duration;

use paxoskv::HostPort;

use super::flags::Cli;
use super::text::TextConfig;
use super::{ConfigError, ServerConfig};

/// Bounds of `--max-message-bytes`: below it, framing dominates; above
/// it, a message cut at the budget (plus one oversized command) could near
/// the 256 MiB transport limit.
const MIN_MESSAGE_BYTES: usize = 1024;
const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Most threads `--worker-threads` may ask for.
pub const MAX_WORKER_THREADS: usize = 256;

/// Merges the flags over the text and checks the result.
pub(super) fn resolve(cli: Cli, text: TextConfig) -> Result<ServerConfig, ConfigError> {
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
    if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&cli.max_message_bytes) {
        return Err(ConfigError::Invalid {
            field: "max_message_bytes",
            reason: format!(
                "{} is outside {MIN_MESSAGE_BYTES}..={MAX_MESSAGE_BYTES} (messages are cut at \
                 this size, so it must leave room for framing below the transport's limit)",
                cli.max_message_bytes
            ),
        });
    }
    if !(1..=MAX_WORKER_THREADS).contains(&cli.worker_threads) {
        return Err(ConfigError::Invalid {
            field: "worker_threads",
            reason: format!("{} is outside 1..={MAX_WORKER_THREADS}", cli.worker_threads),
        });
    }
    let data_dir = cli
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("./data/paxos-{}", my_paxos_hp.port())));

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
        max_message_bytes: cli.max_message_bytes,
        worker_threads: cli.worker_threads,
        unsafe_no_fsync: cli.unsafe_no_fsync,
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
pub(super) fn parse_fail_rate(s: &str) -> Result<f64, ConfigError> {
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

/// Checks that `value` is `host:port` (host: name, IPv4, or bracketed IPv6;
/// port 1-65535), naming `field` if it is not.
fn check_address(field: &'static str, value: &str) -> Result<HostPort, ConfigError> {
    HostPort::parse(value).map_err(|e| ConfigError::BadAddress {
        field,
        value: value.to_owned(),
        reason: e.to_string(),
    })
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
        .filter(|(_, r)| r.port() == me.port() && r.is_local());
    let first = candidates.next()?;
    if candidates.next().is_some() {
        return None;
    }
    Some(first.0)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{original_line, parse};
    use super::super::{parse_text, ReadMode};
    use super::*;

    #[test]
    fn the_five_original_lines_parse_verbatim() {
        for n in 0..5 {
            let line = original_line(n);
            let cfg = parse(&[&line]).expect("original line");
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
        let e = parse(&["--fail-rate", "2", &original_line(0)]).expect_err("flag");
        assert!(matches!(e, ConfigError::BadFailRate { .. }), "{e}");
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
            "--max-message-bytes",
            "2048",
            "--unsafe-no-fsync",
        ])
        .expect("flags");
        assert_eq!(cfg.max_message_bytes, 2048);
        assert!(cfg.unsafe_no_fsync);
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
        let line = original_line(2);
        let cfg = parse(&[&line, "--fail-rate", "0", "--my-addr", "127.0.0.1:7002"]).expect("ok");
        assert_eq!(cfg.fail_rate, 0.0);
        assert_eq!(cfg.my_addr, "127.0.0.1:7002");
        assert!(!cfg.unsafe_no_fsync, "fsync is on unless asked otherwise");
        assert_eq!(cfg.my_paxos, "0.0.0.0:9002");
        // --replica replaces the whole list.
        let cfg = parse(&[&line, "--replica", "0.0.0.0:9002,0.0.0.0:9005"]).expect("ok");
        assert_eq!(cfg.replicas, ["0.0.0.0:9002", "0.0.0.0:9005"]);
        assert_eq!(cfg.replica_id, 0);
    }

    #[test]
    fn a_message_budget_out_of_bounds_is_named() {
        let line = original_line(0);
        for bad in ["0", "1023", "67108865"] {
            let e = parse(&[&line, "--max-message-bytes", bad])
                .expect_err(bad)
                .to_string();
            assert!(e.contains("max_message_bytes") && e.contains(bad), "{e}");
        }
        let cfg = parse(&[&line]).expect("default");
        assert_eq!(cfg.max_message_bytes, 4 << 20);
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
        let line = original_line(0);
        let e = parse(&[&line, "--tick-ms", "0"]).expect_err("tick");
        assert!(e.to_string().contains("tick_ms"), "{e}");
        let e = parse(&[&line, "--heartbeat-ticks", "10", "--election-ticks", "10"])
            .expect_err("election");
        assert!(e.to_string().contains("election_ticks"), "{e}");
        let e = parse(&[&line, "--read-mode", "fast"]).expect_err("read mode");
        assert!(matches!(e, ConfigError::Cli(_)), "{e}");
    }

    #[test]
    fn worker_threads_default_to_one_and_are_bounded() {
        let line = original_line(0);
        assert_eq!(parse(&[&line]).expect("default").worker_threads, 1);
        let cfg = parse(&[&line, "--worker-threads", "4"]).expect("four");
        assert_eq!(cfg.worker_threads, 4);
        for bad in ["0", "257"] {
            let e = parse(&[&line, "--worker-threads", bad]).expect_err(bad);
            assert!(e.to_string().contains("worker_threads"), "{e}");
        }
    }
}
