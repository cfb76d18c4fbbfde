//! Load (issue 2, "Done means", scaled down for CI): pgbench in simple and extended protocol
//! and with a new connection per transaction, and a crowd of tokio-postgres clients each
//! writing and reading back its own rows, all through a transaction pool of 10.

use std::time::Duration;

use crate::faultkit::*;
use crate::harness::*;

/// pgbench gets its own database: its table names are fixed.
const BENCH_DB: &str = "lagoon_bench";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_simple_extended_and_reconnecting() {
    let c = cluster();
    tokio::task::spawn_blocking(|| {
        let c = cluster();
        c.create_database(BENCH_DB, SCRAM_USER.0)
            .unwrap_or_else(|e| panic!("create {BENCH_DB}: {e}"));
    })
    .await
    .unwrap();
    let config = format!(
        "{}\n[[databases]]\nname = \"{BENCH_DB}\"\nprimary = \"{}\"\n",
        base_config("size = 10\ncheckout_timeout_ms = 60000", ""),
        c.url(&c.primary, BENCH_DB)
    );
    let proxy = start_proxy_with(&config).await;
    let url = proxy.url(SCRAM_USER.0, SCRAM_USER.1, BENCH_DB);
    let pgbench = pg_tool("pgbench");

    // Initialise through the proxy: DDL, client-side COPY, VACUUM, primary keys.
    let out = run_cmd(&pgbench, &["-i", "-s", "1", "-q", &url]).await;
    assert_success("pgbench -i", &out);
    // -n: no VACUUM / history truncation between runs, so the history adds up at the end.
    for mode in ["simple", "extended"] {
        let out = run_cmd(
            &pgbench,
            &["-n", "-M", mode, "-c", "50", "-j", "2", "-t", "100", &url],
        )
        .await;
        check_pgbench(&format!("pgbench -M {mode} -c 50 -t 100"), &out, 5000);
    }
    let out = run_cmd(
        &pgbench,
        &["-n", "-C", "-S", "-c", "10", "-j", "2", "-t", "20", &url],
    )
    .await;
    check_pgbench("pgbench -C -S -c 10 -t 20", &out, 200);

    // pgbench's own consistency: every transaction's delta landed exactly once.
    let check = proxy.connect_as(SCRAM_USER.0, SCRAM_USER.1, BENCH_DB).await;
    let sums = rows(
        &check,
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(delta) FROM pgbench_history) \
            AND (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT sum(delta) FROM pgbench_history) \
            AND (SELECT count(*) FROM pgbench_history) = 10000",
    )
    .await
    .unwrap();
    assert_eq!(
        sums,
        [Some("t".to_owned())],
        "balances do not match the history"
    );
    for pool in proxy.shared.pools.all() {
        let (_, total, waiting) = pool.snapshot();
        assert!(
            total <= 10,
            "pool {} grew past its size: {total}",
            pool.database
        );
        assert_eq!(waiting, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_each_read_back_their_own_rows() {
    const CLIENTS: i32 = 200;
    const ROWS: i32 = 5;
    let proxy = start_proxy("size = 10\ncheckout_timeout_ms = 60000", "").await;
    let setup = proxy.connect().await;
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS load_own_rows; \
             CREATE TABLE load_own_rows (client int, n int, payload text)",
        )
        .await
        .unwrap();
    let conninfo = proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let conninfo = conninfo.clone();
            tokio::spawn(async move {
                let (mut client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| format!("client {id}: connect: {e}"))?;
                tokio::spawn(conn);
                let tx = client
                    .transaction()
                    .await
                    .map_err(|e| format!("client {id}: BEGIN: {e}"))?;
                for n in 0..ROWS {
                    tx.execute(
                        "INSERT INTO load_own_rows VALUES ($1, $2, $3)",
                        &[&id, &n, &format!("client {id} row {n}")],
                    )
                    .await
                    .map_err(|e| format!("client {id}: INSERT: {e}"))?;
                }
                // Inside the transaction, with parameters (extended protocol)...
                let inside: Vec<String> = tx
                    .query(
                        "SELECT payload FROM load_own_rows WHERE client = $1 ORDER BY n",
                        &[&id],
                    )
                    .await
                    .map_err(|e| format!("client {id}: SELECT: {e}"))?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                tx.commit()
                    .await
                    .map_err(|e| format!("client {id}: COMMIT: {e}"))?;
                // ...and after it, wherever the next transaction lands (simple protocol).
                let after = rows(
                    &client,
                    &format!("SELECT payload FROM load_own_rows WHERE client = {id} ORDER BY n"),
                )
                .await
                .map_err(|e| format!("client {id}: SELECT after COMMIT: {e}"))?;
                let expected: Vec<String> =
                    (0..ROWS).map(|n| format!("client {id} row {n}")).collect();
                if inside != expected {
                    return Err(format!(
                        "client {id} read {inside:?} inside its transaction"
                    ));
                }
                let after: Vec<String> = after.into_iter().flatten().collect();
                if after != expected {
                    return Err(format!("client {id} read {after:?} after COMMIT"));
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    let mut failures = Vec::new();
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(240), t).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => failures.push(e),
            Ok(Err(e)) => failures.push(format!("task panicked: {e}")),
            Err(_) => failures.push("a client did not finish in time".to_owned()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} clients failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(
        admin("SELECT count(*) || ' ' || count(DISTINCT client) FROM load_own_rows").await,
        format!("{} {CLIENTS}", CLIENTS * ROWS)
    );
    let pool = only_pool(&proxy);
    let (_, total, _) = pool.snapshot();
    assert!(total <= 10, "pool grew past its size: {total}");
}
