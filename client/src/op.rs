//! The commands a client can run and the replies it gets. The command type
//! [`Op`] (with its wire mapping and its REPL-syntax `Display`) is the shared
//! one of [`paxoskv::op`]; the reply is the client's own view of
//! `ExecuteReply`.

use paxoskv::kv;

pub use paxoskv::op::{quote_word, Op};

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
}
