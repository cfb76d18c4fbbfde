//! Session settings in transaction mode (issue 2, item 8): the startup parameters a client gave
//! (`application_name`, `options=-c ...` for DateStyle, TimeZone, IntervalStyle, search_path,
//! standard_conforming_strings, `client_encoding`) and the reported settings it changes later
//! hold on every server its transactions land on, and never leak to other clients.
//!
//! The oracle is Postgres itself: each client's expected values come from a direct connection to
//! the primary with the same connection string.
//!
//! Unreported settings (`SET work_mem`) in transaction mode are a later issue.

use std::collections::HashSet;

use futures_util::future::join_all;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::harness::*;

/// What a client sees of its settings, and their effect on values: one `|`-joined string.
const PROBE: &str = "SELECT concat_ws('|', current_setting('application_name'), \
     current_setting('DateStyle'), current_setting('TimeZone'), \
     current_setting('IntervalStyle'), current_setting('search_path'), \
     current_setting('client_encoding'), current_setting('standard_conforming_strings'), \
     '2001-02-03 04:05:06+00'::timestamptz::text, '2001-02-03'::date::text, \
     interval '1 day 2 hours 3 minutes'::text)";

/// A connection straight to the primary as the SCRAM test user, with `extra` conninfo.
async fn direct(extra: &str) -> Client {
    let c = cluster();
    let conninfo = format!(
        "host={} port={} user={} password={} dbname={DB} {extra}",
        c.primary.host, c.primary.port, SCRAM_USER.0, SCRAM_USER.1
    );
    let (client, conn) = tokio_postgres::connect(&conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("direct connect with {extra:?}: {e}"));
    tokio::spawn(conn);
    client
}

/// Through the proxy as the SCRAM test user, with `extra` conninfo.
async fn via(proxy: &TestProxy, extra: &str) -> Client {
    let conninfo = format!("{} {extra}", proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB));
    proxy
        .try_connect(&conninfo)
        .await
        .unwrap_or_else(|e| panic!("connect through the proxy with {extra:?}: {e}"))
}

/// First column of every row of a simple query.
async fn simple_col(client: &Client, sql: &str) -> Vec<String> {
    let msgs = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_owned()),
            _ => None,
        })
        .collect()
}

async fn one(client: &Client, sql: &str) -> String {
    let rows = simple_col(client, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows.into_iter().next().unwrap()
}

/// Runs the probe in transaction `i` of a client: alternately an autocommit simple query, an
/// explicit transaction, and an unnamed extended-protocol statement. Returns (pid, probe).
async fn probe(client: &Client, i: usize) -> (i32, String) {
    match i % 3 {
        0 => {
            let v = one(
                client,
                &format!("SELECT pg_backend_pid() || '#' || ({})", &PROBE[7..]),
            )
            .await;
            let (p, rest) = v.split_once('#').unwrap();
            (p.parse().unwrap(), rest.to_owned())
        }
        1 => {
            let rows = simple_col(
                client,
                &format!("BEGIN; SELECT pg_backend_pid()::text; {PROBE}; COMMIT"),
            )
            .await;
            assert_eq!(rows.len(), 2);
            (rows[0].parse().unwrap(), rows[1].clone())
        }
        _ => {
            let sql = format!("SELECT pg_backend_pid(), ({})", &PROBE[7..]);
            let row = client
                .query_typed_one(&sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            (row.get(0), row.get(1))
        }
    }
}

/// Runs at least `min` probes on `client` (more until it has run on two different servers, at
/// most 300), asserting each equals `want`. Returns the pids it ran on.
async fn probe_many(client: &Client, who: &str, want: &str, min: usize) -> HashSet<i32> {
    let mut pids = HashSet::new();
    let mut i = 0;
    while i < min || (pids.len() < 2 && i < 300) {
        let (pid, got) = probe(client, i).await;
        assert_eq!(got, want, "{who}, transaction {i} on backend {pid}");
        pids.insert(pid);
        i += 1;
        tokio::task::yield_now().await;
    }
    pids
}

/// Runs `sql` (a single-column SELECT) 20 times with the backend pid prepended, asserting
/// each result equals `want`. Returns the pids it ran on.
async fn probe_column(client: &Client, who: &str, sql: &str, want: &str) -> HashSet<i32> {
    let sql = format!("SELECT pg_backend_pid() || ' ' || ({})", &sql[7..]);
    let mut pids = HashSet::new();
    for i in 0..20 {
        let v = one(client, &sql).await;
        let (pid, got) = v.split_once(' ').unwrap();
        assert_eq!(got, want, "{who}, transaction {i}");
        pids.insert(pid.parse().unwrap());
        tokio::task::yield_now().await;
    }
    pids
}

#[tokio::test]
async fn startup_parameters_hold_on_every_server() {
    let clients: Vec<(String, String)> = [
        ("ISO,DMY", "Asia/Tokyo", "postgres"),
        ("SQL,DMY", "Europe/Paris", "postgres_verbose"),
        ("German,DMY", "America/New_York", "sql_standard"),
        ("Postgres,MDY", "Australia/Sydney", "iso_8601"),
        ("SQL,MDY", "Africa/Cairo", "postgres"),
        ("ISO,YMD", "America/Sao_Paulo", "sql_standard"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (ds, tz, is))| {
        (
            format!("params_s{i}"),
            format!(
                "application_name=params-app-{i} options='-c DateStyle={ds} -c TimeZone={tz} \
                 -c IntervalStyle={is} -c search_path=params_s{i}'"
            ),
        )
    })
    .collect();
    let mut ddl = String::new();
    for (i, (schema, _)) in clients.iter().enumerate() {
        ddl.push_str(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; GRANT USAGE ON SCHEMA {schema} TO PUBLIC; \
             DROP TABLE IF EXISTS {schema}.whoami; \
             CREATE TABLE {schema}.whoami AS SELECT {i} AS n; \
             GRANT SELECT ON {schema}.whoami TO PUBLIC; "
        ));
    }
    admin_sql(&ddl);

    let proxy = start_proxy("size = 2", "").await;
    let mut wants = Vec::new();
    for (i, (_, extra)) in clients.iter().enumerate() {
        let d = direct(extra).await;
        let want = one(&d, PROBE).await;
        // The table found through search_path is this client's own.
        assert_eq!(one(&d, "SELECT n FROM whoami").await, i.to_string());
        wants.push(want);
    }
    // Every client's expected values differ from every other's, so a leak would show.
    assert_eq!(wants.iter().collect::<HashSet<_>>().len(), wants.len());

    let conns = join_all(clients.iter().map(|(_, extra)| via(&proxy, extra))).await;
    let runs = conns.iter().enumerate().map(|(i, c)| {
        let want = &wants[i];
        async move {
            let pids = probe_many(c, &format!("client {i}"), want, 20).await;
            assert_eq!(
                one(c, "SELECT n FROM whoami").await,
                i.to_string(),
                "client {i}'s search_path"
            );
            pids
        }
    });
    let pids: Vec<HashSet<i32>> = join_all(runs).await;
    for (i, p) in pids.iter().enumerate() {
        assert_eq!(
            p.len(),
            2,
            "client {i} should have used both servers: {p:?}"
        );
    }
}

#[tokio::test]
async fn a_set_of_a_reported_parameter_follows_its_client_only() {
    let plain = direct("").await;
    let default_tz = one(&plain, "SHOW TimeZone").await;
    let mine = if default_tz == "UTC" {
        "Pacific/Chatham"
    } else {
        "UTC"
    };
    let paris = "options='-c TimeZone=Europe/Paris'";

    let proxy = start_proxy("size = 2", "").await;
    let setter = via(&proxy, "application_name=params-setter").await;
    let bystander = via(&proxy, "application_name=params-bystander").await;
    let parisian = via(&proxy, &format!("application_name=params-paris {paris}")).await;
    setter
        .simple_query(&format!("SET TimeZone = '{mine}'"))
        .await
        .unwrap();

    // The oracle: the same sequence on direct connections.
    let d_setter = direct("application_name=params-setter").await;
    d_setter
        .simple_query(&format!("SET TimeZone = '{mine}'"))
        .await
        .unwrap();
    let want_setter = one(&d_setter, PROBE).await;
    let want_bystander = one(&direct("application_name=params-bystander").await, PROBE).await;
    let want_paris = one(
        &direct(&format!("application_name=params-paris {paris}")).await,
        PROBE,
    )
    .await;
    assert_eq!(want_setter.split('|').nth(2), Some(mine));

    let round = |want_setter: String| {
        let (setter, bystander, parisian) = (&setter, &bystander, &parisian);
        let (want_bystander, want_paris) = (&want_bystander, &want_paris);
        async move {
            let (a, b, c) = tokio::join!(
                probe_many(setter, "the client that ran SET", &want_setter, 20),
                probe_many(bystander, "a bystander", want_bystander, 20),
                probe_many(parisian, "a client with its own TimeZone", want_paris, 20),
            );
            assert_eq!(a.len(), 2, "the setter should have used both servers");
            assert!(b.len() == 2 || c.len() == 2, "the others should have moved");
        }
    };
    round(want_setter.clone()).await;

    // A SET undone by ROLLBACK, and a SET LOCAL, leave the session value in place.
    setter
        .simple_query("BEGIN; SET TimeZone = 'Asia/Kolkata'; ROLLBACK")
        .await
        .unwrap();
    let rows = simple_col(
        &setter,
        "BEGIN; SET LOCAL TimeZone = 'Asia/Kolkata'; SHOW TimeZone; COMMIT",
    )
    .await;
    assert_eq!(rows, ["Asia/Kolkata"]);
    round(want_setter).await;

    // RESET goes back to what this client had at startup (nothing: the server default).
    setter.simple_query("RESET TimeZone").await.unwrap();
    d_setter.simple_query("RESET TimeZone").await.unwrap();
    let want_reset = one(&d_setter, PROBE).await;
    assert_eq!(want_reset.split('|').nth(2), Some(default_tz.as_str()));
    round(want_reset).await;
}

#[tokio::test]
async fn reset_returns_to_the_startup_value() {
    let extra = "application_name=params-reset \
                 options='-c TimeZone=Asia/Tokyo -c DateStyle=SQL,DMY -c search_path=pg_catalog'";
    let steps = [
        "SET TimeZone = 'Europe/Paris'",
        "RESET TimeZone",
        "SET application_name = 'changed'",
        "RESET application_name",
        "SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; SET search_path = public",
        "RESET ALL",
    ];
    let proxy = start_proxy("size = 2", "").await;
    let client = via(&proxy, extra).await;
    let d = direct(extra).await;
    // Another client keeps the servers moving, so resets run on both.
    let other = via(&proxy, "application_name=params-other").await;
    for step in steps {
        client.simple_query(step).await.unwrap();
        d.simple_query(step).await.unwrap();
        let want = one(&d, PROBE).await;
        for i in 0..6 {
            let (pid, got) = probe(&client, i).await;
            assert_eq!(
                got, want,
                "after {step:?}, transaction {i} on backend {pid}"
            );
            let _ = one(&other, "SELECT 1").await;
        }
    }
}

#[tokio::test]
async fn standard_conforming_strings_from_startup_and_set() {
    let proxy = start_proxy("size = 2", "").await;
    let off = "options='-c standard_conforming_strings=off'";
    // In the SQL text: 'a\\b' is four characters with standard strings, three without.
    let sql = r"SELECT current_setting('standard_conforming_strings') || ' ' || length('a\\b')";
    let want_off = one(&direct(off).await, sql).await;
    let want_on = one(&direct("").await, sql).await;
    assert_eq!((want_off.as_str(), want_on.as_str()), ("off 3", "on 4"));

    let legacy = via(&proxy, off).await;
    let standard = via(&proxy, "").await;
    let setter = via(&proxy, "").await;
    setter
        .simple_query("SET standard_conforming_strings = off")
        .await
        .unwrap();
    let (a, b, c) = tokio::join!(
        probe_column(&legacy, "startup off", sql, &want_off),
        probe_column(&standard, "default on", sql, &want_on),
        probe_column(&setter, "SET off", sql, &want_off),
    );
    let all: HashSet<_> = a.iter().chain(&b).chain(&c).collect();
    assert_eq!(all.len(), 2, "both servers were used");
}

#[tokio::test]
async fn client_encoding_from_startup_and_set() {
    let proxy = start_proxy("size = 2", "").await;

    // A SET client_encoding follows its client; others keep UTF8.
    let latin = via(&proxy, "application_name=params-latin1").await;
    let utf = via(&proxy, "application_name=params-utf8").await;
    latin
        .simple_query("SET client_encoding = 'LATIN1'")
        .await
        .unwrap();
    let enc = "SELECT current_setting('client_encoding')";
    let (a, b) = tokio::join!(
        probe_column(&latin, "SET LATIN1", enc, "LATIN1"),
        probe_column(&utf, "default UTF8", enc, "UTF8"),
    );
    assert_eq!(a.union(&b).count(), 2, "both servers were used");

    // psql with client_encoding=LATIN1 at startup gets é as the single byte 0xE9 on every
    // transaction, wherever it lands, while a UTF8 client runs alongside.
    let url = format!(
        "{}?client_encoding=LATIN1",
        proxy.url(SCRAM_USER.0, SCRAM_USER.1, DB)
    );
    let mut args = vec!["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", &url];
    let q = "SELECT current_setting('client_encoding') || ':' || chr(233)";
    for _ in 0..20 {
        args.extend(["-c", q]);
    }
    let psql = pg_tool("psql");
    let busy = async {
        for _ in 0..40 {
            let v = one(
                &utf,
                "SELECT current_setting('client_encoding') || ':' || chr(233)",
            )
            .await;
            assert_eq!(v, "UTF8:\u{e9}");
            tokio::task::yield_now().await;
        }
    };
    let (out, ()) = tokio::join!(run_cmd(&psql, &args), busy);
    assert_success("psql", &out);
    let lines: Vec<&[u8]> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 20);
    for l in lines {
        assert_eq!(l, b"LATIN1:\xe9", "got {:?}", String::from_utf8_lossy(l));
    }
}

#[tokio::test]
async fn settings_in_options_and_parameters_take_the_same_precedence_as_postgres() {
    // The same setting both as a startup parameter and in options: Postgres lets the
    // explicit parameter win. tokio-postgres always sends client_encoding=UTF8 itself.
    let extra = "application_name=from-param options='-c application_name=from-options \
                 -c client_encoding=LATIN1'";
    let sql =
        "SELECT current_setting('application_name') || ' ' || current_setting('client_encoding')";
    let want = one(&direct(extra).await, sql).await;
    let proxy = start_proxy("size = 2", "").await;
    let client = via(&proxy, extra).await;
    for i in 0..5 {
        assert_eq!(one(&client, sql).await, want, "transaction {i}");
    }
}
