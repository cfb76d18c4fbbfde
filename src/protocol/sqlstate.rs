//! SQLSTATE codes the proxy originates. Postgres's own errors pass through byte for byte and
//! never go through here; this is only for errors Lagoon itself decides on.

/// A five-character SQLSTATE code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlState(pub &'static str);

impl SqlState {
    pub fn code(self) -> &'static str {
        self.0
    }
}

/// The client broke the wire protocol (bad length, unexpected message, bad startup packet).
pub const PROTOCOL_VIOLATION: SqlState = SqlState("08P01");
/// Wrong password, or a user we do not know (the two are indistinguishable on purpose).
pub const INVALID_PASSWORD: SqlState = SqlState("28P01");
/// Authorization failure that is not a password mismatch (e.g. TLS required, method refused).
pub const INVALID_AUTHORIZATION: SqlState = SqlState("28000");
/// The database name the client asked for is not configured.
pub const INVALID_CATALOG_NAME: SqlState = SqlState("3D000");
/// max_client_conn reached, or no server connection within checkout_timeout.
pub const TOO_MANY_CONNECTIONS: SqlState = SqlState("53300");
/// The server connection broke while this client was using it.
pub const CONNECTION_FAILURE: SqlState = SqlState("08006");
/// Could not establish a server connection at all.
pub const CONNECTION_REJECTED: SqlState = SqlState("08004");
/// The proxy is shutting down.
pub const ADMIN_SHUTDOWN: SqlState = SqlState("57P01");
/// A query was cancelled on request.
pub const QUERY_CANCELED: SqlState = SqlState("57014");
/// A feature that cannot work in the current pooling mode.
pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState("0A000");
/// A transaction stayed idle longer than idle_transaction_timeout_ms.
pub const IDLE_IN_TRANSACTION_TIMEOUT: SqlState = SqlState("25P03");
/// The client stayed silent mid-request for too long.
pub const IDLE_SESSION_TIMEOUT: SqlState = SqlState("57P05");
/// A bug or unexpected state inside the proxy.
pub const INTERNAL_ERROR: SqlState = SqlState("XX000");
/// A configuration value is missing or wrong for what the client asked.
pub const CONFIG_FILE_ERROR: SqlState = SqlState("F0000");
/// A session setting the client asked for was refused by the server.
pub const INVALID_PARAMETER_VALUE: SqlState = SqlState("22023");
/// No replica can serve a read now and `routing.no_replica = "error"`: retry later.
pub const CANNOT_CONNECT_NOW: SqlState = SqlState("57P03");
/// A read-only server refused a write (a replica, or a READ ONLY transaction).
pub const READ_ONLY_SQL_TRANSACTION: SqlState = SqlState("25006");
/// An admin console command the console does not know, or with the wrong arguments.
pub const SYNTAX_ERROR: SqlState = SqlState("42601");
/// An admin command that cannot run now (`RELOAD` without a config file, a `PAUSE` whose
/// servers did not become idle in time).
pub const OBJECT_NOT_IN_PREREQUISITE_STATE: SqlState = SqlState("55000");
