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
///
/// The servers run with `ssl = on` (a certificate from [`crate::certs::pki`]), as managed
/// Postgres does: Lagoon's default `server_tls = "prefer"` then encrypts every server
/// connection the suite opens, and the TLS tests verify them against the test CA.
pub fn cluster() -> &'static DevCluster {
    CLUSTER.get_or_init(|| {
        let pki = crate::certs::pki();
        start_test_cluster(DevClusterOptions {
            tls: Some(lagoon::devcluster::ServerTls {
                cert_pem: pki.server_cert_pem.clone(),
                key_pem: pki.server_key_pem.clone(),
            }),
            ..DevClusterOptions::default()
        })
    })
}

/// Starts a cluster with the test roles and the test database: what every test cluster has.
fn start_test_cluster(options: DevClusterOptions) -> DevCluster {
    let c =
        DevCluster::start(options).unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"));
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
{users}
[[databases]]
name = "{db}"
primary = "{url}"
"#,
        users = users_toml(),
        db = DB,
        url = c.url(&c.primary, DB),
    )
}

/// The `[[users]]` entries of the four test users.
fn users_toml() -> String {
    format!(
        r#"
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
"#,
        su = SCRAM_USER.0,
        sp = SCRAM_USER.1,
        mu = MD5_USER.0,
        mp = MD5_USER.1,
        pu = PLAIN_USER.0,
        pp = PLAIN_USER.1,
        tu = TRUST_USER.0,
    )
}

/// Starts a proxy with `base_config(pool, server)`.
pub async fn start_proxy(pool: &str, server: &str) -> TestProxy {
    start_proxy_with(&base_config(pool, server)).await
}

/// `"a", "b"`: strings as the inside of a TOML array.
pub fn toml_strings(items: &[String]) -> String {
    items
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The URLs of `c`'s replicas for database `db`, as the inside of a TOML `replicas` array.
pub fn replica_urls_toml(c: &DevCluster, db: &str) -> String {
    let urls: Vec<String> = c.replicas.iter().map(|r| c.url(r, db)).collect();
    toml_strings(&urls)
}

/// Parses and validates a test config, panicking with every problem.
pub fn parse_config(config_text: &str) -> lagoon::config::Config {
    lagoon::config::parse(config_text).unwrap_or_else(|p| {
        panic!(
            "test config invalid: {}",
            p.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

/// Starts a proxy from full config text (must listen on 127.0.0.1:0).
pub async fn start_proxy_with(config_text: &str) -> TestProxy {
    let proxy = Proxy::bind(parse_config(config_text))
        .await
        .expect("bind proxy");
    run_proxy(proxy)
}

/// Runs a bound proxy on its own task.
fn run_proxy(proxy: Proxy) -> TestProxy {
    let addr = proxy.local_addr().expect("local addr");
    let shared = Arc::clone(&proxy.shared);
    let task = tokio::spawn(proxy.run());
    TestProxy {
        addr,
        shared,
        task: Some(task),
    }
}

/// Like [`start_proxy_with`], with the kernel send buffer of every client connection cut to
/// `bytes` (set on the listener, which accepted sockets inherit): the proxy's writes to a
/// client that reads slowly then hit a full socket, as on a real network.
pub async fn start_proxy_small_sndbuf(config_text: &str, bytes: i32) -> TestProxy {
    use std::os::fd::AsRawFd;
    let proxy = Proxy::bind(parse_config(config_text))
        .await
        .expect("bind proxy");
    let fd = proxy.listener().as_raw_fd();
    // SAFETY: a valid socket fd we own for the call, and a c_int option of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_SNDBUF");
    run_proxy(proxy)
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

/// The message of a tokio-postgres error the server (or proxy) sent; empty for others.
pub fn error_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default()
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

// --- The routing cluster (issue 4) ---------------------------------------------------------

static ROUTING_CLUSTER: OnceLock<DevCluster> = OnceLock::new();
static ROUTING_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A second primary + 2 replicas for the routing tests, started on first use. Those tests
/// pause replay, delay apply and stop servers, which must not disturb the ~300 tests sharing
/// [`cluster()`]. Same roles and database as `cluster()`, plus the `rt_*` objects the routing
/// tests use (already replayed on both replicas when this returns), and a short
/// `wal_retrieve_retry_interval` so replicas reconnect quickly to a restarted primary.
/// Tests that use it hold [`routing_lock`] for their whole run.
pub fn routing_cluster() -> &'static DevCluster {
    ROUTING_CLUSTER.get_or_init(|| {
        let c = start_test_cluster(DevClusterOptions {
            extra_conf: vec!["wal_retrieve_retry_interval = '200ms'".to_owned()],
            ..DevClusterOptions::default()
        });
        c.psql(
            &c.primary,
            DB,
            "CREATE TABLE rt_items (id bigserial PRIMARY KEY, v int NOT NULL); \
             CREATE TABLE rt_bulk (id int NOT NULL, pad text NOT NULL); \
             CREATE TABLE rt_ryw (tag text NOT NULL); \
             CREATE SEQUENCE rt_seq; \
             CREATE FUNCTION rt_insert_marker(m int) RETURNS int LANGUAGE sql AS \
               $$ INSERT INTO rt_items (v) VALUES (m); SELECT inet_server_port() $$; \
             INSERT INTO rt_items (v) VALUES (0); \
             GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC; \
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO PUBLIC",
        )
        .unwrap_or_else(|e| panic!("cannot create the routing test schema: {e}"));
        c.wait_replicas_caught_up(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("routing cluster replicas do not catch up: {e}"));
        c
    })
}

/// Serializes the routing tests among themselves (they disrupt the routing cluster). Take it
/// first thing and keep the guard to the end; create disruption guards after it, so they are
/// dropped (and clean up) before the next test gets the lock. A tokio mutex: a test that
/// panics while holding it does not poison it.
pub async fn routing_lock() -> tokio::sync::MutexGuard<'static, ()> {
    ROUTING_LOCK.lock().await
}

/// The routing cluster's primary port.
pub fn primary_port() -> u16 {
    routing_cluster().primary.port
}

/// The routing cluster's replica ports, replica1 first.
pub fn replica_ports() -> Vec<u16> {
    routing_cluster().replicas.iter().map(|r| r.port).collect()
}

/// `postgres://127.0.0.1:PORT/lagoon_test` of a routing cluster member or any other port (a
/// delay proxy, a closed port).
pub fn member_url(port: u16) -> String {
    format!("postgres://127.0.0.1:{port}/{DB}")
}

/// A full config for the routing cluster: the test users, `[routing]` with `extra_routing`
/// (defaults for the keys it leaves out), and the test database with the routing cluster's
/// primary and `replicas` as its replica URLs (an empty slice: both replicas of the routing
/// cluster).
pub fn routing_config(extra_routing: &str, replicas: &[String]) -> String {
    let c = routing_cluster();
    let replicas = if replicas.is_empty() {
        replica_urls_toml(c, DB)
    } else {
        toml_strings(replicas)
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[pool]
size = 10

[routing]
{extra_routing}
{users}
[[databases]]
name = "{db}"
primary = "{primary}"
replicas = [{replicas}]
"#,
        users = users_toml(),
        db = DB,
        primary = c.url(&c.primary, DB),
    )
}

/// Superuser SQL on a routing cluster member (`"primary"`, `"replica1"`, ...), off the runtime
/// threads (psql is a blocking child process). Panics on failure.
pub async fn routing_sql(member: &str, database: &str, sql: &str) -> String {
    let (member, database, sql) = (member.to_owned(), database.to_owned(), sql.to_owned());
    tokio::task::spawn_blocking(move || {
        let c = routing_cluster();
        let m = c
            .member(&member)
            .unwrap_or_else(|e| panic!("routing cluster: {e}"));
        c.psql(m, &database, &sql)
            .unwrap_or_else(|e| panic!("sql on {member} failed: {sql}: {e}"))
    })
    .await
    .expect("routing_sql panicked")
}

/// The port of the server that answered `SELECT inet_server_port()` (simple protocol).
pub async fn try_served_by(client: &Client) -> Result<u16, tokio_postgres::Error> {
    let msgs = client.simple_query("SELECT inet_server_port()").await?;
    let port = msgs
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("SELECT inet_server_port() returned no row");
    Ok(port
        .parse()
        .unwrap_or_else(|_| panic!("inet_server_port() = {port:?}")))
}

/// [`try_served_by`], panicking on error.
pub async fn served_by(client: &Client) -> u16 {
    try_served_by(client)
        .await
        .unwrap_or_else(|e| panic!("SELECT inet_server_port() failed: {e}"))
}
