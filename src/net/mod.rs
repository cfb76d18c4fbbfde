//! Sockets: the accept loop, the plain-or-TLS stream type, the rustls configurations, and the
//! small async helpers that move framed messages between a socket and a `BytesMut`. Parsing
//! stays in `protocol`; this module only does IO.

pub mod framed;
pub mod listener;
pub mod stream;
pub mod tls;

pub use stream::Stream;
