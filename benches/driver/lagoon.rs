//! Lagoon as a bench target: the release binary cargo built next to this bench, with a config
//! written for the scenario (md5 or SCRAM clients, TLS, read/write split), run as its own
//! process so its CPU time and memory are its own.

use std::process::Command;

use crate::proc::{Proc, free_port};
use crate::scenario::{Scenario, TargetKind};
use crate::setup::{MD5_USER, SCRAM_USER, Setup};

/// The `lagoon` binary of this build (the bench profile inherits release).
const LAGOON: &str = env!("CARGO_BIN_EXE_lagoon");

/// The settings the comparison uses, as in the PgBouncer config: pool of 20 per (database,
/// user), transaction mode, long waits allowed (10,000 clients queue for 20 connections),
/// query statistics and the metrics endpoint on (as deployed).
pub fn config(setup: &Setup, sc: &Scenario, kind: TargetKind, port: u16) -> Result<String, String> {
    let split = kind == TargetKind::LagoonSplit;
    let replicas: Vec<String> = if split {
        setup
            .cluster
            .replicas
            .iter()
            .map(|m| format!("\"{}\"", setup.members_url(m)))
            .collect()
    } else {
        Vec::new()
    };
    let tls = if sc.tls {
        let (cert, key) = setup
            .tls
            .as_ref()
            .ok_or("no certificate (openssl missing)")?;
        format!(
            "[tls]\nmode = \"require\"\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        )
    } else {
        String::new()
    };
    Ok(format!(
        r#"[server]
listen = "127.0.0.1:{port}"
metrics_listen = "127.0.0.1:{metrics}"
max_client_conn = 12000
auth_type = "md5"
client_login_timeout_ms = 120000

{tls}
[pool]
mode = "transaction"
size = 20
checkout_timeout_ms = 120000

[routing]
read_write_split = {split}

[[users]]
name = "{mu}"
password = "{mp}"

[[users]]
name = "{su}"
password = "{sp}"
auth_type = "scram-sha-256"

[[databases]]
name = "{db}"
primary = "{primary}"
replicas = [{replicas}]
"#,
        metrics = free_port()?,
        mu = MD5_USER.0,
        mp = MD5_USER.1,
        su = SCRAM_USER.0,
        sp = SCRAM_USER.1,
        db = crate::setup::DB,
        primary = setup.members_url(&setup.cluster.primary),
        replicas = replicas.join(", "),
    ))
}

/// Writes the config, checks it with `lagoon check` (so a build that does not support a
/// setting, e.g. TLS before it lands, is reported as a skip, not a crash), and starts Lagoon.
pub fn start(setup: &Setup, sc: &Scenario, kind: TargetKind) -> Result<(Proc, u16), String> {
    let port = free_port()?;
    let text = config(setup, sc, kind, port)?;
    let path = setup.dir.join(format!("lagoon-{}-{port}.toml", sc.name));
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    let check = Command::new(LAGOON)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .map_err(|e| format!("cannot run {LAGOON}: {e}"))?;
    if !check.status.success() {
        return Err(format!(
            "this lagoon build refuses the scenario's config: {}",
            String::from_utf8_lossy(&check.stderr)
                .lines()
                .next()
                .unwrap_or_default()
                .replace(&format!("{}: ", path.display()), "")
        ));
    }
    let mut cmd = Command::new(LAGOON);
    cmd.arg("--config").arg(&path).env("LAGOON_LOG", "warn");
    let log = setup.dir.join(format!("lagoon-{}-{port}.log", sc.name));
    let proc = Proc::start(kind.label(), cmd, &log, port, libc::SIGINT)?;
    Ok((proc, port))
}
