//! Shutdown and signals. SIGTERM drains: the listener stops accepting, idle clients are told
//! `57P01` at once, clients inside a transaction finish it (up to `server.shutdown_timeout_ms`),
//! then everyone left gets `57P01`. SIGINT is fast: every client gets `57P01` now.
//! SIGHUP is reserved for config reload (a later issue) and only logged for now.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Tokens every task watches, and the tracker that lets `app::run` wait for them.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Stop accepting; end sessions at their next transaction boundary.
    pub drain: CancellationToken,
    /// End every session now.
    pub hard: CancellationToken,
    pub tasks: TaskTracker,
}

impl Shutdown {
    /// Graceful: drain now, force after `deadline`.
    pub fn begin_drain(&self, deadline: Duration) {
        if self.drain.is_cancelled() {
            return;
        }
        self.drain.cancel();
        let hard = self.hard.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(deadline) => hard.cancel(),
                _ = hard.cancelled() => {}
            }
        });
    }

    /// Fast: end everything now.
    pub fn begin_fast(&self) {
        self.drain.cancel();
        self.hard.cancel();
    }
}

/// Turns SIGTERM / SIGINT / SIGHUP into the actions above, until shutdown has begun.
pub async fn watch_signals(shutdown: Shutdown, drain_deadline: Duration) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!(?drain_deadline, "SIGTERM: draining");
                shutdown.begin_drain(drain_deadline);
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: shutting down now");
                shutdown.begin_fast();
                return Ok(());
            }
            _ = hup.recv() => {
                tracing::warn!("SIGHUP: config reload is not implemented yet; nothing changed");
            }
            _ = shutdown.hard.cancelled() => return Ok(()),
        }
    }
}
