//! `lagoon demo`: a local primary and two streaming replicas (from `devcluster`), a demo user
//! and database, and Lagoon in front, so a newcomer can `psql` through it in one command.
//! Ctrl-C stops everything; dropping the cluster removes its temporary data.

use crate::devcluster::{DevCluster, DevClusterOptions, PasswordEncryption};

/// Runs the demo until Ctrl-C (or SIGTERM).
pub async fn run(port: u16) -> Result<(), String> {
    eprintln!("starting a local primary and 2 streaming replicas (this takes a few seconds)...");
    let cluster = tokio::task::spawn_blocking(|| {
        let cluster = DevCluster::start(DevClusterOptions::default())?;
        cluster.create_role("demo", "demo", PasswordEncryption::Scram)?;
        cluster.create_database("demo", "demo")?;
        cluster.psql(
            &cluster.primary,
            "demo",
            "SET ROLE demo; CREATE TABLE IF NOT EXISTS items (id serial PRIMARY KEY, name text NOT NULL); \
             INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 10) g",
        )?;
        Ok::<_, crate::devcluster::DevClusterError>(cluster)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;

    let listen = pick_listen(port);
    let metrics_listen = pick_listen(9187);
    let text = format!(
        r#"
[server]
listen = "{listen}"
shutdown_timeout_ms = 5000
admin_users = ["demo"]
metrics_listen = "{metrics_listen}"

[slow_query]
threshold_ms = 200

[pool]
mode = "transaction"
size = 10

[[users]]
name = "demo"
password = "demo"

[[databases]]
name = "demo"
primary = "{primary}"
replicas = ["{r1}", "{r2}"]
"#,
        primary = cluster.url(&cluster.primary, "demo"),
        r1 = cluster
            .replicas
            .first()
            .map(|m| cluster.url(m, "demo"))
            .unwrap_or_default(),
        r2 = cluster
            .replicas
            .get(1)
            .map(|m| cluster.url(m, "demo"))
            .unwrap_or_default(),
    );
    let config = crate::config::parse(&text).map_err(|problems| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let proxy = crate::app::Proxy::bind(config)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = proxy.local_addr().map_err(|e| e.to_string())?;
    let metrics = proxy
        .metrics_addr()
        .map_or_else(String::new, |a| a.to_string());
    let members: Vec<String> = std::iter::once(&cluster.primary)
        .chain(cluster.replicas.iter())
        .map(|m| format!("{} on port {}", m.name, m.port))
        .collect();
    println!(
        "\nLagoon is running in transaction mode in front of {} (the replicas stream from the\n primary; read-only statements go to the replica with the lowest latency, writes to the\n primary).\n\n\
         Connect with:\n    psql postgresql://demo:demo@{addr}/demo\n\n\
         Things to try:\n\
         \x20   SELECT * FROM items;                  -- through the pool\n\
         \x20   SELECT inet_server_port(), pg_is_in_recovery();   -- a replica answered\n\
         \x20   /* lagoon:primary */ SELECT inet_server_port();   -- this one goes to the primary\n\
         \x20   BEGIN; INSERT INTO items (name) VALUES ('x'); COMMIT;\n\
         \x20   SHOW application_name;                -- your own settings follow you\n\
         \x20   pgbench -i postgresql://demo:demo@{addr}/demo && pgbench -c 20 -T 10 -S postgresql://demo:demo@{addr}/demo\n\n\
         Admin console (SHOW POOLS, SHOW QUERIES, SHOW SLOW, SHOW REPLICAS, SHOW HELP, ...):\n\
         \x20   psql postgresql://demo:demo@{addr}/lagoon -c 'SHOW QUERIES'\n\
         Metrics: curl http://{metrics}/metrics   (queries over 200 ms are logged to stderr)\n\n\
         Press Ctrl-C to stop Lagoon and the cluster (the temporary data is removed).",
        members.join(", ")
    );
    let signals = crate::shutdown::Signals::install().map_err(|e| e.to_string())?;
    let signals = tokio::spawn(signals.watch(std::sync::Arc::clone(&proxy.shared)));
    proxy.run().await;
    signals.abort();
    eprintln!("stopping the cluster...");
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// 127.0.0.1:port if it is free, else a free port (so a running PgBouncer does not stop the
/// demo).
fn pick_listen(port: u16) -> String {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => format!("127.0.0.1:{port}"),
        Err(_) => "127.0.0.1:0".to_owned(),
    }
}
