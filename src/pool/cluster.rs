//! The registry of pools. A (database, user) is served by a [`Cluster`]: one pool on the
//! primary and one per replica, created together on first use from the config. Which member a
//! request goes to is `router`'s decision, not this module's.

use std::sync::Arc;

use dashmap::DashMap;

use super::connect::ServerTarget;
use super::pool::{Pool, PoolSettings};
use crate::config::{Config, DatabaseConfig, Endpoint, UserConfig};

/// The pools of one (database, user): the primary's and the replicas' (config order).
pub struct Cluster {
    pub primary: Arc<Pool>,
    pub replicas: Vec<Arc<Pool>>,
}

impl Cluster {
    /// Every pool of the cluster, primary first.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        std::iter::once(&self.primary).chain(&self.replicas)
    }
}

/// All pools of one proxy.
#[derive(Default)]
pub struct Pools {
    map: DashMap<(String, String), Arc<Cluster>>,
}

impl Pools {
    /// The cluster for (database, user), created from `config` if it does not exist yet.
    pub fn get_or_create(
        &self,
        config: &Config,
        db: &DatabaseConfig,
        user: &UserConfig,
    ) -> Arc<Cluster> {
        let key = (db.name.clone(), user.name.clone());
        if let Some(c) = self.map.get(&key) {
            return Arc::clone(&c);
        }
        self.map
            .entry(key)
            .or_insert_with(|| Arc::new(build(config, db, user)))
            .clone()
    }

    /// Every pool of every cluster.
    pub fn all(&self) -> Vec<Arc<Pool>> {
        self.map
            .iter()
            .flat_map(|e| e.value().pools().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Closes every pool (shutdown).
    pub fn close_all(&self) {
        for p in self.all() {
            p.close();
        }
    }
}

/// Where and as whom the proxy logs in to the primary for this (database, user); see
/// [`target_at`].
pub fn target_for(db: &DatabaseConfig, user: &UserConfig) -> ServerTarget {
    target_at(&db.primary_endpoint, user)
}

/// Where and as whom the proxy logs in at one member: the URL's user and password when it
/// names one (one server login for every client, like PgBouncer's forced user), else the
/// client's user name with its `server_password`.
pub fn target_at(ep: &Endpoint, user: &UserConfig) -> ServerTarget {
    let (login_user, password) = match &ep.user {
        Some(u) => (u.clone(), ep.password.clone()),
        None => (user.name.clone(), user.server_password().map(str::to_owned)),
    };
    ServerTarget {
        host: ep.host.clone(),
        port: ep.port,
        user: login_user,
        password,
        database: ep.dbname.clone(),
    }
}

pub fn settings_for(config: &Config, db: &DatabaseConfig) -> PoolSettings {
    let p = &config.pool;
    PoolSettings {
        size: db.pool_size.unwrap_or(p.size) as usize,
        min_idle: p.min_idle as usize,
        checkout_timeout: std::time::Duration::from_millis(p.checkout_timeout_ms),
        idle_timeout: std::time::Duration::from_millis(p.server_idle_timeout_ms),
        lifetime: std::time::Duration::from_millis(p.server_lifetime_ms),
        connect_timeout: std::time::Duration::from_millis(p.connect_timeout_ms),
    }
}

fn build(config: &Config, db: &DatabaseConfig, user: &UserConfig) -> Cluster {
    let pool_at = |ep: &Endpoint, member: String| {
        let mut startup = Vec::new();
        if let Some(opts) = &ep.options {
            startup.push(("options".to_owned(), opts.clone()));
        }
        Pool::new(
            db.name.clone(),
            user.name.clone(),
            member,
            target_at(ep, user),
            startup,
            settings_for(config, db),
        )
    };
    Cluster {
        primary: pool_at(&db.primary_endpoint, "primary".to_owned()),
        replicas: db
            .replica_endpoints
            .iter()
            .enumerate()
            .map(|(i, ep)| pool_at(ep, format!("replica{}", i + 1)))
            .collect(),
    }
}
