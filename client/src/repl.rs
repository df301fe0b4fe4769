//! The command language of the `client` binary: parsing REPL lines and
//! printing replies, one line per command.
//!
//! ```text
//! GET k | PUT k v | DELETE k | CAS k old new | APPEND k v | STATUS [addr]
//! HELP [command] | QUIT | EXIT
//! ```
//!
//! Command names are case-insensitive; keys and values are not. A word may be
//! quoted with `"..."` or `'...'` to hold spaces (inside double quotes `\"`
//! and `\\` escape; single quotes are literal). In `CAS`, an unquoted `-` or
//! `nil` as the old value means "the key must be absent"; write `"-"` or
//! `"nil"` for the literal strings. A line starting with `#` is a comment.
//!
//! Nothing here does I/O, so the whole language is unit-tested.

use paxoskv::kv::StatusReply;

use crate::op::{Op, Reply};

/// One parsed REPL line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A key-value command.
    Op(Op),
    /// Show a replica's status (the given one, or the client's preferred).
    Status {
        /// `host:port` of the replica to ask, if given.
        addr: Option<String>,
    },
    /// Show help, for one command or all.
    Help {
        /// The command to explain, upper-cased, if given.
        topic: Option<String>,
    },
    /// Leave the REPL.
    Quit,
}

/// A line that is not a valid command. Displays the problem; [`usage`]
/// holds the command's usage line when the command itself was recognised.
///
/// [`usage`]: ParseError::usage
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// What is wrong with the line.
    pub message: String,
    /// Usage of the command the line started with, if it is a known one.
    pub usage: Option<&'static str>,
}

/// A word of a line, and whether it was quoted (quoted words are always
/// literal, e.g. `"nil"` in CAS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word without its quotes, escapes resolved.
    pub text: String,
    /// Whether any part of it was quoted.
    pub quoted: bool,
}

impl Word {
    /// An unquoted word (as the shell hands over one-shot arguments).
    pub fn plain(text: impl Into<String>) -> Word {
        Word {
            text: text.into(),
            quoted: false,
        }
    }
}

/// Usage lines, one per command, in HELP order.
const USAGES: &[(&str, &str, &str)] = &[
    ("GET", "GET key", "print the value of key, or (nil)"),
    ("PUT", "PUT key value", "set key to value; prints OK"),
    ("DELETE", "DELETE key", "remove key; prints OK or (not found)"),
    (
        "CAS",
        "CAS key old new",
        "set key to new if its value is old (old = - or nil: key absent); prints OK or FAILED (current: ...)",
    ),
    ("APPEND", "APPEND key value", "append value to key (missing = empty); prints the new value"),
    ("STATUS", "STATUS [host:port]", "role, ballot, leader, indexes and digest of a replica"),
    ("HELP", "HELP [command]", "this help"),
    ("QUIT", "QUIT | EXIT", "leave"),
];

/// The usage line of `command` (any case), if it is a known command.
pub fn usage(command: &str) -> Option<&'static str> {
    let upper = command.to_ascii_uppercase();
    let upper = if upper == "EXIT" {
        "QUIT".to_owned()
    } else {
        upper
    };
    USAGES
        .iter()
        .find(|(n, _, _)| *n == upper)
        .map(|(_, u, _)| *u)
}

/// Help for one command (any case): its usage and what it does.
pub fn help_for(topic: &str) -> Option<String> {
    let upper = topic.to_ascii_uppercase();
    let upper = match upper.as_str() {
        "EXIT" => "QUIT",
        "SET" => "PUT",
        "DEL" => "DELETE",
        other => other,
    };
    USAGES
        .iter()
        .find(|(n, _, _)| *n == upper)
        .map(|(_, u, what)| format!("{u}: {what}"))
}

/// The full help text (several lines, no trailing newline).
pub fn help_text() -> String {
    let mut out = String::from("commands (names are case-insensitive):");
    for (_, u, what) in USAGES {
        out.push_str(&format!("\n  {u:<22} {what}"));
    }
    out.push_str(
        "\nquote words holding spaces: PUT k \"two words\" or 'two words'; \
         \"-\" and \"nil\" quoted are literal values",
    );
    out
}

/// Splits a line into words, honouring quotes. A `#` at the start of a word
/// outside quotes starts a comment that runs to the end of the line.
pub fn tokenize(line: &str) -> Result<Vec<Word>, ParseError> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None => break,
            Some('#') => break,
            Some(_) => {}
        }
        let mut word = Word::plain(String::new());
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '"' => {
                    word.quoted = true;
                    loop {
                        match chars.next() {
                            None => return Err(parse_error("unterminated \" quote", None)),
                            Some('"') => break,
                            Some('\\') => match chars.next() {
                                Some(e @ ('"' | '\\')) => word.text.push(e),
                                Some('n') => word.text.push('\n'),
                                Some('t') => word.text.push('\t'),
                                Some(other) => {
                                    word.text.push('\\');
                                    word.text.push(other);
                                }
                                None => return Err(parse_error("unterminated \" quote", None)),
                            },
                            Some(other) => word.text.push(other),
                        }
                    }
                }
                '\'' => {
                    word.quoted = true;
                    loop {
                        match chars.next() {
                            None => return Err(parse_error("unterminated ' quote", None)),
                            Some('\'') => break,
                            Some(other) => word.text.push(other),
                        }
                    }
                }
                other => word.text.push(other),
            }
        }
        words.push(word);
    }
    Ok(words)
}

/// Parses one REPL line; `Ok(None)` for a blank line or a comment.
pub fn parse_line(line: &str) -> Result<Option<Command>, ParseError> {
    let words = tokenize(line)?;
    if words.is_empty() {
        return Ok(None);
    }
    parse_words(&words).map(Some)
}

/// Parses a command from its words (the first is the command name).
pub fn parse_words(words: &[Word]) -> Result<Command, ParseError> {
    let Some((name, args)) = words.split_first() else {
        return Err(parse_error("empty command", None));
    };
    let upper = name.text.to_ascii_uppercase();
    let usage_of = usage(&upper);
    let want = |n: usize| -> Result<(), ParseError> {
        if args.len() == n {
            Ok(())
        } else {
            Err(parse_error(
                &format!(
                    "{upper} takes {n} argument{}, got {}",
                    if n == 1 { "" } else { "s" },
                    args.len()
                ),
                usage_of,
            ))
        }
    };
    let text = |i: usize| args[i].text.clone();
    let cmd = match upper.as_str() {
        "GET" => {
            want(1)?;
            Command::Op(Op::Get { key: text(0) })
        }
        "PUT" | "SET" => {
            want(2)?;
            Command::Op(Op::Put {
                key: text(0),
                value: text(1),
            })
        }
        "DELETE" | "DEL" => {
            want(1)?;
            Command::Op(Op::Delete { key: text(0) })
        }
        "CAS" => {
            want(3)?;
            let old = &args[1];
            let absent = !old.quoted && (old.text == "-" || old.text.eq_ignore_ascii_case("nil"));
            Command::Op(Op::Cas {
                key: text(0),
                expected: if absent { None } else { Some(old.text.clone()) },
                new: text(2),
            })
        }
        "APPEND" => {
            want(2)?;
            Command::Op(Op::Append {
                key: text(0),
                value: text(1),
            })
        }
        "STATUS" => {
            if args.len() > 1 {
                return Err(parse_error("STATUS takes at most one address", usage_of));
            }
            Command::Status {
                addr: args.first().map(|w| w.text.clone()),
            }
        }
        "HELP" | "?" => {
            if args.len() > 1 {
                return Err(parse_error("HELP takes at most one command", usage("HELP")));
            }
            Command::Help {
                topic: args.first().map(|w| w.text.to_ascii_uppercase()),
            }
        }
        "QUIT" | "EXIT" => {
            want(0)?;
            Command::Quit
        }
        _ => {
            return Err(parse_error(
                &format!("unknown command {:?} (try HELP)", name.text),
                None,
            ))
        }
    };
    Ok(cmd)
}

/// Whether `word` names a command (used to tell `client get k` from
/// `client host:port`).
pub fn is_command_name(word: &str) -> bool {
    matches!(
        word.to_ascii_uppercase().as_str(),
        "GET"
            | "PUT"
            | "SET"
            | "DELETE"
            | "DEL"
            | "CAS"
            | "APPEND"
            | "STATUS"
            | "HELP"
            | "?"
            | "QUIT"
            | "EXIT"
    )
}

fn parse_error(message: &str, usage: Option<&'static str>) -> ParseError {
    ParseError {
        message: message.to_owned(),
        usage,
    }
}

/// Renders a value for output: `(nil)` when absent, `""` when empty.
pub fn show_value(value: Option<&str>) -> String {
    match value {
        None => "(nil)".to_owned(),
        Some("") => "\"\"".to_owned(),
        Some(v) => v.to_owned(),
    }
}

/// The one output line for a successful command.
pub fn format_reply(op: &Op, reply: &Reply) -> String {
    match op {
        Op::Get { .. } => show_value(reply.value.as_deref()),
        Op::Put { .. } => "OK".to_owned(),
        Op::Delete { .. } => {
            if reply.succeeded {
                "OK".to_owned()
            } else {
                "(not found)".to_owned()
            }
        }
        Op::Cas { .. } => {
            if reply.succeeded {
                "OK".to_owned()
            } else {
                format!("FAILED (current: {})", show_value(reply.value.as_deref()))
            }
        }
        Op::Append { .. } => show_value(reply.value.as_deref()),
    }
}

/// The one output line for a command cancelled (Ctrl-C) while it ran:
/// whether it may have been applied. A write may have reached a replica
/// and be applied, now or later; anything else changes nothing.
pub fn format_cancelled(cmd: &Command) -> String {
    match cmd {
        Command::Op(op) if !op.is_read_only() => format!(
            "error: cancelled by Ctrl-C (outcome unknown: {} may have been applied)",
            op.name()
        ),
        _ => "error: cancelled by Ctrl-C (not applied)".to_owned(),
    }
}

/// The one output line for a STATUS reply.
pub fn format_status(s: &StatusReply) -> String {
    let leader = match s.leader {
        Some(l) if s.leader_addr.is_empty() => l.to_string(),
        Some(l) => format!("{l} ({})", s.leader_addr),
        None => "unknown".to_owned(),
    };
    format!(
        "{} replica={} ({}) role={} ballot={}.{} leader={} commit={} applied={} keys={} digest={:016x} fail_rate={} read_mode={}",
        s.my_addr,
        s.replica_id,
        s.my_paxos,
        s.role,
        s.ballot_round,
        s.ballot_replica,
        leader,
        s.commit_index,
        s.applied_index,
        s.keys,
        s.digest,
        s.fail_rate,
        s.read_mode
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(line: &str) -> Op {
        match parse_line(line) {
            Ok(Some(Command::Op(op))) => op,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn commands_are_case_insensitive_but_keys_are_not() {
        assert_eq!(
            op("get Apple"),
            Op::Get {
                key: "Apple".into()
            }
        );
        assert_eq!(
            op("GeT Apple"),
            Op::Get {
                key: "Apple".into()
            }
        );
        assert_eq!(
            op("put apple GREEN"),
            Op::Put {
                key: "apple".into(),
                value: "GREEN".into()
            }
        );
        assert_eq!(op("delete k"), Op::Delete { key: "k".into() });
        assert_eq!(
            op("Append k v"),
            Op::Append {
                key: "k".into(),
                value: "v".into()
            }
        );
        assert_eq!(parse_line("quit"), Ok(Some(Command::Quit)));
        assert_eq!(parse_line("Exit"), Ok(Some(Command::Quit)));
    }

    #[test]
    fn quotes_hold_spaces_and_escapes() {
        assert_eq!(
            op(r#"PUT "my key" 'two  words'"#),
            Op::Put {
                key: "my key".into(),
                value: "two  words".into()
            }
        );
        assert_eq!(
            op(r#"PUT k "say \"hi\" \\ ok""#),
            Op::Put {
                key: "k".into(),
                value: r#"say "hi" \ ok"#.into()
            }
        );
        assert_eq!(
            op(r#"PUT k 'it\s'"#),
            Op::Put {
                key: "k".into(),
                value: r"it\s".into()
            }
        );
        assert_eq!(
            op(r#"PUT k a"b c"d"#),
            Op::Put {
                key: "k".into(),
                value: "ab cd".into()
            }
        );
        assert_eq!(
            op(r#"PUT k """#),
            Op::Put {
                key: "k".into(),
                value: "".into()
            }
        );
    }

    #[test]
    fn cas_absent_is_spelled_dash_or_nil_unless_quoted() {
        let cas = |line| match op(line) {
            Op::Cas { expected, new, .. } => (expected, new),
            other => panic!("{other:?}"),
        };
        assert_eq!(cas("CAS k - v"), (None, "v".into()));
        assert_eq!(cas("cas k NIL v"), (None, "v".into()));
        assert_eq!(cas("CAS k \"-\" v"), (Some("-".into()), "v".into()));
        assert_eq!(cas("CAS k 'nil' v"), (Some("nil".into()), "v".into()));
        assert_eq!(cas("CAS k old new"), (Some("old".into()), "new".into()));
    }

    #[test]
    fn blank_lines_and_comments_are_nothing() {
        assert_eq!(parse_line(""), Ok(None));
        assert_eq!(parse_line("   \t "), Ok(None));
        assert_eq!(parse_line("# a comment"), Ok(None));
        assert_eq!(op("GET k # trailing"), Op::Get { key: "k".into() });
        assert_eq!(
            op("PUT k a#b"),
            Op::Put {
                key: "k".into(),
                value: "a#b".into()
            }
        );
    }

    #[test]
    fn wrong_arity_gives_the_commands_usage() {
        let e = parse_line("PUT k").expect_err("arity");
        assert_eq!(e.usage, Some("PUT key value"));
        assert!(e.message.contains("PUT takes 2 arguments, got 1"), "{e}");
        let e = parse_line("cas k a").expect_err("arity");
        assert_eq!(e.usage, Some("CAS key old new"));
        let e = parse_line("get").expect_err("arity");
        assert_eq!(e.usage, Some("GET key"));
        assert!(parse_line("QUIT now").is_err());
    }

    #[test]
    fn unknown_commands_and_bad_quotes_are_errors() {
        let e = parse_line("FROB k").expect_err("unknown");
        assert!(e.message.contains("unknown command \"FROB\""), "{e}");
        assert_eq!(e.usage, None);
        assert!(parse_line("PUT k \"open").is_err());
        assert!(parse_line("PUT k 'open").is_err());
    }

    #[test]
    fn status_and_help_take_optional_arguments() {
        assert_eq!(
            parse_line("status"),
            Ok(Some(Command::Status { addr: None }))
        );
        assert_eq!(
            parse_line("STATUS h:1"),
            Ok(Some(Command::Status {
                addr: Some("h:1".into())
            }))
        );
        assert_eq!(parse_line("help"), Ok(Some(Command::Help { topic: None })));
        assert_eq!(
            parse_line("help cas"),
            Ok(Some(Command::Help {
                topic: Some("CAS".into())
            }))
        );
        assert!(help_text().contains("CAS key old new"));
        assert!(help_text().contains("nil"));
        assert_eq!(usage("exit"), Some("QUIT | EXIT"));
        let cas = help_for("cas").expect("known");
        assert!(
            cas.starts_with("CAS key old new: ") && cas.contains("- or nil"),
            "{cas}"
        );
        assert_eq!(help_for("frob"), None);
    }

    #[test]
    fn replies_print_as_one_line() {
        let reply = |value: Option<&str>, succeeded| Reply {
            value: value.map(str::to_owned),
            succeeded,
            slot: 3,
            served_by: "h:1".into(),
        };
        let get = Op::Get { key: "k".into() };
        assert_eq!(format_reply(&get, &reply(Some("green"), true)), "green");
        assert_eq!(format_reply(&get, &reply(None, false)), "(nil)");
        assert_eq!(format_reply(&get, &reply(Some(""), true)), "\"\"");
        let put = Op::Put {
            key: "k".into(),
            value: "v".into(),
        };
        assert_eq!(format_reply(&put, &reply(Some("v"), true)), "OK");
        let del = Op::Delete { key: "k".into() };
        assert_eq!(format_reply(&del, &reply(None, true)), "OK");
        assert_eq!(format_reply(&del, &reply(None, false)), "(not found)");
        let cas = Op::Cas {
            key: "k".into(),
            expected: None,
            new: "n".into(),
        };
        assert_eq!(format_reply(&cas, &reply(Some("n"), true)), "OK");
        assert_eq!(
            format_reply(&cas, &reply(Some("x"), false)),
            "FAILED (current: x)"
        );
        assert_eq!(
            format_reply(&cas, &reply(None, false)),
            "FAILED (current: (nil))"
        );
        let app = Op::Append {
            key: "k".into(),
            value: "b".into(),
        };
        assert_eq!(format_reply(&app, &reply(Some("ab"), true)), "ab");
    }

    #[test]
    fn a_cancelled_write_may_have_been_applied_and_a_cancelled_read_was_not() {
        let line = |l| format_cancelled(&parse_line(l).unwrap().unwrap());
        assert_eq!(
            line("PUT k v"),
            "error: cancelled by Ctrl-C (outcome unknown: PUT may have been applied)"
        );
        assert_eq!(
            line("cas k - v"),
            "error: cancelled by Ctrl-C (outcome unknown: CAS may have been applied)"
        );
        assert!(line("DELETE k").contains("DELETE may have been applied"));
        assert!(line("APPEND k v").contains("APPEND may have been applied"));
        assert_eq!(line("GET k"), "error: cancelled by Ctrl-C (not applied)");
        assert_eq!(line("STATUS"), "error: cancelled by Ctrl-C (not applied)");
    }

    #[test]
    fn command_names_are_recognised_for_the_command_line() {
        assert!(is_command_name("get"));
        assert!(is_command_name("STATUS"));
        assert!(!is_command_name("localhost:8001"));
    }
}
