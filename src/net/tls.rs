//! TLS with rustls (ring provider only), both directions, built from the config:
//!
//! - `acceptor`: the client-facing side. `[tls]`'s certificate, key and optional client CA
//!   become an [`Acceptor`] when the config is validated, so `lagoon check` reports a bad file
//!   and a reload re-reads the files (certificate rotation): connections accepted afterwards
//!   use the new certificate, established ones keep theirs.
//! - `upstream`: the server-facing side. `server_tls` per database becomes an [`Upstream`]:
//!   whether to ask for TLS, and how to verify the server (`verify-ca` / `verify-full`).
//! - `binding`: the `tls-server-end-point` channel-binding data of our certificate, for
//!   SCRAM-SHA-256-PLUS.
//! - `pem`: reading PEM files, with errors that name the file and the setting.
//!
//! Not here: the negotiation on the wire (`client::handshake` for clients, `pool::connect` for
//! servers) and the stream type carrying either (`net::stream`).

mod acceptor;
mod binding;
mod pem;
pub mod upstream;

pub use acceptor::{Acceptor, POSTGRES_ALPN};
pub use binding::end_point_hash;
pub use upstream::{ServerTlsMode, Upstream};

use std::sync::Arc;

/// The one crypto provider of the build. rustls can carry several; we pin ring everywhere so
/// no second provider (aws-lc-rs) ever enters the tree.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of some file contents, so configs built from the same files compare equal and a
/// rotated file makes a reload see a change.
pub(crate) fn digest(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}
