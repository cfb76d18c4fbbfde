//! Everything a run shares: the Postgres cluster (from `lagoon::devcluster`, as `lagoon demo`
//! and the tests start it), the bench roles and pgbench tables, a temp dir the `postgres` OS
//! user can use (PgBouncer refuses to run as root), and the tools found on this machine.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use lagoon::devcluster::{DevCluster, DevClusterOptions, Member, PasswordEncryption};
use md5::{Digest, Md5};

use crate::args::Settings;

/// The role most scenarios use; Postgres stores its password as md5 so PgBouncer can log in
/// with the md5 hash from its userlist (the usual PgBouncer setup).
pub const MD5_USER: (&str, &str) = ("bench", "bench-pw");
/// The role of the SCRAM scenario (`-C`), stored as a SCRAM verifier.
pub const SCRAM_USER: (&str, &str) = ("bench_scram", "bench-scram-pw");
/// The database pgbench's tables live in.
pub const DB: &str = "bench";

pub struct Setup {
    pub cluster: DevCluster,
    /// Scratch files: configs, proxy logs, pgbench logs, certificates.
    pub dir: PathBuf,
    keep_dir: bool,
    /// uid/gid PgBouncer runs as (the `postgres` user when we are root, else ourselves).
    pub run_as: Option<(u32, u32)>,
    pub pgbench: PathBuf,
    /// PgBouncer's path and version ("1.18.0") when installed.
    pub pgbouncer: Option<(PathBuf, String)>,
    pub postgres_version: String,
    /// Self-signed certificate and key for the TLS scenario (`openssl` CLI), when available.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Setup {
    pub fn start(s: &Settings, replicas: usize, keep_dir: bool) -> Result<Setup, String> {
        let dir = std::env::temp_dir().join(format!("lagoon-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let run_as = postgres_ids();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        }

        eprintln!("starting Postgres (primary + {replicas} replicas)...");
        let cluster = DevCluster::start(DevClusterOptions {
            replicas,
            // Direct Postgres serves the 1,000-client scenario itself.
            extra_conf: vec!["max_connections = 1200".to_owned()],
            ..DevClusterOptions::default()
        })
        .map_err(|e| e.to_string())?;
        pg(cluster.create_role(MD5_USER.0, MD5_USER.1, PasswordEncryption::Md5))?;
        pg(cluster.create_role(SCRAM_USER.0, SCRAM_USER.1, PasswordEncryption::Scram))?;
        pg(cluster.create_database(DB, MD5_USER.0))?;
        let postgres_version = pg(cluster.psql(&cluster.primary, DB, "SHOW server_version"))?;

        let pgbench = {
            let bundled = cluster.bin_dir().join("pgbench");
            if bundled.is_file() {
                bundled
            } else {
                PathBuf::from("pgbench")
            }
        };
        let mut setup = Setup {
            cluster,
            dir,
            keep_dir,
            run_as,
            pgbench,
            pgbouncer: find_pgbouncer(),
            postgres_version,
            tls: None,
        };
        eprintln!("pgbench -i -s {} ...", s.scale);
        let out = Command::new(&setup.pgbench)
            .args(["-i", "-q", "-s", &s.scale.to_string()])
            .arg(setup.direct_url(MD5_USER.0))
            .env("PGPASSWORD", MD5_USER.1)
            .env("PGSSLMODE", "disable")
            .output()
            .map_err(|e| format!("cannot run pgbench: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pgbench -i failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        pg(setup.cluster.psql(
            &setup.cluster.primary,
            DB,
            &format!(
                "GRANT ALL ON ALL TABLES IN SCHEMA public TO {}",
                SCRAM_USER.0
            ),
        ))?;
        if replicas > 0 {
            pg(setup
                .cluster
                .wait_replicas_caught_up(std::time::Duration::from_secs(120)))?;
        }
        setup.tls = make_certificate(&setup.dir, run_as);
        Ok(setup)
    }

    /// `postgresql://USER@127.0.0.1:PORT/bench` for the primary (password via PGPASSWORD).
    pub fn direct_url(&self, user: &str) -> String {
        url(user, self.cluster.primary.port)
    }

    pub fn members_url(&self, member: &Member) -> String {
        self.cluster.url(member, DB)
    }

    /// Makes `path` (a file the driver wrote) readable by PgBouncer's user only.
    pub fn give_to_runner(&self, path: &Path, mode: u32) -> Result<(), String> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Turns TLS on in the primary with the bench certificate (copied into its data dir,
    /// owned by the server's user, as Postgres requires of a key). Later plain runs pass
    /// PGSSLMODE=disable, so this only changes the TLS scenario.
    pub fn enable_primary_tls(&self) -> Result<(), String> {
        let (cert, key) = self.tls.as_ref().ok_or("no certificate")?;
        let data = &self.cluster.primary.data_dir;
        for (src, name) in [(cert, "bench.crt"), (key, "bench.key")] {
            let dst = data.join(name);
            std::fs::copy(src, &dst).map_err(|e| format!("{}: {e}", dst.display()))?;
            self.give_to_runner(&dst, 0o600)?;
        }
        // One statement per call: ALTER SYSTEM cannot run in a multi-statement string.
        for sql in [
            "ALTER SYSTEM SET ssl_cert_file = 'bench.crt'",
            "ALTER SYSTEM SET ssl_key_file = 'bench.key'",
            "ALTER SYSTEM SET ssl = on",
            "SELECT pg_reload_conf()",
        ] {
            pg(self.cluster.psql(&self.cluster.primary, DB, sql))?;
        }
        Ok(())
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if self.keep_dir {
            eprintln!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A devcluster result with its error as text.
fn pg<T>(r: Result<T, lagoon::devcluster::DevClusterError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

/// `postgresql://USER@127.0.0.1:PORT/bench`.
pub fn url(user: &str, port: u16) -> String {
    format!("postgresql://{user}@127.0.0.1:{port}/{DB}")
}

/// PgBouncer's userlist form of an md5 password: "md5" + md5(password || user).
pub fn md5_secret(user: &str, password: &str) -> String {
    let digest = Md5::digest(format!("{password}{user}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("md5{hex}")
}

/// The `postgres` OS user's uid and gid when we are root (PgBouncer will not run as root).
fn postgres_ids() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// `pgbouncer` on PATH or in /usr/sbin, with its version.
fn find_pgbouncer() -> Option<(PathBuf, String)> {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")]);
    for dir in candidates {
        let path = dir.join("pgbouncer");
        if !path.is_file() {
            continue;
        }
        let out = Command::new(&path).arg("--version").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "PgBouncer 1.18.0"
        let version = text
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("unknown")
            .to_owned();
        return Some((path, version));
    }
    None
}

/// A self-signed certificate for 127.0.0.1/localhost from the `openssl` CLI, readable by
/// PgBouncer's user; `None` (the TLS scenario is skipped) without openssl.
fn make_certificate(dir: &Path, run_as: Option<(u32, u32)>) -> Option<(PathBuf, PathBuf)> {
    let cert = dir.join("bench.crt");
    let key = dir.join("bench.key");
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        return None;
    }
    for p in [&cert, &key] {
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600));
        if let Some((uid, gid)) = run_as {
            let _ = std::os::unix::fs::chown(p, Some(uid), Some(gid));
        }
    }
    Some((cert, key))
}
