//! Shutdown (issue 2, item 10): a graceful drain tells idle clients 57P01 at once, lets open
//! transactions finish up to the deadline and refuses new connections; fast shutdown ends
//! everyone with 57P01. Also the real binary under SIGTERM and SIGINT.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::faultkit::*;
use crate::harness::*;

async fn tracked(proxy: &TestProxy) -> Tracked {
    connect_tracked(&proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)).await
}

async fn fresh_table(proxy: &TestProxy, name: &str) {
    let c = proxy.connect().await;
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id int)"
    ))
    .await
    .unwrap();
}

/// A new connection must fail: refused outright, or told 57P01.
async fn assert_refused(conninfo: &str) {
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(conninfo, tokio_postgres::NoTls),
    )
    .await
    .expect("a connection attempt during shutdown hung");
    match r {
        Ok(_) => panic!("a new connection was accepted while shutting down"),
        Err(e) => {
            if let Some(code) = sqlstate(&e) {
                assert_eq!(code, "57P01", "{e}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_ends_idle_clients_and_lets_transactions_finish() {
    let proxy = start_proxy("size = 3\ncheckout_timeout_ms = 10000", "").await;
    fresh_table(&proxy, "shutdown_drain").await;
    let idle = tracked(&proxy).await;
    assert_eq!(scalar(&idle.client, "SELECT 1").await.as_deref(), Some("1"));
    let busy = tracked(&proxy).await;
    busy.client
        .batch_execute("BEGIN; INSERT INTO shutdown_drain VALUES (1)")
        .await
        .unwrap();

    // An autocommit statement still running when the drain begins finishes too.
    let Tracked {
        client: running,
        conn: running_conn,
    } = tracked(&proxy).await;
    let marker = "shutdown_drain_m0";
    let q = tokio::spawn(async move {
        rows(
            &running,
            &format!("SELECT 7 FROM pg_sleep(1) /* {marker} */"),
        )
        .await
    });
    wait_marker_active(marker).await;

    proxy.shared.shutdown.begin_drain(Duration::from_secs(10));
    let started = Instant::now();

    // The idle client is told at once.
    assert_eq!(
        idle.ended_with(Duration::from_secs(3)).await.as_deref(),
        Some("57P01")
    );
    // Nobody new gets in.
    assert_refused(&proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)).await;
    // The running statement gets its result, then 57P01.
    let r = tokio::time::timeout(Duration::from_secs(5), q)
        .await
        .expect("running statement")
        .unwrap()
        .expect("a statement running at drain time must complete");
    assert_eq!(r, [Some("7".to_owned())]);
    let end = tokio::time::timeout(Duration::from_secs(3), running_conn)
        .await
        .expect("connection still open after its statement")
        .unwrap();
    assert_eq!(
        end.err().as_ref().and_then(sqlstate).as_deref(),
        Some("57P01")
    );
    // The transaction carries on to its COMMIT...
    busy.client
        .batch_execute("INSERT INTO shutdown_drain VALUES (2)")
        .await
        .expect("statement inside a transaction during the drain");
    assert_eq!(
        scalar(&busy.client, "SELECT count(*) FROM shutdown_drain")
            .await
            .as_deref(),
        Some("2")
    );
    busy.client
        .batch_execute("COMMIT")
        .await
        .expect("COMMIT during the drain");
    // ...and then its connection ends, well before the deadline.
    assert_eq!(
        busy.ended_with(Duration::from_secs(3)).await.as_deref(),
        Some("57P01")
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(admin("SELECT count(*) FROM shutdown_drain").await, "2");
    // With every session gone the proxy finishes without waiting for the deadline.
    tokio::time::timeout(Duration::from_secs(5), proxy.stop(Duration::from_secs(10)))
        .await
        .expect("the proxy did not finish after its last client left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_ends_open_transactions_with_57p01() {
    let proxy = start_proxy("size = 2\ncheckout_timeout_ms = 10000", "").await;
    fresh_table(&proxy, "shutdown_deadline").await;
    let busy = tracked(&proxy).await;
    let pid: i32 = scalar(
        &busy.client,
        "BEGIN; INSERT INTO shutdown_deadline VALUES (1); SELECT pg_backend_pid()",
    )
    .await
    .unwrap()
    .parse()
    .unwrap();
    proxy
        .shared
        .shutdown
        .begin_drain(Duration::from_millis(500));
    let started = Instant::now();
    assert_eq!(
        busy.ended_with(Duration::from_secs(5)).await.as_deref(),
        Some("57P01")
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the transaction was cut off before the deadline ({:?})",
        started.elapsed()
    );
    eventually(
        "the abandoned transaction rolled back",
        Duration::from_secs(10),
        || async move { !backend_state(pid).await.starts_with("idle in transaction") },
    )
    .await;
    assert_eq!(admin("SELECT count(*) FROM shutdown_deadline").await, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_shutdown_ends_everyone_with_57p01() {
    let proxy = start_proxy("size = 3\ncheckout_timeout_ms = 10000", "").await;
    let idle = tracked(&proxy).await;
    assert_eq!(scalar(&idle.client, "SELECT 1").await.as_deref(), Some("1"));
    let in_txn = tracked(&proxy).await;
    in_txn.client.batch_execute("BEGIN").await.unwrap();
    let Tracked {
        client: running,
        conn: running_conn,
    } = tracked(&proxy).await;
    let marker = "shutdown_fast_m1";
    let q = tokio::spawn(async move {
        running
            .simple_query(&format!("SELECT pg_sleep(30) /* {marker} */"))
            .await
            .map(drop)
    });
    wait_marker_active(marker).await;

    proxy.shared.shutdown.begin_fast();

    assert_eq!(
        idle.ended_with(Duration::from_secs(3)).await.as_deref(),
        Some("57P01")
    );
    assert_eq!(
        in_txn.ended_with(Duration::from_secs(3)).await.as_deref(),
        Some("57P01")
    );
    let err = tokio::time::timeout(Duration::from_secs(3), q)
        .await
        .expect("a running query outlived a fast shutdown")
        .unwrap()
        .expect_err("the running query must fail");
    assert_eq!(sqlstate(&err).as_deref(), Some("57P01"), "{err}");
    tokio::time::timeout(Duration::from_secs(3), running_conn)
        .await
        .expect("connection still open")
        .unwrap()
        .ok();
    assert_refused(&proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)).await;
}

/// The real binary, started with a generated config; stderr is collected for diagnostics.
struct Binary {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    config: std::path::PathBuf,
}

impl Binary {
    async fn start(tag: &str) -> Binary {
        let config = std::env::temp_dir().join(format!(
            "lagoon-{tag}-{}-{}.toml",
            std::process::id(),
            rand::random::<u32>()
        ));
        let text = base_config(
            "size = 2\ncheckout_timeout_ms = 10000",
            "shutdown_timeout_ms = 10000",
        );
        std::fs::write(&config, text).unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lagoon"))
            .arg("--config")
            .arg(&config)
            .env("LAGOON_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the lagoon binary");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                log.lock().unwrap().push(line.clone());
                if line.contains("listening") {
                    if let Some(addr) = find_addr(&line) {
                        return addr;
                    }
                }
            }
            panic!("lagoon exited before listening: {:?}", log.lock().unwrap());
        })
        .await
        .expect("lagoon did not report its listen address");
        let keep = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                keep.lock().unwrap().push(line);
            }
        });
        Binary {
            child,
            addr,
            log,
            config,
        }
    }

    fn conninfo(&self) -> String {
        format!(
            "host={} port={} user={} password={} dbname={DB}",
            self.addr.ip(),
            self.addr.port(),
            SCRAM_USER.0,
            SCRAM_USER.1
        )
    }

    fn signal(&self, sig: i32) {
        let pid = self.child.id().expect("lagoon already exited") as i32;
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    async fn exit_status(&mut self, timeout: Duration) -> std::process::ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(s) => s.unwrap(),
            Err(_) => panic!(
                "lagoon still running {timeout:?} after the signal; log: {:?}",
                self.log.lock().unwrap()
            ),
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

/// The first `ip:port` in a log line.
fn find_addr(line: &str) -> Option<std::net::SocketAddr> {
    line.split(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .filter_map(|w| w.rsplit('=').next())
        .find_map(|w| w.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_the_process_exits_zero() {
    let mut bin = Binary::start("sigterm").await;
    let idle = connect_tracked(&bin.conninfo()).await;
    assert_eq!(scalar(&idle.client, "SELECT 1").await.as_deref(), Some("1"));
    let busy = connect_tracked(&bin.conninfo()).await;
    busy.client.batch_execute("BEGIN").await.unwrap();

    bin.signal(libc::SIGTERM);

    assert_eq!(
        idle.ended_with(Duration::from_secs(5)).await.as_deref(),
        Some("57P01")
    );
    assert_refused(&bin.conninfo()).await;
    assert_eq!(scalar(&busy.client, "SELECT 2").await.as_deref(), Some("2"));
    busy.client
        .batch_execute("COMMIT")
        .await
        .expect("COMMIT while draining");
    let finished = Instant::now();
    assert_eq!(
        busy.ended_with(Duration::from_secs(5)).await.as_deref(),
        Some("57P01")
    );
    let status = bin.exit_status(Duration::from_secs(10)).await;
    assert!(
        status.success(),
        "exit status {status:?}; log: {:?}",
        bin.log.lock().unwrap()
    );
    assert!(
        finished.elapsed() < Duration::from_secs(8),
        "exited {:?} after its last client finished (the drain deadline is 10 s)",
        finished.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_ends_everyone_at_once() {
    let mut bin = Binary::start("sigint").await;
    let busy = connect_tracked(&bin.conninfo()).await;
    busy.client.batch_execute("BEGIN").await.unwrap();
    bin.signal(libc::SIGINT);
    let sent = Instant::now();
    assert_eq!(
        busy.ended_with(Duration::from_secs(5)).await.as_deref(),
        Some("57P01")
    );
    let status = bin.exit_status(Duration::from_secs(5)).await;
    assert!(
        status.success(),
        "exit status {status:?}; log: {:?}",
        bin.log.lock().unwrap()
    );
    assert!(sent.elapsed() < Duration::from_secs(5));
}
