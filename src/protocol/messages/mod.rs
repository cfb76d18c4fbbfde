//! The few messages the proxy reads (borrowed, bounds-checked parsers over a message body) and
//! the ones it originates (encoders, via pgwire's message types). pgwire's decoders panic on
//! malformed input, so they never see untrusted bytes.

pub mod encode;
pub mod parse;
