//! Integration tests: real Postgres (primary + 2 streaming replicas, started by the harness),
//! Lagoon in-process, real clients (tokio-postgres, psql, pgbench).

mod harness;
mod smoke;
