//! The slow-query log: one JSON object per line for every query at or above the slow
//! threshold, to stderr or a file, rate-limited; and the most recent entries for `SHOW SLOW`.
//!
//! It owns the line format, the rate limit and the writer task; it does not decide what is
//! slow (the session compares the timer's total with the threshold) nor count
//! `lagoon_slow_queries_total` (the metrics module does, on the data path).
//!
//! # Data path
//!
//! [`SlowLog::record`] copies the record into a bounded channel with `try_send`: a full
//! channel drops the entry and counts it ([`SlowLog::dropped`]); the data path never waits on
//! the disk. The writer task normalizes the text (so literals never reach the line, nor the
//! ring, unless `log_parameters`), keeps the entry in the ring, and writes the line.
//!
//! # Line
//!
//! `{"time": RFC 3339 UTC with milliseconds, "fingerprint": 16 hex digits, "query": normalized
//! text, "duration_ms", "pool_wait_ms", "server_ms", "client_ms": milliseconds with
//! microsecond decimals, "database", "user", "application_name", "member", "route": "primary"
//! | "replica", "sqlstate": "57014" or null, "rows"}`, plus `"text"` (the statement as sent,
//! lossy UTF-8) only with `log_parameters = true`. `serde_json` does the escaping.
//!
//! # Rate limit
//!
//! A token bucket of `rate_per_sec` tokens refilled at `rate_per_sec` per second (a burst of
//! one second's worth): a line takes a token; an entry finding none is counted as suppressed
//! (it still goes to the ring: memory is bounded, the disk is what is protected). When
//! entries were suppressed (or dropped at the channel), a summary line
//! `{"time": .., "suppressed": n, "dropped": m}` is written as soon as a token is available
//! again, at most once a second and without taking one, so a storm yields at most
//! `rate_per_sec + 1` lines a second, each line of the storm still a real entry.
//!
//! # Failures
//!
//! A file is opened in append mode (created if missing) at the first line, and reopened after
//! a write error; errors are logged through `tracing` once per streak of failures, the lines
//! lost are not retried, and nothing panics.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{QueryRecord, Route, fingerprint};

/// Entries queued between the data path and the writer: a burst this large is absorbed, more
/// is dropped (counted).
pub const CHANNEL_CAPACITY: usize = 1024;

/// Entries `SHOW SLOW` shows by default.
pub const DEFAULT_RECENT: usize = 100;

/// Where lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    /// Appended to; created if missing.
    File(PathBuf),
}

impl LogTarget {
    /// From `[slow_query] log`: `"stderr"`, or a file path.
    pub fn from_config(log: &str) -> Self {
        if log == "stderr" {
            LogTarget::Stderr
        } else {
            LogTarget::File(PathBuf::from(log))
        }
    }
}

/// One slow query, as logged and as `SHOW SLOW` lists it. Serializes to the line's JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SlowEntry {
    #[serde(rename = "time", serialize_with = "ser_time")]
    pub at: SystemTime,
    #[serde(serialize_with = "ser_hex")]
    pub fingerprint: u64,
    /// The normalized text: literals replaced.
    pub query: String,
    #[serde(rename = "duration_ms", serialize_with = "ser_ms")]
    pub total: Duration,
    #[serde(rename = "pool_wait_ms", serialize_with = "ser_ms")]
    pub pool_wait: Duration,
    #[serde(rename = "server_ms", serialize_with = "ser_ms")]
    pub server: Duration,
    #[serde(rename = "client_ms", serialize_with = "ser_ms")]
    pub client: Duration,
    pub database: String,
    pub user: String,
    pub application_name: String,
    pub member: String,
    pub route: Route,
    #[serde(serialize_with = "ser_sqlstate")]
    pub sqlstate: Option<[u8; 5]>,
    pub rows: u64,
    /// The statement as sent, literals included: only with `log_parameters = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// What crosses the channel: the entry without its normalized text, and the raw text the
/// writer normalizes (off the data path) and then drops.
struct Queued {
    entry: SlowEntry,
    sql: Box<[u8]>,
    std_strings: bool,
    log_parameters: bool,
}

/// The handle sessions share (`Arc<SlowLog>`): feeds the writer task, reads the ring and the
/// counters.
pub struct SlowLog {
    tx: mpsc::Sender<Queued>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    recent: Mutex<VecDeque<SlowEntry>>,
    recent_cap: usize,
    dropped: AtomicU64,
    suppressed: AtomicU64,
    written: AtomicU64,
}

impl SlowLog {
    /// Spawns the writer task on the current tokio runtime (panics outside one, like
    /// `tokio::spawn`). `rate_per_sec` lines a second at most (0 counts as 1); `recent`
    /// entries kept for [`SlowLog::recent`].
    pub fn start(target: LogTarget, rate_per_sec: u32, recent: usize) -> SlowLog {
        let output = match target {
            LogTarget::Stderr => Output::Stderr(tokio::io::stderr()),
            LogTarget::File(path) => Output::File { path, file: None },
        };
        Self::spawn(output, rate_per_sec, recent)
    }

    /// As [`SlowLog::start`], writing to `writer` (tests, or an embedder's own sink).
    pub fn with_writer(
        writer: impl AsyncWrite + Send + Unpin + 'static,
        rate_per_sec: u32,
        recent: usize,
    ) -> SlowLog {
        Self::spawn(Output::Writer(Box::new(writer)), rate_per_sec, recent)
    }

    fn spawn(output: Output, rate_per_sec: u32, recent: usize) -> SlowLog {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let shared = Arc::new(Shared {
            recent: Mutex::new(VecDeque::with_capacity(recent.min(1024))),
            recent_cap: recent,
            dropped: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            written: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        let writer = Writer {
            output,
            bucket: TokenBucket::new(rate_per_sec, Instant::now()),
            shared: shared.clone(),
            pending: 0,
            dropped_reported: 0,
            last_summary: None,
            failing: false,
        };
        let task = tokio::spawn(writer.run(rx, stop.clone()));
        SlowLog {
            tx,
            shared,
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// Queues `rec` (fingerprint `fp`) for the log; never waits. Copies the record's strings
    /// and text (this is the slow path: at most one per slow query). Returns false when the
    /// channel was full or the log closed, and the entry was dropped (counted).
    pub fn record(&self, fp: u64, rec: &QueryRecord<'_>, log_parameters: bool) -> bool {
        let queued = Queued {
            entry: SlowEntry {
                at: rec.at,
                fingerprint: fp,
                query: String::new(),
                total: rec.total,
                pool_wait: rec.pool_wait,
                server: rec.server,
                client: rec.client,
                database: rec.database.to_owned(),
                user: rec.user.to_owned(),
                application_name: rec.application_name.to_owned(),
                member: rec.member.to_owned(),
                route: rec.route,
                sqlstate: rec.sqlstate,
                rows: rec.rows,
                text: None,
            },
            sql: rec.sql.into(),
            std_strings: rec.std_strings,
            log_parameters,
        };
        let sent = self.tx.try_send(queued).is_ok();
        if !sent {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// The most recent entries, newest first (all that reached the writer, written or
    /// suppressed).
    pub fn recent(&self) -> Vec<SlowEntry> {
        let ring = self
            .shared
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        ring.iter().rev().cloned().collect()
    }

    /// Entries lost because the channel was full (or the log closed).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Entries not written because of the rate limit.
    pub fn suppressed(&self) -> u64 {
        self.shared.suppressed.load(Ordering::Relaxed)
    }

    /// Entry lines written (summary lines not included).
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Stops the writer: what is queued is written (rate limit still applies; a final
    /// summary counts the rest), the output flushed. Later `record`s are dropped. Idempotent.
    pub async fn close(&self) {
        self.stop.cancel();
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "slow-query log writer ended abnormally");
            }
        }
    }
}

enum Output {
    Stderr(tokio::io::Stderr),
    File {
        path: PathBuf,
        file: Option<tokio::fs::File>,
    },
    Writer(Box<dyn AsyncWrite + Send + Unpin>),
}

impl Output {
    async fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stderr(w) => write_flush(w, line).await,
            Output::Writer(w) => write_flush(w, line).await,
            Output::File { path, file } => {
                if file.is_none() {
                    let f = tokio::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .await?;
                    *file = Some(f);
                }
                let Some(f) = file.as_mut() else {
                    return Ok(());
                };
                let result = write_flush(f, line).await;
                if result.is_err() {
                    // Reopen at the next line: the file may have been moved or the disk freed.
                    *file = None;
                }
                result
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Output::Stderr(_) => "stderr".to_owned(),
            Output::File { path, .. } => path.display().to_string(),
            Output::Writer(_) => "writer".to_owned(),
        }
    }
}

async fn write_flush<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    line: &[u8],
) -> std::io::Result<()> {
    w.write_all(line).await?;
    w.flush().await
}

struct Writer {
    output: Output,
    bucket: TokenBucket,
    shared: Arc<Shared>,
    /// Suppressed since the last summary line.
    pending: u64,
    /// `shared.dropped` as of the last summary line.
    dropped_reported: u64,
    last_summary: Option<Instant>,
    /// In a streak of write failures (logged once per streak).
    failing: bool,
}

/// Summary lines at most this often.
const SUMMARY_EVERY: Duration = Duration::from_secs(1);

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Queued>, stop: CancellationToken) {
        loop {
            let wake = (self.pending > 0).then(|| self.summary_due());
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                msg = rx.recv() => match msg {
                    Some(q) => self.handle(q).await,
                    None => break,
                },
                () = sleep_until_opt(wake) => self.maybe_summary(Instant::now()).await,
            }
        }
        rx.close();
        while let Some(q) = rx.recv().await {
            self.handle(q).await;
        }
        // Whatever was held back is reported now, limit or not: the process may be ending.
        if self.pending > 0 || self.dropped_since() > 0 {
            self.summary(Instant::now()).await;
        }
    }

    /// When a summary may be written: a token available and a second since the last one.
    fn summary_due(&self) -> Instant {
        let token = self.bucket.next_token_at();
        match self.last_summary {
            Some(last) => token.max(last + SUMMARY_EVERY),
            None => token,
        }
    }

    fn dropped_since(&self) -> u64 {
        self.shared
            .dropped
            .load(Ordering::Relaxed)
            .saturating_sub(self.dropped_reported)
    }

    async fn handle(&mut self, q: Queued) {
        let now = Instant::now();
        let mut entry = q.entry;
        entry.query = fingerprint::normalize(&q.sql, q.std_strings);
        if q.log_parameters {
            entry.text = Some(String::from_utf8_lossy(&q.sql).into_owned());
        }
        self.remember(&entry);
        self.maybe_summary(now).await;
        if self.bucket.take(now) {
            match serde_json::to_vec(&entry) {
                Ok(line) => {
                    if self.write(line).await {
                        self.shared.written.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "slow-query log: cannot encode an entry"),
            }
        } else {
            self.pending += 1;
            self.shared.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn remember(&self, entry: &SlowEntry) {
        if self.shared.recent_cap == 0 {
            return;
        }
        let mut ring = self
            .shared
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while ring.len() >= self.shared.recent_cap {
            ring.pop_front();
        }
        ring.push_back(entry.clone());
    }

    async fn maybe_summary(&mut self, now: Instant) {
        let owed = self.pending > 0 || self.dropped_since() > 0;
        if owed && now >= self.summary_due() && self.bucket.available(now) {
            self.summary(now).await;
        }
    }

    async fn summary(&mut self, now: Instant) {
        let dropped = self.dropped_since();
        let line = serde_json::json!({
            "time": rfc3339(SystemTime::now()),
            "suppressed": self.pending,
            "dropped": dropped,
        });
        self.pending = 0;
        self.dropped_reported += dropped;
        self.last_summary = Some(now);
        if let Ok(line) = serde_json::to_vec(&line) {
            self.write(line).await;
        }
    }

    /// Writes one line (a newline appended); false when it failed (logged once per streak).
    async fn write(&mut self, mut line: Vec<u8>) -> bool {
        line.push(b'\n');
        match self.output.write_line(&line).await {
            Ok(()) => {
                self.failing = false;
                true
            }
            Err(e) => {
                if !self.failing {
                    self.failing = true;
                    tracing::error!(
                        target = %self.output.describe(),
                        error = %e,
                        "slow-query log: write failed; lines are lost until it succeeds"
                    );
                }
                false
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Tokens for lines: `burst` at most, refilled at `rate` a second. Uses tokio's clock, so
/// tests run it under paused time.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate_per_sec: u32, now: Instant) -> Self {
        let rate = f64::from(rate_per_sec.max(1));
        TokenBucket {
            rate,
            burst: rate,
            tokens: rate,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = self.last.max(now);
    }

    fn available(&mut self, now: Instant) -> bool {
        self.refill(now);
        // A hair of slack: refills are float arithmetic, and a token due at `next_token_at`
        // must be there when the timer set for it fires.
        self.tokens >= 1.0 - 1e-9
    }

    fn take(&mut self, now: Instant) -> bool {
        let ok = self.available(now);
        if ok {
            self.tokens -= 1.0;
        }
        ok
    }

    /// When the next token is there (now, if one is).
    fn next_token_at(&self) -> Instant {
        if self.tokens >= 1.0 - 1e-9 {
            self.last
        } else {
            self.last + Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

fn ser_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

fn ser_hex<S: Serializer>(fp: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{fp:016x}"))
}

/// Milliseconds with microsecond decimals (`612.345`).
fn ser_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_micros() as f64 / 1000.0)
}

fn ser_sqlstate<S: Serializer>(code: &Option<[u8; 5]>, s: S) -> Result<S::Ok, S::Error> {
    match code {
        Some(c) => s.serialize_str(&String::from_utf8_lossy(c)),
        None => s.serialize_none(),
    }
}

/// `2023-11-14T22:13:20.123Z`: RFC 3339, UTC, milliseconds. Times before 1970 print as the
/// epoch (a clock that wrong has bigger problems).
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;
