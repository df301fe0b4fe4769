//! Scenario tests: short stories about the protocol, each step commented.
//!
//! The [`Cluster`] below is a hand-driven network: messages wait in a FIFO
//! until the story delivers them, paused replicas neither tick nor receive,
//! and a crash throws away everything that was not persisted.

use std::collections::VecDeque;

use super::coordinator::PlantedBug;
use super::replica::AppliedEvent;
use super::*;

fn config() -> Config {
    Config {
        heartbeat_ticks: 2,
        election_ticks: 10,
        read_mode: ReadMode::Quorum,
        max_batch: 8,
        max_inflight_slots: 4,
        snapshot_every: 0,
        max_catchup_entries: 16,
        max_message_bytes: 1 << 20,
        max_pending: 100,
    }
}

struct Cluster {
    replicas: Vec<Option<Replica>>,
    disks: Vec<PersistentState>,
    paused: Vec<bool>,
    /// Messages to these replicas are lost (a partition, or fail_rate 1).
    deaf: Vec<bool>,
    /// Messages from these replicas are lost (with `deaf`: cut off).
    mute: Vec<bool>,
    /// (to, message kind): such messages are lost.
    lost: Vec<(ReplicaId, &'static str)>,
    /// (from, to, message) in send order.
    net: VecDeque<(ReplicaId, ReplicaId, Message)>,
    /// (from, to, message): every message ever sent, delivered or not.
    sent: Vec<(ReplicaId, ReplicaId, Message)>,
    /// (replica, request, reply) in answer order.
    replies: Vec<(ReplicaId, RequestId, Reply)>,
    next_request: RequestId,
    /// Restarts so far (numbers the replicas' incarnations).
    starts: u64,
    config: Config,
}

impl Cluster {
    fn new(n: usize, config: Config) -> Self {
        let replicas = (0..n)
            .map(|id| {
                Some(Replica::new(id, n, config.clone(), PersistentState::default()).unwrap())
            })
            .collect();
        Cluster {
            replicas,
            disks: vec![PersistentState::default(); n],
            paused: vec![false; n],
            deaf: vec![false; n],
            mute: vec![false; n],
            lost: Vec::new(),
            net: VecDeque::new(),
            sent: Vec::new(),
            replies: Vec::new(),
            next_request: 1,
            starts: 0,
            config,
        }
    }

    fn replica(&self, id: ReplicaId) -> &Replica {
        self.replicas[id].as_ref().expect("replica is up")
    }

    fn up(&self, id: ReplicaId) -> bool {
        self.replicas[id].is_some() && !self.paused[id]
    }

    /// Collect a replica's output: persist, then queue messages and replies.
    fn flush(&mut self, id: ReplicaId) {
        let Some(replica) = self.replicas[id].as_mut() else {
            return;
        };
        let ready = replica.ready();
        for (to, msg) in ready.send_now {
            self.sent.push((id, to, msg.clone()));
            self.net.push_back((id, to, msg));
        }
        for w in &ready.persist {
            self.disks[id].apply(w);
        }
        for (to, msg) in ready.messages {
            self.sent.push((id, to, msg.clone()));
            self.net.push_back((id, to, msg));
        }
        for (request, reply) in ready.replies {
            self.replies.push((id, request, reply));
        }
    }

    /// Deliver queued messages until none is deliverable. Messages to a
    /// paused replica stay queued (as in a socket buffer); messages to a
    /// crashed replica are lost.
    fn stabilize(&mut self) {
        for id in 0..self.replicas.len() {
            if self.up(id) {
                self.flush(id);
            }
        }
        let mut held = VecDeque::new();
        while let Some((from, to, msg)) = self.net.pop_front() {
            if self.paused[to] {
                held.push_back((from, to, msg));
                continue;
            }
            // A replica's message to itself (its own vote, once durable)
            // never crosses the network.
            let local = from == to;
            if !local && (self.deaf[to] || self.mute[from] || self.lost.contains(&(to, msg.kind())))
            {
                continue;
            }
            let Some(replica) = self.replicas[to].as_mut() else {
                continue;
            };
            replica.step(from, msg).unwrap();
            self.flush(to);
        }
        self.net = held;
    }

    /// `n` ticks of every running replica, delivering everything in between.
    fn tick(&mut self, n: usize) {
        for _ in 0..n {
            for id in 0..self.replicas.len() {
                if self.up(id) {
                    self.replicas[id].as_mut().unwrap().tick();
                }
            }
            self.stabilize();
        }
    }

    /// Tick until `id` is the coordinator (bounded).
    fn elect(&mut self, id: ReplicaId) {
        for _ in 0..200 {
            if self.up(id) && self.replica(id).role() == Role::Coordinator {
                return;
            }
            self.tick(1);
        }
        panic!("replica {id} did not become coordinator");
    }

    fn submit(&mut self, id: ReplicaId, client_id: u64, seq: u64, op: Op) -> RequestId {
        let request = self.next_request;
        self.next_request += 1;
        let cmd = Command { client_id, seq, op };
        self.replicas[id].as_mut().unwrap().submit(request, cmd);
        request
    }

    /// The answer to `request`, without the slot (see [`Cluster::slot`]).
    fn reply(&self, request: RequestId) -> Option<Result<OpResult, RequestError>> {
        self.replies
            .iter()
            .find(|(_, r, _)| *r == request)
            .map(|(_, _, reply)| reply.clone().map(|e| e.result))
    }

    /// The slot a successful answer to `request` names.
    fn slot(&self, request: RequestId) -> Option<Slot> {
        self.replies
            .iter()
            .find(|(_, r, _)| *r == request)
            .and_then(|(_, _, reply)| reply.as_ref().ok().map(|e| e.slot))
    }

    /// How many `kind` messages `from` sent `to` since `mark` (a length of
    /// `sent`).
    fn count_sent(&self, from: ReplicaId, to: ReplicaId, kind: &str, mark: usize) -> usize {
        self.sent[mark..]
            .iter()
            .filter(|(f, t, m)| (*f, *t) == (from, to) && m.kind() == kind)
            .count()
    }

    /// The (first, last) slots of every `Chosen` that `from` sent `to` since
    /// `mark`.
    fn chosen_sent(&self, from: ReplicaId, to: ReplicaId, mark: usize) -> Vec<(Slot, Slot)> {
        self.sent[mark..]
            .iter()
            .filter(|(f, t, _)| (*f, *t) == (from, to))
            .filter_map(|(_, _, m)| match m {
                Message::Chosen { entries } => Some((entries.first()?.slot, entries.last()?.slot)),
                _ => None,
            })
            .collect()
    }

    fn crash(&mut self, id: ReplicaId) {
        self.replicas[id] = None;
    }

    fn restart(&mut self, id: ReplicaId) {
        let n = self.replicas.len();
        let disk = self.disks[id].clone();
        let mut replica = Replica::new(id, n, self.config.clone(), disk).unwrap();
        self.starts += 1;
        replica.set_incarnation(self.starts);
        self.replicas[id] = Some(replica);
    }
}

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn get(key: &str) -> Op {
    Op::Get { key: key.into() }
}

fn value(v: &str) -> Result<OpResult, RequestError> {
    Ok(OpResult::Value(Some(v.into())))
}

#[test]
fn replica_zero_is_elected_and_a_write_reaches_every_replica() {
    let mut c = Cluster::new(3, config());
    // Nobody leads at first; replica 0 has the shortest election timeout.
    c.elect(0);
    assert_eq!(c.replica(1).leader(), Some(0));
    let w = c.submit(0, 1, 1, put("apple", "green"));
    c.stabilize();
    assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));
    // The coordinator told the others what was chosen.
    for id in 0..3 {
        assert_eq!(c.replica(id).kv().read("apple"), Some("green".into()));
    }
    let digests: Vec<_> = (0..3).map(|id| c.replica(id).digest()).collect();
    assert!(digests.iter().all(|d| *d == digests[0]));
    // A follower serves a read itself, with a read index from the
    // coordinator (see `follower_reads` for the details).
    let r = c.submit(2, 1, 2, get("apple"));
    c.stabilize();
    assert_eq!(c.reply(r), Some(value("green")));
    // The coordinator answers the read after a heartbeat round.
    let r = c.submit(0, 1, 2, get("apple"));
    assert_eq!(c.reply(r), None, "no quorum confirmation yet");
    c.stabilize();
    assert_eq!(c.reply(r), Some(value("green")));
    // The write names the slot it was chosen in (slot 1: the new
    // coordinator had no hole to fill); a read has no slot of its own.
    assert_eq!(c.slot(w), Some(1));
    assert_eq!(c.slot(r), Some(0));
}

#[test]
fn deposed_coordinator_wakes_is_rejected_steps_down_and_serves_no_stale_read() {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    let w = c.submit(0, 1, 1, put("x", "old"));
    c.stabilize();
    assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));

    // The coordinator is paused (SIGSTOP). Replica 1 stops hearing
    // heartbeats and takes over with a higher ballot.
    c.paused[0] = true;
    c.elect(1);
    let w = c.submit(1, 2, 1, put("x", "new"));
    c.stabilize();
    assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));

    // Replica 0 wakes up still believing it leads. Before it reads its
    // mail, a client asks it to read x and to write y.
    c.paused[0] = false;
    assert_eq!(c.replica(0).role(), Role::Coordinator);
    let read = c.submit(0, 3, 1, get("x"));
    let write = c.submit(0, 3, 2, put("y", "lost"));
    // Its first output: an accept for y and a heartbeat, on its old ballot.
    c.flush(0);
    assert!(c
        .net
        .iter()
        .any(|(from, _, m)| *from == 0 && matches!(m, Message::Accept { .. })));
    // Both are rejected; it learns of the higher ballot and steps down.
    c.stabilize();
    assert_ne!(c.replica(0).role(), Role::Coordinator);
    // The read was not answered from stale state, and the write may not
    // be reported as applied.
    assert!(matches!(
        c.reply(read),
        Some(Err(RequestError::NotLeader { .. }))
    ));
    assert!(matches!(
        c.reply(write),
        Some(Err(RequestError::OutcomeUnknown { .. }))
    ));
    // y was never chosen, and every replica agrees on x.
    c.tick(3);
    for id in 0..3 {
        assert_eq!(c.replica(id).kv().read("x"), Some("new".into()));
        assert_eq!(c.replica(id).kv().read("y"), None);
    }
}

#[test]
fn in_local_read_mode_the_deposed_coordinator_serves_a_stale_read() {
    // The same story with the original C++ project's read path: this is why it is unsafe.
    let mut c = Cluster::new(
        3,
        Config {
            read_mode: ReadMode::Local,
            ..config()
        },
    );
    c.elect(0);
    c.submit(0, 1, 1, put("x", "old"));
    c.stabilize();
    c.paused[0] = true;
    c.elect(1);
    let w = c.submit(1, 2, 1, put("x", "new"));
    c.stabilize();
    assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));
    c.paused[0] = false;
    let read = c.submit(0, 3, 1, get("x"));
    c.flush(0);
    assert_eq!(c.reply(read), Some(value("old")), "stale, as expected");
}

#[test]
fn in_local_read_mode_a_coordinator_cut_off_keeps_serving_stale_reads() {
    // A partition instead of a pause: without check-quorum (the original's
    // design) the cut off coordinator never learns that it was replaced.
    let mut c = Cluster::new(
        3,
        Config {
            read_mode: ReadMode::Local,
            ..config()
        },
    );
    c.elect(0);
    c.submit(0, 1, 1, put("x", "old"));
    c.stabilize();
    c.deaf[0] = true;
    c.mute[0] = true;
    c.elect(1);
    let w = c.submit(1, 2, 1, put("x", "new"));
    c.stabilize();
    assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));
    c.tick(50);
    assert_eq!(
        c.replica(0).role(),
        Role::Coordinator,
        "still believes it leads"
    );
    let read = c.submit(0, 3, 1, get("x"));
    c.flush(0);
    assert_eq!(c.reply(read), Some(value("old")), "stale, as expected");
    // The partition heals: the new ballot deposes it; it catches up (and,
    // first by priority, takes over again on a higher ballot once it has
    // heard every heartbeat for the takeover hysteresis).
    let before = c.replica(0).status().promised;
    c.deaf[0] = false;
    c.mute[0] = false;
    c.tick(200);
    assert!(c.replica(0).status().promised > before);
    assert_eq!(c.replica(0).kv().read("x"), Some("new".into()));
}

#[test]
fn new_coordinator_adopts_an_accepted_value_and_fills_the_hole_with_a_noop() {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    // Two writes go into slots 1 and 2. Only replica 0 accepts slot 1;
    // replica 1 accepts slot 2; nothing gets chosen.
    c.submit(0, 1, 1, put("a", "1"));
    c.flush(0);
    c.submit(0, 2, 1, put("b", "2"));
    c.flush(0);
    let accepts: Vec<_> = c.net.drain(..).collect();
    for (from, to, msg) in accepts {
        if let Message::Accept { slot: 2, .. } = msg {
            if to == 1 {
                c.replicas[1].as_mut().unwrap().step(from, msg).unwrap();
            }
        }
    }
    c.net.clear(); // replica 1's answer is lost too
                   // Replica 0 crashes. Replica 1 takes over: phase 1 finds slot 2's value
                   // in its own acceptor and nothing for slot 1.
    c.crash(0);
    c.elect(1);
    c.tick(2);
    let log = &c.replica(2).applied_log;
    assert_eq!(
        log[0],
        AppliedEvent::Slot(1, Value::NoOp),
        "the hole became a no-op"
    );
    assert!(
        matches!(&log[1], AppliedEvent::Slot(2, Value::Batch(cmds)) if cmds[0].client_id == 2),
        "the accepted value was adopted"
    );
    assert_eq!(c.replica(2).kv().read("b"), Some("2".into()));
    assert_eq!(c.replica(2).kv().read("a"), None);
}

#[test]
fn a_read_at_a_new_coordinator_waits_for_the_write_it_recovered() {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    // x=1 is chosen and acknowledged, but the news that it was chosen never
    // reaches replicas 1 and 2: they only accepted it.
    c.lost = vec![(1, "chosen"), (2, "chosen")];
    let w = c.submit(0, 1, 1, put("x", "1"));
    c.stabilize();
    assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));
    assert_eq!(c.replica(1).commit_index(), 0);
    // Replica 0 crashes; replica 1 takes over and recovers x=1 from the
    // promises, but its accepts to replica 2 are lost for now.
    c.crash(0);
    c.lost = vec![(2, "accept")];
    c.elect(1);
    assert_eq!(c.replica(1).commit_index(), 0);
    // A read of x must not be answered from the state before x=1, although
    // a majority confirms the leadership of replica 1 at once.
    let r = c.submit(1, 2, 1, get("x"));
    c.tick(1);
    assert_eq!(c.reply(r), None);
    // Once x=1 is chosen again in the new ballot and applied, it is.
    c.lost.clear();
    c.tick(c.config.heartbeat_ticks as usize);
    assert_eq!(c.reply(r), Some(value("1")));
}

#[test]
fn a_returning_higher_priority_replica_catches_up_before_taking_over() {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    c.crash(0);
    c.elect(1);
    for seq in 1..=20 {
        c.submit(1, 1, seq, put("k", &seq.to_string()));
        c.stabilize();
    }
    let target = c.replica(1).commit_index();
    // Replica 0 restarts from its disk: far behind.
    c.restart(0);
    let mut took_over_at = None;
    for _ in 0..100 {
        c.tick(1);
        let r0 = c.replica(0);
        if r0.role() != Role::Follower {
            took_over_at = Some(r0.commit_index());
            break;
        }
    }
    // It campaigned only once its log had caught up with replica 1's.
    assert_eq!(took_over_at, Some(target));
    c.elect(0);
    assert_eq!(c.replica(0).kv().read("k"), Some("20".into()));
    assert_eq!(c.replica(1).leader(), Some(0));
}

#[test]
fn a_replica_behind_the_compacted_log_receives_a_snapshot() {
    let mut c = Cluster::new(
        3,
        Config {
            snapshot_every: 5,
            ..config()
        },
    );
    c.elect(0);
    c.crash(2);
    for seq in 1..=12 {
        c.submit(0, 1, seq, put("k", &seq.to_string()));
        c.stabilize();
    }
    assert!(c.replica(0).status().snapshot_slot >= 10);
    c.restart(2);
    // A heartbeat later it reports commit 0; the slots it needs are gone
    // from the log, so it gets the snapshot, then the slots after it.
    c.tick(10);
    let r2 = c.replica(2);
    assert_eq!(r2.kv().read("k"), Some("12".into()));
    assert_eq!(r2.digest(), c.replica(0).digest());
    assert!(r2.status().snapshot_slot >= 10, "installed a snapshot");
    // The snapshot reached its disk: it restarts from it.
    c.crash(2);
    c.restart(2);
    assert_eq!(c.replica(2).kv().read("k"), Some("12".into()));
}

#[test]
fn a_partitioned_follower_learns_the_slots_it_missed_from_the_log() {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    // Replica 2 is cut off: everything sent to it is lost.
    c.deaf[2] = true;
    for seq in 1..=6 {
        c.submit(0, 1, seq, put("k", &seq.to_string()));
        c.stabilize();
    }
    c.tick(3);
    assert_eq!(c.replica(2).commit_index(), 0);
    assert_eq!(c.replica(0).commit_index(), 6);
    // Reconnected, it answers the next heartbeat with its commit index 0;
    // the coordinator sends it the chosen slots it lacks (no snapshot:
    // nothing was compacted).
    c.deaf[2] = false;
    c.tick(c.config.heartbeat_ticks as usize + 1);
    assert_eq!(c.replica(2).commit_index(), 6);
    assert_eq!(c.replica(2).status().snapshot_slot, 0);
    assert_eq!(c.replica(2).digest(), c.replica(0).digest());
}

#[test]
fn a_lagging_follower_gets_one_catch_up_per_round_trip_and_still_converges() {
    // max_catchup_entries 16, heartbeat every 2 ticks.
    let mut c = Cluster::new(3, config());
    c.elect(0);
    // Replica 2 is cut off while 40 slots are chosen.
    c.deaf[2] = true;
    for seq in 1..=40 {
        c.submit(0, 1, seq, put("k", &seq.to_string()));
        c.stabilize();
    }
    assert_eq!(c.replica(0).commit_index(), 40);
    assert_eq!(c.replica(2).commit_index(), 0);

    // It hears the coordinator again, but the catch-ups it is sent get lost
    // (a congested link). Clients read, and every read makes the coordinator
    // send a heartbeat round: replica 2 answers each with commit index 0.
    c.deaf[2] = false;
    c.lost.push((2, "chosen"));
    let mark = c.sent.len();
    for seq in 1..=5 {
        let r = c.submit(0, 9, seq, get("k"));
        c.stabilize();
        assert_eq!(c.reply(r), Some(value("40")));
    }
    assert_eq!(c.count_sent(2, 0, "heartbeat-ack", mark), 5);
    // Five answers showing no progress, yet one catch-up: the first is still
    // presumed on its way, and another would only pile up behind it.
    assert_eq!(c.chosen_sent(0, 2, mark), vec![(1, 16)]);

    // Only when it has not arrived two heartbeat intervals later does it
    // count as lost and go out again, once.
    let timeout = 2 * c.config.heartbeat_ticks as usize;
    c.tick(timeout - 1);
    assert_eq!(c.chosen_sent(0, 2, mark).len(), 1);
    c.tick(1);
    assert_eq!(c.chosen_sent(0, 2, mark), vec![(1, 16), (1, 16)]);

    // The link heals. After the lost one times out, each heartbeat answer
    // shows the last catch-up arrived and brings the next: one per round
    // trip, no slot sent twice, until replica 2 has everything.
    c.lost.clear();
    let mark = c.sent.len();
    for _ in 0..30 {
        c.tick(1);
        if c.replica(2).commit_index() == 40 {
            break;
        }
    }
    assert_eq!(c.replica(2).commit_index(), 40);
    assert_eq!(c.chosen_sent(0, 2, mark), vec![(1, 16), (17, 32), (33, 40)]);
    assert!(c.count_sent(2, 0, "heartbeat-ack", mark) >= 3);
    assert_eq!(c.replica(2).digest(), c.replica(0).digest());
    // Caught up: nothing more is sent.
    let mark = c.sent.len();
    c.tick(10);
    assert!(c.chosen_sent(0, 2, mark).is_empty());
}

#[test]
fn an_acceptor_failing_every_message_does_not_stop_the_majority() {
    // fail_rate 1.0 at replica 2: the runtime drops everything it receives.
    let mut c = Cluster::new(3, config());
    c.elect(0);
    c.deaf[2] = true;
    let mut writes = Vec::new();
    for seq in 1..=5 {
        writes.push(c.submit(0, 1, seq, put("k", &seq.to_string())));
        c.stabilize();
    }
    for w in &writes {
        assert_eq!(c.reply(*w), Some(Ok(OpResult::Done)));
    }
    // One write per slot, in order.
    let slots: Vec<_> = writes.iter().map(|w| c.slot(*w).unwrap()).collect();
    assert_eq!(slots, vec![1, 2, 3, 4, 5]);
    assert_eq!(c.replica(1).kv().read("k"), Some("5".into()));
    assert_eq!(c.replica(2).commit_index(), 0, "it failed everything");
}

#[test]
fn a_command_retried_through_a_new_coordinator_is_applied_once() {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    let first = c.submit(
        0,
        9,
        1,
        Op::Append {
            key: "log".into(),
            value: "x".into(),
        },
    );
    // The accepts get out, but the coordinator is paused before it learns
    // that the value was chosen: the client times out.
    c.flush(0);
    c.paused[0] = true;
    c.stabilize();
    assert_eq!(c.reply(first), None);
    // The client retries the same (client, seq) at the new coordinator.
    c.elect(1);
    let retry = c.submit(
        1,
        9,
        1,
        Op::Append {
            key: "log".into(),
            value: "x".into(),
        },
    );
    c.stabilize();
    assert_eq!(c.reply(retry), Some(Ok(OpResult::Appended("x".into()))));
    assert_eq!(c.replica(1).kv().read("log"), Some("x".into()));
}

#[test]
fn a_single_replica_cluster_decides_alone() {
    let mut c = Cluster::new(1, config());
    c.elect(0);
    let w = c.submit(0, 1, 1, put("a", "b"));
    c.stabilize();
    assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));
    let r = c.submit(0, 1, 2, get("a"));
    c.stabilize();
    assert_eq!(c.reply(r), Some(value("b")));
}

#[test]
fn a_coordinator_cut_off_from_the_majority_answers_pending_requests() {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    c.crash(1);
    c.crash(2);
    let w = c.submit(0, 1, 1, put("a", "b"));
    let r = c.submit(0, 1, 2, get("a"));
    // No majority: after the election timeout it steps down and answers.
    c.tick(12);
    assert_ne!(c.replica(0).role(), Role::Coordinator);
    assert!(matches!(
        c.reply(w),
        Some(Err(RequestError::OutcomeUnknown { .. }))
    ));
    assert!(matches!(
        c.reply(r),
        Some(Err(RequestError::NotLeader { .. }))
    ));
}

#[test]
fn malformed_messages_are_rejected_without_panicking() {
    let mut r = Replica::new(0, 3, config(), PersistentState::default()).unwrap();
    let b = |round, replica| Ballot { round, replica };
    assert!(matches!(
        r.step(7, Message::CatchUp { first_slot: 1 }),
        Err(StepError::UnknownReplica { .. })
    ));
    assert_eq!(
        r.step(0, Message::CatchUp { first_slot: 1 }),
        Err(StepError::FromSelf)
    );
    assert!(matches!(
        r.step(
            1,
            Message::Prepare {
                ballot: b(1, 9),
                first_slot: 1
            }
        ),
        Err(StepError::BadBallot { .. })
    ));
    assert!(matches!(
        r.step(
            1,
            Message::Accept {
                ballot: b(1, 2),
                slot: 1,
                value: Value::NoOp
            }
        ),
        Err(StepError::NotBallotOwner { .. })
    ));
    assert_eq!(
        r.step(
            1,
            Message::Accept {
                ballot: b(1, 1),
                slot: 0,
                value: Value::NoOp
            }
        ),
        Err(StepError::SlotZero)
    );
    assert_eq!(
        r.step(
            1,
            Message::Chosen {
                entries: vec![ChosenEntry {
                    slot: u64::MAX,
                    value: Value::NoOp
                }]
            }
        ),
        Err(StepError::SlotOutOfRange { slot: u64::MAX })
    );
    // Nonsense that is well-formed is simply harmless.
    r.step(
        1,
        Message::Chosen {
            entries: vec![ChosenEntry {
                slot: 0,
                value: Value::NoOp,
            }],
        },
    )
    .unwrap();
    r.step(
        1,
        Message::Accepted {
            ballot: b(5, 0),
            slot: 3,
        },
    )
    .unwrap();
    assert!(Replica::new(3, 3, config(), PersistentState::default()).is_err());
    assert!(Replica::new(
        0,
        3,
        Config {
            election_ticks: 1,
            ..config()
        },
        PersistentState::default()
    )
    .is_err());
}

/// Tick `ticks` times; true if `id` was the coordinator after every tick.
fn stays_coordinator(c: &mut Cluster, id: ReplicaId, ticks: usize) -> bool {
    (0..ticks).all(|_| {
        c.tick(1);
        c.replica(id).role() == Role::Coordinator
    })
}

#[test]
fn a_follower_that_missed_heartbeats_does_not_depose_a_healthy_coordinator() {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    let promised = c.replica(0).status().promised;
    // Replica 2's acceptor is lossy (fail_rate): prepares, accepts and
    // heartbeats to it are lost. It stops hearing the coordinator and would
    // like to campaign; replicas 0 and 1 still hear each other fine.
    c.lost = vec![(2, "prepare"), (2, "accept"), (2, "heartbeat")];
    assert!(stays_coordinator(&mut c, 0, 60));
    // It crashes and restarts in the middle of it, and asks again.
    c.crash(2);
    c.restart(2);
    assert!(stays_coordinator(&mut c, 0, 60));
    // It never promised a ballot of its own: nobody agreed that the
    // coordinator was gone.
    assert_eq!(c.replica(2).status().promised, promised);
    // The loss stops. The coordinator's next heartbeat is not rejected, and
    // a write in flight then is applied, with no change of leadership.
    c.lost.clear();
    let w = c.submit(0, 1, 1, put("k", "v"));
    assert!(stays_coordinator(&mut c, 0, 30));
    assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));
    assert_eq!(c.replica(2).leader(), Some(0));
    assert_eq!(c.replica(2).kv().read("k"), Some("v".into()));
}

#[test]
fn a_replica_that_can_send_but_not_receive_does_not_block_elections() {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    // Replica 0's listener is wedged: everything sent to it is lost, while
    // its own messages still go out. It steps down (check-quorum) and keeps
    // asking to lead, but never hears the answers.
    c.deaf[0] = true;
    c.tick(100);
    // Replicas 1 and 2, which hear each other, elect one of them.
    let leader = (1..3)
        .find(|id| c.replica(*id).role() == Role::Coordinator)
        .expect("replica 1 or 2 leads");
    assert!(stays_coordinator(&mut c, leader, 100));
    let w = c.submit(leader, 1, 1, put("k", "v"));
    c.stabilize();
    assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));
}

#[test]
fn a_flaky_higher_priority_replica_does_not_take_over_until_it_is_steady() {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    c.crash(0);
    c.elect(1);
    c.submit(1, 1, 1, put("k", "1"));
    c.stabilize();
    // Replica 0 comes back with a flaky link: it hears the coordinator for
    // 12 ticks, then nothing for 6. It catches up, but is never steady, so
    // it does not take over (and lose it again at the next silence).
    c.restart(0);
    for _ in 0..10 {
        c.deaf[0] = false;
        assert!(stays_coordinator(&mut c, 1, 12));
        c.deaf[0] = true;
        assert!(stays_coordinator(&mut c, 1, 6));
    }
    assert_eq!(c.replica(0).kv().read("k"), Some("1".into()));
    // Once its link is steady, it takes over, within a bound.
    c.deaf[0] = false;
    c.elect(0);
    assert_eq!(c.replica(1).leader(), Some(0));
}

/// The story of `heartbeat_acks_of_an_earlier_ballot_confirm_no_read`, with
/// a bug planted or not; returns what replica 0 answered the read.
fn stale_acks_story(planted: Option<PlantedBug>) -> Option<Result<OpResult, RequestError>> {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    let w = c.submit(0, 1, 1, put("x", "old"));
    c.stabilize();
    assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));
    // Replica 2 is paused; the coordinator's heartbeats pile up in its
    // socket buffer while 30 reads make it number 30 more rounds.
    c.paused[2] = true;
    for seq in 1..=30 {
        let r = c.submit(0, 9, seq, get("x"));
        c.stabilize();
        assert_eq!(c.reply(r), Some(value("old")));
    }
    // Replica 0 crashes and is elected again with replica 1, in a new
    // ballot whose heartbeat rounds start from 1 again.
    c.crash(0);
    c.restart(0);
    c.replicas[0].as_mut().unwrap().planted = planted;
    c.elect(0);
    // Replica 2 resumes and answers the old heartbeats first: acks of the
    // earlier ballot, with round numbers the new one has not reached.
    c.paused[2] = false;
    c.stabilize();
    // Replica 0 is paused in turn; replicas 1 and 2 elect replica 1, which
    // writes x = new.
    c.paused[0] = true;
    c.elect(1);
    let w = c.submit(1, 2, 1, put("x", "new"));
    c.stabilize();
    assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));
    // Replica 0 wakes up and is asked to read x before it reads its mail.
    c.paused[0] = false;
    let r = c.submit(0, 3, 1, get("x"));
    c.flush(0);
    let early = c.reply(r);
    c.stabilize();
    early.or_else(|| c.reply(r))
}

#[test]
fn heartbeat_acks_of_an_earlier_ballot_confirm_no_read() {
    // The acks replica 2 sent in the earlier ballot confirm nothing in the
    // new one: the read waits for this ballot's round, which is rejected.
    assert!(matches!(
        stale_acks_story(None),
        Some(Err(RequestError::NotLeader { .. }))
    ));
    // Counting them (the planted bug) serves the deposed value.
    assert_eq!(
        stale_acks_story(Some(PlantedBug::AckOfAnyBallot)),
        Some(value("old"))
    );
}

#[test]
fn a_read_is_confirmed_only_by_a_round_sent_after_it_arrived() {
    // The deposed coordinator wakes with the acks of its last round in its
    // socket buffer, and a read arrives first.
    let story = |planted| {
        let mut c = Cluster::new(3, config());
        c.elect(0);
        c.replicas[0].as_mut().unwrap().planted = planted;
        let w = c.submit(0, 1, 1, put("x", "old"));
        c.stabilize();
        assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));
        // A heartbeat round goes out; replica 0 is paused before the acks
        // come back.
        c.tick(c.config.heartbeat_ticks as usize - 1);
        for id in 0..3 {
            c.replicas[id].as_mut().unwrap().tick();
        }
        c.flush(0);
        c.paused[0] = true;
        c.stabilize();
        c.elect(1);
        let w = c.submit(1, 2, 1, put("x", "new"));
        c.stabilize();
        assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));
        // It wakes; the read is handled first, then the old acks.
        c.paused[0] = false;
        let r = c.submit(0, 3, 1, get("x"));
        c.flush(0);
        let acks: Vec<_> = c
            .net
            .iter()
            .filter(|(_, to, m)| *to == 0 && m.kind() == "heartbeat-ack")
            .cloned()
            .collect();
        c.net
            .retain(|(_, to, m)| !(*to == 0 && m.kind() == "heartbeat-ack"));
        for (from, to, m) in acks {
            c.replicas[to].as_mut().unwrap().step(from, m).unwrap();
            c.flush(to);
        }
        let early = c.reply(r);
        c.stabilize();
        early.or_else(|| c.reply(r))
    };
    assert!(matches!(
        story(None),
        Some(Err(RequestError::NotLeader { .. }))
    ));
    assert_eq!(
        story(Some(PlantedBug::ReadRoundNotAhead)),
        Some(value("old"))
    );
}

#[test]
fn a_log_larger_than_one_message_reaches_a_lagging_replica_in_byte_bounded_pieces() {
    // 2 KiB per message; 40 writes of 500-byte values make a log of about
    // 21 KiB that replica 2 missed.
    let budget = 2048;
    let mut c = Cluster::new(
        3,
        Config {
            max_message_bytes: budget,
            ..config()
        },
    );
    c.elect(0);
    c.deaf[2] = true;
    let big = "v".repeat(500);
    let writes: Vec<_> = (1..=40)
        .map(|seq| c.submit(0, 1, seq, put(&format!("k{seq}"), &big)))
        .collect();
    c.stabilize();
    c.tick(20);
    for w in &writes {
        assert_eq!(c.reply(*w), Some(Ok(OpResult::Done)));
    }
    // The 40 queued commands went out in batches of at most 2 KiB (three
    // 532-byte commands each), not one 21 KiB batch.
    let commit = c.replica(0).commit_index();
    assert!(commit >= 14, "commit index {commit}");
    // Replica 2 hears again: every catch-up it gets stays within the budget,
    // and it converges.
    c.deaf[2] = false;
    let mark = c.sent.len();
    for _ in 0..200 {
        c.tick(1);
        if c.replica(2).commit_index() == commit {
            break;
        }
    }
    assert_eq!(c.replica(2).commit_index(), commit);
    assert_eq!(c.replica(2).digest(), c.replica(0).digest());
    let catch_ups: Vec<usize> = c.sent[mark..]
        .iter()
        .filter(|(from, to, _)| (*from, *to) == (0, 2))
        .filter_map(|(_, _, m)| match m {
            Message::Chosen { entries } => {
                Some(entries.iter().map(|e| e.value.approx_bytes()).sum())
            }
            _ => None,
        })
        .collect();
    assert!(catch_ups.len() > 2, "{catch_ups:?}");
    assert!(catch_ups.iter().all(|b| *b <= budget), "{catch_ups:?}");
}

#[test]
fn a_different_command_under_a_used_client_id_and_seq_is_refused_and_not_applied() {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    let first = c.submit(0, 42, 1, put("a", "x"));
    c.stabilize();
    assert_eq!(c.reply(first), Some(Ok(OpResult::Done)));
    // `client --client-id 42 put a y`, numbering from 1 again: not the
    // cached "OK" of the first, but a refusal, and a stays x.
    let second = c.submit(0, 42, 1, put("a", "y"));
    c.stabilize();
    assert!(matches!(
        c.reply(second),
        Some(Err(RequestError::Stale(StaleCommand::Reused {
            client_id: 42,
            seq: 1
        })))
    ));
    // The same while the first is still queued: the second does not join it.
    let third = c.submit(0, 43, 1, put("b", "1"));
    let fourth = c.submit(0, 43, 1, put("b", "2"));
    c.stabilize();
    assert_eq!(c.reply(third), Some(Ok(OpResult::Done)));
    assert!(matches!(
        c.reply(fourth),
        Some(Err(RequestError::Stale(StaleCommand::Reused { .. })))
    ));
    for id in 0..3 {
        assert_eq!(c.replica(id).kv().read("a"), Some("x".into()));
        assert_eq!(c.replica(id).kv().read("b"), Some("1".into()));
    }
    // A real retry still gets the first one's result.
    let retry = c.submit(0, 42, 1, put("a", "x"));
    c.stabilize();
    assert_eq!(c.reply(retry), Some(Ok(OpResult::Done)));
}

#[test]
fn an_overloaded_coordinator_refuses_new_requests_as_not_applied() {
    let mut c = Cluster::new(
        3,
        Config {
            max_pending: 3,
            ..config()
        },
    );
    c.elect(0);
    // Three commands wait for the next batch; the fourth is refused at
    // once, while a retry of a waiting one still joins it.
    let waiting: Vec<_> = (1..=3)
        .map(|client| c.submit(0, client, 1, put("k", "v")))
        .collect();
    let refused = c.submit(0, 9, 1, put("k", "refused"));
    let retry = c.submit(0, 1, 1, put("k", "v"));
    c.flush(0);
    assert_eq!(
        c.reply(refused),
        Some(Err(RequestError::Overloaded { pending: 3 }))
    );
    c.stabilize();
    for w in waiting.iter().chain([&retry]) {
        assert_eq!(c.reply(*w), Some(Ok(OpResult::Done)));
    }
    assert_eq!(c.replica(0).kv().read("k"), Some("v".into()));
    // Once the queue drained, the refused client gets through.
    let again = c.submit(0, 9, 1, put("k", "later"));
    c.stabilize();
    assert_eq!(c.reply(again), Some(Ok(OpResult::Done)));
}

/// A follower that missed a write is asked for a read: the coordinator's
/// read index covers the write, so the follower answers only once it has
/// caught up and applied it (with the planted bug it answers at once, with
/// the value from before the write).
/// An answer as `Cluster::reply` gives it.
type Answer = Option<Result<OpResult, RequestError>>;

fn follower_read_story(planted: Option<PlantedBug>) -> (Answer, Answer) {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    c.replicas[2].as_mut().unwrap().planted = planted;
    // Replica 2 hears neither the accept nor the chosen value of the write.
    c.lost.push((2, "accept"));
    c.lost.push((2, "chosen"));
    let w = c.submit(0, 1, 1, put("k", "new"));
    c.stabilize();
    assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));
    assert_eq!(c.replica(2).kv().read("k"), None);
    let mark = c.sent.len();
    let r = c.submit(2, 2, 1, get("k"));
    c.stabilize();
    // One read-index request went to the coordinator and was answered.
    assert_eq!(c.count_sent(2, 0, "read-index", mark), 1);
    assert_eq!(c.count_sent(0, 2, "read-index-reply", mark), 1);
    let before_catch_up = c.reply(r);
    // Heartbeats show the coordinator that replica 2 is behind; it is
    // caught up and then serves the read.
    c.lost.clear();
    c.tick(20);
    (before_catch_up, c.reply(r))
}

#[test]
fn a_follower_serves_a_read_only_once_it_applied_the_read_index() {
    let (early, late) = follower_read_story(None);
    assert_eq!(early, None, "served before applying the read index");
    assert_eq!(late, Some(value("new")));
    // The planted bug serves the old state: a stale read.
    let (early, _) = follower_read_story(Some(PlantedBug::FollowerReadBeforeApplied));
    assert_eq!(early, Some(Ok(OpResult::Value(None))));
}

/// Deliver queued messages one at a time until `done` holds (bounded).
fn deliver_until(c: &mut Cluster, done: impl Fn(&Cluster) -> bool) {
    for _ in 0..1000 {
        if done(c) {
            return;
        }
        let Some((from, to, msg)) = c.net.pop_front() else {
            break;
        };
        c.replicas[to].as_mut().unwrap().step(from, msg).unwrap();
        c.flush(to);
    }
    assert!(done(c), "the condition never held");
}

/// Replica 2 gets a read, then, while its read-index request is in flight,
/// a write is acknowledged and a second read arrives: the second must see
/// the write. Returns the second read's answer and the read-index requests
/// sent.
fn follower_read_in_flight_story(planted: Option<PlantedBug>) -> (Answer, usize) {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    c.replicas[2].as_mut().unwrap().planted = planted;
    let w = c.submit(0, 1, 1, put("x", "old"));
    c.stabilize();
    assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));
    let mark = c.sent.len();
    let r1 = c.submit(2, 2, 1, get("x"));
    c.flush(2);
    // The request reaches the coordinator, which takes its read index.
    deliver_until(&mut c, |c| {
        !c.net
            .iter()
            .any(|(_, to, m)| *to == 0 && m.kind() == "read-index")
    });
    // Replica 2 is paused (its inbox holds), a write is chosen by 0 and 1.
    c.paused[2] = true;
    let w = c.submit(0, 1, 2, put("x", "new"));
    c.stabilize();
    assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));
    // It wakes with a second read before handling its inbox.
    c.paused[2] = false;
    let r2 = c.submit(2, 3, 1, get("x"));
    c.flush(2);
    c.stabilize();
    c.tick(20);
    assert!(matches!(c.reply(r1), Some(Ok(_))), "{:?}", c.reply(r1));
    (c.reply(r2), c.count_sent(2, 0, "read-index", mark))
}

#[test]
fn reads_arriving_at_a_follower_while_its_read_index_request_is_in_flight_wait_for_the_next() {
    let (second, requests) = follower_read_in_flight_story(None);
    assert_eq!(second, Some(value("new")));
    assert_eq!(requests, 2);
    // Joining the request in flight (the planted bug) serves the old value.
    let (second, requests) =
        follower_read_in_flight_story(Some(PlantedBug::FollowerReadJoinsInFlight));
    assert_eq!(second, Some(value("old")));
    assert_eq!(requests, 1);
}

#[test]
fn reads_held_at_a_follower_go_out_once_the_request_in_flight_is_a_heartbeat_old() {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    // The coordinator never receives the first request.
    c.lost.push((0, "read-index"));
    let mark = c.sent.len();
    let r1 = c.submit(1, 1, 1, get("k"));
    c.stabilize();
    let r2 = c.submit(1, 2, 1, get("k"));
    c.stabilize();
    assert_eq!(c.count_sent(1, 0, "read-index", mark), 1);
    c.lost.clear();
    c.tick(config().heartbeat_ticks as usize);
    assert_eq!(c.count_sent(1, 0, "read-index", mark), 2);
    assert_eq!(c.reply(r2), Some(Ok(OpResult::Value(None))));
    assert_eq!(c.reply(r1), None);
}

#[test]
fn a_follower_read_without_an_answer_is_given_up_as_not_applied() {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    // The coordinator never receives the request.
    c.lost.push((0, "read-index"));
    let r = c.submit(1, 1, 1, get("k"));
    c.stabilize();
    assert_eq!(c.reply(r), None);
    c.tick(config().election_ticks as usize + 1);
    assert_eq!(
        c.reply(r),
        Some(Err(RequestError::NotLeader {
            leader_hint: Some(0)
        }))
    );
}

#[test]
fn an_answer_meant_for_an_earlier_run_of_a_follower_is_ignored() {
    let mut c = Cluster::new(3, config());
    c.elect(0);
    let w = c.submit(0, 1, 1, put("k", "v1"));
    c.stabilize();
    assert_eq!(c.reply(w), Some(Ok(OpResult::Done)));
    // Replica 2 restarts (a new incarnation) and gets a read; the
    // coordinator's answer to its request is held back.
    c.crash(2);
    c.restart(2);
    c.tick(2 * config().heartbeat_ticks as usize);
    assert_eq!(c.replica(2).leader(), Some(0));
    c.lost.push((2, "read-index-reply"));
    let r = c.submit(2, 2, 1, get("k"));
    c.stabilize();
    assert_eq!(c.reply(r), None);
    // A reply of the same id from its earlier run (incarnation 0), with a
    // read index of 0, must not serve the read.
    let ballot = c.replica(0).status().own_ballot.unwrap();
    c.replicas[2]
        .as_mut()
        .unwrap()
        .step(
            0,
            Message::ReadIndexReply {
                ballot,
                incarnation: 0,
                id: 1,
                read_index: 0,
            },
        )
        .unwrap();
    c.flush(2);
    assert_eq!(c.reply(r), None, "served with another run's read index");
}

#[test]
fn commands_whose_requester_is_gone_are_dropped_before_they_are_proposed() {
    // One slot in flight, so later commands wait in the queue.
    let mut c = Cluster::new(
        3,
        Config {
            max_inflight_slots: 1,
            max_batch: 1,
            ..config()
        },
    );
    c.elect(0);
    let first = c.submit(0, 1, 1, put("a", "1"));
    c.flush(0);
    let abandoned = c.submit(0, 2, 1, put("b", "abandoned"));
    let joined = c.submit(0, 3, 1, put("c", "3"));
    let retry = c.submit(0, 3, 1, put("c", "3"));
    let read = c.submit(0, 4, 1, get("a"));
    let kept = c.submit(0, 5, 1, put("d", "5"));
    // The clients of `abandoned`, of the first attempt of (3, 1) and of the
    // read gave up (deadline passed, RPC cancelled).
    let gone = [abandoned, joined, read].into_iter().collect();
    assert_eq!(c.replicas[0].as_mut().unwrap().cancel(&gone), 2);
    c.stabilize();
    c.tick(5);
    // The abandoned command was never proposed, and nothing answers it.
    let proposed_b = c.sent.iter().any(|(_, _, m)| {
        matches!(m, Message::Accept { value: Value::Batch(cmds), .. }
            if cmds.iter().any(|cmd| cmd.client_id == 2))
    });
    assert!(
        !proposed_b,
        "a command whose requester is gone was proposed"
    );
    for request in [abandoned, joined, read] {
        assert_eq!(c.reply(request), None);
    }
    assert!(c.replica(0).kv().read("b").is_none());
    // The others went through; (3, 1) for the retry that is still waiting.
    for request in [first, retry, kept] {
        assert_eq!(c.reply(request), Some(Ok(OpResult::Done)));
    }
    assert_eq!(c.replica(0).kv().read("c").as_deref(), Some("3"));
    // At a follower there is nothing to cancel.
    assert_eq!(c.replicas[1].as_mut().unwrap().cancel(&gone), 0);
}

#[test]
fn accepts_leave_before_the_coordinators_fsync_and_its_vote_counts_only_after() {
    for planted in [None, Some(PlantedBug::OwnVoteBeforeFsync)] {
        let mut c = Cluster::new(3, config());
        c.elect(0);
        let w = c.submit(0, 1, 1, put("k", "v"));
        // The coordinator's output: its accepted value to write, the
        // accepts to send at once, and its own vote to hand back after
        // the fsync.
        let coordinator = c.replicas[0].as_mut().unwrap();
        coordinator.planted = planted;
        let ready = coordinator.ready();
        assert!(ready
            .persist
            .iter()
            .any(|w| matches!(w, StorageWrite::Accept { .. })));
        let accepts: Vec<_> = ready
            .send_now
            .iter()
            .filter(|(_, m)| matches!(m, Message::Accept { .. }))
            .map(|(to, _)| *to)
            .collect();
        assert_eq!(accepts, vec![1, 2]);
        let own_vote: Vec<_> = ready
            .messages
            .iter()
            .filter(|(to, m)| *to == 0 && matches!(m, Message::Accepted { .. }))
            .cloned()
            .collect();
        let accept = ready.send_now[0].1.clone();
        // Replica 1 accepts (durably) and answers, while the coordinator's
        // own write is still on its way to disk.
        let follower = c.replicas[1].as_mut().unwrap();
        follower.step(0, accept).unwrap();
        let answer = follower.ready();
        assert!(!answer.persist.is_empty());
        let accepted = answer
            .messages
            .iter()
            .find(|(to, m)| *to == 0 && matches!(m, Message::Accepted { .. }))
            .map(|(_, m)| m.clone())
            .expect("replica 1 accepts");
        let coordinator = c.replicas[0].as_mut().unwrap();
        coordinator.step(1, accepted).unwrap();
        let early = coordinator.ready();
        if planted.is_some() {
            // The bug: one remote vote plus an own vote that a crash now
            // would lose, and the client is told the write is done.
            assert!(early.replies.iter().any(|(id, r)| *id == w && r.is_ok()));
            assert!(own_vote.is_empty());
            continue;
        }
        assert_eq!(own_vote.len(), 1, "one own vote, after the fsync");
        assert!(early.replies.is_empty(), "chosen before its fsync");
        assert_eq!(coordinator.commit_index(), 0);
        // The fsync completes: the runtime hands the own vote back.
        coordinator.step(0, own_vote[0].1.clone()).unwrap();
        let done = coordinator.ready();
        assert!(done.replies.iter().any(|(id, r)| *id == w && r.is_ok()));
        assert_eq!(coordinator.commit_index(), 1);
        // A message from itself of any other kind is still refused.
        assert_eq!(
            coordinator.step(0, Message::CatchUp { first_slot: 1 }),
            Err(StepError::FromSelf)
        );
    }
}

/// The story of `a_promise_reports_a_long_accepted_history_in_byte_bounded_pieces`:
/// returns the cluster once replica 2 leads, and replica 1's promises to it
/// (accepted bytes, where the piece stopped).
fn promise_pieces_story(planted: Option<PlantedBug>) -> (Cluster, Vec<(usize, Option<Slot>)>) {
    // 300 bytes per message; 12 writes of 100-byte values, one per slot,
    // accepted by replica 1 and never known chosen: replica 0 hears no
    // `Accepted`, replica 2 hears nothing.
    let budget = 300;
    let mut c = Cluster::new(
        3,
        Config {
            max_message_bytes: budget,
            max_inflight_slots: 16,
            max_batch: 1,
            ..config()
        },
    );
    c.elect(0);
    c.deaf[2] = true;
    c.lost.push((0, "accepted"));
    let big = "v".repeat(100);
    for seq in 1..=12 {
        c.submit(0, 1, seq, put(&format!("k{seq}"), &big));
    }
    c.stabilize();
    // Replica 0 dies; replica 2 hears again and campaigns (replica 1's
    // pre-votes are lost, so that the candidate is the one that knows
    // nothing).
    c.crash(0);
    c.deaf[2] = false;
    c.lost = vec![(2, "pre-vote")];
    c.replicas[2].as_mut().unwrap().planted = planted;
    let mark = c.sent.len();
    c.elect(2);
    let pieces = c.sent[mark..]
        .iter()
        .filter(|(from, to, _)| (*from, *to) == (1, 2))
        .filter_map(|(_, _, m)| match m {
            Message::Promise {
                accepted,
                accepted_through,
                ..
            } => Some((
                accepted.iter().map(|e| e.value.approx_bytes()).sum(),
                *accepted_through,
            )),
            _ => None,
        })
        .collect();
    c.tick(10);
    (c, pieces)
}

#[test]
fn a_promise_reports_a_long_accepted_history_in_byte_bounded_pieces() {
    let budget = 300;
    let big = "v".repeat(100);
    let (c, pieces) = promise_pieces_story(None);
    // Replica 1's promise came in pieces, each within the budget, the last
    // one complete.
    assert!(pieces.len() >= 4, "pieces {pieces:?}");
    assert!(
        pieces.iter().all(|(bytes, _)| *bytes <= budget),
        "{pieces:?}"
    );
    assert_eq!(pieces.last().unwrap().1, None);
    // Every value replica 1 accepted was recovered and chosen again.
    assert!(c.replica(2).commit_index() >= 12);
    for seq in 1..=12 {
        for id in [1, 2] {
            assert_eq!(
                c.replica(id).kv().read(&format!("k{seq}")),
                Some(big.clone())
            );
        }
    }
    // Counting the first piece as the whole promise (the planted bug)
    // leads without the values past it: they are lost.
    let (c, _) = promise_pieces_story(Some(PlantedBug::IncompletePromiseCounts));
    assert_eq!(c.replica(2).kv().read("k12"), None);
}

#[test]
fn a_candidate_behind_a_compacted_log_gets_the_snapshot_in_chunks_before_the_promise() {
    // Replica 2 misses 20 writes of 100-byte values that replicas 0 and 1
    // compact into a snapshot of about 3 KiB, ten times the budget.
    let budget = 300;
    let mut c = Cluster::new(
        3,
        Config {
            max_message_bytes: budget,
            snapshot_every: 5,
            ..config()
        },
    );
    c.elect(0);
    c.deaf[2] = true;
    let big = "v".repeat(100);
    for seq in 1..=20 {
        c.submit(0, 1, seq, put(&format!("k{seq}"), &big));
    }
    c.stabilize();
    c.tick(4);
    assert!(c.replica(1).status().snapshot_slot >= 5);
    // Replica 0 dies; replica 2 campaigns, replica 1 cannot (its pre-votes
    // are lost).
    c.crash(0);
    c.deaf[2] = false;
    c.lost = vec![(2, "pre-vote")];
    let mark = c.sent.len();
    c.elect(2);
    // Replica 1 answered the prepare that reached into its compacted slots
    // with its snapshot in chunks within the budget, and promised only
    // once asked again from beyond it: no promise carried a snapshot.
    let from_1: Vec<&Message> = c.sent[mark..]
        .iter()
        .filter(|(from, to, _)| (*from, *to) == (1, 2))
        .map(|(_, _, m)| m)
        .collect();
    let chunks: Vec<usize> = from_1
        .iter()
        .filter_map(|m| match m {
            Message::SnapshotChunk { data, .. } => Some(data.len()),
            _ => None,
        })
        .collect();
    assert!(chunks.len() >= 5, "chunks {chunks:?}");
    assert!(chunks.iter().all(|len| *len <= budget), "{chunks:?}");
    assert!(from_1.iter().all(|m| !matches!(
        m,
        Message::Promise {
            snapshot: Some(_),
            ..
        }
    )));
    assert!(from_1.iter().any(|m| m.kind() == "promise"));
    c.tick(10);
    for seq in [1, 20] {
        assert_eq!(
            c.replica(2).kv().read(&format!("k{seq}")),
            Some(big.clone())
        );
    }
    assert_eq!(c.replica(2).digest(), c.replica(1).digest());
}

#[test]
fn a_voter_that_promised_a_campaign_in_progress_refuses_another_pre_vote() {
    // Phase 1 can take many round trips (promises in pieces); a pre-vote
    // granted meanwhile starts a second campaign that preempts the first,
    // and the two can preempt each other forever.
    let mut c = Cluster::new(5, config());
    c.elect(0);
    c.crash(0);
    // Replica 3 stops hearing the coordinator (its messages to others
    // are not delivered: this story is about its answers).
    let voter = c.replicas[3].as_mut().unwrap();
    for _ in 0..config().election_ticks {
        voter.tick();
    }
    voter.ready();
    let answer = |voter: &mut Replica, ballot: Ballot| {
        voter
            .step(
                2,
                Message::PreVote {
                    ballot,
                    takeover: false,
                },
            )
            .unwrap();
        let ready = voter.ready();
        ready
            .send_now
            .iter()
            .chain(&ready.messages)
            .find_map(|(to, m)| match m {
                Message::PreVoteReply { granted, .. } if *to == 2 => Some(*granted),
                _ => None,
            })
    };
    // Replica 1 campaigns, and replica 3 promises it.
    voter
        .step(
            1,
            Message::Prepare {
                ballot: Ballot::new(5, 1),
                first_slot: 1,
            },
        )
        .unwrap();
    voter.ready();
    // While that campaign goes on, replica 2's pre-vote is refused...
    assert_eq!(answer(voter, Ballot::new(6, 2)), Some(false));
    // ...and once replica 1 has been silent for an election timeout, it is
    // granted.
    for _ in 0..config().election_ticks {
        voter.tick();
    }
    voter.ready();
    assert_eq!(answer(voter, Ballot::new(6, 2)), Some(true));
}
