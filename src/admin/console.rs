//! One admin console session, from the post-login burst to the end: frames the client's
//! messages (`server.max_message_bytes`; a bad frame is FATAL `08P01`), runs the commands of
//! each simple Query in order, refuses the extended protocol (`0A000`, then swallows messages
//! until Sync, as Postgres does after an error), ends on Terminate, on `shutdown.drain`
//! between commands and on `shutdown.hard` (FATAL `57P01`).
//!
//! It never opens a server connection and never panics on input. What each command does is
//! [`super::commands`]'; what the text means is [`super::parser`]'s.

use std::sync::Arc;

use crate::net::Stream;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::commands::{self, Ctx, Failure};
use super::parser;
use crate::app::Shared;
use crate::client::registry::{ClientEntry, ClientState};
use crate::protocol::codec;
use crate::protocol::messages::encode::{self, Severity};
use crate::protocol::messages::parse::cstr;
use crate::protocol::sqlstate::{self, SqlState};

/// The `server_version` the console reports: psql reads the leading number to decide which
/// catalog queries it may send, so it must look like a Postgres version.
pub fn server_version() -> String {
    format!("15.0 (Lagoon {})", env!("CARGO_PKG_VERSION"))
}

/// What an admin client is told after AuthenticationOk: the ParameterStatus a Postgres
/// server would send (values describe the console itself: UTF-8 text, ISO dates, UTC),
/// BackendKeyData and ReadyForQuery.
pub fn login_burst(out: &mut BytesMut, user: &str, application_name: &str, key: (i32, i32)) {
    for (name, value) in [
        ("server_version", server_version().as_str()),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("IntervalStyle", "postgres"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("TimeZone", "UTC"),
        ("is_superuser", "off"),
        ("session_authorization", user),
        ("application_name", application_name),
    ] {
        encode::parameter_status(out, name, value);
    }
    encode::backend_key_data(out, key.0, key.1);
    encode::ready_for_query(out, b'I');
}

/// What one client message asks of the session.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Run this Query text, then ReadyForQuery.
    Query(String),
    /// The answer (possibly nothing) is already in the output buffer.
    Answered,
    /// Terminate: end quietly.
    Terminate,
    /// End with this FATAL error.
    Fatal(SqlState, String),
}

/// The protocol state between messages: whether an extended-protocol refusal is being
/// finished (everything up to Sync is dropped). Sans-IO.
#[derive(Debug, Default)]
struct Protocol {
    skipping: bool,
}

const EXTENDED_REFUSED: &str = "the admin console speaks only the simple query protocol";

impl Protocol {
    fn step(&mut self, tag: u8, body: &[u8], out: &mut BytesMut) -> Step {
        match tag {
            b'X' => return Step::Terminate,
            b'S' => {
                self.skipping = false;
                encode::ready_for_query(out, b'I');
                return Step::Answered;
            }
            _ if self.skipping => return Step::Answered,
            _ => {}
        }
        match tag {
            b'Q' => match cstr(body) {
                Some((text, _)) => Step::Query(String::from_utf8_lossy(text).into_owned()),
                None => Step::Fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "Query message without its terminating NUL".to_owned(),
                ),
            },
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H' => {
                encode::error(
                    out,
                    Severity::Error,
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    EXTENDED_REFUSED,
                );
                self.skipping = true;
                Step::Answered
            }
            b'F' => {
                encode::error(
                    out,
                    Severity::Error,
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    EXTENDED_REFUSED,
                );
                encode::ready_for_query(out, b'I');
                Step::Answered
            }
            // COPY messages outside COPY: ignored, as Postgres does.
            b'd' | b'c' | b'f' => Step::Answered,
            other => Step::Fatal(
                sqlstate::PROTOCOL_VIOLATION,
                format!("invalid frontend message type {other}"),
            ),
        }
    }
}

/// How the session ends.
enum End {
    Quiet,
    Fatal(SqlState, String),
}

fn shutting_down() -> End {
    End::Fatal(
        sqlstate::ADMIN_SHUTDOWN,
        "terminating connection: the proxy is shutting down".to_owned(),
    )
}

/// Serves an admin client after its login burst; `buf` holds any bytes read past the
/// startup packet.
pub async fn serve(
    shared: &Arc<Shared>,
    mut stream: Stream,
    mut buf: BytesMut,
    entry: Arc<ClientEntry>,
) {
    // PgBouncer lists console clients as active: they hold no server, but they are not idle
    // in a queue either.
    entry.set_state(ClientState::Active);
    let end = run(shared, &mut stream, &mut buf, &entry).await;
    if let End::Fatal(code, message) = end {
        let mut out = BytesMut::new();
        encode::error(&mut out, Severity::Fatal, code, &message);
        let _ = stream.send(&out).await;
    }
    let _ = stream.shutdown().await;
}

async fn run(
    shared: &Arc<Shared>,
    stream: &mut Stream,
    buf: &mut BytesMut,
    entry: &ClientEntry,
) -> End {
    let mut protocol = Protocol::default();
    let mut out = BytesMut::new();
    loop {
        // Every complete message first, then read more.
        loop {
            if shared.shutdown.drain.is_cancelled() {
                return shutting_down();
            }
            let max = shared.config.load().server.max_message_bytes;
            let msg = match codec::split_message(buf, max) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => return End::Fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string()),
            };
            match protocol.step(msg[0], &msg[codec::HEADER_LEN..], &mut out) {
                Step::Answered => {}
                Step::Terminate => return End::Quiet,
                Step::Fatal(code, message) => return End::Fatal(code, message),
                Step::Query(text) => {
                    entry.request_started(std::time::Instant::now());
                    if let Err(end) = query(shared, stream, entry, &text, &mut out).await {
                        return end;
                    }
                }
            }
            if !out.is_empty() {
                if stream.send(&out).await.is_err() {
                    return End::Quiet;
                }
                out.clear();
            }
        }
        let read = tokio::select! {
            _ = shared.shutdown.drain.cancelled() => return shutting_down(),
            r = stream.read_buf(buf) => r,
        };
        match read {
            Ok(0) | Err(_) => return End::Quiet,
            Ok(_) => {}
        }
    }
}

/// Runs every command of one Query text, stopping at the first error as Postgres does, then
/// ReadyForQuery. Output is flushed after each command, so a slow `PAUSE` does not hold back
/// what came before it.
async fn query(
    shared: &Arc<Shared>,
    stream: &mut Stream,
    entry: &ClientEntry,
    text: &str,
    out: &mut BytesMut,
) -> Result<(), End> {
    match parser::parse(text) {
        Err(e) => encode::error(out, Severity::Error, sqlstate::SYNTAX_ERROR, &e.0),
        Ok(cmds) if cmds.is_empty() => encode::empty_query_response(out),
        Ok(cmds) => {
            for cmd in &cmds {
                let ctx = Ctx {
                    shared,
                    stream: &*stream,
                    entry,
                };
                match commands::run(cmd, &ctx, out).await {
                    Ok(()) => {}
                    Err(Failure::Error(e)) => {
                        e.encode(out);
                        break;
                    }
                    Err(Failure::ClientGone) => return Err(End::Quiet),
                    Err(Failure::Shutdown) => return Err(shutting_down()),
                }
                if stream.send(out).await.is_err() {
                    return Err(End::Quiet);
                }
                out.clear();
            }
        }
    }
    encode::ready_for_query(out, b'I');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::parse;

    fn tags(out: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = codec::walk_messages(out, 0, 1 << 20, |t, _| {
            v.push(t);
            true
        });
        v
    }

    #[test]
    fn extended_protocol_is_refused_once_and_swallowed_until_sync() {
        let mut p = Protocol::default();
        let mut out = BytesMut::new();
        assert_eq!(p.step(b'P', b"\0select 1\0\0\0", &mut out), Step::Answered);
        assert_eq!(p.step(b'B', b"", &mut out), Step::Answered);
        assert_eq!(p.step(b'Q', b"show pools\0", &mut out), Step::Answered);
        assert_eq!(tags(&out), b"E");
        let f = parse::error_fields(&out[5..]).unwrap();
        assert_eq!(f.code, Some("0A000"));
        assert_eq!(p.step(b'S', b"", &mut out), Step::Answered);
        assert_eq!(tags(&out), b"EZ");
        assert_eq!(
            p.step(b'Q', b"show pools\0", &mut out),
            Step::Query("show pools".into())
        );
    }

    #[test]
    fn terminate_bad_query_and_unknown_messages() {
        let mut p = Protocol::default();
        let mut out = BytesMut::new();
        assert_eq!(p.step(b'X', b"", &mut out), Step::Terminate);
        assert!(matches!(
            p.step(b'Q', b"no nul", &mut out),
            Step::Fatal(c, _) if c == sqlstate::PROTOCOL_VIOLATION
        ));
        assert!(matches!(p.step(b'p', b"pw\0", &mut out), Step::Fatal(..)));
        assert_eq!(p.step(b'd', b"row", &mut out), Step::Answered);
        assert_eq!(p.step(b'F', b"", &mut out), Step::Answered);
        assert_eq!(tags(&out), b"EZ");
    }

    #[test]
    fn random_messages_never_panic() {
        let mut rng = crate::test_rng::Rng(0x0AD_C0DE);
        let mut p = Protocol::default();
        for _ in 0..20_000 {
            let mut out = BytesMut::new();
            let tag = rng.pick(b"QXSPBDECHFdcfpZ\0");
            let body = rng.bytes(16);
            let _ = p.step(tag, &body, &mut out);
        }
    }

    #[test]
    fn burst_reports_a_version_psql_parses() {
        let mut out = BytesMut::new();
        login_burst(&mut out, "admin", "psql", (1, 2));
        assert!(server_version().starts_with("15.0 "));
        let t = tags(&out);
        assert_eq!(t.last(), Some(&b'Z'));
        assert!(t.contains(&b'K') && t.iter().filter(|&&c| c == b'S').count() >= 8);
    }
}
