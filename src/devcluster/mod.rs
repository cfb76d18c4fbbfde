//! A throwaway local PostgreSQL cluster: one primary and N streaming replicas, started from the
//! Postgres binaries into a temp dir. One piece of code serves `lagoon demo` and the integration
//! test harness, so what the demo shows is what the tests exercise.
//!
//! Owns: finding the binaries (`bindir`), running them as the `postgres` OS user when we are
//! root (`process`), the config text (`conf`), the server lifecycle (`member`) and a watchdog
//! that stops the servers if our process dies without `stop` (`reaper`). Does not own anything
//! about the proxy: it only hands out ports, connection strings and a `psql` helper.
//!
//! Blocking `std::process` code on purpose: it runs once at startup of a demo or a test binary,
//! outside any runtime, and must work from a plain `#[test]`.

mod bindir;
mod conf;
mod member;
mod process;
mod reaper;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use member::Servers;
use process::Cmd;
use reaper::{ReapPlan, Reaper};

/// How long `start` waits for every replica to show up as streaming on the primary.
const STREAMING_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval for the waits; short, since each poll is one `psql` run.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What to start. `Default` gives a primary with two replicas in a fresh temp dir.
#[derive(Debug, Clone)]
pub struct DevClusterOptions {
    /// Number of streaming replicas.
    pub replicas: usize,
    /// Directory with `initdb`, `pg_ctl`, `pg_basebackup` and `postgres`. `None` searches:
    /// `$LAGOON_PG_BIN`, `/usr/lib/postgresql/15/bin`, `pg_config --bindir`, then the highest
    /// `/usr/lib/postgresql/*/bin`.
    pub bin_dir: Option<PathBuf>,
    /// Where data dirs and logs go. `None` creates a temp dir and removes it on stop; a given
    /// dir is kept (with its logs) and must be usable by the `postgres` user when we are root.
    pub base_dir: Option<PathBuf>,
    /// Password of the `postgres` superuser (host logins use md5/SCRAM, never trust).
    pub superuser_password: String,
    /// Spawn a watchdog that stops the servers once this process is gone, for owners that are
    /// never dropped (a test harness's static) or get killed (Ctrl-C on `lagoon demo`).
    pub reap_on_parent_exit: bool,
    /// Extra `postgresql.conf` lines, applied after ours (so they override them) on every member.
    pub extra_conf: Vec<String>,
    /// Serve TLS (`ssl = on`) with this certificate and key on every member. Default none.
    pub tls: Option<ServerTls>,
}

/// A PEM certificate (chain) and private key for the servers' `ssl = on`. `Debug` hides the key.
#[derive(Clone)]
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl Default for DevClusterOptions {
    fn default() -> DevClusterOptions {
        DevClusterOptions {
            replicas: 2,
            bin_dir: None,
            base_dir: None,
            superuser_password: "lagoon-dev".to_owned(),
            reap_on_parent_exit: true,
            extra_conf: Vec::new(),
            tls: None,
        }
    }
}

/// One server of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `"primary"`, `"replica1"`, `"replica2"`, ... (also its `cluster_name` and, for replicas,
    /// its `application_name` in `pg_stat_replication`).
    pub name: String,
    /// Always `"127.0.0.1"`: the servers listen on TCP loopback only.
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
}

/// Why the cluster could not be started or queried. Command failures carry the command line,
/// its exit status and stderr, so a CI log alone explains the failure.
#[derive(Debug, thiserror::Error)]
pub enum DevClusterError {
    #[error("PostgreSQL binaries not found: {0}")]
    BinDirNotFound(String),
    #[error("no usable `postgres` OS user: {0}")]
    NoPostgresUser(String),
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error(
        "devcluster {member} did not start: `{command}` failed ({status}): {stderr}\n\
         --- last lines of {log} ---\n{log_tail}"
    )]
    Start {
        member: String,
        command: String,
        status: ExitStatus,
        stderr: String,
        /// Path of the member's server log.
        log: String,
        log_tail: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no devcluster member named {0:?} (have: {1})")]
    UnknownMember(String, String),
    #[error("timed out after {waited:?} waiting for {what} (last seen: {last})")]
    Timeout {
        what: String,
        waited: Duration,
        last: String,
    },
}

/// How `create_role` stores the password, which decides how the server authenticates the role
/// under the `md5` hba rule: a SCRAM verifier gets SCRAM-SHA-256, an md5 hash gets md5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordEncryption {
    Scram,
    Md5,
}

impl PasswordEncryption {
    fn guc_value(self) -> &'static str {
        match self {
            PasswordEncryption::Scram => "scram-sha-256",
            PasswordEncryption::Md5 => "md5",
        }
    }
}

/// A running cluster. Stopped (and its temp dir removed) by `stop` or on drop.
#[derive(Debug)]
pub struct DevCluster {
    pub primary: Member,
    pub replicas: Vec<Member>,
    /// Always `"postgres"`.
    pub superuser: String,
    pub superuser_password: String,
    servers: Servers,
}

impl DevCluster {
    /// initdb the primary, start it, clone and start the replicas, and wait until all of them
    /// stream from the primary. On any error everything started so far is stopped again.
    pub fn start(opts: DevClusterOptions) -> Result<DevCluster, DevClusterError> {
        let bin_dir = bindir::resolve(opts.bin_dir.as_deref())?;
        let runner = process::Runner::detect()?;
        let (base_dir, owns_base_dir) = match &opts.base_dir {
            Some(dir) => (runner.prepare_base_dir(dir)?, false),
            None => (runner.create_temp_base_dir()?, true),
        };
        let names: Vec<String> = std::iter::once("primary".to_owned())
            .chain((1..=opts.replicas).map(|i| format!("replica{i}")))
            .collect();
        let data_dirs = names.iter().map(|n| base_dir.join(n)).collect();
        let mut servers = Servers::new(runner, bin_dir, base_dir, owns_base_dir, data_dirs);
        if opts.reap_on_parent_exit {
            let pg_ctl = servers.bin("pg_ctl");
            let reaper = Reaper::spawn(&ReapPlan {
                pid: std::process::id(),
                runuser: servers.runner.runuser(),
                pg_ctl: &pg_ctl,
                data_dirs: servers.data_dirs(),
                remove_dir: servers
                    .owns_base_dir()
                    .then_some(servers.base_dir.as_path()),
            })?;
            servers.set_reaper(reaper);
        }

        let member = |name: &str, port: u16| Member {
            name: name.to_owned(),
            host: "127.0.0.1".to_owned(),
            port,
            data_dir: servers.base_dir.join(name),
        };
        let mut conf = opts.extra_conf.clone();
        if opts.tls.is_some() {
            // Postgres's defaults: server.crt and server.key in the data directory.
            conf.insert(0, "ssl = on".to_owned());
        }
        let write_tls = |dir: &Path| -> Result<(), DevClusterError> {
            if let Some(tls) = &opts.tls {
                servers
                    .runner
                    .write_file(&dir.join("server.crt"), &tls.cert_pem)?;
                servers
                    .runner
                    .write_file(&dir.join("server.key"), &tls.key_pem)?;
            }
            Ok(())
        };
        let primary_dir = servers.base_dir.join("primary");
        servers.initdb(&primary_dir, &opts.superuser_password)?;
        write_tls(&primary_dir)?;
        let primary = member("primary", servers.start("primary", &primary_dir, &conf)?);
        let mut replicas = Vec::with_capacity(opts.replicas);
        for name in &names[1..] {
            let dir = servers.base_dir.join(name);
            servers.basebackup(primary.port, &dir)?;
            write_tls(&dir)?;
            replicas.push(member(name, servers.start(name, &dir, &conf)?));
        }

        let cluster = DevCluster {
            primary,
            replicas,
            superuser: "postgres".to_owned(),
            superuser_password: opts.superuser_password,
            servers,
        };
        cluster.wait_streaming(STREAMING_TIMEOUT)?;
        tracing::info!(
            base_dir = %cluster.servers.base_dir.display(),
            primary = cluster.primary.port,
            replicas = ?cluster.replicas.iter().map(|r| r.port).collect::<Vec<_>>(),
            "devcluster started"
        );
        Ok(cluster)
    }

    /// The directory the Postgres binaries came from (for `pgbench`, `psql` of the same version).
    pub fn bin_dir(&self) -> &Path {
        &self.servers.bin_dir
    }

    /// `postgres://127.0.0.1:PORT/DB`, without credentials.
    pub fn url(&self, member: &Member, database: &str) -> String {
        format!(
            "postgres://{}:{}/{}",
            member.host,
            member.port,
            conf::url_path_segment(database)
        )
    }

    /// A `key=value` connection string (tokio-postgres, psql) for the superuser, password
    /// included, TLS off.
    pub fn superuser_conninfo(&self, member: &Member, database: &str) -> String {
        conf::conninfo(
            &member.host,
            member.port,
            &self.superuser,
            Some(&self.superuser_password),
            database,
        )
    }

    /// Runs `sql` through `psql -X -At -v ON_ERROR_STOP=1` as the superuser over TCP and returns
    /// its trimmed stdout (unaligned, tuples only: one row per line, `|` between columns).
    pub fn psql(
        &self,
        member: &Member,
        database: &str,
        sql: &str,
    ) -> Result<String, DevClusterError> {
        let conninfo = conf::conninfo(&member.host, member.port, &self.superuser, None, database);
        let out = Cmd::new(self.psql_program())
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(conninfo)
            .arg("-c")
            .arg(sql)
            .env("PGPASSWORD", &self.superuser_password)
            .env("PGCONNECT_TIMEOUT", "10")
            .run()?;
        Ok(out.trim().to_owned())
    }

    /// The `psql` next to the server binaries (same version), else the one on `PATH`.
    fn psql_program(&self) -> PathBuf {
        let bundled = self.servers.bin("psql");
        if bundled.is_file() {
            bundled
        } else {
            PathBuf::from("psql")
        }
    }

    /// Creates a login role whose password is stored as `enc` (set per call through
    /// `password_encryption`). If the role exists its password is reset instead, so tests can
    /// call this unconditionally.
    pub fn create_role(
        &self,
        name: &str,
        password: &str,
        enc: PasswordEncryption,
    ) -> Result<(), DevClusterError> {
        let exists = self.psql(
            &self.primary,
            "postgres",
            &format!(
                "SELECT 1 FROM pg_roles WHERE rolname = {}",
                conf::quote_literal(name)
            ),
        )? == "1";
        let verb = if exists { "ALTER ROLE" } else { "CREATE ROLE" };
        let sql = format!(
            "SET password_encryption = '{}'; {verb} {} WITH LOGIN PASSWORD {}",
            enc.guc_value(),
            conf::quote_ident(name),
            conf::quote_literal(password)
        );
        self.psql(&self.primary, "postgres", &sql).map(drop)
    }

    /// Creates `name` owned by `owner`; if it exists, only makes sure of the owner.
    pub fn create_database(&self, name: &str, owner: &str) -> Result<(), DevClusterError> {
        let exists = self.psql(
            &self.primary,
            "postgres",
            &format!(
                "SELECT 1 FROM pg_database WHERE datname = {}",
                conf::quote_literal(name)
            ),
        )? == "1";
        // Separate statements: CREATE DATABASE cannot run inside the implicit transaction of
        // a multi-statement query string.
        let sql = if exists {
            format!(
                "ALTER DATABASE {} OWNER TO {}",
                conf::quote_ident(name),
                conf::quote_ident(owner)
            )
        } else {
            format!(
                "CREATE DATABASE {} OWNER {}",
                conf::quote_ident(name),
                conf::quote_ident(owner)
            )
        };
        self.psql(&self.primary, "postgres", &sql).map(drop)
    }

    /// A WAL position on the primary that covers everything committed before this call, and
    /// that replicas will receive without waiting for more WAL. The cluster runs with
    /// `synchronous_commit = off`, so recent commits may still sit in WAL buffers, beyond
    /// `pg_current_wal_lsn()` (the write position) and unsent to replicas; a transaction that
    /// commits with `synchronous_commit = on` flushes them. Its insert position is taken before
    /// its own commit record, so even one at a page boundary is passed by that record's replay.
    pub fn primary_flush_lsn(&self) -> Result<String, DevClusterError> {
        let out = self.psql(
            &self.primary,
            "postgres",
            "SET synchronous_commit = on; SELECT txid_current(); \
             SELECT pg_current_wal_insert_lsn()",
        )?;
        Ok(out.lines().last().unwrap_or_default().trim().to_owned())
    }

    /// Waits until every replica has replayed everything committed on the primary before this
    /// call (see [`DevCluster::primary_flush_lsn`]), so it is visible on all replicas.
    pub fn wait_replicas_caught_up(&self, timeout: Duration) -> Result<(), DevClusterError> {
        let target = self.primary_flush_lsn()?;
        let sql = format!(
            "SELECT coalesce(pg_last_wal_replay_lsn() >= {}::pg_lsn, false), \
             coalesce(pg_last_wal_replay_lsn()::text, 'none')",
            conf::quote_literal(&target)
        );
        let deadline = Instant::now() + timeout;
        for replica in &self.replicas {
            poll_until(
                deadline,
                timeout,
                || format!("{} to replay up to {target}", replica.name),
                || {
                    // Unaligned output: "t|0/3000148".
                    let out = self.psql(replica, "postgres", &sql)?;
                    let (done, lsn) = out.split_once('|').unwrap_or(("f", &out));
                    Ok((done == "t", format!("replay_lsn {lsn}")))
                },
            )?;
        }
        Ok(())
    }

    /// Waits until `pg_stat_replication` on the primary lists every replica as streaming
    /// (e.g. after [`DevCluster::start_member`] brought the primary or a replica back).
    pub fn wait_streaming(&self, timeout: Duration) -> Result<(), DevClusterError> {
        if self.replicas.is_empty() {
            return Ok(());
        }
        let want = self.replicas.len();
        let sql = "SELECT coalesce(string_agg(application_name || '=' || state, ',' \
                   ORDER BY application_name), '') FROM pg_stat_replication";
        poll_until(
            Instant::now() + timeout,
            timeout,
            || format!("{want} replicas to stream from the primary"),
            || {
                let out = self.psql(&self.primary, "postgres", sql)?;
                let streaming = out.split(',').filter(|s| s.ends_with("=streaming")).count();
                Ok((streaming >= want, format!("pg_stat_replication: [{out}]")))
            },
        )
    }

    /// The member called `name` (`"primary"`, `"replica1"`, ...).
    pub fn member(&self, name: &str) -> Result<&Member, DevClusterError> {
        std::iter::once(&self.primary)
            .chain(&self.replicas)
            .find(|m| m.name == name)
            .ok_or_else(|| {
                let have = std::iter::once(&self.primary)
                    .chain(&self.replicas)
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                DevClusterError::UnknownMember(name.to_owned(), have)
            })
    }

    /// Stops one member (`pg_ctl stop -m fast`, `-m immediate` if that fails) and waits until
    /// it is gone, for tests of a server going away. Its clients get `57P01` and its port
    /// refuses connections until [`DevCluster::start_member`]. Stopping a stopped member is a
    /// no-op. The primary's replicas keep retrying to stream and reconnect once it is back.
    pub fn stop_member(&self, name: &str) -> Result<(), DevClusterError> {
        let member = self.member(name)?;
        self.servers.stop_server(&member.data_dir)
    }

    /// Starts a member that [`DevCluster::stop_member`] stopped, on the same port and with the
    /// same config (a replica stays a streaming standby of the primary), and waits until it
    /// accepts connections. Whether a replica streams again is [`DevCluster::wait_streaming`]'s
    /// question. Starting a running member fails (`pg_ctl` refuses).
    pub fn start_member(&self, name: &str) -> Result<(), DevClusterError> {
        let member = self.member(name)?;
        self.servers.restart(&member.name, &member.data_dir)
    }

    /// Stops every server (`-m fast`, `-m immediate` if that fails), removes the temp base dir
    /// and kills the reaper. Idempotent; errors are logged since this also runs from `Drop`.
    pub fn stop(&mut self) {
        self.servers.stop_all();
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `check` (which returns "done?" and a description of what it saw) until it is done or
/// `deadline` passes. Errors from `check` count as "not yet": a server may still be coming up.
fn poll_until(
    deadline: Instant,
    waited: Duration,
    what: impl Fn() -> String,
    mut check: impl FnMut() -> Result<(bool, String), DevClusterError>,
) -> Result<(), DevClusterError> {
    loop {
        let last = match check() {
            Ok((true, _)) => return Ok(()),
            Ok((false, seen)) => seen,
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(DevClusterError::Timeout {
                what: what(),
                waited,
                last,
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
