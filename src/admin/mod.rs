//! The admin console: what a client reaches by connecting to `server.admin_database` as one
//! of `server.admin_users` (after the usual password check). It speaks the simple query
//! protocol and answers PgBouncer-style commands: `SHOW POOLS | CLIENTS | SERVERS |
//! DATABASES | REPLICAS | STATS | QUERIES | SLOW | CONFIG | HELP | VERSION`, `RELOAD`,
//! `PAUSE [db]`, `RESUME [db]`, `KILL db`, `SHUTDOWN`. Column names follow PgBouncer's where
//! the concept is the same, so its exporters and scripts read them; Lagoon's own columns come
//! last in a row.
//!
//! Owns: the console session ([`console`]), the command language ([`parser`]), result
//! encoding ([`result_set`]) and one module per command. Does not own: the figures it shows
//! (pools, client registry, health, stats keep them), pausing (`pool::pause`), reloading
//! (`config::reload`) nor login (`client::login` authenticates and hands over). It never
//! opens a server connection.

mod clients;
mod commands;
mod config;
mod console;
mod control;
mod databases;
mod help;
pub mod parser;
mod pools;
mod queries;
mod reload;
mod replicas;
pub mod result_set;
mod servers;
mod slow;
mod stats;

pub use console::{login_burst, serve, server_version};
