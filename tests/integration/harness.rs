#![allow(dead_code)] // each test module uses a different subset of the harness
//! The integration harness: one real PostgreSQL primary with two streaming replicas (from
//! `lagoon::devcluster`, started once per test process and reaped when it exits), and Lagoon
//! proxies started in-process on port 0, one per test, each with its own config.

use std::net::SocketAddr;
use std::process::Output;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lagoon::app::{Proxy, Shared};
use lagoon::devcluster::{DevCluster, DevClusterOptions, PasswordEncryption};
use tokio_postgres::{Client, NoTls};

/// Test roles on the cluster: (name, password, how Postgres stores it).
/// `lagoon_plain` logs in to the server with a cleartext password and `lagoon_trust` with
/// none (the devcluster's pg_hba.conf says so); the others use SCRAM and md5.
pub const SCRAM_USER: (&str, &str) = ("lagoon_scram", "scram-pw");
pub const MD5_USER: (&str, &str) = ("lagoon_md5", "md5-pw");
pub const PLAIN_USER: (&str, &str) = ("lagoon_plain", "plain-pw");
pub const TRUST_USER: (&str, &str) = ("lagoon_trust", "trust-pw");
/// The database every test uses.
pub const DB: &str = "lagoon_test";

static CLUSTER: OnceLock<DevCluster> = OnceLock::new();

/// The shared cluster, started on first use. Panics (failing the test) with the devcluster's
/// own error when Postgres cannot be started: the tests need real servers.
pub fn cluster() -> &'static DevCluster {
    CLUSTER.get_or_init(|| {
        let c = DevCluster::start(DevClusterOptions::default())
            .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"));
        let must = |r: Result<_, lagoon::devcluster::DevClusterError>| {
            r.unwrap_or_else(|e| panic!("cannot prepare the test cluster: {e}"))
        };
        must(c.create_role(SCRAM_USER.0, SCRAM_USER.1, PasswordEncryption::Scram));
        must(c.create_role(MD5_USER.0, MD5_USER.1, PasswordEncryption::Md5));
        must(c.create_role(PLAIN_USER.0, PLAIN_USER.1, PasswordEncryption::Scram));
        must(c.create_role(TRUST_USER.0, TRUST_USER.1, PasswordEncryption::Scram));
        must(c.create_database(DB, SCRAM_USER.0));
        must(
            c.psql(
                &c.primary,
                DB,
                "GRANT ALL ON SCHEMA public TO PUBLIC; \
                 GRANT ALL ON DATABASE lagoon_test TO PUBLIC; \
                 ALTER ROLE lagoon_scram CREATEDB",
            )
            .map(drop),
        );
        c
    })
}

/// Runs SQL on the primary as the superuser (outside the proxy) and returns psql's output.
pub fn admin_sql(sql: &str) -> String {
    let c = cluster();
    c.psql(&c.primary, DB, sql)
        .unwrap_or_else(|e| panic!("admin sql failed: {sql}: {e}"))
}

/// A running in-process proxy. Dropping it shuts it down fast.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestProxy {
    /// `postgres://user:password@addr/db`
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{user}:{password}@{}:{}/{db}",
            self.addr.ip(),
            self.addr.port()
        )
    }

    /// key=value conninfo for tokio-postgres.
    pub fn conninfo(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host={} port={} user={user} password={password} dbname={db}",
            self.addr.ip(),
            self.addr.port()
        )
    }

    /// Connects through the proxy as the SCRAM test user.
    pub async fn connect(&self) -> Client {
        self.connect_as(SCRAM_USER.0, SCRAM_USER.1, DB).await
    }

    pub async fn connect_as(&self, user: &str, password: &str, db: &str) -> Client {
        self.try_connect(&self.conninfo(user, password, db))
            .await
            .unwrap_or_else(|e| panic!("connect as {user} to {db} failed: {e}"))
    }

    /// Connects with an arbitrary conninfo; the connection task runs in the background.
    pub async fn try_connect(&self, conninfo: &str) -> Result<Client, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::connect(conninfo, NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Graceful shutdown and wait for the proxy to finish.
    pub async fn stop(mut self, drain: Duration) {
        self.shared.shutdown.begin_drain(drain);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shared.shutdown.begin_fast();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// The default test config: the four test users (SCRAM client auth unless `auth` is given per
/// user) and the test database on the primary. `extra` is TOML appended to `[pool]`... see
/// [`start_proxy_with`] for full control.
pub fn base_config(pool: &str, server: &str) -> String {
    let c = cluster();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server}

[pool]
{pool}

[[users]]
name = "{su}"
password = "{sp}"

[[users]]
name = "{mu}"
password = "{mp}"
auth_type = "md5"

[[users]]
name = "{pu}"
password = "{pp}"

[[users]]
name = "{tu}"
auth_type = "trust"

[[databases]]
name = "{db}"
primary = "{url}"
"#,
        su = SCRAM_USER.0,
        sp = SCRAM_USER.1,
        mu = MD5_USER.0,
        mp = MD5_USER.1,
        pu = PLAIN_USER.0,
        pp = PLAIN_USER.1,
        tu = TRUST_USER.0,
        db = DB,
        url = c.url(&c.primary, DB),
    )
}

/// Starts a proxy with `base_config(pool, server)`.
pub async fn start_proxy(pool: &str, server: &str) -> TestProxy {
    start_proxy_with(&base_config(pool, server)).await
}

/// Starts a proxy from full config text (must listen on 127.0.0.1:0).
pub async fn start_proxy_with(config_text: &str) -> TestProxy {
    let config = lagoon::config::parse(config_text).unwrap_or_else(|p| {
        panic!(
            "test config invalid: {}",
            p.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    });
    let proxy = Proxy::bind(config).await.expect("bind proxy");
    let addr = proxy.local_addr().expect("local addr");
    let shared = Arc::clone(&proxy.shared);
    let task = tokio::spawn(proxy.run());
    TestProxy {
        addr,
        shared,
        task: Some(task),
    }
}

/// Runs a command-line client (psql, pgbench) with PGPASSWORD unset and returns its output.
pub async fn run_cmd(program: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).env_remove("PGPASSWORD").kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish in 300 s"))
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Asserts that a command-line client (psql, pgbench) exited 0, showing its output if not.
pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Path of a Postgres client binary (psql/pgbench): the cluster's bin dir if it has it, else
/// PATH.
pub fn pg_tool(name: &str) -> String {
    let p = cluster().bin_dir().join(name);
    if p.exists() {
        p.to_string_lossy().into_owned()
    } else {
        name.to_owned()
    }
}

/// Polls `check` until it returns true, up to `timeout`: waiting for an event without a fixed
/// sleep. Panics with `what` on timeout.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to 10 s) until `n` requests are queued in `pool`'s checkout queue.
pub async fn wait_for_waiters(what: &str, pool: &Arc<lagoon::pool::Pool>, n: usize) {
    eventually(what, Duration::from_secs(10), || {
        let p = Arc::clone(pool);
        async move { p.snapshot().2 == n }
    })
    .await;
}

/// The SQLSTATE of a tokio-postgres error, if the server (or proxy) sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_owned())
}

/// Checks a pgbench run: exit 0, every transaction processed, none failed.
pub fn check_pgbench(what: &str, out: &std::process::Output, expected: u64) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_success(what, out);
    let processed = format!("number of transactions actually processed: {expected}/{expected}");
    assert!(
        stdout.contains(&processed),
        "{what}: expected \"{processed}\"\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("number of failed transactions: 0 "),
        "{what}: failed transactions\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    eprintln!("{what}:\n{stdout}");
}
