//! Composition root: builds the one `Shared` value, binds the listener, starts the side tasks,
//! and runs until shutdown. A test process can run several proxies side by side, each with its
//! own `Shared`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use tokio::net::TcpListener;

use crate::cancel::CancelRegistry;
use crate::config::Config;
use crate::health::Health;
use crate::metrics::MetricsEndpoint;
use crate::pool::cluster::Pools;
use crate::router::classify::Classifier;
use crate::shutdown::Shutdown;

/// Everything the data path and side tasks share. Handed down as `Arc<Shared>`.
pub struct Shared {
    pub config: ArcSwap<Config>,
    pub pools: Pools,
    pub cancel: CancelRegistry,
    pub shutdown: Shutdown,
    /// Connected clients (for max_client_conn).
    pub clients: AtomicUsize,
    /// SCRAM verifiers derived from plaintext passwords.
    pub verifiers: crate::auth::cache::VerifierCache,
    /// Secrets fetched by auth_query, for `auth_query.cache_ttl_ms`.
    pub auth_query: crate::auth::query::AuthQueryCache,
    /// Key for the fake SCRAM salts of unknown users: stable for this process, unguessable.
    pub mock_secret: [u8; 32],
    /// Named prepared statements by what they are, shared by all clients (see `prepared`).
    pub statements: crate::prepared::Registry,
    /// Read or write, per statement shape (see `router::classify`).
    pub classifier: Classifier,
    /// The health view of each database with replicas and read/write split on, by database
    /// name; its monitor runs while the proxy does. A reload replaces a database's view when
    /// its members or probe settings changed (see [`monitor_database`]).
    pub health: DashMap<String, Arc<Health>>,
    /// The stop token of each database's running health monitor.
    pub monitors: crate::health::Monitors,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, once bound (unset when
    /// `server.metrics_listen` is not configured). Tests read the port from here.
    pub metrics_addr: OnceLock<SocketAddr>,
    /// Per-query statistics: fingerprints, slow log, per-database totals (see `stats`).
    pub stats: crate::stats::Stats,
    /// Logged-in clients, for `SHOW CLIENTS` and `KILL`.
    pub client_registry: crate::client::registry::ClientRegistry,
    /// Paused databases (`PAUSE`, `KILL`): their requests wait before checkout.
    pub pauses: crate::pool::pause::Pauses,
    /// The file the config came from, for reloads (unset when started from a value).
    pub config_path: OnceLock<std::path::PathBuf>,
    /// When this proxy was built: `SHOW STATS` rates are per second since then.
    pub started: std::time::Instant,
    /// Held for the whole of a reload, so SIGHUP and `RELOAD` arriving together apply one
    /// file after the other, never interleaved.
    pub reloading: tokio::sync::Mutex<()>,
}

/// Statement shapes the classifier remembers (a few MiB at most).
const CLASSIFY_CACHE_ENTRIES: usize = 16_384;

impl Shared {
    pub fn new(config: Config) -> Arc<Shared> {
        let classifier = Classifier::new(&config.routing.write_functions, CLASSIFY_CACHE_ENTRIES);
        let health = DashMap::new();
        if config.routing.read_write_split {
            for db in config.databases.iter().filter(|d| !d.replicas.is_empty()) {
                health.insert(db.name.clone(), Health::new(&config, db));
            }
        }
        Arc::new(Shared {
            stats: crate::stats::Stats::new(&config),
            client_registry: Default::default(),
            pauses: Default::default(),
            config_path: OnceLock::new(),
            started: std::time::Instant::now(),
            reloading: tokio::sync::Mutex::new(()),
            classifier,
            health,
            monitors: Default::default(),
            config: ArcSwap::from_pointee(config),
            pools: Pools::default(),
            cancel: CancelRegistry::default(),
            shutdown: Shutdown::default(),
            clients: AtomicUsize::new(0),
            verifiers: Default::default(),
            auth_query: Default::default(),
            mock_secret: rand::random(),
            statements: Default::default(),
            metrics_addr: OnceLock::new(),
        })
    }
}

/// A proxy bound to its port(s), not yet serving.
pub struct Proxy {
    pub shared: Arc<Shared>,
    listener: TcpListener,
    metrics: Option<MetricsEndpoint>,
}

impl Proxy {
    /// The client listener, for socket options a caller wants on every accepted connection
    /// (Linux copies buffer sizes from the listening socket; tests shrink them to reach
    /// full-socket paths).
    pub fn listener(&self) -> &TcpListener {
        &self.listener
    }

    /// Binds the client listener and, with `server.metrics_listen`, installs the metrics
    /// recorder and binds the metrics endpoint: a bad address fails here, at start. The
    /// recorder goes in before `Shared` exists, so no pool or monitor resolves a metric handle
    /// against the no-op recorder.
    pub async fn bind(config: Config) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(&config.server.listen).await?;
        let metrics = match config.server.metrics_listen_addr() {
            Ok(None) => None,
            Ok(Some(addr)) => Some(MetricsEndpoint::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("server.metrics_listen {addr}: {e}"))
            })?),
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("server.metrics_listen: {e}"),
                ));
            }
        };
        let shared = Shared::new(config);
        if let Some(m) = &metrics {
            let _ = shared.metrics_addr.set(m.local_addr()?);
        }
        Ok(Proxy {
            shared,
            listener,
            metrics,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bound metrics endpoint, when `server.metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.shared.metrics_addr.get().copied()
    }

    /// Serves until shutdown, then waits for every session to end.
    pub async fn run(self) {
        let shared = self.shared;
        warm_pools(&shared);
        let maintain = tokio::spawn(maintain_pools(Arc::clone(&shared)));
        // Sessions watch their own stop flags, not the tokens: this raises them.
        let fan_out = {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                shared
                    .client_registry
                    .follow_shutdown(&shared.shutdown)
                    .await
            })
        };
        start_monitors(&shared);
        // Outside the task tracker: it must answer (/readyz: draining) while sessions drain.
        // It stops on `hard`, or is aborted below once the sessions are done.
        let metrics = self
            .metrics
            .map(|m| tokio::spawn(m.run(Arc::clone(&shared))));
        crate::net::listener::accept_loop(self.listener, Arc::clone(&shared)).await;
        shared.shutdown.tasks.close();
        shared.shutdown.tasks.wait().await;
        shared.pools.close_all();
        // The slow queries of the last moments reach the log.
        shared.stats.close().await;
        maintain.abort();
        fan_out.abort();
        if let Some(m) = metrics {
            m.abort();
        }
        shared.monitors.stop_all();
    }
}

/// Binds, serves, and handles signals: the binary's main job. `path` is where `config` was
/// read from: SIGHUP and the admin console's `RELOAD` read it again.
pub async fn run(config: Config, path: PathBuf) -> std::io::Result<()> {
    // Before the first log line: a SIGHUP sent once we say we listen must find its handler
    // (its default action would end the process).
    let signals = crate::shutdown::Signals::install()?;
    let proxy = Proxy::bind(config).await?;
    let _ = proxy.shared.config_path.set(path);
    tracing::info!(listen = %proxy.local_addr()?, "lagoon listening");
    if let Some(addr) = proxy.metrics_addr() {
        tracing::info!(metrics_listen = %addr, "metrics endpoint: /metrics /healthz /readyz");
    }
    let signals = tokio::spawn(signals.watch(Arc::clone(&proxy.shared)));
    proxy.run().await;
    signals.abort();
    Ok(())
}

/// Starts the health monitor of every database with a health view (see [`Shared::new`]).
fn start_monitors(shared: &Shared) {
    let config = shared.config.load();
    let views: Vec<Arc<Health>> = shared
        .health
        .iter()
        .map(|e| Arc::clone(e.value()))
        .collect();
    for health in views {
        if let Some(db) = config.database(&health.database) {
            start_monitor(shared, &config, db, health);
        }
    }
}

/// Gives `db` a fresh health view (every member unknown until its first probe) in
/// `shared.health` and starts its monitor, stopping the one it replaces: a reload whose
/// replicas or probe settings changed for `db`, or that turned read/write split on.
pub fn monitor_database(shared: &Shared, config: &Config, db: &crate::config::DatabaseConfig) {
    let health = Health::new(config, db);
    shared.health.insert(db.name.clone(), Arc::clone(&health));
    start_monitor(shared, config, db, health);
}

/// Stops `database`'s monitor and drops its health view: its reads go to the primary. Live
/// sessions keep the view they hold until [`Pools::generation`] sends them to look again.
pub fn unmonitor_database(shared: &Shared, database: &str) {
    shared.monitors.stop(database);
    shared.health.remove(database);
}

/// Starts `health`'s monitor. A database whose members the proxy cannot log in to for probing
/// keeps its replicas unused (reads go by `no_replica`): unmeasured replicas could be any
/// distance behind.
fn start_monitor(
    shared: &Shared,
    config: &Config,
    db: &crate::config::DatabaseConfig,
    health: Arc<Health>,
) {
    match crate::health::probe_login(config, db) {
        Some(login) => shared.monitors.start(health, login, &shared.shutdown.hard),
        None => {
            shared.monitors.stop(&db.name);
            tracing::error!(
                database = %db.name,
                "no login to probe this database's members with (no user in its URL, no [[users]] and no usable [auth_query] login); its replicas stay unused"
            );
        }
    }
}

/// With `min_idle` set, creates every (database, user) pool up front so maintenance opens its
/// idle connections before the first client arrives.
fn warm_pools(shared: &Shared) {
    let config = shared.config.load();
    if config.pool.min_idle == 0 {
        return;
    }
    for db in &config.databases {
        for user in &config.users {
            for pool in shared.pools.get_or_create(&config, db, user).pools() {
                pool.maintain();
            }
        }
    }
}

/// pool::maintain for every pool, once a second: idle reaping, lifetime, min_idle warm-up.
/// Every ten seconds also drops the prepared statements no client or server holds any more.
async fn maintain_pools(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks: u64 = 0;
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.shutdown.hard.cancelled() => return,
        }
        for pool in shared.pools.all() {
            // PAUSE and KILL closed these on purpose (a DBA restarting Postgres): min_idle
            // must not reopen them.
            if !shared.pauses.is_paused(&pool.database) {
                pool.maintain();
            }
        }
        ticks += 1;
        if ticks % 10 == 0 {
            shared.statements.sweep();
        }
    }
}
