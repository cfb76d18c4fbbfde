use std::pin::Pin;
use std::task::{Context, Poll};

use serde_json::Value;

use super::*;
use crate::stats::sample_record;

/// An in-memory output the test reads while the writer owns a clone.
#[derive(Clone, Default)]
struct Mem(Arc<Mutex<Vec<u8>>>);

impl Mem {
    fn lines(&self) -> Vec<Value> {
        let buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buf)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    fn raw(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into()
    }
}

impl AsyncWrite for Mem {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(b);
        Poll::Ready(Ok(b.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const SECRET_SQL: &[u8] =
    b"SELECT * FROM accounts WHERE email = 'alice@example.com' AND pin = 424242";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test]
async fn line_shape() {
    let mem = Mem::default();
    let log = SlowLog::with_writer(mem.clone(), 100, 10);
    let mut rec = sample_record(SECRET_SQL, Duration::from_micros(612_345));
    rec.sqlstate = Some(*b"57014");
    let fp = rec.fingerprint();
    assert!(log.record(fp, &rec, false));
    log.close().await;
    let lines = mem.lines();
    assert_eq!(lines.len(), 1, "{}", mem.raw());
    let l = &lines[0];
    assert_eq!(l["time"], "2023-11-14T22:13:20.000Z");
    assert_eq!(l["fingerprint"], format!("{fp:016x}"));
    assert_eq!(
        l["query"],
        "SELECT * FROM accounts WHERE email = $1 AND pin = $2"
    );
    assert_eq!(l["duration_ms"], 612.345);
    assert_eq!(l["pool_wait_ms"], 1.0);
    assert_eq!(l["server_ms"], 609.345);
    assert_eq!(l["client_ms"], 2.0);
    assert_eq!(l["database"], "appdb");
    assert_eq!(l["user"], "app");
    assert_eq!(l["application_name"], "psql");
    assert_eq!(l["member"], "127.0.0.1:5433");
    assert_eq!(l["route"], "replica");
    assert_eq!(l["sqlstate"], "57014");
    assert_eq!(l["rows"], 1);
    let keys = l.as_object().map(|o| o.len());
    assert_eq!(keys, Some(14), "{l}");
    assert_eq!(log.written(), 1);
    // Closed: further records are dropped, not queued.
    assert!(!log.record(fp, &rec, false));
    assert_eq!(log.dropped(), 1);
}

#[tokio::test]
async fn literals_only_with_log_parameters() {
    let mem = Mem::default();
    let log = SlowLog::with_writer(mem.clone(), 100, 10);
    let rec = sample_record(SECRET_SQL, ms(700));
    log.record(rec.fingerprint(), &rec, false);
    log.close().await;
    let out = mem.raw();
    assert!(!out.contains("alice") && !out.contains("424242"), "{out}");
    assert!(!out.contains("\"text\""));
    let recent = log.recent();
    assert!(
        recent
            .iter()
            .all(|e| e.text.is_none() && !e.query.contains("alice"))
    );

    let mem = Mem::default();
    let log = SlowLog::with_writer(mem.clone(), 100, 10);
    let mut rec = sample_record(b"SELECT '\"quoted\"\n\xff', 424242", ms(700));
    rec.application_name = "app \"x\"";
    log.record(rec.fingerprint(), &rec, true);
    log.close().await;
    let l = &mem.lines()[0];
    assert_eq!(l["text"], "SELECT '\"quoted\"\n\u{fffd}', 424242");
    assert_eq!(l["query"], "SELECT $1, $2");
    assert_eq!(l["application_name"], "app \"x\"");
}

#[tokio::test(start_paused = true)]
async fn rate_limited_with_a_summary() {
    let mem = Mem::default();
    let log = SlowLog::with_writer(mem.clone(), 2, 10);
    let rec = sample_record(b"SELECT pg_sleep(1)", ms(1000));
    for _ in 0..5 {
        assert!(log.record(1, &rec, false));
    }
    tokio::time::sleep(ms(10)).await;
    assert_eq!(mem.lines().len(), 2, "burst = rate");
    assert_eq!((log.written(), log.suppressed()), (2, 3));
    // A token is back after 0.5 s: the summary, alone.
    tokio::time::sleep(ms(600)).await;
    let lines = mem.lines();
    assert_eq!(lines.len(), 3, "{}", mem.raw());
    assert_eq!(lines[2]["suppressed"], 3);
    assert_eq!(lines[2]["dropped"], 0);
    assert!(lines[2]["time"].is_string());
    // Later entries are written again.
    tokio::time::sleep(ms(1000)).await;
    log.record(1, &rec, false);
    tokio::time::sleep(ms(10)).await;
    assert_eq!(mem.lines().len(), 4);
    assert_eq!(log.written(), 3);
    // All five and the last one reached the ring, suppressed or not.
    assert_eq!(log.recent().len(), 6);
    log.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_storm_writes_at_most_rate_plus_one_lines_a_second() {
    let mem = Mem::default();
    let log = SlowLog::with_writer(mem.clone(), 10, 0);
    let rec = sample_record(b"SELECT 1", ms(1000));
    // 200 a second for 5 seconds.
    for _ in 0..1000 {
        log.record(1, &rec, false);
        tokio::time::sleep(ms(5)).await;
    }
    log.close().await;
    let lines = mem.lines();
    let entries = lines.iter().filter(|l| l.get("query").is_some()).count() as u64;
    let summaries: u64 = lines.iter().filter_map(|l| l["suppressed"].as_u64()).sum();
    // Burst 10 plus 10 a second over 5 s, give or take one refill.
    assert!((55..=61).contains(&entries), "{entries}");
    assert!(lines.len() as u64 <= entries + 6, "{}", lines.len());
    assert_eq!(entries + summaries, 1000);
    assert!(log.recent().is_empty());
}

#[tokio::test]
async fn ring_keeps_the_most_recent() {
    let log = SlowLog::with_writer(Mem::default(), 1, 3);
    for i in 0..5u64 {
        let mut rec = sample_record(b"SELECT 1", ms(600));
        rec.rows = i;
        log.record(i, &rec, false);
    }
    log.close().await;
    let recent = log.recent();
    let rows: Vec<u64> = recent.iter().map(|e| e.rows).collect();
    assert_eq!(rows, [4, 3, 2], "newest first");
    assert_eq!(recent[0].query, "SELECT $1");
    assert_eq!(recent[0].fingerprint, 4);
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_channel_drops_and_counts() {
    let mem = Mem::default();
    let log = SlowLog::with_writer(mem.clone(), 10_000, 0);
    let rec = sample_record(b"SELECT 1", ms(600));
    // The writer cannot run before this task yields: the channel fills.
    let sent = (0..CHANNEL_CAPACITY + 5)
        .filter(|_| log.record(1, &rec, false))
        .count();
    assert_eq!(sent, CHANNEL_CAPACITY);
    assert_eq!(log.dropped(), 5);
    log.close().await;
    let lines = mem.lines();
    assert_eq!(lines.len(), CHANNEL_CAPACITY + 1);
    // The summary goes before the first line the writer could write after the loss.
    assert_eq!(lines[0]["dropped"], 5, "{}", lines[0]);
    assert_eq!(lines[0]["suppressed"], 0);
}

fn temp_path(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    std::env::temp_dir().join(format!("lagoon-{name}-{}-{nanos}.log", std::process::id()))
}

#[tokio::test]
async fn file_target_appends_and_creates() {
    let path = temp_path("slow");
    let rec = sample_record(b"SELECT 1", ms(600));
    for _ in 0..2 {
        let log = SlowLog::start(LogTarget::File(path.clone()), 100, 0);
        log.record(1, &rec, false);
        log.close().await;
        assert_eq!(log.written(), 1);
    }
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    assert_eq!(text.lines().count(), 2, "{text}");
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_default();
        assert_eq!(v["query"], "SELECT $1");
    }
}

#[tokio::test]
async fn unwritable_file_loses_lines_without_panicking() {
    let path = temp_path("missing-dir").join("slow.log");
    let log = SlowLog::start(LogTarget::File(path), 100, 5);
    let rec = sample_record(b"SELECT 1", ms(600));
    log.record(1, &rec, false);
    log.record(2, &rec, false);
    log.close().await;
    assert_eq!(log.written(), 0);
    assert_eq!(
        log.recent().len(),
        2,
        "the ring does not depend on the disk"
    );
}

#[test]
fn log_target_from_config() {
    assert_eq!(LogTarget::from_config("stderr"), LogTarget::Stderr);
    assert_eq!(
        LogTarget::from_config("/var/log/lagoon/slow.log"),
        LogTarget::File("/var/log/lagoon/slow.log".into())
    );
}

#[test]
fn rfc3339_dates() {
    let at = |secs: u64, millis: u64| {
        rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + ms(millis))
    };
    assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
    assert_eq!(at(1_700_000_000, 123), "2023-11-14T22:13:20.123Z");
    assert_eq!(at(951_782_400, 0), "2000-02-29T00:00:00.000Z");
    assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
    assert_eq!(
        rfc3339(SystemTime::UNIX_EPOCH - Duration::from_secs(5)),
        "1970-01-01T00:00:00.000Z"
    );
}

#[test]
fn token_bucket() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(4, t0);
    assert!((0..4).all(|_| b.take(t0)));
    assert!(!b.take(t0));
    assert_eq!(b.next_token_at(), t0 + ms(250));
    assert!(!b.take(t0 + ms(249)));
    assert!(b.take(t0 + ms(250)));
    // Never more than the burst, however long it rested.
    let later = t0 + Duration::from_secs(100);
    assert!((0..4).all(|_| b.take(later)));
    assert!(!b.take(later));
    // 0 counts as 1.
    let mut one = TokenBucket::new(0, t0);
    assert!(one.take(t0) && !one.take(t0));
}
