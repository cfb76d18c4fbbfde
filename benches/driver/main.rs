//! The benchmark driver (issue 7): starts Postgres (`lagoon::devcluster`), Lagoon (the release
//! binary) and PgBouncer when installed, runs pgbench against each target interleaved (A B C,
//! B C A, C A B, ...) and prints medians and ratios: TPS, latency p50/p99, proxy CPU per
//! transaction, proxy memory per idle client, and the bar as met / not met.
//!
//! `cargo bench --bench driver -- [--quick] [--scenario NAME]...` (`--list` names them). It
//! is not part of `cargo bench` (bench = false in Cargo.toml) nor of `cargo test`: a full run
//! takes about half an hour. Owns orchestration only; the criterion benches in the other
//! files measure the sans-IO paths.

mod args;
mod idle;
mod lagoon;
mod pgbench;
mod pgbouncer;
mod proc;
mod procfs;
mod report;
mod scenario;
mod setup;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Args, Settings};
use crate::proc::Proc;
use crate::report::{Row, Sample};
use crate::scenario::{Auth, Scenario, TargetKind, Work};
use crate::setup::{MD5_USER, SCRAM_USER, Setup};

const NOISE_NOTE: &str = "Ratios from one interleaved run on a noisy shared machine: compare \
the ratios (targets ran in rotated order, medians over rounds), never the absolute times.";

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = args.settings();
    let all = scenario::all(&settings);
    if args.list {
        for sc in &all {
            println!("{:16} {}", sc.name, sc.about);
        }
        return ExitCode::SUCCESS;
    }
    let unknown: Vec<&String> = args
        .scenarios
        .iter()
        .filter(|n| !all.iter().any(|s| s.name == n.as_str()))
        .collect();
    if !unknown.is_empty() {
        eprintln!("unknown scenario(s) {unknown:?}; --list names them");
        return ExitCode::FAILURE;
    }
    let chosen: Vec<Scenario> = all
        .into_iter()
        .filter(|s| args.scenarios.is_empty() || args.scenarios.iter().any(|n| n == s.name))
        .collect();
    match run(&settings, chosen, args.keep) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("driver: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(settings: &Settings, scenarios: Vec<Scenario>, keep: bool) -> Result<(), String> {
    let nofile = procfs::raise_nofile(65_536);
    let replicas = if scenarios.iter().any(Scenario::needs_replicas) {
        2
    } else {
        0
    };
    let setup = Setup::start(settings, replicas, keep)?;
    let pgbouncer = match &setup.pgbouncer {
        Some((path, version)) => format!("PgBouncer {version} ({})", path.display()),
        None => {
            "PgBouncer not installed (apt-get install pgbouncer): its rows are skipped".to_owned()
        }
    };
    let header = format!(
        "Machine: {}\nPostgreSQL {}; {pgbouncer}; Lagoon {} (this build)\n\
         pgbench -T {} s per run, {} round(s) per scenario, scale {}, pool of 20 in \
         transaction mode, md5 client auth unless said, Lagoon with query statistics and \
         /metrics on; open-file limit {nofile}{}\n",
        procfs::machine(),
        setup.postgres_version,
        env!("CARGO_PKG_VERSION"),
        settings.seconds,
        settings.rounds,
        settings.scale,
        if settings.quick {
            "\n--quick: tiny runs, the figures mean nothing"
        } else {
            ""
        },
    );
    eprintln!("{header}");

    let mut rows = Vec::new();
    for sc in &scenarios {
        eprintln!("== {}: {}", sc.name, sc.about);
        rows.extend(run_scenario(&setup, settings, sc));
    }
    println!("\n{header}\n{NOISE_NOTE}\n");
    for sc in &scenarios {
        println!("- {}: {}", sc.name, sc.about);
    }
    println!("\n{}", report::table(&rows));
    println!("Bar (each a ratio from this run):\n{}", report::bar(&rows));
    println!("{NOISE_NOTE}");
    Ok(())
}

/// A target running for a scenario: where clients connect and the process to measure.
struct Running {
    kind: TargetKind,
    port: u16,
    proc: Option<Proc>,
}

impl Running {
    fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }
}

/// Starts `kind` for `sc`, or says why it cannot run there.
fn start_target(setup: &Setup, sc: &Scenario, kind: TargetKind) -> Result<Running, String> {
    if sc.tls && setup.tls.is_none() {
        return Err("no `openssl` to make a certificate".to_owned());
    }
    match kind {
        TargetKind::Direct => Ok(Running {
            kind,
            port: setup.cluster.primary.port,
            proc: None,
        }),
        TargetKind::Lagoon | TargetKind::LagoonSplit => {
            let (proc, port) = lagoon::start(setup, sc, kind)?;
            Ok(Running {
                kind,
                port,
                proc: Some(proc),
            })
        }
        TargetKind::PgBouncer => {
            if let (
                Work::Pgbench {
                    mode: "prepared", ..
                },
                Some((_, v)),
            ) = (&sc.work, &setup.pgbouncer)
                && !pgbouncer::supports_prepared(v)
            {
                return Err(format!(
                    "PgBouncer {v} has no prepared statements in transaction mode (1.21+)"
                ));
            }
            let (proc, port) = pgbouncer::start(setup, sc)?;
            Ok(Running {
                kind,
                port,
                proc: Some(proc),
            })
        }
    }
}

fn credentials(sc: &Scenario) -> (&'static str, &'static str) {
    match sc.auth {
        Auth::Md5 => MD5_USER,
        Auth::Scram => SCRAM_USER,
    }
}

fn run_scenario(setup: &Setup, s: &Settings, sc: &Scenario) -> Vec<Row> {
    let mut rows: Vec<Row> = sc
        .targets
        .iter()
        .map(|&target| Row {
            scenario: sc.name,
            target,
            samples: Vec::new(),
            skipped: None,
        })
        .collect();
    if sc.tls && sc.targets.contains(&TargetKind::Direct) && setup.tls.is_some() {
        if let Err(e) = setup.enable_primary_tls() {
            rows[0].skipped = Some(format!("cannot turn TLS on in Postgres: {e}"));
        }
    }
    match sc.work {
        Work::IdleMemory => idle_rounds(setup, s, sc, &mut rows),
        Work::Pgbench {
            builtin,
            mode,
            connect_per_tx,
        } => {
            // Targets start once per scenario and stay up across its rounds.
            let mut running = Vec::new();
            for row in rows.iter_mut().filter(|r| r.skipped.is_none()) {
                match start_target(setup, sc, row.target) {
                    Ok(r) => running.push(r),
                    Err(e) => {
                        eprintln!("  {}: skipped: {e}", row.target.label());
                        row.skipped = Some(e);
                    }
                }
            }
            let (user, password) = credentials(sc);
            let run = |t: &Running, clients: usize, seconds: u32| pgbench::Run {
                pgbench: &setup.pgbench,
                url: setup::url(user, t.port),
                password,
                builtin,
                mode,
                connect_per_tx,
                clients,
                seconds,
                tls: sc.tls,
                log_dir: setup.dir.join(format!("log-{}-{}", sc.name, t.port)),
            };
            // Warm-up, not recorded: pools filled, first-use allocations made.
            for t in &running {
                let _ = run(t, sc.clients.min(50), 1).execute();
            }
            for round in 0..s.rounds {
                for i in 0..running.len() {
                    let t = &running[(i + round) % running.len()];
                    let cpu0 = t.pid().and_then(procfs::cpu_time);
                    let outcome = run(t, sc.clients, s.seconds).execute();
                    let cpu1 = t.pid().and_then(procfs::cpu_time);
                    let sample = match outcome {
                        Ok(o) => Sample {
                            tps: o.tps,
                            p50_ms: o.p50_ms,
                            p99_ms: o.p99_ms,
                            cpu_us_per_tx: cpu0.zip(cpu1).and_then(|(a, b)| {
                                (o.transactions > 0)
                                    .then(|| (b - a).as_secs_f64() * 1e6 / o.transactions as f64)
                            }),
                            bytes_per_client: None,
                            clients_served: o.clients_served,
                            clients: sc.clients,
                            failed: o.failed,
                            error: o.error,
                        },
                        Err(e) => Sample {
                            clients: sc.clients,
                            error: Some(e),
                            ..Sample::default()
                        },
                    };
                    eprintln!(
                        "  round {}/{}: {:16} {:8.0} tps  p50 {:7.3} ms  p99 {:7.3} ms  cpu {} µs/tx{}",
                        round + 1,
                        s.rounds,
                        t.kind.label(),
                        sample.tps,
                        sample.p50_ms,
                        sample.p99_ms,
                        sample
                            .cpu_us_per_tx
                            .map_or("n/a".to_owned(), |c| format!("{c:.1}")),
                        sample
                            .error
                            .as_ref()
                            .map_or(String::new(), |e| format!("  ERROR {e}"))
                    );
                    if let Some(row) = rows.iter_mut().find(|r| r.target == t.kind) {
                        row.samples.push(sample);
                    }
                }
            }
        }
    }
    rows
}

/// The idle-memory scenario: a fresh proxy process per target and round (memory an earlier
/// batch of clients freed would hide the next batch's), measured in rotated order.
fn idle_rounds(setup: &Setup, s: &Settings, sc: &Scenario, rows: &mut [Row]) {
    let (user, password) = credentials(sc);
    let kinds: Vec<TargetKind> = rows.iter().map(|r| r.target).collect();
    for round in 0..s.rounds {
        for i in 0..kinds.len() {
            let kind = kinds[(i + round) % kinds.len()];
            let Some(row) = rows.iter_mut().find(|r| r.target == kind) else {
                continue;
            };
            if row.skipped.is_some() {
                continue;
            }
            let t = match start_target(setup, sc, kind) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("  {}: skipped: {e}", kind.label());
                    row.skipped = Some(e);
                    continue;
                }
            };
            let Some(pid) = t.pid() else { continue };
            let measured = idle::bytes_per_client(pid, t.port, user, password, sc.clients);
            eprintln!(
                "  round {}/{}: {:16} {}",
                round + 1,
                s.rounds,
                kind.label(),
                match &measured {
                    Ok(b) => format!("{b:.0} B per idle client"),
                    Err(e) => format!("ERROR {e}"),
                }
            );
            let (bytes, error) = match measured {
                Ok(b) => (Some(b), None),
                Err(e) => (None, Some(e)),
            };
            row.samples.push(Sample {
                bytes_per_client: bytes,
                error,
                ..Sample::default()
            });
        }
    }
}
