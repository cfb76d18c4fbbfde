//! Shutdown and signals. SIGTERM drains: the listener stops accepting, idle clients are told
//! `57P01` at once, clients inside a transaction finish it (up to `server.shutdown_timeout_ms`,
//! read when the signal arrives, so a reload changes it), then everyone left gets `57P01`.
//! SIGINT is fast: every client gets `57P01` now. SIGHUP reloads the config file
//! (`config::reload`); the outcome is logged, and an invalid file changes nothing.
//!
//! Owns: the shutdown tokens and the signal handlers. Does not own: what a reload applies
//! (`config::reload`) or how sessions end (`client`).

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
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

/// The SIGTERM / SIGINT / SIGHUP handlers, installed but not yet acted on.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers now (must run inside the runtime). From here on the signals are
    /// queued for [`Signals::watch`] instead of taking their default action, which for SIGHUP
    /// would end the process: install before announcing that the proxy is up.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Turns the signals into the actions above until shutdown is complete: SIGTERM drains,
    /// SIGINT ends everything now, SIGHUP reloads the config in a task of its own (so a slow
    /// reload never holds up a SIGTERM).
    pub async fn watch(mut self, shared: Arc<crate::app::Shared>) {
        let shutdown = shared.shutdown.clone();
        loop {
            tokio::select! {
                _ = self.term.recv() => {
                    let deadline = shared.config.load().server.shutdown_timeout();
                    tracing::info!(drain_deadline = ?deadline, "SIGTERM: draining");
                    shutdown.begin_drain(deadline);
                }
                _ = self.int.recv() => {
                    tracing::info!("SIGINT: shutting down now");
                    shutdown.begin_fast();
                    return;
                }
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: reloading the config");
                    let shared = Arc::clone(&shared);
                    // The outcome (what changed, or every problem) is logged by the reload.
                    tokio::spawn(async move {
                        let _ = crate::config::reload::reload(&shared).await;
                    });
                }
                _ = shutdown.hard.cancelled() => return,
            }
        }
    }
}
