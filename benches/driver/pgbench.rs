//! One pgbench run against one target and what it reports: TPS and transactions from its
//! summary, per-transaction latency percentiles from its `--log` files, and whether every
//! client was served.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a run asks of pgbench.
pub struct Run<'a> {
    pub pgbench: &'a Path,
    pub url: String,
    pub password: &'a str,
    pub builtin: &'a str,
    pub mode: &'a str,
    pub connect_per_tx: bool,
    pub clients: usize,
    pub seconds: u32,
    pub tls: bool,
    /// Directory for this run's `--log` files (emptied by the run).
    pub log_dir: PathBuf,
}

/// What a run reported.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub tps: f64,
    pub transactions: u64,
    pub failed: u64,
    /// Per-transaction latency percentiles, milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Distinct clients that completed at least one transaction.
    pub clients_served: usize,
    /// pgbench's own complaint when it exited non-zero (aborted clients, connection errors).
    pub error: Option<String>,
}

impl Run<'_> {
    pub fn execute(&self) -> Result<Outcome, String> {
        let _ = std::fs::remove_dir_all(&self.log_dir);
        std::fs::create_dir_all(&self.log_dir)
            .map_err(|e| format!("{}: {e}", self.log_dir.display()))?;
        // Two threads (this machine's cores); one for one client.
        let threads = self.clients.clamp(1, 2);
        let mut cmd = Command::new(self.pgbench);
        cmd.args(["-n", "-b", self.builtin, "-M", self.mode])
            .args(["-c", &self.clients.to_string(), "-j", &threads.to_string()])
            .args(["-T", &self.seconds.to_string()])
            .arg("--log")
            .arg(format!(
                "--log-prefix={}",
                self.log_dir.join("tx").display()
            ))
            .arg(&self.url)
            .env("PGPASSWORD", self.password)
            .env("PGSSLMODE", if self.tls { "require" } else { "disable" })
            .env("PGCONNECT_TIMEOUT", "120");
        if self.connect_per_tx {
            cmd.arg("-C");
        }
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.pgbench.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut outcome = parse_summary(&stdout);
        if !out.status.success() {
            let first: Vec<&str> = stderr.lines().take(3).collect();
            outcome.error = Some(format!("pgbench {}: {}", out.status, first.join(" | ")));
        }
        if outcome.transactions == 0 && outcome.error.is_none() {
            outcome.error = Some(format!("no transactions; pgbench said: {stderr}"));
        }
        let (mut latencies, served) = read_logs(&self.log_dir)?;
        latencies.sort_unstable();
        outcome.p50_ms = percentile(&latencies, 0.50) / 1000.0;
        outcome.p99_ms = percentile(&latencies, 0.99) / 1000.0;
        outcome.clients_served = served;
        let _ = std::fs::remove_dir_all(&self.log_dir);
        Ok(outcome)
    }
}

/// The summary lines pgbench 15 prints, e.g. `tps = 12345.6 (without initial connection
/// time)`, `number of transactions actually processed: 123456`, `number of failed
/// transactions: 0 (0.000%)`.
fn parse_summary(stdout: &str) -> Outcome {
    let mut o = Outcome::default();
    for line in stdout.lines() {
        if let Some(v) = line.strip_prefix("tps = ") {
            o.tps = first_number(v);
        } else if let Some(v) = line.strip_prefix("number of transactions actually processed: ") {
            o.transactions = first_number(v) as u64;
        } else if let Some(v) = line.strip_prefix("number of failed transactions: ") {
            o.failed = first_number(v) as u64;
        }
    }
    o
}

fn first_number(text: &str) -> f64 {
    text.split(|c: char| c.is_whitespace() || c == '/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

/// Latencies (µs) of every logged transaction, and how many distinct clients logged one.
/// A log line is `client_id transaction_no time script_no time_epoch time_us`; `time` is
/// the latency in µs ("failed" or "skipped" for those, which are not latencies).
fn read_logs(dir: &Path) -> Result<(Vec<u64>, usize), String> {
    let mut latencies = Vec::new();
    let mut clients = HashSet::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let mut f = line.split_ascii_whitespace();
            let (Some(client), Some(_), Some(time)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if let Ok(us) = time.parse::<u64>() {
                latencies.push(us);
                clients.insert(client.to_owned());
            }
        }
    }
    Ok((latencies, clients.len()))
}

/// Nearest-rank percentile of sorted values; 0 when empty.
fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}
