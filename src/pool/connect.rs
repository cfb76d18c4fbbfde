//! Opening a server connection: TCP connect, StartupMessage, authentication, and the
//! ParameterStatus / BackendKeyData preamble up to the first ReadyForQuery, all under one
//! deadline. Also the CancelRequest side channel.
//!
//! TLS comes first when the database's `server_tls` asks for it: SSLRequest, then the rustls
//! handshake with the verification `net::tls::Upstream` configured. A server that declines
//! is used in plaintext only under `prefer`; a failed verification fails the connection.
//!
//! Only the IO is here; what to answer to which message is `auth::upstream` (sans-IO,
//! unit-tested without sockets). Not here: retries and backoff (the pool decides), replaying
//! client session state (`client::params`).

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::credential::CredentialSlot;
use crate::auth::upstream::{self, Login, Step, UpstreamAuth, UpstreamError};
use crate::error::{ClientFacing, ErrorKind};
use crate::net::Stream;
use crate::net::framed::{ReadError, read_message};
use crate::net::tls::Upstream;
use crate::protocol::sqlstate::{self, SqlState};

/// Largest message we accept from a server during login. Real ones are tiny; this only bounds
/// what a confused or hostile peer can make us buffer.
const MAX_LOGIN_MESSAGE: usize = 1 << 20;

/// `CancelRequest` code: 1234 << 16 | 5678.
const CANCEL_REQUEST_CODE: i32 = 80_877_102;

/// SSLRequest: length 8, code 1234 << 16 | 5679.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Where and as whom to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Plaintext password, or an md5 hash (`md5` + hex of md5(password || user)) which can
    /// only answer md5 challenges. `None`: only trust works.
    pub password: Option<String>,
    pub database: String,
    /// TLS to this server (`server_tls`).
    pub tls: Upstream,
    /// For an auth_query user: the slot its clients' logins fill with what the proxy logs in
    /// with instead of a password (used instead of `password`). Empty until the first client
    /// of the user logged in.
    pub credential: Option<Arc<CredentialSlot>>,
}

impl ServerTarget {
    /// Whether a login can be attempted: false for an auth_query user no client of which has
    /// logged in yet (pool warm-up waits for one rather than fail over and over).
    pub fn has_credential(&self) -> bool {
        self.credential.as_ref().is_none_or(|s| s.is_filled())
    }

    /// The authentication half of a login as this target.
    fn login(&self) -> Result<Login, ConnectError> {
        let Some(slot) = &self.credential else {
            return Ok(Login::new(&self.user, self.password.as_deref()));
        };
        let credential = slot.get().ok_or_else(|| {
            ConnectError::Auth(format!(
                "as user \"{}\": its password comes from auth_query and no client of this user \
                 has logged in since the pool was created, so there is nothing to log in with yet",
                self.user
            ))
        })?;
        Ok(Login::with_auth(UpstreamAuth::with_credential(
            &self.user,
            &credential,
        )))
    }
}

/// A logged-in server connection, ready for queries.
#[derive(Debug)]
pub struct ServerLogin {
    /// `set_nodelay(true)`: we write whole requests and want them out at once.
    pub stream: Stream,
    /// ParameterStatus pairs, in the order received.
    pub params: Vec<(String, String)>,
    pub process_id: i32,
    /// BackendKeyData secret (4 bytes in protocol 3.0; empty if the server sent none).
    pub secret_key: Vec<u8>,
    /// Anything read past the ReadyForQuery (normally empty).
    pub read_buf: BytesMut,
}

/// Why a server connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP connect, read or write failed; the message names the server address.
    #[error("could not connect to server: {0}")]
    Io(std::io::Error),
    /// The whole login did not finish within the connect timeout.
    #[error("could not connect to server: no answer within pool.connect_timeout_ms")]
    Timeout,
    /// TLS was required and could not be had: the server declined it, or its certificate did
    /// not verify. The message names the server and the setting.
    #[error("could not connect to server: {0}")]
    Tls(String),
    /// The proxy could not log in (no or unusable password, bad SCRAM server signature).
    #[error("the proxy could not log in to the server {0}")]
    Auth(String),
    /// The server refused us with an ErrorResponse (fields as sent).
    #[error("{}", server_message(.fields))]
    Server { fields: Vec<(u8, String)> },
    /// The server broke the protocol during login.
    #[error("protocol violation from the server during login: {0}")]
    Protocol(String),
    /// The server requires an authentication method we do not implement (request code).
    #[error(
        "the proxy could not log in to the server: it requires authentication method {} \
         ({}), which Lagoon does not support",
        .0, auth_method_name(*.0)
    )]
    UnsupportedAuth(i32),
}

impl ConnectError {
    /// The SQLSTATE the server sent, for `Server` errors.
    pub fn sqlstate_str(&self) -> Option<&str> {
        match self {
            ConnectError::Server { fields } => field(fields, b'C'),
            _ => None,
        }
    }
}

impl From<UpstreamError> for ConnectError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Auth(m) => ConnectError::Auth(m),
            UpstreamError::Protocol(m) => ConnectError::Protocol(m),
            UpstreamError::UnsupportedAuth(c) => ConnectError::UnsupportedAuth(c),
            UpstreamError::Server(fields) => ConnectError::Server { fields },
        }
    }
}

impl ClientFacing for ConnectError {
    /// `Server` errors keep the server's own code when it is one we know (see
    /// [`login_sqlstate`]); everything else is `08004`: we could not establish the connection.
    fn sqlstate(&self) -> SqlState {
        match self {
            ConnectError::Server { fields } => field(fields, b'C')
                .and_then(login_sqlstate)
                .unwrap_or(sqlstate::CONNECTION_REJECTED),
            _ => sqlstate::CONNECTION_REJECTED,
        }
    }

    fn kind(&self) -> ErrorKind {
        ErrorKind::Server
    }
}

fn field(fields: &[(u8, String)], code: u8) -> Option<&str> {
    fields
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, v)| v.as_str())
}

fn server_message(fields: &[(u8, String)]) -> String {
    field(fields, b'M')
        .unwrap_or("the server refused the connection")
        .to_owned()
}

/// `SqlState` holds a `&'static str`, so a server's code can only be kept when it is one we
/// know: the codes Postgres sends while accepting a connection. Others map to `08004` (the
/// caller can still relay `fields` verbatim, which is what a client should normally see).
fn login_sqlstate(code: &str) -> Option<SqlState> {
    const KNOWN: &[&str] = &[
        "08P01", "08004", "08006", "0A000", "22023", "28000", "28P01", "3D000", "42501", "42704",
        "53100", "53200", "53300", "55000", "57P01", "57P02", "57P03", "57P04", "XX000",
    ];
    KNOWN.iter().find(|k| **k == code).map(|k| SqlState(k))
}

fn auth_method_name(code: i32) -> &'static str {
    match code {
        2 => "Kerberos V5",
        6 => "SCM credentials",
        7 | 8 => "GSSAPI",
        9 => "SSPI",
        10 => "SASL without SCRAM-SHA-256",
        _ => "unknown",
    }
}

/// TCP connect + StartupMessage (protocol 3.0: user, database, then `startup_params`, e.g.
/// application_name, options, DateStyle) + authentication + ParameterStatus / BackendKeyData
/// until ReadyForQuery, all under `timeout`. NoticeResponses during login are ignored.
pub async fn login(
    target: &ServerTarget,
    startup_params: &[(String, String)],
    timeout: Duration,
) -> Result<ServerLogin, ConnectError> {
    tokio::time::timeout(timeout, login_inner(target, startup_params))
        .await
        .map_err(|_| ConnectError::Timeout)?
}

async fn login_inner(
    target: &ServerTarget,
    startup_params: &[(String, String)],
) -> Result<ServerLogin, ConnectError> {
    let mut login = target.login()?;
    let addr = format!("{}:{}", target.host, target.port);
    let io_err =
        |e: std::io::Error| ConnectError::Io(std::io::Error::new(e.kind(), format!("{addr}: {e}")));
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(io_err)?;
    tcp.set_nodelay(true).map_err(io_err)?;
    let mut stream = negotiate_tls(tcp, &target.tls, &target.host, &addr).await?;
    let mut out = BytesMut::with_capacity(256);
    upstream::startup_message(&target.user, &target.database, startup_params, &mut out)?;
    let mut read_buf = BytesMut::with_capacity(1024);
    loop {
        if !out.is_empty() {
            stream.send(&out).await.map_err(io_err)?;
            out.clear();
        }
        let msg = match read_message(&mut stream, &mut read_buf, MAX_LOGIN_MESSAGE).await {
            Ok(Some(msg)) => msg,
            Ok(None) | Err(ReadError::UnexpectedEof) => {
                return Err(io_err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during login",
                )));
            }
            Err(ReadError::Io(e)) => return Err(io_err(e)),
            Err(ReadError::Frame(e)) => return Err(ConnectError::Protocol(e.to_string())),
        };
        if let Step::Done(done) = login.on_message(&msg, &mut out)? {
            return Ok(ServerLogin {
                stream,
                params: done.params,
                process_id: done.process_id,
                secret_key: done.secret_key,
                read_buf,
            });
        }
    }
}

/// SSLRequest and the TLS handshake, as `target.tls` says. The answer is read one byte at a
/// time, so nothing the server (or someone in between) sent after `S` is read as plaintext:
/// it goes to the TLS layer, which refuses it (the CVE-2021-23222 class).
async fn negotiate_tls(
    mut tcp: TcpStream,
    tls: &Upstream,
    host: &str,
    addr: &str,
) -> Result<Stream, ConnectError> {
    let Some(config) = tls.client_config() else {
        return Ok(Stream::Plain(tcp));
    };
    let mode = tls.mode;
    let io_err =
        |e: std::io::Error| ConnectError::Io(std::io::Error::new(e.kind(), format!("{addr}: {e}")));
    tcp.write_all(&SSL_REQUEST).await.map_err(io_err)?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.map_err(io_err)?;
    match answer[0] {
        b'S' => {}
        b'N' if !tls.requires_tls() => return Ok(Stream::Plain(tcp)),
        b'N' => {
            return Err(ConnectError::Tls(format!(
                "{addr} does not accept TLS connections, and server_tls = \"{mode}\" requires \
                 TLS (is ssl = on on the server?)"
            )));
        }
        // A server too old to know SSLRequest answers with an ErrorResponse.
        b'E' if !tls.requires_tls() => {
            return Err(ConnectError::Protocol(format!(
                "{addr} refused SSLRequest with an error: set server_tls = \"disable\" for it"
            )));
        }
        other => {
            return Err(ConnectError::Protocol(format!(
                "{addr} answered SSLRequest with byte {other:#04x}, not S or N"
            )));
        }
    }
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| {
        ConnectError::Tls(format!(
            "\"{host}\" is not a valid host name for TLS verification (server_tls = \"{mode}\")"
        ))
    })?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::clone(config))
        .connect(name, tcp)
        .await
        .map_err(|e| {
            ConnectError::Tls(format!(
                "TLS handshake with {addr} failed under server_tls = \"{mode}\": {e}"
            ))
        })?;
    Ok(Stream::TlsToServer(Box::new(tls)))
}

/// Sends a CancelRequest (length, code 80877102, pid, key; 16 bytes with protocol 3.0's
/// 4-byte key) on a fresh connection and closes it. Postgres never answers on it. Under a
/// `server_tls` that requires TLS the request goes through TLS (Postgres accepts cancels after
/// SSLRequest); otherwise in plaintext, as libpq before 17 does. No time limit of its own:
/// callers wrap it in one.
pub async fn send_cancel(target: &crate::cancel::CancelTarget) -> std::io::Result<()> {
    let request = cancel_request(target.process_id, &target.secret_key)?;
    let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
    if !target.tls.requires_tls() {
        let mut tcp = tcp;
        tcp.write_all(&request).await?;
        return tcp.shutdown().await;
    }
    let addr = format!("{}:{}", target.host, target.port);
    let mut stream = negotiate_tls(tcp, &target.tls, &target.host, &addr)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    stream.send(&request).await?;
    stream.shutdown().await
}

fn cancel_request(process_id: i32, secret_key: &[u8]) -> std::io::Result<BytesMut> {
    let len = i32::try_from(12 + secret_key.len()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "cancel key too long")
    })?;
    let mut buf = BytesMut::with_capacity(12 + secret_key.len());
    buf.put_i32(len);
    buf.put_i32(CANCEL_REQUEST_CODE);
    buf.put_i32(process_id);
    buf.put_slice(secret_key);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_request_layout() {
        let b = cancel_request(0x0102_0304, &[9, 8, 7, 6]).unwrap();
        assert_eq!(
            &b[..],
            &[0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 1, 2, 3, 4, 9, 8, 7, 6]
        );
        let mut expected = BytesMut::new();
        postgres_protocol::message::frontend::cancel_request(
            0x0102_0304,
            i32::from_be_bytes([9, 8, 7, 6]),
            &mut expected,
        );
        assert_eq!(b, expected);
    }

    #[test]
    fn server_error_keeps_code_and_message() {
        let e = ConnectError::Server {
            fields: vec![
                (b'S', "FATAL".into()),
                (b'C', "3D000".into()),
                (b'M', "database \"nope\" does not exist".into()),
            ],
        };
        assert_eq!(e.sqlstate_str(), Some("3D000"));
        assert_eq!(e.sqlstate().code(), "3D000");
        assert_eq!(e.client_message(), "database \"nope\" does not exist");
        assert_eq!(e.kind(), ErrorKind::Server);
        let odd = ConnectError::Server {
            fields: vec![(b'C', "P0001".into())],
        };
        assert_eq!(odd.sqlstate_str(), Some("P0001"));
        assert_eq!(odd.sqlstate().code(), "08004");
    }

    #[test]
    fn other_errors_are_connection_rejected() {
        for e in [
            ConnectError::Timeout,
            ConnectError::Auth("as user \"app\": no password".into()),
            ConnectError::UnsupportedAuth(7),
            ConnectError::Io(std::io::Error::other("refused")),
        ] {
            assert_eq!(e.sqlstate().code(), "08004", "{e}");
            assert_eq!(e.sqlstate_str(), None);
        }
        assert!(
            ConnectError::Timeout
                .to_string()
                .contains("pool.connect_timeout_ms")
        );
        assert!(
            ConnectError::UnsupportedAuth(7)
                .to_string()
                .contains("GSSAPI")
        );
    }

    use crate::auth::{self, Method, Secret};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    fn be_msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend((body.len() as i32 + 4).to_be_bytes());
        m.extend(body);
        m
    }

    /// A fake Postgres: reads the startup packet, runs *our* client authentication as the
    /// server side, then sends the preamble plus `extra` bytes. Returns the startup body.
    async fn fake_server(
        method: Method,
        secret: Option<Secret>,
        extra: &'static [u8],
    ) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let len = sock.read_i32().await.unwrap() as usize;
            let mut startup = vec![0; len - 4];
            sock.read_exact(&mut startup).await.unwrap();
            let mut buf = BytesMut::new();
            let r = auth::authenticate_client(
                &mut sock,
                &mut buf,
                "app",
                method,
                secret.as_ref(),
                &[3; 32],
                None,
            )
            .await;
            let mut out = Vec::new();
            match r {
                Ok(_) => {
                    out.extend(be_msg(b'S', b"server_version\x0015.4\0"));
                    out.extend(be_msg(b'K', &[0, 0, 0, 77, 5, 6, 7, 8]));
                    out.extend(be_msg(b'Z', b"I"));
                    out.extend(extra);
                }
                Err(_) => out.extend(be_msg(
                    b'E',
                    b"SFATAL\0C28P01\0Mpassword authentication failed for user \"app\"\0\0",
                )),
            }
            sock.write_all(&out).await.unwrap();
            startup
        });
        (port, task)
    }

    fn target(port: u16, password: Option<&str>) -> ServerTarget {
        ServerTarget {
            host: "127.0.0.1".into(),
            port,
            user: "app".into(),
            password: password.map(Into::into),
            database: "appdb".into(),
            tls: Upstream::disabled(),
            credential: None,
        }
    }

    #[tokio::test]
    async fn login_with_scram_and_md5_against_our_own_server_side() {
        let secret = Some(Secret::Plain("pw".into()));
        for method in [Method::ScramSha256, Method::Md5, Method::Trust] {
            let (port, server) = fake_server(method, secret.clone(), b"Xleft").await;
            let params = [("application_name".to_owned(), "lagoon-test".to_owned())];
            let login = login(&target(port, Some("pw")), &params, Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(login.params, [("server_version".into(), "15.4".into())]);
            assert_eq!(login.process_id, 77);
            assert_eq!(login.secret_key, [5, 6, 7, 8]);
            assert_eq!(&login.read_buf[..], b"Xleft");
            assert!(login.stream.tcp().nodelay().unwrap());
            let startup = server.await.unwrap();
            assert_eq!(
                &startup[4..],
                b"user\0app\0database\0appdb\0application_name\0lagoon-test\0\0"
            );
        }
    }

    #[tokio::test]
    async fn wrong_password_is_the_servers_error() {
        let (port, _server) =
            fake_server(Method::ScramSha256, Some(Secret::Plain("pw".into())), b"").await;
        let e = login(&target(port, Some("nope")), &[], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.sqlstate_str(), Some("28P01"), "{e:?}");
        assert_eq!(e.sqlstate().code(), "28P01");
        assert_eq!(
            e.client_message(),
            "password authentication failed for user \"app\""
        );
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(sock);
        });
        let e = login(&target(port, None), &[], Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(e, ConnectError::Timeout), "{e:?}");
    }

    #[tokio::test]
    async fn server_hanging_up_is_io_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            drop(sock);
        });
        let e = login(&target(port, None), &[], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, ConnectError::Io(_)), "{e:?}");
    }

    #[tokio::test]
    async fn send_cancel_writes_the_request() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            sock.read_to_end(&mut got).await.unwrap();
            got
        });
        send_cancel(&crate::cancel::CancelTarget {
            host: "127.0.0.1".into(),
            port,
            process_id: 42,
            secret_key: vec![1, 2, 3, 4],
            tls: Upstream::disabled(),
        })
        .await
        .unwrap();
        let got = server.await.unwrap();
        assert_eq!(got, &cancel_request(42, &[1, 2, 3, 4]).unwrap()[..]);
    }

    #[tokio::test]
    async fn refused_connection_is_io_error() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let target = ServerTarget {
            host: "127.0.0.1".into(),
            port,
            user: "u".into(),
            password: None,
            database: "d".into(),
            tls: Upstream::disabled(),
            credential: None,
        };
        let e = login(&target, &[], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, ConnectError::Io(_)), "{e:?}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}
