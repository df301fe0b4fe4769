//! Client workers: the logical processes of a run, with Jepsen semantics.
//!
//! A worker is bound to one replica (worker i talks to replica i % n: the
//! load and the anomalies of a replica are seen by the processes bound to
//! it). It has one operation in flight at a time. Each outcome is recorded:
//!
//! - `:ok`: the replica answered with success;
//! - `:fail`: the operation surely did not take effect: a CAS whose expected
//!   value did not match, an INVALID_ARGUMENT or FAILED_PRECONDITION, an
//!   UNAVAILABLE whose `paxoskv-outcome` trailer says `not-applied`, or a
//!   connection that could not even be opened (nothing was sent); any failed
//!   read (a read changes nothing, so failing it is always safe);
//! - `:info`: anything else (timeout, connection lost, unknown outcome). The
//!   operation may take effect at any later time, so the process never
//!   issues another op: the worker continues as a fresh process
//!   (`process + concurrency`) with a fresh client session.
//!
//! Sessions give exactly-once: each process picks a random client id and
//! numbers its writes 1, 2, 3... (reads use no session).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client::{ClientError, Op, Outcome, Reply};
use paxoskv::kv::kv_client::KvClient;
use rand::Rng;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::generator::{Generator, HistoryOp};
use crate::recorder::{Edn, OpType, Process, Recorder};

/// Counters shown by the progress bar.
#[derive(Debug, Default)]
pub struct Counters {
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
}

impl Counters {
    pub fn add(&self, t: OpType) {
        let c = match t {
            OpType::Ok => &self.ok,
            OpType::Fail => &self.fail,
            OpType::Info => &self.info,
            OpType::Invoke => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.fail.load(Ordering::Relaxed),
            self.info.load(Ordering::Relaxed),
        )
    }
}

/// The outcome of one request, ready to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub kind: OpType,
    pub value: Edn,
    pub error: Option<String>,
    /// What the key holds afterwards, if known (for the generator).
    pub observed: Option<Option<String>>,
}

/// Classifies the answer (or error) of one request, as returned by
/// [`client::execute_once`]. The client library decides whether a failed
/// request surely had no effect ([`Outcome::NotApplied`], `:fail`) or may
/// have had one (`:info`); a failed read changed nothing, so it is `:fail`.
pub fn classify(op: &Op, result: Result<Reply, ClientError>) -> Completion {
    match result {
        Err(e) => Completion {
            kind: if op.is_read_only() || e.outcome == Outcome::NotApplied {
                OpType::Fail
            } else {
                OpType::Info
            },
            value: op.invoke_value(),
            error: Some(e.to_string()),
            observed: None,
        },
        Ok(reply) => match op {
            Op::Cas { key, .. } if !reply.succeeded => Completion {
                kind: OpType::Fail,
                value: op.invoke_value(),
                error: Some(format!("cas mismatch: {key} holds {:?}", reply.value)),
                observed: Some(reply.value),
            },
            Op::Get { .. } => Completion {
                kind: OpType::Ok,
                value: op.ok_value(reply.value.clone()),
                error: None,
                observed: Some(reply.value),
            },
            _ => Completion {
                kind: OpType::Ok,
                value: op.invoke_value(),
                error: None,
                observed: Some(reply.value),
            },
        },
    }
}

/// Everything a worker needs.
pub struct Worker {
    pub index: usize,
    pub concurrency: usize,
    pub addr: String,
    pub client: KvClient<Channel>,
    pub generator: Generator,
    pub recorder: Recorder,
    pub request_timeout: Duration,
    pub backoff: Duration,
    /// Time between two ops of this worker (open loop), None: closed loop.
    pub pace: Option<Duration>,
    /// When the worker stops issuing ops (an op in flight completes).
    pub deadline: Instant,
    pub stop: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
}

impl Worker {
    /// Runs until the deadline; returns the number of ops issued.
    pub async fn run(mut self) -> u64 {
        let mut process = self.index as u64;
        let mut client_id = fresh_client_id();
        let mut seq = 0u64;
        let mut issued = 0u64;
        // Stagger open-loop workers over one period.
        let mut next = Instant::now()
            + self
                .pace
                .map(|p| p.mul_f64(self.index as f64 / self.concurrency.max(1) as f64))
                .unwrap_or_default();
        loop {
            if let Some(p) = self.pace {
                if next > Instant::now() {
                    tokio::time::sleep_until(next.min(self.deadline)).await;
                }
                // After a slow op, do not burst to catch up.
                next = next.max(Instant::now() - p) + p;
            }
            if Instant::now() >= self.deadline || self.stop.load(Ordering::Relaxed) {
                break;
            }
            let op = self.generator.next_op();
            // Reads use no session.
            let req = if op.is_read_only() {
                op.to_request(0, 0)
            } else {
                seq += 1;
                op.to_request(client_id, seq)
            };
            self.recorder.record(
                Process::Client(process),
                OpType::Invoke,
                op.f(),
                op.invoke_value(),
                Some(&self.addr),
                None,
            );
            issued += 1;
            let result =
                client::execute_once(&mut self.client, &self.addr, req, self.request_timeout).await;
            let c = classify(&op, result);
            self.recorder.record(
                Process::Client(process),
                c.kind,
                op.f(),
                c.value.clone(),
                Some(&self.addr),
                c.error.clone(),
            );
            self.counters.add(c.kind);
            if let Some(v) = c.observed {
                self.generator.observe(&op, v);
            }
            match c.kind {
                OpType::Info => {
                    process += self.concurrency as u64;
                    client_id = fresh_client_id();
                    seq = 0;
                    tokio::time::sleep(self.backoff).await;
                }
                OpType::Fail
                    if c.error
                        .as_deref()
                        .is_some_and(|e| !e.starts_with("cas mismatch")) =>
                {
                    tokio::time::sleep(self.backoff).await;
                }
                _ => {}
            }
        }
        issued
    }
}

fn fresh_client_id() -> u64 {
    rand::rng().random_range(1..u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use client::error::classify_status;
    use std::time::Duration;

    const NODE: &str = "127.0.0.1:8000";

    fn put() -> Op {
        Op::Put {
            key: "k".into(),
            value: "v".into(),
        }
    }

    fn status(s: tonic::Status) -> Result<Reply, ClientError> {
        Err(classify_status(&s, NODE))
    }

    #[test]
    fn outcomes_follow_jepsen() {
        let timeout = || Err(ClientError::timeout(Duration::from_secs(1), NODE));
        assert_eq!(classify(&put(), timeout()).kind, OpType::Info);
        assert_eq!(
            classify(&Op::Get { key: "k".into() }, timeout()).kind,
            OpType::Fail
        );
        let unknown = tonic::Status::unavailable("no majority");
        assert_eq!(classify(&put(), status(unknown)).kind, OpType::Info);
        let mut not_applied = tonic::Status::unavailable("no coordinator");
        not_applied
            .metadata_mut()
            .insert("paxoskv-outcome", "not-applied".parse().unwrap());
        assert_eq!(classify(&put(), status(not_applied)).kind, OpType::Fail);
        let bad = tonic::Status::invalid_argument("empty key");
        assert_eq!(classify(&put(), status(bad)).kind, OpType::Fail);
        let stale = tonic::Status::failed_precondition("stale seq");
        assert_eq!(classify(&put(), status(stale)).kind, OpType::Fail);
        let cas = Op::Cas {
            key: "k".into(),
            expected: Some("a".into()),
            new: "b".into(),
        };
        let reply = Reply {
            value: Some("c".into()),
            succeeded: false,
            slot: 3,
            served_by: String::new(),
        };
        let c = classify(&cas, Ok(reply));
        assert_eq!(c.kind, OpType::Fail);
        assert_eq!(c.observed, Some(Some("c".into())));
        let read = Reply {
            value: Some("x".into()),
            succeeded: true,
            slot: 0,
            served_by: String::new(),
        };
        let c = classify(&Op::Get { key: "k".into() }, Ok(read));
        assert_eq!(c.kind, OpType::Ok);
        assert_eq!(c.value.to_string(), "[\"k\" \"x\"]");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_fail() {
        // Nothing listens on port 1: nothing was sent, so the write is :fail.
        let mut kv = crate::cluster::kv_client("127.0.0.1:1", Duration::from_secs(1)).unwrap();
        let result = client::execute_once(
            &mut kv,
            "127.0.0.1:1",
            put().to_request(7, 1),
            Duration::from_secs(1),
        )
        .await;
        let c = classify(&put(), result);
        assert_eq!(c.kind, OpType::Fail, "{:?}", c.error);
    }
}
