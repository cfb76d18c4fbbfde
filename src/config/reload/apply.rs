//! Applies a reloaded config to what the running proxy built from the old one. Called after
//! the new config is stored; nothing here waits or fails, and no client session is touched:
//! sessions keep the clusters and health views they hold (see `Pools::generation`).

use crate::app::{self, Shared};
use crate::config::Config;
use crate::pool::cluster::ClusterChange;

use super::Plan;

pub(super) fn apply(shared: &Shared, config: &Config, plan: &Plan) {
    shared.stats.configure(config);
    for user in &plan.forget_verifiers {
        shared.verifiers.forget(user);
    }
    if plan.clear_auth_query_cache {
        shared.auth_query.clear();
    }
    // Health views first: the generation bump below tells sessions to look again, and they
    // must find the new views when they do.
    for name in &plan.unmonitor {
        app::unmonitor_database(shared, name);
    }
    for name in &plan.monitor {
        if let Some(db) = config.database(name) {
            app::monitor_database(shared, config, db);
        }
    }
    let changes = shared.pools.reconcile(config);
    if changes.is_empty() && !(plan.monitor.is_empty() && plan.unmonitor.is_empty()) {
        shared.pools.bump_generation();
    }
    for change in changes {
        match change {
            ClusterChange::Replaced { database, user } => {
                tracing::debug!(%database, %user, "reload: pools replaced for new sessions");
            }
            ClusterChange::Removed { database, user } => {
                tracing::debug!(%database, %user, "reload: pools removed");
            }
        }
    }
}
