//! Raw startup-phase helpers for the handshake and auth tests, which must see the exact bytes:
//! hand-built startup packets, and a reader of server messages where every read is bounded by
//! a timeout, so a proxy that hangs fails the test instead of hanging it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single read may take before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Protocol 3.0 as sent in a StartupMessage.
pub const PROTOCOL_3_0: i32 = 196_608;
/// Protocol 3.2.
pub const PROTOCOL_3_2: i32 = 196_610;
pub const SSL_REQUEST: i32 = 80_877_103;
pub const GSSENC_REQUEST: i32 = 80_877_104;

/// A startup-phase packet: length, code, body.
pub fn packet(code: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&((body.len() + 8) as i32).to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A StartupMessage with protocol `version` and `params` (name, value) in order.
pub fn startup_with_version(version: i32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    packet(version, &body)
}

/// A protocol 3.0 StartupMessage.
pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    startup_with_version(PROTOCOL_3_0, params)
}

/// A regular (typed) frontend message.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A simple Query message.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// One server message: its type byte and body (after the length).
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// The `Int32` at `offset` in the body.
    pub fn i32_at(&self, offset: usize) -> i32 {
        let b = &self.body[offset..offset + 4];
        i32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The NUL-separated pieces of the body from `offset` (a trailing empty piece follows the
    /// last terminator).
    pub fn cstrings(&self, offset: usize) -> Vec<String> {
        self.body[offset..]
            .split(|&b| b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    /// (name, value) of a ParameterStatus.
    pub fn parameter_status(&self) -> (String, String) {
        assert_eq!(self.tag, b'S', "not a ParameterStatus: {self:?}");
        let s = self.cstrings(0);
        (s[0].clone(), s[1].clone())
    }

    /// Fields of an ErrorResponse / NoticeResponse, by field code.
    pub fn fields(&self) -> Vec<(u8, String)> {
        let mut out = Vec::new();
        let mut rest = &self.body[..];
        while let Some((&code, tail)) = rest.split_first() {
            if code == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            out.push((code, String::from_utf8_lossy(&tail[..end]).into_owned()));
            rest = tail.get(end + 1..).unwrap_or_default();
        }
        out
    }

    /// One field of an ErrorResponse.
    pub fn field(&self, code: u8) -> Option<String> {
        self.fields()
            .into_iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v)
    }

    /// SQLSTATE of an ErrorResponse.
    pub fn sqlstate(&self) -> Option<String> {
        self.field(b'C')
    }
}

/// A raw client connection.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects to 127.0.0.1:`port`.
    pub async fn connect_port(port: u16) -> Raw {
        Raw::connect(SocketAddr::from(([127, 0, 0, 1], port))).await
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to peer");
    }

    /// Reads more bytes into the buffer; returns how many (0 = end of stream).
    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no answer within {READ_TIMEOUT:?} (hang)"))
            .unwrap_or(0); // a reset counts as closed
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads exactly one byte (the answer to SSLRequest / GSSENCRequest).
    pub async fn read_byte(&mut self) -> u8 {
        while self.buf.is_empty() {
            assert!(
                self.fill().await > 0,
                "connection closed, expected one byte"
            );
        }
        self.buf.remove(0)
    }

    /// Reads one whole server message; `None` when the connection ends cleanly first.
    pub async fn try_read_msg(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                assert!(
                    (4..=1 << 24).contains(&len),
                    "bad message length {len} from the peer (type {:?})",
                    char::from(self.buf[0])
                );
                let total = 1 + len as usize;
                if self.buf.len() >= total {
                    let body = self.buf[5..total].to_vec();
                    let tag = self.buf[0];
                    self.buf.drain(..total);
                    return Some(Msg { tag, body });
                }
            }
            if self.fill().await == 0 {
                assert!(
                    self.buf.is_empty(),
                    "connection closed mid-message: {:?}",
                    self.buf
                );
                return None;
            }
        }
    }

    pub async fn read_msg(&mut self) -> Msg {
        self.try_read_msg()
            .await
            .expect("connection closed, expected a message")
    }

    /// Reads messages up to and including the first one tagged `until` (or an ErrorResponse).
    pub async fn read_until(&mut self, until: u8) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self.read_msg().await;
            let stop = m.tag == until || m.tag == b'E';
            out.push(m);
            if stop {
                return out;
            }
        }
    }

    /// Asserts the peer closes the connection within the read timeout; returns any messages
    /// that came first.
    pub async fn expect_closed(&mut self) -> Vec<Msg> {
        let mut rest = Vec::new();
        while let Some(m) = self.try_read_msg().await {
            rest.push(m);
            assert!(rest.len() < 100, "connection not closed: {rest:?}");
        }
        rest
    }

    /// Reads the next message, which must be an ErrorResponse, then the end of the
    /// connection; returns the error.
    pub async fn expect_fatal(&mut self) -> Msg {
        let m = self.read_msg().await;
        assert_eq!(
            m.tag,
            b'E',
            "expected an ErrorResponse, got {:?}: {:?}",
            char::from(m.tag),
            String::from_utf8_lossy(&m.body)
        );
        let rest = self.expect_closed().await;
        assert!(rest.is_empty(), "messages after the error: {rest:?}");
        m
    }

    /// Runs one simple query and returns the first column of each row (text).
    pub async fn simple_query(&mut self, sql: &str) -> Vec<Option<String>> {
        self.send(&query(sql)).await;
        let msgs = self.read_until(b'Z').await;
        let mut rows = Vec::new();
        for m in &msgs {
            match m.tag {
                b'E' => panic!("query {sql:?} failed: {:?}", m.fields()),
                b'D' => {
                    let len = m.i32_at(2);
                    rows.push((len >= 0).then(|| {
                        String::from_utf8_lossy(&m.body[6..6 + len as usize]).into_owned()
                    }));
                }
                _ => {}
            }
        }
        rows
    }
}

/// What a login (after the startup packet) produced, up to ReadyForQuery.
#[derive(Debug)]
pub struct Login {
    /// Every message received, in order, up to and including ReadyForQuery.
    pub msgs: Vec<Msg>,
}

impl Login {
    /// ParameterStatus pairs in the order received.
    pub fn params(&self) -> Vec<(String, String)> {
        self.msgs
            .iter()
            .filter(|m| m.tag == b'S')
            .map(Msg::parameter_status)
            .collect()
    }

    pub fn param(&self, name: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The type bytes of the messages, as a string ("RSSSKZ").
    pub fn tags(&self) -> String {
        self.msgs.iter().map(|m| char::from(m.tag)).collect()
    }
}

/// Sends `startup` on `raw` and reads up to ReadyForQuery, for a login that needs no password.
/// Panics on an ErrorResponse or an authentication request other than AuthenticationOk.
pub async fn login_no_password(raw: &mut Raw, startup: &[u8]) -> Login {
    raw.send(startup).await;
    let msgs = raw.read_until(b'Z').await;
    for m in &msgs {
        match m.tag {
            b'E' => panic!("login failed: {:?}", m.fields()),
            b'R' => assert_eq!(m.i32_at(0), 0, "asked for a password: {m:?}"),
            _ => {}
        }
    }
    Login { msgs }
}
