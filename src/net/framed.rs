//! Reading whole messages off a socket, with the framing rules of `protocol::codec`.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{ClientFacing, ErrorKind};
use crate::protocol::codec::{self, FrameError};
use crate::protocol::sqlstate::{self, SqlState};

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection read failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("connection closed in the middle of a message")]
    UnexpectedEof,
}

impl ClientFacing for ReadError {
    fn sqlstate(&self) -> SqlState {
        match self {
            ReadError::Frame(_) => sqlstate::PROTOCOL_VIOLATION,
            _ => sqlstate::CONNECTION_FAILURE,
        }
    }
    fn kind(&self) -> ErrorKind {
        match self {
            ReadError::Frame(_) => ErrorKind::Protocol,
            _ => ErrorKind::Client,
        }
    }
}

/// Reads until one whole regular message is buffered and splits it off `buf` (header
/// included). `Ok(None)` on a clean end of stream between messages.
pub async fn read_message<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    max_len: usize,
) -> Result<Option<BytesMut>, ReadError> {
    loop {
        if let Some(m) = codec::split_message(buf, max_len)? {
            return Ok(Some(m));
        }
        if buf.capacity() - buf.len() < 512 {
            // Startup and authentication messages are tiny; bigger ones grow this in steps.
            buf.reserve(1024);
        }
        if r.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(ReadError::UnexpectedEof)
            };
        }
    }
}
