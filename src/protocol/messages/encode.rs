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
    fn ready_for_query_bytes() {
        let mut b = BytesMut::new();
        ready_for_query(&mut b, b'T');
        assert_eq!(&b[..], b"Z\0\0\0\x05T");
    }
}
