//! The client-facing TLS configuration: our certificate and key, TLS 1.2 and 1.3, ALPN
//! `postgresql` (required for direct TLS, offered otherwise), and optional client-certificate
//! verification against a CA.

use std::path::Path;
use std::sync::Arc;

use super::pem;
use crate::config::ClientCertMode;

/// The ALPN protocol name Postgres 17 registered for its wire protocol. A client starting TLS
/// directly (without SSLRequest) must offer it, so a TLS connection meant for another service
/// cannot be replayed into ours.
pub const POSTGRES_ALPN: &[u8] = b"postgresql";

/// A ready rustls server configuration and what sessions need to know about it.
pub struct Acceptor {
    config: Arc<rustls::ServerConfig>,
    /// `tls-server-end-point` data of our certificate; `None` when its signature algorithm has
    /// no binding hash (then SCRAM-SHA-256-PLUS is not offered).
    binding: Option<Vec<u8>>,
    /// Hash of the files and settings it was built from: configs built from the same files
    /// compare equal, and a reload after a certificate rotation sees a change.
    digest: [u8; 32],
}

impl Acceptor {
    /// Reads `cert` (a PEM chain, leaf first) and `key`, and `ca` when client certificates are
    /// asked for. Every problem is returned as (config key, message).
    pub fn load(
        cert: &Path,
        key: &Path,
        ca: Option<&Path>,
        client_cert: ClientCertMode,
    ) -> Result<Acceptor, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        let cert_bytes = pem::read(cert)
            .map_err(|e| problems.push(("tls.cert", e)))
            .ok();
        let key_bytes = pem::read(key)
            .map_err(|e| problems.push(("tls.key", e)))
            .ok();
        let chain = cert_bytes.as_deref().and_then(|b| {
            pem::certificates(cert, b)
                .map_err(|e| problems.push(("tls.cert", e)))
                .ok()
        });
        let private = key_bytes.as_deref().and_then(|b| {
            pem::private_key(key, b)
                .map_err(|e| problems.push(("tls.key", e)))
                .ok()
        });
        let ca_bytes = match (client_cert, ca) {
            (ClientCertMode::None, _) => None,
            (_, None) => {
                problems.push((
                    "tls.ca",
                    format!("tls.client_cert = \"{client_cert}\" needs tls.ca, the CA file client certificates are checked against"),
                ));
                None
            }
            (_, Some(ca)) => pem::read(ca).map_err(|e| problems.push(("tls.ca", e))).ok(),
        };
        let roots = match (ca, &ca_bytes) {
            (Some(ca), Some(b)) => pem::roots(ca, b)
                .map_err(|e| problems.push(("tls.ca", e)))
                .ok(),
            _ => None,
        };
        let (Some(chain), Some(private)) = (chain, private) else {
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let binding = chain.first().and_then(|leaf| super::end_point_hash(leaf));
        let digest = super::digest(&[
            cert_bytes.as_deref().unwrap_or_default(),
            key_bytes.as_deref().unwrap_or_default(),
            ca_bytes.as_deref().unwrap_or_default(),
            client_cert.as_str().as_bytes(),
        ]);
        let builder = rustls::ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| vec![("tls", format!("cannot set up TLS: {e}"))])?;
        let builder = match roots {
            None => builder.with_no_client_auth(),
            Some(roots) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    super::provider(),
                );
                let verifier = if client_cert == ClientCertMode::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| vec![("tls.ca", format!("cannot verify clients with it: {e}"))])?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, private).map_err(|e| {
            vec![(
                "tls.key",
                format!(
                    "{} and {} do not make a usable certificate and key: {e}",
                    cert.display(),
                    key.display()
                ),
            )]
        })?;
        config.alpn_protocols = vec![POSTGRES_ALPN.to_vec()];
        Ok(Acceptor {
            config: Arc::new(config),
            binding,
            digest,
        })
    }

    /// A tokio-rustls acceptor for one connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.config))
    }

    /// The `tls-server-end-point` data clients doing SCRAM-SHA-256-PLUS must send.
    pub fn channel_binding(&self) -> Option<&[u8]> {
        self.binding.as_deref()
    }
}

impl PartialEq for Acceptor {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Eq for Acceptor {}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("channel_binding", &self.binding.is_some())
            .finish_non_exhaustive()
    }
}
