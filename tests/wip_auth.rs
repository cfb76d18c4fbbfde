//! Work in progress: the handshake, auth and CLI integration tests, in their own binary until
//! they join tests/integration/main.rs.

#[path = "integration/auth.rs"]
mod auth;
#[path = "integration/cli.rs"]
mod cli;
#[path = "integration/handshake.rs"]
mod handshake;
#[path = "integration/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "integration/wire.rs"]
mod wire;
