//! Forwarding client requests from a follower to the coordinator over the
//! existing peer streams.
//!
//! A follower used to make one unary `Forward` gRPC call per request: an
//! HTTP/2 stream, headers and a task on both sides for every command. Now the
//! request travels as a [`pb::ForwardRequest`] in the follower's outbound
//! queue to the coordinator, where it is batched into envelopes with
//! everything else going that way (as etcd sends proposals over raft); the
//! coordinator executes it like the `Forward` RPC and puts the answer, a
//! [`pb::ForwardReply`] with the same id, into its own queue back.
//!
//! [`Forwarder`] is the follower's side: a table of requests in flight,
//! each waiting on a oneshot for its answer. A request whose answer does not
//! come back in time (the stream broke, the coordinator is paused) is
//! removed from the table and reported with an unknown outcome, exactly as a
//! timed-out unary call was; a late answer then finds no one and is dropped.
//! [`reply_for`] and [`status_of`] carry a gRPC result through the message,
//! code, text and `paxoskv-outcome` trailer included.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use paxoskv::kv as pkv;
use paxoskv::paxos as pb;
use paxoskv::Outcome;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::paxos::ReplicaId;
use crate::peer::Peers;

/// The answer to one forwarded request.
type Answer = Result<pkv::ExecuteReply, Status>;

/// The follower's table of requests forwarded and not yet answered.
#[derive(Debug, Default)]
pub struct Forwarder {
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
}

impl Forwarder {
    /// Sends `req` (already marked `forwarded`) to the coordinator `leader`
    /// and waits for its answer until `attempt_end`.
    pub async fn forward(
        &self,
        peers: &Peers,
        leader: ReplicaId,
        req: pkv::ExecuteRequest,
        attempt_end: Instant,
    ) -> Answer {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        let left = attempt_end.saturating_duration_since(Instant::now());
        let msg = pb::PaxosMessage {
            kind: Some(pb::paxos_message::Kind::Forward(pb::ForwardRequest {
                id,
                timeout_ms: left.as_millis().max(1) as u64,
                request: Some(req),
            })),
        };
        if !peers.send_pb(leader, msg) {
            self.lock().remove(&id);
            return Err(crate::service::unavailable(
                format!("the queue to replica {leader} is full; the request was not sent"),
                false,
            ));
        }
        match tokio::time::timeout_at(attempt_end, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) | Err(_) => {
                self.lock().remove(&id);
                Err(crate::service::unavailable(
                    format!("replica {leader} did not answer a forwarded request in time"),
                    true,
                ))
            }
        }
    }

    /// An answer from the coordinator: hands it to the request waiting for
    /// it (if it still waits).
    pub fn on_reply(&self, reply: pb::ForwardReply) {
        let waiter = self.lock().remove(&reply.id);
        if let Some(tx) = waiter {
            let _ = tx.send(status_of(reply));
        }
    }

    /// Requests waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Answer>>> {
        // A panic while holding the lock leaves a consistent map.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The time a coordinator may spend on a forwarded request, capped like a
/// client's own deadline.
pub fn budget(req: &pb::ForwardRequest) -> Duration {
    Duration::from_millis(req.timeout_ms).min(crate::service::MAX_REQUEST_TIME)
}

/// The message that carries `answer` back for request `id`.
pub fn reply_for(id: u64, answer: Answer) -> pb::PaxosMessage {
    let reply = match answer {
        Ok(reply) => pb::ForwardReply {
            id,
            code: Code::Ok as i32,
            message: String::new(),
            outcome: String::new(),
            reply: Some(reply),
        },
        Err(st) => pb::ForwardReply {
            id,
            code: st.code() as i32,
            message: st.message().to_string(),
            outcome: Outcome::from_trailer(&st)
                .map(|o| o.trailer_value().to_string())
                .unwrap_or_default(),
            reply: None,
        },
    };
    pb::PaxosMessage {
        kind: Some(pb::paxos_message::Kind::ForwardReply(reply)),
    }
}

/// The gRPC result a [`pb::ForwardReply`] stands for.
pub fn status_of(reply: pb::ForwardReply) -> Answer {
    let code = Code::from_i32(reply.code);
    match (code, reply.reply) {
        (Code::Ok, Some(r)) => Ok(r),
        (Code::Ok, None) => Err(crate::service::unavailable(
            "a forwarded request was answered without a reply",
            true,
        )),
        (code, _) => {
            let mut st = Status::new(code, reply.message);
            let outcome = [Outcome::NotApplied, Outcome::Unknown]
                .into_iter()
                .find(|o| o.trailer_value() == reply.outcome);
            if let Some(o) = outcome {
                o.attach_to(&mut st);
            }
            Err(st)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_survive_the_trip() {
        let ok = pkv::ExecuteReply {
            value: Some("v".into()),
            succeeded: true,
            slot: 4,
            served_by: "a:1".into(),
        };
        let back = |a: Answer| match reply_for(9, a).kind {
            Some(pb::paxos_message::Kind::ForwardReply(r)) => {
                assert_eq!(r.id, 9);
                status_of(r)
            }
            other => panic!("not a forward reply: {other:?}"),
        };
        assert_eq!(back(Ok(ok.clone())).unwrap(), ok);
        for maybe_applied in [false, true] {
            let st = back(Err(crate::service::unavailable("gone", maybe_applied))).unwrap_err();
            assert_eq!(st.code(), Code::Unavailable);
            assert_eq!(st.message(), "gone");
            let want = if maybe_applied {
                Outcome::Unknown
            } else {
                Outcome::NotApplied
            };
            assert_eq!(Outcome::from_trailer(&st), Some(want));
        }
        let st = back(Err(Status::failed_precondition("stale"))).unwrap_err();
        assert_eq!(st.code(), Code::FailedPrecondition);
        assert_eq!(Outcome::from_trailer(&st), None);
    }
}
