//! A client's session settings in transaction mode: its startup parameters (including
//! `options=-c ...`) and what its own statements changed since (as the server reports it after
//! the transaction: see `probe`), so that every server its transactions land on is first
//! brought to the same state. The replay is a diff against what each server connection already
//! has, so clients with equal settings pay nothing after the first transaction.

/// Startup keys that are not settings.
const NOT_SETTINGS: &[&str] = &["user", "database", "options", "replication"];

/// Reported parameters the client cannot set, or that must never follow a client around.
const NOT_TRACKED: &[&str] = &[
    "server_version",
    "server_encoding",
    "integer_datetimes",
    "is_superuser",
    "session_authorization",
    "in_hot_standby",
];

/// The settings one client expects on any server it uses.
#[derive(Debug, Clone, Default)]
pub struct SessionParams {
    /// The startup settings: what `RESET` returns to, as on a direct connection.
    startup: Vec<(String, String)>,
    /// (lower-case name, value), in first-set order.
    desired: Vec<(String, String)>,
}

impl SessionParams {
    /// From a StartupMessage's parameters and the settings parsed out of its `options`.
    pub fn from_startup(params: &[(String, String)], options: Vec<(String, String)>) -> Self {
        // Postgres applies `options` first and the explicit parameters after, so a parameter
        // wins over the same setting in `options`.
        let mut me = SessionParams::default();
        for (k, v) in options {
            me.set(&k, &v);
        }
        for (k, v) in params {
            if NOT_SETTINGS.contains(&k.as_str()) || k.starts_with("_pq_.") {
                continue;
            }
            me.set(k, v);
        }
        me.startup = me.desired.clone();
        me
    }

    /// Respells every value as the server does (`f` gives the server's spelling when known),
    /// so comparing with what a server reports needs no parsing.
    pub fn normalize(&mut self, f: impl Fn(&str, &str) -> Option<String>) {
        for (k, v) in self.startup.iter_mut().chain(self.desired.iter_mut()) {
            if let Some(n) = f(k, v) {
                *v = n;
            }
        }
    }

    /// Takes the server's account of the session after this client's transaction: the
    /// settings changed in the session (`None`: a custom setting that is unset) become the
    /// client's, everything else returns to its startup value, as `RESET` would.
    pub fn adopt(&mut self, session: &[(String, Option<String>)]) {
        let mut desired: Vec<(String, String)> = Vec::new();
        // Identity first: changing the session user resets the role.
        for first in ["session_authorization", "role"] {
            if let Some((k, Some(v))) = session.iter().find(|(k, _)| k == first) {
                upsert(&mut desired, k, v);
            }
        }
        for (k, v) in &self.startup {
            if !session.iter().any(|(sk, _)| sk.eq_ignore_ascii_case(k)) {
                upsert(&mut desired, k, v);
            }
        }
        for (k, v) in session {
            match v {
                Some(v) => upsert(&mut desired, k, v),
                None => {
                    if let Some((_, sv)) = self.startup.iter().find(|(sk, _)| sk == k) {
                        upsert(&mut desired, k, sv);
                    }
                }
            }
        }
        self.desired = desired;
    }

    pub fn set(&mut self, name: &str, value: &str) {
        upsert(&mut self.desired, name, value);
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.desired
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The client's `standard_conforming_strings` (on unless it set it off): with it off,
    /// backslashes escape quotes in `'...'` strings, which moves where a lexer sees them end.
    pub fn standard_strings(&self) -> bool {
        self.get("standard_conforming_strings") != Some("off")
    }

    pub fn desired(&self) -> &[(String, String)] {
        &self.desired
    }

    /// Records a setting the server reported while this client was using it.
    /// Returns true when the setting is one we track.
    pub fn observe_reported(&mut self, name: &str, value: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        if NOT_TRACKED.contains(&lower.as_str()) {
            return false;
        }
        self.set(&lower, value);
        true
    }

    /// The statement that brings a server whose changed settings are `applied` to this
    /// client's settings, or None when they already agree. `set_config` takes the value as
    /// the configuration-file syntax does (so `search_path=a,b` means two schemas, as in
    /// `options`), and is quoted here as a literal: values are never spliced into SQL raw.
    pub fn diff_sql(&self, applied: &[(String, String)]) -> Option<String> {
        self.sql(applied, false)
    }

    /// Like [`SessionParams::diff_sql`] but sets every desired setting, so the statement's one
    /// row holds the server's spelling of each value, in `desired()` order (`set_config`
    /// returns the new value as the server normalised it: `ISO` reads back `ISO, MDY`).
    pub fn full_sql(&self, applied: &[(String, String)]) -> Option<String> {
        self.sql(applied, true)
    }

    fn sql(&self, applied: &[(String, String)], all: bool) -> Option<String> {
        let mut sets = Vec::new();
        for (k, v) in &self.desired {
            if !all && applied.iter().any(|(ak, av)| ak == k && av == v) {
                continue;
            }
            sets.push(format!(
                "pg_catalog.set_config({}, {}, false)",
                literal(k),
                literal(v)
            ));
        }
        let mut resets = Vec::new();
        for (k, _) in applied {
            if !self.desired.iter().any(|(dk, _)| dk == k) {
                resets.push(format!("RESET {}", ident(k)));
            }
        }
        if sets.is_empty() && resets.is_empty() {
            return None;
        }
        let mut sql = String::new();
        if !sets.is_empty() {
            sql.push_str("SELECT ");
            sql.push_str(&sets.join(", "));
        }
        for r in resets {
            if !sql.is_empty() {
                sql.push_str("; ");
            }
            sql.push_str(&r);
        }
        Some(sql)
    }
}

/// Sets `name` (stored lower-case) to `value` in a settings list, keeping first-set order.
/// Used for a client's desired settings and for what a server connection has applied.
pub fn upsert(list: &mut Vec<(String, String)>, name: &str, value: &str) {
    let name = name.to_ascii_lowercase();
    match list.iter_mut().find(|(k, _)| *k == name) {
        Some(slot) => value.clone_into(&mut slot.1),
        None => list.push((name, value.to_owned())),
    }
}

/// A SQL string literal (E'' form so backslashes are unambiguous whatever
/// standard_conforming_strings says).
pub(super) fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    out.push_str("E'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A quoted identifier (one name, quotes doubled).
pub(super) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A quoted identifier, with dots kept as separators for custom `prefix.name` settings.
fn ident(s: &str) -> String {
    s.split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn startup_keys_that_are_not_settings_are_skipped() {
        let s = SessionParams::from_startup(
            &[
                p("user", "u"),
                p("database", "d"),
                p("application_name", "psql"),
                p("DateStyle", "ISO"),
                p("_pq_.x", "1"),
            ],
            vec![p("search_path", "a,b")],
        );
        assert_eq!(
            s.desired(),
            &[
                p("search_path", "a,b"),
                p("application_name", "psql"),
                p("datestyle", "ISO"),
            ]
        );
        let both = SessionParams::from_startup(
            &[p("application_name", "param")],
            vec![p("application_name", "option")],
        );
        assert_eq!(both.get("application_name"), Some("param"));
    }

    #[test]
    fn diff_sets_what_differs_and_resets_what_is_extra() {
        let s = SessionParams::from_startup(&[p("application_name", "it's")], vec![]);
        assert_eq!(s.diff_sql(&[p("application_name", "it's")]), None);
        assert_eq!(
            s.diff_sql(&[p("timezone", "UTC")]).unwrap(),
            "SELECT pg_catalog.set_config(E'application_name', E'it''s', false); RESET \"timezone\""
        );
        let empty = SessionParams::default();
        assert_eq!(empty.diff_sql(&[]), None);
        assert_eq!(
            empty.diff_sql(&[p("x.y", "1")]).unwrap(),
            "RESET \"x\".\"y\""
        );
    }

    #[test]
    fn full_sets_everything_in_order() {
        let s = SessionParams::from_startup(&[p("a", "1"), p("b", "2")], vec![]);
        assert_eq!(
            s.full_sql(&[p("a", "1")]).unwrap(),
            "SELECT pg_catalog.set_config(E'a', E'1', false), pg_catalog.set_config(E'b', E'2', false)"
        );
    }

    #[test]
    fn reported_server_facts_are_not_tracked() {
        let mut s = SessionParams::default();
        assert!(!s.observe_reported("is_superuser", "on"));
        assert!(s.observe_reported("TimeZone", "UTC"));
        assert_eq!(s.get("timezone"), Some("UTC"));
    }
}
