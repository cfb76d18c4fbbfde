//! The `lagoon` binary: CLI, logging, config, runtime. Everything else is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Lagoon: a PostgreSQL connection pooler and proxy.
///
/// Without a subcommand, serves with the given config: clients connect to `server.listen` as
/// they would to Postgres. SIGTERM drains (transactions finish, up to
/// server.shutdown_timeout_ms), SIGINT stops at once, SIGHUP reloads the config file (an
/// invalid file is logged and changes nothing).
#[derive(Parser)]
#[command(name = "lagoon", version, about, long_about)]
struct Cli {
    /// Config file (TOML; see config/lagoon.toml for every key).
    #[arg(long, short, global = true, default_value = "config/lagoon.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config file and print every problem found; exits non-zero if any.
    Check,
    /// Start a local primary and two streaming replicas from the Postgres binaries, a demo
    /// user and database, and Lagoon in front; prints how to connect. Ctrl-C stops all and
    /// removes the temporary data.
    Demo {
        /// Port for Lagoon to listen on (0 picks a free one).
        #[arg(long, default_value_t = 6432)]
        port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Some(Command::Check) => match lagoon::config::load(&cli.config) {
            Ok(_) => {
                println!("{}: OK", cli.config.display());
                ExitCode::SUCCESS
            }
            Err(problems) => {
                for p in &problems {
                    eprintln!("{}: {p}", cli.config.display());
                }
                eprintln!("{} problem(s) found", problems.len());
                ExitCode::FAILURE
            }
        },
        Some(Command::Demo { port }) => run(|rt| rt.block_on(lagoon::demo::run(port))),
        None => {
            let config = match lagoon::config::load(&cli.config) {
                Ok(c) => c,
                Err(problems) => {
                    for p in &problems {
                        eprintln!("{}: {p}", cli.config.display());
                    }
                    return ExitCode::FAILURE;
                }
            };
            run(|rt| {
                rt.block_on(lagoon::app::run(config, cli.config))
                    .map_err(|e| e.to_string())
            })
        }
    }
}

/// A multi-threaded runtime on every core.
fn run<F>(f: F) -> ExitCode
where
    F: FnOnce(&tokio::runtime::Runtime) -> Result<(), String>,
{
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match f(&rt) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lagoon: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAGOON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
