//! Graceful shutdown: one signal, observed by every task.
//!
//! [`Shutdown`] wraps a `watch` channel: [`Shutdown::trigger`] flips it once,
//! and every clone's [`Shutdown::wait`] resolves. Long-lived work (the core
//! loop, peer streams, gRPC servers) selects on `wait()` so that SIGTERM ends
//! the process promptly and cleanly instead of waiting for streams that never
//! end on their own.

use tokio::sync::watch;

/// A shareable shutdown flag (cheap to clone).
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: std::sync::Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A flag that is not triggered yet.
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            tx: std::sync::Arc::new(tx),
            rx,
        }
    }

    /// Asks everything to stop (idempotent).
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// True once triggered.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once the flag is triggered.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means the sender is gone, which only happens once every
        // clone is dropped: nothing is left to wait for.
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn termination_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
