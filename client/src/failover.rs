//! The failover client: one session `(client_id, seq)` over a list of
//! replicas.
//!
//! Each [`Client::execute`] takes the next sequence number and keeps it for
//! every attempt of that command, so a command retried on another replica
//! after a lost answer is applied at most once (the replicas deduplicate by
//! `(client_id, seq)`).
//!
//! Attempts go to the replicas in list order, starting from the replica
//! that executed the last command (the reply's `served_by`: the
//! coordinator, or for a GET the follower that served it with a read index)
//! when it is one of the configured addresses, which saves the hop through a
//! follower that relays; otherwise from the last replica that answered. Any retryable
//! failure moves on to the next replica; after a full round without success
//! the client sleeps a short, growing, jittered backoff. All of it happens
//! within [`ClientOptions::timeout`]; each attempt gets at most
//! [`ClientOptions::attempt_timeout`]. The final error's outcome is
//! folded by [`AttemptLog`]: `NotApplied` only if every attempt surely had no
//! effect, `Unknown` as soon as one attempt may have. A failed GET is always
//! `NotApplied`, since a read cannot change the store.
//!
//! Errors that no other replica can cure (INVALID_ARGUMENT, a stale sequence
//! number) end the command at once, without trying further replicas.
//!
//! Channels are created per replica on first use and cached. A connection is
//! established explicitly before the request is sent, so a connect failure is
//! known to have sent nothing ([`Outcome::NotApplied`](crate::Outcome::NotApplied)); after a transport
//! failure or a timeout the cached channel is dropped, so the next attempt on
//! that replica connects afresh (and a paused or dead replica is not trusted
//! with a half-dead connection).

use std::time::Duration;

use paxoskv::kv::{kv_client::KvClient, ExecuteRequest};
use rand::Rng;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::addr::Address;
use crate::error::{classify_connect_error, classify_status, AttemptLog, ClientError, ErrorKind};
use crate::op::{Op, Reply};

/// First backoff after a round in which every replica failed.
const BACKOFF_START: Duration = Duration::from_millis(20);
/// Upper bound of the backoff between rounds.
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// How a [`Client`] retries and times out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientOptions {
    /// Deadline of a whole command, retries included (default 5 s).
    pub timeout: Duration,
    /// Deadline of one attempt on one replica, connecting included
    /// (default 1 s).
    pub attempt_timeout: Duration,
    /// The session id; `None` picks a random non-zero one.
    pub client_id: Option<u64>,
    /// Whether to retry on the other replicas (default true). With `false`
    /// the client makes exactly one attempt per command, on the first
    /// address, and returns its error as is.
    pub failover: bool,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(1),
            client_id: None,
            failover: true,
        }
    }
}

/// One replica the client may talk to.
#[derive(Debug)]
struct Replica {
    /// Where it is.
    addr: Address,
    /// The cached connection, if one is established and trusted.
    channel: Option<Channel>,
}

/// A session with a paxoskv cluster. Not shareable: one command at a time
/// (`&mut self`), as the session's sequence numbers require.
#[derive(Debug)]
pub struct Client {
    /// The replicas in priority order.
    replicas: Vec<Replica>,
    /// Where attempts start: the coordinator that executed the last command
    /// if it is in the list, else the replica that answered last.
    preferred: usize,
    /// This session's id (never 0, which the server reserves for "no
    /// session").
    client_id: u64,
    /// The sequence number the next command will use.
    next_seq: u64,
    /// Timeouts and failover policy.
    opts: ClientOptions,
}

impl Client {
    /// Creates a client for the given replica addresses (`host:port` or
    /// `http://host:port`). Validates the addresses; connects lazily, on the
    /// first command.
    pub fn new(addrs: Vec<String>, opts: ClientOptions) -> Result<Client, ClientError> {
        if addrs.is_empty() {
            return Err(ClientError::bad_address("no replica address given"));
        }
        let replicas = addrs
            .iter()
            .map(|a| {
                Address::parse(a).map(|addr| Replica {
                    addr,
                    channel: None,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if opts.client_id == Some(0) {
            return Err(ClientError::new(
                crate::Outcome::NotApplied,
                ErrorKind::InvalidArgument,
                "client_id 0 is reserved for \"no session\"",
                None,
            ));
        }
        let client_id = opts
            .client_id
            .unwrap_or_else(|| rand::rng().random_range(1..=u64::MAX));
        Ok(Client {
            replicas,
            preferred: 0,
            client_id,
            next_seq: 1,
            opts,
        })
    }

    /// This session's client id.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The sequence number the next command will use.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The replica addresses (`host:port`), in priority order.
    pub fn addresses(&self) -> Vec<String> {
        self.replicas
            .iter()
            .map(|r| r.addr.host_port.clone())
            .collect()
    }

    /// The replica the next command will try first (`host:port`).
    pub fn preferred_address(&self) -> &str {
        &self.replicas[self.preferred].addr.host_port
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// Executes one command with failover and retries (see the module doc).
    pub async fn execute(&mut self, op: Op) -> Result<Reply, ClientError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let request = op.to_request(self.client_id, seq);
        let deadline = Instant::now() + self.opts.timeout;
        let n = self.replicas.len();
        let mut idx = if self.opts.failover {
            self.preferred
        } else {
            0
        };
        let mut log = AttemptLog::default();
        let mut tried_this_round = 0;
        let mut backoff = BACKOFF_START;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let budget = self.opts.attempt_timeout.min(deadline - now);
            match self.attempt(idx, &request, budget).await {
                Ok(reply) => {
                    self.preferred = self.index_of(&reply.served_by).unwrap_or(idx);
                    return Ok(reply);
                }
                Err(err) => {
                    let retry = self.opts.failover && err.kind.is_retryable();
                    log.record(err);
                    if !retry {
                        break;
                    }
                }
            }
            idx = (idx + 1) % n;
            tried_this_round += 1;
            if tried_this_round == n {
                tried_this_round = 0;
                let jitter = rand::rng().random_range(0.5..1.0);
                let pause = backoff.mul_f64(jitter);
                let left = deadline.saturating_duration_since(Instant::now());
                if left <= pause {
                    break;
                }
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
        Err(log.finish(op.is_read_only(), self.opts.timeout))
    }

    /// The position in the list of the replica whose address is `addr` (a
    /// reply's `served_by`, the server's `my_addr`), if it is there. Spelling
    /// differences (`http://`, a trailing `/`, the host's case) do not
    /// matter; a wildcard `my_addr` such as `0.0.0.0:8000` matches nothing.
    fn index_of(&self, addr: &str) -> Option<usize> {
        let addr = Address::parse(addr).ok()?;
        self.replicas
            .iter()
            .position(|r| r.addr.host_port.eq_ignore_ascii_case(&addr.host_port))
    }

    /// One attempt of `request` on replica `idx`, within `budget`.
    async fn attempt(
        &mut self,
        idx: usize,
        request: &ExecuteRequest,
        budget: Duration,
    ) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + budget;
        let replica = &mut self.replicas[idx];
        let name = replica.addr.host_port.clone();
        let channel = match &replica.channel {
            Some(c) => c.clone(),
            None => {
                let c = connect(&replica.addr, budget).await?;
                replica.channel = Some(c.clone());
                c
            }
        };
        let result = send_once(
            &mut KvClient::new(channel),
            &name,
            request.clone(),
            deadline,
            budget,
        )
        .await;
        if let Err(err) = &result {
            if matches!(
                err.kind,
                ErrorKind::Transport | ErrorKind::Connect | ErrorKind::Timeout
            ) {
                self.replicas[idx].channel = None;
            }
        }
        result
    }
}

/// Sends `request` once to `replica` over `client` and classifies the
/// answer: one attempt, no retry, no failover, no session bookkeeping (the
/// request carries its own `(client_id, seq)`, see [`Op::to_request`]).
///
/// This is one attempt of [`Client::execute`], for a caller bound to one
/// replica, such as a Jepsen process of the harness. The error's outcome is
/// that of the attempt as classified by [`classify_status`] (no answer within
/// `timeout` is [`crate::Outcome::Unknown`]); that a failed GET changed
/// nothing is left to the caller.
pub async fn execute_once(
    client: &mut KvClient<Channel>,
    replica: &str,
    request: ExecuteRequest,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    send_once(client, replica, request, Instant::now() + timeout, timeout).await
}

/// [`execute_once`] by `deadline`; a timeout error says `no answer within
/// {waited}`.
async fn send_once(
    client: &mut KvClient<Channel>,
    replica: &str,
    request: ExecuteRequest,
    deadline: Instant,
    waited: Duration,
) -> Result<Reply, ClientError> {
    let mut req = tonic::Request::new(request);
    req.set_timeout(deadline.saturating_duration_since(Instant::now()));
    match tokio::time::timeout_at(deadline, client.execute(req)).await {
        Ok(Ok(resp)) => Ok(Reply::from(resp.into_inner())),
        Ok(Err(status)) => Err(classify_status(&status, replica)),
        Err(_elapsed) => Err(ClientError::timeout(waited, replica)),
    }
}

/// Establishes a connection to `addr` within `budget`. Any failure here means
/// nothing was sent.
pub(crate) async fn connect(addr: &Address, budget: Duration) -> Result<Channel, ClientError> {
    let endpoint = Endpoint::from_shared(addr.uri.clone())
        .map_err(|e| ClientError::bad_address(format!("bad address {}: {e}", addr.host_port)))?
        .connect_timeout(budget)
        .tcp_nodelay(true);
    match tokio::time::timeout(budget, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(classify_connect_error(&e, &addr.host_port)),
        Err(_elapsed) => Err(ClientError::new(
            crate::Outcome::NotApplied,
            ErrorKind::Connect,
            format!(
                "could not connect within {}",
                crate::error::fmt_duration(budget)
            ),
            Some(&addr.host_port),
        )),
    }
}

impl Client {
    /// Reads `key`.
    pub async fn get(&mut self, key: &str) -> Result<Reply, ClientError> {
        self.execute(Op::Get { key: key.into() }).await
    }

    /// Sets `key` to `value`.
    pub async fn put(&mut self, key: &str, value: &str) -> Result<Reply, ClientError> {
        self.execute(Op::Put {
            key: key.into(),
            value: value.into(),
        })
        .await
    }

    /// Removes `key`; `succeeded` says whether it existed.
    pub async fn delete(&mut self, key: &str) -> Result<Reply, ClientError> {
        self.execute(Op::Delete { key: key.into() }).await
    }

    /// Sets `key` to `new` if its value is `expected` (`None`: absent);
    /// `succeeded` says whether the swap happened.
    pub async fn cas(
        &mut self,
        key: &str,
        expected: Option<&str>,
        new: &str,
    ) -> Result<Reply, ClientError> {
        self.execute(Op::Cas {
            key: key.into(),
            expected: expected.map(str::to_owned),
            new: new.into(),
        })
        .await
    }

    /// Appends `value` to `key`; the reply holds the new value.
    pub async fn append(&mut self, key: &str, value: &str) -> Result<Reply, ClientError> {
        self.execute(Op::Append {
            key: key.into(),
            value: value.into(),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_validates_addresses_and_picks_a_nonzero_id() {
        let c = Client::new(
            vec!["127.0.0.1:1".into(), "http://localhost:2".into()],
            ClientOptions::default(),
        )
        .expect("valid");
        assert_ne!(c.client_id(), 0);
        assert_eq!(c.next_seq(), 1);
        assert_eq!(c.addresses(), vec!["127.0.0.1:1", "localhost:2"]);
        let e = Client::new(vec!["nope".into()], ClientOptions::default()).expect_err("bad");
        assert_eq!(e.kind, ErrorKind::BadAddress);
        let e = Client::new(vec![], ClientOptions::default()).expect_err("empty");
        assert_eq!(e.kind, ErrorKind::BadAddress);
    }

    #[test]
    fn commands_can_run_on_any_tokio_worker() {
        fn assert_send<T: Send>(_: &T) {}
        let mut c = Client::new(vec!["h:1".into()], ClientOptions::default()).expect("valid");
        let fut = c.execute(Op::Get { key: "k".into() });
        assert_send(&fut);
    }

    #[test]
    fn client_id_can_be_chosen_but_not_zero() {
        let opts = ClientOptions {
            client_id: Some(42),
            ..ClientOptions::default()
        };
        let c = Client::new(vec!["h:1".into()], opts).expect("valid");
        assert_eq!(c.client_id(), 42);
        let opts = ClientOptions {
            client_id: Some(0),
            ..ClientOptions::default()
        };
        assert!(Client::new(vec!["h:1".into()], opts).is_err());
    }
}
