//! auth_query: users with no `[[users]]` entry and no password anywhere in the config, looked
//! up in Postgres through the README's SECURITY DEFINER function, logging in through the
//! proxy with their own password, and the proxy logging in to the servers with the ClientKey
//! their SCRAM proof revealed (or the md5 hash).
//!
//! The devcluster's pg_hba.conf ends in `md5` for every role but `lagoon_trust`/`lagoon_plain`,
//! which Postgres upgrades to SCRAM for roles with a SCRAM verifier: the server really asks
//! these roles for a proof (asserted below by a direct login without the password failing),
//! so a successful query through the proxy proves the ClientKey login worked.

use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lagoon::devcluster::PasswordEncryption;

use crate::auth::psql_as;
use crate::harness::*;
use crate::login_wire::*;

/// The role the proxy runs the lookup as.
const AUTH_USER: (&str, &str) = ("lagoon_auth", "auth-pw");
/// Looked-up roles, one per test that changes state, so parallel tests do not meet.
const SCRAM: (&str, &str) = ("aq_scram", "aq-scram-pw");
const MD5: (&str, &str) = ("aq_md5", "aq-md5-pw");
const CHANGE: (&str, &str) = ("aq_change", "aq-old-pw");
const CHANGE_NOW: (&str, &str) = ("aq_change_now", "aq-old-pw");
const TX: (&str, &str) = ("aq_tx", "aq-tx-pw");
/// A role with no password at all (`pg_shadow.passwd` is NULL).
const NO_PASSWORD: &str = "aq_nopw";

/// The README's lookup function, owned by the superuser, callable only by the auth role.
const USER_LOOKUP_SQL: &str = "
CREATE SCHEMA lagoon;
CREATE FUNCTION lagoon.user_lookup(i_username text, OUT uname text, OUT phash text)
RETURNS record LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = i_username
      INTO uname, phash;
    RETURN;
END;
$$;
REVOKE ALL ON FUNCTION lagoon.user_lookup(text) FROM PUBLIC;
GRANT USAGE ON SCHEMA lagoon TO lagoon_auth;
GRANT EXECUTE ON FUNCTION lagoon.user_lookup(text) TO lagoon_auth;
";

/// Creates the auth role, the function and the looked-up roles, once per process.
fn setup() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let c = cluster();
        let scram = [AUTH_USER, SCRAM, CHANGE, CHANGE_NOW, TX];
        for (name, pw) in scram {
            c.create_role(name, pw, PasswordEncryption::Scram)
                .unwrap_or_else(|e| panic!("create role {name}: {e}"));
        }
        c.create_role(MD5.0, MD5.1, PasswordEncryption::Md5)
            .unwrap_or_else(|e| panic!("create role {}: {e}", MD5.0));
        admin_sql(&format!("CREATE ROLE {NO_PASSWORD} LOGIN"));
        admin_sql(USER_LOOKUP_SQL);
    });
}

/// A config with `[auth_query]` and no `[[users]]`: no user password anywhere.
fn config(pool: &str, auth_query_extra: &str, replicas: &str) -> String {
    let c = cluster();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[pool]
{pool}

[auth_query]
user = "{au}"
password = "{ap}"
{auth_query_extra}

[[databases]]
name = "{DB}"
primary = "{url}"
{replicas}
"#,
        au = AUTH_USER.0,
        ap = AUTH_USER.1,
        url = c.url(&c.primary, DB),
    )
}

async fn start(pool: &str, auth_query_extra: &str) -> TestProxy {
    setup();
    start_proxy_with(&config(pool, auth_query_extra, "")).await
}

/// Logs in through the proxy and checks the server session is that role's.
async fn assert_login_works(proxy: &TestProxy, (user, password): (&str, &str)) {
    let client = proxy
        .try_connect(&proxy.conninfo(user, password, DB))
        .await
        .unwrap_or_else(|e| panic!("login as {user} failed: {e} {}", error_message(&e)));
    let row = client
        .query_one("SELECT current_user::text, $1::int + 1", &[&41i32])
        .await
        .unwrap_or_else(|e| panic!("query as {user} failed: {e}"));
    assert_eq!(row.get::<_, String>(0), user);
    assert_eq!(row.get::<_, i32>(1), 42);
}

/// Logs in through the proxy expecting a refusal; returns (SQLSTATE, message).
async fn refused(proxy: &TestProxy, user: &str, password: &str, db: &str) -> (String, String) {
    match proxy.try_connect(&proxy.conninfo(user, password, db)).await {
        Ok(_) => panic!("login as {user} to {db} with {password:?} succeeded"),
        Err(e) => (
            sqlstate(&e).unwrap_or_else(|| panic!("{user}: not a server error: {e}")),
            error_message(&e),
        ),
    }
}

/// Connecting straight to Postgres as `user` with a wrong password fails: the server really
/// asks for a proof, so a proxy login that works did prove something.
async fn assert_server_requires_a_password(user: &str) {
    let c = cluster();
    let conninfo = format!(
        "host={} port={} user={user} password=not-it dbname={DB}",
        c.primary.host, c.primary.port
    );
    let e = match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
        Ok(_) => panic!("{user} logged in to Postgres with a wrong password"),
        Err(e) => e,
    };
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{user}: {e}");
}

/// Server connections opened by the proxy's pools for `user`.
fn server_connects(proxy: &TestProxy, user: &str) -> u64 {
    proxy
        .shared
        .pools
        .all()
        .iter()
        .filter(|p| p.user == user)
        .map(|p| p.counters.connects.load(Ordering::Relaxed))
        .sum()
}

#[tokio::test]
async fn scram_role_logs_in_with_no_password_in_the_config() {
    let proxy = start("", "").await;
    assert_server_requires_a_password(SCRAM.0).await;
    assert_login_works(&proxy, SCRAM).await;
    assert!(server_connects(&proxy, SCRAM.0) >= 1);
    // The client was asked for SCRAM (10), as the stored verifier decides.
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&startup(&[("user", SCRAM.0), ("database", DB)]))
        .await;
    let m = raw.read_msg().await;
    assert_eq!((m.tag, m.i32_at(0)), (b'R', 10));
    // psql too.
    let out = psql_as(&proxy, SCRAM.0, SCRAM.1).await;
    assert_success("psql through auth_query", &out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{}:42", SCRAM.0)
    );
}

/// The first Authentication request a login as `user` gets: (code, body length).
async fn first_auth_request(proxy: &TestProxy, user: &str) -> (i32, usize) {
    let mut raw = Raw::connect(proxy.addr).await;
    raw.send(&startup(&[("user", user), ("database", DB)]))
        .await;
    let m = raw.read_msg().await;
    assert_eq!(m.tag, b'R', "{user}");
    (m.i32_at(0), m.body.len())
}

#[tokio::test]
async fn md5_role_logs_in_with_an_md5_exchange() {
    setup();
    let text = config("", "", "").replacen(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nauth_type = \"md5\"",
        1,
    );
    let proxy = start_proxy_with(&text).await;
    assert_server_requires_a_password(MD5.0).await;
    assert_eq!(
        first_auth_request(&proxy, MD5.0).await,
        (5, 8),
        "md5 challenge"
    );
    // An unknown name gets the same first step, so names cannot be probed; a SCRAM role falls
    // back to SCRAM, as in Postgres.
    assert_eq!(first_auth_request(&proxy, "aq_no_such_role").await, (5, 8));
    assert_eq!(first_auth_request(&proxy, SCRAM.0).await.0, 10, "SASL");
    assert_login_works(&proxy, MD5).await;
    assert_login_works(&proxy, SCRAM).await;
}

/// Under the default scram-sha-256 an md5 hash cannot be checked: the role is refused after a
/// SCRAM exchange, the same as an unknown name, as Postgres does.
#[tokio::test]
async fn under_scram_an_md5_role_is_refused_like_an_unknown_one() {
    let proxy = start("", "").await;
    assert_eq!(first_auth_request(&proxy, MD5.0).await.0, 10);
    assert_eq!(first_auth_request(&proxy, "aq_no_such_role").await.0, 10);
    let (code, _) = refused(&proxy, MD5.0, MD5.1, DB).await;
    assert_eq!(code, "28P01");
}

#[tokio::test]
async fn wrong_password_unknown_and_passwordless_roles_are_28p01() {
    let proxy = start("", "").await;
    let (code, msg) = refused(&proxy, SCRAM.0, "wrong", DB).await;
    assert_eq!(code, "28P01", "{msg}");
    assert_eq!(
        msg,
        format!("password authentication failed for user \"{}\"", SCRAM.0)
    );
    for ghost in ["aq_no_such_role", NO_PASSWORD] {
        let (code, msg) = refused(&proxy, ghost, "whatever", DB).await;
        assert_eq!(code, "28P01", "{ghost}: {msg}");
        assert_eq!(
            msg,
            format!("password authentication failed for user \"{ghost}\"")
        );
    }
    // An unknown database gives auth_query nowhere to look: the same refusal.
    let (code, msg) = refused(&proxy, "aq_no_such_role", "x", "no_such_db").await;
    assert_eq!(code, "28P01", "{msg}");
    let (code, msg) = refused(&proxy, SCRAM.0, SCRAM.1, "no_such_db").await;
    assert_eq!(code, "28P01", "{msg}");
    // None of that opened a pool connection (the lookups use their own).
    assert_eq!(server_connects(&proxy, SCRAM.0), 0);
    // The right password still works after all that.
    assert_login_works(&proxy, SCRAM).await;
}

#[tokio::test]
async fn a_lookup_that_cannot_run_is_28p01() {
    setup();
    // The auth role's password is wrong: the lookup cannot log in.
    let text = config("", "", "").replace(AUTH_USER.1, "not-the-auth-pw");
    let proxy = start_proxy_with(&text).await;
    let (code, msg) = refused(&proxy, SCRAM.0, SCRAM.1, DB).await;
    assert_eq!(code, "28P01", "{msg}");
    // The query fails (no such function).
    let proxy = start("", "query = \"SELECT uname, phash FROM lagoon.nope($1)\"").await;
    let (code, msg) = refused(&proxy, SCRAM.0, SCRAM.1, DB).await;
    assert_eq!(code, "28P01", "{msg}");
}

#[tokio::test]
async fn a_changed_password_is_seen_after_one_failed_attempt() {
    let c = cluster();
    let proxy = start("", "").await;
    assert_login_works(&proxy, CHANGE).await;
    c.create_role(CHANGE.0, "aq-new-pw", PasswordEncryption::Scram)
        .expect("alter role");
    // The cached verifier is the old one: the new password fails once, which drops it ...
    let (code, _) = refused(&proxy, CHANGE.0, "aq-new-pw", DB).await;
    assert_eq!(code, "28P01");
    // ... and the next attempt fetches the new one. The old password no longer works.
    assert_login_works(&proxy, (CHANGE.0, "aq-new-pw")).await;
    let (code, _) = refused(&proxy, CHANGE.0, CHANGE.1, DB).await;
    assert_eq!(code, "28P01");
    // New server connections log in with the new key: a fresh proxy has none to reuse.
    drop(proxy);
    let proxy = start("", "").await;
    assert_login_works(&proxy, (CHANGE.0, "aq-new-pw")).await;
}

#[tokio::test]
async fn with_no_cache_a_changed_password_works_at_once() {
    let c = cluster();
    let proxy = start("", "cache_ttl_ms = 0").await;
    assert_login_works(&proxy, CHANGE_NOW).await;
    c.create_role(CHANGE_NOW.0, "aq-new-pw", PasswordEncryption::Scram)
        .expect("alter role");
    let (code, _) = refused(&proxy, CHANGE_NOW.0, CHANGE_NOW.1, DB).await;
    assert_eq!(code, "28P01");
    assert_login_works(&proxy, (CHANGE_NOW.0, "aq-new-pw")).await;
}

#[tokio::test]
async fn transaction_pooling_opens_more_server_connections_with_the_key() {
    let proxy = start("size = 4", "").await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(
            proxy
                .try_connect(&proxy.conninfo(TX.0, TX.1, DB))
                .await
                .expect("login"),
        );
    }
    // Four transactions at once need four server connections: the pool opens the extra ones
    // itself, each logging in with the ClientKey.
    let queries = clients.iter().map(|c| async move {
        let tx = "SELECT pg_backend_pid(), current_user::text FROM pg_sleep(0.3)";
        c.query_one(tx, &[]).await
    });
    let rows = futures_util::future::join_all(queries).await;
    let mut pids = std::collections::HashSet::new();
    for row in rows {
        let row = row.expect("query through a pooled connection");
        assert_eq!(row.get::<_, String>(1), TX.0);
        pids.insert(row.get::<_, i32>(0));
    }
    assert!(
        pids.len() >= 2,
        "only {} server connection(s) used",
        pids.len()
    );
    assert!(server_connects(&proxy, TX.0) >= 2);
}

#[tokio::test]
async fn replicas_log_in_with_the_key_too() {
    setup();
    let c = cluster();
    let replicas = format!("replicas = [{}]", replica_urls_toml(c, DB));
    let proxy = start_proxy_with(&config("", "", &replicas)).await;
    let client = proxy
        .try_connect(&proxy.conninfo(SCRAM.0, SCRAM.1, DB))
        .await
        .expect("login");
    // Reads go to a replica once the monitor (logging in as the auth role) has probed them.
    eventually(
        "a read served by a replica as the looked-up role",
        Duration::from_secs(30),
        || async {
            let row = client
                .query_one("SELECT pg_is_in_recovery(), current_user::text", &[])
                .await
                .expect("read");
            assert_eq!(row.get::<_, String>(1), SCRAM.0);
            row.get::<_, bool>(0)
        },
    )
    .await;
}
