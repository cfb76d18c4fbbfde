//! Integration tests: real Postgres (primary + 2 streaming replicas, started by the harness),
//! Lagoon in-process, real clients (tokio-postgres, psql, pgbench).

mod auth;
mod cli;
mod handshake;
mod harness;
mod login_wire;
mod params;
mod pool;
mod protocol;
mod smoke;
