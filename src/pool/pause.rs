//! `PAUSE` / `RESUME` (and the pause `KILL` leaves behind): while a database is paused, its
//! clients' new requests wait before checkout instead of getting a server, as PgBouncer's do,
//! so a DBA can restart or fail over Postgres under connected clients.
//!
//! It owns the paused set and the waiting; it does not wait for servers to drain nor close
//! them (the admin command does, through the pools). The data path pays one relaxed load
//! while nothing is paused.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// The paused databases of one proxy. `None` in the set-wide sense means "everything".
pub struct Pauses {
    /// Something is paused: the fast-path check.
    any: AtomicBool,
    state: Mutex<Paused>,
    /// Bumped on every change; waiters re-check then.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct Paused {
    all: bool,
    databases: HashSet<String>,
}

impl Default for Pauses {
    fn default() -> Self {
        Pauses {
            any: AtomicBool::new(false),
            state: Mutex::new(Paused::default()),
            changed: watch::channel(0).0,
        }
    }
}

impl Pauses {
    fn update(&self, f: impl FnOnce(&mut Paused)) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut st);
        self.any
            .store(st.all || !st.databases.is_empty(), Ordering::Relaxed);
        drop(st);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Pauses one database, or every database with `None`.
    pub fn pause(&self, database: Option<&str>) {
        self.update(|st| match database {
            Some(d) => {
                st.databases.insert(d.to_owned());
            }
            None => st.all = true,
        });
    }

    /// Resumes one database, or everything (the global pause and every database) with `None`.
    pub fn resume(&self, database: Option<&str>) {
        self.update(|st| match database {
            Some(d) => {
                st.databases.remove(d);
            }
            None => {
                st.all = false;
                st.databases.clear();
            }
        });
    }

    /// `PAUSE` without a database is in force.
    pub fn all_paused(&self) -> bool {
        self.any.load(Ordering::Relaxed) && self.state.lock().unwrap_or_else(|p| p.into_inner()).all
    }

    /// Requests for `database` must wait.
    pub fn is_paused(&self, database: &str) -> bool {
        if !self.any.load(Ordering::Relaxed) {
            return false;
        }
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.all || st.databases.contains(database)
    }

    /// Returns once `database` is not paused (at once when it is not).
    pub async fn wait_resumed(&self, database: &str) {
        let mut rx = self.changed.subscribe();
        while self.is_paused(database) {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_paused_database_waits_until_resumed() {
        let p = Arc::new(Pauses::default());
        assert!(!p.is_paused("a"));
        p.pause(Some("a"));
        assert!(p.is_paused("a") && !p.is_paused("b"));
        let waiter = tokio::spawn({
            let p = Arc::clone(&p);
            async move { p.wait_resumed("a").await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        p.resume(Some("a"));
        waiter.await.expect("waiter");
        p.pause(None);
        assert!(p.is_paused("b"));
        p.resume(None);
        assert!(!p.is_paused("a") && !p.is_paused("b"));
    }
}
