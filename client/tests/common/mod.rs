//! A scripted, in-process fake of the paxoskv `Kv` service for client tests.
//!
//! Each fake replica serves on its own 127.0.0.1 port (tests use ports in
//! 21000-21999), follows a script of behaviours (one per request, then a
//! default), and records every request it received so tests can assert on
//! the `(client_id, seq)` the client sent. Fake replicas can share one
//! [`Store`] that deduplicates by `(client_id, seq)` like the real server,
//! which is what makes "a retried write is applied once" observable.
#![allow(dead_code)] // each test file uses a different part of it

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use paxoskv::kv::kv_server::{Kv, KvServer};
use paxoskv::kv::{
    execute_request::Op, ExecuteReply, ExecuteRequest, SetFailRateReply, SetFailRateRequest,
    StatusReply, StatusRequest,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};

/// What a fake replica does with one Execute request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Executes it on the shared store and answers.
    Serve,
    /// UNAVAILABLE with `paxoskv-outcome: not-applied`.
    UnavailableNotApplied,
    /// UNAVAILABLE without the trailer (outcome unknown).
    UnavailableUnknown,
    /// Executes it, then answers UNAVAILABLE without trailer: a lost reply.
    ApplyThenFail,
    /// Never answers.
    Hang,
    /// INVALID_ARGUMENT.
    InvalidArgument,
}

/// A tiny key-value state machine with exactly-once sessions.
#[derive(Debug, Default)]
pub struct Store {
    data: HashMap<String, String>,
    /// Per client: the last seq executed and its reply.
    sessions: HashMap<u64, (u64, ExecuteReply)>,
    slot: u64,
}

impl Store {
    fn execute(&mut self, req: &ExecuteRequest, served_by: &str) -> Result<ExecuteReply, Status> {
        if let Some((seq, reply)) = self.sessions.get(&req.client_id) {
            if *seq == req.seq {
                return Ok(reply.clone());
            }
            if *seq > req.seq {
                return Err(Status::failed_precondition("stale sequence number"));
            }
        }
        let op = req
            .op
            .clone()
            .ok_or_else(|| Status::invalid_argument("missing op"))?;
        self.slot += 1;
        let (value, succeeded) = match op {
            Op::Get(g) => {
                let v = self.data.get(&g.key).cloned();
                let found = v.is_some();
                (v, found)
            }
            Op::Put(p) => {
                self.data.insert(p.key, p.value.clone());
                (Some(p.value), true)
            }
            Op::Delete(d) => (None, self.data.remove(&d.key).is_some()),
            Op::Cas(c) => {
                let cur = self.data.get(&c.key).cloned();
                if cur == c.expected {
                    self.data.insert(c.key, c.new_value.clone());
                    (Some(c.new_value), true)
                } else {
                    (cur, false)
                }
            }
            Op::Append(a) => {
                let v = self.data.entry(a.key).or_default();
                v.push_str(&a.value);
                (Some(v.clone()), true)
            }
        };
        let reply = ExecuteReply {
            value,
            succeeded,
            slot: self.slot,
            served_by: served_by.to_owned(),
        };
        self.sessions
            .insert(req.client_id, (req.seq, reply.clone()));
        Ok(reply)
    }
}

/// The service implementation behind one fake replica.
struct FakeKv {
    addr: String,
    /// What replies report in `served_by`: `addr`, or the coordinator this
    /// replica pretends to relay to.
    served_by: String,
    script: Mutex<VecDeque<Behavior>>,
    default: Behavior,
    received: Arc<Mutex<Vec<ExecuteRequest>>>,
    store: Arc<Mutex<Store>>,
}

fn unavailable(trailer: Option<&str>) -> Status {
    let mut md = MetadataMap::new();
    if let Some(t) = trailer {
        md.insert(paxoskv::OUTCOME_TRAILER, t.parse().expect("ascii trailer"));
    }
    Status::with_metadata(Code::Unavailable, "no majority reachable", md)
}

#[tonic::async_trait]
impl Kv for FakeKv {
    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<ExecuteReply>, Status> {
        let req = request.into_inner();
        self.received.lock().expect("lock").push(req.clone());
        let behavior = self
            .script
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or(self.default);
        let apply = |req: &ExecuteRequest| {
            self.store
                .lock()
                .expect("lock")
                .execute(req, &self.served_by)
        };
        match behavior {
            Behavior::Serve => apply(&req).map(Response::new),
            Behavior::UnavailableNotApplied => Err(unavailable(Some("not-applied"))),
            Behavior::UnavailableUnknown => Err(unavailable(None)),
            Behavior::ApplyThenFail => {
                apply(&req)?;
                Err(unavailable(None))
            }
            Behavior::Hang => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            Behavior::InvalidArgument => Err(Status::invalid_argument("empty key")),
        }
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        Ok(Response::new(StatusReply {
            role: "coordinator".into(),
            ballot_round: 3,
            ballot_replica: 0,
            leader: Some(0),
            leader_addr: self.addr.clone(),
            commit_index: 7,
            applied_index: 7,
            digest: 0xabcdef,
            replica_id: 0,
            my_addr: self.addr.clone(),
            my_paxos: "127.0.0.1:9000".into(),
            fail_rate: 0.25,
            read_mode: "quorum".into(),
            keys: 2,
        }))
    }

    async fn set_fail_rate(
        &self,
        request: Request<SetFailRateRequest>,
    ) -> Result<Response<SetFailRateReply>, Status> {
        let _ = request.into_inner();
        Ok(Response::new(SetFailRateReply { previous: 0.25 }))
    }
}

/// A running fake replica; stops when dropped.
pub struct FakeReplica {
    /// `127.0.0.1:port`.
    pub addr: String,
    received: Arc<Mutex<Vec<ExecuteRequest>>>,
    _stop: oneshot::Sender<()>,
}

impl FakeReplica {
    /// Starts a fake replica on 127.0.0.1:`port` that follows `script`, then
    /// `default`, executing on `store`.
    pub async fn start(
        port: u16,
        script: &[Behavior],
        default: Behavior,
        store: Arc<Mutex<Store>>,
    ) -> FakeReplica {
        FakeReplica::start_as(port, script, default, store, None).await
    }

    /// A follower that serves everything on `store` as if relaying to the
    /// coordinator whose `my_addr` is `coordinator`: its replies name it in
    /// `served_by`.
    pub async fn relaying(port: u16, coordinator: &str, store: Arc<Mutex<Store>>) -> FakeReplica {
        FakeReplica::start_as(port, &[], Behavior::Serve, store, Some(coordinator)).await
    }

    async fn start_as(
        port: u16,
        script: &[Behavior],
        default: Behavior,
        store: Arc<Mutex<Store>>,
        served_by: Option<&str>,
    ) -> FakeReplica {
        let addr = format!("127.0.0.1:{port}");
        let listener = TcpListener::bind(&addr).await.expect("bind test port");
        let received = Arc::new(Mutex::new(Vec::new()));
        let svc = FakeKv {
            addr: addr.clone(),
            served_by: served_by.unwrap_or(&addr).to_owned(),
            script: Mutex::new(script.iter().copied().collect()),
            default,
            received: received.clone(),
            store,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(KvServer::new(svc))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        FakeReplica {
            addr,
            received,
            _stop: stop,
        }
    }

    /// A fake replica with its own store that serves everything.
    pub async fn serving(port: u16) -> FakeReplica {
        FakeReplica::start(port, &[], Behavior::Serve, Arc::default()).await
    }

    /// The `(client_id, seq)` of every request received, in order.
    pub fn received(&self) -> Vec<(u64, u64)> {
        self.received
            .lock()
            .expect("lock")
            .iter()
            .map(|r| (r.client_id, r.seq))
            .collect()
    }
}

/// An address on which nothing listens (connection refused).
pub fn refused_addr(port: u16) -> String {
    // Bind and drop to make sure the port is free right now.
    drop(std::net::TcpListener::bind(("127.0.0.1", port)).expect("free test port"));
    format!("127.0.0.1:{port}")
}
