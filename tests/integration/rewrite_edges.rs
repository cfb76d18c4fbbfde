//! Edge cases of statement rewriting and session-state tracking that a review found, each
//! compared with a direct connection (or with what a direct connection guarantees).

use std::time::Duration;

use crate::faultkit::admin;
use crate::harness::*;
use crate::login_wire::{Raw, login_no_password, message, query, startup};
use crate::prepared::{
    Target, USER, bind, describe_portal, exchange, execute, parse, run_stmt, show, sync,
};

/// Runs `f` directly and through Lagoon (pool of 1, `pool_extra`) and returns both logs.
async fn both<F, Fut>(pool_extra: &str, f: F) -> (Vec<String>, Vec<String>)
where
    F: Fn(Target) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let d = f(Target::direct().await).await;
    let l = f(Target::lagoon(1, pool_extra).await).await;
    (d, l)
}

/// An LRU eviction Close skipped after an error in its batch leaves the statement on the
/// server; the proxy must not go on believing it gone (later uses failed with 42P05).
#[tokio::test(flavor = "multi_thread")]
async fn an_eviction_skipped_by_an_error_does_not_break_the_statement() {
    let (d, l) = both("max_prepared_statements = 2", |t| async move {
        let mut a = t.raw().await;
        let mut log = vec![];
        log.extend(exchange(&mut a, &[parse("e1", "SELECT 101", &[]), sync()]).await);
        log.extend(exchange(&mut a, &[parse("e2", "SELECT 102", &[]), sync()]).await);
        let batch = [
            bind("", "nope", &[]),
            execute("", 0),
            parse("e3", "SELECT 103", &[]),
            sync(),
        ];
        log.extend(exchange(&mut a, &batch).await);
        for _ in 0..2 {
            log.extend(exchange(&mut a, &run_stmt("e1", &[])).await);
        }
        log
    })
    .await;
    assert_eq!(l, d);
}

fn function_call(oid: u32, args: &[&str]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&oid.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(args.len() as i16).to_be_bytes());
    for a in args {
        b.extend_from_slice(&(a.len() as i32).to_be_bytes());
        b.extend_from_slice(a.as_bytes());
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    message(b'F', &b)
}

/// A fastpath call of set_config (OID 2078) changes settings without any SQL to scan: the
/// next client on that server must not inherit them. (Custom `prefix.name` settings changed
/// where no SQL names them cannot be found by asking the server: a known gap.)
#[tokio::test(flavor = "multi_thread")]
async fn set_config_through_a_function_call_does_not_leak() {
    let t = Target::lagoon(1, "").await;
    let mut a = t.raw().await;
    a.send(&function_call(2078, &["work_mem", "7777kB", "false"]))
        .await;
    a.read_until(b'Z').await;
    let mut b = t.raw().await;
    let r = b.simple_query("SELECT current_setting('work_mem')").await;
    assert_eq!(r, [Some("4MB".to_owned())]);
    let r = a.simple_query("SELECT current_setting('work_mem')").await;
    assert_eq!(r, [Some("7777kB".to_owned())], "a keeps its own");
}

/// With standard_conforming_strings off a backslash escapes a quote: the refusal must see the
/// LISTEN the way the server does, and answer (this used to spin forever).
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_statement_with_backslash_strings_is_answered() {
    let t = Target::lagoon(1, "session_features = \"error\"").await;
    let mut a = Raw::connect(t.addr).await;
    login_no_password(
        &mut a,
        &startup(&[
            ("user", USER),
            ("database", DB),
            ("standard_conforming_strings", "off"),
        ]),
    )
    .await;
    a.send(&query("SELECT 'a\\' ' ; LISTEN rv_ch; --'")).await;
    let r = tokio::time::timeout(Duration::from_secs(10), a.read_until(b'Z'))
        .await
        .expect("an answer, not a hang");
    let r: Vec<String> = r.iter().map(show).collect();
    assert!(r[0].starts_with("Error 0A000"), "{r:?}");
}

/// A stale-plan retry must not replay a batch whose implicit transaction already held earlier
/// work (sent with Flush, no Sync): the error rolls that work back, so the client must see it.
#[tokio::test(flavor = "multi_thread")]
async fn a_stale_plan_after_unsynced_work_is_not_retried() {
    let (d, l) = both("", |t| async move {
        let tb = t.name("re_stale");
        admin(&format!(
            "DROP TABLE IF EXISTS {tb}; CREATE TABLE {tb} (id int4); GRANT ALL ON {tb} TO PUBLIC"
        ))
        .await;
        let mut a = t.raw().await;
        let mut log = vec![];
        let prep = [
            parse("ins", &format!("INSERT INTO {tb} VALUES (1)"), &[]),
            parse("sel", &format!("SELECT * FROM {tb}"), &[]),
            bind("", "sel", &[]),
            describe_portal(""),
            execute("", 0),
            sync(),
        ];
        log.extend(exchange(&mut a, &prep).await);
        admin(&format!("ALTER TABLE {tb} ADD COLUMN extra int4 DEFAULT 7")).await;
        a.send(&[bind("", "ins", &[]), execute("", 0), message(b'H', &[])].concat())
            .await;
        log.push(show(&a.read_msg().await));
        log.push(show(&a.read_msg().await));
        let run = [
            bind("", "sel", &[]),
            describe_portal(""),
            execute("", 0),
            sync(),
        ];
        log.extend(exchange(&mut a, &run).await);
        log.push(admin(&format!("SELECT count(*) FROM {tb}")).await);
        log
    })
    .await;
    assert_eq!(l, d);
}
