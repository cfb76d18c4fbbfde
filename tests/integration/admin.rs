//! The admin console (connect to `server.admin_database` as one of `server.admin_users`):
//! every command through real psql with its columns and plausible values, refusals
//! (non-admin user, unknown command, extended protocol, oversized message), and the control
//! commands' effect on pooled clients: KILL ends them and holds new requests until RESUME,
//! PAUSE waits for an open transaction, times out leaving the database paused, SHUTDOWN
//! drains. Each test has its own proxy: pauses are per proxy, so other modules sharing the
//! Postgres cluster are not affected.

use std::collections::HashMap;
use std::process::Output;
use std::time::Duration;

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::*;

const ADMIN_DB: &str = "lagoon";
/// `[server]` lines making the SCRAM test user an admin.
const ADMIN: &str = "admin_users = [\"lagoon_scram\"]";
/// psql's field separator in these tests: a byte no value contains.
const SEP: &str = "\x1f";

async fn admin_proxy(pool: &str, extra_server: &str) -> TestProxy {
    start_proxy(pool, &format!("{ADMIN}\n{extra_server}")).await
}

/// Runs `sql` with psql on the admin database as `user` (unaligned, `SEP`-separated,
/// header on, no footer, SQLSTATE in error messages).
async fn psql(proxy: &TestProxy, user: (&str, &str), sql: &str) -> Output {
    let mut cmd = tokio::process::Command::new(pg_tool("psql"));
    cmd.args([
        "-X",
        "-w",
        "-A",
        "-F",
        SEP,
        "-P",
        "footer=off",
        "-v",
        "VERBOSITY=verbose",
        "-h",
        &proxy.addr.ip().to_string(),
        "-p",
        &proxy.addr.port().to_string(),
        "-U",
        user.0,
        "-d",
        ADMIN_DB,
        "-c",
        sql,
    ])
    .env("PGPASSWORD", user.1)
    .env("PGAPPNAME", "admin-test")
    .env_remove("PGSSLMODE")
    .env_remove("PGSERVICE")
    .env_remove("PGOPTIONS")
    .env("PGCONNECT_TIMEOUT", "10")
    .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("psql did not finish in 60 s")
        .expect("run psql")
}

/// A result as psql printed it: header and rows, each a map column -> value.
struct Table {
    rows: Vec<HashMap<String, String>>,
}

impl Table {
    /// Rows where every (column, value) of `filter` matches.
    fn find(&self, filter: &[(&str, &str)]) -> Vec<&HashMap<String, String>> {
        self.rows
            .iter()
            .filter(|r| {
                filter
                    .iter()
                    .all(|(k, v)| r.get(*k).map(String::as_str) == Some(v))
            })
            .collect()
    }

    fn one(&self, filter: &[(&str, &str)]) -> &HashMap<String, String> {
        match self.find(filter)[..] {
            [r] => r,
            ref v => panic!("{} rows match {filter:?} in {:?}", v.len(), self.rows),
        }
    }
}

/// Runs one SHOW through psql and parses it, checking the header is exactly `columns`.
async fn show(proxy: &TestProxy, what: &str, columns: &[&str]) -> Table {
    let out = psql(proxy, SCRAM_USER, &format!("SHOW {what}")).await;
    assert_success(&format!("psql SHOW {what}"), &out);
    let text = String::from_utf8(out.stdout).expect("psql output is UTF-8");
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(SEP)
        .map(str::to_owned)
        .collect();
    assert_eq!(header, columns, "SHOW {what} columns");
    let rows = lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(SEP).map(str::to_owned))
                .collect()
        })
        .collect();
    Table { rows }
}

fn int(row: &HashMap<String, String>, col: &str) -> i64 {
    let v = row
        .get(col)
        .unwrap_or_else(|| panic!("no {col} in {row:?}"));
    v.parse()
        .unwrap_or_else(|_| panic!("{col} = {v:?} is not an integer in {row:?}"))
}

/// The rows of a simple query through tokio-postgres, as maps.
async fn rows(c: &Client, sql: &str) -> Vec<HashMap<String, Option<String>>> {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_owned(), r.get(i).map(str::to_owned)))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// `cl_waiting` of (lagoon_test, lagoon_scram) in SHOW POOLS, through the admin client.
async fn cl_waiting(admin: &Client) -> i64 {
    rows(admin, "SHOW POOLS")
        .await
        .iter()
        .find(|r| {
            r["database"].as_deref() == Some(DB) && r["user"].as_deref() == Some(SCRAM_USER.0)
        })
        .and_then(|r| r["cl_waiting"].as_deref()?.parse().ok())
        .unwrap_or(0)
}

async fn admin_client(proxy: &TestProxy) -> Client {
    proxy.connect_as(SCRAM_USER.0, SCRAM_USER.1, ADMIN_DB).await
}

const QUERIES: &[&str] = &[
    "fingerprint",
    "query",
    "calls",
    "total_ms",
    "mean_ms",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "mean_pool_wait_ms",
    "mean_server_ms",
    "mean_client_ms",
    "rows",
    "errors",
    "slow",
];

const POOLS: &[&str] = &[
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
    "pool_size",
    "members",
];

const CLIENTS: &[&str] = &[
    "type",
    "user",
    "database",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
    "prepared_statements",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_show_through_psql() {
    let c = cluster();
    let config = format!(
        "{}\n[[databases]]\nname = \"lagoon_test_ro\"\nprimary = \"{}\"\nreplicas = [{}]\n",
        base_config("size = 3", ADMIN),
        c.url(&c.primary, DB),
        replica_urls_toml(c, DB),
    );
    let proxy = start_proxy_with(&config).await;
    let pooled = proxy.connect().await;
    let pid: i32 = pooled
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("query through the pool")
        .get(0);

    let help = show(&proxy, "HELP", &["command", "description"]).await;
    for cmd in ["SHOW POOLS", "RELOAD", "PAUSE [db]", "KILL db", "SHUTDOWN"] {
        help.one(&[("command", cmd)]);
    }
    let version = show(&proxy, "VERSION", &["version"]).await;
    assert!(
        version.rows[0]["version"].starts_with("Lagoon "),
        "{:?}",
        version.rows
    );

    let pools = show(&proxy, "POOLS", POOLS).await;
    let row = pools.one(&[("database", DB), ("user", SCRAM_USER.0)]);
    assert!(int(row, "sv_idle") >= 1, "{row:?}");
    assert_eq!(int(row, "sv_active"), 0, "{row:?}");
    assert_eq!(
        int(row, "cl_active"),
        1,
        "the connected pooled client: {row:?}"
    );
    assert_eq!(int(row, "cl_waiting"), 0, "{row:?}");
    assert_eq!(row["pool_mode"], "transaction");
    assert_eq!(int(row, "pool_size"), 3);
    assert_eq!(int(row, "members"), 1);

    let clients = show(&proxy, "CLIENTS", CLIENTS).await;
    let me = clients.one(&[("database", ADMIN_DB)]);
    assert_eq!(me["user"], SCRAM_USER.0);
    assert_eq!(me["application_name"], "admin-test");
    assert_eq!(me["type"], "C");
    let client = clients.one(&[("database", DB)]);
    assert_eq!(
        (client["state"].as_str(), client["addr"].as_str()),
        ("idle", "127.0.0.1")
    );
    assert!(client["connect_time"].ends_with(" UTC"), "{client:?}");
    assert!(int(client, "ptr") > 0 && int(client, "port") > 0);

    let servers = show(&proxy, "SERVERS", &[CLIENTS, &["member"]].concat()).await;
    let server = servers.one(&[("database", DB), ("remote_pid", &pid.to_string())]);
    assert_eq!(server["state"], "idle");
    assert_eq!(server["member"], "primary");
    assert_eq!(int(server, "port"), i64::from(c.primary.port));
    assert_eq!(server["link"], "", "an idle server has no client");
    assert!(int(server, "ptr") > 0 && int(server, "local_port") > 0);

    let dbs = show(&proxy, "DATABASES", &DATABASES).await;
    let db = dbs.one(&[("name", DB)]);
    assert_eq!(
        (db["host"].as_str(), int(db, "port")),
        ("127.0.0.1", i64::from(c.primary.port))
    );
    assert_eq!(
        (int(db, "pool_size"), int(db, "paused"), int(db, "replicas")),
        (3, 0, 0)
    );
    assert!(int(db, "current_connections") >= 1, "{db:?}");
    assert_eq!(int(dbs.one(&[("name", "lagoon_test_ro")]), "replicas"), 2);
    dbs.one(&[("name", ADMIN_DB)]);

    let replicas_cols = [
        "database",
        "member",
        "addr",
        "role",
        "state",
        "usable",
        "lsn",
        "lag_bytes",
        "lag_seconds",
        "latency_ms",
        "rtt_ms",
        "outstanding",
        "routed",
        "last_error",
    ];
    let replicas = show(&proxy, "REPLICAS", &replicas_cols).await;
    assert_eq!(replicas.find(&[("database", "lagoon_test_ro")]).len(), 3);
    assert!(
        replicas.find(&[("database", DB)]).is_empty(),
        "no replicas, no rows"
    );
    replicas.one(&[("member", "primary"), ("role", "primary")]);
    replicas.one(&[("member", "replica2"), ("role", "replica")]);

    let stats = show(
        &proxy,
        "STATS",
        &[
            "database",
            "total_server_assignment_count",
            "total_xact_count",
            "total_query_count",
            "total_received",
            "total_sent",
            "total_xact_time",
            "total_query_time",
            "total_wait_time",
            "avg_server_assignment_count",
            "avg_xact_count",
            "avg_query_count",
            "avg_recv",
            "avg_sent",
            "avg_xact_time",
            "avg_query_time",
            "avg_wait_time",
            "total_slow_count",
            "total_error_count",
        ],
    )
    .await;
    assert!(
        int(
            stats.one(&[("database", DB)]),
            "total_server_assignment_count"
        ) >= 1
    );

    show(&proxy, "QUERIES", QUERIES).await;
    show(
        &proxy,
        "SLOW",
        &[
            "time",
            "fingerprint",
            "query",
            "duration_ms",
            "pool_wait_ms",
            "server_ms",
            "client_ms",
            "database",
            "user",
            "application_name",
            "member",
            "route",
            "sqlstate",
            "rows",
        ],
    )
    .await;

    let config = show(&proxy, "CONFIG", &["key", "value", "default", "changeable"]).await;
    let size = config.one(&[("key", "pool.size")]);
    assert_eq!(
        (size["value"].as_str(), size["default"].as_str()),
        ("3", "20")
    );
    assert_eq!(config.one(&[("key", "server.listen")])["changeable"], "no");
    assert_eq!(
        config.one(&[("key", "server.admin_users")])["value"],
        SCRAM_USER.0
    );
    config.one(&[("key", &format!("databases.{DB}.primary"))]);
    let all: String = config
        .rows
        .iter()
        .flat_map(|r| r.values().cloned())
        .collect();
    for pw in [SCRAM_USER.1, MD5_USER.1, PLAIN_USER.1] {
        assert!(!all.contains(pw), "SHOW CONFIG shows a password");
    }
    drop(pooled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_commands_through_psql() {
    let proxy = admin_proxy("size = 2", "").await;
    let pooled = proxy.connect().await;
    pooled.simple_query("SELECT 1").await.expect("pooled query");

    // Nothing active: PAUSE completes at once and closes the idle server.
    let out = psql(&proxy, SCRAM_USER, "PAUSE lagoon_test").await;
    assert_success("PAUSE", &out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("PAUSE"));
    assert!(proxy.shared.pauses.is_paused(DB));
    let dbs = show(&proxy, "DATABASES", &DATABASES).await;
    assert_eq!(int(dbs.one(&[("name", DB)]), "paused"), 1);
    let pools = show(&proxy, "POOLS", POOLS).await;
    assert_eq!(
        int(pools.one(&[("database", DB)]), "sv_idle"),
        0,
        "idle closed"
    );

    let out = psql(&proxy, SCRAM_USER, "resume lagoon_test;").await;
    assert_success("RESUME", &out);
    assert!(!proxy.shared.pauses.is_paused(DB));
    pooled
        .simple_query("SELECT 1")
        .await
        .expect("resumed query");

    // Everything at once, then RESUME without argument.
    assert_success("PAUSE", &psql(&proxy, SCRAM_USER, "PAUSE").await);
    assert!(proxy.shared.pauses.is_paused(DB));
    assert_success("RESUME", &psql(&proxy, SCRAM_USER, "RESUME").await);
    assert!(!proxy.shared.pauses.is_paused(DB));

    let out = psql(&proxy, SCRAM_USER, "PAUSE nosuchdb").await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("3D000"),
        "{out:?}"
    );

    // The proxy was started from a value, not a file: nothing to reload.
    let out = psql(&proxy, SCRAM_USER, "RELOAD").await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("55000"),
        "{out:?}"
    );

    let out = psql(&proxy, SCRAM_USER, "KILL lagoon_test").await;
    assert_success("KILL", &out);
    let err = pooled
        .simple_query("SELECT 1")
        .await
        .expect_err("a killed client's query fails");
    if let Some(code) = sqlstate(&err) {
        assert_eq!(code, "57P01", "{err}");
    }
    assert!(proxy.shared.pauses.is_paused(DB), "KILL leaves it paused");
    assert_success(
        "RESUME",
        &psql(&proxy, SCRAM_USER, "RESUME lagoon_test").await,
    );

    let out = psql(&proxy, SCRAM_USER, "SHUTDOWN").await;
    assert_success("SHUTDOWN", &out);
    assert!(proxy.shared.shutdown.drain.is_cancelled());
    let refused = proxy
        .try_connect(&proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB))
        .await;
    assert!(refused.is_err(), "no new client after SHUTDOWN");
}

const DATABASES: [&str; 14] = [
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_size",
    "min_pool_size",
    "reserve_pool",
    "pool_mode",
    "max_connections",
    "current_connections",
    "paused",
    "disabled",
    "replicas",
];

#[tokio::test]
async fn only_admin_users_get_in() {
    let proxy = admin_proxy("", "").await;
    let err = proxy
        .try_connect(&proxy.conninfo(MD5_USER.0, MD5_USER.1, ADMIN_DB))
        .await
        .expect_err("a non-admin user is refused");
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"), "{err}");
    let msg = error_message(&err);
    assert!(
        msg.contains(MD5_USER.0) && msg.contains("server.admin_users"),
        "{msg}"
    );
    // The password is checked first, as for any login.
    let err = proxy
        .try_connect(&proxy.conninfo(SCRAM_USER.0, "wrong", ADMIN_DB))
        .await
        .expect_err("wrong password");
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err}");
    // psql shows the refusal too.
    let out = psql(&proxy, MD5_USER, "SHOW POOLS").await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("admin console"),
        "{out:?}"
    );
}

#[tokio::test]
async fn errors_keep_the_session_and_extended_protocol_is_refused() {
    let proxy = admin_proxy("", "").await;
    let admin = admin_client(&proxy).await;

    let err = admin
        .simple_query("SHOW NONSENSE")
        .await
        .expect_err("unknown command");
    assert_eq!(sqlstate(&err).as_deref(), Some("42601"), "{err}");
    let msg = error_message(&err);
    assert!(
        msg.contains("SHOW NONSENSE") && msg.contains("SHOW HELP"),
        "{msg}"
    );
    let err = admin
        .simple_query("KILL")
        .await
        .expect_err("KILL needs a db");
    assert_eq!(sqlstate(&err).as_deref(), Some("42601"), "{err}");

    // Still usable; several commands in one Query are answered in order.
    let msgs = admin
        .simple_query("show version; SHOW HELP")
        .await
        .expect("two commands");
    let widths: Vec<usize> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.len()),
            _ => None,
        })
        .collect();
    assert_eq!(widths.first(), Some(&1), "SHOW VERSION first");
    assert!(widths.len() > 10 && widths[1..].iter().all(|&w| w == 2));
    assert!(admin.simple_query("").await.is_ok(), "empty query");
    assert!(admin.simple_query(" ; ").await.is_ok(), "empty statements");

    let err = admin
        .query("SHOW POOLS", &[])
        .await
        .expect_err("extended protocol");
    assert_eq!(sqlstate(&err).as_deref(), Some("0A000"), "{err}");
    assert!(
        !rows(&admin, "SHOW DATABASES").await.is_empty(),
        "usable after the refusal"
    );
}

#[tokio::test]
async fn an_oversized_message_ends_the_console_with_08p01() {
    let proxy = admin_proxy("", "max_message_bytes = 1024").await;
    let admin = admin_client(&proxy).await;
    let long = format!("SHOW POOLS /* {} */", "x".repeat(2000));
    let err = admin.simple_query(&long).await.expect_err("too long");
    assert_eq!(sqlstate(&err).as_deref(), Some("08P01"), "{err}");
    assert!(admin.simple_query("SHOW VERSION").await.is_err(), "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_clients_and_new_requests_wait_for_resume() {
    let proxy = admin_proxy("size = 2\ncheckout_timeout_ms = 20000", "").await;
    let admin = admin_client(&proxy).await;
    let victim = proxy.connect().await;
    victim.simple_query("SELECT 1").await.expect("first query");

    let done = admin.simple_query("KILL lagoon_test").await.expect("KILL");
    assert!(matches!(
        done.last(),
        Some(SimpleQueryMessage::CommandComplete(_))
    ));
    let err = victim
        .simple_query("SELECT 1")
        .await
        .expect_err("killed client");
    if let Some(code) = sqlstate(&err) {
        assert_eq!(code, "57P01", "{err}");
    }

    // A new client logs in, but its query waits for RESUME.
    let conninfo = proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB);
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .expect("login while killed/paused");
    tokio::spawn(conn);
    let waiting = tokio::spawn(async move {
        let r = client.simple_query("SELECT 42").await;
        (client, r)
    });
    eventually(
        "the new client's query waits (cl_waiting = 1)",
        Duration::from_secs(10),
        || {
            let admin = &admin;
            async move { cl_waiting(admin).await == 1 }
        },
    )
    .await;
    assert!(!waiting.is_finished(), "the query ran while paused");
    let pools = rows(&admin, "SHOW POOLS").await;
    assert_eq!(
        pools[0]["sv_idle"].as_deref(),
        Some("0"),
        "KILL closed the idle server"
    );

    admin
        .simple_query("RESUME lagoon_test")
        .await
        .expect("RESUME");
    let (_client, r) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the query runs after RESUME")
        .expect("task");
    let msgs = r.expect("query after RESUME");
    let value = msgs.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(value.as_deref(), Some("42"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_an_open_transaction() {
    let proxy = admin_proxy("size = 2\ncheckout_timeout_ms = 20000", "").await;
    let admin = admin_client(&proxy).await;
    let in_txn = proxy.connect().await;
    in_txn
        .batch_execute("BEGIN; SELECT 1")
        .await
        .expect("open a transaction");

    let pause = tokio::spawn(async move {
        let r = admin.simple_query("PAUSE lagoon_test").await;
        (admin, r)
    });
    eventually("PAUSE is in force", Duration::from_secs(10), || {
        let paused = proxy.shared.pauses.is_paused(DB);
        async move { paused }
    })
    .await;

    // Another client's query now waits; PAUSE itself waits for the open transaction.
    let other = proxy.connect().await;
    let held = tokio::spawn(async move { other.simple_query("SELECT 7").await.map(|m| m.len()) });
    let watcher = admin_client(&proxy).await;
    eventually(
        "a request is held by the pause",
        Duration::from_secs(10),
        || {
            let w = &watcher;
            async move { cl_waiting(w).await == 1 }
        },
    )
    .await;
    assert!(
        !pause.is_finished(),
        "PAUSE returned with a transaction open"
    );

    in_txn.batch_execute("COMMIT").await.expect("commit");
    let (_admin, r) = tokio::time::timeout(Duration::from_secs(10), pause)
        .await
        .expect("PAUSE completes once the transaction ends")
        .expect("task");
    r.expect("PAUSE succeeded");
    let pools = rows(&watcher, "SHOW POOLS").await;
    assert_eq!(pools[0]["sv_active"].as_deref(), Some("0"));
    assert_eq!(
        pools[0]["sv_idle"].as_deref(),
        Some("0"),
        "idle servers closed"
    );
    assert!(!held.is_finished(), "still paused");

    watcher.simple_query("RESUME").await.expect("RESUME");
    let n = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the held query runs after RESUME")
        .expect("task")
        .expect("query");
    assert!(n > 0);
    in_txn
        .simple_query("SELECT 1")
        .await
        .expect("and the first client too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_gives_up_after_shutdown_timeout_and_stays_paused() {
    let proxy = admin_proxy("size = 2", "shutdown_timeout_ms = 300").await;
    let admin = admin_client(&proxy).await;
    let in_txn = proxy.connect().await;
    in_txn
        .batch_execute("BEGIN; SELECT 1")
        .await
        .expect("open a transaction");
    let err = admin
        .simple_query("PAUSE lagoon_test")
        .await
        .expect_err("PAUSE cannot finish");
    assert_eq!(sqlstate(&err).as_deref(), Some("55000"), "{err}");
    let msg = error_message(&err);
    assert!(
        msg.contains("1 server connection(s)") && msg.contains("stays paused"),
        "{msg}"
    );
    assert!(proxy.shared.pauses.is_paused(DB));
    let dbs = rows(&admin, "SHOW DATABASES").await;
    let db = dbs
        .iter()
        .find(|r| r["name"].as_deref() == Some(DB))
        .expect("row");
    assert_eq!(db["paused"].as_deref(), Some("1"));
    in_txn.batch_execute("COMMIT").await.expect("commit");
    admin
        .simple_query("RESUME lagoon_test")
        .await
        .expect("RESUME");
    in_txn.simple_query("SELECT 1").await.expect("runs again");
}

#[tokio::test]
async fn show_servers_links_an_active_server_to_its_client() {
    let proxy = admin_proxy("size = 2", "").await;
    let admin = admin_client(&proxy).await;
    let in_txn = proxy.connect().await;
    in_txn.batch_execute("BEGIN").await.expect("BEGIN");
    let pid: i32 = in_txn
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let servers = rows(&admin, "SHOW SERVERS").await;
    let server = servers
        .iter()
        .find(|r| r["remote_pid"].as_deref() == Some(&pid.to_string()))
        .unwrap_or_else(|| panic!("no server with pid {pid}: {servers:?}"));
    assert_eq!(server["state"].as_deref(), Some("active"));
    let link = server["link"]
        .clone()
        .expect("an active server links to its client");
    let clients = rows(&admin, "SHOW CLIENTS").await;
    let client = clients
        .iter()
        .find(|r| r["ptr"] == Some(link.clone()))
        .unwrap_or_else(|| panic!("no client {link}: {clients:?}"));
    assert_eq!(client["database"].as_deref(), Some(DB));
    assert_eq!(client["state"].as_deref(), Some("active"));
    assert_eq!(client["link"], server["ptr"]);
    in_txn.batch_execute("COMMIT").await.expect("commit");
}

/// The timing check through the console: a `pg_sleep(0.6)` among fast queries, with a
/// 500 ms threshold, tops `SHOW QUERIES` by p99, is the one `SHOW SLOW` row, and counts in
/// `SHOW STATS`.
#[tokio::test]
async fn show_queries_ranks_a_slow_fingerprint_first_and_show_slow_lists_it() {
    let log = std::env::temp_dir().join(format!("lagoon-admin-slow-{}.jsonl", std::process::id()));
    let proxy = start_proxy_with(&format!(
        "{}\n[slow_query]\nthreshold_ms = 500\nlog = \"{}\"\n",
        base_config("size = 2", ADMIN),
        log.display()
    ))
    .await;
    let client = proxy.connect().await;
    for i in 0..10i32 {
        client.query_one("SELECT $1::int * 2", &[&i]).await.unwrap();
        client
            .simple_query(&format!("SELECT {i}, 'x{i}'"))
            .await
            .unwrap();
    }
    client.simple_query("SELECT pg_sleep(0.6)").await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();

    let slow = proxy.shared.stats.slow_log();
    eventually(
        "the slow query reaches the log",
        Duration::from_secs(20),
        || async { !slow.recent().is_empty() },
    )
    .await;
    let queries = show(&proxy, "QUERIES", QUERIES).await;
    let first = &queries.rows[0];
    assert_eq!(first["query"], "SELECT pg_sleep($1)", "{:?}", queries.rows);
    assert_eq!((int(first, "calls"), int(first, "slow")), (1, 1));
    let p99: f64 = first["p99_ms"].parse().expect("p99_ms");
    let server: f64 = first["mean_server_ms"].parse().expect("mean_server_ms");
    assert!(p99 >= 600.0 && server >= 590.0, "{first:?}");
    let fast = queries.one(&[("query", "SELECT $1, $2")]);
    assert_eq!((int(fast, "calls"), int(fast, "slow")), (10, 0));
    let extended = queries.one(&[("query", "SELECT $1::int * $2")]);
    assert_eq!(int(extended, "calls"), 10);
    let fast_p99: f64 = fast["p99_ms"].parse().expect("p99_ms");
    assert!(fast_p99 < p99, "ranked by p99: {:?}", queries.rows);

    let out = psql(&proxy, SCRAM_USER, "SHOW SLOW").await;
    assert_success("SHOW SLOW", &out);
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "one slow query: {text}");
    assert!(rows[0].contains("SELECT pg_sleep($1)"), "{text}");
    assert!(rows[0].contains(&first["fingerprint"]), "{text}");
    // The literal must not appear: the query column is normalized. (Not a bare "0.6": the
    // duration column, e.g. 600.65 ms, may contain it.)
    assert!(!rows[0].contains("pg_sleep(0.6"), "no literal: {text}");

    let out = psql(&proxy, SCRAM_USER, "SHOW STATS").await;
    assert_success("SHOW STATS", &out);
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let header: Vec<&str> = text.lines().next().unwrap_or_default().split(SEP).collect();
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with(&format!("{DB}{SEP}")))
        .unwrap_or_else(|| panic!("no {DB} row: {text}"))
        .split(SEP)
        .collect();
    let col = |name: &str| -> i64 {
        let i = header.iter().position(|h| *h == name).expect(name);
        row[i].parse().expect(name)
    };
    assert!(col("total_query_count") >= 22, "{text}");
    assert_eq!(col("total_slow_count"), 1, "{text}");
    assert!(col("total_query_time") >= 600_000, "{text}");
    let _ = std::fs::remove_file(&log);
}

/// `RELOAD` through psql: a file that changes the pool size is applied while another client
/// holds a transaction open (seen in `SHOW POOLS`, the transaction commits, its row is
/// there); a file with two problems changes nothing and psql shows both, with `F0000`.
#[tokio::test]
async fn reload_through_psql_applies_or_reports_every_problem() {
    let text = |size: u32| base_config(&format!("size = {size}"), ADMIN);
    let path =
        std::env::temp_dir().join(format!("lagoon-admin-reload-{}.toml", std::process::id()));
    std::fs::write(&path, text(3)).expect("write config");
    let proxy = start_proxy_with(&text(3)).await;
    proxy
        .shared
        .config_path
        .set(path.clone())
        .expect("path not set yet");
    let pool_size = |t: &Table| {
        int(
            t.one(&[("database", DB), ("user", SCRAM_USER.0)]),
            "pool_size",
        )
    };

    let holder = proxy.connect().await;
    holder
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS admin_reload_t (v text); \
             BEGIN; INSERT INTO admin_reload_t VALUES ('across the reload')",
        )
        .await
        .unwrap();
    assert_eq!(pool_size(&show(&proxy, "POOLS", POOLS).await), 3);

    std::fs::write(&path, text(5)).expect("write config");
    let out = psql(&proxy, SCRAM_USER, "RELOAD").await;
    assert_success("RELOAD", &out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pool.size: 3 -> 5"),
        "the change is reported: {out:?}"
    );
    let pools = show(&proxy, "POOLS", POOLS).await;
    assert_eq!(pool_size(&pools), 5);
    assert_eq!(
        int(
            pools.one(&[("database", DB), ("user", SCRAM_USER.0)]),
            "sv_active"
        ),
        1
    );
    holder.batch_execute("COMMIT").await.unwrap();
    let other = proxy.connect().await;
    let n: i64 = other
        .query_one(
            "SELECT count(*) FROM admin_reload_t WHERE v = 'across the reload'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(n >= 1);

    // Two problems: both reported, nothing applied.
    std::fs::write(&path, text(5).replace("size = 5", "size = 0\nsizee = 4")).expect("write");
    let out = psql(&proxy, SCRAM_USER, "RELOAD").await;
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("F0000"), "{err}");
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(
        err.contains("pool.size") && err.contains("pool.sizee"),
        "{err}"
    );
    assert_eq!(pool_size(&show(&proxy, "POOLS", POOLS).await), 5);
    assert_eq!(proxy.shared.config.load().pool.size, 5);
    other.simple_query("SELECT 1").await.unwrap();
    let _ = std::fs::remove_file(&path);
}
