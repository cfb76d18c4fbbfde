//! Finding the PostgreSQL server binaries (`initdb`, `pg_ctl`, `pg_basebackup`, `postgres`).
//!
//! Order: an explicit `DevClusterOptions::bin_dir`, then `$LAGOON_PG_BIN`, then the Postgres 15
//! Debian/Ubuntu path the CI installs, then `pg_config --bindir`, then the highest version under
//! `/usr/lib/postgresql/*/bin`. An explicit choice (option or env var) that lacks a binary is an
//! error rather than a silent fallback: the caller asked for that version.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::DevClusterError;
use super::process::Cmd;

/// Env var that overrides the search.
pub(crate) const ENV_VAR: &str = "LAGOON_PG_BIN";
/// The version the project targets, where Debian/Ubuntu packages put it.
pub(crate) const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// Where Debian/Ubuntu install every major version side by side.
pub(crate) const VERSIONS_ROOT: &str = "/usr/lib/postgresql";

/// The binaries a dev cluster needs. `psql` is optional (falls back to `PATH`).
const REQUIRED: [&str; 4] = ["initdb", "pg_ctl", "pg_basebackup", "postgres"];

/// Resolves the bin dir from the process environment (see the module docs for the order).
pub(crate) fn resolve(explicit: Option<&Path>) -> Result<PathBuf, DevClusterError> {
    let found = match explicit {
        Some(dir) => check(dir, "DevClusterOptions::bin_dir"),
        None => resolve_from(
            std::env::var_os(ENV_VAR),
            Path::new(DEFAULT_BIN_DIR),
            pg_config_bindir,
            Path::new(VERSIONS_ROOT),
        ),
    };
    let dir = found.map_err(DevClusterError::BinDirNotFound)?;
    // Commands run with cwd "/", so a relative path must be made absolute now.
    std::path::absolute(&dir).map_err(|source| DevClusterError::Io {
        context: format!("making {} absolute", dir.display()),
        source,
    })
}

/// The search itself, with every input injectable so tests need no Postgres install.
pub(crate) fn resolve_from(
    env: Option<OsString>,
    default_dir: &Path,
    pg_config: impl FnOnce() -> Option<PathBuf>,
    versions_root: &Path,
) -> Result<PathBuf, String> {
    if let Some(env) = env.filter(|v| !v.is_empty()) {
        return check(Path::new(&env), ENV_VAR);
    }
    if is_bin_dir(default_dir) {
        return Ok(default_dir.to_path_buf());
    }
    let from_pg_config = pg_config();
    if let Some(dir) = from_pg_config.as_ref().filter(|d| is_bin_dir(d)) {
        return Ok(dir.clone());
    }
    if let Some(dir) = highest_version(versions_root) {
        return Ok(dir);
    }
    Err(format!(
        "looked in ${ENV_VAR} (unset), {}, `pg_config --bindir` ({}) and {}/*/bin; \
         install PostgreSQL (e.g. apt-get install postgresql-15) or set {ENV_VAR} to the \
         directory holding {}",
        default_dir.display(),
        from_pg_config.map_or_else(|| "unavailable".to_owned(), |d| d.display().to_string()),
        versions_root.display(),
        REQUIRED.join(", "),
    ))
}

fn check(dir: &Path, source: &str) -> Result<PathBuf, String> {
    match REQUIRED.iter().find(|bin| !dir.join(bin).is_file()) {
        None => Ok(dir.to_path_buf()),
        Some(missing) => Err(format!(
            "{source} is {} but it has no `{missing}`",
            dir.display()
        )),
    }
}

fn is_bin_dir(dir: &Path) -> bool {
    check(dir, "").is_ok()
}

/// `VERSIONS_ROOT/<version>/bin` with the highest version (compared numerically: 9.6 < 10 < 16).
fn highest_version(root: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(root).ok()?;
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = version_key(entry.file_name().to_str()?)?;
            let bin = entry.path().join("bin");
            is_bin_dir(&bin).then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = Cmd::new("pg_config").arg("--bindir").run().ok()?;
    let dir = out.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devcluster::test_support::TempDir;

    fn fake_bin(dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).expect("create fake bin dir");
        for bin in REQUIRED {
            std::fs::write(dir.join(bin), "").expect("write fake binary");
        }
        dir.to_path_buf()
    }

    #[test]
    fn env_var_wins_over_everything() {
        let tmp = TempDir::new("bindir-env");
        let env = fake_bin(&tmp.path().join("env"));
        let default = fake_bin(&tmp.path().join("default"));
        let found = resolve_from(Some(env.clone().into()), &default, || None, tmp.path());
        assert_eq!(found, Ok(env));
    }

    #[test]
    fn env_var_pointing_at_an_incomplete_dir_is_an_error_not_a_fallback() {
        let tmp = TempDir::new("bindir-env-bad");
        let env = tmp.path().join("env");
        std::fs::create_dir_all(&env).expect("mkdir");
        std::fs::write(env.join("initdb"), "").expect("write");
        let default = fake_bin(&tmp.path().join("default"));
        let err = resolve_from(Some(env.into()), &default, || None, tmp.path())
            .expect_err("incomplete env dir must fail");
        assert!(err.contains(ENV_VAR) && err.contains("pg_ctl"), "{err}");
    }

    #[test]
    fn empty_env_var_counts_as_unset() {
        let tmp = TempDir::new("bindir-env-empty");
        let default = fake_bin(&tmp.path().join("default"));
        let found = resolve_from(Some(OsString::new()), &default, || None, tmp.path());
        assert_eq!(found, Ok(default));
    }

    #[test]
    fn default_dir_before_pg_config() {
        let tmp = TempDir::new("bindir-default");
        let default = fake_bin(&tmp.path().join("default"));
        let other = fake_bin(&tmp.path().join("pgconfig"));
        let found = resolve_from(None, &default, || Some(other), tmp.path());
        assert_eq!(found, Ok(default));
    }

    #[test]
    fn pg_config_before_version_scan() {
        let tmp = TempDir::new("bindir-pgconfig");
        let other = fake_bin(&tmp.path().join("pgconfig"));
        let root = tmp.path().join("versions");
        fake_bin(&root.join("16/bin"));
        let found = resolve_from(
            None,
            &tmp.path().join("none"),
            || Some(other.clone()),
            &root,
        );
        assert_eq!(found, Ok(other));
    }

    #[test]
    fn version_scan_picks_the_highest_complete_version_numerically() {
        let tmp = TempDir::new("bindir-versions");
        let root = tmp.path().join("versions");
        fake_bin(&root.join("9.6/bin"));
        fake_bin(&root.join("10/bin"));
        // 17 is incomplete (no binaries) and "latest" is not a version: both skipped.
        std::fs::create_dir_all(root.join("17/bin")).expect("mkdir");
        fake_bin(&root.join("latest/bin"));
        let bogus_pg_config = tmp.path().join("nothing-here");
        let found = resolve_from(
            None,
            &tmp.path().join("none"),
            || Some(bogus_pg_config),
            &root,
        );
        assert_eq!(found, Ok(root.join("10/bin")));
    }

    #[test]
    fn nothing_found_says_what_was_tried() {
        let tmp = TempDir::new("bindir-none");
        let err = resolve_from(None, &tmp.path().join("none"), || None, tmp.path())
            .expect_err("nothing installed");
        assert!(err.contains(ENV_VAR) && err.contains("pg_config"), "{err}");
    }
}
