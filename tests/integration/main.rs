//! Integration tests: real Postgres (primary + 2 streaming replicas, started by the harness),
//! Lagoon in-process, real clients (tokio-postgres, psql, pgbench).

mod auth;
mod cancel;
mod cli;
mod faultkit;
mod faults;
mod handshake;
mod harness;
mod load;
mod login_wire;
mod params;
mod pool;
mod protocol;
mod shutdown;
mod smoke;
