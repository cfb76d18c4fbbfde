//! Text we hand to Postgres: `postgresql.conf` settings, `pg_hba.conf`, connection strings and
//! SQL quoting. Pure functions, so the exact content is unit-tested without a server.

/// Our settings live in their own file, included at the end of initdb's `postgresql.conf` so
/// they win over its defaults. `pg_basebackup` copies it to replicas, which then rewrite it with
/// their own port and name. `ALTER SYSTEM` (postgresql.auto.conf) still overrides it, which tests
/// rely on (e.g. `recovery_min_apply_delay`).
pub(crate) const LAGOON_CONF: &str = "lagoon.conf";

/// The line appended to `postgresql.conf`.
pub(crate) const INCLUDE_LINE: &str = "\n# Added by lagoon devcluster.\ninclude = 'lagoon.conf'\n";

/// Contents of `lagoon.conf` for one member.
///
/// TCP on 127.0.0.1 only with no Unix socket (no `/var/run/postgresql` permissions to fight),
/// durability off (a throwaway cluster: speed matters, crash safety does not), room for many
/// pooled connections, and streaming replication on. `cluster_name` makes each member show up
/// under its own name in `ps` and, for replicas, as `application_name` in `pg_stat_replication`.
/// `wal_keep_size` lets a replica that a test stopped for a while catch up again without slots.
pub(crate) fn postgresql_conf(name: &str, port: u16, extra: &[String]) -> String {
    let mut out = String::from("# Written by lagoon devcluster; rewritten on every start.\n");
    let settings = [
        ("listen_addresses", "'127.0.0.1'".to_owned()),
        ("port", port.to_string()),
        ("unix_socket_directories", "''".to_owned()),
        ("cluster_name", quote_literal(name)),
        ("wal_level", "replica".to_owned()),
        ("max_wal_senders", "10".to_owned()),
        ("wal_keep_size", "'128MB'".to_owned()),
        ("hot_standby", "on".to_owned()),
        ("max_connections", "500".to_owned()),
        ("shared_buffers", "'32MB'".to_owned()),
        ("fsync", "off".to_owned()),
        ("full_page_writes", "off".to_owned()),
        ("synchronous_commit", "off".to_owned()),
        ("log_min_messages", "warning".to_owned()),
        ("logging_collector", "off".to_owned()),
    ];
    for (key, value) in settings {
        out.push_str(&format!("{key} = {value}\n"));
    }
    if !extra.is_empty() {
        out.push_str("# DevClusterOptions::extra_conf\n");
        for line in extra {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `pg_hba.conf`, first match wins. Two fixed role names get `trust` and `password` so the
/// proxy's tests can exercise those server auth methods; replication is trusted for
/// `pg_basebackup` and the replicas' walreceivers. The catch-all is `md5`, which Postgres
/// upgrades to SCRAM for roles whose stored password is a SCRAM verifier, so one cluster serves
/// both md5 and SCRAM logins depending on how the role's password was set.
pub(crate) fn pg_hba_conf() -> String {
    [
        "# Written by lagoon devcluster. TCP on 127.0.0.1 only; first match wins.",
        "# TYPE  DATABASE     USER          ADDRESS        METHOD",
        "host    all          lagoon_trust  127.0.0.1/32   trust",
        "host    all          lagoon_plain  127.0.0.1/32   password",
        "host    replication  all           127.0.0.1/32   trust",
        "host    all          all           127.0.0.1/32   md5",
        "",
    ]
    .join("\n")
}

/// A libpq / tokio-postgres `key=value` connection string. `sslmode=disable` because the dev
/// cluster has no TLS and a stray `PGSSLMODE=require` in the environment must not break it.
pub(crate) fn conninfo(
    host: &str,
    port: u16,
    user: &str,
    password: Option<&str>,
    dbname: &str,
) -> String {
    let mut out = format!(
        "host={} port={port} user={}",
        conninfo_value(host),
        conninfo_value(user)
    );
    if let Some(password) = password {
        out.push_str(&format!(" password={}", conninfo_value(password)));
    }
    out.push_str(&format!(
        " dbname={} sslmode=disable",
        conninfo_value(dbname)
    ));
    out
}

/// Quotes a conninfo value when needed: single quotes, with `\` and `'` backslash-escaped.
pub(crate) fn conninfo_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && c != '\'' && c != '\\');
    if plain {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// SQL identifier quoting (`"` doubled).
pub(crate) fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// SQL string literal quoting (`'` doubled; `standard_conforming_strings` is on by default, so
/// backslashes are literal). Also valid for `postgresql.conf` string values.
pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Percent-encodes a URL path segment (everything but RFC 3986 unreserved characters).
pub(crate) fn url_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hba_lines_are_in_the_documented_order() {
        let hba = pg_hba_conf();
        let rules: Vec<Vec<&str>> = hba
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rules,
            vec![
                vec!["host", "all", "lagoon_trust", "127.0.0.1/32", "trust"],
                vec!["host", "all", "lagoon_plain", "127.0.0.1/32", "password"],
                vec!["host", "replication", "all", "127.0.0.1/32", "trust"],
                vec!["host", "all", "all", "127.0.0.1/32", "md5"],
            ]
        );
    }

    #[test]
    fn postgresql_conf_has_port_name_and_extra_lines_last() {
        let conf = postgresql_conf("replica1", 54321, &["work_mem = '8MB'".to_owned()]);
        for expected in [
            "listen_addresses = '127.0.0.1'",
            "port = 54321",
            "unix_socket_directories = ''",
            "cluster_name = 'replica1'",
            "wal_level = replica",
            "max_wal_senders = 10",
            "hot_standby = on",
            "max_connections = 500",
            "shared_buffers = '32MB'",
            "fsync = off",
            "full_page_writes = off",
            "synchronous_commit = off",
            "log_min_messages = warning",
            "logging_collector = off",
        ] {
            assert!(
                conf.lines().any(|l| l == expected),
                "missing {expected:?} in\n{conf}"
            );
        }
        assert_eq!(conf.lines().last(), Some("work_mem = '8MB'"));
    }

    #[test]
    fn conninfo_quotes_only_when_needed() {
        assert_eq!(
            conninfo("127.0.0.1", 5432, "postgres", Some("it's a \\secret"), "db"),
            "host=127.0.0.1 port=5432 user=postgres password='it\\'s a \\\\secret' dbname=db \
             sslmode=disable"
        );
        assert_eq!(
            conninfo("127.0.0.1", 1, "u", None, ""),
            "host=127.0.0.1 port=1 user=u dbname='' sslmode=disable"
        );
    }

    #[test]
    fn sql_quoting() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn url_segments_are_percent_encoded() {
        assert_eq!(url_path_segment("app_db-1.x~"), "app_db-1.x~");
        assert_eq!(url_path_segment("a b/é"), "a%20b%2F%C3%A9");
    }
}
