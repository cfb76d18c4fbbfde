//! A watchdog that stops the servers if our process dies without calling `stop`.
//!
//! Tests keep their cluster in a process-wide static that is never dropped, `lagoon demo` may be
//! killed by Ctrl-C, and `pg_ctl` detaches the postmaster into its own session, so without this
//! every test run would leak three Postgres servers. The watchdog is a tiny `sh` loop in its own
//! process group (a terminal's SIGINT does not reach it) that polls `kill -0 OUR_PID` once a
//! second; when we are gone it runs `pg_ctl stop -m immediate` on every data dir and removes the
//! base dir. `DevCluster::stop` kills it once it has cleaned up itself.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::DevClusterError;

/// Arguments: PID RUNUSER (empty: run pg_ctl directly) RMDIR (empty: keep) PG_CTL DATA_DIR...
/// Passing paths as positional parameters means no shell quoting of paths at all.
const SCRIPT: &str = r#"trap '' HUP INT
pid=$1 runuser=$2 rmdir=$3 pg_ctl=$4
shift 4
while kill -0 "$pid" 2>/dev/null; do sleep 1; done
for d in "$@"; do
  if [ -n "$runuser" ]; then
    "$runuser" -u postgres -- "$pg_ctl" stop -m immediate -w -t 30 -D "$d"
  else
    "$pg_ctl" stop -m immediate -w -t 30 -D "$d"
  fi >/dev/null 2>&1
done
if [ -n "$rmdir" ]; then rm -rf -- "$rmdir"; fi
"#;

/// The running watchdog. Dropping it without `kill` leaves it running, which is the point when
/// the owner is a never-dropped static.
#[derive(Debug)]
pub(crate) struct Reaper {
    child: Child,
}

/// What the watchdog cleans up.
pub(crate) struct ReapPlan<'a> {
    /// Process to watch.
    pub(crate) pid: u32,
    /// `runuser` when `pg_ctl` must run as `postgres`.
    pub(crate) runuser: Option<&'a Path>,
    pub(crate) pg_ctl: &'a Path,
    pub(crate) data_dirs: &'a [PathBuf],
    /// Removed after the servers are stopped; `None` for a caller-provided base dir.
    pub(crate) remove_dir: Option<&'a Path>,
}

impl Reaper {
    pub(crate) fn spawn(plan: &ReapPlan<'_>) -> Result<Reaper, DevClusterError> {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(SCRIPT)
            .arg("lagoon-devcluster-reaper")
            .arg(plan.pid.to_string())
            .arg(plan.runuser.map_or_else(Default::default, Path::as_os_str))
            .arg(
                plan.remove_dir
                    .map_or_else(Default::default, Path::as_os_str),
            )
            .arg(plan.pg_ctl)
            .args(plan.data_dirs)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Own process group: Ctrl-C in a terminal signals the foreground group, which would
            // otherwise kill the watchdog together with us.
            .process_group(0);
        let child = command.spawn().map_err(|source| DevClusterError::Spawn {
            command: "/bin/sh -c <devcluster reaper script>".to_owned(),
            source,
        })?;
        Ok(Reaper { child })
    }

    /// Stops the watchdog (after the owner cleaned up itself). A `sleep 1` it had started may
    /// outlive it by up to a second; that is harmless.
    pub(crate) fn kill(mut self) {
        if let Err(e) = self.child.kill() {
            tracing::debug!(error = %e, "devcluster reaper already gone");
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devcluster::test_support::{TempDir, eventually};
    use std::time::Duration;

    #[test]
    fn cleans_up_after_the_watched_process_exits() {
        let tmp = TempDir::new("reaper");
        let marker = tmp.path().join("pg_ctl-calls");
        let fake_pg_ctl = tmp.path().join("pg_ctl");
        std::fs::write(
            &fake_pg_ctl,
            format!("#!/bin/sh\necho \"$*\" >> '{}'\n", marker.display()),
        )
        .expect("write fake pg_ctl");
        let chmod = Command::new("chmod")
            .arg("+x")
            .arg(&fake_pg_ctl)
            .status()
            .expect("chmod");
        assert!(chmod.success());
        let base = tmp.path().join("base");
        std::fs::create_dir_all(base.join("primary")).expect("mkdir base");

        let mut watched = Command::new("sleep")
            .arg("0.3")
            .spawn()
            .expect("spawn sleep");
        let data_dirs = vec![base.join("primary"), base.join("replica1")];
        let reaper = Reaper::spawn(&ReapPlan {
            pid: watched.id(),
            runuser: None,
            pg_ctl: &fake_pg_ctl,
            data_dirs: &data_dirs,
            remove_dir: Some(&base),
        })
        .expect("spawn reaper");
        // Nothing happens while the watched process lives.
        std::thread::sleep(Duration::from_millis(100));
        assert!(base.exists() && !marker.exists());

        // `wait` reaps it: a zombie would still answer `kill -0`.
        watched.wait().expect("wait sleep");
        eventually(Duration::from_secs(10), || !base.exists());
        let calls = std::fs::read_to_string(&marker).expect("pg_ctl was called");
        assert_eq!(
            calls.lines().collect::<Vec<_>>(),
            data_dirs
                .iter()
                .map(|d| format!("stop -m immediate -w -t 30 -D {}", d.display()))
                .collect::<Vec<_>>()
        );
        reaper.kill();
    }

    #[test]
    fn kill_stops_the_watchdog_without_cleanup() {
        let tmp = TempDir::new("reaper-kill");
        let base = tmp.path().join("base");
        std::fs::create_dir_all(&base).expect("mkdir");
        let reaper = Reaper::spawn(&ReapPlan {
            pid: std::process::id(),
            runuser: None,
            pg_ctl: Path::new("/bin/false"),
            data_dirs: &[],
            remove_dir: Some(&base),
        })
        .expect("spawn reaper");
        reaper.kill();
        assert!(base.exists());
    }
}
