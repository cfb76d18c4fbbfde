//! Hot reload (SIGHUP and the admin console's `RELOAD`): read the file again, validate it,
//! and apply what changed without dropping live client sessions or in-flight transactions.
//!
//! Owns: the reload sequence (read, validate, [`diff`], store, [`apply`]) and its report.
//! Does not own: reading and validating the file (`config::load`), how a pool resizes or is
//! replaced (`pool::cluster`, `pool::pool`), or how a health monitor runs (`health`).
//!
//! An invalid or unreadable file changes nothing: every problem is logged and returned. A
//! valid one is stored in `Shared::config` first (so every login from then on reads it) and
//! then applied to what was built from the old one:
//! - pools: new sizes and timeouts in place; the clusters of a changed database replaced, of a
//!   removed database or user dropped (sessions holding them finish undisturbed);
//! - health: a fresh view and monitor for a database whose members or probe settings changed,
//!   none for one no longer split;
//! - statistics and the slow log (`Stats::configure`); cached SCRAM verifiers of removed users
//!   and changed passwords, and those fetched by auth_query when its source changed.
//!
//! Settings a session copies at login (`pool.mode`, `idle_transaction_timeout_ms`, ...) reach
//! clients that connect after the reload, and their report lines say so. Keys that cannot
//! change while the process runs (`listen`, `metrics_listen`, `[tls]`,
//! `routing.write_functions`) are stored but reported as needing a restart.

mod apply;
mod diff;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use diff::{Plan, diff};

use crate::app::Shared;

/// What a successful reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// One line per change applied, e.g. `pool.size: 20 -> 5`.
    pub applied: Vec<String>,
    /// Changes that only take effect after a restart (listen addresses, ...), one line each.
    pub needs_restart: Vec<String>,
}

/// Why a reload changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The proxy was started from a `Config` value, not a file.
    #[error("this proxy was not started from a config file; nothing to reload")]
    NoFile,
    /// The file could not be read or is invalid: every problem, one per line.
    #[error("config not reloaded; {} problem(s): {}", .0.len(), .0.join("; "))]
    Invalid(Vec<String>),
}

/// Reloads the config file the proxy was started from (`Shared::config_path`). Reloads are
/// applied one at a time (`Shared::reloading`). Logs the outcome: each change at info, each
/// problem of a refused file at error.
pub async fn reload(shared: &Arc<Shared>) -> Result<ReloadReport, ReloadError> {
    let Some(path) = shared.config_path.get() else {
        tracing::error!("config not reloaded: {}", ReloadError::NoFile);
        return Err(ReloadError::NoFile);
    };
    let _one_at_a_time = shared.reloading.lock().await;
    let new = match super::load(path) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                tracing::error!(path = %path.display(), "config not reloaded: {p}");
            }
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            tracing::error!(
                path = %path.display(),
                problems = problems.len(),
                "config not reloaded: the file has problems; the running config is unchanged"
            );
            return Err(ReloadError::Invalid(problems));
        }
    };
    let old = shared.config.load_full();
    let plan = diff(&old, &new);
    let new = Arc::new(new);
    // Stored before it is applied: a login from now on builds its pools from the new config,
    // so none can recreate what `apply` is about to replace.
    shared.config.store(Arc::clone(&new));
    apply::apply(shared, &new, &plan);
    for line in &plan.applied {
        tracing::info!(path = %path.display(), "config reloaded: {line}");
    }
    for line in &plan.needs_restart {
        tracing::warn!(path = %path.display(), "config reloaded, needs a restart: {line}");
    }
    tracing::info!(
        path = %path.display(),
        applied = plan.applied.len(),
        needs_restart = plan.needs_restart.len(),
        "config reloaded"
    );
    Ok(ReloadReport {
        applied: plan.applied,
        needs_restart: plan.needs_restart,
    })
}
