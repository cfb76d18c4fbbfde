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

/// ErrorResponse (severity ERROR) with a DETAIL field: for an error whose causes are a list
/// (every problem of a config that did not reload), one per line.
pub fn error_with_detail(buf: &mut BytesMut, code: SqlState, message: &str, detail: &str) {
    put(
        buf,
        &ErrorResponse::new(vec![
            (b'S', "ERROR".to_owned()),
            (b'V', "ERROR".to_owned()),
            (b'C', code.code().to_owned()),
            (b'M', message.to_owned()),
            (b'D', detail.to_owned()),
        ]),
    );
}

/// NoticeResponse with severity NOTICE (SQLSTATE `00000`): information about a command that
/// succeeded, e.g. what a reload changed.
pub fn notice(buf: &mut BytesMut, message: &str) {
    put(
        buf,
        &NoticeResponse::new(vec![
            (b'S', "NOTICE".to_owned()),
            (b'V', "NOTICE".to_owned()),
            (b'C', "00000".to_owned()),
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

/// The type of a result column the proxy originates: how clients render it (psql aligns
/// numbers right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `text` (oid 25).
    Text,
    /// `int8` (oid 20).
    Int8,
}

impl ColumnType {
    fn oid_and_size(self) -> (u32, i16) {
        match self {
            ColumnType::Text => (25, -1),
            ColumnType::Int8 => (20, 8),
        }
    }
}

/// RowDescription of a result the proxy computed itself: no table, text format.
pub fn row_description<'a>(
    buf: &mut BytesMut,
    columns: impl ExactSizeIterator<Item = (&'a str, ColumnType)>,
) {
    let n = i16::try_from(columns.len()).unwrap_or(i16::MAX);
    message(buf, b'T', |b| {
        b.put_i16(n);
        for (name, ty) in columns.take(n as usize) {
            let (oid, size) = ty.oid_and_size();
            put_cstr(b, name);
            b.put_i32(0); // table oid
            b.put_i16(0); // column number
            b.put_u32(oid);
            b.put_i16(size);
            b.put_i32(-1); // type modifier
            b.put_i16(0); // text format
        }
    });
}

/// DataRow of text values; `None` is NULL.
pub fn data_row<'a>(buf: &mut BytesMut, values: impl ExactSizeIterator<Item = Option<&'a str>>) {
    let n = i16::try_from(values.len()).unwrap_or(i16::MAX);
    message(buf, b'D', |b| {
        b.put_i16(n);
        for v in values.take(n as usize) {
            match v {
                None => b.put_i32(-1),
                Some(v) => {
                    b.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
                    b.put_slice(&v.as_bytes()[..v.len().min(i32::MAX as usize)]);
                }
            }
        }
    });
}

/// EmptyQueryResponse: the answer to a Query whose text holds no command.
pub fn empty_query_response(buf: &mut BytesMut) {
    message(buf, b'I', |_| {});
}

/// A C string; an interior NUL (impossible in text the proxy builds, but names may come from
/// config) would end it early on the client's side, so it is cut there.
fn put_cstr(buf: &mut BytesMut, s: &str) {
    let s = s.split('\0').next().unwrap_or("");
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
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
    fn result_set_messages() {
        let mut b = BytesMut::new();
        row_description(
            &mut b,
            [("a", ColumnType::Text), ("n", ColumnType::Int8)].into_iter(),
        );
        let mut expect = vec![b'T', 0, 0, 0, 46, 0, 2];
        expect.extend_from_slice(b"a\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0");
        expect.extend_from_slice(b"n\0\0\0\0\0\0\0\0\0\0\x14\0\x08\xff\xff\xff\xff\0\0");
        assert_eq!(&b[..], &expect[..]);
        b.clear();
        data_row(&mut b, [Some("xy"), None].into_iter());
        assert_eq!(&b[..], b"D\0\0\0\x10\0\x02\0\0\0\x02xy\xff\xff\xff\xff");
        b.clear();
        empty_query_response(&mut b);
        assert_eq!(&b[..], b"I\0\0\0\x04");
    }

    #[test]
    fn notice_and_detailed_error_round_trip() {
        let mut b = BytesMut::new();
        error_with_detail(&mut b, sqlstate::CONFIG_FILE_ERROR, "bad", "one\ntwo");
        assert_eq!(b[0], b'E');
        let f = parse::error_fields(&b[5..]).unwrap();
        assert_eq!((f.code, f.message), (Some("F0000"), Some("bad")));
        assert!(b.windows(8).any(|w| w == b"Done\ntwo"));
        b.clear();
        notice(&mut b, "pool.size: 20 -> 5");
        assert_eq!(b[0], b'N');
        assert!(b.windows(5).any(|w| w == b"SNOTI"));
    }

    #[test]
    fn ready_for_query_bytes() {
        let mut b = BytesMut::new();
        ready_for_query(&mut b, b'T');
        assert_eq!(&b[..], b"Z\0\0\0\x05T");
    }
}
