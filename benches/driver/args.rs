//! The driver's command line (after `cargo bench --bench driver --`).

use clap::Parser;

/// Compares direct Postgres, Lagoon and PgBouncer with pgbench, interleaved, and prints
/// medians and ratios. Run with `cargo bench --bench driver -- [--quick] [--scenario NAME]...`.
#[derive(Parser, Debug)]
#[command(name = "driver")]
pub struct Args {
    /// Everything tiny: 2 s runs, one round, scale 1, fewer clients. For development and a
    /// smoke test; its figures mean nothing.
    #[arg(long)]
    pub quick: bool,
    /// Run only these scenarios (repeatable; see --list). Default: all.
    #[arg(long = "scenario", value_name = "NAME")]
    pub scenarios: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Seconds per pgbench run (default 10, --quick 2).
    #[arg(long)]
    pub seconds: Option<u32>,
    /// Rounds per scenario, each target once per round in a rotated order
    /// (default 3, --quick 1).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// pgbench scale factor (default 10, --quick 1).
    #[arg(long)]
    pub scale: Option<u32>,
    /// Keep the temp dir (configs, proxy logs) instead of removing it.
    #[arg(long)]
    pub keep: bool,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

/// The settings a run uses, defaults applied.
#[derive(Debug, Clone)]
pub struct Settings {
    pub quick: bool,
    pub seconds: u32,
    pub rounds: usize,
    pub scale: u32,
}

impl Args {
    pub fn settings(&self) -> Settings {
        let (seconds, rounds, scale) = if self.quick { (2, 1, 1) } else { (10, 3, 10) };
        Settings {
            quick: self.quick,
            seconds: self.seconds.unwrap_or(seconds),
            rounds: self.rounds.unwrap_or(rounds).max(1),
            scale: self.scale.unwrap_or(scale).max(1),
        }
    }
}
