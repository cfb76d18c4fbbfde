//! PgBouncer as a bench target: an ini and userlist written for the scenario, the same pool
//! (20 per database and user, transaction mode) as Lagoon's, run as the `postgres` OS user
//! because PgBouncer refuses to run as root.

use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::proc::{Proc, free_port};
use crate::scenario::{Auth, Scenario, TargetKind};
use crate::setup::{DB, MD5_USER, SCRAM_USER, Setup, md5_secret};

/// Whether this PgBouncer keeps protocol-level prepared statements in transaction mode
/// (`max_prepared_statements`, 1.21 and later). Older ones break pgbench `-M prepared`.
pub fn supports_prepared(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 21)
}

pub fn start(setup: &Setup, sc: &Scenario) -> Result<(Proc, u16), String> {
    let (bin, version) = setup
        .pgbouncer
        .as_ref()
        .ok_or("PgBouncer is not installed (apt-get install pgbouncer)")?;
    let port = free_port()?;
    let base = setup.dir.join(format!("pgbouncer-{}-{port}", sc.name));
    let ini = base.with_extension("ini");
    let userlist = base.with_extension("users");
    let log = base.with_extension("log");

    // md5 clients are checked against the md5 hash (the usual userlist); the SCRAM user's
    // plaintext password lets PgBouncer run SCRAM with the client and with Postgres.
    let users = format!(
        "\"{}\" \"{}\"\n\"{}\" \"{}\"\n",
        MD5_USER.0,
        md5_secret(MD5_USER.0, MD5_USER.1),
        SCRAM_USER.0,
        SCRAM_USER.1
    );
    std::fs::write(&userlist, users).map_err(|e| format!("{}: {e}", userlist.display()))?;
    setup.give_to_runner(&userlist, 0o600)?;

    let auth = match sc.auth {
        Auth::Md5 => "md5",
        Auth::Scram => "scram-sha-256",
    };
    let tls = if sc.tls {
        let (cert, key) = setup
            .tls
            .as_ref()
            .ok_or("no certificate (openssl missing)")?;
        format!(
            "client_tls_sslmode = require\nclient_tls_cert_file = {}\nclient_tls_key_file = {}\n",
            cert.display(),
            key.display()
        )
    } else {
        String::new()
    };
    let prepared = if supports_prepared(version) {
        "max_prepared_statements = 500\n"
    } else {
        ""
    };
    let primary = &setup.cluster.primary;
    let text = format!(
        "[databases]\n{DB} = host=127.0.0.1 port={pgport} dbname={DB}\n\n\
         [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
         auth_type = {auth}\nauth_file = {userlist}\n\
         pool_mode = transaction\ndefault_pool_size = 20\nmax_client_conn = 12000\n\
         listen_backlog = 4096\nquery_wait_timeout = 120\nserver_tls_sslmode = disable\n\
         ignore_startup_parameters = extra_float_digits\n\
         log_connections = 0\nlog_disconnections = 0\nlogfile = {log}\n{tls}{prepared}",
        pgport = primary.port,
        userlist = userlist.display(),
        log = log.display(),
    );
    std::fs::write(&ini, text).map_err(|e| format!("{}: {e}", ini.display()))?;
    setup.give_to_runner(&ini, 0o644)?;

    let mut cmd = Command::new(bin);
    cmd.arg(&ini);
    if let Some((uid, gid)) = setup.run_as {
        cmd.uid(uid).gid(gid);
    }
    // SIGTERM: immediate shutdown in 1.18 (SIGINT would wait for clients).
    let proc = Proc::start(
        TargetKind::PgBouncer.label(),
        cmd,
        &base.with_extension("stderr"),
        port,
        libc::SIGTERM,
    )?;
    Ok((proc, port))
}
