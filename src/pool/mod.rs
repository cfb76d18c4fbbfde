//! Server connection pools: one per (database, user) on the primary. Owns connecting and
//! logging in (`connect`), the fair checkout queue (`pool`), the RAII guard that never lets a
//! dirty connection back (`guard`), and the pool registry (`cluster`). Reading and writing
//! client traffic is `client`'s job, not this module's.

pub mod cluster;
pub mod connect;
pub mod guard;
pub mod pause;
#[allow(clippy::module_inception)]
pub mod pool;
pub mod server_conn;

pub use guard::PooledConn;
pub use pool::{Pool, PoolError, PoolSettings, PoolStats};
pub use server_conn::ServerConn;
