//! The key-value command ([`Op`]) as every crate sees it, and its one mapping
//! to and from the protobuf request of `kv.proto` (and the command of
//! `paxos.proto`, which carries the same five messages).
//!
//! Encoding never fails. Decoding a request from the network goes through
//! [`Op::from_request`], which also checks what the wire types cannot: a key
//! is present and at most [`MAX_KEY_BYTES`], a value at most
//! [`MAX_VALUE_BYTES`].

use serde::{Deserialize, Serialize};

use crate::kv;
use crate::paxos;

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// One key-value command.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// Why a command from the wire is not acceptable.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum OpError {
    /// The request carries no command.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// The key is empty.
    #[error("key must not be empty")]
    EmptyKey,
    /// The key is too long.
    #[error("key is {0} bytes; the limit is {MAX_KEY_BYTES} bytes (1 KiB)")]
    KeyTooLong(usize),
    /// The value is too long.
    #[error("value is {0} bytes; the limit is {MAX_VALUE_BYTES} bytes (1 MiB)")]
    ValueTooLong(usize),
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

    /// Whether the command cannot change the store (GET): it is served by the
    /// read path and needs no session.
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

    /// Checks the size limits: a non-empty key of at most [`MAX_KEY_BYTES`],
    /// values of at most [`MAX_VALUE_BYTES`].
    pub fn check(&self) -> Result<(), OpError> {
        let key = self.key();
        if key.is_empty() {
            return Err(OpError::EmptyKey);
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(OpError::KeyTooLong(key.len()));
        }
        let value = |v: &str| {
            if v.len() > MAX_VALUE_BYTES {
                Err(OpError::ValueTooLong(v.len()))
            } else {
                Ok(())
            }
        };
        match self {
            Op::Get { .. } | Op::Delete { .. } => Ok(()),
            Op::Put { value: v, .. } | Op::Append { value: v, .. } => value(v),
            Op::Cas { expected, new, .. } => {
                if let Some(e) = expected {
                    value(e)?;
                }
                value(new)
            }
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

    /// The command carried by a wire request's `op`, unchecked (see
    /// [`Op::from_request`] for the checked decoding).
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

    /// Decodes and checks the command of a client request.
    pub fn from_request(req: &kv::ExecuteRequest) -> Result<Op, OpError> {
        let op = req.op.clone().ok_or(OpError::Missing("op"))?;
        let op = Op::from_proto(op);
        op.check()?;
        Ok(op)
    }

    /// The command as carried inside a replicated log value (`paxos.proto`).
    pub fn to_command_proto(&self) -> paxos::command::Op {
        use paxos::command::Op as C;
        match self.to_proto() {
            kv::execute_request::Op::Get(x) => C::Get(x),
            kv::execute_request::Op::Put(x) => C::Put(x),
            kv::execute_request::Op::Delete(x) => C::Delete(x),
            kv::execute_request::Op::Cas(x) => C::Cas(x),
            kv::execute_request::Op::Append(x) => C::Append(x),
        }
    }

    /// Decodes and checks a command from a replicated log value.
    pub fn from_command_proto(op: paxos::command::Op) -> Result<Op, OpError> {
        use kv::execute_request::Op as P;
        use paxos::command::Op as C;
        let op = Op::from_proto(match op {
            C::Get(x) => P::Get(x),
            C::Put(x) => P::Put(x),
            C::Delete(x) => P::Delete(x),
            C::Cas(x) => P::Cas(x),
            C::Append(x) => P::Append(x),
        });
        op.check()?;
        Ok(op)
    }
}

/// Shows the command in the `client` REPL's syntax (e.g. `PUT k "two
/// words"`), quoting words where needed, so that the REPL reads it back as
/// the same command.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn every_op() -> [Op; 6] {
        [
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
        ]
    }

    #[test]
    fn every_op_survives_the_wire_mapping() {
        for op in every_op() {
            assert_eq!(Op::from_proto(op.to_proto()), op);
            assert_eq!(Op::from_request(&op.to_request(1, 1)), Ok(op.clone()));
            assert_eq!(
                Op::from_command_proto(op.to_command_proto()),
                Ok(op.clone())
            );
            assert_eq!(op.key(), "k");
        }
    }

    #[test]
    fn request_limits() {
        let put = |key: String, value: String| Op::Put { key, value }.to_request(1, 1);
        assert!(Op::from_request(&put("k".into(), "v".into())).is_ok());
        assert_eq!(
            Op::from_request(&put(String::new(), "v".into())),
            Err(OpError::EmptyKey)
        );
        let e = Op::from_request(&put("k".repeat(1025), "v".into())).unwrap_err();
        assert!(e.to_string().contains("1 KiB"), "{e}");
        let e = Op::from_request(&put("k".into(), "v".repeat((1 << 20) + 1))).unwrap_err();
        assert!(e.to_string().contains("1 MiB"), "{e}");
        let cas = Op::Cas {
            key: "k".into(),
            expected: Some("v".repeat(MAX_VALUE_BYTES + 1)),
            new: "n".into(),
        };
        assert_eq!(cas.check(), Err(OpError::ValueTooLong(MAX_VALUE_BYTES + 1)));
        let empty = kv::ExecuteRequest::default();
        assert_eq!(
            Op::from_request(&empty).unwrap_err().to_string(),
            "missing field `op`"
        );
    }

    #[test]
    fn only_get_is_read_only() {
        assert!(Op::Get { key: "k".into() }.is_read_only());
        assert!(!Op::Delete { key: "k".into() }.is_read_only());
    }
}
