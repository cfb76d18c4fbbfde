//! Errors that know who is to blame and what the client may see.
//!
//! Every error that can end a client's request implements [`ClientFacing`]: it carries a
//! SQLSTATE, a message safe to show the client (it never leaks other clients' data or
//! credentials), and an [`ErrorKind`] that is the `kind` label of `lagoon_errors_total`.

use crate::protocol::sqlstate::SqlState;

/// Coarse error class: a bounded label set for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The client sent something malformed or out of order.
    Protocol,
    /// Authentication failed (client side or server side).
    Auth,
    /// The client asked for something the configuration does not allow.
    Config,
    /// No server connection available in time, or the pool is failing.
    Pool,
    /// The server (Postgres) connection failed or broke.
    Server,
    /// The client's connection failed (reset, timeout).
    Client,
    /// The proxy is shutting down.
    Shutdown,
    /// A bug in Lagoon.
    Internal,
}

impl ErrorKind {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Protocol => "protocol",
            ErrorKind::Auth => "auth",
            ErrorKind::Config => "config",
            ErrorKind::Pool => "pool",
            ErrorKind::Server => "server",
            ErrorKind::Client => "client",
            ErrorKind::Shutdown => "shutdown",
            ErrorKind::Internal => "internal",
        }
    }
}

impl ErrorKind {
    /// The class of a FATAL the session ends a client with, from its SQLSTATE (those errors
    /// are built where only the code is at hand).
    pub fn of_fatal(code: SqlState) -> ErrorKind {
        use crate::protocol::sqlstate as s;
        match code {
            c if c == s::ADMIN_SHUTDOWN => ErrorKind::Shutdown,
            c if c == s::CONNECTION_FAILURE => ErrorKind::Server,
            c if c == s::PROTOCOL_VIOLATION => ErrorKind::Protocol,
            c if c == s::IDLE_IN_TRANSACTION_TIMEOUT => ErrorKind::Client,
            c if c == s::INTERNAL_ERROR => ErrorKind::Internal,
            _ => ErrorKind::Config,
        }
    }
}

/// An error that can be reported to the client as an `ErrorResponse`.
pub trait ClientFacing: std::error::Error {
    /// The SQLSTATE the client receives.
    fn sqlstate(&self) -> SqlState;
    /// The metric label.
    fn kind(&self) -> ErrorKind;
    /// The message the client receives. Defaults to the `Display` text, which must then be
    /// safe to show: name the setting involved, never secrets.
    fn client_message(&self) -> String {
        self.to_string()
    }
}
