//! The progress bar of a run: elapsed time, ops done, ok/fail/info counts
//! and the faults in effect. Drawn on stderr, only when it is a terminal.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::nemesis::NemesisState;
use crate::run::worker::Counters;

/// Spawns the task that redraws the bar every 200 ms until `done` is cancelled;
/// returns the bar (finish it with [`ProgressBar::finish_and_clear`]).
pub fn spawn(
    enabled: bool,
    duration: Duration,
    counters: Arc<Counters>,
    nemesis: Arc<Mutex<NemesisState>>,
    done: CancellationToken,
) -> ProgressBar {
    let show = enabled && std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(
        Some(duration.as_millis() as u64),
        if show {
            ProgressDrawTarget::stderr_with_hz(5)
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise:.dim} [{bar:20.cyan/blue}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let b = bar.clone();
    let start = std::time::Instant::now();
    tokio::spawn(async move {
        while !done.is_cancelled() {
            let (ok, fail, info) = counters.get();
            let faults = nemesis.lock().map(|n| n.active()).unwrap_or_default();
            let faults = if faults.is_empty() {
                "no faults".to_string()
            } else {
                faults.join("; ")
            };
            b.set_position(start.elapsed().as_millis() as u64);
            b.set_message(format!(
                "{} ops: {ok} ok {fail} fail {info} info | {faults}",
                ok + fail + info
            ));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = done.cancelled() => {}
            }
        }
    });
    bar
}
