//! Asking a server what session state a client's transaction left on it.
//!
//! Parsing `SET` to guess the outcome gets the hard cases wrong (a SET inside a transaction
//! that rolled back, `RESET`, `set_config(..., false)` in a function, `SET ROLE`,
//! `DISCARD ALL`), so the proxy asks instead: after a transaction whose SQL may have changed
//! session state (see `sql::effects`), one query reads the server's own answer — the settings
//! the session changed, the custom (`prefix.name`) settings it touched, and whether it holds
//! state that only that server session has (LISTEN, temporary tables, cursors WITH HOLD,
//! session advisory locks, SQL-level prepared statements). Transactions that touch none of it
//! pay nothing.

use super::params::literal;
use crate::sql::effects::{Effects, Flags};

/// What to ask.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ask {
    pub settings: bool,
    /// Custom settings touched, lower-case as Postgres stores them.
    pub custom: Vec<String>,
    pub features: bool,
    /// Of `features`: a statement may have created session-only state (LISTEN, a temp table,
    /// a WITH HOLD cursor, an advisory lock, or something the lexer could not see through).
    pub gains_features: bool,
    /// The protocol-level prepared statements the server still has (after DEALLOCATE or
    /// DISCARD).
    pub statements: bool,
    /// The SQL-level prepared statements (names) the session holds (after PREPARE,
    /// DEALLOCATE or DISCARD).
    pub sql_statements: bool,
    /// The client dropped all its prepared statements (`DEALLOCATE ALL`, `DISCARD ALL`): if
    /// the server confirms, so does the proxy for the client's protocol-level ones.
    pub drop_statements: bool,
}

impl Ask {
    pub fn is_empty(&self) -> bool {
        !self.settings
            && !self.features
            && !self.statements
            && !self.sql_statements
            && self.custom.is_empty()
    }

    /// Whether the answer changes state the proxy keeps for the client across servers (its
    /// settings, its SQL prepared statements, its protocol-level ones after a drop, a new
    /// pin): without the answer that state is unknown. `statements`, and `features` asked
    /// only because something may have been released (DROP, UNLISTEN, CLOSE, an unlock),
    /// concern just the server (a pin held already is the caller's to check).
    pub fn carries_client_state(&self) -> bool {
        self.settings
            || !self.custom.is_empty()
            || self.gains_features
            || self.sql_statements
            || self.drop_statements
    }

    /// What to ask after a statement with these effects ran.
    pub fn note(&mut self, e: &Effects) {
        if e.is_empty() && e.custom_settings.is_empty() {
            return;
        }
        self.settings |= e.has(Flags::SETTINGS | Flags::DISCARD_ALL | Flags::OPAQUE) || e.reset_all;
        self.gains_features |= e.has(
            Flags::LISTEN | Flags::TEMP | Flags::HOLD_CURSOR | Flags::ADVISORY_LOCK | Flags::OPAQUE,
        );
        self.features |= e.has(
            Flags::LISTEN
                | Flags::UNLISTEN
                | Flags::TEMP
                | Flags::HOLD_CURSOR
                | Flags::CLOSE_CURSOR
                | Flags::ADVISORY_LOCK
                | Flags::ADVISORY_UNLOCK
                | Flags::DROP
                | Flags::DISCARD_ALL
                | Flags::DISCARD_OTHER
                | Flags::OPAQUE,
        );
        self.statements |= e.has(Flags::DEALLOCATE | Flags::DISCARD_ALL | Flags::OPAQUE);
        self.sql_statements |=
            e.has(Flags::PREPARE | Flags::DEALLOCATE | Flags::DISCARD_ALL | Flags::OPAQUE);
        self.drop_statements |= e.deallocate_all || e.has(Flags::DISCARD_ALL);
        for c in &e.custom_settings {
            let c = String::from_utf8_lossy(c).into_owned();
            if !self.custom.contains(&c) {
                self.custom.push(c);
            }
        }
    }
}

/// The answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Settings the session has changed, as `current_setting` spells them; `None` for custom
    /// settings that do not exist in the session.
    pub settings: Vec<(String, Option<String>)>,
    /// Session-only state the server holds, by feature name.
    pub features: Vec<String>,
    /// Names of the protocol-level prepared statements the server holds, when asked.
    pub statements: Option<Vec<String>>,
    /// Names of the SQL-level prepared statements the server holds, when asked.
    pub sql_statements: Option<Vec<String>>,
}

/// The session features, as named in the answer and in errors.
pub const LISTEN: &str = "LISTEN";
pub const TEMP: &str = "temporary tables";
pub const HOLD: &str = "cursors WITH HOLD";
pub const ADVISORY: &str = "session advisory locks";

/// The query for `ask`. `login_user` is the user the server connection logged in as: a
/// session authorization other than it was set by the client.
pub fn sql(ask: &Ask, login_user: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    if ask.settings {
        parts.push(
            "SELECT 's', name, pg_catalog.current_setting(name) FROM pg_catalog.pg_settings \
             WHERE source = 'session'"
                .into(),
        );
        // Hidden from pg_settings, and never reset by RESET ALL.
        parts.push(format!(
            "SELECT 's', 'session_authorization', pg_catalog.current_setting('session_authorization') \
             WHERE session_user <> {}",
            literal(login_user)
        ));
        parts.push(
            "SELECT 's', 'role', pg_catalog.current_setting('role') \
             WHERE pg_catalog.current_setting('role') <> 'none'"
                .into(),
        );
    }
    for name in &ask.custom {
        parts.push(format!(
            "SELECT 'c', {0}, pg_catalog.current_setting({0}, true)",
            literal(name)
        ));
    }
    if ask.features {
        for (feature, from) in [
            (LISTEN, "pg_catalog.pg_listening_channels()"),
            (
                TEMP,
                "pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()",
            ),
            (HOLD, "pg_catalog.pg_cursors WHERE is_holdable"),
            (
                ADVISORY,
                "pg_catalog.pg_locks WHERE locktype = 'advisory' \
                 AND pid = pg_catalog.pg_backend_pid()",
            ),
        ] {
            parts.push(format!(
                "SELECT 'f', {}, NULL FROM {from} HAVING count(*) > 0",
                literal(feature)
            ));
        }
    }
    if ask.sql_statements {
        parts.push(
            "SELECT 'x', name, NULL FROM pg_catalog.pg_prepared_statements WHERE from_sql".into(),
        );
    }
    if ask.statements {
        parts.push(
            "SELECT 'p', name, NULL FROM pg_catalog.pg_prepared_statements WHERE NOT from_sql"
                .into(),
        );
    }
    parts.join(" UNION ALL ")
}

/// Reads the probe's rows.
pub fn answer(ask: &Ask, rows: Vec<Vec<Option<String>>>) -> Answer {
    let mut a = Answer {
        statements: ask.statements.then(Vec::new),
        sql_statements: ask.sql_statements.then(Vec::new),
        ..Answer::default()
    };
    for row in rows {
        let mut cols = row.into_iter();
        let (Some(Some(kind)), Some(Some(name)), value) =
            (cols.next(), cols.next(), cols.next().flatten())
        else {
            continue;
        };
        match kind.as_str() {
            // pg_settings spells some names in mixed case (TimeZone); settings lists are
            // lower-case throughout.
            "s" => a.settings.push((name.to_ascii_lowercase(), value)),
            // An empty value is kept: a placeholder once set reads as '' (not NULL) for the
            // rest of the session, and the client's next server must read the same.
            "c" => a.settings.push((name, value)),
            "f" => a.features.push(name),
            "p" => {
                if let Some(s) = a.statements.as_mut() {
                    s.push(name);
                }
            }
            "x" => {
                if let Some(s) = a.sql_statements.as_mut() {
                    s.push(name);
                }
            }
            _ => {}
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_only_what_is_needed() {
        let ask = Ask {
            custom: vec!["app.x".into()],
            ..Ask::default()
        };
        let q = sql(&ask, "u");
        assert!(q.contains("current_setting(E'app.x', true)"));
        assert!(!q.contains("pg_settings") && !q.contains("pg_locks"));
        let all = Ask {
            settings: true,
            features: true,
            statements: true,
            ..Ask::default()
        };
        let q = sql(&all, "o'brien");
        assert!(q.contains("session_user <> E'o''brien'"));
        assert_eq!(q.matches(" UNION ALL ").count(), 3 + 4 + 1 - 1);
    }

    #[test]
    fn what_a_statement_makes_us_ask() {
        let mut ask = Ask::default();
        ask.note(&crate::sql::scan(b"SELECT 1"));
        assert!(ask.is_empty());
        ask.note(&crate::sql::scan(b"SET myapp.tenant = 4"));
        assert!(ask.settings && !ask.features && ask.custom == ["myapp.tenant"]);
        ask.note(&crate::sql::scan(b"LISTEN ch"));
        assert!(ask.features && !ask.statements);
        ask.note(&crate::sql::scan(b"DISCARD ALL"));
        assert!(ask.statements && ask.drop_statements);
    }

    #[test]
    fn only_what_the_proxy_carries_for_the_client_makes_a_lost_answer_fatal() {
        let carries = |sql: &[u8]| {
            let mut ask = Ask::default();
            ask.note(&crate::sql::scan(sql));
            assert!(!ask.is_empty(), "{}", String::from_utf8_lossy(sql));
            ask.carries_client_state()
        };
        // Released or server-only: nothing of the client's is unknown without the answer.
        assert!(!carries(b"DROP TABLE t"));
        assert!(!carries(b"UNLISTEN ch"));
        assert!(!carries(b"CLOSE c"));
        // The client's settings, SQL statements or a possible new pin.
        assert!(carries(b"SET work_mem = '8MB'"));
        assert!(carries(b"PREPARE p AS SELECT 1"));
        assert!(carries(b"DEALLOCATE p"));
        assert!(carries(b"CREATE TEMP TABLE t (a int)"));
        assert!(carries(b"LISTEN ch"));
        assert!(carries(b"DISCARD ALL"));
    }

    #[test]
    fn reads_rows_by_kind() {
        let ask = Ask {
            settings: true,
            features: true,
            statements: true,
            custom: vec!["app.x".into()],
            ..Ask::default()
        };
        let s = |v: &str| Some(v.to_owned());
        let a = answer(
            &ask,
            vec![
                vec![s("s"), s("TimeZone"), s("UTC")],
                vec![s("s"), s("work_mem"), s("8MB")],
                vec![s("c"), s("app.x"), s("")],
                vec![s("c"), s("app.y"), None],
                vec![s("f"), s(LISTEN), None],
                vec![s("p"), s("lagoon_3"), None],
                vec![s("?")],
            ],
        );
        assert_eq!(
            a.settings,
            vec![
                ("timezone".into(), s("UTC")),
                ("work_mem".into(), s("8MB")),
                ("app.x".into(), s("")),
                ("app.y".into(), None)
            ]
        );
        assert_eq!(a.features, vec![LISTEN.to_owned()]);
        assert_eq!(a.statements, Some(vec!["lagoon_3".to_owned()]));
    }
}
