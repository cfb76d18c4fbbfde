//! `SHOW HELP` (every command, one row each) and `SHOW VERSION`.

use super::result_set::{ResultSet, TEXT};

/// (command, what it does), in the order `SHOW HELP` lists them.
const COMMANDS: &[(&str, &str)] = &[
    ("SHOW HELP", "this list"),
    ("SHOW VERSION", "the Lagoon version"),
    (
        "SHOW POOLS",
        "per (database, user): clients, server connections, wait",
    ),
    (
        "SHOW CLIENTS",
        "every client connection, the admin console's included",
    ),
    (
        "SHOW SERVERS",
        "every server connection: active, idle, logging in",
    ),
    (
        "SHOW DATABASES",
        "the configured databases and their pool settings",
    ),
    (
        "SHOW REPLICAS",
        "every member of databases with replicas: state, lag, latency",
    ),
    (
        "SHOW STATS",
        "per database: totals since start, and averages",
    ),
    (
        "SHOW QUERIES",
        "query fingerprints by p99 latency: calls, p50/p95/p99, slow count",
    ),
    ("SHOW SLOW", "the most recent slow queries, newest first"),
    (
        "SHOW CONFIG",
        "every setting in force (passwords never shown)",
    ),
    ("RELOAD", "re-read the config file and apply what changed"),
    (
        "PAUSE [db]",
        "wait for active server connections to finish, then hold new requests",
    ),
    ("RESUME [db]", "let paused requests run"),
    (
        "KILL db",
        "disconnect the database's clients now and keep it paused",
    ),
    (
        "SHUTDOWN",
        "drain: finish transactions (server.shutdown_timeout_ms), then exit",
    ),
];

pub fn help() -> ResultSet {
    let mut rs = ResultSet::new(&[("command", TEXT), ("description", TEXT)]);
    for (c, d) in COMMANDS {
        rs.push(vec![(*c).into(), (*d).into()]);
    }
    rs
}

pub fn version() -> ResultSet {
    let mut rs = ResultSet::new(&[("version", TEXT)]);
    rs.push(vec![format!("Lagoon {}", env!("CARGO_PKG_VERSION")).into()]);
    rs
}

#[cfg(test)]
mod tests {
    use super::super::parser::{Show, parse};
    use super::*;

    /// Every command SHOW HELP names parses (with `db` as a database name).
    #[test]
    fn help_lists_every_show_and_each_parses() {
        for (c, _) in COMMANDS {
            let text = c.replace("[db]", "").replace("db", "x");
            assert!(parse(&text).is_ok(), "{c}");
        }
        for (_, word) in Show::ALL {
            let line = format!("SHOW {word}");
            assert!(COMMANDS.iter().any(|(c, _)| *c == line), "{line} missing");
        }
    }
}
