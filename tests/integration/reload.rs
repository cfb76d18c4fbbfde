//! Hot config reload: the file is edited and `config::reload::reload` (what SIGHUP and the
//! admin console's RELOAD call) applies it while clients stay connected: pool sizes change
//! under open transactions, queued checkouts are served when a pool grows, users and
//! databases come and go, a database's replicas change, and an invalid file changes nothing.
//! The last test sends a real SIGHUP to the `lagoon` binary.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use lagoon::config::reload::{ReloadError, reload};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStderr;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::*;

/// A config file in the temp dir for one test, removed on drop.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(name: &str, text: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!(
            "lagoon-reload-test-{}-{name}.toml",
            std::process::id()
        ));
        let file = ConfigFile(path);
        file.write(text);
        file
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.0, text).expect("write the test config file");
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A proxy started from `text`, which is also written to a file it reloads from.
async fn start(name: &str, text: &str) -> (TestProxy, ConfigFile) {
    let file = ConfigFile::new(name, text);
    let proxy = start_proxy_with(text).await;
    proxy
        .shared
        .config_path
        .set(file.0.clone())
        .expect("config path not set yet");
    (proxy, file)
}

/// Writes `text` to the file and reloads it, which must succeed.
async fn reload_to(proxy: &TestProxy, file: &ConfigFile, text: &str) -> Vec<String> {
    file.write(text);
    let report = reload(&proxy.shared)
        .await
        .unwrap_or_else(|e| panic!("reload failed: {e}"));
    assert!(report.needs_restart.is_empty(), "{report:?}");
    report.applied
}

/// The primary pool of the test database for `user`.
fn primary_pool(proxy: &TestProxy, user: &str) -> Arc<lagoon::pool::Pool> {
    let cluster = proxy
        .shared
        .pools
        .current(DB, user)
        .unwrap_or_else(|| panic!("no cluster for ({DB}, {user})"));
    Arc::clone(&cluster.primary)
}

/// The first column of every row of a simple query.
async fn col(client: &Client, sql: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(client
        .simple_query(sql)
        .await?
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
            _ => None,
        })
        .collect())
}

async fn one(client: &Client, sql: &str) -> String {
    let rows = col(client, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows.into_iter().next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrinking_the_pool_keeps_open_transactions() {
    let (proxy, file) = start("shrink", &base_config("size = 4", "")).await;
    let setup = proxy.connect().await;
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS reload_shrink; CREATE TABLE reload_shrink (tag text NOT NULL)",
        )
        .await
        .expect("create the test table");
    // Three transactions open: three server connections lent.
    let mut open = Vec::new();
    for i in 0..3 {
        let c = proxy.connect().await;
        c.batch_execute(&format!(
            "BEGIN; INSERT INTO reload_shrink (tag) VALUES ('open{i}')"
        ))
        .await
        .expect("open a transaction");
        open.push(c);
    }
    let pool = primary_pool(&proxy, SCRAM_USER.0);
    assert_eq!(pool.snapshot().1, 3, "three connections lent");

    let applied = reload_to(&proxy, &file, &base_config("size = 2", "")).await;
    assert_eq!(applied, ["pool.size: 4 -> 2"]);
    assert_eq!(pool.settings().size, 2);
    assert_eq!(proxy.shared.config.load().pool.size, 2);

    // The open transactions go on and commit; their rows are there.
    for (i, c) in open.iter().enumerate() {
        c.batch_execute(&format!(
            "INSERT INTO reload_shrink (tag) VALUES ('more{i}'); COMMIT"
        ))
        .await
        .unwrap_or_else(|e| panic!("transaction {i} after the reload: {e}"));
    }
    assert_eq!(one(&setup, "SELECT count(*) FROM reload_shrink").await, "6");
    // Returned connections over the new size were closed: the pool is down to two.
    eventually("the pool at its new size", Duration::from_secs(5), || {
        let p = Arc::clone(&pool);
        async move { p.snapshot().1 == 2 }
    })
    .await;
    // New clients work, and the pool does not grow past two.
    let late = proxy.connect().await;
    assert_eq!(one(&late, "SELECT 'late'").await, "late");
    assert!(pool.snapshot().1 <= 2, "{:?}", pool.snapshot());
    setup.batch_execute("DROP TABLE reload_shrink").await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_changes_nothing() {
    let good = base_config("size = 4", "");
    let (proxy, file) = start("invalid", &good).await;
    let c = proxy.connect().await;
    let before = proxy.shared.config.load_full();

    let bad = base_config("size = 0\nbogus_key = 1", "");
    file.write(&bad);
    let line_of = |needle: &str| {
        bad.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("{needle} not in the config"))
    };
    let problems = match reload(&proxy.shared).await {
        Err(ReloadError::Invalid(p)) => p,
        other => panic!("expected Invalid, got {other:?}"),
    };
    assert_eq!(problems.len(), 2, "{problems:#?}");
    let size_line = format!("line {}", line_of("size = 0"));
    let bogus_line = format!("line {}", line_of("bogus_key"));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("pool.size") && p.contains(&size_line)),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("bogus_key") && p.contains(&bogus_line)),
        "{problems:#?}"
    );
    // Nothing changed: the same config, the same pool size, and queries still run.
    assert!(Arc::ptr_eq(&before, &proxy.shared.config.load_full()));
    assert_eq!(primary_pool(&proxy, SCRAM_USER.0).settings().size, 4);
    assert_eq!(one(&c, "SELECT 'still'").await, "still");

    // An unreadable file is refused the same way.
    drop(file);
    match reload(&proxy.shared).await {
        Err(ReloadError::Invalid(p)) => {
            assert!(p.len() == 1 && p[0].contains("cannot read"), "{p:?}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(Arc::ptr_eq(&before, &proxy.shared.config.load_full()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_the_pool_serves_a_queued_client_at_once() {
    // A long checkout timeout: the queued query must complete because the pool grew, not
    // because it gave up.
    let (proxy, file) = start(
        "grow",
        &base_config("size = 1\ncheckout_timeout_ms = 60000", ""),
    )
    .await;
    let holder = proxy.connect().await;
    let queued = proxy.connect().await;
    holder
        .batch_execute("BEGIN; SELECT 1")
        .await
        .expect("hold the only server");
    let pool = primary_pool(&proxy, SCRAM_USER.0);
    let waiting = tokio::spawn(async move { col(&queued, "SELECT 'served'").await });
    wait_for_waiters("the second client queued", &pool, 1).await;

    let applied = reload_to(
        &proxy,
        &file,
        &base_config("size = 2\ncheckout_timeout_ms = 60000", ""),
    )
    .await;
    assert_eq!(applied, ["pool.size: 1 -> 2"]);
    let served = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the queued query still waits after the pool grew")
        .expect("query task")
        .expect("the queued query");
    assert_eq!(served, ["served"]);
    // The first transaction is still open, on its own server.
    assert_eq!(
        one(&holder, "SELECT now() = statement_timestamp()").await,
        "f",
        "still inside the transaction begun before the reload"
    );
    holder.batch_execute("COMMIT").await.expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_databases_come_and_go() {
    let plain_user = format!(
        "[[users]]\nname = \"{}\"\npassword = \"{}\"\n",
        PLAIN_USER.0, PLAIN_USER.1
    );
    let full = format!(
        "{}\n[[databases]]\nname = \"reload_alias\"\nprimary = \"{}\"\n",
        base_config("", ""),
        cluster().url(&cluster().primary, DB)
    );
    assert!(full.contains(&plain_user));
    let without = base_config("", "").replace(&plain_user, "");
    let (proxy, file) = start("users", &without).await;
    let alias = |user: (&str, &str)| proxy.conninfo(user.0, user.1, "reload_alias");

    // Before: the user is unknown, the database too.
    let err = proxy
        .try_connect(&proxy.conninfo(PLAIN_USER.0, PLAIN_USER.1, DB))
        .await
        .expect_err("an unknown user logged in");
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err}");
    let err = proxy
        .try_connect(&alias(SCRAM_USER))
        .await
        .expect_err("an unknown database was served");
    assert_eq!(sqlstate(&err).as_deref(), Some("3D000"), "{err}");

    let applied = reload_to(&proxy, &file, &full).await;
    assert_eq!(
        applied,
        [
            format!("users: added \"{}\"", PLAIN_USER.0),
            "databases: added \"reload_alias\"".to_owned(),
        ]
    );
    let kept = proxy
        .try_connect(&alias(PLAIN_USER))
        .await
        .expect("the added user logs in to the added database");
    assert_eq!(one(&kept, "SELECT current_user").await, PLAIN_USER.0);
    assert_eq!(one(&kept, "SELECT current_database()").await, DB);

    // Removed again: new logins are refused, the connected session goes on.
    let applied = reload_to(&proxy, &file, &without).await;
    assert_eq!(
        applied,
        [
            format!("users: removed \"{}\"", PLAIN_USER.0),
            "databases: removed \"reload_alias\"".to_owned(),
        ]
    );
    let err = proxy
        .try_connect(&alias(PLAIN_USER))
        .await
        .expect_err("a removed user logged in");
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err}");
    let err = proxy
        .try_connect(&alias(SCRAM_USER))
        .await
        .expect_err("a removed database was served");
    assert_eq!(sqlstate(&err).as_deref(), Some("3D000"), "{err}");
    assert!(
        proxy
            .shared
            .pools
            .current("reload_alias", PLAIN_USER.0)
            .is_none()
    );
    // Several transactions: each checks out again from the pool it logged in with.
    for i in 0..3 {
        assert_eq!(one(&kept, &format!("SELECT {i}")).await, i.to_string());
    }
    kept.batch_execute("BEGIN; SELECT 1; COMMIT")
        .await
        .expect("a transaction on the removed database's session");
    // Other clients are untouched.
    let c = proxy.connect().await;
    assert_eq!(one(&c, "SELECT 'ok'").await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_removed_or_the_split_turned_off() {
    let c = cluster();
    let all = replica_urls_toml(c, DB);
    let first = toml_strings(&[c.url(&c.replicas[0], DB)]);
    let with = |replicas: &str, routing: &str| {
        format!(
            "{}replicas = [{replicas}]\n\n[routing]\nprobe_interval_ms = 50\n{routing}\n",
            base_config("", "")
        )
    };
    let (proxy, file) = start("replicas", &with(&all, "")).await;
    let client = proxy.connect().await;
    assert_eq!(one(&client, "SELECT 'before'").await, "before");
    let old_view = proxy
        .shared
        .health
        .get(DB)
        .map(|h| Arc::clone(&h))
        .expect("a health view for the database with replicas");
    assert_eq!(old_view.replicas.len(), 2);
    eventually("the first probe round", Duration::from_secs(10), || {
        let h = Arc::clone(&old_view);
        async move { h.rounds() > 0 }
    })
    .await;

    let applied = reload_to(&proxy, &file, &with(&first, "")).await;
    assert_eq!(applied, [format!("databases.{DB}.replicas: 2 -> 1")]);
    let view = proxy
        .shared
        .health
        .get(DB)
        .map(|h| Arc::clone(&h))
        .expect("a health view");
    assert_eq!(view.replicas.len(), 1);
    assert_eq!(view.report().len(), 2, "primary and one replica");
    // The new view is probed; the old one is not any more.
    let old_rounds = old_view.rounds();
    eventually("the new view probed", Duration::from_secs(10), || {
        let h = Arc::clone(&view);
        async move { h.rounds() >= 3 }
    })
    .await;
    assert!(
        old_view.rounds() <= old_rounds + 1,
        "the old monitor still runs: {} -> {}",
        old_rounds,
        old_view.rounds()
    );
    // New sessions get the new members; the connected client goes on.
    let cluster_now = proxy
        .shared
        .pools
        .current(DB, SCRAM_USER.0)
        .expect("cluster");
    assert_eq!(cluster_now.replicas.len(), 1);
    assert_eq!(one(&client, "SELECT 'after'").await, "after");
    let late = proxy.connect().await;
    assert_eq!(one(&late, "SELECT 'late'").await, "late");

    // Split off: the view and its monitor go.
    let applied = reload_to(&proxy, &file, &with(&first, "read_write_split = false")).await;
    assert_eq!(applied, ["routing.read_write_split: true -> false"]);
    assert!(proxy.shared.health.get(DB).is_none());
    assert!(!proxy.shared.monitors.running(DB));
    // Back on: a view again.
    reload_to(&proxy, &file, &with(&first, "")).await;
    assert!(proxy.shared.monitors.running(DB));
    assert_eq!(
        proxy.shared.health.get(DB).map(|h| h.replicas.len()),
        Some(1)
    );
}

// --- SIGHUP through the binary -------------------------------------------------------------

const LAGOON: &str = env!("CARGO_BIN_EXE_lagoon");

/// Reads stderr lines until one contains every needle; panics (with what was read) after 20 s.
async fn wait_line(lines: &mut Lines<BufReader<ChildStderr>>, needles: &[&str]) -> String {
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if needles.iter().all(|n| line.contains(n)) {
                return Some(line);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        _ => panic!("no stderr line with {needles:?}; read:\n{seen}"),
    }
}

fn signal(child: &tokio::process::Child, sig: libc::c_int) {
    let pid = child.id().expect("lagoon still running") as libc::pid_t;
    // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

#[tokio::test]
async fn sighup_reloads_the_file_and_logs_the_outcome() {
    let config = |size: &str| format!("[server]\nlisten = \"127.0.0.1:0\"\n\n[pool]\n{size}\n");
    let file = ConfigFile::new("sighup", &config("size = 3"));
    let mut child = tokio::process::Command::new(LAGOON)
        .args(["--config", file.0.to_str().expect("utf-8 temp path")])
        .env_remove("LAGOON_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start lagoon");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    wait_line(&mut lines, &["lagoon listening"]).await;

    file.write(&config("size = 5"));
    signal(&child, libc::SIGHUP);
    wait_line(&mut lines, &["config reloaded", "pool.size: 3 -> 5"]).await;

    // An invalid file: every problem logged with its line, and the process goes on.
    file.write(&config("size = 0"));
    signal(&child, libc::SIGHUP);
    wait_line(&mut lines, &["config not reloaded", "line 5", "pool.size"]).await;

    // Still serving signals: SIGTERM ends it cleanly.
    signal(&child, libc::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("lagoon did not stop on SIGTERM")
        .expect("wait for lagoon");
    assert!(status.success(), "{status:?}");
}

/// A client connected before a reload that swapped the database's replica follows the new
/// members at its next transaction: its reads reach the new replica, never the removed one.
#[tokio::test]
async fn a_connected_client_follows_the_new_members() {
    let c = cluster();
    let (r1, r2) = (c.replicas[0].port, c.replicas[1].port);
    let with = |replica: &lagoon::devcluster::Member| {
        format!(
            "{}replicas = [{}]\n\n[routing]\nprobe_interval_ms = 50\n",
            base_config("", ""),
            toml_strings(&[c.url(replica, DB)])
        )
    };
    let (proxy, file) = start("follow", &with(&c.replicas[0])).await;
    let client = proxy.connect().await;
    eventually("reads reach replica1", Duration::from_secs(20), || async {
        served_by(&client).await == r1
    })
    .await;

    reload_to(&proxy, &file, &with(&c.replicas[1])).await;
    // Until the new view has probed replica2 reads may go to the primary; never to replica1.
    eventually("reads reach replica2", Duration::from_secs(20), || async {
        let p = served_by(&client).await;
        assert_ne!(p, r1, "a read went to the replica the reload removed");
        p == r2
    })
    .await;
    for _ in 0..20 {
        assert_ne!(served_by(&client).await, r1);
    }
}
