//! The registry of pools, one per (database, user), created on first use from the config.
//! Read/write split (replicas as further members) extends this in a later issue.

use std::sync::Arc;

use dashmap::DashMap;

use super::connect::ServerTarget;
use super::pool::{Pool, PoolSettings};
use crate::config::{Config, DatabaseConfig, UserConfig};

/// All pools of one proxy.
#[derive(Default)]
pub struct Pools {
    map: DashMap<(String, String), Arc<Pool>>,
}

impl Pools {
    /// The pool for (database, user), created from `config` if it does not exist yet.
    pub fn get_or_create(
        &self,
        config: &Config,
        db: &DatabaseConfig,
        user: &UserConfig,
    ) -> Arc<Pool> {
        let key = (db.name.clone(), user.name.clone());
        if let Some(p) = self.map.get(&key) {
            return Arc::clone(&p);
        }
        self.map
            .entry(key)
            .or_insert_with(|| build(config, db, user))
            .clone()
    }

    pub fn all(&self) -> Vec<Arc<Pool>> {
        self.map.iter().map(|e| Arc::clone(e.value())).collect()
    }

    /// Closes every pool (shutdown).
    pub fn close_all(&self) {
        for p in self.all() {
            p.close();
        }
    }
}

/// Where and as whom the proxy logs in for this (database, user): the database URL's user and
/// password when it names one (one server login for every client, like PgBouncer's forced
/// user), else the client's user name with its `server_password`.
pub fn target_for(db: &DatabaseConfig, user: &UserConfig) -> ServerTarget {
    let ep = &db.primary_endpoint;
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

fn build(config: &Config, db: &DatabaseConfig, user: &UserConfig) -> Arc<Pool> {
    let mut startup = Vec::new();
    if let Some(opts) = &db.primary_endpoint.options {
        startup.push(("options".to_owned(), opts.clone()));
    }
    Pool::new(
        db.name.clone(),
        user.name.clone(),
        target_for(db, user),
        startup,
        settings_for(config, db),
    )
}
