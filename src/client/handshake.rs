//! The startup phase as a typed stage: SSLRequest and GSSENCRequest are answered `N` (TLS is a
//! later stage that slots in here), a CancelRequest ends the connection after being handled, and
//! a StartupMessage moves the client on to authentication.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{ClientFacing, ErrorKind};
use crate::protocol::sqlstate::{self, SqlState};
use crate::protocol::startup::{self, StartupError, StartupMessage, StartupPacket};

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

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("{0}")]
    Startup(#[from] StartupError),
    #[error("client sent data after SSLRequest/GSSENCRequest before the reply")]
    Pipelined,
    #[error("too many encryption negotiation requests")]
    TooManyRequests,
    #[error("connection error during startup: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientFacing for HandshakeError {
    fn sqlstate(&self) -> SqlState {
        match self {
            HandshakeError::Io(_) => sqlstate::CONNECTION_FAILURE,
            _ => sqlstate::PROTOCOL_VIOLATION,
        }
    }
    fn kind(&self) -> ErrorKind {
        match self {
            HandshakeError::Io(_) => ErrorKind::Client,
            _ => ErrorKind::Protocol,
        }
    }
}

/// Runs the startup phase on a fresh connection.
pub async fn handshake(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<Handshake, HandshakeError> {
    let mut negotiations = 0;
    loop {
        let packet = loop {
            if let Some(p) = startup::decode(buf)? {
                break p;
            }
            if stream.read_buf(buf).await? == 0 {
                if buf.is_empty() {
                    return Ok(Handshake::Closed);
                }
                return Err(HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        };
        match packet {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                negotiations += 1;
                if negotiations > 2 {
                    return Err(HandshakeError::TooManyRequests);
                }
                // Bytes sent before our answer would be read as if they came after it: the
                // CVE-2021-23214 class of injection once TLS exists. Refuse them now too.
                if !buf.is_empty() {
                    return Err(HandshakeError::Pipelined);
                }
                stream.write_all(b"N").await?;
            }
            StartupPacket::Cancel {
                process_id,
                secret_key,
            } => {
                return Ok(Handshake::Cancel {
                    process_id,
                    secret_key,
                });
            }
            StartupPacket::Startup(m) => return Ok(Handshake::Startup(m)),
        }
    }
}
