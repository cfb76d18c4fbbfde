//! Running commands for the dev cluster and preparing its base directory.
//!
//! Postgres refuses to run as root, and CI containers run as root, so when our effective uid is 0
//! every Postgres binary runs through `runuser -u postgres --` and the files we write for it are
//! chowned to `postgres`. Client tools (`psql`) run as ourselves: they connect over TCP.
//! Commands never inherit our working directory (it may be unreadable by `postgres`) or the
//! `PG*` variables that could redirect them to another server.

use std::ffi::OsStr;
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use super::DevClusterError;

/// Variables that would silently retarget or reconfigure libpq tools and `pg_ctl`.
const SCRUBBED_ENV: &[&str] = &[
    "PGDATA",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGOPTIONS",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSSLMODE",
    "PGTARGETSESSIONATTRS",
    "PGAPPNAME",
];

/// Where `runuser` usually lives; `PATH` of non-login root shells may lack `/usr/sbin`.
const RUNUSER_CANDIDATES: [&str; 4] = [
    "/usr/sbin/runuser",
    "/sbin/runuser",
    "/usr/bin/runuser",
    "/bin/runuser",
];

/// How to run Postgres binaries: directly, or as the `postgres` OS user when we are root.
#[derive(Debug, Clone)]
pub(crate) struct Runner {
    postgres_user: Option<PostgresUser>,
}

#[derive(Debug, Clone)]
struct PostgresUser {
    uid: u32,
    gid: u32,
    runuser: PathBuf,
}

impl Runner {
    /// Decides once, from our effective uid, whether to switch to `postgres`.
    pub(crate) fn detect() -> Result<Runner, DevClusterError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if !root {
            return Ok(Runner {
                postgres_user: None,
            });
        }
        let runuser = RUNUSER_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("runuser"));
        Ok(Runner {
            postgres_user: Some(PostgresUser {
                uid: postgres_id("-u")?,
                gid: postgres_id("-g")?,
                runuser,
            }),
        })
    }

    /// `runuser`'s path when Postgres binaries must switch user (the reaper needs it too).
    pub(crate) fn runuser(&self) -> Option<&Path> {
        self.postgres_user.as_ref().map(|u| u.runuser.as_path())
    }

    /// A command for a Postgres server binary, wrapped in `runuser` when we are root.
    pub(crate) fn pg(&self, program: &Path) -> Cmd {
        match &self.postgres_user {
            None => Cmd::new(program),
            Some(user) => Cmd::new(&user.runuser)
                .args(["-u", "postgres", "--"])
                .arg(program),
        }
    }

    /// Makes a file or directory we created as root usable by `postgres`. No-op otherwise.
    pub(crate) fn give_to_postgres(&self, path: &Path) -> Result<(), DevClusterError> {
        let Some(user) = &self.postgres_user else {
            return Ok(());
        };
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(|source| {
            DevClusterError::Io {
                context: format!("chown {} to postgres", path.display()),
                source,
            }
        })
    }

    /// Writes `contents` (mode 0600, owned by whoever runs the server), replacing the file.
    pub(crate) fn write_file(&self, path: &Path, contents: &str) -> Result<(), DevClusterError> {
        let io = |source| DevClusterError::Io {
            context: format!("writing {}", path.display()),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        file.write_all(contents.as_bytes()).map_err(io)?;
        self.give_to_postgres(path)
    }

    /// Appends to a file that the server already owns.
    pub(crate) fn append_file(&self, path: &Path, contents: &str) -> Result<(), DevClusterError> {
        let io = |source| DevClusterError::Io {
            context: format!("appending to {}", path.display()),
            source,
        };
        let mut file = OpenOptions::new().append(true).open(path).map_err(io)?;
        file.write_all(contents.as_bytes()).map_err(io)
    }

    /// Creates a fresh, empty base dir `lagoon-devcluster-PID-XXXX` under the temp dir. As root
    /// that is always `/tmp`: `$TMPDIR` may sit under `/root`, which `postgres` cannot traverse.
    pub(crate) fn create_temp_base_dir(&self) -> Result<PathBuf, DevClusterError> {
        let parent = match self.postgres_user {
            Some(_) => PathBuf::from("/tmp"),
            None => std::env::temp_dir(),
        };
        let parent = std::path::absolute(&parent).unwrap_or(parent);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut last_err = None;
        for attempt in 0..64u32 {
            let dir = parent.join(format!(
                "lagoon-devcluster-{}-{:x}",
                std::process::id(),
                nanos.wrapping_add(attempt.wrapping_mul(7919))
            ));
            match DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    self.give_to_postgres(&dir)?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(source) => {
                    return Err(DevClusterError::Io {
                        context: format!("creating {}", dir.display()),
                        source,
                    });
                }
            }
        }
        Err(DevClusterError::Io {
            context: format!("creating a fresh directory under {}", parent.display()),
            source: last_err.unwrap_or_else(|| std::io::ErrorKind::AlreadyExists.into()),
        })
    }

    /// Uses a caller-chosen base dir. It is created (and handed to `postgres`) if missing; an
    /// existing one is left as is, since chowning e.g. `/tmp` would be a disaster.
    pub(crate) fn prepare_base_dir(&self, dir: &Path) -> Result<PathBuf, DevClusterError> {
        let io = |source| DevClusterError::Io {
            context: format!("preparing base dir {}", dir.display()),
            source,
        };
        let dir = std::path::absolute(dir).map_err(io)?;
        if !dir.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io)?;
            self.give_to_postgres(&dir)?;
        }
        Ok(dir)
    }
}

/// `id -u postgres` / `id -g postgres`.
fn postgres_id(flag: &str) -> Result<u32, DevClusterError> {
    let out = Cmd::new("id").args([flag, "postgres"]).run().map_err(|e| {
        DevClusterError::NoPostgresUser(format!(
            "we run as root, so Postgres must run as the `postgres` OS user: {e}"
        ))
    })?;
    out.trim().parse().map_err(|_| {
        DevClusterError::NoPostgresUser(format!("`id {flag} postgres` printed {out:?}"))
    })
}

/// A command plus a printable form of it for error messages. Environment values are not
/// printed: they carry passwords.
pub(crate) struct Cmd {
    command: Command,
    shown: String,
}

/// What a finished command produced, stdout and stderr decoded lossily.
pub(crate) struct CmdOutput {
    pub(crate) shown: String,
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Cmd {
    pub(crate) fn new(program: impl AsRef<OsStr>) -> Cmd {
        let program = program.as_ref();
        let mut command = Command::new(program);
        command.current_dir("/").stdin(Stdio::null());
        for key in SCRUBBED_ENV {
            command.env_remove(key);
        }
        Cmd {
            command,
            shown: shell_word(program),
        }
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.shown.push(' ');
        self.shown.push_str(&shell_word(arg.as_ref()));
        self.command.arg(arg);
        self
    }

    pub(crate) fn args<I, S>(self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        args.into_iter().fold(self, Cmd::arg)
    }

    pub(crate) fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Cmd {
        self.command.env(key, value);
        self
    }

    /// Runs to completion, capturing output. Only failing to spawn is an error here.
    pub(crate) fn output(mut self) -> Result<CmdOutput, DevClusterError> {
        match self.command.output() {
            Ok(out) => Ok(CmdOutput {
                shown: self.shown,
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            }),
            Err(source) => Err(DevClusterError::Spawn {
                command: self.shown,
                source,
            }),
        }
    }

    /// Runs to completion and returns stdout, or an error with the exit status and stderr.
    pub(crate) fn run(self) -> Result<String, DevClusterError> {
        let out = self.output()?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(out.into_error())
        }
    }
}

impl CmdOutput {
    pub(crate) fn into_error(self) -> DevClusterError {
        DevClusterError::Command {
            command: self.shown,
            status: self.status,
            stderr: self.stderr,
        }
    }
}

/// Quotes an argument for display when it would otherwise be ambiguous.
fn shell_word(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_command_reports_command_status_and_stderr() {
        let err = Cmd::new("sh")
            .args(["-c", "echo boom >&2; exit 3"])
            .run()
            .expect_err("exit 3 must fail");
        let msg = err.to_string();
        assert!(msg.contains("sh -c 'echo boom >&2; exit 3'"), "{msg}");
        assert!(msg.contains('3') && msg.contains("boom"), "{msg}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = Cmd::new("/nonexistent/lagoon-no-such-binary")
            .run()
            .expect_err("cannot spawn");
        assert!(matches!(err, DevClusterError::Spawn { .. }), "{err}");
    }

    #[test]
    fn pg_env_is_scrubbed_and_explicit_env_passes() {
        let out = Cmd::new("sh")
            .args(["-c", "echo \"${PGHOST:-unset} $LAGOON_X\""])
            .env("LAGOON_X", "set")
            .run()
            .expect("sh runs");
        // PGHOST is scrubbed whether or not the test environment sets it.
        assert_eq!(out.trim(), "unset set");
    }
}
