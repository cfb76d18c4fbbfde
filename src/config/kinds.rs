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
        /// Plaintext only. The default, and the only mode this build accepts.
        #[default]
        Disable = "disable",
        /// TLS when the client asks for it.
        Allow = "allow",
        /// Refuse clients that do not use TLS.
        Require = "require",
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
