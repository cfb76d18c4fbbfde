//! The configuration model: one serde type per TOML section, every field documented with what
//! it does and its default. `config/lagoon.toml` documents the same keys for users.
//!
//! Every section and field is optional (`#[serde(default)]`), so a file with only `[server]`
//! is a working admin-only config. Unknown keys are refused (`deny_unknown_fields`); the loader
//! (`super::document`) reports all of them at once with line numbers before serde sees the
//! file. Parse through [`super::parse`] / [`super::load`], never `toml::from_str` directly:
//! only they validate and fill the derived fields (`DatabaseConfig::primary_endpoint`, ...).

use std::net::{AddrParseError, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use super::endpoint::Endpoint;
pub use super::kinds::{
    AuthType, ClientCertMode, NoReplica, PoolMode, RoutingStrategy, ServerTlsMode, SessionFeatures,
    TlsMode,
};
use crate::auth::Secret;

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`: the client-facing listener and process-wide limits.
    pub server: ServerConfig,
    /// `[tls]`: TLS between clients and the proxy (server side: `databases.server_tls`).
    pub tls: TlsConfig,
    /// `[pool]`: server connection pools, one per (member, database, user).
    pub pool: PoolConfig,
    /// `[routing]`: read/write split and replica choice.
    pub routing: RoutingConfig,
    /// `[slow_query]`: slow-query log (validated now, used later).
    pub slow_query: SlowQueryConfig,
    /// `[[users]]`: who may log in, and how the proxy logs in to Postgres for them.
    pub users: Vec<UserConfig>,
    /// `[auth_query]`: users without a `[[users]]` entry, looked up in Postgres itself.
    pub auth_query: AuthQueryConfig,
    /// `[[databases]]`: the database names clients connect to and where they live.
    pub databases: Vec<DatabaseConfig>,
}

impl Config {
    /// The `[[users]]` entry named `name` (names are unique after validation).
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The `[[databases]]` entry clients reach as `name` (unique after validation).
    pub fn database(&self, name: &str) -> Option<&DatabaseConfig> {
        self.databases.iter().find(|d| d.name == name)
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address clients connect to, `ip:port`. Default `"127.0.0.1:6432"`.
    pub listen: String,
    /// Database name that reaches the admin console instead of a pool. Default `"lagoon"`.
    pub admin_database: String,
    /// Users (from `[[users]]`) allowed into the admin console. Default `[]`.
    pub admin_users: Vec<String>,
    /// `ip:port` serving `/metrics`, `/healthz`, `/readyz`; `None` disables it. Default none.
    pub metrics_listen: Option<String>,
    /// Client connections accepted at once; more are refused with `53300`. Default 10000.
    pub max_client_conn: usize,
    /// How clients prove who they are, unless a user overrides it. Default `scram-sha-256`.
    pub auth_type: AuthType,
    /// Largest single client message accepted (COPY rows, bytea parameters); a bigger one is a
    /// protocol violation and ends the connection. Bytes; default 1073741824 (1 GiB).
    pub max_message_bytes: usize,
    /// On SIGTERM, how long open transactions may finish before connections are closed.
    /// Milliseconds; default 30000.
    pub shutdown_timeout_ms: u64,
    /// Startup and authentication must complete within this, or the client is dropped (slow
    /// or idle unauthenticated sockets must not hold slots). Milliseconds; default 10000.
    pub client_login_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:6432".to_owned(),
            admin_database: "lagoon".to_owned(),
            admin_users: Vec::new(),
            metrics_listen: None,
            max_client_conn: 10_000,
            auth_type: AuthType::ScramSha256,
            max_message_bytes: 1 << 30,
            shutdown_timeout_ms: 30_000,
            client_login_timeout_ms: 10_000,
        }
    }
}

impl ServerConfig {
    /// `listen` as a socket address (validation guarantees it parses).
    pub fn listen_addr(&self) -> Result<SocketAddr, AddrParseError> {
        self.listen.parse()
    }

    /// `metrics_listen` as a socket address; `Ok(None)` when metrics are off.
    pub fn metrics_listen_addr(&self) -> Result<Option<SocketAddr>, AddrParseError> {
        self.metrics_listen.as_deref().map(str::parse).transpose()
    }

    /// `shutdown_timeout_ms` as a [`Duration`].
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// `client_login_timeout_ms` as a [`Duration`].
    pub fn client_login_timeout(&self) -> Duration {
        Duration::from_millis(self.client_login_timeout_ms)
    }
}

/// `[tls]`: TLS between clients and the proxy. Every key here is applied by a reload to
/// connections accepted afterwards (and the files are re-read on every reload, so a rotated
/// certificate is picked up); established connections keep their session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// `disable` (SSLRequest answered `N`), `allow` (TLS when the client asks) or `require`
    /// (plaintext logins refused with `28000`). Default `disable`.
    pub mode: TlsMode,
    /// PEM certificate chain presented to clients, leaf first. Required unless `disable`.
    pub cert: Option<PathBuf>,
    /// PEM private key for `cert` (PKCS#8, PKCS#1 or SEC1). Required unless `disable`.
    pub key: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to. Required by
    /// `client_cert = "optional" | "require"`. Default none.
    pub ca: Option<PathBuf>,
    /// Ask clients for a certificate signed by `ca`: `none`, `optional` (checked when
    /// presented) or `require`. Default `none`.
    pub client_cert: ClientCertMode,
    /// `cert`, `key` and `ca`, loaded; filled by validation when `mode` is not `disable`.
    #[serde(skip)]
    pub acceptor: Option<std::sync::Arc<crate::net::tls::Acceptor>>,
}

/// `[pool]`: server connection pools, one per (member, database, user).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// When a client gives its server connection back. Default `transaction`.
    pub mode: PoolMode,
    /// Most server connections per (member, database, user). Default 20; at least 1.
    pub size: u32,
    /// Idle server connections kept open ahead of demand. Default 0; at most `size`.
    pub min_idle: u32,
    /// How long a request waits for a free server connection before the client gets
    /// `53300`. Milliseconds; default 5000; at least 1.
    pub checkout_timeout_ms: u64,
    /// An idle server connection older than this is closed. Milliseconds; default 600000.
    pub server_idle_timeout_ms: u64,
    /// A server connection is closed at its next check-in after this long, so server-side
    /// memory and plans do not grow forever. Milliseconds; default 3600000.
    pub server_lifetime_ms: u64,
    /// A client idle inside a transaction longer than this is disconnected, freeing its
    /// server. Milliseconds; default 0 = off.
    pub idle_transaction_timeout_ms: u64,
    /// TCP connect + Postgres startup + login to a server must finish within this.
    /// Milliseconds; default 3000.
    pub connect_timeout_ms: u64,
    /// Prepared statements kept per server connection (LRU beyond). Default 500.
    pub max_prepared_statements: usize,
    /// Transaction mode and session-only features (LISTEN, temporary tables, cursors WITH
    /// HOLD, session advisory locks): `pin` keeps the client on its server while such state
    /// exists, `error` refuses them with `0A000`. Default `pin`.
    pub session_features: SessionFeatures,
    /// When a client vanishes mid-transaction the proxy sends ROLLBACK and waits this long
    /// for it; past it the server connection is closed instead of reused dirty.
    /// Milliseconds; default 5000.
    pub server_rollback_timeout_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            mode: PoolMode::Transaction,
            size: 20,
            min_idle: 0,
            checkout_timeout_ms: 5_000,
            server_idle_timeout_ms: 600_000,
            server_lifetime_ms: 3_600_000,
            idle_transaction_timeout_ms: 0,
            connect_timeout_ms: 3_000,
            max_prepared_statements: 500,
            session_features: SessionFeatures::Pin,
            server_rollback_timeout_ms: 5_000,
        }
    }
}

impl PoolConfig {
    /// `checkout_timeout_ms` as a [`Duration`].
    pub fn checkout_timeout(&self) -> Duration {
        Duration::from_millis(self.checkout_timeout_ms)
    }

    /// `server_idle_timeout_ms` as a [`Duration`].
    pub fn server_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.server_idle_timeout_ms)
    }

    /// `server_lifetime_ms` as a [`Duration`].
    pub fn server_lifetime(&self) -> Duration {
        Duration::from_millis(self.server_lifetime_ms)
    }

    /// `idle_transaction_timeout_ms` as a [`Duration`]; `None` when it is 0 (off), so callers
    /// cannot mistake "off" for "immediately".
    pub fn idle_transaction_timeout(&self) -> Option<Duration> {
        (self.idle_transaction_timeout_ms > 0)
            .then(|| Duration::from_millis(self.idle_transaction_timeout_ms))
    }

    /// `connect_timeout_ms` as a [`Duration`].
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// `server_rollback_timeout_ms` as a [`Duration`].
    pub fn server_rollback_timeout(&self) -> Duration {
        Duration::from_millis(self.server_rollback_timeout_ms)
    }
}

/// `[routing]`: read/write split and replica choice (`router`, `health`). Applies to databases
/// with `replicas`; a database without them sends everything to its primary and is not probed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Send provably read-only queries to replicas. Default true.
    pub read_write_split: bool,
    /// How a replica is chosen among the eligible ones. Default `latency`.
    pub strategy: RoutingStrategy,
    /// A replica further behind the primary than this is not used. Bytes of WAL; default
    /// 16777216 (16 MiB).
    pub max_lag_bytes: u64,
    /// A replica further behind than this is not used. Milliseconds; default 1000.
    pub max_lag_ms: u64,
    /// How often each member is probed (up/down, LSN, RTT). Milliseconds; default 250.
    pub probe_interval_ms: u64,
    /// What a read does when no replica is eligible. Default `primary`.
    pub no_replica: NoReplica,
    /// After a client's write commits, its reads only go to replicas that replayed it.
    /// Default true.
    pub read_your_writes: bool,
    /// Functions that write, besides the built-in list (nextval, setval, advisory locks,
    /// set_config, lo_*, ...): a statement calling one goes to the primary. Lowercase names,
    /// optionally schema-qualified. Default `[]`.
    pub write_functions: Vec<String>,
    /// The primary also serves reads, as one more candidate beside the replicas. Default
    /// false (reads reach it only when no replica is eligible and `no_replica = "primary"`).
    pub primary_reads: bool,
    /// Consecutive failed probes that mark a member down. Default 2; at least 1.
    pub down_after_failures: u32,
    /// Consecutive good probes that bring a down member back. Default 3; at least 1.
    pub up_after_successes: u32,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            read_write_split: true,
            strategy: RoutingStrategy::Latency,
            max_lag_bytes: 16 * 1024 * 1024,
            max_lag_ms: 1_000,
            probe_interval_ms: 250,
            no_replica: NoReplica::Primary,
            read_your_writes: true,
            write_functions: Vec::new(),
            primary_reads: false,
            down_after_failures: 2,
            up_after_successes: 3,
        }
    }
}

impl RoutingConfig {
    /// `max_lag_ms` as a [`Duration`].
    pub fn max_lag(&self) -> Duration {
        Duration::from_millis(self.max_lag_ms)
    }

    /// `probe_interval_ms` as a [`Duration`].
    pub fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.probe_interval_ms)
    }
}

/// `[slow_query]`: per-query timing, the fingerprint table (`SHOW QUERIES`) and the
/// slow-query log. Every key here is applied by a reload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlowQueryConfig {
    /// Time every query and keep its statistics (fingerprint table, slow log, query metrics,
    /// `SHOW STATS` query figures). Off saves well under a microsecond a query. Default true.
    pub enabled: bool,
    /// A query slower than this (end to end, as the client saw it) is logged.
    /// Milliseconds; default 500.
    pub threshold_ms: u64,
    /// `"stderr"` or a file path; one JSON object per line. Default `"stderr"`.
    pub log: String,
    /// Also write each slow query's text as sent (`"text"`), literals included. Off by
    /// default: literals can be personal data or secrets; the normalized text is always
    /// written. Default false.
    pub log_parameters: bool,
    /// Most slow-query lines written a second (a burst of as many); the rest are counted in
    /// a summary line, so a storm cannot fill the disk. Default 100; at least 1.
    pub max_lines_per_second: u32,
    /// Query fingerprints kept for `SHOW QUERIES` (all queries, not only slow ones); beyond
    /// it the least-used is forgotten. About 13 KB each. Default 1000; at least 1.
    pub top_queries: usize,
}

impl Default for SlowQueryConfig {
    fn default() -> Self {
        SlowQueryConfig {
            enabled: true,
            threshold_ms: 500,
            log: "stderr".to_owned(),
            log_parameters: false,
            max_lines_per_second: 100,
            top_queries: 1000,
        }
    }
}

impl SlowQueryConfig {
    /// `threshold_ms` as a [`Duration`].
    pub fn threshold(&self) -> Duration {
        Duration::from_millis(self.threshold_ms)
    }
}

/// The default `auth_query.query`: the SECURITY DEFINER function the README shows how to
/// create, so the auth role needs no read access to `pg_shadow` itself.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT uname, phash FROM lagoon.user_lookup($1)";

/// `[auth_query]`: instead of listing every user with a password, the proxy fetches a user's
/// SCRAM verifier (or md5 hash) from Postgres when it logs in, checks the client's proof
/// against it, and logs in to the servers with what that proof revealed (the SCRAM ClientKey;
/// the md5 hash), so no plaintext password is ever held. PgBouncer calls these `auth_user`,
/// `auth_query` and `auth_dbname`. A `[[users]]` entry always wins over a lookup. Every key
/// is applied by a reload at the next login. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthQueryConfig {
    /// The role the proxy logs in as to run `query`. Default `""` = auth_query off.
    pub user: String,
    /// That role's password: plaintext or an md5 hash (`md5` + 32 hex digits). The only
    /// password the file needs. Default none (the role logs in without one, e.g. trust).
    pub password: Option<String>,
    /// Run with the client's user name as `$1`; returns (name, secret) where secret is a
    /// `SCRAM-SHA-256$...` verifier, an md5 hash, or NULL (no login). The first row counts.
    /// Default [`DEFAULT_AUTH_QUERY`].
    pub query: String,
    /// The server database to run it in. Default `""` = the client's database's own dbname
    /// (from its `primary`), on its primary.
    pub database: String,
    /// How long a fetched verifier is reused before the next login fetches it again; a
    /// failed proof drops it at once, so a changed password is seen at the next attempt.
    /// Milliseconds; default 60000; 0 fetches at every login.
    pub cache_ttl_ms: u64,
}

impl Default for AuthQueryConfig {
    fn default() -> Self {
        AuthQueryConfig {
            user: String::new(),
            password: None,
            query: DEFAULT_AUTH_QUERY.to_owned(),
            database: String::new(),
            cache_ttl_ms: 60_000,
        }
    }
}

impl AuthQueryConfig {
    /// Whether users without a `[[users]]` entry are looked up at all.
    pub fn enabled(&self) -> bool {
        !self.user.is_empty()
    }

    /// `cache_ttl_ms` as a [`Duration`].
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_millis(self.cache_ttl_ms)
    }
}

impl std::fmt::Debug for AuthQueryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthQueryConfig")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .field("query", &self.query)
            .field("database", &self.database)
            .field("cache_ttl_ms", &self.cache_ttl_ms)
            .finish()
    }
}

/// One `[[users]]` entry. `Debug` never prints passwords.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The user name clients log in with (and, unless the database URL names another, the
    /// name the proxy logs in to Postgres with). Required.
    pub name: String,
    /// What clients must prove: a plaintext password, a `SCRAM-SHA-256$...` verifier or an
    /// `md5...` hash. May be omitted only when the effective auth type is `trust`.
    #[serde(default)]
    pub password: Option<String>,
    /// Overrides `server.auth_type` for this user. Default: `server.auth_type`.
    #[serde(default)]
    pub auth_type: Option<AuthType>,
    /// Plaintext password the proxy uses to log in to Postgres as this user. Default: `password`
    /// when that is plaintext; otherwise the proxy logs in without a password.
    #[serde(default)]
    pub server_password: Option<String>,
    /// `password` classified by [`Secret::parse`]; filled by validation.
    #[serde(skip)]
    pub secret: Option<Secret>,
}

impl UserConfig {
    /// The auth type that applies to this user: its own, else the server-wide one.
    pub fn effective_auth_type(&self, server_default: AuthType) -> AuthType {
        self.auth_type.unwrap_or(server_default)
    }

    /// Password the proxy sends when logging in to Postgres as this user: `server_password`,
    /// else `password` if it is plaintext (a verifier or hash cannot answer a server's
    /// challenge), else none.
    pub fn server_password(&self) -> Option<&str> {
        if let Some(pw) = self.server_password.as_deref() {
            return Some(pw);
        }
        let pw = self.password.as_deref()?;
        matches!(Secret::parse(pw), Ok(Secret::Plain(_))).then_some(pw)
    }
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .field("auth_type", &self.auth_type)
            .field(
                "server_password",
                &self.server_password.as_ref().map(|_| ".."),
            )
            .field("secret", &self.secret)
            .finish()
    }
}

/// One `[[databases]]` entry: a name clients connect to, served by a primary and replicas.
/// `Debug` never prints the URLs (they may carry passwords).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The database name clients put in their connection string. Required.
    pub name: String,
    /// The primary, as a `postgres://host:port/dbname` URL or `host=... port=...` string.
    /// A `user:password@` in it forces that server login for every client user. Required.
    pub primary: String,
    /// Streaming replicas, same format. Default `[]`.
    #[serde(default)]
    pub replicas: Vec<String>,
    /// Overrides `pool.size` for this database. Default: `pool.size`.
    #[serde(default)]
    pub pool_size: Option<u32>,
    /// Overrides `pool.mode` for this database. Default: `pool.mode`.
    #[serde(default)]
    pub pool_mode: Option<PoolMode>,
    /// Overrides `slow_query.threshold_ms` for this database (a reporting database may
    /// allow slower queries). Milliseconds; default: `slow_query.threshold_ms`.
    #[serde(default)]
    pub slow_query_threshold_ms: Option<u64>,
    /// TLS from the proxy to this database's servers: `disable`, `prefer`, `require`,
    /// `verify-ca` or `verify-full` (libpq's `sslmode` words). Default: each URL's own
    /// `sslmode` (`disable`, `prefer` or `require`), else `prefer`.
    #[serde(default)]
    pub server_tls: Option<ServerTlsMode>,
    /// PEM CA certificates the servers' certificates must chain to; required by
    /// `server_tls = "verify-ca" | "verify-full"`. Default none.
    #[serde(default)]
    pub server_tls_ca: Option<PathBuf>,
    /// `primary`, parsed; filled by validation.
    #[serde(skip)]
    pub primary_endpoint: Endpoint,
    /// `replicas`, parsed, same order; filled by validation.
    #[serde(skip)]
    pub replica_endpoints: Vec<Endpoint>,
}

impl DatabaseConfig {
    /// Pool size for this database: its own override, else `pool.size`.
    pub fn effective_pool_size(&self, pool: &PoolConfig) -> u32 {
        self.pool_size.unwrap_or(pool.size)
    }

    /// Pool mode for this database: its own override, else `pool.mode`.
    pub fn effective_pool_mode(&self, pool: &PoolConfig) -> PoolMode {
        self.pool_mode.unwrap_or(pool.mode)
    }

    /// Slow-query threshold for this database: its own override, else
    /// `slow_query.threshold_ms`.
    pub fn effective_slow_query_threshold(&self, slow: &SlowQueryConfig) -> Duration {
        Duration::from_millis(self.slow_query_threshold_ms.unwrap_or(slow.threshold_ms))
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("name", &self.name)
            .field("pool_size", &self.pool_size)
            .field("pool_mode", &self.pool_mode)
            .field("slow_query_threshold_ms", &self.slow_query_threshold_ms)
            .field("primary_endpoint", &self.primary_endpoint)
            .field("replica_endpoints", &self.replica_endpoints)
            .finish_non_exhaustive()
    }
}
