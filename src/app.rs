//! Composition root: builds the one `Shared` value, binds the listener, starts the side tasks,
//! and runs until shutdown. A test process can run several proxies side by side, each with its
//! own `Shared`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::cancel::CancelRegistry;
use crate::config::Config;
use crate::pool::cluster::Pools;
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
    /// Key for the fake SCRAM salts of unknown users: stable for this process, unguessable.
    pub mock_secret: [u8; 32],
    /// Named prepared statements by what they are, shared by all clients (see `prepared`).
    pub statements: crate::prepared::Registry,
}

impl Shared {
    pub fn new(config: Config) -> Arc<Shared> {
        Arc::new(Shared {
            config: ArcSwap::from_pointee(config),
            pools: Pools::default(),
            cancel: CancelRegistry::default(),
            shutdown: Shutdown::default(),
            clients: AtomicUsize::new(0),
            verifiers: Default::default(),
            mock_secret: rand::random(),
            statements: Default::default(),
        })
    }
}

/// A proxy bound to its port, not yet serving.
pub struct Proxy {
    pub shared: Arc<Shared>,
    listener: TcpListener,
}

impl Proxy {
    pub async fn bind(config: Config) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(&config.server.listen).await?;
        Ok(Proxy {
            shared: Shared::new(config),
            listener,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until shutdown, then waits for every session to end.
    pub async fn run(self) {
        let shared = self.shared;
        warm_pools(&shared);
        let maintain = tokio::spawn(maintain_pools(Arc::clone(&shared)));
        crate::net::listener::accept_loop(self.listener, Arc::clone(&shared)).await;
        shared.shutdown.tasks.close();
        shared.shutdown.tasks.wait().await;
        shared.pools.close_all();
        maintain.abort();
    }
}

/// Binds, serves, and handles signals: the binary's main job.
pub async fn run(config: Config) -> std::io::Result<()> {
    let deadline = Duration::from_millis(config.server.shutdown_timeout_ms);
    warn_not_yet_implemented(&config);
    let proxy = Proxy::bind(config).await?;
    tracing::info!(listen = %proxy.local_addr()?, "lagoon listening");
    let signals = tokio::spawn(crate::shutdown::watch_signals(
        proxy.shared.shutdown.clone(),
        deadline,
    ));
    proxy.run().await;
    signals.abort();
    Ok(())
}

/// Keys that are accepted (so configs written for later versions validate) but do nothing
/// yet: say so once at start rather than let an operator believe they are in force.
fn warn_not_yet_implemented(config: &Config) {
    if config.server.metrics_listen.is_some() {
        tracing::warn!(
            "server.metrics_listen is set, but the metrics endpoint is not implemented yet"
        );
    }
    if config.databases.iter().any(|d| !d.replicas.is_empty()) {
        tracing::warn!(
            "replicas are configured, but read/write split is not implemented yet: all traffic goes to the primary"
        );
    }
    if !config.server.admin_users.is_empty() {
        tracing::warn!("server.admin_users is set, but the admin console is not implemented yet");
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
            shared.pools.get_or_create(&config, db, user).maintain();
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
            pool.maintain();
        }
        ticks += 1;
        if ticks % 10 == 0 {
            shared.statements.sweep();
        }
    }
}
