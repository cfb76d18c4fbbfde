//! Tests for config parsing and validation: the example file, defaults, and every rule.

use std::time::Duration;

use super::document::field_names;
use super::*;
use crate::auth::Secret;

const EXAMPLE: &str = include_str!("../../config/lagoon.toml");
/// A well-formed verifier (values need not match any password for config tests).
const VERIFIER: &str = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$\
    AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const MD5_HASH: &str = "md5c4ca4238a0b923820dcc509a6f75849b";

/// A minimal valid config, so each test adds only what it checks.
const BASE: &str = r#"
[[users]]
name = "app"
password = "secret"

[[databases]]
name = "appdb"
primary = "postgres://127.0.0.1:5432/appdb"
"#;

fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Ok(_) => panic!("expected problems, config parsed"),
        Err(p) => p,
    }
}

fn ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|p| panic!("unexpected problems: {p:#?}"))
}

/// The single problem of `text`, asserting there is exactly one.
fn one_problem(text: &str) -> Problem {
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:#?}");
    p.into_iter().next().unwrap()
}

fn has(problems: &[Problem], key: &str, line: Option<usize>, needle: &str) -> bool {
    problems
        .iter()
        .any(|p| p.key.as_deref() == Some(key) && p.line == line && p.message.contains(needle))
}

#[test]
fn example_file_parses_without_problems() {
    let c = ok(EXAMPLE);
    assert_eq!(c.server.listen, "127.0.0.1:6432");
    let user = c.user("app").unwrap();
    assert!(matches!(user.secret, Some(Secret::Plain(_))));
    assert_eq!(user.server_password(), Some("secret"));
    let db = c.database("appdb").unwrap();
    assert_eq!(db.primary_endpoint.host, "127.0.0.1");
    assert_eq!(db.primary_endpoint.port, 5432);
    assert_eq!(db.primary_endpoint.dbname, "appdb");
    assert_eq!(db.primary_endpoint.user, None);
    assert!(db.replica_endpoints.is_empty());
}

#[test]
fn example_file_documents_every_key() {
    let sections: [(&str, &[&str]); 8] = [
        ("server", field_names::<ServerConfig>()),
        ("tls", field_names::<TlsConfig>()),
        ("pool", field_names::<PoolConfig>()),
        ("routing", field_names::<RoutingConfig>()),
        ("slow_query", field_names::<SlowQueryConfig>()),
        ("users", field_names::<UserConfig>()),
        ("auth_query", field_names::<AuthQueryConfig>()),
        ("databases", field_names::<DatabaseConfig>()),
    ];
    for (section, keys) in sections {
        assert!(!keys.is_empty(), "{section}: no field names captured");
        for key in keys {
            let shown = EXAMPLE.lines().any(|l| {
                let l = l.trim_start_matches("# ");
                l.starts_with(&format!("{key} = "))
            });
            assert!(shown, "config/lagoon.toml does not show {section}.{key}");
        }
    }
}

#[test]
fn server_section_alone_gets_all_defaults() {
    let c = ok("[server]\n");
    assert_eq!(c.server.listen, "127.0.0.1:6432");
    assert_eq!(c.server.admin_database, "lagoon");
    assert!(c.server.admin_users.is_empty());
    assert_eq!(c.server.metrics_listen, None);
    assert_eq!(c.server.max_client_conn, 10_000);
    assert_eq!(c.server.auth_type, AuthType::ScramSha256);
    assert_eq!(c.server.max_message_bytes, 1_073_741_824);
    assert_eq!(c.server.shutdown_timeout(), Duration::from_secs(30));
    assert_eq!(c.server.client_login_timeout(), Duration::from_secs(10));
    assert_eq!(c.tls.mode, TlsMode::Disable);
    assert_eq!((c.tls.cert.clone(), c.tls.key.clone()), (None, None));
    let p = &c.pool;
    assert_eq!((p.mode, p.size, p.min_idle), (PoolMode::Transaction, 20, 0));
    assert_eq!(p.checkout_timeout(), Duration::from_millis(5_000));
    assert_eq!(p.server_idle_timeout(), Duration::from_millis(600_000));
    assert_eq!(p.server_lifetime(), Duration::from_millis(3_600_000));
    assert_eq!(p.idle_transaction_timeout(), None);
    assert_eq!(p.connect_timeout(), Duration::from_millis(3_000));
    assert_eq!(p.max_prepared_statements, 500);
    assert_eq!(p.server_rollback_timeout(), Duration::from_millis(5_000));
    let r = &c.routing;
    assert!(r.read_write_split && r.read_your_writes);
    assert_eq!(r.strategy, RoutingStrategy::Latency);
    assert_eq!(
        (r.max_lag_bytes, r.max_lag()),
        (16_777_216, Duration::from_secs(1))
    );
    assert_eq!(r.probe_interval(), Duration::from_millis(250));
    assert_eq!(r.no_replica, NoReplica::Primary);
    assert_eq!(c.slow_query.threshold(), Duration::from_millis(500));
    assert_eq!(c.slow_query.log, "stderr");
    assert!(c.users.is_empty() && c.databases.is_empty());
    assert_eq!(c, Config::default());
    assert_eq!(ok(""), Config::default());
}

#[test]
fn enums_use_their_config_spelling() {
    let c = ok(r#"
[server]
auth_type = "md5"
[pool]
mode = "session"
idle_transaction_timeout_ms = 1500
[routing]
strategy = "least_outstanding"
no_replica = "error"
"#);
    assert_eq!(c.server.auth_type, AuthType::Md5);
    assert_eq!(c.pool.mode.as_str(), "session");
    assert_eq!(c.routing.strategy.to_string(), "least_outstanding");
    assert_eq!(c.routing.no_replica, NoReplica::Error);
    assert_eq!(
        c.pool.idle_transaction_timeout(),
        Some(Duration::from_millis(1500))
    );
}

#[test]
fn unknown_key_reports_its_line() {
    let text = "# comment\n\n[server]\nlisten = \"127.0.0.1:6432\"\n\n[pool]\nsizee = 5\n";
    let p = one_problem(text);
    assert_eq!(p.line, Some(7));
    assert_eq!(p.key.as_deref(), Some("pool.sizee"));
    assert_eq!(
        p.to_string(),
        "line 7: pool.sizee: unknown key; did you mean `size`?"
    );
}

#[test]
fn unknown_keys_everywhere_are_all_reported() {
    let text = r#"bogus = 1
[server]
lissen = "x"
[[users]]
name = "app"
password = "secret"
pasword = "typo"
[[databases]]
name = "appdb"
primary = "postgres://127.0.0.1/appdb"
replica = []
[extra]
a = 1
"#;
    let p = problems(text);
    assert_eq!(p.len(), 5, "{p:#?}");
    assert!(has(&p, "bogus", Some(1), "unknown key"));
    assert!(has(&p, "server.lissen", Some(3), "did you mean `listen`"));
    assert!(has(
        &p,
        "users[0].pasword",
        Some(7),
        "did you mean `password`"
    ));
    assert!(has(
        &p,
        "databases[0].replica",
        Some(11),
        "did you mean `replicas`"
    ));
    assert!(has(&p, "extra", Some(12), "expected one of"));
}

#[test]
fn unknown_keys_in_inline_and_dotted_forms() {
    let text = "pool.sizee = 1\nusers = [{ name = \"a\", password = \"p\", nope = 1 }]\n";
    let p = problems(text);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(has(&p, "pool.sizee", Some(1), "unknown key"));
    assert!(has(&p, "users[0].nope", Some(2), "unknown key"));
}

#[test]
fn type_errors_have_lines_and_all_are_reported() {
    let text = "[pool]\nsize = \"ten\"\nmin_idle = -1\nmode = \"bogus\"\n[routing]\nread_write_split = \"yes\"\n";
    let p = problems(text);
    assert_eq!(p.len(), 4, "{p:#?}");
    assert!(has(&p, "pool.size", Some(2), "invalid type"));
    assert!(has(&p, "pool.min_idle", Some(3), ""));
    assert!(has(&p, "pool.mode", Some(4), "unknown variant"));
    assert!(has(&p, "routing.read_write_split", Some(6), "invalid type"));
}

#[test]
fn many_problems_come_out_of_one_file() {
    let text = r#"[server]
listen = "not an address"
admin_users = ["root"]
[pool]
size = 0
checkout_timeout_ms = 0
sizee = 3
max_prepared_statements = "many"
[tls]
mode = "require"
[[users]]
name = "app"
[[databases]]
name = "appdb"
primary = "postgres://127.0.0.1:5432/appdb"
[[databases]]
name = "appdb"
primary = "/var/run/postgresql"
"#;
    let p = problems(text);
    let lines: Vec<_> = p.iter().map(|p| p.line).collect();
    assert!(
        lines.windows(2).all(|w| w[0] <= w[1]),
        "sorted by line: {p:#?}"
    );
    assert!(has(&p, "server.listen", Some(2), "not an ip:port"));
    assert!(has(&p, "server.admin_users", Some(3), "\"root\""));
    assert!(has(&p, "pool.size", Some(5), "at least 1"));
    assert!(has(&p, "pool.checkout_timeout_ms", Some(6), "at least 1"));
    assert!(has(&p, "pool.sizee", Some(7), "unknown key"));
    assert!(has(
        &p,
        "pool.max_prepared_statements",
        Some(8),
        "invalid type"
    ));
    assert!(has(
        &p,
        "tls.cert",
        Some(9),
        "required by tls.mode = \"require\""
    ));
    assert!(has(
        &p,
        "tls.key",
        Some(9),
        "required by tls.mode = \"require\""
    ));
    assert!(has(&p, "users[0].password", Some(11), "missing"));
    assert!(has(&p, "databases[1].name", Some(17), "duplicate"));
    assert!(has(&p, "databases[1].primary", Some(18), ""));
    assert_eq!(p.len(), 11, "{p:#?}");
}

#[test]
fn listen_addresses_must_parse() {
    let p = problems("[server]\nlisten = \"localhost\"\nmetrics_listen = \"0.0.0.0\"\n");
    assert!(has(&p, "server.listen", Some(2), "ip:port"));
    assert!(has(&p, "server.metrics_listen", Some(3), "ip:port"));
    let c = ok("[server]\nlisten = \"[::1]:6432\"\nmetrics_listen = \"0.0.0.0:9187\"\n");
    assert!(c.server.listen_addr().unwrap().is_ipv6());
    assert_eq!(
        c.server.metrics_listen_addr().unwrap().unwrap().port(),
        9187
    );
}

#[test]
fn pool_limits() {
    let p = one_problem("[pool]\nsize = 0\n");
    assert_eq!((p.key.as_deref(), p.line), (Some("pool.size"), Some(2)));
    let p = one_problem("[pool]\nsize = 2\nmin_idle = 3\n");
    assert_eq!((p.key.as_deref(), p.line), (Some("pool.min_idle"), Some(3)));
    let p = one_problem("[pool]\ncheckout_timeout_ms = 0\n");
    assert_eq!(p.key.as_deref(), Some("pool.checkout_timeout_ms"));
    // A defaulted key's problem points at its section.
    let p = one_problem("[pool]\nmin_idle = 25\n");
    assert_eq!((p.key.as_deref(), p.line), (Some("pool.min_idle"), Some(2)));
    let p = problems(&format!("{BASE}pool_size = 0\n[pool]\nmin_idle = 2\n"));
    assert!(
        has(&p, "databases[0].pool_size", Some(9), "at least 1"),
        "{p:#?}"
    );
    let p = problems(&format!("{BASE}pool_size = 1\n[pool]\nmin_idle = 2\n"));
    assert!(
        has(&p, "databases[0].pool_size", Some(9), "pool.min_idle"),
        "{p:#?}"
    );
}

#[test]
fn duplicate_users_and_databases() {
    let text = format!("{BASE}\n[[users]]\nname = \"app\"\npassword = \"x\"\n");
    let p = one_problem(&text);
    assert_eq!(
        (p.key.as_deref(), p.line),
        (Some("users[1].name"), Some(11))
    );
    assert!(p.message.contains("duplicate user \"app\""));
    let text = format!("{BASE}\n[[databases]]\nname = \"appdb\"\nprimary = \"host=h\"\n");
    let p = one_problem(&text);
    assert_eq!(p.key.as_deref(), Some("databases[1].name"));
    assert!(p.message.contains("duplicate database"));
}

#[test]
fn database_named_like_the_admin_database() {
    let text = "[[databases]]\nname = \"lagoon\"\nprimary = \"postgres://h/x\"\n";
    let p = one_problem(text);
    assert_eq!(
        (p.key.as_deref(), p.line),
        (Some("databases[0].name"), Some(2))
    );
    assert!(p.message.contains("admin_database"));
    let text = "[server]\nadmin_database = \"admin\"\n[[databases]]\nname = \"lagoon\"\nprimary = \"postgres://h/x\"\n";
    ok(text);
}

#[test]
fn admin_users_must_be_configured_users() {
    let p = one_problem(&format!(
        "[server]\nadmin_users = [\"app\", \"root\"]\n{BASE}"
    ));
    assert_eq!(
        (p.key.as_deref(), p.line),
        (Some("server.admin_users"), Some(2))
    );
    assert!(p.message.contains("\"root\""));
}

#[test]
fn database_urls() {
    let db = |primary: &str| {
        format!("[[databases]]\nname = \"appdb\"\nprimary = \"{primary}\"\nreplicas = []\n")
    };
    let c = ok(&db(
        "postgres://admin:pw@db.internal/other?options=-c%20search_path%3Dapp",
    ));
    let ep = &c.databases[0].primary_endpoint;
    assert_eq!(
        (ep.host.as_str(), ep.port, ep.dbname.as_str()),
        ("db.internal", 5432, "other")
    );
    assert_eq!(
        (ep.user.as_deref(), ep.password.as_deref()),
        (Some("admin"), Some("pw"))
    );
    assert_eq!(ep.options.as_deref(), Some("-c search_path=app"));
    assert!(
        !format!("{c:?}").contains("pw@"),
        "Debug must not print URL passwords"
    );
    let c = ok(&db("host=10.0.0.1 port=6543"));
    let ep = &c.databases[0].primary_endpoint;
    assert_eq!(
        (ep.host.as_str(), ep.port, ep.dbname.as_str()),
        ("10.0.0.1", 6543, "appdb")
    );
    for bad in [
        "not a url at all",
        "postgres://%2Fvar%2Frun%2Fpostgresql/appdb",
        "host=/tmp",
        "postgres://a:5432,b:5432/appdb",
        "postgres:///appdb",
        "postgres://h/appdb?sslmode=verify-full",
        "host=h password=pw",
    ] {
        let p = one_problem(&db(bad));
        assert_eq!(
            (p.key.as_deref(), p.line),
            (Some("databases[0].primary"), Some(3)),
            "{bad}"
        );
    }
    let text = "[[databases]]\nname = \"appdb\"\nprimary = \"postgres://p/appdb\"\nreplicas = [\n  \"postgres://r1/appdb\",\n  \"host=/tmp\",\n]\n";
    let p = one_problem(text);
    assert_eq!(
        (p.key.as_deref(), p.line),
        (Some("databases[0].replicas[1]"), Some(4))
    );
    let text = "[[databases]]\nname = \"appdb\"\nprimary = \"postgres://p/appdb\"\nreplicas = [\"postgres://r1:5433/appdb\"]\n";
    let c = ok(text);
    assert_eq!(c.databases[0].replica_endpoints[0].port, 5433);
}

#[test]
fn url_problems_do_not_echo_passwords() {
    let text = "[[databases]]\nname = \"d\"\nprimary = \"postgres://u:hunter2@a,b/d\"\n";
    let p = one_problem(text);
    assert!(!p.to_string().contains("hunter2"), "{p}");
}

#[test]
fn passwords() {
    let user = |extra: &str| format!("[[users]]\nname = \"u\"\n{extra}");
    // Missing password: only fine for trust, server-wide or per user.
    let p = one_problem(&user(""));
    assert_eq!(
        (p.key.as_deref(), p.line),
        (Some("users[0].password"), Some(1))
    );
    ok(&user("auth_type = \"trust\"\n"));
    ok(&format!("[server]\nauth_type = \"trust\"\n{}", user("")));
    one_problem(&format!(
        "[server]\nauth_type = \"trust\"\n{}",
        user("auth_type = \"md5\"\n")
    ));
    // Malformed verifier: Secret::parse's error, at the password's line.
    let p = one_problem(&user("password = \"SCRAM-SHA-256$garbage\"\n"));
    assert_eq!(
        (p.key.as_deref(), p.line),
        (Some("users[0].password"), Some(3))
    );
    assert!(p.message.contains("SCRAM"), "{p}");
    // An md5 hash cannot serve SCRAM logins; it can serve md5 ones.
    let p = one_problem(&user(&format!("password = \"{MD5_HASH}\"\n")));
    assert!(p.message.contains("md5 hash"), "{p}");
    let c = ok(&user(&format!(
        "password = \"{MD5_HASH}\"\nauth_type = \"md5\"\n"
    )));
    assert!(matches!(c.users[0].secret, Some(Secret::Md5(_))));
}

#[test]
fn server_password_fallback() {
    let text = format!(
        "[[users]]\nname = \"a\"\npassword = \"{VERIFIER}\"\n\
         [[users]]\nname = \"b\"\npassword = \"{VERIFIER}\"\nserver_password = \"pw\"\n\
         [[users]]\nname = \"c\"\npassword = \"plain-secret-123\"\n\
         [[databases]]\nname = \"d\"\nprimary = \"postgres://127.0.0.1/d\"\n"
    );
    // A verifier without server_password and a URL without password are not problems.
    let c = ok(&text);
    assert!(matches!(
        c.user("a").unwrap().secret,
        Some(Secret::Scram(_))
    ));
    assert_eq!(c.user("a").unwrap().server_password(), None);
    assert_eq!(c.user("b").unwrap().server_password(), Some("pw"));
    assert_eq!(
        c.user("c").unwrap().server_password(),
        Some("plain-secret-123")
    );
    assert!(c.user("zz").is_none() && c.database("zz").is_none());
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("plain-secret") && !debug.contains("\"pw\""),
        "{debug}"
    );
}

/// A self-signed certificate and its key, written as PEM files under a fresh temp dir.
fn cert_files(tag: &str) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("lagoon-config-tls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (dir, c, k)
}

#[test]
fn tls_loads_its_files_and_reports_bad_ones() {
    let (dir, cert, key) = cert_files("load");
    let text = |mode: &str, cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "[tls]\nmode = \"{mode}\"\ncert = {:?}\nkey = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        )
    };
    let c = ok(&text("require", &cert, &key));
    let acceptor = c.tls.acceptor.as_ref().expect("loaded");
    assert!(acceptor.channel_binding().is_some(), "ECDSA P-256 binds");
    // The same files load to an equal config; a rotated certificate does not.
    assert_eq!(ok(&text("require", &cert, &key)), c);
    let (dir2, cert2, key2) = cert_files("rotated");
    std::fs::copy(&cert2, &cert).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    assert_ne!(ok(&text("require", &cert, &key)), c);
    // Disabled: nothing is loaded, the files need not exist.
    let c = ok("[tls]\nmode = \"disable\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n");
    assert!(c.tls.acceptor.is_none());

    let missing = dir.join("nope.pem");
    let p = problems(&text("allow", &missing, &missing));
    assert!(has(&p, "tls.cert", Some(3), "cannot read"), "{p:#?}");
    assert!(has(&p, "tls.key", Some(4), "cannot read"), "{p:#?}");
    // A key file where the certificate should be, and the other way round.
    let p = problems(&text("allow", &key, &cert));
    assert!(has(&p, "tls.cert", Some(3), "no certificate"), "{p:#?}");
    assert!(
        has(&p, "tls.key", Some(4), "no usable private key"),
        "{p:#?}"
    );
    // A key that does not belong to the certificate.
    let (dir3, _, other_key) = cert_files("other");
    let p = one_problem(&text("allow", &cert, &other_key));
    assert!(
        p.message
            .contains("do not make a usable certificate and key"),
        "{p}"
    );
    // Client certificates need a CA.
    let p = one_problem(&format!(
        "{}client_cert = \"require\"\n",
        text("allow", &cert, &key)
    ));
    assert!(p.message.contains("needs tls.ca"), "{p}");
    for d in [dir, dir2, dir3] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn server_tls_follows_the_url_unless_set_and_verify_needs_a_ca() {
    use crate::config::ServerTlsMode;
    let db = |extra: &str, url: &str| {
        format!(
            "[[databases]]\nname = \"appdb\"\nprimary = \"{url}\"\nreplicas = [\"postgres://r/appdb?sslmode=disable\"]\n{extra}"
        )
    };
    let c = ok(&db("", "postgres://p/appdb"));
    let d = &c.databases[0];
    assert_eq!(d.primary_endpoint.tls.mode, ServerTlsMode::Prefer);
    assert_eq!(d.replica_endpoints[0].tls.mode, ServerTlsMode::Disable);
    let c = ok(&db("", "postgres://p/appdb?sslmode=require"));
    assert_eq!(
        c.databases[0].primary_endpoint.tls.mode,
        ServerTlsMode::Require
    );
    // server_tls wins over every URL.
    let c = ok(&db(
        "server_tls = \"require\"\n",
        "postgres://p/appdb?sslmode=disable",
    ));
    let d = &c.databases[0];
    assert_eq!(d.primary_endpoint.tls.mode, ServerTlsMode::Require);
    assert_eq!(d.replica_endpoints[0].tls.mode, ServerTlsMode::Require);
    // verify-* without a CA: one problem for the database, not one per member.
    let p = one_problem(&db("server_tls = \"verify-full\"\n", "postgres://p/appdb"));
    assert_eq!(p.key.as_deref(), Some("databases[0].server_tls"));
    assert!(p.message.contains("needs server_tls_ca"), "{p}");
    let p = one_problem(&db(
        "server_tls = \"verify-ca\"\nserver_tls_ca = \"/nonexistent/ca.pem\"\n",
        "postgres://p/appdb",
    ));
    assert_eq!(p.key.as_deref(), Some("databases[0].server_tls_ca"));
    assert!(p.message.contains("cannot read /nonexistent/ca.pem"), "{p}");
    let (dir, cert, _) = cert_files("ca");
    let c = ok(&db(
        &format!(
            "server_tls = \"verify-full\"\nserver_tls_ca = {:?}\n",
            cert.display().to_string()
        ),
        "postgres://p/appdb",
    ));
    assert_eq!(
        c.databases[0].primary_endpoint.tls.mode,
        ServerTlsMode::VerifyFull
    );
    assert!(c.databases[0].primary_endpoint.tls.requires_tls());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn missing_required_fields_keep_later_indices() {
    let text = "[[users]]\npassword = \"x\"\n[[users]]\nname = \"b\"\n";
    let p = problems(text);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(has(&p, "users[0]", Some(1), "missing field `name`"));
    assert!(has(&p, "users[1].password", Some(3), "missing"));
    let p = one_problem("[[databases]]\nname = \"d\"\n");
    assert_eq!((p.key.as_deref(), p.line), (Some("databases[0]"), Some(1)));
}

#[test]
fn wrong_shapes_are_problems_not_panics() {
    for (text, key) in [
        ("server = 5\n", "server"),
        ("[[server]]\nlisten = \"x\"\n", "server"),
        ("users = 5\n", "users"),
        ("[users]\nname = \"a\"\n", "users"),
        ("databases = [1]\n", "databases[0]"),
        ("[server.listen]\nx = 1\n", "server.listen"),
    ] {
        let p = problems(text);
        assert!(
            p.iter().any(|p| p.key.as_deref() == Some(key)),
            "{text}: {p:#?}"
        );
    }
}

#[test]
fn syntax_error_is_one_problem_with_a_line() {
    let p = one_problem("[server]\nlisten = \n");
    assert_eq!(p.line, Some(2));
    assert!(p.message.starts_with("TOML syntax error"), "{p}");
}

#[test]
fn no_panic_on_any_prefix_of_the_example() {
    for (i, _) in EXAMPLE.char_indices().step_by(3) {
        let _ = parse(&EXAMPLE[..i]);
    }
}

#[test]
fn load_reads_files_and_reports_read_errors() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lagoon.toml");
    assert!(load(&path).is_ok());
    let p = load(std::path::Path::new("/nonexistent/lagoon.toml")).unwrap_err();
    assert_eq!(p.len(), 1);
    assert!(p[0].message.contains("cannot read config file"), "{}", p[0]);
}

#[test]
fn auth_query_defaults_and_checks() {
    let c = ok(BASE);
    let aq = &c.auth_query;
    assert!(!aq.enabled());
    assert_eq!(aq.query, "SELECT uname, phash FROM lagoon.user_lookup($1)");
    assert_eq!((aq.database.as_str(), aq.cache_ttl_ms), ("", 60_000));
    assert_eq!(aq.password, None);

    let c = ok(&format!(
        "[auth_query]\nuser = \"lagoon_auth\"\npassword = \"{MD5_HASH}\"\ncache_ttl_ms = 0\n{BASE}"
    ));
    assert!(c.auth_query.enabled());
    assert_eq!(c.auth_query.cache_ttl(), Duration::ZERO);
    assert!(!format!("{:?}", c.auth_query).contains(MD5_HASH));

    // Every problem at once: a query without $1, a verifier as the password, an unknown key.
    let p = problems(&format!(
        "[auth_query]\nuser = \"a\"\npassword = \"{VERIFIER}\"\nquery = \"SELECT 1\"\n\
         auth_dbname = \"x\"\n{BASE}"
    ));
    assert!(has(&p, "auth_query.query", Some(4), "$1"), "{p:#?}");
    assert!(
        has(&p, "auth_query.password", Some(3), "SCRAM verifier"),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|p| p.key.as_deref() == Some("auth_query.auth_dbname")),
        "{p:#?}"
    );
    assert_eq!(p.len(), 3, "{p:#?}");
    // Off (no user): the other keys are not checked.
    ok(&format!("[auth_query]\nquery = \"SELECT 1\"\n{BASE}"));
}

#[test]
fn slow_query_settings_and_database_threshold() {
    let c = ok(BASE);
    let sq = &c.slow_query;
    assert!(!sq.log_parameters);
    assert_eq!((sq.max_lines_per_second, sq.top_queries), (100, 1000));
    let db = c.database("appdb").unwrap();
    assert_eq!(db.slow_query_threshold_ms, None);
    assert_eq!(
        db.effective_slow_query_threshold(sq),
        Duration::from_millis(500)
    );

    let text = format!(
        "[slow_query]\nthreshold_ms = 200\nlog_parameters = true\nmax_lines_per_second = 5\n\
         top_queries = 10\n{BASE}slow_query_threshold_ms = 5000\n"
    );
    let c = ok(&text);
    let sq = &c.slow_query;
    assert!(sq.log_parameters);
    assert_eq!((sq.max_lines_per_second, sq.top_queries), (5, 10));
    let db = c.database("appdb").unwrap();
    assert_eq!(
        db.effective_slow_query_threshold(sq),
        Duration::from_secs(5)
    );

    let p = problems(&format!(
        "[slow_query]\nmax_lines_per_second = 0\ntop_queries = 0\n{BASE}"
    ));
    assert!(
        has(&p, "slow_query.max_lines_per_second", Some(2), "at least 1"),
        "{p:#?}"
    );
    assert!(
        has(&p, "slow_query.top_queries", Some(3), "at least 1"),
        "{p:#?}"
    );
    assert_eq!(p.len(), 2, "{p:#?}");
}
