//! The server processes: `initdb`, `pg_basebackup`, `pg_ctl start` (on a fresh port when the one
//! we picked got taken in the meantime) and `pg_ctl stop`, plus everything `stop` must undo.
//!
//! `Servers` is created before the first server starts and stops whatever it knows about on
//! drop, so a `start` that fails half-way cleans up through the same code as a normal `stop`.

use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

use super::DevClusterError;
use super::conf;
use super::process::Runner;
use super::reaper::Reaper;

/// How many ports we try for one member before giving up.
const PORT_ATTEMPTS: usize = 5;
/// Log lines quoted in a start error.
const LOG_TAIL_LINES: usize = 30;

#[derive(Debug)]
pub(crate) struct Servers {
    pub(crate) runner: Runner,
    pub(crate) bin_dir: PathBuf,
    pub(crate) base_dir: PathBuf,
    /// We created `base_dir` (a temp dir) and remove it on stop.
    owns_base_dir: bool,
    /// Every member's data dir, primary first, whether or not it got started yet.
    data_dirs: Vec<PathBuf>,
    reaper: Option<Reaper>,
    stopped: bool,
}

impl Servers {
    pub(crate) fn new(
        runner: Runner,
        bin_dir: PathBuf,
        base_dir: PathBuf,
        owns_base_dir: bool,
        data_dirs: Vec<PathBuf>,
    ) -> Servers {
        Servers {
            runner,
            bin_dir,
            base_dir,
            owns_base_dir,
            data_dirs,
            reaper: None,
            stopped: false,
        }
    }

    pub(crate) fn data_dirs(&self) -> &[PathBuf] {
        &self.data_dirs
    }

    pub(crate) fn owns_base_dir(&self) -> bool {
        self.owns_base_dir
    }

    pub(crate) fn set_reaper(&mut self, reaper: Reaper) {
        self.reaper = Some(reaper);
    }

    pub(crate) fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Creates the primary's data dir with a password for the superuser, our `pg_hba.conf` and
    /// the include of `lagoon.conf`. `--no-sync` because the cluster is disposable.
    pub(crate) fn initdb(&self, data_dir: &Path, password: &str) -> Result<(), DevClusterError> {
        let pwfile = self.base_dir.join("superuser.pwfile");
        self.runner.write_file(&pwfile, &format!("{password}\n"))?;
        let result = self
            .runner
            .pg(&self.bin("initdb"))
            .arg("-D")
            .arg(data_dir)
            .args(["-U", "postgres", "--auth-local=trust", "--auth-host=md5"])
            .args(["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
            .arg("--pwfile")
            .arg(&pwfile)
            .run();
        let _ = std::fs::remove_file(&pwfile);
        result?;
        self.runner
            .write_file(&data_dir.join("pg_hba.conf"), &conf::pg_hba_conf())?;
        self.runner
            .append_file(&data_dir.join("postgresql.conf"), conf::INCLUDE_LINE)
    }

    /// Clones the primary into `data_dir` as a streaming standby (`-R` writes `standby.signal`
    /// and `primary_conninfo`). `-c fast` skips waiting for a spread checkpoint.
    pub(crate) fn basebackup(
        &self,
        primary_port: u16,
        data_dir: &Path,
    ) -> Result<(), DevClusterError> {
        self.runner
            .pg(&self.bin("pg_basebackup"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port.to_string(),
                "-U",
                "postgres",
            ])
            .arg("-D")
            .arg(data_dir)
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
            .run()
            .map(drop)
    }

    /// Writes `lagoon.conf` with a free port and starts the server, retrying on a new port if
    /// another process grabbed ours between probing and binding. Returns the port.
    pub(crate) fn start(
        &self,
        name: &str,
        data_dir: &Path,
        extra_conf: &[String],
    ) -> Result<u16, DevClusterError> {
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            self.runner.write_file(
                &data_dir.join(conf::LAGOON_CONF),
                &conf::postgresql_conf(name, port, extra_conf),
            )?;
            match self.pg_ctl_start(name, data_dir) {
                Ok(()) => return Ok(port),
                Err(DevClusterError::Start { log_tail, .. })
                    if attempt < PORT_ATTEMPTS && port_taken(&log_tail) =>
                {
                    tracing::warn!(member = name, port, "devcluster port taken, retrying");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts a member again with the `lagoon.conf` it already has (same port; a replica keeps
    /// `standby.signal` and its `primary_conninfo`), for tests that stop and restart servers.
    pub(crate) fn restart(&self, name: &str, data_dir: &Path) -> Result<(), DevClusterError> {
        self.pg_ctl_start(name, data_dir)
    }

    /// `pg_ctl start -w`: returns once the server accepts connections. A failure quotes the
    /// part of the member's log that this attempt wrote.
    fn pg_ctl_start(&self, name: &str, data_dir: &Path) -> Result<(), DevClusterError> {
        let log = self.base_dir.join(format!("{name}.log"));
        let log_start = std::fs::metadata(&log).map_or(0, |m| m.len());
        let out = self
            .runner
            .pg(&self.bin("pg_ctl"))
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(data_dir)
            .arg("-l")
            .arg(&log)
            .output()?;
        if out.status.success() {
            return Ok(());
        }
        Err(DevClusterError::Start {
            member: name.to_owned(),
            command: out.shown,
            status: out.status,
            stderr: out.stderr,
            log: log.display().to_string(),
            log_tail: log_tail(&log, log_start),
        })
    }

    /// `pg_ctl stop -m fast`, then `-m immediate` if that fails. A server that is not running
    /// (no `postmaster.pid`) is fine.
    pub(crate) fn stop_server(&self, data_dir: &Path) -> Result<(), DevClusterError> {
        let pid_file = data_dir.join("postmaster.pid");
        if !pid_file.exists() {
            return Ok(());
        }
        let pg_ctl = self.bin("pg_ctl");
        let stop = |mode: &str| {
            self.runner
                .pg(&pg_ctl)
                .args(["stop", "-m", mode, "-w", "-t", "30", "-D"])
                .arg(data_dir)
                .run()
        };
        match stop("fast") {
            Ok(_) => Ok(()),
            Err(e) if !pid_file.exists() => {
                tracing::debug!(error = %e, "devcluster server exited during stop");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "devcluster fast stop failed; stopping immediately");
                stop("immediate").map(drop)
            }
        }
    }

    /// Stops every server (replicas first, so the primary is not left waiting on their
    /// walreceivers), removes the base dir if it is ours, then kills the reaper. Idempotent;
    /// failures are logged, never panicked on, since this runs from `Drop`.
    pub(crate) fn stop_all(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        for dir in self.data_dirs.iter().rev() {
            if let Err(e) = self.stop_server(dir) {
                tracing::warn!(error = %e, data_dir = %dir.display(), "devcluster stop failed");
            }
        }
        if self.owns_base_dir {
            match std::fs::remove_dir_all(&self.base_dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(error = %e, dir = %self.base_dir.display(),
                        "could not remove devcluster base dir");
                }
                _ => {}
            }
        }
        if let Some(reaper) = self.reaper.take() {
            reaper.kill();
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// A port that was free a moment ago: bind 127.0.0.1:0, read it, release it.
fn free_port() -> Result<u16, DevClusterError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|addr| addr.port())
        .map_err(|source| DevClusterError::Io {
            context: "finding a free port on 127.0.0.1".to_owned(),
            source,
        })
}

/// Whether the server log says the port was already in use (messages are in English: initdb
/// ran with `--locale=C`, which sets `lc_messages`).
pub(crate) fn port_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("could not bind")
}

/// The last `LOG_TAIL_LINES` lines written to `path` after byte `from`.
fn log_tail(path: &Path, from: u64) -> String {
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(from))?;
        f.read_to_end(&mut bytes)
    });
    if let Err(e) = read {
        return format!("(could not read {}: {e})", path.display());
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devcluster::test_support::TempDir;

    #[test]
    fn log_tail_reads_only_the_new_part_and_the_last_lines() {
        let tmp = TempDir::new("log-tail");
        let log = tmp.path().join("x.log");
        std::fs::write(&log, "old attempt\n").expect("write");
        let from = std::fs::metadata(&log).expect("stat").len();
        let new: String = (0..40).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, format!("old attempt\n{new}")).expect("write");
        let tail = log_tail(&log, from);
        assert!(!tail.contains("old attempt"));
        assert!(
            tail.starts_with("line 10\n") && tail.ends_with("line 39"),
            "{tail}"
        );
    }

    #[test]
    fn recognises_a_port_collision() {
        assert!(port_taken(
            "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use"
        ));
        assert!(!port_taken("FATAL:  data directory has wrong ownership"));
    }
}
