//! Startup-phase packets (`protocol::startup::decode`) on arbitrary bytes, decoded in a loop
//! until more bytes are needed or the input is refused, and `parse_options` on arbitrary UTF-8.
//! Invariants: each packet consumes exactly its declared length (8 ..= MAX_STARTUP_PACKET);
//! `Ok(None)` consumes nothing, an error nothing or the whole refused packet; a decoded packet
//! re-encodes to the bytes it came from (up to the protocol code of special requests, which is
//! fixed); settings parsed from `options` have normalised names.
#![no_main]

use bytes::BytesMut;
use lagoon::protocol::codec::MAX_STARTUP_PACKET;
use lagoon::protocol::startup::{StartupPacket, decode, parse_options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut consumed = 0;
    loop {
        let before = buf.len();
        let declared = (before >= 4).then(|| i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
        match decode(&mut buf) {
            Ok(Some(pkt)) => {
                let len = declared.expect("a packet needs a length") as usize;
                assert!((8..=MAX_STARTUP_PACKET).contains(&len));
                assert_eq!(
                    buf.len(),
                    before - len,
                    "consumed exactly the declared length"
                );
                let raw = &data[consumed..consumed + len];
                consumed += len;
                check_packet(&pkt, raw);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before);
                if let Some(d) = declared {
                    assert!(d as usize > before);
                }
                break;
            }
            Err(_) => {
                // Errors end the connection, so what is left in `buf` does not matter much:
                // a bad length consumes nothing, a bad packet has been split off whole.
                let len = declared.expect("an error needs a length") as usize;
                assert!(buf.len() == before || buf.len() == before - len);
                break;
            }
        }
        assert_eq!(&buf[..], &data[consumed..]);
    }
    assert!(consumed <= data.len());

    match std::str::from_utf8(data) {
        Ok(s) => check_options(s),
        Err(_) => check_options(&String::from_utf8_lossy(data)),
    }
});

fn check_packet(pkt: &StartupPacket, raw: &[u8]) {
    let code = i32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
    let body = &raw[8..];
    match pkt {
        StartupPacket::SslRequest => assert_eq!((code, body.len()), (80_877_103, 0)),
        StartupPacket::GssEncRequest => assert_eq!((code, body.len()), (80_877_104, 0)),
        StartupPacket::Cancel {
            process_id,
            secret_key,
        } => {
            assert_eq!(code, 80_877_102);
            assert_eq!(&body[..4], &process_id.to_be_bytes());
            assert_eq!(&body[4..], &secret_key[..]);
            assert!((4..=256).contains(&secret_key.len()));
        }
        StartupPacket::Startup(m) => {
            assert_eq!(m.major, 3);
            assert_eq!(code, (i32::from(m.major) << 16) | i32::from(m.minor));
            let mut enc = Vec::new();
            for (k, v) in &m.params {
                assert!(!k.is_empty());
                assert!(!k.contains('\0') && !v.contains('\0'));
                enc.extend_from_slice(k.as_bytes());
                enc.push(0);
                enc.extend_from_slice(v.as_bytes());
                enc.push(0);
            }
            enc.push(0);
            assert_eq!(body, &enc[..], "a StartupMessage re-encodes to its body");
            if let Some(o) = m.get("options") {
                check_options(o);
            }
        }
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
