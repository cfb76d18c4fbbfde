//! The startup phase as a typed stage: encryption negotiation, then a CancelRequest (which ends
//! the connection after being handled) or a StartupMessage (which moves the client on to
//! authentication).
//!
//! TLS, when `[tls] mode` is not `disable`, comes two ways: an SSLRequest answered `S` and
//! then the handshake, or a client that starts with a TLS ClientHello straight away (libpq 17's
//! `sslnegotiation=direct`), which must offer ALPN `postgresql`. Bytes a client pipelines after
//! SSLRequest, before our answer, are refused: they would otherwise be read as if they came
//! through the encrypted channel (the CVE-2021-23214 class of injection). GSSENCRequest is
//! always answered `N`. Under `require`, a StartupMessage over plaintext is refused with
//! `28000`; a CancelRequest is still honoured (it carries only its key).

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{TlsConfig, TlsMode};
use crate::error::{ClientFacing, ErrorKind};
use crate::net::Stream;
use crate::net::tls::{Acceptor, POSTGRES_ALPN};
use crate::protocol::sqlstate::{self, SqlState};
use crate::protocol::startup::{self, StartupError, StartupMessage, StartupPacket};

/// The first byte of a TLS handshake record: how a direct-TLS client starts. No valid startup
/// packet starts with it (its length would be over 369 MB).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What the startup phase produced.
#[derive(Debug)]
pub enum Handshake {
    Startup(StartupMessage),
    Cancel {
        process_id: i32,
        secret_key: Vec<u8>,
    },
    /// The client went away before sending a startup packet.
    Closed,
}

/// A finished startup phase: the connection (now maybe TLS), what the client sent, and the TLS
/// configuration its handshake used (for channel binding).
pub struct Negotiated {
    pub stream: Stream,
    pub handshake: Handshake,
    pub tls: Option<Arc<Acceptor>>,
}

/// A failed startup phase, with the connection when an error can still be sent on it.
pub struct Failed {
    pub stream: Option<Stream>,
    pub error: HandshakeError,
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("{0}")]
    Startup(#[from] StartupError),
    #[error("client sent data after SSLRequest/GSSENCRequest before the reply")]
    Pipelined,
    #[error("too many encryption negotiation requests")]
    TooManyRequests,
    #[error("encryption negotiation request on an already encrypted connection")]
    AlreadyEncrypted,
    #[error(
        "direct TLS connections must use the ALPN protocol \"postgresql\" (sslnegotiation=direct \
         needs a libpq 17 or newer client)"
    )]
    NoAlpn,
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error(
        "this server requires TLS (tls.mode = \"require\"): connect with sslmode=require or \
         stronger"
    )]
    TlsRequired,
    #[error("connection error during startup: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientFacing for HandshakeError {
    fn sqlstate(&self) -> SqlState {
        match self {
            HandshakeError::Io(_) | HandshakeError::Tls(_) => sqlstate::CONNECTION_FAILURE,
            HandshakeError::TlsRequired => sqlstate::INVALID_AUTHORIZATION,
            _ => sqlstate::PROTOCOL_VIOLATION,
        }
    }
    fn kind(&self) -> ErrorKind {
        match self {
            HandshakeError::Io(_) | HandshakeError::Tls(_) => ErrorKind::Client,
            HandshakeError::TlsRequired => ErrorKind::Auth,
            _ => ErrorKind::Protocol,
        }
    }
}

/// Runs the startup phase on a fresh connection, with the `[tls]` settings in force at accept.
pub async fn handshake(
    tcp: TcpStream,
    buf: &mut BytesMut,
    tls: &TlsConfig,
) -> Result<Negotiated, Failed> {
    let acceptor = match tls.mode {
        TlsMode::Disable => None,
        TlsMode::Allow | TlsMode::Require => tls.acceptor.clone(),
    };
    let fail = |stream: Option<Stream>, error: HandshakeError| Failed { stream, error };

    // Phase 1: plaintext, until a StartupMessage, a CancelRequest, or TLS.
    let mut tcp = tcp;
    let mut negotiations = 0;
    if let Some(acc) = &acceptor {
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(0) => return Ok(closed(Stream::Plain(tcp))),
            Ok(_) if first[0] == TLS_HANDSHAKE_RECORD => {
                return encrypted(tcp, buf, Arc::clone(acc), true).await;
            }
            Ok(_) => {}
            Err(e) => return Err(fail(None, e.into())),
        }
    }
    loop {
        let packet = match read_packet(&mut tcp, buf).await {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(closed(Stream::Plain(tcp))),
            Err(e) => return Err(fail(Some(Stream::Plain(tcp)), e)),
        };
        match packet {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                negotiations += 1;
                if negotiations > 2 {
                    return Err(fail(
                        Some(Stream::Plain(tcp)),
                        HandshakeError::TooManyRequests,
                    ));
                }
                if !buf.is_empty() {
                    return Err(fail(Some(Stream::Plain(tcp)), HandshakeError::Pipelined));
                }
                match (&packet, &acceptor) {
                    (StartupPacket::SslRequest, Some(acc)) => {
                        if let Err(e) = tcp.write_all(b"S").await {
                            return Err(fail(None, e.into()));
                        }
                        return encrypted(tcp, buf, Arc::clone(acc), false).await;
                    }
                    _ => {
                        if let Err(e) = tcp.write_all(b"N").await {
                            return Err(fail(None, e.into()));
                        }
                    }
                }
            }
            StartupPacket::Cancel {
                process_id,
                secret_key,
            } => {
                return Ok(Negotiated {
                    stream: Stream::Plain(tcp),
                    handshake: Handshake::Cancel {
                        process_id,
                        secret_key,
                    },
                    tls: None,
                });
            }
            StartupPacket::Startup(m) => {
                if tls.mode == TlsMode::Require {
                    return Err(fail(Some(Stream::Plain(tcp)), HandshakeError::TlsRequired));
                }
                return Ok(Negotiated {
                    stream: Stream::Plain(tcp),
                    handshake: Handshake::Startup(m),
                    tls: None,
                });
            }
        }
    }
}

/// Phase 2: the TLS handshake, then the startup packet through it. `direct`: the client sent
/// a ClientHello without SSLRequest, and must have negotiated ALPN `postgresql`.
async fn encrypted(
    tcp: TcpStream,
    buf: &mut BytesMut,
    acceptor: Arc<Acceptor>,
    direct: bool,
) -> Result<Negotiated, Failed> {
    let tls = match acceptor.acceptor().accept(tcp).await {
        Ok(s) => s,
        Err(e) => {
            return Err(Failed {
                stream: None,
                error: HandshakeError::Tls(e),
            });
        }
    };
    let alpn_ok = tls.get_ref().1.alpn_protocol() == Some(POSTGRES_ALPN);
    let mut stream = Stream::TlsFromClient(Box::new(tls));
    let fail = |stream: Stream, error: HandshakeError| Failed {
        stream: Some(stream),
        error,
    };
    if direct && !alpn_ok {
        return Err(fail(stream, HandshakeError::NoAlpn));
    }
    let packet = match read_packet(&mut stream, buf).await {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(closed(stream)),
        Err(e) => return Err(fail(stream, e)),
    };
    let handshake = match packet {
        StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
            return Err(fail(stream, HandshakeError::AlreadyEncrypted));
        }
        StartupPacket::Cancel {
            process_id,
            secret_key,
        } => Handshake::Cancel {
            process_id,
            secret_key,
        },
        StartupPacket::Startup(m) => Handshake::Startup(m),
    };
    Ok(Negotiated {
        stream,
        handshake,
        tls: Some(acceptor),
    })
}

fn closed(stream: Stream) -> Negotiated {
    Negotiated {
        stream,
        handshake: Handshake::Closed,
        tls: None,
    }
}

/// Reads one whole startup-phase packet. `Ok(None)`: the client closed before sending one.
async fn read_packet<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Option<StartupPacket>, HandshakeError> {
    loop {
        if let Some(p) = startup::decode(buf)? {
            return Ok(Some(p));
        }
        if stream.read_buf(buf).await? == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}
