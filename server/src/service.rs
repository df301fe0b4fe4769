//! The client-facing `Kv` gRPC service and the request executor it shares
//! with the `Forward` RPC.
//!
//! [`Executor::execute`] validates a request, hands it to the core, and when
//! this replica is not the coordinator forwards it (once: `forwarded = true`)
//! to the replica the core names as leader. While there is no coordinator it
//! waits and retries, until the request's deadline (its `grpc-timeout`,
//! capped at [`MAX_REQUEST_TIME`]) minus a margin, and then answers
//! UNAVAILABLE with the `paxoskv-outcome` trailer: `not-applied` when no
//! attempt could have taken effect, `unknown` otherwise. Retrying inside the
//! deadline is always safe: every attempt carries the client's
//! `(client_id, seq)`, so the session table applies the command at most once.

use std::sync::Arc;
use std::time::Duration;

use paxoskv::kv as pkv;
use paxoskv::Outcome;
use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};

use crate::forward::Forwarder;
use crate::kv::{Command, Op, OpResult};
use crate::node::NodeHandle;
use crate::paxos::{Executed, RequestError};

/// Longest time a request is worked on, whatever its `grpc-timeout` says.
pub const MAX_REQUEST_TIME: Duration = Duration::from_secs(5);
/// Longest wait for one forwarded attempt (see [`Executor::execute`]).
pub(crate) const FORWARD_ATTEMPT: Duration = Duration::from_millis(500);

/// The instant by which a request must be answered: its `grpc-timeout`
/// (capped at [`MAX_REQUEST_TIME`]), minus a margin so that the answer
/// reaches the client before it gives up.
pub(crate) fn request_deadline(metadata: &MetadataMap) -> Instant {
    let budget = metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .unwrap_or(MAX_REQUEST_TIME)
        .min(MAX_REQUEST_TIME);
    let margin = (budget / 10).max(Duration::from_millis(20));
    Instant::now() + budget.saturating_sub(margin)
}

/// Parses a `grpc-timeout` header value (`<digits><unit>`).
fn parse_grpc_timeout(s: &str) -> Option<Duration> {
    if s.len() < 2 || s.len() > 9 {
        return None;
    }
    let (digits, unit) = s.split_at(s.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// An UNAVAILABLE status with the outcome trailer.
pub(crate) fn unavailable(message: impl Into<String>, maybe_applied: bool) -> Status {
    let mut st = Status::unavailable(message);
    let outcome = if maybe_applied {
        Outcome::Unknown
    } else {
        Outcome::NotApplied
    };
    outcome.attach_to(&mut st);
    st
}

/// True if `st` is UNAVAILABLE with the `not-applied` trailer.
fn surely_not_applied(st: &Status) -> bool {
    st.code() == Code::Unavailable && Outcome::from_trailer(st) == Some(Outcome::NotApplied)
}

/// True if the transport failed to connect at all (nothing was sent).
fn connect_refused(st: &Status) -> bool {
    std::error::Error::source(st).is_some_and(paxoskv::refused_before_sending)
}

/// Runs client requests against the local core, forwarding when needed.
#[derive(Debug)]
pub struct Executor {
    node: NodeHandle,
    forwarder: Forwarder,
}

impl Executor {
    /// An executor for `node`.
    pub fn new(node: NodeHandle) -> Self {
        Executor {
            node,
            forwarder: Forwarder::default(),
        }
    }

    /// The table of requests this replica forwarded and waits for.
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// Executes `req`, answering by `deadline` at the latest.
    pub async fn execute(
        &self,
        req: pkv::ExecuteRequest,
        deadline: Instant,
    ) -> Result<pkv::ExecuteReply, Status> {
        let op = Op::from_request(&req).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if req.client_id == 0 && !op.is_read_only() {
            return Err(Status::invalid_argument(
                "client_id 0 (no session) is allowed for GET only",
            ));
        }
        let command = Command {
            client_id: req.client_id,
            seq: req.seq,
            op,
        };
        let tick = self.node.shared.tick.max(Duration::from_millis(5));
        let mut maybe_applied = false;
        let mut last_problem = String::from("no coordinator is known");
        loop {
            if Instant::now() >= deadline {
                return Err(unavailable(
                    format!("no answer before the deadline: {last_problem}"),
                    maybe_applied && !command.op.is_read_only(),
                ));
            }
            let reply = match self.forward_at_once(&req, &command) {
                // What the core would answer (see `forward_at_once`).
                Some(leader) => Err(RequestError::NotLeader {
                    leader_hint: Some(leader),
                }),
                None => match tokio::time::timeout_at(deadline, self.node.submit(command.clone()))
                    .await
                {
                    Err(_) => {
                        return Err(unavailable(
                            format!(
                            "the coordinator did not decide before the deadline ({last_problem})"
                        ),
                            !command.op.is_read_only(),
                        ))
                    }
                    Ok(Err(stopped)) => return Err(unavailable(stopped.to_string(), true)),
                    Ok(Ok(reply)) => reply,
                },
            };
            match reply {
                Ok(executed) => return Ok(self.reply(&command.op, executed)),
                Err(RequestError::Stale(s)) => {
                    return Err(Status::failed_precondition(s.to_string()))
                }
                Err(
                    overloaded
                    @ (RequestError::Overloaded { .. } | RequestError::DiskBehind { .. }),
                ) => return Err(unavailable(overloaded.to_string(), maybe_applied)),
                Err(RequestError::OutcomeUnknown { .. }) => {
                    maybe_applied = true;
                    last_problem = "the coordinator lost leadership after proposing".into();
                }
                Err(RequestError::NotLeader { leader_hint }) => {
                    if req.forwarded {
                        return Err(unavailable(
                            format!(
                                "replica {} is not the coordinator (forwarded request)",
                                self.node.shared.id
                            ),
                            maybe_applied,
                        ));
                    }
                    if let Some(leader) = leader_hint {
                        match self.forward(&req, leader, deadline).await {
                            Ok(reply) => return Ok(reply),
                            Err(st) => {
                                if matches!(
                                    st.code(),
                                    Code::InvalidArgument | Code::FailedPrecondition
                                ) {
                                    return Err(st);
                                }
                                if !surely_not_applied(&st) && !connect_refused(&st) {
                                    maybe_applied = true;
                                }
                                last_problem = format!(
                                    "forwarding to replica {leader} failed: {}",
                                    st.message()
                                );
                            }
                        }
                    } else {
                        last_problem = "no coordinator is known (election in progress?)".into();
                    }
                }
            }
            let pause = Instant::now() + tick;
            tokio::time::sleep_until(pause.min(deadline)).await;
        }
    }

    /// The coordinator to forward `command` to without asking the core: a
    /// write (reads at a follower are served here, with a read index) that
    /// a client sent to a follower of a known coordinator. The core would
    /// only answer `NotLeader` naming it, a round trip through its task
    /// per request.
    fn forward_at_once(&self, req: &pkv::ExecuteRequest, command: &Command) -> Option<usize> {
        if req.forwarded || command.op.is_read_only() {
            return None;
        }
        self.node.shared.coordinator_to_forward_to()
    }

    /// Sends `req` to the coordinator `leader` with the time left.
    async fn forward(
        &self,
        req: &pkv::ExecuteRequest,
        leader: usize,
        deadline: Instant,
    ) -> Result<pkv::ExecuteReply, Status> {
        let mut fwd = req.clone();
        fwd.forwarded = true;
        // One attempt gets at most FORWARD_ATTEMPT: a coordinator that was
        // paused or partitioned away is replaced within that time, and the
        // retry goes to its successor (same (client_id, seq): applied once).
        let attempt_end = deadline.min(Instant::now() + FORWARD_ATTEMPT);
        self.forwarder
            .forward(&self.node.peers, leader, fwd, attempt_end)
            .await
    }

    fn reply(&self, op: &Op, executed: Executed) -> pkv::ExecuteReply {
        let (value, succeeded) = match executed.result {
            OpResult::Value(v) => {
                let exists = v.is_some();
                (v, exists)
            }
            OpResult::Done => match op {
                Op::Put { value, .. } => (Some(value.clone()), true),
                _ => (None, true),
            },
            OpResult::Deleted(existed) => (None, existed),
            OpResult::Cas { swapped, current } => (current, swapped),
            OpResult::Appended(v) => (Some(v), true),
        };
        pkv::ExecuteReply {
            value,
            succeeded,
            slot: executed.slot,
            served_by: self.node.shared.my_addr.clone(),
        }
    }
}

/// The `Kv` gRPC service (served on `my_addr`).
#[derive(Clone, Debug)]
pub struct KvService {
    node: NodeHandle,
    executor: Arc<Executor>,
}

impl KvService {
    /// A service for `node` using `executor`.
    pub fn new(node: NodeHandle, executor: Arc<Executor>) -> Self {
        KvService { node, executor }
    }

    /// The tonic server wrapper.
    pub fn into_server(self) -> pkv::kv_server::KvServer<Self> {
        // Values of up to 1 MiB (two of them in a CAS) must fit.
        pkv::kv_server::KvServer::new(self).max_decoding_message_size(8 << 20)
    }
}

#[tonic::async_trait]
impl pkv::kv_server::Kv for KvService {
    async fn execute(
        &self,
        request: Request<pkv::ExecuteRequest>,
    ) -> Result<Response<pkv::ExecuteReply>, Status> {
        let deadline = request_deadline(request.metadata());
        self.executor
            .execute(request.into_inner(), deadline)
            .await
            .map(Response::new)
    }

    async fn status(
        &self,
        _request: Request<pkv::StatusRequest>,
    ) -> Result<Response<pkv::StatusReply>, Status> {
        let st = self
            .node
            .status()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let shared = &self.node.shared;
        let core = st.core;
        let ballot = core.own_ballot.unwrap_or(core.promised);
        Ok(Response::new(pkv::StatusReply {
            role: core.role.to_string(),
            ballot_round: ballot.round,
            ballot_replica: ballot.replica as u32,
            leader: core.leader.map(|l| l as u32),
            leader_addr: core
                .leader
                .and_then(|l| shared.client_addr(l))
                .unwrap_or_default(),
            commit_index: core.commit_index,
            applied_index: core.applied_index,
            digest: core.digest,
            replica_id: shared.id as u32,
            my_addr: shared.my_addr.clone(),
            my_paxos: shared.my_paxos.clone(),
            fail_rate: shared.fail_rate(),
            read_mode: shared.read_mode.as_str().into(),
            keys: st.keys,
        }))
    }

    async fn set_fail_rate(
        &self,
        request: Request<pkv::SetFailRateRequest>,
    ) -> Result<Response<pkv::SetFailRateReply>, Status> {
        let rate = request.into_inner().fail_rate;
        if !(0.0..=1.0).contains(&rate) {
            return Err(Status::invalid_argument(format!(
                "fail_rate must be in [0, 1], got {rate}"
            )));
        }
        let previous = self.node.shared.set_fail_rate(rate);
        tracing::info!(previous, rate, "fail_rate changed");
        Ok(Response::new(pkv::SetFailRateReply { previous }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_parsing() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout("12q"), None);
        assert_eq!(parse_grpc_timeout("1234567890S"), None);
    }

    #[test]
    fn unavailable_carries_outcome() {
        let st = unavailable("x", false);
        assert!(surely_not_applied(&st));
        assert!(!surely_not_applied(&unavailable("x", true)));
    }
}
