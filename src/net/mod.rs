//! Sockets: the accept loop and the small async helpers that move framed messages between a
//! socket and a `BytesMut`. Parsing stays in `protocol`; this module only does IO.

pub mod framed;
pub mod listener;
