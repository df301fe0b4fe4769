//! The client against scripted fake replicas: failover order, exactly-once
//! retries with the same `(client_id, seq)`, deadlines, and the outcome
//! classification that the Jepsen harness relies on, and the preference for
//! the coordinator named in `served_by`. Ports 21100-21199 and 21300-21319.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Client, ClientOptions, ErrorKind, Op, Outcome};
use common::{refused_addr, Behavior, FakeReplica};

fn opts(timeout_ms: u64, attempt_ms: u64) -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_millis(timeout_ms),
        attempt_timeout: Duration::from_millis(attempt_ms),
        client_id: Some(77),
        failover: true,
    }
}

#[tokio::test]
async fn a_refused_replica_is_skipped_and_the_next_one_answers() {
    let dead = refused_addr(21100);
    let live = FakeReplica::serving(21101).await;
    let mut c = Client::new(vec![dead, live.addr.clone()], opts(3000, 500)).expect("client");
    let reply = c.put("apple", "green").await.expect("put");
    assert_eq!(reply.served_by, live.addr);
    assert_eq!(c.preferred_address(), live.addr);
    let reply = c.get("apple").await.expect("get");
    assert_eq!(reply.value.as_deref(), Some("green"));
    // The second command started at the replica that worked: seq 1 then 2.
    assert_eq!(live.received(), vec![(77, 1), (77, 2)]);
}

#[tokio::test]
async fn not_applied_moves_on_with_the_same_client_id_and_seq() {
    let store = Arc::default();
    let a = FakeReplica::start(
        21110,
        &[Behavior::UnavailableNotApplied],
        Behavior::Serve,
        Arc::clone(&store),
    )
    .await;
    let b = FakeReplica::start(21111, &[], Behavior::Serve, store).await;
    let mut c = Client::new(vec![a.addr.clone(), b.addr.clone()], opts(3000, 500)).expect("client");
    let reply = c.put("k", "v").await.expect("put");
    assert_eq!(reply.served_by, b.addr);
    assert_eq!(a.received(), vec![(77, 1)]);
    assert_eq!(b.received(), vec![(77, 1)]);
}

#[tokio::test]
async fn a_retried_write_whose_reply_was_lost_is_applied_once() {
    let store = Arc::default();
    let a = FakeReplica::start(
        21120,
        &[Behavior::ApplyThenFail],
        Behavior::Serve,
        Arc::clone(&store),
    )
    .await;
    let b = FakeReplica::start(21121, &[], Behavior::Serve, store).await;
    let mut c = Client::new(vec![a.addr.clone(), b.addr.clone()], opts(3000, 500)).expect("client");
    let reply = c.append("k", "x").await.expect("append");
    // Applied by a, then retried on b with the same (client_id, seq): b
    // returns the first result instead of appending again.
    assert_eq!(reply.value.as_deref(), Some("x"));
    assert_eq!(a.received(), vec![(77, 1)]);
    assert_eq!(b.received(), vec![(77, 1)]);
    let reply = c.append("k", "y").await.expect("append");
    assert_eq!(reply.value.as_deref(), Some("xy"));
}

#[tokio::test]
async fn every_attempt_not_applied_means_not_applied() {
    let a = FakeReplica::start(21130, &[], Behavior::UnavailableNotApplied, Arc::default()).await;
    let dead = refused_addr(21131);
    let mut c = Client::new(vec![a.addr.clone(), dead], opts(400, 200)).expect("client");
    let err = c.put("k", "v").await.expect_err("must fail");
    assert_eq!(err.outcome, Outcome::NotApplied, "{err}");
    let received = a.received();
    assert!(received.len() >= 2, "retried in rounds: {received:?}");
    assert!(received.iter().all(|r| *r == (77, 1)), "{received:?}");
}

#[tokio::test]
async fn a_hanging_replica_gives_unknown_within_the_deadline() {
    let a = FakeReplica::start(21140, &[], Behavior::Hang, Arc::default()).await;
    let mut c = Client::new(vec![a.addr.clone()], opts(600, 200)).expect("client");
    let start = Instant::now();
    let err = c.put("k", "v").await.expect_err("must time out");
    let took = start.elapsed();
    assert_eq!(
        (err.outcome, err.kind),
        (Outcome::Unknown, ErrorKind::Timeout),
        "{err}"
    );
    assert_eq!(err.replica.as_deref(), Some(a.addr.as_str()));
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert!(a.received().iter().all(|r| *r == (77, 1)));
}

#[tokio::test]
async fn once_unknown_the_command_stays_unknown() {
    let a = FakeReplica::start(21150, &[], Behavior::UnavailableUnknown, Arc::default()).await;
    let b = FakeReplica::start(21151, &[], Behavior::UnavailableNotApplied, Arc::default()).await;
    let mut c = Client::new(vec![a.addr.clone(), b.addr.clone()], opts(300, 100)).expect("client");
    let err = c.delete("k").await.expect_err("must fail");
    assert_eq!(err.outcome, Outcome::Unknown, "{err}");
}

#[tokio::test]
async fn a_hang_then_an_answer_succeeds_with_the_same_seq() {
    let store = Arc::default();
    let a = FakeReplica::start(
        21160,
        &[Behavior::Hang],
        Behavior::Serve,
        Arc::clone(&store),
    )
    .await;
    let b = FakeReplica::start(21161, &[], Behavior::Serve, store).await;
    let mut c = Client::new(vec![a.addr.clone(), b.addr.clone()], opts(3000, 200)).expect("client");
    let reply = c.cas("k", None, "v").await.expect("cas");
    assert!(reply.succeeded);
    assert_eq!(a.received(), vec![(77, 1)]);
    assert_eq!(b.received(), vec![(77, 1)]);
    // Next command: seq 2, starting from b.
    c.get("k").await.expect("get");
    assert_eq!(b.received(), vec![(77, 1), (77, 2)]);
}

#[tokio::test]
async fn invalid_argument_is_final_and_not_retried() {
    let a = FakeReplica::start(21170, &[], Behavior::InvalidArgument, Arc::default()).await;
    let b = FakeReplica::serving(21171).await;
    let mut c = Client::new(vec![a.addr.clone(), b.addr.clone()], opts(3000, 500)).expect("client");
    let err = c.put("", "v").await.expect_err("invalid");
    assert_eq!(
        (err.outcome, err.kind),
        (Outcome::NotApplied, ErrorKind::InvalidArgument)
    );
    assert_eq!(
        err.to_string(),
        format!("INVALID_ARGUMENT from {}: empty key (not applied)", a.addr)
    );
    assert!(b.received().is_empty());
}

#[tokio::test]
async fn a_failed_read_is_not_applied_even_after_timeouts() {
    let a = FakeReplica::start(21180, &[], Behavior::Hang, Arc::default()).await;
    let mut c = Client::new(vec![a.addr.clone()], opts(300, 100)).expect("client");
    let err = c
        .execute(Op::Get { key: "k".into() })
        .await
        .expect_err("hang");
    assert_eq!(
        (err.outcome, err.kind),
        (Outcome::NotApplied, ErrorKind::Timeout)
    );
}

#[tokio::test]
async fn without_failover_one_attempt_on_the_first_address() {
    let dead = refused_addr(21185);
    let b = FakeReplica::serving(21186).await;
    let o = ClientOptions {
        failover: false,
        ..opts(3000, 500)
    };
    let mut c = Client::new(vec![dead.clone(), b.addr.clone()], o).expect("client");
    let err = c.put("k", "v").await.expect_err("refused");
    assert_eq!(
        (err.outcome, err.kind),
        (Outcome::NotApplied, ErrorKind::Connect),
        "{err}"
    );
    assert_eq!(err.replica.as_deref(), Some(dead.as_str()));
    assert!(b.received().is_empty());
}

#[tokio::test]
async fn a_replica_that_dies_between_commands_is_failed_over() {
    let store = Arc::default();
    let a = FakeReplica::start(21190, &[], Behavior::Serve, Arc::clone(&store)).await;
    let b = FakeReplica::start(21191, &[], Behavior::Serve, store).await;
    let a_addr = a.addr.clone();
    let mut c = Client::new(vec![a_addr.clone(), b.addr.clone()], opts(3000, 500)).expect("client");
    c.put("k", "1").await.expect("put on a");
    drop(a); // a stops; the client holds a cached channel to it
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = c.put("k", "2").await.expect("put fails over to b");
    assert_eq!(reply.served_by, b.addr);
    assert_eq!(b.received(), vec![(77, 2)]);
}

#[tokio::test]
async fn status_and_set_fail_rate_reach_one_replica() {
    let a = FakeReplica::serving(21195).await;
    let s = client::status(&a.addr, Duration::from_secs(2))
        .await
        .expect("status");
    assert_eq!(s.role, "coordinator");
    assert_eq!(s.commit_index, 7);
    let line = client::repl::format_status(&s);
    assert!(
        line.contains("role=coordinator") && line.contains("commit=7"),
        "{line}"
    );
    let prev = client::set_fail_rate(&a.addr, 0.5, Duration::from_secs(2))
        .await
        .expect("set");
    assert_eq!(prev, 0.25);
    let err = client::set_fail_rate(&a.addr, 1.5, Duration::from_secs(2))
        .await
        .expect_err("range");
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    let err = client::status(&refused_addr(21196), Duration::from_secs(2))
        .await
        .expect_err("refused");
    assert_eq!(
        (err.outcome, err.kind),
        (Outcome::NotApplied, ErrorKind::Connect),
        "{err}"
    );
}

#[tokio::test]
async fn a_dead_replica_behind_a_cached_channel_is_not_applied() {
    let a = FakeReplica::serving(21197).await;
    let a_addr = a.addr.clone();
    let o = ClientOptions {
        failover: false,
        ..opts(2000, 500)
    };
    let mut c = Client::new(vec![a_addr.clone()], o).expect("client");
    c.put("k", "1").await.expect("put on a");
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = c.put("k", "2").await.expect_err("a is gone");
    assert_eq!(
        (err.outcome, err.kind),
        (Outcome::NotApplied, ErrorKind::Connect),
        "{err}"
    );
}

#[tokio::test]
async fn the_whole_request_deadline_bounds_many_hanging_replicas() {
    let a = FakeReplica::start(21198, &[], Behavior::Hang, Arc::default()).await;
    let b = FakeReplica::start(21199, &[], Behavior::Hang, Arc::default()).await;
    let mut c = Client::new(vec![a.addr.clone(), b.addr.clone()], opts(500, 400)).expect("client");
    let start = Instant::now();
    let err = c.put("k", "v").await.expect_err("hangs");
    let took = start.elapsed();
    assert_eq!(err.outcome, Outcome::Unknown, "{err}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(2500),
        "took {took:?}"
    );
    assert_eq!(a.received(), vec![(77, 1)]);
    assert_eq!(b.received(), vec![(77, 1)]);
}

#[tokio::test]
async fn the_next_command_goes_straight_to_the_coordinator_that_served() {
    // a is a follower that relays to the coordinator b: its replies name b.
    let store = Arc::default();
    let b = FakeReplica::start(21301, &[], Behavior::Serve, Arc::clone(&store)).await;
    let a = FakeReplica::relaying(21300, &b.addr, store).await;
    let mut c = Client::new(vec![a.addr.clone(), b.addr.clone()], opts(3000, 500)).expect("client");
    let reply = c.put("k", "v").await.expect("put via a");
    assert_eq!(reply.served_by, b.addr);
    // b is configured: the next command skips the relay.
    assert_eq!(c.preferred_address(), b.addr);
    let reply = c.get("k").await.expect("get");
    assert_eq!(reply.value.as_deref(), Some("v"));
    c.append("k", "w").await.expect("append");
    assert_eq!(a.received(), vec![(77, 1)]);
    assert_eq!(b.received(), vec![(77, 2), (77, 3)]);
}

#[tokio::test]
async fn a_coordinator_configured_in_another_spelling_is_still_preferred() {
    let store = Arc::default();
    let b = FakeReplica::start(21303, &[], Behavior::Serve, Arc::clone(&store)).await;
    let a = FakeReplica::relaying(21302, &b.addr, store).await;
    let b_uri = format!("http://{}/", b.addr);
    let mut c = Client::new(vec![a.addr.clone(), b_uri], opts(3000, 500)).expect("client");
    c.put("k", "v").await.expect("put via a");
    assert_eq!(c.preferred_address(), b.addr);
    c.get("k").await.expect("get");
    assert_eq!(b.received(), vec![(77, 2)]);
}

#[tokio::test]
async fn a_coordinator_outside_the_list_leaves_the_relay_preferred() {
    // The coordinator's my_addr is not one the client knows (a wildcard
    // bind address, another network): keep using the relay that answered.
    let a = FakeReplica::relaying(21304, "0.0.0.0:8000", Arc::default()).await;
    let b = FakeReplica::serving(21305).await;
    let mut c = Client::new(vec![b.addr.clone(), a.addr.clone()], opts(3000, 500)).expect("client");
    c.put("x", "1").await.expect("put on b");
    assert_eq!(c.preferred_address(), b.addr);
    drop(b); // b dies: the client fails over to the relay a
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = c.put("k", "v").await.expect("put via a");
    assert_eq!(reply.served_by, "0.0.0.0:8000");
    assert_eq!(c.preferred_address(), a.addr);
    c.get("k").await.expect("get via a");
    assert_eq!(a.received(), vec![(77, 2), (77, 3)]);
}

#[tokio::test]
async fn when_the_coordinator_dies_the_client_follows_its_successor() {
    // b coordinates; a is a follower that, once b is gone, relays to the new
    // coordinator n.
    let store: Arc<std::sync::Mutex<common::Store>> = Arc::default();
    let b = FakeReplica::start(21311, &[], Behavior::Serve, Arc::clone(&store)).await;
    let n = FakeReplica::start(21312, &[], Behavior::Serve, Arc::clone(&store)).await;
    let a = FakeReplica::relaying(21310, &n.addr, store).await;
    let addrs = vec![b.addr.clone(), a.addr.clone(), n.addr.clone()];
    let mut c = Client::new(addrs, opts(3000, 500)).expect("client");
    c.put("k", "1").await.expect("put on b");
    assert_eq!(c.preferred_address(), b.addr);
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // b fails, a answers for n: from now on, straight to n.
    let reply = c.put("k", "2").await.expect("put via a");
    assert_eq!(reply.served_by, n.addr);
    assert_eq!(c.preferred_address(), n.addr);
    c.put("k", "3").await.expect("put on n");
    assert_eq!(a.received(), vec![(77, 2)]);
    assert_eq!(n.received(), vec![(77, 3)]);
}
