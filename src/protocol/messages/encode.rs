//! Encoders for the messages Lagoon originates. They append to a caller-owned buffer so a
//! whole reply (e.g. the post-login burst) goes out in one write.

use bytes::{BufMut, BytesMut};
use pgwire::messages::Message;
use pgwire::messages::response::{ErrorResponse, NoticeResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{
    BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey,
};

use crate::protocol::sqlstate::SqlState;

/// Severity of an originated error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The request failed; the connection goes on.
    Error,
    /// The connection ends after this message.
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

// pgwire's encoders only fail on messages that exceed their own size limits; ours are small
// and built here, so a failure would be a bug in this file. Ignore rather than panic.
fn put<M: Message>(buf: &mut BytesMut, m: &M) {
    let _ = m.encode(buf);
}

/// ErrorResponse with severity (both the localized `S` and the fixed `V` field), SQLSTATE and
/// message.
pub fn error(buf: &mut BytesMut, severity: Severity, code: SqlState, message: &str) {
    let s = severity.as_str().to_owned();
    put(
        buf,
        &ErrorResponse::new(vec![
            (b'S', s.clone()),
            (b'V', s),
            (b'C', code.code().to_owned()),
            (b'M', message.to_owned()),
        ]),
    );
}

/// NoticeResponse with severity WARNING.
pub fn warning(buf: &mut BytesMut, code: SqlState, message: &str) {
    put(
        buf,
        &NoticeResponse::new(vec![
            (b'S', "WARNING".to_owned()),
            (b'V', "WARNING".to_owned()),
            (b'C', code.code().to_owned()),
            (b'M', message.to_owned()),
        ]),
    );
}

/// AuthenticationOk (for trust logins; the SCRAM and md5 exchanges write their own).
pub fn authentication_ok(buf: &mut BytesMut) {
    put(buf, &pgwire::messages::startup::Authentication::Ok);
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    put(
        buf,
        &ParameterStatus::new(name.to_owned(), value.to_owned()),
    );
}

pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    put(buf, &BackendKeyData::new(pid, SecretKey::I32(secret)));
}

/// Status byte as sent in ReadyForQuery.
pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    let status = match status {
        b'T' => TransactionStatus::Transaction,
        b'E' => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    };
    put(buf, &ReadyForQuery::new(status));
}

/// NegotiateProtocolVersion: we speak 3.0 (sent as the full version number, as Postgres does)
/// and list the `_pq_.` options we did not recognise.
pub fn negotiate_protocol_version(buf: &mut BytesMut, unsupported: Vec<String>) {
    put(buf, &NegotiateProtocolVersion::new(3 << 16, unsupported));
}

/// Appends one message: tag, length (patched after `body` wrote), body. For messages the
/// proxy builds or rebuilds from parts (rewritten statement names, renamed errors).
pub fn message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_u8(tag);
    buf.put_i32(0);
    body(buf);
    let len = (buf.len() - start - 1) as i32;
    buf[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

/// ParseComplete, for a Parse the proxy answers itself.
pub fn parse_complete(buf: &mut BytesMut) {
    message(buf, b'1', |_| {});
}

/// CloseComplete, for a Close the proxy answers itself.
pub fn close_complete(buf: &mut BytesMut) {
    message(buf, b'3', |_| {});
}

/// CommandComplete with `tag`, for a command the proxy carried out itself.
pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    message(buf, b'C', |b| {
        b.put_slice(tag.as_bytes());
        b.put_u8(0);
    });
}

/// A plain simple-protocol Query message, for statements the proxy itself sends to a server.
pub fn query(buf: &mut BytesMut, sql: &str) {
    buf.put_u8(b'Q');
    buf.put_i32((4 + sql.len() + 1) as i32);
    buf.put_slice(sql.as_bytes());
    buf.put_u8(0);
}

/// Terminate, sent to a server before closing a connection on purpose.
pub fn terminate(buf: &mut BytesMut) {
    buf.put_u8(b'X');
    buf.put_i32(4);
}

/// CopyFail, to abort a COPY FROM STDIN whose client vanished.
pub fn copy_fail(buf: &mut BytesMut, reason: &str) {
    buf.put_u8(b'f');
    buf.put_i32((4 + reason.len() + 1) as i32);
    buf.put_slice(reason.as_bytes());
    buf.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::parse;
    use crate::protocol::sqlstate;

    #[test]
    fn error_round_trips_through_our_parser() {
        let mut b = BytesMut::new();
        error(
            &mut b,
            Severity::Fatal,
            sqlstate::TOO_MANY_CONNECTIONS,
            "too many",
        );
        assert_eq!(b[0], b'E');
        let f = parse::error_fields(&b[5..]).unwrap();
        assert_eq!(f.code, Some("53300"));
        assert_eq!(f.severity, Some("FATAL"));
        assert_eq!(f.message, Some("too many"));
    }

    #[test]
    fn framed_messages_carry_their_length() {
        let mut b = BytesMut::new();
        parse_complete(&mut b);
        close_complete(&mut b);
        command_complete(&mut b, "DEALLOCATE");
        assert_eq!(&b[..], b"1\0\0\0\x043\0\0\0\x04C\0\0\0\x0fDEALLOCATE\0");
    }

    #[test]
    fn ready_for_query_bytes() {
        let mut b = BytesMut::new();
        ready_for_query(&mut b, b'T');
        assert_eq!(&b[..], b"Z\0\0\0\x05T");
    }
}
