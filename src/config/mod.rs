//! The configuration: the TOML model ([`model`]), loading it, and validating it with every
//! problem reported at once (each with its key path and, where known, line number), so
//! `lagoon check` and a refused reload show the whole list instead of one error per attempt.
//!
//! Owns: reading and checking the file, and the parsed endpoints and secrets derived from it.
//! Does not own: watching for reloads or applying a new config (that is `config::reload`).
//!
//! Layers: [`document`] walks the spanned TOML (unknown keys, type errors), [`validate`] checks
//! meaning (addresses, limits, names, passwords, URLs). `config/lagoon.toml` is the commented
//! reference for every key.

mod document;
mod endpoint;
mod kinds;
pub mod model;
pub mod reload;
mod validate;

#[cfg(test)]
mod tests;

/// The keys serde reads for a section, for tests elsewhere that must cover every key (the
/// admin console's `SHOW CONFIG`).
#[cfg(test)]
pub(crate) use document::field_names;

use std::path::Path;

pub use model::{
    AuthQueryConfig, AuthType, ClientCertMode, Config, DatabaseConfig, Endpoint, NoReplica,
    PoolConfig, PoolMode, RoutingConfig, RoutingStrategy, ServerConfig, ServerTlsMode,
    SessionFeatures, SlowQueryConfig, TlsConfig, TlsMode, UserConfig,
};

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file, when the problem has a place.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `"pool.size"` or `"databases[1].primary"`.
    pub key: Option<String>,
    /// What is wrong, and where possible what to do about it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    /// `line 12: pool.sizee: unknown key`, parts left out when unknown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

/// Reads, parses and validates the config file at `path`. A read error is one problem.
pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem {
            line: None,
            key: None,
            message: format!("cannot read config file {}: {e}", path.display()),
        }]
    })?;
    parse(&text)
}

/// Parses and validates config text, returning every problem found (sorted by line). Only a
/// TOML syntax error stops early, since past it there is no document to check.
pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
    let (mut parsed, mut problems) = document::read(text).map_err(|p| vec![p])?;
    problems.extend(validate::validate(&mut parsed));
    if problems.is_empty() {
        return Ok(parsed.config);
    }
    // Problems without a line (rare) go last; equal lines keep discovery order.
    problems.sort_by_key(|p| (p.line.is_none(), p.line));
    Err(problems)
}
