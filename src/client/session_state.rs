//! After a transaction that may have changed session state: asking the server (see
//! [`super::probe`]) and acting on the answer. Settings become the client's own (replayed on
//! whichever server it uses next); session-only state pins the client to this server until
//! it is gone, and is counted in `lagoon_pinned_clients` / `lagoon_session_pins_total`.

use super::probe;
use super::relay;
use super::session::Session;
use crate::prepared::registry::server_name;

impl Session<'_> {
    /// Runs the probe on the attached server and adopts its answer. If the server cannot
    /// answer, it is not trusted with the next client: it is closed (the client's transaction
    /// already completed, so the client loses nothing).
    pub(super) async fn check_session_state(&mut self) {
        let mut ask = std::mem::take(&mut self.ask);
        if ask.settings || !ask.custom.is_empty() {
            ask.settings = true;
            // RESET ALL and DISCARD ALL reach custom settings the statements did not name.
            for (k, _) in self.params.desired() {
                if k.contains('.') && !ask.custom.contains(k) {
                    ask.custom.push(k.clone());
                }
            }
        }
        if self.pinned.is_some() {
            ask.features = true;
        }
        let Some(conn) = self.server.as_mut() else {
            return;
        };
        let sql = probe::sql(&ask, &self.pool.user);
        let rows = match relay::query_rows(conn, &sql).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = ?e, "could not read the session state a client left; closing that server connection");
                if let Some(conn) = self.server.take() {
                    self.slot.set(None);
                    conn.discard();
                }
                self.set_pinned(None);
                return;
            }
        };
        let answer = probe::answer(&ask, rows);
        if ask.settings {
            self.params.adopt(&answer.settings);
            conn.applied = answer
                .settings
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
                .collect();
        }
        if let Some(names) = &answer.statements {
            let gone: Vec<u64> = conn
                .statements
                .ids()
                .filter(|id| !names.iter().any(|n| *n == server_name(*id)))
                .collect();
            for id in gone {
                conn.statements.remove(id);
            }
            if ask.drop_statements && names.is_empty() {
                // DEALLOCATE ALL / DISCARD ALL ran: on a direct connection the client's
                // protocol-level statements would be gone too.
                self.statements.clear();
            }
        }
        if let Some(names) = answer.sql_statements {
            let captured = std::mem::take(&mut self.captured);
            let text_of = |name: &str| {
                captured
                    .iter()
                    .rev()
                    .chain(conn.sql_prepared.iter())
                    .chain(self.sql_prepared.iter())
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t.clone())
            };
            let now: Vec<(String, String)> = names
                .into_iter()
                .filter_map(|n| text_of(&n).map(|t| (n, t)))
                .collect();
            conn.sql_prepared = now.clone();
            self.sql_prepared = now;
        }
        if ask.features {
            self.set_pinned(answer.features.first().cloned());
        }
    }

    fn set_pinned(&mut self, feature: Option<String>) {
        let db = self.pool.database.clone();
        match (&self.pinned, &feature) {
            (None, Some(f)) => {
                tracing::debug!(feature = %f, "client pinned to its server connection");
                metrics::gauge!("lagoon_pinned_clients", "database" => db.clone()).increment(1.0);
                metrics::counter!("lagoon_session_pins_total", "database" => db, "feature" => f.clone())
                    .increment(1);
            }
            (Some(_), None) => {
                tracing::debug!("client unpinned");
                metrics::gauge!("lagoon_pinned_clients", "database" => db).decrement(1.0);
            }
            _ => {}
        }
        self.pinned = feature;
    }

    /// The session ends: a pinned client no longer counts as pinned.
    pub(super) fn unpin_at_exit(&mut self) {
        self.set_pinned(None);
    }
}
