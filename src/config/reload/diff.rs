//! What changed between the running config and a reloaded one, as report lines and as the
//! few decisions `apply` needs that cannot be read off the new config alone. Pure: no I/O, no
//! `Shared`, so every key's line and classification is unit-tested.
//!
//! Each key is classified once, here, by when its new value takes effect:
//! - live: read where it is used (`max_client_conn`, `auth_type`, users, `[auth_query]`, pool
//!   sizes and timeouts, `[slow_query]`, ...) or applied to what runs (pools, health monitors);
//! - for clients that connect from now on: copied into a session at login (`pool.mode`,
//!   `idle_transaction_timeout_ms`, routing limits, ...);
//! - at restart: bound or built once at start (`listen`, `metrics_listen`,
//!   `routing.write_functions`).
//!
//! `[tls]` applies to connections accepted from now on; its files are re-read by every reload
//! (validation loads them), so a rotated certificate is a change even when no key is.
//!
//! Passwords and database URLs (which may hold passwords) are never printed: a line says a
//! secret changed, and an address is shown as `user@host:port/dbname`.

use std::fmt::Display;
use std::path::PathBuf;

use crate::config::{Config, DatabaseConfig, Endpoint, UserConfig};
use crate::health::probe_login;

/// Suffix of a line whose value sessions copy at login.
const NEW_CLIENTS: &str = " (clients that connect from now on)";
/// Suffix of a line that needs a restart.
const RESTART: &str = " (takes effect at restart)";

/// What a reload changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// One line per change applied, e.g. `pool.size: 20 -> 5`.
    pub applied: Vec<String>,
    /// One line per change that waits for a restart.
    pub needs_restart: Vec<String>,
    /// Databases that get a fresh health view and monitor: newly split, or their members,
    /// probe settings or probe login changed.
    pub monitor: Vec<String>,
    /// Databases whose health view and monitor go: removed, without replicas now, or split
    /// turned off.
    pub unmonitor: Vec<String>,
    /// Users whose cached SCRAM verifier goes: removed, or password changed.
    pub forget_verifiers: Vec<String>,
    /// The verifiers fetched by auth_query go: where or how they are fetched changed.
    pub clear_auth_query_cache: bool,
}

/// When a key's new value takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Live,
    NewClients,
    Restart,
}

/// A config value as a report line shows it.
trait Show {
    fn show(&self) -> String;
}

macro_rules! show_display {
    ($($t:ty),*) => {$(
        impl Show for $t {
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

show_display!(
    u32,
    u64,
    usize,
    bool,
    crate::config::AuthType,
    crate::config::TlsMode,
    crate::config::ClientCertMode,
    crate::config::ServerTlsMode,
    crate::config::PoolMode,
    crate::config::SessionFeatures,
    crate::config::RoutingStrategy,
    crate::config::NoReplica
);

impl Show for String {
    fn show(&self) -> String {
        format!("{self:?}")
    }
}

impl Show for Vec<String> {
    fn show(&self) -> String {
        format!("{self:?}")
    }
}

impl Show for PathBuf {
    fn show(&self) -> String {
        format!("{:?}", self.display().to_string())
    }
}

impl<T: Show> Show for Option<T> {
    fn show(&self) -> String {
        self.as_ref().map_or_else(|| "unset".to_owned(), Show::show)
    }
}

impl Plan {
    /// Records `key` if it changed.
    fn key<T: Show + PartialEq>(&mut self, key: &str, old: &T, new: &T, when: When) {
        if old != new {
            self.line(format!("{key}: {} -> {}", old.show(), new.show()), when);
        }
    }

    fn line(&mut self, line: String, when: When) {
        match when {
            When::Live => self.applied.push(line),
            When::NewClients => self.applied.push(line + NEW_CLIENTS),
            When::Restart => self.needs_restart.push(line + RESTART),
        }
    }
}

/// Compares the running config with a reloaded one.
pub fn diff(old: &Config, new: &Config) -> Plan {
    let mut plan = Plan::default();
    server(&mut plan, old, new);
    tls(&mut plan, old, new);
    pool(&mut plan, old, new);
    routing(&mut plan, old, new);
    slow_query(&mut plan, old, new);
    users(&mut plan, old, new);
    auth_query(&mut plan, old, new);
    databases(&mut plan, old, new);
    health(&mut plan, old, new);
    plan
}

/// Records every listed field of a section that changed, as `section.field`: the key in the
/// file is the field's name, so it is written once.
macro_rules! keys {
    ($plan:expr, $section:literal, $o:expr, $n:expr, $when:expr, [$($field:ident),+ $(,)?]) => {
        $($plan.key(
            concat!($section, ".", stringify!($field)),
            &$o.$field,
            &$n.$field,
            $when,
        );)+
    };
}

fn server(plan: &mut Plan, old: &Config, new: &Config) {
    use When::*;
    let (o, n) = (&old.server, &new.server);
    keys!(plan, "server", o, n, Restart, [listen, metrics_listen]);
    // Read at each connection, login or SIGTERM.
    keys!(
        plan,
        "server",
        o,
        n,
        Live,
        [
            admin_database,
            admin_users,
            max_client_conn,
            auth_type,
            shutdown_timeout_ms,
            client_login_timeout_ms,
        ]
    );
    keys!(plan, "server", o, n, NewClients, [max_message_bytes]);
}

/// Read at each accept: established connections keep their TLS session.
fn tls(plan: &mut Plan, old: &Config, new: &Config) {
    let (o, n) = (&old.tls, &new.tls);
    keys!(
        plan,
        "tls",
        o,
        n,
        When::Live,
        [mode, cert, key, ca, client_cert]
    );
    let same_keys = o.mode == n.mode
        && o.cert == n.cert
        && o.key == n.key
        && o.ca == n.ca
        && o.client_cert == n.client_cert;
    if same_keys && o.acceptor != n.acceptor {
        plan.applied
            .push("tls: certificate files changed, reloaded for new connections".to_owned());
    }
}

fn pool(plan: &mut Plan, old: &Config, new: &Config) {
    use When::*;
    let (o, n) = (&old.pool, &new.pool);
    // Applied to every pool in place.
    keys!(
        plan,
        "pool",
        o,
        n,
        Live,
        [
            size,
            min_idle,
            checkout_timeout_ms,
            server_idle_timeout_ms,
            server_lifetime_ms,
            connect_timeout_ms,
        ]
    );
    // Copied into each session at login.
    keys!(
        plan,
        "pool",
        o,
        n,
        NewClients,
        [
            mode,
            idle_transaction_timeout_ms,
            max_prepared_statements,
            session_features,
            server_rollback_timeout_ms,
        ]
    );
}

fn routing(plan: &mut Plan, old: &Config, new: &Config) {
    use When::*;
    let (o, n) = (&old.routing, &new.routing);
    // The health views follow it (see `health`).
    keys!(plan, "routing", o, n, Live, [read_write_split]);
    // Copied into each session's routing state at login (`router::select::Limits`, ...).
    keys!(
        plan,
        "routing",
        o,
        n,
        NewClients,
        [
            strategy,
            max_lag_bytes,
            max_lag_ms,
            no_replica,
            read_your_writes,
            primary_reads,
        ]
    );
    // The monitors are restarted with these (see `health`).
    keys!(
        plan,
        "routing",
        o,
        n,
        Live,
        [probe_interval_ms, down_after_failures, up_after_successes]
    );
    // Built into the classifier and its verdict cache at start.
    keys!(plan, "routing", o, n, Restart, [write_functions]);
}

/// All applied by `Stats::configure`.
fn slow_query(plan: &mut Plan, old: &Config, new: &Config) {
    keys!(
        plan,
        "slow_query",
        old.slow_query,
        new.slow_query,
        When::Live,
        [
            enabled,
            threshold_ms,
            log,
            log_parameters,
            max_lines_per_second,
            top_queries,
        ]
    );
}

/// Logins read the users from the config at each login, so every change here is live for the
/// next login; a connected client stays logged in.
fn users(plan: &mut Plan, old: &Config, new: &Config) {
    for u in &old.users {
        if new.user(&u.name).is_none() {
            plan.applied.push(format!("users: removed {:?}", u.name));
            plan.forget_verifiers.push(u.name.clone());
        }
    }
    for u in &new.users {
        match old.user(&u.name) {
            None => plan.applied.push(format!("users: added {:?}", u.name)),
            Some(o) => user(plan, o, u),
        }
    }
}

fn user(plan: &mut Plan, o: &UserConfig, n: &UserConfig) {
    let key = format!("users.{}", n.name);
    if o.password != n.password {
        plan.applied.push(format!("{key}.password: changed"));
        plan.forget_verifiers.push(n.name.clone());
    }
    plan.key(
        &format!("{key}.auth_type"),
        &o.auth_type,
        &n.auth_type,
        When::Live,
    );
    if o.server_password != n.server_password {
        // New server connections log in with it; open ones stay logged in.
        plan.applied.push(format!("{key}.server_password: changed"));
    }
}

/// Read at each login of a user without a `[[users]]` entry: live. A change to what or where
/// the query runs also drops the verifiers fetched so far, so the next login sees the new
/// source at once rather than after `cache_ttl_ms`.
fn auth_query(plan: &mut Plan, old: &Config, new: &Config) {
    let (o, n) = (&old.auth_query, &new.auth_query);
    keys!(
        plan,
        "auth_query",
        o,
        n,
        When::Live,
        [user, query, database, cache_ttl_ms]
    );
    if o.password != n.password {
        plan.applied.push("auth_query.password: changed".to_owned());
    }
    plan.clear_auth_query_cache = (&o.user, &o.password, &o.query, &o.database)
        != (&n.user, &n.password, &n.query, &n.database);
}

fn databases(plan: &mut Plan, old: &Config, new: &Config) {
    for d in &old.databases {
        if new.database(&d.name).is_none() {
            plan.applied
                .push(format!("databases: removed {:?}", d.name));
        }
    }
    for d in &new.databases {
        match old.database(&d.name) {
            None => plan.applied.push(format!("databases: added {:?}", d.name)),
            Some(o) => database(plan, o, d),
        }
    }
}

fn database(plan: &mut Plan, o: &DatabaseConfig, n: &DatabaseConfig) {
    use When::*;
    let key = format!("databases.{}", n.name);
    plan.key(
        &format!("{key}.server_tls"),
        &o.server_tls,
        &n.server_tls,
        Live,
    );
    plan.key(
        &format!("{key}.server_tls_ca"),
        &o.server_tls_ca,
        &n.server_tls_ca,
        Live,
    );
    if o.primary_endpoint != n.primary_endpoint {
        plan.applied.push(format!(
            "{key}.primary: {}",
            endpoint_change(&o.primary_endpoint, &n.primary_endpoint)
        ));
    }
    if o.replica_endpoints != n.replica_endpoints {
        let (before, after) = (o.replica_endpoints.len(), n.replica_endpoints.len());
        plan.applied.push(if before == after {
            format!("{key}.replicas: changed")
        } else {
            format!("{key}.replicas: {before} -> {after}")
        });
    }
    plan.key(
        &format!("{key}.pool_size"),
        &o.pool_size,
        &n.pool_size,
        Live,
    );
    plan.key(
        &format!("{key}.pool_mode"),
        &o.pool_mode,
        &n.pool_mode,
        NewClients,
    );
    plan.key(
        &format!("{key}.slow_query_threshold_ms"),
        &o.slow_query_threshold_ms,
        &n.slow_query_threshold_ms,
        Live,
    );
}

/// `old -> new` for a changed member address, without its password.
fn endpoint_change(o: &Endpoint, n: &Endpoint) -> String {
    let (a, b) = (Place(o), Place(n));
    if a.to_string() == b.to_string() {
        if o.tls != n.tls {
            "TLS settings or CA file changed".to_owned()
        } else {
            "password or options changed".to_owned()
        }
    } else {
        format!("{a} -> {b}")
    }
}

/// An endpoint as `user@host:port/dbname`, no password.
struct Place<'a>(&'a Endpoint);

impl Display for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ep = self.0;
        if let Some(user) = &ep.user {
            write!(f, "{user}@")?;
        }
        if ep.host.contains(':') {
            write!(f, "[{}]:{}/{}", ep.host, ep.port, ep.dbname)
        } else {
            write!(f, "{}:{}/{}", ep.host, ep.port, ep.dbname)
        }
    }
}

/// Which databases get a fresh health view, and which lose theirs. A view is built from the
/// database's members and the probe settings, and its monitor logs in as [`probe_login`]
/// says; a change to any of them needs a fresh one (its members start unknown, so replicas
/// serve again after the first probe round). Routing limits are not in the view: sessions
/// read them from the config at login.
fn health(plan: &mut Plan, old: &Config, new: &Config) {
    let probe_settings = |c: &Config| {
        let r = &c.routing;
        (
            r.probe_interval_ms,
            r.down_after_failures,
            r.up_after_successes,
        )
    };
    for db in monitored(old) {
        if !monitored(new).any(|d| d.name == db.name) {
            plan.unmonitor.push(db.name.clone());
        }
    }
    for db in monitored(new) {
        let fresh = match monitored(old).find(|d| d.name == db.name) {
            None => true,
            Some(o) => {
                o.primary_endpoint != db.primary_endpoint
                    || o.replica_endpoints != db.replica_endpoints
                    || probe_settings(old) != probe_settings(new)
                    || probe_login(old, o) != probe_login(new, db)
            }
        };
        if fresh {
            plan.monitor.push(db.name.clone());
        }
    }
}

/// The databases with a health view: those with replicas, when read/write split is on (as
/// `app::Shared::new` builds them).
fn monitored(c: &Config) -> impl Iterator<Item = &DatabaseConfig> {
    c.databases
        .iter()
        .filter(|d| c.routing.read_write_split && !d.replicas.is_empty())
}
