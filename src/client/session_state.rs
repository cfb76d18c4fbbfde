//! After a transaction that may have changed session state: asking the server (see
//! [`super::probe`]) and acting on the answer. Settings become the client's own (replayed on
//! whichever server it uses next); session-only state pins the client to this server until
//! it is gone, and is counted in `lagoon_pinned_clients` / `lagoon_session_pins_total`.

use super::probe;
use super::relay;
use super::session::{Exit, Session, on_own_account};
use crate::prepared::registry::server_name;

impl Session<'_> {
    /// Runs the probe on the attached server and adopts its answer. If the server cannot
    /// answer (in `pool.server_rollback_timeout_ms`), it is not trusted with the next client:
    /// it is closed. The client's transaction already completed; if what it changed is
    /// session state the proxy carries for it (settings, SQL prepared statements, a pin) that
    /// state is now unknown, so the client ends with `08006`, as it would on a direct
    /// connection whose server went away, rather than go on silently without it.
    pub(super) async fn check_session_state(&mut self) -> Result<(), Exit> {
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
            return Ok(());
        };
        let sql = probe::sql(&ask, &self.pool.user);
        let asked = on_own_account(
            &self.entry.stop,
            super::stop::HARD,
            self.rollback_timeout,
            relay::query_rows(conn, &sql),
        )
        .await?;
        let rows = match asked {
            Some(Ok(rows)) => rows,
            failed => {
                tracing::warn!(error = ?failed, "could not read the session state a client left; closing that server connection");
                if let Some(conn) = self.server.take() {
                    self.slot.set(None);
                    conn.discard();
                }
                let lost_state = self.pinned.is_some() || ask.carries_client_state();
                if self.pinned.is_some() {
                    self.set_pinned(None);
                }
                if lost_state {
                    return Err(Exit::fatal(
                        crate::protocol::sqlstate::CONNECTION_FAILURE,
                        "server connection lost before the session state this client set could be read",
                    ));
                }
                return Ok(());
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
            let names: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
            let gone: Vec<u64> = conn
                .statements
                .ids()
                .filter(|id| !names.contains(server_name(*id).as_str()))
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
        Ok(())
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
