//! Integration tests: real Postgres (primary + 2 streaming replicas, started by the harness),
//! Lagoon in-process, real clients (tokio-postgres, psql, pgbench).

mod admin;
mod auth;
mod auth_query;
mod cancel;
mod certs;
mod cli;
mod delay;
mod drivers;
mod faultkit;
mod faults;
mod handshake;
mod harness;
mod health;
mod load;
mod login_wire;
mod metrics;
mod params;
mod pool;
mod prepared;
mod protocol;
mod query_stats;
mod reload;
mod rewrite_edges;
mod routing;
mod session_state;
mod shutdown;
mod smoke;
mod tls;
