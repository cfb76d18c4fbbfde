//! End-to-end test against real Postgres binaries: not ignored, because `cargo test` on a machine
//! with Postgres installed (CI) must exercise it. Without the binaries it fails and says so.

use std::process::Command;
use std::time::Duration;

use super::*;

/// Runs `psql` as `user` with `PGPASSWORD`, like an application would log in.
fn psql_as(
    member: &Member,
    user: &str,
    password: &str,
    database: &str,
    sql: &str,
) -> Result<String, String> {
    let conninfo = conf::conninfo(&member.host, member.port, user, None, database);
    let out = Command::new("psql")
        .args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &conninfo,
            "-c",
            sql,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn ok<T>(what: &str, result: Result<T, DevClusterError>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[test]
fn primary_with_two_streaming_replicas() {
    let mut cluster = DevCluster::start(DevClusterOptions::default()).unwrap_or_else(|e| {
        panic!(
            "could not start the dev cluster (this test needs PostgreSQL server binaries; \
             install postgresql-15 or set {}): {e}",
            bindir::ENV_VAR
        )
    });
    assert_eq!(cluster.replicas.len(), 2);
    assert_eq!(cluster.replicas[1].name, "replica2");
    let base_dir = cluster.servers.base_dir.clone();
    assert!(base_dir.is_dir());

    // Roles with both password storage formats; calling twice must be fine.
    for _ in 0..2 {
        ok(
            "md5 role",
            cluster.create_role("app_md5", "md5-secret", PasswordEncryption::Md5),
        );
        ok(
            "scram role",
            cluster.create_role("app_scram", "scram 'secret'", PasswordEncryption::Scram),
        );
        ok("database", cluster.create_database("app", "app_md5"));
    }
    let stored = ok(
        "stored passwords",
        cluster.psql(
            &cluster.primary,
            "postgres",
            "SELECT rolname, split_part(rolpassword, '$', 1) LIKE 'SCRAM-SHA-256', \
             rolpassword LIKE 'md5%' FROM pg_authid WHERE rolname LIKE 'app_%' ORDER BY 1",
        ),
    );
    assert_eq!(stored, "app_md5|f|t\napp_scram|t|f");

    // Both roles log in with their passwords; a wrong password is refused.
    let p = &cluster.primary;
    assert_eq!(
        psql_as(p, "app_md5", "md5-secret", "app", "SELECT current_user").as_deref(),
        Ok("app_md5")
    );
    assert_eq!(
        psql_as(
            p,
            "app_scram",
            "scram 'secret'",
            "app",
            "SELECT current_user"
        )
        .as_deref(),
        Ok("app_scram")
    );
    let refused = psql_as(p, "app_md5", "wrong", "app", "SELECT 1").expect_err("wrong password");
    assert!(
        refused.contains("password authentication failed"),
        "{refused}"
    );

    // The database owner creates the table (PG 15: `public` belongs to the database owner).
    let created = psql_as(
        p,
        "app_md5",
        "md5-secret",
        "app",
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2); GRANT SELECT ON t TO app_scram",
    );
    assert!(created.is_ok(), "create table as app_md5: {created:?}");
    ok(
        "catch up",
        cluster.wait_replicas_caught_up(Duration::from_secs(30)),
    );
    for replica in &cluster.replicas {
        assert_eq!(
            ok(
                "recovery",
                cluster.psql(replica, "postgres", "SELECT pg_is_in_recovery()")
            ),
            "t"
        );
        assert_eq!(
            psql_as(
                replica,
                "app_scram",
                "scram 'secret'",
                "app",
                "SELECT count(*) FROM t"
            )
            .as_deref(),
            Ok("2"),
            "{} should see the primary's table",
            replica.name
        );
    }
    assert_eq!(
        ok(
            "primary recovery",
            cluster.psql(p, "postgres", "SELECT pg_is_in_recovery()")
        ),
        "f"
    );

    // A stopped replica refuses connections; started again it is a standby on the same port
    // that streams and replays what the primary wrote meanwhile.
    let r1 = cluster.replicas[0].clone();
    ok("stop replica1", cluster.stop_member("replica1"));
    ok("stopping twice is a no-op", cluster.stop_member("replica1"));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", r1.port)).is_err(),
        "replica1 still accepts connections after stop_member"
    );
    assert!(
        psql_as(
            p,
            "app_md5",
            "md5-secret",
            "app",
            "INSERT INTO t VALUES (3)"
        )
        .is_ok(),
        "the primary writes while a replica is down"
    );
    ok("start replica1", cluster.start_member("replica1"));
    assert_eq!(
        ok(
            "replica1 recovery",
            cluster.psql(&r1, "postgres", "SELECT pg_is_in_recovery()")
        ),
        "t"
    );
    ok(
        "replica1 streams again",
        cluster.wait_streaming(Duration::from_secs(30)),
    );
    ok(
        "catch up after restart",
        cluster.wait_replicas_caught_up(Duration::from_secs(30)),
    );
    assert_eq!(
        ok(
            "replica1 replayed",
            cluster.psql(&r1, "app", "SELECT count(*) FROM t")
        ),
        "3"
    );
    let unknown = cluster.stop_member("replica9").expect_err("no such member");
    assert!(
        matches!(unknown, DevClusterError::UnknownMember(..))
            && unknown.to_string().contains("replica2"),
        "{unknown}"
    );

    // The URL and conninfo helpers point at the same server.
    assert_eq!(
        cluster.url(p, "app"),
        format!("postgres://127.0.0.1:{}/app", p.port)
    );
    assert!(
        cluster
            .superuser_conninfo(p, "app")
            .contains("password=lagoon-dev")
    );

    let ports: Vec<u16> = std::iter::once(p.port)
        .chain(cluster.replicas.iter().map(|r| r.port))
        .collect();
    cluster.stop();
    cluster.stop();
    assert!(
        !base_dir.exists(),
        "base dir {} not removed",
        base_dir.display()
    );
    for port in ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still accepts connections after stop"
        );
    }
}
