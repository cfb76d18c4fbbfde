//! Which health monitors run: one stop token per database, so a config reload can stop one
//! database's monitor and start another's while the proxy serves.
//!
//! Owns: starting a monitor task ([`Health::run`]) under a token of its own and stopping it.
//! Does not own: the health views themselves (`Shared::health`), deciding which databases are
//! monitored (`app`, `config::reload`), or probing (`monitor`, `probe`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use super::{Health, ProbeLogin};

/// The running monitors, by database name.
#[derive(Default)]
pub struct Monitors {
    stops: Mutex<HashMap<String, CancellationToken>>,
}

impl Monitors {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, CancellationToken>> {
        // The map stays consistent whatever panicked while holding it.
        self.stops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Spawns `health`'s monitor with `login`, stopping the database's previous one. It also
    /// stops when `parent` (the proxy's hard-shutdown token) is cancelled.
    pub fn start(&self, health: Arc<Health>, login: ProbeLogin, parent: &CancellationToken) {
        let stop = parent.child_token();
        let previous = self.lock().insert(health.database.clone(), stop.clone());
        if let Some(previous) = previous {
            previous.cancel();
        }
        tokio::spawn(health.run(login, stop));
    }

    /// Stops the monitor of `database`, if one runs.
    pub fn stop(&self, database: &str) {
        if let Some(stop) = self.lock().remove(database) {
            stop.cancel();
        }
    }

    /// Stops every monitor (the proxy is done).
    pub fn stop_all(&self) {
        for (_, stop) in self.lock().drain() {
            stop.cancel();
        }
    }

    /// Whether a monitor runs for `database`.
    pub fn running(&self, database: &str) -> bool {
        self.lock().contains_key(database)
    }
}
