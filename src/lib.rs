//! Lagoon: a PostgreSQL wire-protocol connection pooler and proxy.
//!
//! ```text
//! client socket
//!   -> net::listener        accept, max_client_conn, one task per client
//!   -> client::handshake    SSLRequest / GSSENCRequest / CancelRequest / StartupMessage
//!   -> auth                 SCRAM-SHA-256(-PLUS) / md5 / trust against configured users,
//!                           or against verifiers fetched by auth_query
//!   -> client::session      the pooling loop, one request at a time
//!        protocol::codec    frame client bytes; buffer a whole request (up to Sync or Query)
//!        client::route      router::classify (read or write, cached per statement shape),
//!                           router::select (a replica by lag and latency from the health
//!                           view), router::rw (read-your-writes) -> primary or replica pool
//!        pool               checkout(deadline) -> PooledConn (check-in or discard on drop)
//!        client::forward    write request (named statements rewritten by `prepared`), stream
//!                           replies back; protocol::tracker finds the transaction boundary,
//!                           protocol::replies adds/drops the replies the rewriting changed
//!        client::probe      after a transaction that may have changed session state
//!                           (`sql::effects` says), ask the server; settings follow the client,
//!                           session-only state pins it
//!   -> server socket        pool::connect: TCP + startup + auth
//! admin: the console (SHOW POOLS, PAUSE, RELOAD, ...), reached by connecting to
//! server.admin_database; served in-process, never through a pool.
//! side tasks: pool::maintain (idle reaping, min_idle, lifetime), health::Monitor (probes
//! every member: up/down, replay LSN, lag, RTT), metrics (/metrics, /healthz, /readyz on
//! server.metrics_listen), cancel (CancelRequest forwarding), shutdown (SIGTERM drain,
//! SIGINT fast, SIGHUP -> config::reload: validate, diff, apply live).
//! ```
//!
//! `protocol`, `sql` (what a query text may do to session state: SET, PREPARE, LISTEN,
//! temporary tables, ...) and `router` (what may run on a replica) are sans-IO and never touch
//! a socket; everything that does lives in `net`, `client`, `pool` and `auth`'s async drivers.
//! No process globals but the metrics recorder (the `metrics` facade has one per process):
//! `app::Shared` is built once and handed down, so one test process can
//! run several proxies.

pub mod admin;
pub mod app;
pub mod auth;
pub mod cancel;
pub mod client;
pub mod config;
pub mod demo;
pub mod devcluster;
pub mod error;
pub mod health;
pub mod metrics;
pub mod net;
pub mod pool;
pub mod prepared;
pub mod protocol;
pub mod router;
pub mod shutdown;
pub mod sql;
pub mod stats;
#[cfg(test)]
mod test_rng;
