//! Startup-phase packets: untyped, length-prefixed (i32 length including itself, then an i32
//! code). SSLRequest, GSSENCRequest, CancelRequest and StartupMessage are told apart by the code.
//! Bounded by `MAX_STARTUP_PACKET` like Postgres, so a client cannot make us buffer more before
//! it has authenticated.

use bytes::{Buf, BytesMut};

use super::codec::MAX_STARTUP_PACKET;

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// A decoded startup-phase packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    Cancel {
        process_id: i32,
        /// 4 bytes in protocol 3.0; up to 256 in 3.2.
        secret_key: Vec<u8>,
    },
    Startup(StartupMessage),
}

/// The parameters of a StartupMessage, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartupMessage {
    pub major: u16,
    pub minor: u16,
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a startup packet was refused. All of these are `08P01`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    #[error("invalid length of startup packet: {0}")]
    BadLength(i64),
    #[error("invalid startup packet layout: {0}")]
    Layout(&'static str),
    #[error("startup packet is not valid UTF-8")]
    NotUtf8,
    #[error("unsupported frontend protocol {0}.{1}: server supports 3.0 to 3.2")]
    UnsupportedProtocol(u16, u16),
}

/// Splits one startup packet off `buf` and decodes it; `Ok(None)` when more bytes are needed.
pub fn decode(buf: &mut BytesMut) -> Result<Option<StartupPacket>, StartupError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP_PACKET as i32).contains(&len) {
        return Err(StartupError::BadLength(i64::from(len)));
    }
    let len = len as usize;
    if buf.len() < len {
        buf.reserve(len - buf.len());
        return Ok(None);
    }
    let mut pkt = buf.split_to(len);
    pkt.advance(4);
    let code = pkt.get_i32();
    let body = &pkt[..];
    match code {
        SSL_REQUEST if body.is_empty() => Ok(Some(StartupPacket::SslRequest)),
        GSSENC_REQUEST if body.is_empty() => Ok(Some(StartupPacket::GssEncRequest)),
        SSL_REQUEST | GSSENC_REQUEST => Err(StartupError::Layout("request carries a body")),
        CANCEL_REQUEST => {
            if body.len() < 8 || body.len() > 4 + 256 {
                return Err(StartupError::Layout("cancel request size"));
            }
            let process_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            Ok(Some(StartupPacket::Cancel {
                process_id,
                secret_key: body[4..].to_vec(),
            }))
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(StartupError::UnsupportedProtocol(major, minor));
            }
            let params = parse_params(body)?;
            Ok(Some(StartupPacket::Startup(StartupMessage {
                major,
                minor,
                params,
            })))
        }
    }
}

/// name\0value\0 ... \0
fn parse_params(mut body: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let mut out = Vec::new();
    loop {
        let (name, rest) = cstr(body)?;
        if name.is_empty() {
            if !rest.is_empty() {
                return Err(StartupError::Layout("bytes after the final terminator"));
            }
            return Ok(out);
        }
        let (value, rest) = cstr(rest)?;
        out.push((name.to_owned(), value.to_owned()));
        body = rest;
    }
}

fn cstr(b: &[u8]) -> Result<(&str, &[u8]), StartupError> {
    let nul = b
        .iter()
        .position(|&c| c == 0)
        .ok_or(StartupError::Layout("missing terminator"))?;
    let s = std::str::from_utf8(&b[..nul]).map_err(|_| StartupError::NotUtf8)?;
    Ok((s, &b[nul + 1..]))
}

/// Parses the `options` startup parameter into `(name, value)` settings. Supports the forms
/// Postgres accepts for run-time settings: `-c name=value`, `-cname=value` and `--name=value`,
/// with backslash-escaped spaces. Anything else is refused rather than silently dropped.
pub fn parse_options(options: &str) -> Result<Vec<(String, String)>, String> {
    let words = split_options(options);
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let setting = if w == "-c" {
            i += 1;
            words
                .get(i)
                .cloned()
                .ok_or_else(|| "-c without a setting".to_owned())?
        } else if let Some(s) = w.strip_prefix("--") {
            s.to_owned()
        } else if let Some(s) = w.strip_prefix("-c") {
            s.to_owned()
        } else {
            return Err(format!(
                "unsupported option \"{w}\" (only -c name=value is supported)"
            ));
        };
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("option \"{setting}\" has no value"))?;
        out.push((
            name.replace('-', "_").to_ascii_lowercase(),
            value.to_owned(),
        ));
        i += 1;
    }
    Ok(out)
}

fn split_options(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_ascii_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&((body.len() + 8) as i32).to_be_bytes());
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn startup_params_and_partial_reads() {
        let full = packet(196608, b"user\0app\0database\0db\0options\0-c x=1\0\0");
        for cut in 0..full.len() {
            let mut b = BytesMut::from(&full[..cut]);
            assert_eq!(decode(&mut b).unwrap(), None);
        }
        let mut b = full.clone();
        let StartupPacket::Startup(m) = decode(&mut b).unwrap().unwrap() else {
            panic!("not a startup message")
        };
        assert_eq!((m.major, m.minor), (3, 0));
        assert_eq!(m.get("user"), Some("app"));
        assert_eq!(m.get("options"), Some("-c x=1"));
    }

    #[test]
    fn special_requests() {
        assert_eq!(
            decode(&mut packet(SSL_REQUEST, b"")).unwrap(),
            Some(StartupPacket::SslRequest)
        );
        assert_eq!(
            decode(&mut packet(GSSENC_REQUEST, b"")).unwrap(),
            Some(StartupPacket::GssEncRequest)
        );
        let mut body = 7i32.to_be_bytes().to_vec();
        body.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            decode(&mut packet(CANCEL_REQUEST, &body)).unwrap(),
            Some(StartupPacket::Cancel {
                process_id: 7,
                secret_key: vec![1, 2, 3, 4]
            })
        );
    }

    #[test]
    fn malformed_packets_are_errors() {
        let mut b = BytesMut::from(&[0u8, 0, 0, 3][..]);
        assert!(decode(&mut b).is_err());
        let mut b = BytesMut::from(&100_000i32.to_be_bytes()[..]);
        assert!(decode(&mut b).is_err());
        assert!(decode(&mut packet(196608, b"user\0app")).is_err());
        assert!(decode(&mut packet(196608, b"user\0app\0\0junk")).is_err());
        assert!(decode(&mut packet(2 << 16, b"\0")).is_err());
        assert!(decode(&mut packet(196608, b"us\xffer\0a\0\0")).is_err());
    }

    #[test]
    fn options_forms() {
        assert_eq!(
            parse_options("-c search_path=a,b --statement-timeout=5s -cTimeZone=UTC").unwrap(),
            vec![
                ("search_path".into(), "a,b".into()),
                ("statement_timeout".into(), "5s".into()),
                ("timezone".into(), "UTC".into())
            ]
        );
        assert_eq!(
            parse_options(r"-c application_name=a\ b").unwrap(),
            vec![("application_name".into(), "a b".into())]
        );
        assert!(parse_options("-e").is_err());
        assert!(parse_options("-c").is_err());
    }
}
/// Deterministic "no panic on random input" checks, the CI-sized cousin of `fuzz/` target
/// `startup`: the same invariants over a few thousand generated inputs.
#[cfg(test)]
mod random_input_tests {
    use super::*;

    /// The generator must reach each interesting case (see the final assertion) at least this
    /// often, so that it cannot quietly stop exercising the code under test.
    const LOTS: usize = 100;

    use crate::test_rng::Rng;

    const WORDS: &[&[u8]] = &[
        b"user",
        b"database",
        b"options",
        b"a",
        b"",
        b"\xff",
        b"\xc3\xa9",
        b"-c x=1",
        b"=",
        b"\0",
    ];

    fn packet(rng: &mut Rng) -> Vec<u8> {
        let any = rng.next() as i32;
        let code = rng.pick(&[
            SSL_REQUEST,
            GSSENC_REQUEST,
            CANCEL_REQUEST,
            196_608,
            196_608,
            196_608,
            196_610,
            131_072,
            any,
        ]);
        let mut body = Vec::new();
        if code == CANCEL_REQUEST {
            body.extend((0..rng.below(270)).map(|_| rng.next() as u8));
        } else if code >> 16 == 3 || rng.below(4) == 0 {
            for _ in 0..rng.below(4) {
                for _ in 0..2 {
                    body.extend_from_slice(rng.pick(WORDS));
                    body.push(0);
                }
            }
            if rng.below(5) != 0 {
                body.push(0);
            }
        }
        let mut len = body.len() as i32 + 8;
        if rng.below(8) == 0 {
            let any = rng.next() as i32;
            len = rng.pick(&[-1, 0, 4, 7, 8, 10_001, i32::MAX, any]);
        }
        let mut v = len.to_be_bytes().to_vec();
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(&body);
        v
    }

    /// Checks the invariants; returns how many StartupMessages were decoded and whether the
    /// input was refused.
    fn check(data: &[u8]) -> (usize, bool) {
        let mut startups = 0;
        let mut buf = BytesMut::from(data);
        let mut consumed = 0;
        loop {
            let before = buf.len();
            let declared =
                (before >= 4).then(|| i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
            match decode(&mut buf) {
                Ok(Some(pkt)) => {
                    let len = declared.unwrap() as usize;
                    assert!((8..=MAX_STARTUP_PACKET).contains(&len));
                    assert_eq!(buf.len(), before - len);
                    let raw = &data[consumed..consumed + len];
                    consumed += len;
                    if let StartupPacket::Startup(m) = &pkt {
                        startups += 1;
                        let mut enc = Vec::new();
                        for (k, v) in &m.params {
                            assert!(!k.is_empty());
                            enc.extend_from_slice(k.as_bytes());
                            enc.push(0);
                            enc.extend_from_slice(v.as_bytes());
                            enc.push(0);
                        }
                        enc.push(0);
                        assert_eq!(&raw[8..], &enc[..]);
                        if let Some(o) = m.get("options") {
                            check_options(o);
                        }
                    }
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before);
                    if let Some(d) = declared {
                        assert!(d as usize > before);
                    }
                    return (startups, false);
                }
                Err(_) => {
                    // Nothing consumed (bad length) or the refused packet split off whole.
                    let len = declared.unwrap() as usize;
                    assert!(buf.len() == before || buf.len() == before - len);
                    return (startups, true);
                }
            }
            assert_eq!(&buf[..], &data[consumed..]);
        }
    }

    fn check_options(s: &str) {
        if let Ok(settings) = parse_options(s) {
            for (name, _) in settings {
                assert!(!name.contains('-'));
                assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
            }
        }
    }

    #[test]
    fn random_packets_decode_without_panic() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let (mut startups, mut refused) = (0, 0);
        for _ in 0..3000 {
            let mut data = Vec::new();
            for _ in 0..rng.below(4) {
                data.extend(packet(&mut rng));
            }
            if !data.is_empty() && rng.below(4) == 0 {
                let i = rng.below(data.len());
                data[i] = rng.next() as u8;
            }
            if rng.below(3) == 0 {
                data.truncate(rng.below(data.len() + 1));
            }
            let (n, err) = check(&data);
            startups += n;
            refused += usize::from(err);
        }
        // The generator must keep reaching both outcomes.
        assert!(startups > LOTS && refused > LOTS, "{startups} {refused}");
    }

    #[test]
    fn random_options_parse_without_panic() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let pieces = [
            "-c", "--", "-", "c", " ", "\t", "\\", "\\ ", "=", "a", "Work-Mem", "é", "x=1", "-cA=b",
        ];
        for _ in 0..3000 {
            let s: String = (0..rng.below(10)).map(|_| rng.pick(&pieces)).collect();
            check_options(&s);
        }
    }
}
