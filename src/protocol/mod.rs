//! The PostgreSQL wire protocol, sans-IO: framing, startup packets, the few messages the proxy
//! must read (borrowed, bounds-checked parsers) and the ones it originates (encoders), and the
//! transaction tracker. No tokio, no sockets: unit-tested, fuzzed and benched directly.

pub mod codec;
pub mod messages;
pub mod replies;
pub mod sqlstate;
pub mod startup;
pub mod tracker;
