//! A connection that is plaintext TCP or TLS over TCP, in either role, behind one type, so the
//! session, relay and admin code neither know nor care. Dispatch is one `match` per IO call.
//!
//! Also the few non-blocking checks the pool and the session need, written once for both
//! kinds (a raw `TcpStream::try_read` would steal bytes from under the TLS layer).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A client or server connection.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    /// A client that negotiated TLS with us (we are the TLS server).
    TlsFromClient(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// A server we negotiated TLS with (we are the TLS client).
    TlsToServer(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Stream::Plain(s)
    }
}

impl Stream {
    /// The TCP socket underneath (addresses, socket options). Never read or write it directly
    /// on a TLS stream.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::TlsFromClient(s) => s.get_ref().0,
            Stream::TlsToServer(s) => s.get_ref().0,
        }
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// TLS version and cipher suite, for `SHOW CLIENTS` / `SHOW SERVERS` (empty in plaintext).
    pub fn tls_description(&self) -> String {
        let (version, suite) = match self {
            Stream::Plain(_) => return String::new(),
            Stream::TlsFromClient(s) => {
                let c = s.get_ref().1;
                (c.protocol_version(), c.negotiated_cipher_suite())
            }
            Stream::TlsToServer(s) => {
                let c = s.get_ref().1;
                (c.protocol_version(), c.negotiated_cipher_suite())
            }
        };
        let version = version.map(|v| match v {
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
            other => format!("{other:?}"),
        });
        match (version, suite) {
            (Some(v), Some(s)) => format!("{v}/{:?}", s.suite()),
            (Some(v), None) => v,
            _ => "TLS".to_owned(),
        }
    }

    /// Waits until a read would make progress, without needing a buffer: an idle client holds
    /// no read buffer while it waits. On TLS, bytes may already sit decrypted (or as whole
    /// records) inside rustls, where the socket's readiness cannot see them: then this returns
    /// at once.
    pub async fn readable(&mut self) -> io::Result<()> {
        if self.has_buffered_read() {
            return Ok(());
        }
        // The socket's own waker slot rather than a `readable()` future: that future is a
        // waiter node held in the state of every idle client's task (this is where they wait).
        let tcp = self.tcp();
        std::future::poll_fn(|cx| tcp.poll_read_ready(cx)).await
    }

    /// Whether a read would return something without touching the socket: decrypted bytes,
    /// whole records or a close already inside rustls. Always false in plaintext. The session
    /// checks it before waiting on the socket's readiness, which cannot see these.
    pub fn has_buffered_read(&mut self) -> bool {
        let state = match self {
            Stream::Plain(_) => return false,
            Stream::TlsFromClient(s) => s.get_mut().1.process_new_packets(),
            Stream::TlsToServer(s) => s.get_mut().1.process_new_packets(),
        };
        // An error is for the next read to report.
        state.map_or(true, |st| {
            st.plaintext_bytes_to_read() > 0 || st.peer_has_closed()
        })
    }

    /// Whether TLS records are waiting to go out. Writes can leave some behind when the socket
    /// fills; the session waits for writability while this is true, so they are not forgotten.
    pub fn needs_flush(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::TlsFromClient(s) => s.get_ref().1.wants_write(),
            Stream::TlsToServer(s) => s.get_ref().1.wants_write(),
        }
    }

    /// Non-blocking read into `buf`'s spare capacity, like `TcpStream::try_read_buf`:
    /// `WouldBlock` when nothing is there, `Ok(0)` at end of stream.
    ///
    /// Through `poll_read`, not `TcpStream::try_read_buf`, in plaintext too: tokio's poll path
    /// clears the socket's readiness after a short read (the socket is drained, epoll will say
    /// when more comes), while `try_read_buf` keeps it set until a read fails with
    /// `WouldBlock`, which costs one more `recvfrom` per wakeup, twice per transaction.
    pub fn try_read_buf(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        let mut cx = Context::from_waker(Waker::noop());
        match tokio_util::io::poll_read_buf(Pin::new(self), &mut cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Non-blocking write, like `TcpStream::try_write`: `WouldBlock` when nothing could be
    /// taken. On TLS the records are pushed towards the socket at once; whatever the socket
    /// does not take stays queued (see [`Self::needs_flush`], [`Self::try_flush`]).
    pub fn try_write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if let Stream::Plain(s) = self {
            return s.try_write(bytes);
        }
        let mut cx = Context::from_waker(Waker::noop());
        let n = match Pin::new(&mut *self).poll_write(&mut cx, bytes) {
            Poll::Ready(r) => r?,
            Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
        };
        self.try_flush()?;
        Ok(n)
    }

    /// Pushes queued TLS records to the socket without waiting. `Ok` whether or not all went.
    pub fn try_flush(&mut self) -> io::Result<()> {
        if !self.needs_flush() {
            return Ok(());
        }
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(self).poll_flush(&mut cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Ok(()),
        }
    }

    /// Writes all of `bytes` and flushes: on TLS a plain `write_all` can leave the last
    /// records queued inside rustls, and a peer waiting for them would wait forever.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.write_all(bytes).await?;
        self.flush().await
    }

    /// Non-blocking: whether a connection that should be silent (an idle server connection) is
    /// still silent and open. EOF, an error or any unexpected byte means it is not usable.
    pub fn is_silent(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        matches!(Pin::new(self).poll_read(&mut cx, &mut buf), Poll::Pending)
    }

    /// Best effort, never blocks: queues `bytes` (e.g. a Terminate message) and tries to flush
    /// them. Whatever does not fit is dropped.
    pub fn try_send(&mut self, bytes: &[u8]) {
        let _ = self.try_write(bytes);
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::TlsFromClient(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::TlsToServer(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::TlsFromClient(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::TlsToServer(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::TlsFromClient(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Stream::TlsToServer(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::TlsFromClient(s) => s.is_write_vectored(),
            Stream::TlsToServer(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::TlsFromClient(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::TlsToServer(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::TlsFromClient(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::TlsToServer(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
