//! A proxy process the driver started: spawn with stderr to a log file, wait until its port
//! accepts connections, stop it (signal, then SIGKILL) when dropped, so an interrupted run does
//! not leave proxies behind.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Proc {
    pub name: String,
    child: Child,
    /// The signal that stops it promptly (SIGINT for Lagoon, SIGTERM for PgBouncer).
    stop_signal: i32,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr appended to `log`, then waits up to 15 s for
    /// `port` on 127.0.0.1 to accept a TCP connection.
    pub fn start(
        name: &str,
        mut cmd: Command,
        log: &Path,
        port: u16,
        stop_signal: i32,
    ) -> Result<Proc, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let err = file
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err));
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let mut proc = Proc {
            name: name.to_owned(),
            child,
            stop_signal,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = proc.child.try_wait() {
                return Err(format!(
                    "{name} exited at startup ({status}); its log:\n{}",
                    tail(log)
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(proc);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{name} did not listen on {addr} within 15 s; its log:\n{}",
                    tail(log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill only sends a signal to the child we spawned (not yet reaped).
        unsafe { libc::kill(pid, self.stop_signal) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop in 10 s; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 30 lines of a log, for error messages.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}
