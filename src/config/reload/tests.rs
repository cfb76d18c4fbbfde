//! The reload diff: which line each change gets, when it applies, and which health views it
//! replaces. Configs go through `config::parse`, as a reloaded file does.

use super::diff;
use crate::config::{Config, parse};

/// Two users, a database with two replicas and one without.
const BASE: &str = r#"
[server]
listen = "127.0.0.1:6432"

[pool]
size = 20

[[users]]
name = "app"
password = "secret"

[[users]]
name = "bob"
password = "bobpw"

[[databases]]
name = "appdb"
primary = "postgres://127.0.0.1:5432/appdb"
replicas = ["postgres://127.0.0.1:5433/appdb", "postgres://127.0.0.1:5434/appdb"]

[[databases]]
name = "plain"
primary = "postgres://127.0.0.1:5432/plain"
"#;

fn config(text: &str) -> Config {
    parse(text).unwrap_or_else(|p| panic!("test config invalid: {p:#?}"))
}

/// `BASE` with `from` replaced by `to` (which must occur).
fn edited(from: &str, to: &str) -> Config {
    assert!(BASE.contains(from), "{from:?} not in BASE");
    config(&BASE.replacen(from, to, 1))
}

fn base() -> Config {
    config(BASE)
}

#[test]
fn the_same_file_changes_nothing() {
    let plan = diff(&base(), &base());
    assert_eq!(plan, Default::default());
}

#[test]
fn a_live_key_is_one_plain_line() {
    let plan = diff(&base(), &edited("size = 20", "size = 5"));
    assert_eq!(plan.applied, ["pool.size: 20 -> 5"]);
    assert!(plan.needs_restart.is_empty());
    assert!(plan.monitor.is_empty() && plan.unmonitor.is_empty());
}

#[test]
fn keys_sessions_copy_at_login_say_they_apply_to_new_clients() {
    let new = edited(
        "size = 20",
        "size = 20\nmode = \"session\"\nidle_transaction_timeout_ms = 5000\nmax_prepared_statements = 10",
    );
    let plan = diff(&base(), &new);
    assert_eq!(
        plan.applied,
        [
            "pool.mode: transaction -> session (clients that connect from now on)",
            "pool.idle_transaction_timeout_ms: 0 -> 5000 (clients that connect from now on)",
            "pool.max_prepared_statements: 500 -> 10 (clients that connect from now on)",
        ]
    );
    let plan = diff(
        &base(),
        &edited("[pool]", "[routing]\nmax_lag_ms = 50\n\n[pool]"),
    );
    assert_eq!(
        plan.applied,
        ["routing.max_lag_ms: 1000 -> 50 (clients that connect from now on)"]
    );
    // A limit sessions read at login is not in the health view: no monitor restarts.
    assert!(plan.monitor.is_empty());
}

#[test]
fn addresses_tls_and_write_functions_need_a_restart() {
    let new = edited(
        "listen = \"127.0.0.1:6432\"",
        "listen = \"127.0.0.1:7000\"\nmetrics_listen = \"127.0.0.1:9187\"\nmax_client_conn = 7",
    );
    let new_text = BASE
        .replacen(
            "listen = \"127.0.0.1:6432\"",
            "listen = \"127.0.0.1:7000\"\nmetrics_listen = \"127.0.0.1:9187\"\nmax_client_conn = 7",
            1,
        )
        .replacen(
            "[pool]",
            "[routing]\nwrite_functions = [\"audit\"]\n\n[pool]",
            1,
        );
    assert_eq!(
        diff(&base(), &new).applied,
        ["server.max_client_conn: 10000 -> 7"]
    );
    let plan = diff(&base(), &config(&new_text));
    assert_eq!(
        plan.needs_restart,
        [
            "server.listen: \"127.0.0.1:6432\" -> \"127.0.0.1:7000\" (takes effect at restart)",
            "server.metrics_listen: unset -> \"127.0.0.1:9187\" (takes effect at restart)",
            "routing.write_functions: [] -> [\"audit\"] (takes effect at restart)",
        ]
    );
    assert_eq!(plan.applied, ["server.max_client_conn: 10000 -> 7"]);
}

#[test]
fn users_added_removed_and_changed() {
    let new = config(
        &BASE
            .replacen(
                "name = \"bob\"\npassword = \"bobpw\"",
                "name = \"carol\"\npassword = \"c\"",
                1,
            )
            .replacen(
                "name = \"app\"\npassword = \"secret\"",
                "name = \"app\"\npassword = \"secret2\"\nauth_type = \"md5\"",
                1,
            ),
    );
    let plan = diff(&base(), &new);
    assert_eq!(
        plan.applied,
        [
            "users: removed \"bob\"",
            "users.app.password: changed",
            "users.app.auth_type: unset -> md5",
            "users: added \"carol\"",
        ]
    );
    assert_eq!(plan.forget_verifiers, ["bob", "app"]);
    // No password, old or new, in any line.
    for line in plan.applied.iter().chain(&plan.needs_restart) {
        for secret in ["secret", "bobpw", "secret2"] {
            assert!(!line.contains(&format!("\"{secret}\"")), "{line}");
        }
    }
}

#[test]
fn databases_added_removed_and_members_changed() {
    let new = config(
        &BASE
            .replacen(
                "replicas = [\"postgres://127.0.0.1:5433/appdb\", \"postgres://127.0.0.1:5434/appdb\"]",
                "replicas = [\"postgres://127.0.0.1:5433/appdb\"]\npool_size = 5",
                1,
            )
            .replacen(
                "name = \"plain\"\nprimary = \"postgres://127.0.0.1:5432/plain\"",
                "name = \"fresh\"\nprimary = \"postgres://u:topsecret@db2:5432/fresh\"",
                1,
            ),
    );
    let plan = diff(&base(), &new);
    assert_eq!(
        plan.applied,
        [
            "databases: removed \"plain\"",
            "databases.appdb.replicas: 2 -> 1",
            "databases.appdb.pool_size: unset -> 5",
            "databases: added \"fresh\"",
        ]
    );
    assert_eq!(plan.monitor, ["appdb"]);
    assert!(plan.unmonitor.is_empty());
}

#[test]
fn a_primary_address_is_shown_without_its_password() {
    let plan = diff(
        &base(),
        &edited(
            "primary = \"postgres://127.0.0.1:5432/appdb\"",
            "primary = \"postgres://admin:hunter2@10.0.0.9:6543/appdb\"",
        ),
    );
    assert_eq!(
        plan.applied,
        ["databases.appdb.primary: 127.0.0.1:5432/appdb -> admin@10.0.0.9:6543/appdb"]
    );
    assert_eq!(plan.monitor, ["appdb"]);

    // Only the password differs: said, not shown.
    let a = edited(
        "primary = \"postgres://127.0.0.1:5432/appdb\"",
        "primary = \"postgres://admin:one@127.0.0.1:5432/appdb\"",
    );
    let b = edited(
        "primary = \"postgres://127.0.0.1:5432/appdb\"",
        "primary = \"postgres://admin:two@127.0.0.1:5432/appdb\"",
    );
    let plan = diff(&a, &b);
    assert_eq!(
        plan.applied,
        ["databases.appdb.primary: password or options changed"]
    );
}

#[test]
fn health_views_follow_split_replicas_and_probe_settings() {
    // Split off: every view goes; back on: every database with replicas gets one.
    let off = edited("[pool]", "[routing]\nread_write_split = false\n\n[pool]");
    let plan = diff(&base(), &off);
    assert_eq!(plan.applied, ["routing.read_write_split: true -> false"]);
    assert_eq!(plan.unmonitor, ["appdb"]);
    assert!(plan.monitor.is_empty());
    assert_eq!(diff(&off, &base()).monitor, ["appdb"]);

    // Probe settings are in the view: a fresh one.
    let probe = edited("[pool]", "[routing]\nprobe_interval_ms = 100\n\n[pool]");
    let plan = diff(&base(), &probe);
    assert_eq!(plan.applied, ["routing.probe_interval_ms: 250 -> 100"]);
    assert_eq!(plan.monitor, ["appdb"]);

    // Replicas removed altogether, or the database removed: its view goes.
    let none = edited(
        "replicas = [\"postgres://127.0.0.1:5433/appdb\", \"postgres://127.0.0.1:5434/appdb\"]",
        "",
    );
    let plan = diff(&base(), &none);
    assert_eq!(plan.applied, ["databases.appdb.replicas: 2 -> 0"]);
    assert_eq!(plan.unmonitor, ["appdb"]);

    // A database gaining replicas gets one.
    let plain_replicas = edited(
        "primary = \"postgres://127.0.0.1:5432/plain\"",
        "primary = \"postgres://127.0.0.1:5432/plain\"\nreplicas = [\"postgres://127.0.0.1:5433/plain\"]",
    );
    assert_eq!(diff(&base(), &plain_replicas).monitor, ["plain"]);
}

#[test]
fn the_probe_login_changing_restarts_the_monitor() {
    // Without a user in the URL, the monitor logs in as the first user with a server
    // password: "app" here. Its new password is the probe's new password.
    let plan = diff(
        &base(),
        &edited("password = \"secret\"", "password = \"changed\""),
    );
    assert_eq!(plan.monitor, ["appdb"]);
    // Bob's password is not the probe's: no restart.
    let plan = diff(&base(), &edited("password = \"bobpw\"", "password = \"x\""));
    assert!(plan.monitor.is_empty(), "{plan:?}");
}

#[test]
fn slow_query_and_per_database_threshold_apply_live() {
    let new = config(
        &BASE
            .replacen("[pool]", "[slow_query]\nthreshold_ms = 50\n\n[pool]", 1)
            .replacen(
                "name = \"plain\"",
                "name = \"plain\"\nslow_query_threshold_ms = 2000",
                1,
            ),
    );
    assert_eq!(
        diff(&base(), &new).applied,
        [
            "slow_query.threshold_ms: 500 -> 50",
            "databases.plain.slow_query_threshold_ms: unset -> 2000",
        ]
    );
}

#[test]
fn auth_query_is_live_and_its_source_clears_the_cache() {
    let on = edited(
        "[pool]",
        "[auth_query]\nuser = \"lagoon_auth\"\npassword = \"s3cret\"\n\n[pool]",
    );
    let plan = diff(&base(), &on);
    assert_eq!(
        plan.applied,
        [
            "auth_query.user: \"\" -> \"lagoon_auth\"",
            "auth_query.password: changed",
        ]
    );
    assert!(plan.needs_restart.is_empty());
    assert!(plan.clear_auth_query_cache);
    // The TTL alone keeps what was fetched; the password never shows.
    let ttl = config(&BASE.replacen(
        "[pool]",
        "[auth_query]\nuser = \"lagoon_auth\"\npassword = \"s3cret\"\ncache_ttl_ms = 5\n\n[pool]",
        1,
    ));
    let plan = diff(&on, &ttl);
    assert_eq!(plan.applied, ["auth_query.cache_ttl_ms: 60000 -> 5"]);
    assert!(!plan.clear_auth_query_cache);
    let other_pw = config(&BASE.replacen(
        "[pool]",
        "[auth_query]\nuser = \"lagoon_auth\"\npassword = \"n3w\"\n\n[pool]",
        1,
    ));
    let plan = diff(&on, &other_pw);
    assert_eq!(plan.applied, ["auth_query.password: changed"]);
    assert!(plan.clear_auth_query_cache);
    assert!(!format!("{plan:?}").contains("n3w"));
}

/// A key added to the model must be given a line and a time of effect here, not be ignored by
/// reloads: every field serde knows is named in the diff.
#[test]
fn every_config_key_is_classified() {
    use crate::config::document::field_names;
    use crate::config::*;
    let source = include_str!("diff.rs");
    let words: std::collections::HashSet<&str> = source
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    let sections = [
        ("server", field_names::<ServerConfig>()),
        ("tls", field_names::<TlsConfig>()),
        ("pool", field_names::<PoolConfig>()),
        ("routing", field_names::<RoutingConfig>()),
        ("slow_query", field_names::<SlowQueryConfig>()),
        ("users", field_names::<UserConfig>()),
        ("auth_query", field_names::<AuthQueryConfig>()),
        ("databases", field_names::<DatabaseConfig>()),
    ];
    for (section, fields) in sections {
        assert!(!fields.is_empty(), "{section}");
        for field in fields {
            assert!(
                words.contains(field),
                "{section}.{field} is not classified by the reload diff"
            );
        }
    }
}
