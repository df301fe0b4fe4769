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

use paxoskv::kv::execute_request::Op as WireOp;
use paxoskv::kv::kv_client::KvClient;
use paxoskv::kv::{Append, Cas, Delete, ExecuteReply, ExecuteRequest, Get, Put};
use rand::Rng;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::generator::{Generator, KvOp};
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

/// Builds the wire request of an op.
pub fn request(op: &KvOp, client_id: u64, seq: u64) -> ExecuteRequest {
    let wire = match op.clone() {
        KvOp::Get { key } => WireOp::Get(Get { key }),
        KvOp::Put { key, value } => WireOp::Put(Put { key, value }),
        KvOp::Delete { key } => WireOp::Delete(Delete { key }),
        KvOp::Cas { key, expected, new } => WireOp::Cas(Cas {
            key,
            expected,
            new_value: new,
        }),
        KvOp::Append { key, value } => WireOp::Append(Append { key, value }),
    };
    ExecuteRequest {
        client_id,
        seq,
        op: Some(wire),
        forwarded: false,
    }
}

/// Whether a gRPC error proves the request never reached a server: the
/// connection could not be opened, so nothing was sent.
fn never_sent(status: &tonic::Status) -> bool {
    let mut text = format!("{} {:?}", status.message(), status);
    let mut src = std::error::Error::source(status);
    while let Some(e) = src {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        text.push_str(&e.to_string());
        src = e.source();
    }
    text.contains("Connection refused") || text.contains("tcp connect error")
}

/// Classifies the answer (or error, or timeout) of one request.
pub fn classify(op: &KvOp, result: Option<Result<ExecuteReply, tonic::Status>>) -> Completion {
    let is_read = matches!(op, KvOp::Get { .. });
    let failed = |kind: OpType, error: String| Completion {
        // A read that did not complete changed nothing: always :fail.
        kind: if is_read { OpType::Fail } else { kind },
        value: op.invoke_value(),
        error: Some(error),
        observed: None,
    };
    match result {
        None => failed(OpType::Info, "timeout".into()),
        Some(Ok(reply)) => match op {
            KvOp::Cas { key, .. } if !reply.succeeded => Completion {
                kind: OpType::Fail,
                value: op.invoke_value(),
                error: Some(format!("cas mismatch: {key} holds {:?}", reply.value)),
                observed: Some(reply.value),
            },
            KvOp::Get { .. } => Completion {
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
        Some(Err(status)) => {
            use tonic::Code;
            let msg = format!("{:?}: {}", status.code(), status.message());
            let not_applied = status
                .metadata()
                .get("paxoskv-outcome")
                .and_then(|v| v.to_str().ok())
                == Some("not-applied");
            match status.code() {
                Code::InvalidArgument | Code::FailedPrecondition => failed(OpType::Fail, msg),
                Code::Unavailable if not_applied => failed(OpType::Fail, msg),
                _ if never_sent(&status) => failed(OpType::Fail, format!("not sent: {msg}")),
                _ => failed(OpType::Info, msg),
            }
        }
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
            let req_seq = if matches!(op, KvOp::Get { .. }) {
                0
            } else {
                seq += 1;
                seq
            };
            let req_client = if req_seq == 0 { 0 } else { client_id };
            let mut req = tonic::Request::new(request(&op, req_client, req_seq));
            req.set_timeout(self.request_timeout);
            self.recorder.record(
                Process::Client(process),
                OpType::Invoke,
                op.f(),
                op.invoke_value(),
                Some(&self.addr),
                None,
            );
            issued += 1;
            let result = tokio::time::timeout(self.request_timeout, self.client.execute(req))
                .await
                .ok()
                .map(|r| r.map(|r| r.into_inner()));
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

    fn put() -> KvOp {
        KvOp::Put {
            key: "k".into(),
            value: "v".into(),
        }
    }

    #[test]
    fn outcomes_follow_jepsen() {
        assert_eq!(classify(&put(), None).kind, OpType::Info);
        assert_eq!(
            classify(&KvOp::Get { key: "k".into() }, None).kind,
            OpType::Fail
        );
        let unknown = tonic::Status::unavailable("no majority");
        assert_eq!(classify(&put(), Some(Err(unknown))).kind, OpType::Info);
        let mut not_applied = tonic::Status::unavailable("no coordinator");
        not_applied
            .metadata_mut()
            .insert("paxoskv-outcome", "not-applied".parse().unwrap());
        assert_eq!(classify(&put(), Some(Err(not_applied))).kind, OpType::Fail);
        let bad = tonic::Status::invalid_argument("empty key");
        assert_eq!(classify(&put(), Some(Err(bad))).kind, OpType::Fail);
        let cas = KvOp::Cas {
            key: "k".into(),
            expected: Some("a".into()),
            new: "b".into(),
        };
        let reply = ExecuteReply {
            value: Some("c".into()),
            succeeded: false,
            slot: 3,
            served_by: String::new(),
        };
        let c = classify(&cas, Some(Ok(reply)));
        assert_eq!(c.kind, OpType::Fail);
        assert_eq!(c.observed, Some(Some("c".into())));
        let read = ExecuteReply {
            value: Some("x".into()),
            succeeded: true,
            slot: 0,
            served_by: String::new(),
        };
        let c = classify(&KvOp::Get { key: "k".into() }, Some(Ok(read)));
        assert_eq!(c.kind, OpType::Ok);
        assert_eq!(c.value.to_edn(), "[\"k\" \"x\"]");
    }
}
