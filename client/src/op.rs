//! The commands a client can run and the replies it gets, and their mapping
//! to the wire types of `kv.proto`.

use paxoskv::kv;

/// One key-value command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Reads `key`.
    Get {
        /// The key to read.
        key: String,
    },
    /// Sets `key` to `value`.
    Put {
        /// The key to write.
        key: String,
        /// The new value.
        value: String,
    },
    /// Removes `key`.
    Delete {
        /// The key to remove.
        key: String,
    },
    /// Sets `key` to `new` if its value is `expected` (`None`: the key must
    /// not exist).
    Cas {
        /// The key to compare and set.
        key: String,
        /// The value the key must have; `None` means "absent".
        expected: Option<String>,
        /// The value to set if the comparison holds.
        new: String,
    },
    /// Appends `value` to the value of `key` (a missing key counts as empty).
    Append {
        /// The key to append to.
        key: String,
        /// The suffix to append.
        value: String,
    },
}

impl Op {
    /// The key the command is about.
    pub fn key(&self) -> &str {
        match self {
            Op::Get { key }
            | Op::Put { key, .. }
            | Op::Delete { key }
            | Op::Cas { key, .. }
            | Op::Append { key, .. } => key,
        }
    }

    /// Whether the command cannot change the store (GET).
    pub fn is_read_only(&self) -> bool {
        matches!(self, Op::Get { .. })
    }

    /// Upper-case command name: `GET`, `PUT`, ...
    pub fn name(&self) -> &'static str {
        match self {
            Op::Get { .. } => "GET",
            Op::Put { .. } => "PUT",
            Op::Delete { .. } => "DELETE",
            Op::Cas { .. } => "CAS",
            Op::Append { .. } => "APPEND",
        }
    }

    /// The wire form of the command.
    pub fn to_proto(&self) -> kv::execute_request::Op {
        use kv::execute_request::Op as P;
        match self.clone() {
            Op::Get { key } => P::Get(kv::Get { key }),
            Op::Put { key, value } => P::Put(kv::Put { key, value }),
            Op::Delete { key } => P::Delete(kv::Delete { key }),
            Op::Cas { key, expected, new } => P::Cas(kv::Cas {
                key,
                expected,
                new_value: new,
            }),
            Op::Append { key, value } => P::Append(kv::Append { key, value }),
        }
    }

    /// The wire request carrying the command in session `(client_id, seq)`
    /// (`0, 0`: no session, which the server allows for GET only).
    pub fn to_request(&self, client_id: u64, seq: u64) -> kv::ExecuteRequest {
        kv::ExecuteRequest {
            client_id,
            seq,
            op: Some(self.to_proto()),
            forwarded: false,
        }
    }

    /// The command carried by a wire request, if any.
    pub fn from_proto(op: kv::execute_request::Op) -> Op {
        use kv::execute_request::Op as P;
        match op {
            P::Get(kv::Get { key }) => Op::Get { key },
            P::Put(kv::Put { key, value }) => Op::Put { key, value },
            P::Delete(kv::Delete { key }) => Op::Delete { key },
            P::Cas(kv::Cas {
                key,
                expected,
                new_value,
            }) => Op::Cas {
                key,
                expected,
                new: new_value,
            },
            P::Append(kv::Append { key, value }) => Op::Append { key, value },
        }
    }
}

/// Shows the command in the `client` REPL's syntax (e.g. `PUT k "two
/// words"`), quoting words where needed, so that
/// [`crate::repl::parse_line`] reads it back as the same command.
impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = quote_word;
        match self {
            Op::Get { key } => write!(f, "GET {}", q(key)),
            Op::Put { key, value } => write!(f, "PUT {} {}", q(key), q(value)),
            Op::Delete { key } => write!(f, "DELETE {}", q(key)),
            Op::Cas { key, expected, new } => {
                let old = expected.as_deref().map_or_else(|| "-".to_owned(), q);
                write!(f, "CAS {} {} {}", q(key), old, q(new))
            }
            Op::Append { key, value } => write!(f, "APPEND {} {}", q(key), q(value)),
        }
    }
}

/// Quotes a word for the REPL if it is empty, holds whitespace, quotes, `#`,
/// or would read as CAS's "absent" (`-`, `nil`).
pub fn quote_word(word: &str) -> String {
    let plain = !word.is_empty()
        && !word.starts_with('#')
        && word != "-"
        && !word.eq_ignore_ascii_case("nil")
        && !word
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\');
    if plain {
        return word.to_owned();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A successful answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    /// GET: the value (`None` if absent). CAS: the value after the command.
    /// APPEND: the new value. PUT: the value written. DELETE: `None`.
    pub value: Option<String>,
    /// CAS: whether the swap happened. DELETE: whether the key existed.
    /// GET: whether the key exists. PUT/APPEND: true.
    pub succeeded: bool,
    /// Log slot in which the command was chosen (0 for reads without a slot).
    pub slot: u64,
    /// `my_addr` of the replica that executed the command.
    pub served_by: String,
}

impl From<kv::ExecuteReply> for Reply {
    fn from(r: kv::ExecuteReply) -> Reply {
        Reply {
            value: r.value,
            succeeded: r.succeeded,
            slot: r.slot,
            served_by: r.served_by,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_survives_the_wire_mapping() {
        let ops = [
            Op::Get { key: "k".into() },
            Op::Put {
                key: "k".into(),
                value: "v".into(),
            },
            Op::Delete { key: "k".into() },
            Op::Cas {
                key: "k".into(),
                expected: None,
                new: "n".into(),
            },
            Op::Cas {
                key: "k".into(),
                expected: Some("o".into()),
                new: "n".into(),
            },
            Op::Append {
                key: "k".into(),
                value: "v".into(),
            },
        ];
        for op in ops {
            assert_eq!(Op::from_proto(op.to_proto()), op);
            assert_eq!(op.key(), "k");
        }
    }

    #[test]
    fn display_is_repl_syntax_that_parses_back() {
        let ops = [
            Op::Get {
                key: "apple".into(),
            },
            Op::Put {
                key: "my key".into(),
                value: "say \"hi\" \\ it's\tfine\n".into(),
            },
            Op::Put {
                key: "k".into(),
                value: "".into(),
            },
            Op::Cas {
                key: "k".into(),
                expected: None,
                new: "#x".into(),
            },
            Op::Cas {
                key: "k".into(),
                expected: Some("nil".into()),
                new: "-".into(),
            },
            Op::Delete { key: "k".into() },
            Op::Append {
                key: "k".into(),
                value: " tail".into(),
            },
        ];
        assert_eq!(ops[0].to_string(), "GET apple");
        assert_eq!(ops[3].to_string(), "CAS k - \"#x\"");
        for op in ops {
            let line = op.to_string();
            match crate::repl::parse_line(&line) {
                Ok(Some(crate::repl::Command::Op(back))) => assert_eq!(back, op, "{line}"),
                other => panic!("{line:?} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn only_get_is_read_only() {
        assert!(Op::Get { key: "k".into() }.is_read_only());
        assert!(!Op::Delete { key: "k".into() }.is_read_only());
    }
}
