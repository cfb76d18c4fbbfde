//! Which function calls make a read-looking statement a write: Postgres's own writers (and
//! the session-dependent ones whose answer only the primary's session has), plus the names the
//! configuration adds.
//!
//! It owns the list and the name matching; `grammar` finds the calls.
//!
//! Built-in names match whatever schema qualifies the call (`nextval`, `pg_catalog.nextval`,
//! and also `myschema.nextval`): a same-named user function only costs a trip to the primary,
//! and extension functions (`dblink_exec`) live in whatever schema they were installed in.
//! Everything else reads as far as we can tell: a function that writes without being listed
//! is refused by a replica (25006, read-only transaction), and the caller retries on the
//! primary.

use std::collections::HashSet;

/// Exact built-in names (lowercase).
const EXACT: &[&str] = &[
    // Sequences; `currval`/`lastval` answer from this session's last `nextval`.
    "nextval",
    "setval",
    "currval",
    "lastval",
    "set_config",
    // Large objects (besides the `lo_` prefix below).
    "loread",
    "lowrite",
    // Assign (or report) this session's transaction id: no such thing on a replica.
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "pg_notify",
    // WAL positions and control: fail during recovery.
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_logical_emit_message",
    "pg_replication_slot_advance",
    // Act on other sessions or the server.
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "dblink_exec",
];

/// Built-in name families, as (prefix, suffix).
const FAMILIES: &[(&str, &str)] = &[
    // Session and transaction advisory locks, blocking or not, shared or not, and unlocks.
    ("pg_advisory_", ""),
    ("pg_try_advisory_", ""),
    ("lo_", ""),
    // pg_create_{physical,logical}_replication_slot, pg_drop_…, pg_copy_…
    ("pg_", "_replication_slot"),
    // Consume a slot's changes (the `peek` variants do not, but are rare enough to not list).
    ("pg_logical_slot_get_", ""),
];

/// The writing-function test, built once per classifier.
#[derive(Debug, Default)]
pub struct WriteFunctions {
    /// Configured names without a schema: match in any schema.
    anywhere: HashSet<String>,
    /// Configured `schema.name`s, as (schema, name).
    qualified: HashSet<(String, String)>,
}

impl WriteFunctions {
    /// From the configuration's list: `name` or `schema.name`, compared lowercase.
    pub fn new(configured: &[String]) -> Self {
        let mut this = Self::default();
        for entry in configured {
            let entry = entry.trim().to_lowercase();
            match entry.rsplit_once('.') {
                Some((schema, name)) => {
                    this.qualified.insert((schema.to_owned(), name.to_owned()));
                }
                None => {
                    this.anywhere.insert(entry);
                }
            }
        }
        this
    }

    /// Whether a call of `name`, qualified by `schema` if the text qualifies it, may write.
    /// Both as the parser gives them (unquoted names already lowercase).
    pub fn writes(&self, schema: Option<&str>, name: &str) -> bool {
        let name = name.to_lowercase();
        let schema = schema.map(str::to_lowercase);
        EXACT.contains(&name.as_str())
            || FAMILIES.iter().any(|(pre, suf)| {
                name.starts_with(pre) && name.ends_with(suf) && name.len() > pre.len() + suf.len()
            })
            || self.anywhere.contains(&name)
            || match schema {
                // A configured `s.f` also catches a bare `f(...)`: the search_path may find it.
                None => self.qualified.iter().any(|(_, n)| *n == name),
                Some(s) => self.qualified.contains(&(s, name)),
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_configured_names_and_families() {
        let w = WriteFunctions::new(&["audit_log".into(), "Billing.Charge".into()]);
        for (schema, name) in [
            (None, "nextval"),
            (Some("pg_catalog"), "NEXTVAL"),
            (None, "pg_advisory_xact_lock_shared"),
            (None, "pg_try_advisory_lock"),
            (None, "lo_import"),
            (None, "pg_create_logical_replication_slot"),
            (None, "pg_drop_replication_slot"),
            (None, "audit_log"),
            (Some("app"), "audit_log"),
            (Some("billing"), "charge"),
            (None, "charge"),
        ] {
            assert!(w.writes(schema, name), "{schema:?}.{name}");
        }
        for (schema, name) in [
            (None, "now"),
            (None, "count"),
            (None, "pg_sleep"),
            (None, "lower"),
            (None, "pg_"),
            (None, "lo_"),
            (Some("other"), "charge"),
            (None, "pg_last_wal_replay_lsn"),
        ] {
            assert!(!w.writes(schema, name), "{schema:?}.{name}");
        }
    }
}
