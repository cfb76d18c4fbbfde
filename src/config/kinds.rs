//! The small enums of the config (`auth_type`, `tls.mode`, `pool.mode`, ...). Their spelling
//! in TOML is part of the config contract; `as_str` gives it back for logs and SHOW CONFIG.

use serde::Deserialize;

/// Declares a config enum: serde spelling, `as_str` and `Display`; `#[default]` marks the default.
macro_rules! config_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// The spelling used in the config file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

config_enum! {
    /// How a client proves who it is (`server.auth_type`, `users.auth_type`).
    AuthType {
        /// SCRAM-SHA-256 (the password never crosses the wire). The default.
        #[default]
        ScramSha256 = "scram-sha-256",
        /// Legacy md5 challenge.
        Md5 = "md5",
        /// No password: any client naming the user is let in.
        Trust = "trust",
    }
}

config_enum! {
    /// Client-side TLS (`tls.mode`).
    TlsMode {
        /// Plaintext only: SSLRequest is answered `N`. The default.
        #[default]
        Disable = "disable",
        /// TLS when the client asks for it (SSLRequest or direct TLS), plaintext otherwise.
        Allow = "allow",
        /// Refuse clients that do not use TLS (`28000` naming this setting).
        Require = "require",
    }
}

config_enum! {
    /// Whether clients must present a certificate signed by `tls.ca` (`tls.client_cert`).
    ClientCertMode {
        /// No client certificate is asked for. The default.
        #[default]
        None = "none",
        /// Asked for; a client without one is let in, a client with one not signed by the CA
        /// is refused during the handshake.
        Optional = "optional",
        /// A certificate signed by the CA is required.
        Require = "require",
    }
}

config_enum! {
    /// TLS from the proxy to a database's servers (`databases.server_tls`), libpq's `sslmode`
    /// words.
    ServerTlsMode {
        /// Plaintext.
        Disable = "disable",
        /// TLS when the server offers it, without verifying its certificate; plaintext when it
        /// does not. The default (as libpq's).
        #[default]
        Prefer = "prefer",
        /// TLS or no connection; the certificate is not verified.
        Require = "require",
        /// TLS, and the certificate must chain to `server_tls_ca`; the host name is not checked.
        VerifyCa = "verify-ca",
        /// TLS, the certificate must chain to `server_tls_ca` and name the host in the URL.
        VerifyFull = "verify-full",
    }
}

config_enum! {
    /// When a client gives its server connection back (`pool.mode`, `databases.pool_mode`).
    PoolMode {
        /// At the end of each transaction. The default.
        #[default]
        Transaction = "transaction",
        /// When the client disconnects.
        Session = "session",
    }
}

config_enum! {
    /// What transaction mode does with session-only features (LISTEN, temporary tables,
    /// cursors WITH HOLD, session advisory locks) that would not survive a change of server
    /// (`pool.session_features`).
    SessionFeatures {
        /// Keep the client on its server until the state is gone. The default.
        #[default]
        Pin = "pin",
        /// Refuse the statement with `0A000`.
        Error = "error",
    }
}

config_enum! {
    /// How a replica is picked among the eligible ones (`routing.strategy`).
    RoutingStrategy {
        /// Lowest expected latency (peak EWMA, power of two choices). The default.
        #[default]
        Latency = "latency",
        /// In turn.
        RoundRobin = "round_robin",
        /// Uniformly at random.
        Random = "random",
        /// Fewest queries in flight.
        LeastOutstanding = "least_outstanding",
    }
}

config_enum! {
    /// What a read does when no replica is eligible (`routing.no_replica`).
    NoReplica {
        /// Run it on the primary. The default.
        #[default]
        Primary = "primary",
        /// Fail it with a clear error.
        Error = "error",
    }
}
