//! Hot reload (SIGHUP and the admin console's `RELOAD`): read the file again, validate it,
//! and apply what changed without dropping live client sessions or in-flight transactions.
//!
//! STUB: the signature is the contract the admin console and the signal handler call; the
//! body lands with the reload work.

use std::sync::Arc;

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

/// Reloads the config file the proxy was started from (`Shared::config_path`).
pub async fn reload(shared: &Arc<Shared>) -> Result<ReloadReport, ReloadError> {
    let _ = shared;
    Err(ReloadError::NoFile)
}
