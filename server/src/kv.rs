//! The replicated state machine: a string key-value map plus the session table
//! that gives client commands exactly-once semantics.
//!
//! Every replica applies the same chosen commands in the same slot order, so
//! every replica holds the same [`KvStore`]. Nothing here knows about Paxos:
//! the core hands commands in, one at a time, in log order.
//!
//! Exactly-once: a command carries `(client_id, seq)`. The session table keeps,
//! per client, the last sequence number applied and its result. A command whose
//! `seq` equals the last one is a retry and gets the cached result without being
//! applied again; an older `seq` gets [`StaleCommand`]. This is what lets the
//! same command be chosen in two slots (a client retried through another
//! coordinator) while taking effect once.
//!
//! Reads (`Get`) served by the read path never touch the session table: they
//! have no effect to deduplicate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One operation on the key-value map: the command type all crates share.
pub use paxoskv::op::Op;

/// A client command: an operation tagged with the client's session identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Command {
    /// Identifies the client session (chosen by the client, unique per client).
    pub client_id: u64,
    /// Per-client sequence number; a retry reuses the same number.
    pub seq: u64,
    /// What to do.
    pub op: Op,
}

/// The result of applying one operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpResult {
    /// `Get`: the value, if the key exists.
    Value(Option<String>),
    /// `Put`: done.
    Done,
    /// `Delete`: whether the key existed.
    Deleted(bool),
    /// `Cas`: whether the swap happened, and the value after the command.
    Cas {
        swapped: bool,
        current: Option<String>,
    },
    /// `Append`: the value after appending.
    Appended(String),
}

/// A command older than the last one applied for its client: refused, because
/// its result is no longer cached and applying it again could apply it twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error(
    "stale command: client {client_id} seq {seq} is older than the last applied seq {last_seq}"
)]
pub struct StaleCommand {
    pub client_id: u64,
    pub seq: u64,
    pub last_seq: u64,
}

/// What a client session remembers: its last applied command and its result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub last_seq: u64,
    pub last_result: OpResult,
}

/// The whole replicated state. `BTreeMap`s so that snapshots serialize in a
/// deterministic order and iteration is stable across processes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    data: BTreeMap<String, String>,
    sessions: BTreeMap<u64, Session>,
}

impl KvStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply a chosen command, deduplicating by session.
    pub fn apply(&mut self, cmd: &Command) -> Result<OpResult, StaleCommand> {
        if let Some(session) = self.sessions.get(&cmd.client_id) {
            if cmd.seq == session.last_seq {
                return Ok(session.last_result.clone());
            }
            if cmd.seq < session.last_seq {
                return Err(StaleCommand {
                    client_id: cmd.client_id,
                    seq: cmd.seq,
                    last_seq: session.last_seq,
                });
            }
        }
        let result = self.execute(&cmd.op);
        if !cmd.op.is_read_only() {
            self.sessions.insert(
                cmd.client_id,
                Session {
                    last_seq: cmd.seq,
                    last_result: result.clone(),
                },
            );
        }
        Ok(result)
    }

    /// Answer a read from the current state without touching sessions.
    pub fn read(&self, key: &str) -> Option<String> {
        self.data.get(key).cloned()
    }

    /// Execute an operation with no session bookkeeping.
    fn execute(&mut self, op: &Op) -> OpResult {
        match op {
            Op::Get { key } => OpResult::Value(self.data.get(key).cloned()),
            Op::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
                OpResult::Done
            }
            Op::Delete { key } => OpResult::Deleted(self.data.remove(key).is_some()),
            Op::Cas { key, expected, new } => {
                let current = self.data.get(key);
                if current == expected.as_ref() {
                    self.data.insert(key.clone(), new.clone());
                    OpResult::Cas {
                        swapped: true,
                        current: Some(new.clone()),
                    }
                } else {
                    OpResult::Cas {
                        swapped: false,
                        current: current.cloned(),
                    }
                }
            }
            Op::Append { key, value } => {
                let entry = self.data.entry(key.clone()).or_default();
                entry.push_str(value);
                OpResult::Appended(entry.clone())
            }
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when no key is stored.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The session of a client, if it has applied a write.
    pub fn session(&self, client_id: u64) -> Option<&Session> {
        self.sessions.get(&client_id)
    }

    /// Order-independent digest of keys, values and sessions.
    ///
    /// Each entry is hashed on its own with 64-bit FNV-1a (a fixed function, so
    /// the digest is the same in every process and on every run — unlike std's
    /// randomly keyed `RandomState`), and the entry hashes are summed. Two
    /// replicas that applied the same commands have the same digest whatever
    /// their internal layout.
    pub fn digest(&self) -> u64 {
        let mut sum = 0u64;
        for (key, value) in &self.data {
            let mut h = Fnv::new();
            h.write(b"k");
            h.write_str(key);
            h.write_str(value);
            sum = sum.wrapping_add(h.finish());
        }
        for (client, session) in &self.sessions {
            let mut h = Fnv::new();
            h.write(b"s");
            h.write(&client.to_le_bytes());
            h.write(&session.last_seq.to_le_bytes());
            hash_result(&mut h, &session.last_result);
            sum = sum.wrapping_add(h.finish());
        }
        sum
    }
}

fn hash_result(h: &mut Fnv, result: &OpResult) {
    let opt = |h: &mut Fnv, v: &Option<String>| match v {
        Some(v) => {
            h.write(b"1");
            h.write_str(v);
        }
        None => h.write(b"0"),
    };
    match result {
        OpResult::Value(v) => {
            h.write(b"V");
            opt(h, v);
        }
        OpResult::Done => h.write(b"D"),
        OpResult::Deleted(b) => h.write(if *b { b"X1" } else { b"X0" }),
        OpResult::Cas { swapped, current } => {
            h.write(if *swapped { b"C1" } else { b"C0" });
            opt(h, current);
        }
        OpResult::Appended(v) => {
            h.write(b"A");
            h.write_str(v);
        }
    }
}

/// 64-bit FNV-1a; strings are length-prefixed so `("ab","c")` ≠ `("a","bc")`.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn write_str(&mut self, s: &str) {
        self.write(&(s.len() as u64).to_le_bytes());
        self.write(s.as_bytes());
    }
    fn finish(&self) -> u64 {
        // A final avalanche step (from SplitMix64) so that summing entry
        // hashes does not let related entries cancel out easily.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(client_id: u64, seq: u64, key: &str, value: &str) -> Command {
        Command {
            client_id,
            seq,
            op: Op::Put {
                key: key.into(),
                value: value.into(),
            },
        }
    }

    fn append(client_id: u64, seq: u64, key: &str, value: &str) -> Command {
        Command {
            client_id,
            seq,
            op: Op::Append {
                key: key.into(),
                value: value.into(),
            },
        }
    }

    #[test]
    fn a_retried_append_takes_effect_once_and_returns_the_first_result() {
        let mut kv = KvStore::new();
        assert_eq!(
            kv.apply(&append(7, 1, "k", "a")),
            Ok(OpResult::Appended("a".into()))
        );
        // The same command chosen again (a retry): cached result, no effect.
        assert_eq!(
            kv.apply(&append(7, 1, "k", "a")),
            Ok(OpResult::Appended("a".into()))
        );
        assert_eq!(kv.read("k"), Some("a".into()));
        assert_eq!(
            kv.apply(&append(7, 2, "k", "b")),
            Ok(OpResult::Appended("ab".into()))
        );
        // An older command than the last applied is refused.
        assert_eq!(
            kv.apply(&append(7, 1, "k", "a")),
            Err(StaleCommand {
                client_id: 7,
                seq: 1,
                last_seq: 2
            })
        );
    }

    #[test]
    fn cas_swaps_only_on_the_expected_value() {
        let mut kv = KvStore::new();
        let cas = |seq, expected: Option<&str>, new: &str| Command {
            client_id: 1,
            seq,
            op: Op::Cas {
                key: "r".into(),
                expected: expected.map(String::from),
                new: new.into(),
            },
        };
        assert_eq!(
            kv.apply(&cas(1, None, "x")),
            Ok(OpResult::Cas {
                swapped: true,
                current: Some("x".into())
            })
        );
        assert_eq!(
            kv.apply(&cas(2, Some("y"), "z")),
            Ok(OpResult::Cas {
                swapped: false,
                current: Some("x".into())
            })
        );
        let del = Command {
            client_id: 1,
            seq: 3,
            op: Op::Delete { key: "r".into() },
        };
        assert_eq!(kv.apply(&del), Ok(OpResult::Deleted(true)));
        assert_eq!(kv.read("r"), None);
    }

    #[test]
    fn digest_depends_on_content_not_on_insertion_order() {
        let mut a = KvStore::new();
        a.apply(&put(1, 1, "x", "1")).unwrap();
        a.apply(&put(2, 1, "y", "2")).unwrap();
        let mut b = KvStore::new();
        b.apply(&put(2, 1, "y", "2")).unwrap();
        b.apply(&put(1, 1, "x", "1")).unwrap();
        assert_eq!(a.digest(), b.digest());
        b.apply(&put(1, 2, "x", "1")).unwrap(); // same data, different session
        assert_ne!(a.digest(), b.digest());
        assert_ne!(KvStore::new().digest(), a.digest());
    }
}
