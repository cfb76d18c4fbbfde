//! TLS (issue 6): clients to Lagoon (SSLRequest and direct, TLS 1.2 and 1.3, verify-full,
//! plaintext refused under `require`, client certificates, certificate reload) and Lagoon to
//! an `ssl = on` Postgres (`server_tls`), with psql, pgbench and tokio-postgres.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::config::{SslMode, SslNegotiation};
use tokio_postgres::{Client, Config};

use crate::certs::{Pki, path_str, pki};
use crate::harness::*;

/// The test config with `[tls]` from `pki` in `mode`, plus `more` (TOML appended).
fn config(pki: &Pki, mode: &str, more: &str) -> String {
    format!("{}\n{}{more}", base_config("", ""), pki.tls_section(mode))
}

/// tokio-postgres through the proxy over TLS with `tls` (verify-full against the CA in it:
/// host `localhost` on 127.0.0.1), as the SCRAM test user.
async fn tls_connect(
    proxy: &TestProxy,
    tls: rustls::ClientConfig,
    direct: bool,
) -> Result<Client, tokio_postgres::Error> {
    let mut config = Config::new();
    config
        .host("localhost")
        .hostaddr(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        .port(proxy.addr.port())
        .user(SCRAM_USER.0)
        .password(SCRAM_USER.1)
        .dbname(DB)
        .ssl_mode(SslMode::Require);
    if direct {
        config.ssl_negotiation(SslNegotiation::Direct);
    }
    let (client, conn) = config
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A libpq conninfo for the proxy as the SCRAM test user, verify-full against `ca`.
fn libpq_verify_full(proxy: &TestProxy, ca: &std::path::Path) -> String {
    format!(
        "host=localhost hostaddr=127.0.0.1 port={} user={} password={} dbname={DB} \
         sslmode=verify-full sslrootcert={}",
        proxy.addr.port(),
        SCRAM_USER.0,
        SCRAM_USER.1,
        path_str(ca)
    )
}

/// The error a login through `proxy` as the SCRAM test user must end with: (SQLSTATE, message).
async fn refused_login(proxy: &TestProxy, why: &str) -> (Option<String>, String) {
    let e = proxy
        .try_connect(&proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB))
        .await
        .map(drop)
        .expect_err(why);
    (sqlstate(&e), error_message(&e))
}

async fn one(client: &Client, sql: &str) -> String {
    let rows = client.simple_query(sql).await.expect(sql);
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn psql_and_tokio_postgres_with_verify_full_over_tls_1_2_and_1_3() {
    let pki = pki();
    let proxy = start_proxy_with(&config(pki, "require", "")).await;

    let out = run_cmd(
        &pg_tool("psql"),
        &[
            &libpq_verify_full(&proxy, &pki.ca()),
            "-Atc",
            "\\conninfo",
            "-c",
            "SELECT 40 + 2",
        ],
    )
    .await;
    assert_success("psql verify-full", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("SSL connection (protocol: TLSv1.3"),
        "{stdout}"
    );
    assert!(stdout.contains("42"), "{stdout}");

    let client = tls_connect(&proxy, pki.client_config(), false)
        .await
        .expect("TLS 1.3");
    assert_eq!(one(&client, "SELECT 'over tls'").await, "over tls");
    // The proxy says which TLS each client uses (SHOW CLIENTS' tls column).
    let tls: Vec<String> = proxy
        .shared
        .client_registry
        .all()
        .iter()
        .map(|e| e.tls.clone())
        .collect();
    assert!(tls.iter().any(|t| t.starts_with("TLSv1.3/")), "{tls:?}");

    // TLS 1.2 only.
    let mut v12 = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .expect("tls 1.2")
    .with_root_certificates(pki.roots())
    .with_no_client_auth();
    v12.alpn_protocols = vec![b"postgresql".to_vec()];
    let client12 = tls_connect(&proxy, v12, false).await.expect("TLS 1.2");
    assert_eq!(one(&client12, "SELECT 'tls 1.2'").await, "tls 1.2");
    assert!(
        proxy
            .shared
            .client_registry
            .all()
            .iter()
            .any(|e| e.tls.starts_with("TLSv1.2/")),
        "a TLS 1.2 client is listed as such"
    );
}

#[tokio::test]
async fn plaintext_is_refused_under_require_and_served_under_allow() {
    let pki = pki();
    let proxy = start_proxy_with(&config(pki, "require", "")).await;
    let e = proxy
        .try_connect(&format!(
            "{} sslmode=disable",
            proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)
        ))
        .await
        .map(drop)
        .expect_err("plaintext must be refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "{e}");
    assert!(error_message(&e).contains("tls.mode = \"require\""), "{e}");
    // psql's sslmode=prefer (its default) gets TLS, so it works.
    let out = run_cmd(
        &pg_tool("psql"),
        &[
            &proxy.url(SCRAM_USER.0, SCRAM_USER.1, DB),
            "-Atc",
            "SELECT 1",
        ],
    )
    .await;
    assert_success("psql sslmode=prefer under require", &out);

    let allow = start_proxy_with(&config(pki, "allow", "")).await;
    let plain = allow.connect().await;
    assert_eq!(one(&plain, "SELECT 'plain'").await, "plain");
    let tls = tls_connect(&allow, pki.client_config(), false)
        .await
        .expect("tls under allow");
    assert_eq!(one(&tls, "SELECT 'tls'").await, "tls");
}

#[tokio::test]
async fn a_wrong_ca_fails_verification() {
    let other = Pki::new("wrong-ca");
    let proxy = start_proxy_with(&config(pki(), "require", "")).await;
    let out = run_cmd(
        &pg_tool("psql"),
        &[&libpq_verify_full(&proxy, &other.ca()), "-Atc", "SELECT 1"],
    )
    .await;
    assert!(
        !out.status.success(),
        "psql must refuse a certificate from another CA"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
    let e = tls_connect(&proxy, other.client_config(), false)
        .await
        .map(drop)
        .expect_err("tokio-postgres must refuse it too");
    assert!(format!("{e:?}").contains("UnknownIssuer"), "{e:?}");
}

#[tokio::test]
async fn bytes_pipelined_after_sslrequest_are_refused() {
    let proxy = start_proxy_with(&config(pki(), "allow", "")).await;
    let mut sock = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    // SSLRequest and, in the same write, a StartupMessage that a man in the middle would
    // have injected to be read as if it came through TLS.
    let mut bytes = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let mut startup = Vec::new();
    startup.extend_from_slice(&196608i32.to_be_bytes());
    startup.extend_from_slice(b"user\0lagoon_scram\0database\0lagoon_test\0\0");
    bytes.extend_from_slice(&((startup.len() + 4) as i32).to_be_bytes());
    bytes.extend_from_slice(&startup);
    sock.write_all(&bytes).await.expect("write");
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut reply))
        .await
        .expect("the proxy closes the connection")
        .expect("read");
    assert_eq!(
        reply.first(),
        Some(&b'E'),
        "an ErrorResponse, not 'S': {reply:?}"
    );
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.contains("08P01") && text.contains("SSLRequest"),
        "{text}"
    );
}

#[tokio::test]
async fn direct_tls_needs_alpn_postgresql() {
    let pki = pki();
    let proxy = start_proxy_with(&config(pki, "require", "")).await;
    let client = tls_connect(&proxy, pki.client_config(), true)
        .await
        .expect("direct TLS");
    assert_eq!(one(&client, "SELECT 'direct'").await, "direct");

    let mut no_alpn = pki.client_config();
    no_alpn.alpn_protocols.clear();
    let e = tls_connect(&proxy, no_alpn, true)
        .await
        .map(drop)
        .expect_err("direct TLS without ALPN must be refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("08P01"), "{e}");
    assert!(error_message(&e).contains("ALPN"), "{e}");
    // Another application protocol fails the handshake itself.
    let mut http = pki.client_config();
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    let e = tls_connect(&proxy, http, true)
        .await
        .map(drop)
        .expect_err("another ALPN protocol must be refused");
    assert!(
        e.as_db_error().is_none() && format!("{e:?}").contains("NoApplicationProtocol"),
        "refused by the TLS handshake itself, not after it: {e:?}"
    );
}

#[tokio::test]
async fn pgbench_over_tls() {
    let proxy = start_proxy_with(&config(pki(), "require", "")).await;
    let script = std::env::temp_dir().join(format!("lagoon-tls-bench-{}.sql", std::process::id()));
    std::fs::write(&script, "SELECT 1;\n").expect("script");
    let url = format!(
        "{}?sslmode=require",
        proxy.url(SCRAM_USER.0, SCRAM_USER.1, DB)
    );
    let out = run_cmd(
        &pg_tool("pgbench"),
        &[
            "-n",
            "-c",
            "4",
            "-j",
            "2",
            "-t",
            "50",
            "-M",
            "extended",
            "-f",
            &path_str(&script),
            &url,
        ],
    )
    .await;
    let _ = std::fs::remove_file(&script);
    check_pgbench("pgbench over TLS", &out, 200);
}

#[tokio::test]
async fn client_certificates_are_checked_against_the_ca() {
    let pki = pki();
    let more = format!(
        "client_cert = \"require\"\nca = {:?}\n",
        path_str(&pki.ca())
    );
    let proxy = start_proxy_with(&config(pki, "require", &more)).await;
    let base = libpq_verify_full(&proxy, &pki.ca());
    let without = run_cmd(&pg_tool("psql"), &[&base, "-Atc", "SELECT 1"]).await;
    assert!(
        !without.status.success(),
        "no client certificate must be refused"
    );
    let with = format!(
        "{base} sslcert={} sslkey={}",
        path_str(&pki.path("client.crt")),
        path_str(&pki.path("client.key"))
    );
    let out = run_cmd(&pg_tool("psql"), &[&with, "-Atc", "SELECT 'cert ok'"]).await;
    assert_success("psql with a client certificate", &out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("cert ok"));
    // A certificate from another CA is refused as well.
    let other = Pki::new("client-other");
    let foreign = format!(
        "{base} sslcert={} sslkey={}",
        path_str(&other.path("client.crt")),
        path_str(&other.path("client.key"))
    );
    let out = run_cmd(&pg_tool("psql"), &[&foreign, "-Atc", "SELECT 1"]).await;
    assert!(
        !out.status.success(),
        "a client certificate from another CA must be refused"
    );
}

/// Lagoon to Postgres: the shared cluster runs `ssl = on` with the test CA's certificate.
#[tokio::test]
async fn server_tls_verify_full_to_an_ssl_postgres() {
    let pki = pki();
    let ssl_in_use = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let db_tls = |mode: &str, ca: &std::path::Path| {
        format!(
            "server_tls = \"{mode}\"\nserver_tls_ca = {:?}\n",
            path_str(ca)
        )
    };
    // base_config ends with the [[databases]] entry, so these keys land in it.
    let verified = start_proxy_with(&format!(
        "{}{}",
        base_config("", ""),
        db_tls("verify-full", &pki.ca())
    ))
    .await;
    let client = verified.connect().await;
    assert_eq!(one(&client, ssl_in_use).await, "t");
    // The default (prefer) encrypts too, against an ssl = on server.
    let default = start_proxy("", "").await;
    assert_eq!(one(&default.connect().await, ssl_in_use).await, "t");
    let plain = start_proxy_with(&format!(
        "{}server_tls = \"disable\"\n",
        base_config("", "")
    ))
    .await;
    assert_eq!(one(&plain.connect().await, ssl_in_use).await, "f");

    // A CA that did not sign the server's certificate: no connection, never plaintext.
    let other = Pki::new("server-other");
    let wrong = start_proxy_with(&format!(
        "{}{}",
        base_config("", ""),
        db_tls("verify-ca", &other.ca())
    ))
    .await;
    let (code, msg) = refused_login(&wrong, "wrong CA").await;
    assert_eq!(code.as_deref(), Some("08004"), "{msg}");
    assert!(
        msg.contains("server_tls = \"verify-ca\"") && msg.contains("UnknownIssuer"),
        "{msg}"
    );
}

#[tokio::test]
async fn server_tls_require_refuses_a_server_without_tls() {
    // The routing cluster runs without ssl; its config ends with the [[databases]] entry.
    let text = format!("{}server_tls = \"require\"\n", routing_config("", &[]));
    let proxy = start_proxy_with(&text).await;
    let (_, msg) = refused_login(&proxy, "no TLS").await;
    assert!(
        msg.contains("does not accept TLS") && msg.contains("server_tls = \"require\""),
        "{msg}"
    );
}

#[tokio::test]
async fn certificates_reload_while_a_tls_client_stays_connected() {
    let first = pki();
    let second = Pki::new("rotated");
    let dir = std::env::temp_dir().join(format!("lagoon-tls-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert, key) = (dir.join("live.crt"), dir.join("live.key"));
    std::fs::copy(first.path("server.crt"), &cert).expect("cert");
    std::fs::copy(first.path("server.key"), &key).expect("key");
    let text = format!(
        "{}\n[tls]\nmode = \"require\"\ncert = {:?}\nkey = {:?}\n",
        base_config("", ""),
        path_str(&cert),
        path_str(&key)
    );
    let file = dir.join("lagoon.toml");
    std::fs::write(&file, &text).expect("config");
    let proxy = start_proxy_with(&text).await;
    proxy.shared.config_path.set(file.clone()).expect("path");

    let stays = tls_connect(&proxy, first.client_config(), false)
        .await
        .expect("first cert");
    assert_eq!(one(&stays, "SELECT 'before'").await, "before");

    // Rotate the files in place; the config text does not change.
    std::fs::copy(second.path("server.crt"), &cert).expect("cert");
    std::fs::copy(second.path("server.key"), &key).expect("key");
    let report = lagoon::config::reload::reload(&proxy.shared)
        .await
        .expect("reload");
    assert!(
        report
            .applied
            .iter()
            .any(|l| l.contains("certificate files changed")),
        "{report:?}"
    );
    // The connected client keeps its session; new ones get the new certificate.
    assert_eq!(one(&stays, "SELECT 'after'").await, "after");
    assert!(
        tls_connect(&proxy, first.client_config(), false)
            .await
            .is_err()
    );
    let fresh = tls_connect(&proxy, second.client_config(), false)
        .await
        .expect("new cert");
    assert_eq!(one(&fresh, "SELECT 'new'").await, "new");
    let _ = std::fs::remove_dir_all(dir);
}

/// SCRAM-SHA-256-PLUS: over TLS libpq's `channel_binding=require` works (the proxy offers PLUS
/// and checks the binding to its own certificate); in plaintext it cannot.
#[tokio::test]
async fn channel_binding_require_with_psql_and_tokio_postgres() {
    let pki = pki();
    let proxy = start_proxy_with(&config(pki, "allow", "")).await;
    let conninfo = format!(
        "{} channel_binding=require",
        libpq_verify_full(&proxy, &pki.ca())
    );
    let out = run_cmd(&pg_tool("psql"), &[&conninfo, "-Atc", "SELECT 'bound'"]).await;
    assert_success("psql channel_binding=require", &out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("bound"));

    let plain = format!(
        "{} sslmode=disable channel_binding=require",
        proxy.conninfo(SCRAM_USER.0, SCRAM_USER.1, DB)
    );
    let out = run_cmd(&pg_tool("psql"), &[&plain, "-Atc", "SELECT 1"]).await;
    assert!(!out.status.success(), "no channel binding without TLS");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("channel binding"), "{stderr}");

    let mut config = Config::new();
    config
        .host("localhost")
        .hostaddr(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        .port(proxy.addr.port())
        .user(SCRAM_USER.0)
        .password(SCRAM_USER.1)
        .dbname(DB)
        .ssl_mode(SslMode::Require)
        .channel_binding(tokio_postgres::config::ChannelBinding::Require);
    let (client, conn) = config
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(
            pki.client_config(),
        ))
        .await
        .expect("tokio-postgres with channel binding required");
    tokio::spawn(conn);
    assert_eq!(one(&client, "SELECT 'plus'").await, "plus");
}

/// A TLS client reading a large result slowly: the proxy's socket to it fills while the last
/// records (ReadyForQuery among them) are queued inside rustls. They must still be flushed
/// before the server is given back (found in review: the client waited forever).
#[tokio::test]
async fn a_slow_tls_reader_still_gets_its_ready_for_query() {
    use tokio::io::AsyncRead;
    let pki = pki();
    let proxy = start_proxy_small_sndbuf(&config(pki, "require", ""), 16 * 1024).await;

    /// Reads until a ReadyForQuery, sleeping between reads when `slow`; returns bytes read.
    async fn until_ready(tls: &mut (impl AsyncRead + Unpin), slow: bool) -> usize {
        let (mut total, mut buf, mut chunk) = (0, Vec::new(), vec![0u8; 16 * 1024]);
        loop {
            let mut pos = 0;
            while buf.len() >= pos + 5 {
                let len = i32::from_be_bytes(buf[pos + 1..pos + 5].try_into().unwrap()) as usize;
                if buf.len() < pos + 1 + len {
                    break;
                }
                assert_ne!(buf[pos], b'E', "{}", String::from_utf8_lossy(&buf[pos..]));
                if buf[pos] == b'Z' {
                    return total;
                }
                pos += 1 + len;
            }
            buf.drain(..pos);
            if slow {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let n = tls.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the proxy closed the connection");
            total += n;
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    for round in 0..6 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        let mut sock = socket.connect(proxy.addr).await.expect("connect");
        sock.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .expect("SSLRequest");
        let mut s = [0u8; 1];
        sock.read_exact(&mut s).await.expect("answer");
        assert_eq!(s[0], b'S');
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(pki.client_config()));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut tls = connector.connect(name, sock).await.expect("handshake");
        let mut startup = 196608i32.to_be_bytes().to_vec();
        startup.extend_from_slice(format!("user\0{}\0database\0{DB}\0\0", TRUST_USER.0).as_bytes());
        let mut msg = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
        msg.extend_from_slice(&startup);
        tls.write_all(&msg).await.expect("startup");
        tls.flush().await.expect("flush");
        tokio::time::timeout(Duration::from_secs(10), until_ready(&mut tls, false))
            .await
            .expect("login");

        let sql = format!(
            "SELECT repeat('x', 1000) FROM generate_series(1, {})\0",
            300 + round * 37
        );
        let mut q = vec![b'Q'];
        q.extend_from_slice(&((sql.len() + 4) as i32).to_be_bytes());
        q.extend_from_slice(sql.as_bytes());
        tls.write_all(&q).await.expect("query");
        tls.flush().await.expect("flush");
        // Not reading for a while fills the proxy's socket to us.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got = tokio::time::timeout(Duration::from_secs(15), until_ready(&mut tls, true))
            .await
            .unwrap_or_else(|_| panic!("round {round}: ReadyForQuery never arrived"));
        assert!(
            got > 300_000,
            "round {round}: the whole result came ({got} bytes)"
        );
    }
}

/// Host-name checking under `server_tls`: a second Lagoon whose certificate names only
/// `db.invalid` stands in for the server (the shared cluster's certificate names 127.0.0.1).
/// `verify-full` to 127.0.0.1 must refuse it; `verify-ca` accepts it (same CA).
#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let front_pki = Pki::with_server_name("name-only", "db.invalid", false);
    let front = start_proxy_with(&config(&front_pki, "require", "")).await;
    let chained = |mode: &str| {
        let mut text = base_config("", "");
        let c = cluster();
        let direct = c.url(&c.primary, DB);
        let via = format!("postgres://127.0.0.1:{}/{DB}", front.addr.port());
        assert!(text.contains(&direct));
        text = text.replace(&direct, &via);
        format!(
            "{text}server_tls = \"{mode}\"\nserver_tls_ca = {:?}\n",
            path_str(&front_pki.ca())
        )
    };
    let full = start_proxy_with(&chained("verify-full")).await;
    let (_, msg) = refused_login(&full, "the certificate does not name 127.0.0.1").await;
    assert!(
        msg.contains("not valid for name") && msg.contains("verify-full"),
        "{msg}"
    );

    let ca_only = start_proxy_with(&chained("verify-ca")).await;
    let client = ca_only.connect().await;
    assert_eq!(
        one(&client, "SELECT 'through two proxies'").await,
        "through two proxies"
    );
}
