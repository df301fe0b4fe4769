//! Client workers: the logical processes of a run, with Jepsen semantics.
//!
//! A worker is bound to one node (worker i talks to node i % n: the load and
//! the anomalies of a node are seen by the processes bound to it). It has one
//! operation in flight at a time, run by the database's client
//! ([`crate::db::DbClient`]), which classifies it `:ok`, `:fail` or `:info`.
//! After an `:info` the operation may take effect at any later time, so the
//! process never issues another op: the worker continues as a fresh process
//! (`process + concurrency`) with a fresh client session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::db::DbClient;
use crate::generator::{Generator, HistoryOp};
use crate::history::OpType;
use crate::recorder::Recorder;

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

/// Everything a worker needs.
pub struct Worker {
    pub index: usize,
    pub concurrency: usize,
    /// The node's client address (`:node` in the history).
    pub addr: String,
    pub client: Box<dyn DbClient>,
    pub generator: Generator,
    pub recorder: Recorder,
    pub request_timeout: Duration,
    pub backoff: Duration,
    /// Time between two ops of this worker (open loop), None: closed loop.
    pub pace: Option<Duration>,
    /// When the worker stops issuing ops (an op in flight completes).
    pub deadline: Instant,
    /// Cancelled when the run stops early.
    pub stop: CancellationToken,
    pub counters: Arc<Counters>,
}

impl Worker {
    /// Runs until the deadline; returns the number of ops issued.
    pub async fn run(mut self) -> u64 {
        let mut process = self.index as u64;
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
                    sleep_until(&self.stop, next.min(self.deadline)).await;
                }
                // After a slow op, do not burst to catch up.
                next = next.max(Instant::now() - p) + p;
            }
            if Instant::now() >= self.deadline || self.stop.is_cancelled() {
                break;
            }
            let op = self.generator.next_op();
            self.recorder.record_client(
                process,
                OpType::Invoke,
                op.f(),
                op.invoke_value(),
                &self.addr,
                None,
            );
            issued += 1;
            let c = self.client.invoke(&op, self.request_timeout).await;
            self.recorder.record_client(
                process,
                c.kind,
                op.f(),
                c.value.clone(),
                &self.addr,
                c.error.clone(),
            );
            self.counters.add(c.kind);
            if let Some(v) = c.observed {
                self.generator.observe(&op, v);
            }
            match c.kind {
                OpType::Info => {
                    process += self.concurrency as u64;
                    self.client.new_session();
                    sleep_until(&self.stop, Instant::now() + self.backoff).await;
                }
                OpType::Fail
                    if c.error
                        .as_deref()
                        .is_some_and(|e| !e.starts_with("cas mismatch")) =>
                {
                    sleep_until(&self.stop, Instant::now() + self.backoff).await;
                }
                _ => {}
            }
        }
        issued
    }
}

/// Sleeps until `at`, or until the run is stopped.
async fn sleep_until(stop: &CancellationToken, at: Instant) {
    tokio::select! {
        _ = tokio::time::sleep_until(at) => {}
        _ = stop.cancelled() => {}
    }
}
