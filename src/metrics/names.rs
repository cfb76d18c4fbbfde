//! Every metric Lagoon exports: its name, kind and help text, and the small enums its labels
//! take. Names are a **contract** (DESIGN.md section 6): dashboards and alerts use them, so
//! extend, never rename.
//!
//! Label rule: label values come only from config names (`database`, `member`) and the enums
//! below, never from SQL text, user names or client addresses, so every series set stays
//! bounded by the config. `user` is deliberately not a label: pools are per (database, user),
//! and the gauges aggregate over users.

/// How a metric is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// A real Prometheus histogram with the explicit buckets of `recorder::SECONDS_BUCKETS`.
    Histogram,
}

/// One exported metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    /// Its labels, in the order they are documented (for the README and tests).
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

// ---- clients ----

pub const CLIENT_CONNECTIONS: &str = "lagoon_client_connections";
pub const PINNED_CLIENTS: &str = "lagoon_pinned_clients";
pub const SESSION_PINS_TOTAL: &str = "lagoon_session_pins_total";

// ---- pools and servers ----

pub const SERVER_CONNECTIONS: &str = "lagoon_server_connections";
pub const POOL_CLIENTS_WAITING: &str = "lagoon_pool_clients_waiting";
pub const POOL_MAX_WAIT_SECONDS: &str = "lagoon_pool_max_wait_seconds";
pub const POOL_WAIT_SECONDS: &str = "lagoon_pool_wait_seconds";
pub const CHECKOUT_TIMEOUTS_TOTAL: &str = "lagoon_checkout_timeouts_total";

// ---- queries ----

pub const QUERIES_TOTAL: &str = "lagoon_queries_total";
pub const QUERY_DURATION_SECONDS: &str = "lagoon_query_duration_seconds";
pub const SLOW_QUERIES_TOTAL: &str = "lagoon_slow_queries_total";
pub const ERRORS_TOTAL: &str = "lagoon_errors_total";

// ---- replicas (set by the health monitor each probe round) ----

pub const REPLICA_LAG_BYTES: &str = "lagoon_replica_lag_bytes";
pub const REPLICA_LAG_SECONDS: &str = "lagoon_replica_lag_seconds";
pub const REPLICA_LATENCY_SECONDS: &str = "lagoon_replica_latency_seconds";
pub const REPLICA_UP: &str = "lagoon_replica_up";

/// Every metric, in the order the README lists them. The recorder describes each one (the
/// `# HELP` line), and histograms get their buckets from here.
pub const ALL: &[Metric] = &[
    Metric {
        name: CLIENT_CONNECTIONS,
        kind: Kind::Gauge,
        labels: &["state"],
        help: "Client connections by state: active (connected, not waiting for a server) or \
               waiting (waiting for a server connection). Sampled at scrape time.",
    },
    Metric {
        name: PINNED_CLIENTS,
        kind: Kind::Gauge,
        labels: &["database"],
        help: "Clients pinned to their server connection by session-only state (LISTEN, \
               temporary tables, WITH HOLD cursors, session advisory locks).",
    },
    Metric {
        name: SESSION_PINS_TOTAL,
        kind: Kind::Counter,
        labels: &["database", "feature"],
        help: "Times a client was pinned to its server connection, by the feature that pinned it.",
    },
    Metric {
        name: SERVER_CONNECTIONS,
        kind: Kind::Gauge,
        labels: &["database", "member", "state"],
        help: "Server connections by state: active (checked out by a client), idle (ready in \
               the pool) or connecting (login in progress); summed over users. Sampled at \
               scrape time.",
    },
    Metric {
        name: POOL_CLIENTS_WAITING,
        kind: Kind::Gauge,
        labels: &["database"],
        help: "Checkouts waiting for a server connection (queued, or waiting for one being \
               opened for them), over every member and user of the database. Sampled at \
               scrape time.",
    },
    Metric {
        name: POOL_MAX_WAIT_SECONDS,
        kind: Kind::Gauge,
        labels: &["database"],
        help: "Age of the oldest checkout queued for a server connection in any pool of the \
               database; 0 when none waits. Sampled at scrape time.",
    },
    Metric {
        name: POOL_WAIT_SECONDS,
        kind: Kind::Histogram,
        labels: &["database"],
        help: "Time from a complete client request to its server connection being checked out \
               (successful checkouts; timeouts are counted in lagoon_checkout_timeouts_total).",
    },
    Metric {
        name: CHECKOUT_TIMEOUTS_TOTAL,
        kind: Kind::Counter,
        labels: &["database"],
        help: "Checkouts that gave up at pool.checkout_timeout_ms (the client got 53300).",
    },
    Metric {
        name: QUERIES_TOTAL,
        kind: Kind::Counter,
        labels: &["database", "route"],
        help: "Queries (simple queries and extended-protocol batches up to Sync) by route.",
    },
    Metric {
        name: QUERY_DURATION_SECONDS,
        kind: Kind::Histogram,
        labels: &["database", "route"],
        help: "Total time of a query or batch, request complete to ReadyForQuery written back.",
    },
    Metric {
        name: SLOW_QUERIES_TOTAL,
        kind: Kind::Counter,
        labels: &["database"],
        help: "Queries slower than slow_query.threshold_ms.",
    },
    Metric {
        name: ERRORS_TOTAL,
        kind: Kind::Counter,
        labels: &["kind"],
        help: "Errors the proxy originated, by class (protocol, auth, config, pool, server, \
               client, shutdown, internal).",
    },
    Metric {
        name: REPLICA_LAG_BYTES,
        kind: Kind::Gauge,
        labels: &["database", "member"],
        help: "WAL bytes a replica's replay is behind the primary; +Inf while unknown.",
    },
    Metric {
        name: REPLICA_LAG_SECONDS,
        kind: Kind::Gauge,
        labels: &["database", "member"],
        help: "How long ago the primary was at the replica's replay position; +Inf while unknown.",
    },
    Metric {
        name: REPLICA_LATENCY_SECONDS,
        kind: Kind::Gauge,
        labels: &["database", "member"],
        help: "Peak-EWMA latency estimate of a member (probe round trips and query latencies).",
    },
    Metric {
        name: REPLICA_UP,
        kind: Kind::Gauge,
        labels: &["database", "member"],
        help: "1 when the router may use the member (up and freshly probed), else 0.",
    },
];

/// `state` of [`CLIENT_CONNECTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Connected and not waiting for a server (idle between transactions, or running one).
    Active,
    /// Waiting for a server connection.
    Waiting,
}

impl ClientState {
    pub const ALL: [ClientState; 2] = [ClientState::Active, ClientState::Waiting];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Active => "active",
            ClientState::Waiting => "waiting",
        }
    }
}

/// `state` of [`SERVER_CONNECTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Checked out by a client (in use; PgBouncer's `sv_active`).
    Active,
    /// Ready in the pool (PgBouncer's `sv_idle`).
    Idle,
    /// Being opened: TCP connect and login in progress (PgBouncer's `sv_login`).
    Connecting,
}

impl ServerState {
    pub const ALL: [ServerState; 3] = [
        ServerState::Active,
        ServerState::Idle,
        ServerState::Connecting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Active => "active",
            ServerState::Idle => "idle",
            ServerState::Connecting => "connecting",
        }
    }
}

/// `route` of [`QUERIES_TOTAL`] and [`QUERY_DURATION_SECONDS`]: the same values as a slow-log
/// line's `route`, so one type serves both.
pub use crate::stats::Route;

/// The entry of `name` in [`ALL`].
pub fn find(name: &str) -> Option<&'static Metric> {
    ALL.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_suffixed_by_kind() {
        let mut seen = std::collections::HashSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.starts_with("lagoon_"), "{}", m.name);
            assert!(!m.help.is_empty(), "{} has no help", m.name);
            assert!(
                m.labels.iter().all(|l| *l != "user"),
                "{}: user is not a label (unbounded)",
                m.name
            );
            match m.kind {
                Kind::Counter => assert!(m.name.ends_with("_total"), "{}", m.name),
                Kind::Histogram => assert!(m.name.ends_with("_seconds"), "{}", m.name),
                Kind::Gauge => assert!(!m.name.ends_with("_total"), "{}", m.name),
            }
        }
    }

    #[test]
    fn design_names_are_all_present() {
        for name in [
            "lagoon_client_connections",
            "lagoon_server_connections",
            "lagoon_queries_total",
            "lagoon_query_duration_seconds",
            "lagoon_pool_wait_seconds",
            "lagoon_slow_queries_total",
            "lagoon_replica_lag_bytes",
            "lagoon_replica_lag_seconds",
            "lagoon_replica_latency_seconds",
            "lagoon_replica_up",
            "lagoon_errors_total",
            "lagoon_checkout_timeouts_total",
        ] {
            assert!(find(name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn the_readme_lists_every_metric() {
        let readme = include_str!("../../README.md");
        for m in ALL {
            assert!(
                readme.contains(&format!("`{}`", m.name)),
                "README's Metrics table lacks {}",
                m.name
            );
        }
    }
}
