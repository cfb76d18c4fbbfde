//! The registry of pools. A (database, user) is served by a [`Cluster`]: one pool on the
//! primary and one per replica, created together on first use from the config. Which member a
//! request goes to is `router`'s decision, not this module's.
//!
//! A config reload brings the registry in line with the new config ([`Pools::reconcile`]):
//! new sizes and timeouts go into every pool in place; a cluster whose members changed is
//! replaced (unchanged members keep their pool and its warm connections); the clusters of a
//! removed database or user are dropped from the registry. Sessions keep the `Arc<Cluster>`
//! they hold; [`Pools::generation`] tells them when to look up [`Pools::current`] again.
//!
//! A user looked up by auth_query has no `[[users]]` entry: its cluster is built from a
//! synthesized entry without a password, and its pools log in with the cluster's
//! [`CredentialSlot`], which each successful client login of that user fills.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use super::connect::ServerTarget;
use super::pool::{Pool, PoolSettings};
use crate::auth::credential::CredentialSlot;
use crate::config::{Config, DatabaseConfig, Endpoint, UserConfig};

/// The pools of one (database, user): the primary's and the replicas' (config order).
pub struct Cluster {
    pub primary: Arc<Pool>,
    pub replicas: Vec<Arc<Pool>>,
    /// For an auth_query user: what every member logs in with, filled by client logins.
    /// `None` for a `[[users]]` user (its config says how to log in).
    pub credential: Option<Arc<CredentialSlot>>,
}

impl Cluster {
    /// Every pool of the cluster, primary first.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        std::iter::once(&self.primary).chain(&self.replicas)
    }
}

/// What [`Pools::reconcile`] did to one (database, user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterChange {
    /// Its members changed: a new cluster serves new sessions.
    Replaced { database: String, user: String },
    /// Its database or user left the config.
    Removed { database: String, user: String },
}

/// All pools of one proxy.
#[derive(Default)]
pub struct Pools {
    map: DashMap<(String, String), Arc<Cluster>>,
    /// Bumped after every removal or replacement of a cluster (see [`Pools::generation`]).
    generation: AtomicU64,
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
            .or_insert_with(|| Arc::new(build(config, db, user, None)))
            .clone()
    }

    /// The cluster for (database, auth_query user `user`), created with an empty
    /// [`CredentialSlot`] if it does not exist yet. The caller fills the slot after the
    /// client's login (`Cluster::credential`).
    pub fn get_or_create_fetched(
        &self,
        config: &Config,
        db: &DatabaseConfig,
        user: &str,
    ) -> Arc<Cluster> {
        let key = (db.name.clone(), user.to_owned());
        if let Some(c) = self.map.get(&key) {
            return Arc::clone(&c);
        }
        self.map
            .entry(key)
            .or_insert_with(|| {
                let slot = Arc::new(CredentialSlot::default());
                Arc::new(build(config, db, &fetched_user(user), Some(slot)))
            })
            .clone()
    }

    /// Changes whenever a reload removed or replaced a cluster (or replaced a database's
    /// health view, whose replica order a cluster's replicas follow). A transaction-mode
    /// session remembers the value it logged in with; when it differs at its next checkout,
    /// it takes [`Pools::current`] for its (database, user), and its routing state from
    /// `Shared::health` again, so its next transaction goes to the members the config names
    /// now. One relaxed atomic load: cheap enough for every checkout.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The cluster now registered for (database, user), if any. `None` means the database or
    /// the user was removed by a reload (or nobody logged in to it yet): a live session keeps
    /// the cluster it has until it ends. A reload replaces clusters before it bumps
    /// [`Pools::generation`], so a session that saw the new generation finds the new cluster.
    pub fn current(&self, db: &str, user: &str) -> Option<Arc<Cluster>> {
        self.map
            .get(&(db.to_owned(), user.to_owned()))
            .map(|c| Arc::clone(c.value()))
    }

    /// Brings every registered cluster in line with a reloaded `config` (already stored in
    /// `Shared::config`, so logins from now on build from it): new sizes and timeouts go into
    /// each pool in place ([`Pool::set_settings`]); a cluster whose members changed (address,
    /// server login, `options`, replicas added or removed) is replaced, keeping the pools of
    /// the members that did not change; the clusters of a database or user no longer in the
    /// config are removed. An auth_query user's cluster stays (with its credential) while
    /// auth_query is configured and the user has no `[[users]]` entry; one that gained an
    /// entry is replaced by pools that log in as the entry says. Pools left out are
    /// [`Pool::retire`]d: sessions holding them finish undisturbed. Returns what was replaced
    /// or removed.
    pub fn reconcile(&self, config: &Config) -> Vec<ClusterChange> {
        let entries: Vec<((String, String), Arc<Cluster>)> = self
            .map
            .iter()
            .map(|e| (e.key().clone(), Arc::clone(e.value())))
            .collect();
        let mut changes = Vec::new();
        for ((db_name, user_name), old) in entries {
            let fetched;
            let (user, slot) = match (config.user(&user_name), &old.credential) {
                (Some(u), _) => (Some(u), None),
                (None, Some(slot)) if config.auth_query.enabled() => {
                    fetched = fetched_user(&user_name);
                    (Some(&fetched), Some(Arc::clone(slot)))
                }
                (None, _) => (None, None),
            };
            let (Some(db), Some(user)) = (config.database(&db_name), user) else {
                self.map.remove(&(db_name.clone(), user_name.clone()));
                old.pools().for_each(|p| p.retire());
                changes.push(ClusterChange::Removed {
                    database: db_name,
                    user: user_name,
                });
                continue;
            };
            let settings = settings_for(config, db);
            for pool in old.pools() {
                if **pool.settings() != settings {
                    pool.set_settings(settings.clone());
                }
            }
            let (primary, replicas) = members(db, user, slot.as_ref());
            let same = replicas.len() == old.replicas.len()
                && old
                    .pools()
                    .zip(std::iter::once(&primary).chain(&replicas))
                    .all(|(p, m)| m.is(p));
            if same {
                continue;
            }
            // A member that did not change keeps its pool (and its warm connections).
            let keep = |m: &Member| {
                old.pools()
                    .find(|p| m.is(p))
                    .cloned()
                    .unwrap_or_else(|| pool_for(db, user, m, settings.clone()))
            };
            let fresh = Cluster {
                primary: keep(&primary),
                replicas: replicas.iter().map(keep).collect(),
                credential: slot,
            };
            for p in old.pools() {
                if !fresh.pools().any(|f| Arc::ptr_eq(f, p)) {
                    p.retire();
                }
            }
            self.map
                .insert((db_name.clone(), user_name.clone()), Arc::new(fresh));
            changes.push(ClusterChange::Replaced {
                database: db_name,
                user: user_name,
            });
        }
        if !changes.is_empty() {
            self.bump_generation();
        }
        changes
    }

    /// Tells sessions to look up their cluster and routing state again (see
    /// [`Pools::generation`]); for a reload that replaced a health view but no cluster.
    pub fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
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
        tls: ep.tls.clone(),
        credential: None,
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

/// What one member's pool is built from: its name, where and as whom it logs in, and the
/// startup parameters it sends.
struct Member {
    name: String,
    target: ServerTarget,
    startup: Vec<(String, String)>,
}

impl Member {
    /// `pool` is this member's pool as the config now describes it.
    fn is(&self, pool: &Pool) -> bool {
        pool.member == self.name && pool.serves(&self.target, &self.startup)
    }
}

/// The members of (db, user): the primary, and the replicas in config order. With `slot`
/// (an auth_query user) the members log in with it, except where a URL forces its own user.
fn members(
    db: &DatabaseConfig,
    user: &UserConfig,
    slot: Option<&Arc<CredentialSlot>>,
) -> (Member, Vec<Member>) {
    let member = |ep: &Endpoint, name: String| {
        let mut startup = Vec::new();
        if let Some(opts) = &ep.options {
            startup.push(("options".to_owned(), opts.clone()));
        }
        let mut target = target_at(ep, user);
        if ep.user.is_none() {
            target.credential = slot.cloned();
        }
        Member {
            name,
            target,
            startup,
        }
    };
    let replicas = db
        .replica_endpoints
        .iter()
        .enumerate()
        .map(|(i, ep)| member(ep, format!("replica{}", i + 1)))
        .collect();
    (member(&db.primary_endpoint, "primary".to_owned()), replicas)
}

fn pool_for(
    db: &DatabaseConfig,
    user: &UserConfig,
    m: &Member,
    settings: PoolSettings,
) -> Arc<Pool> {
    Pool::new(
        db.name.clone(),
        user.name.clone(),
        m.name.clone(),
        m.target.clone(),
        m.startup.clone(),
        settings,
    )
}

fn build(
    config: &Config,
    db: &DatabaseConfig,
    user: &UserConfig,
    credential: Option<Arc<CredentialSlot>>,
) -> Cluster {
    let settings = settings_for(config, db);
    let (primary, replicas) = members(db, user, credential.as_ref());
    Cluster {
        primary: pool_for(db, user, &primary, settings.clone()),
        replicas: replicas
            .iter()
            .map(|m| pool_for(db, user, m, settings.clone()))
            .collect(),
        credential,
    }
}

/// The `[[users]]` entry an auth_query user would have: its name, no password of any kind
/// (the proxy never holds one for it), the server-wide auth type.
fn fetched_user(name: &str) -> UserConfig {
    UserConfig {
        name: name.to_owned(),
        password: None,
        auth_type: None,
        server_password: None,
        secret: None,
    }
}

#[cfg(test)]
mod tests;
