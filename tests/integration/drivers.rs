//! Named prepared statements through real drivers (issue 3): `pgbench -M prepared`,
//! tokio-postgres, and drivers from other ecosystems with their automatic statement preparation
//! on: asyncpg, psycopg 3, pgjdbc and node-postgres (the programs in `tests/drivers/`). Each
//! runs its statements across many transactions while churn clients cycle through a pool of 3,
//! so its transactions land on different servers; the drivers report the server backends
//! (`pg_backend_pid()`) they ran on and the tests assert that there was more than one.
//!
//! Each driver program is first run against Postgres directly, to show the program itself is
//! right. The runtimes come from `.ci/run`, which installs them and exports `LAGOON_PYTHON` (a
//! venv with asyncpg and psycopg), `LAGOON_NODE_MODULES` (node-postgres) and
//! `LAGOON_PGJDBC_JAR`; without those variables the tests look where `.ci/run` puts them and
//! fail, naming the install command, when nothing is there.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_postgres::types::Type;

use crate::faultkit::*;
use crate::harness::*;

/// A small transaction pool: with the churn clients below, consecutive transactions of one
/// client rarely find the same server.
const POOL: &str = "size = 3\ncheckout_timeout_ms = 60000";
/// Clients cycling short transactions through the pool while a driver runs.
const CHURN_CLIENTS: usize = 12;
/// Iterations of each driver program through the proxy (each several transactions).
const ITERATIONS: u32 = 300;
/// Iterations of each driver program against Postgres directly (every code path is hit).
const BASELINE_ITERATIONS: u32 = 100;
/// How long a driver program may take before the test gives up on it.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(180);
/// pgbench gets its own database: its table names are fixed (load.rs has `lagoon_bench`).
const BENCH_DB: &str = "lagoon_bench_prepared";

const INSTALL: &str = "run `bash .ci/run --install-only`, which installs the driver runtimes \
    (Debian's JDK, pgjdbc and Node.js when missing; asyncpg and psycopg into \
    target/driver-env/venv; node-postgres into target/driver-env/node)";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The path in `var`, else `fallback`; an error saying how to install it when that path does
/// not exist. A missing runtime fails the test, never skips it.
fn installed(var: &str, fallback: PathBuf, what: &str) -> Result<PathBuf, String> {
    let from_env = std::env::var_os(var).map(PathBuf::from);
    let set = from_env.is_some();
    let path = from_env.unwrap_or(fallback);
    if path.exists() {
        return Ok(path);
    }
    Err(format!(
        "{what} not found at {} ({var} {}): {INSTALL}",
        path.display(),
        if set { "is set" } else { "is unset" }
    ))
}

#[derive(Clone, Copy, Debug)]
enum Driver {
    Asyncpg,
    Psycopg,
    Pgjdbc,
    NodePostgres,
}

const ALL_DRIVERS: [Driver; 4] = [
    Driver::Asyncpg,
    Driver::Psycopg,
    Driver::Pgjdbc,
    Driver::NodePostgres,
];

impl Driver {
    fn slug(self) -> &'static str {
        match self {
            Driver::Asyncpg => "asyncpg",
            Driver::Psycopg => "psycopg",
            Driver::Pgjdbc => "pgjdbc",
            Driver::NodePostgres => "node_pg",
        }
    }

    /// The command that runs this driver's program from `tests/drivers/`.
    fn command(
        self,
        url: &str,
        table: &str,
        iterations: u32,
    ) -> Result<tokio::process::Command, String> {
        let programs = repo().join("tests/drivers");
        let mut cmd = match self {
            Driver::Asyncpg | Driver::Psycopg => {
                let python = installed(
                    "LAGOON_PYTHON",
                    repo().join("target/driver-env/venv/bin/python"),
                    "Python with asyncpg and psycopg",
                )?;
                let mut cmd = tokio::process::Command::new(python);
                cmd.arg(programs.join(format!("{}_check.py", self.slug())));
                cmd
            }
            Driver::Pgjdbc => {
                let jar = installed(
                    "LAGOON_PGJDBC_JAR",
                    PathBuf::from("/usr/share/java/postgresql.jar"),
                    "the pgjdbc jar (Debian's libpostgresql-jdbc-java)",
                )?;
                // A single-file source program: `java` compiles it in memory (needs a JDK).
                let mut cmd = tokio::process::Command::new("java");
                cmd.arg("-cp")
                    .arg(jar)
                    .arg(programs.join("PgjdbcCheck.java"));
                cmd
            }
            Driver::NodePostgres => {
                let modules = installed(
                    "LAGOON_NODE_MODULES",
                    repo().join("target/driver-env/node/node_modules"),
                    "node_modules with node-postgres",
                )?;
                installed("LAGOON_NODE_MODULES", modules.join("pg"), "node-postgres")?;
                let mut cmd = tokio::process::Command::new("node");
                cmd.env("NODE_PATH", modules)
                    .arg(programs.join("node_pg_check.js"));
                cmd
            }
        };
        cmd.arg(url)
            .arg(table)
            .arg(iterations.to_string())
            .env_remove("PGPASSWORD")
            .kill_on_drop(true);
        Ok(cmd)
    }
}

/// What a driver program reported on its last line.
struct Summary {
    line: String,
    /// Distinct server backends each of the program's two connections ran on.
    backends: Vec<usize>,
}

/// Runs a driver program to completion; `Err` (with its output) unless it exited 0 with a
/// summary line.
async fn run_driver(
    driver: Driver,
    url: &str,
    table: &str,
    iterations: u32,
) -> Result<Summary, String> {
    let mut cmd = driver.command(url, table, iterations)?;
    let started = Instant::now();
    let out = tokio::time::timeout(DRIVER_TIMEOUT, cmd.output())
        .await
        .map_err(|_| format!("{driver:?} did not finish in {DRIVER_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot run {driver:?} ({cmd:?}): {e}; {INSTALL}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let shown = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    if !out.status.success() {
        // The runtime is there but not the driver library in it.
        let missing = [
            "ModuleNotFoundError",
            "Cannot find module",
            "package org.postgresql does not exist",
            "No suitable driver",
        ]
        .iter()
        .any(|m| stderr.contains(m));
        return Err(format!(
            "{driver:?} failed ({}) after {:.1?}{}\n{shown}",
            out.status,
            started.elapsed(),
            if missing {
                format!("; to install it, {INSTALL}")
            } else {
                String::new()
            }
        ));
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("SUMMARY "))
        .ok_or_else(|| format!("{driver:?} printed no SUMMARY line\n{shown}"))?
        .to_owned();
    let backends = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("backends="))
        .and_then(|v| {
            v.split(',')
                .map(|n| n.parse().ok())
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| format!("{driver:?}: no backends=N,N in {line:?}"))?;
    eprintln!("{driver:?} in {:.1?}: {line}", started.elapsed());
    Ok(Summary { line, backends })
}

/// Clients cycling short transactions (simple protocol: no named statements of their own)
/// through a pool, so whoever else uses it keeps changing servers.
struct Churn {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Result<u64, String>>>,
}

impl Churn {
    async fn start(proxy: &TestProxy, db: &str, clients: usize) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for id in 0..clients {
            let client = proxy.connect_as(SCRAM_USER.0, SCRAM_USER.1, db).await;
            let stop = Arc::clone(&stop);
            tasks.push(tokio::spawn(async move {
                let err = |what: &str, e: tokio_postgres::Error| {
                    format!("churn {id}: {what}: {}", pg(&e))
                };
                let mut transactions = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // A transaction holding its server for four round trips...
                    client
                        .batch_execute("BEGIN")
                        .await
                        .map_err(|e| err("BEGIN", e))?;
                    let first = rows(&client, "SELECT pg_backend_pid()")
                        .await
                        .map_err(|e| err("SELECT", e))?;
                    let second = rows(&client, "SELECT pg_backend_pid()")
                        .await
                        .map_err(|e| err("SELECT", e))?;
                    client
                        .batch_execute("COMMIT")
                        .await
                        .map_err(|e| err("COMMIT", e))?;
                    if first != second {
                        return Err(format!(
                            "churn {id}: one transaction ran on backends {first:?} and {second:?}"
                        ));
                    }
                    // ...and one in autocommit.
                    let one = rows(&client, &format!("SELECT {id}"))
                        .await
                        .map_err(|e| err("SELECT id", e))?;
                    if one != [Some(id.to_string())] {
                        return Err(format!("churn {id}: SELECT {id} returned {one:?}"));
                    }
                    transactions += 2;
                    tokio::time::sleep(Duration::from_millis(3 + id as u64 % 5)).await;
                }
                Ok(transactions)
            }));
        }
        Churn { stop, tasks }
    }

    /// Stops the churn; fails the test if any churn client failed. Returns their transactions.
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        let mut failures = Vec::new();
        for t in self.tasks {
            match tokio::time::timeout(Duration::from_secs(60), t).await {
                Ok(Ok(Ok(n))) => total += n,
                Ok(Ok(Err(e))) => failures.push(e),
                Ok(Err(e)) => failures.push(format!("churn task panicked: {e}")),
                Err(_) => failures.push("a churn client did not stop".to_owned()),
            }
        }
        assert!(failures.is_empty(), "churn clients failed: {failures:?}");
        assert!(total > 0, "the churn clients ran no transaction");
        total
    }
}

/// A tokio-postgres error with the server's (or proxy's) message: its Display says only
/// "db error".
fn pg(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} {}: {}", d.severity(), d.code().code(), d.message()),
        None => e.to_string(),
    }
}

/// No pool grew past its size and nobody is left waiting.
fn assert_pools_within(proxy: &TestProxy, size: usize) {
    for pool in proxy.shared.pools.all() {
        let (_, total, waiting) = pool.snapshot();
        assert!(
            total <= size,
            "pool {} grew past {size}: {total}",
            pool.database
        );
        assert_eq!(
            waiting, 0,
            "clients still waiting on pool {}",
            pool.database
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The driver programs from other ecosystems.

/// The driver programs against Postgres directly: each must pass on its own, with each of its
/// connections on one backend, before its failures through the proxy mean anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_programs_pass_against_postgres_directly() {
    let c = cluster();
    let url = format!(
        "postgres://{}:{}@{}:{}/{DB}",
        SCRAM_USER.0, SCRAM_USER.1, c.primary.host, c.primary.port
    );
    let runs = ALL_DRIVERS.map(|driver| {
        let url = url.clone();
        tokio::spawn(async move {
            let table = format!("drv_{}_direct", driver.slug());
            (
                driver,
                run_driver(driver, &url, &table, BASELINE_ITERATIONS).await,
            )
        })
    });
    let mut failures = Vec::new();
    for run in runs {
        match run.await {
            Ok((_, Ok(s))) if s.backends == [1, 1] => {}
            Ok((driver, Ok(s))) => failures.push(format!(
                "{driver:?}: a direct connection reports several backends: {}",
                s.line
            )),
            Ok((_, Err(e))) => failures.push(e),
            Err(e) => failures.push(format!("driver run panicked: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// One driver program through a pool of 3 while the churn clients run; every one of its
/// connections must have been moved between servers.
async fn driver_through_the_pool(driver: Driver) {
    let proxy = start_proxy(POOL, "").await;
    let churn = Churn::start(&proxy, DB, CHURN_CLIENTS).await;
    let url = proxy.url(SCRAM_USER.0, SCRAM_USER.1, DB);
    let table = format!("drv_{}_pooled", driver.slug());
    let summary = run_driver(driver, &url, &table, ITERATIONS)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let churned = churn.finish().await;
    eprintln!("{driver:?}: {churned} churn transactions alongside");
    for (k, &n) in summary.backends.iter().enumerate() {
        assert!(
            n >= 2,
            "{driver:?} connection {k} ran on {n} backend(s) only: its transactions were not \
             moved between servers, so the test proved nothing\n{}",
            summary.line
        );
    }
    assert_pools_within(&proxy, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_statement_cache_through_a_pool_of_three() {
    driver_through_the_pool(Driver::Asyncpg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_prepared_statements_through_a_pool_of_three() {
    driver_through_the_pool(Driver::Psycopg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_server_prepared_statements_through_a_pool_of_three() {
    driver_through_the_pool(Driver::Pgjdbc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_named_queries_through_a_pool_of_three() {
    driver_through_the_pool(Driver::NodePostgres).await;
}

// ---------------------------------------------------------------------------------------------
// pgbench -M prepared

/// pgbench's prepared mode (Parse once per connection of each script command as a named
/// statement, then Bind by name) with 8 clients on a pool of 3 and churn: select-only, then
/// the default TPC-B-like script, whose balances must add up afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_prepared_through_a_pool_of_three() {
    let c = cluster();
    tokio::task::spawn_blocking(|| {
        cluster()
            .create_database(BENCH_DB, SCRAM_USER.0)
            .unwrap_or_else(|e| panic!("create {BENCH_DB}: {e}"));
    })
    .await
    .unwrap();
    let config = format!(
        "{}\n[[databases]]\nname = \"{BENCH_DB}\"\nprimary = \"{}\"\n",
        base_config(POOL, ""),
        c.url(&c.primary, BENCH_DB)
    );
    let proxy = start_proxy_with(&config).await;
    let url = proxy.url(SCRAM_USER.0, SCRAM_USER.1, BENCH_DB);
    let pgbench = pg_tool("pgbench");
    let out = run_cmd(&pgbench, &["-i", "-s", "1", "-q", &url]).await;
    assert_success("pgbench -i", &out);

    let churn = Churn::start(&proxy, BENCH_DB, 4).await;
    let out = run_cmd(
        &pgbench,
        &[
            "-n", "-M", "prepared", "-S", "-c", "8", "-j", "2", "-t", "200", &url,
        ],
    )
    .await;
    check_pgbench("pgbench -M prepared -S -c 8 -t 200", &out, 1600);
    let out = run_cmd(
        &pgbench,
        &[
            "-n", "-M", "prepared", "-c", "8", "-j", "2", "-t", "100", &url,
        ],
    )
    .await;
    check_pgbench("pgbench -M prepared -c 8 -t 100", &out, 800);
    churn.finish().await;

    let check = proxy.connect_as(SCRAM_USER.0, SCRAM_USER.1, BENCH_DB).await;
    let sums = rows(
        &check,
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(delta) FROM pgbench_history) \
            AND (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT sum(delta) FROM pgbench_history) \
            AND (SELECT count(*) FROM pgbench_history) = 800",
    )
    .await
    .unwrap();
    assert_eq!(
        sums,
        [Some("t".to_owned())],
        "balances do not match the history"
    );
    assert_pools_within(&proxy, 3);
}

// ---------------------------------------------------------------------------------------------
// tokio-postgres

/// One client's prepared statements.
struct Stmts {
    add: tokio_postgres::Statement,
    shout: tokio_postgres::Statement,
    types: tokio_postgres::Statement,
    insert: tokio_postgres::Statement,
    count: tokio_postgres::Statement,
    pid: tokio_postgres::Statement,
    div: tokio_postgres::Statement,
}

const ADD: &str = "SELECT $1::int4 + $2::int4";
const TYPES: &str = "SELECT $1::int8, $2::float8, $3::bool, $4::text, $5::bytea, NULL::int4, \
    ARRAY[$6::int4, $6::int4 + 1]";

impl Stmts {
    async fn prepare(client: &Client, table: &str) -> Result<Stmts, tokio_postgres::Error> {
        Ok(Stmts {
            add: client.prepare(ADD).await?,
            shout: client
                .prepare_typed("SELECT $1 || '!'", &[Type::TEXT])
                .await?,
            types: client.prepare(TYPES).await?,
            insert: client
                .prepare(&format!(
                    "INSERT INTO {table} (id, client, name) VALUES ($1, $2, $3)"
                ))
                .await?,
            count: client
                .prepare(&format!(
                    "SELECT count(*), coalesce(sum(id), 0)::int8 FROM {table} WHERE client = $1"
                ))
                .await?,
            pid: client.prepare("SELECT pg_backend_pid()").await?,
            div: client
                .prepare_typed("SELECT 10 / $1", &[Type::INT4])
                .await?,
        })
    }
}

/// What one tokio-postgres client has done, to check against.
#[derive(Default)]
struct Seen {
    pids: HashSet<i32>,
    inserted: Vec<i32>,
}

async fn check_add(
    c: &impl tokio_postgres::GenericClient,
    s: &Stmts,
    i: i32,
) -> Result<(), String> {
    let got: i32 = c
        .query_one(&s.add, &[&i, &7i32])
        .await
        .map_err(|e| format!("add {i}: {}", pg(&e)))?
        .get(0);
    let shout: String = c
        .query_one(&s.shout, &[&format!("x{i}")])
        .await
        .map_err(|e| format!("shout {i}: {}", pg(&e)))?
        .get(0);
    if (got, shout.as_str()) != (i + 7, format!("x{i}!").as_str()) {
        return Err(format!("add/shout {i}: got {got}, {shout:?}"));
    }
    Ok(())
}

async fn check_types(
    c: &impl tokio_postgres::GenericClient,
    s: &Stmts,
    i: i32,
) -> Result<(), String> {
    let raw = vec![(i % 256) as u8, 0, 255];
    let row = c
        .query_one(
            &s.types,
            &[
                &(10_000_000_000i64 + i64::from(i)),
                &(f64::from(i) + 0.5),
                &(i % 2 == 0),
                &format!("t{i}"),
                &raw,
                &i,
            ],
        )
        .await
        .map_err(|e| format!("types {i}: {}", pg(&e)))?;
    let got = (
        row.get::<_, i64>(0),
        row.get::<_, f64>(1),
        row.get::<_, bool>(2),
        row.get::<_, String>(3),
        row.get::<_, Vec<u8>>(4),
        row.get::<_, Option<i32>>(5),
        row.get::<_, Vec<i32>>(6),
    );
    let want = (
        10_000_000_000i64 + i64::from(i),
        f64::from(i) + 0.5,
        i % 2 == 0,
        format!("t{i}"),
        raw,
        None,
        vec![i, i + 1],
    );
    if got != want {
        return Err(format!("types {i}: got {got:?}, expected {want:?}"));
    }
    Ok(())
}

async fn pid(c: &impl tokio_postgres::GenericClient, s: &Stmts) -> Result<i32, String> {
    Ok(c.query_one(&s.pid, &[])
        .await
        .map_err(|e| format!("pid: {}", pg(&e)))?
        .get(0))
}

async fn check_count(
    c: &impl tokio_postgres::GenericClient,
    s: &Stmts,
    k: i32,
    seen: &Seen,
) -> Result<(), String> {
    let row = c
        .query_one(&s.count, &[&k])
        .await
        .map_err(|e| format!("count {k}: {}", pg(&e)))?;
    let got = (row.get::<_, i64>(0), row.get::<_, i64>(1));
    let want = (
        seen.inserted.len() as i64,
        seen.inserted.iter().map(|&i| i64::from(i)).sum::<i64>(),
    );
    if got != want {
        return Err(format!("count {k}: got {got:?}, expected {want:?}"));
    }
    Ok(())
}

async fn division_by_zero(c: &impl tokio_postgres::GenericClient, s: &Stmts) -> Result<(), String> {
    match c.query_one(&s.div, &[&0i32]).await {
        Ok(_) => Err("10 / 0 did not fail".to_owned()),
        Err(e) if sqlstate(&e).as_deref() == Some("22012") => Ok(()),
        Err(e) => Err(format!("10 / 0: unexpected error {}", pg(&e))),
    }
}

/// One iteration of the tokio-postgres workload on client `k`.
async fn tokio_iteration(
    client: &mut Client,
    s: &mut Stmts,
    k: i32,
    i: i32,
    seen: &mut Seen,
) -> Result<(), String> {
    // Autocommit: each statement its own transaction, wherever it lands.
    check_add(&*client, s, i).await?;
    let n = client
        .execute(&s.insert, &[&i, &k, &format!("row {i}")])
        .await
        .map_err(|e| format!("insert {i}: {}", pg(&e)))?;
    if n != 1 {
        return Err(format!("insert {i}: {n} rows"));
    }
    seen.inserted.push(i);
    check_types(&*client, s, i).await?;
    seen.pids.insert(pid(&*client, s).await?);
    // SQL text: tokio-postgres prepares a statement, executes it and closes it, three round
    // trips in three transactions.
    let t: i32 = client
        .query_one("SELECT $1::int4 * 3", &[&i])
        .await
        .map_err(|e| format!("unprepared {i}: {}", pg(&e)))?
        .get(0);
    if t != 3 * i {
        return Err(format!("unprepared {i}: got {t}"));
    }
    if i % 5 == 0 {
        // A statement re-used after its own error.
        division_by_zero(&*client, s).await?;
        let q: i32 = client
            .query_one(&s.div, &[&2i32])
            .await
            .map_err(|e| format!("div after its error: {}", pg(&e)))?
            .get(0);
        if q != 5 {
            return Err(format!("div after its error: got {q}"));
        }
    }
    if i % 20 == 3 {
        // A statement closed (tokio-postgres sends Close when a Statement is dropped), then the
        // same SQL prepared again under a new name; the long-lived `add` replaced likewise.
        let once = client
            .prepare(ADD)
            .await
            .map_err(|e| format!("prepare once: {}", pg(&e)))?;
        let got: i32 = client
            .query_one(&once, &[&i, &1i32])
            .await
            .map_err(|e| format!("once: {}", pg(&e)))?
            .get(0);
        drop(once);
        let again = client
            .prepare(ADD)
            .await
            .map_err(|e| format!("re-prepare: {}", pg(&e)))?;
        let got_again: i32 = client
            .query_one(&again, &[&i, &2i32])
            .await
            .map_err(|e| format!("re-prepared: {}", pg(&e)))?
            .get(0);
        if (got, got_again) != (i + 1, i + 2) {
            return Err(format!("closed and re-prepared: got {got}, {got_again}"));
        }
        s.add = again; // drops (closes) the previous `add`
        check_add(&*client, s, i).await?;
    }
    if i % 25 == 0 {
        // Several prepared statements in one transaction, and one prepared inside it and used
        // again after COMMIT, by then on whichever server.
        let tx = client
            .transaction()
            .await
            .map_err(|e| format!("BEGIN: {}", pg(&e)))?;
        let first = pid(&tx, s).await?;
        check_add(&tx, s, i).await?;
        tx.execute(&s.insert, &[&(100_000 + i), &k, &"in tx"])
            .await
            .map_err(|e| format!("insert in tx: {}", pg(&e)))?;
        seen.inserted.push(100_000 + i);
        check_types(&tx, s, i).await?;
        check_count(&tx, s, k, seen).await?;
        let inner = tx
            .prepare("SELECT $1::text || ' inner'")
            .await
            .map_err(|e| format!("prepare in tx: {}", pg(&e)))?;
        let v: String = tx
            .query_one(&inner, &[&"a"])
            .await
            .map_err(|e| format!("inner in tx: {}", pg(&e)))?
            .get(0);
        let last = pid(&tx, s).await?;
        tx.commit()
            .await
            .map_err(|e| format!("COMMIT: {}", pg(&e)))?;
        if first != last || v != "a inner" {
            return Err(format!(
                "transaction: backends {first} and {last}, inner {v:?}"
            ));
        }
        for _ in 0..3 {
            let v: String = client
                .query_one(&inner, &[&"b"])
                .await
                .map_err(|e| format!("inner after COMMIT: {}", pg(&e)))?
                .get(0);
            if v != "b inner" {
                return Err(format!("inner after COMMIT: {v:?}"));
            }
        }
    }
    if i % 25 == 12 {
        // A transaction failing on a prepared statement, rolled back; its statements re-used.
        let tx = client
            .transaction()
            .await
            .map_err(|e| format!("BEGIN: {}", pg(&e)))?;
        check_add(&tx, s, i).await?;
        tx.execute(&s.insert, &[&(200_000 + i), &k, &"rolled back"])
            .await
            .map_err(|e| format!("insert in failed tx: {}", pg(&e)))?;
        division_by_zero(&tx, s).await?;
        tx.rollback()
            .await
            .map_err(|e| format!("ROLLBACK: {}", pg(&e)))?;
        check_add(&*client, s, i).await?;
        check_count(&*client, s, k, seen).await?;
    }
    if i % 15 == 7 {
        // Prepared statements pipelined: all in flight before any reply is read.
        let c = &*client;
        let (a, b, p) = tokio::join!(check_add(c, s, i), check_types(c, s, i), pid(c, s));
        a?;
        b?;
        seen.pids.insert(p?);
    }
    Ok(())
}

/// The tokio-postgres workload on two clients taking turns, with table `table` (created
/// here); returns what each client saw.
async fn tokio_workload(mut clients: [Client; 2], table: &str) -> [Seen; 2] {
    clients[0]
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; \
             CREATE TABLE {table} (id int, client int, name text, PRIMARY KEY (client, id))"
        ))
        .await
        .unwrap_or_else(|e| panic!("create {table}: {}", pg(&e)));
    let mut stmts = Vec::new();
    for c in &clients {
        stmts.push(
            Stmts::prepare(c, table)
                .await
                .unwrap_or_else(|e| panic!("prepare: {}", pg(&e))),
        );
    }
    let mut seen = [Seen::default(), Seen::default()];
    let started = Instant::now();
    for i in 1..=ITERATIONS as i32 {
        let k = (i % 2) as usize;
        tokio_iteration(&mut clients[k], &mut stmts[k], k as i32, i, &mut seen[k])
            .await
            .unwrap_or_else(|e| panic!("client {k}, iteration {i}: {e}"));
    }
    for k in 0..2 {
        check_count(&clients[k], &stmts[k], k as i32, &seen[k])
            .await
            .unwrap_or_else(|e| panic!("client {k}: {e}"));
    }
    eprintln!(
        "tokio-postgres on {table}: {ITERATIONS} iterations in {:.1?}, backends {} and {}",
        started.elapsed(),
        seen[0].pids.len(),
        seen[1].pids.len()
    );
    seen
}

/// The tokio-postgres workload against Postgres directly, to show it is right on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_workload_passes_against_postgres_directly() {
    let c = cluster();
    let conninfo = format!(
        "host={} port={} user={} password={} dbname={DB}",
        c.primary.host, c.primary.port, SCRAM_USER.0, SCRAM_USER.1
    );
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to the primary: {}", pg(&e)));
        tokio::spawn(conn);
        clients.push(client);
    }
    let clients: [Client; 2] = clients.try_into().ok().unwrap();
    let seen = tokio_workload(clients, "drv_tokio_direct").await;
    for (k, s) in seen.iter().enumerate() {
        assert_eq!(
            s.pids.len(),
            1,
            "direct client {k} saw backends {:?}",
            s.pids
        );
    }
}

/// tokio-postgres `prepare` and `prepare_typed` statements executed over hundreds of
/// transactions on a pool of 3 with churn: autocommit, explicit and failed transactions,
/// re-use after errors, Close on drop and re-prepare, a statement prepared inside a
/// transaction used after it, pipelined executions, and SQL text (prepared, executed and closed
/// by tokio-postgres in three transactions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_prepared_statements_through_a_pool_of_three() {
    let proxy = start_proxy(POOL, "").await;
    let churn = Churn::start(&proxy, DB, CHURN_CLIENTS).await;
    let clients = [proxy.connect().await, proxy.connect().await];
    let seen = tokio_workload(clients, "drv_tokio_pooled").await;
    let churned = churn.finish().await;
    eprintln!("tokio-postgres: {churned} churn transactions alongside");
    for (k, s) in seen.iter().enumerate() {
        assert!(
            s.pids.len() >= 2,
            "client {k} ran on backends {:?} only: not moved between servers",
            s.pids
        );
    }
    assert_pools_within(&proxy, 3);
}
