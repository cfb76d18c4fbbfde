//! The server-facing TLS configuration of one database (`server_tls`, `server_tls_ca`):
//! whether the proxy asks its servers for TLS, and how it checks their certificates.
//!
//! `prefer` and `require` encrypt without verifying (libpq's meaning of the words): the
//! handshake signatures are still checked, the certificate chain is not. `verify-ca` checks the
//! chain against the CA file but not the host name; `verify-full` checks both. Under
//! `verify-*` a wrong certificate fails the connection: never a silent fallback to plaintext.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

pub use crate::config::ServerTlsMode;

use super::pem;

/// One database's server-side TLS, ready to use.
#[derive(Clone)]
pub struct Upstream {
    pub mode: ServerTlsMode,
    /// `None` exactly when `mode` is `disable`.
    config: Option<Arc<rustls::ClientConfig>>,
    /// Hash of the mode and CA file: equal settings compare equal, a rotated CA is a change.
    digest: [u8; 32],
}

impl Default for Upstream {
    /// Plaintext; what an endpoint holds before validation fills it.
    fn default() -> Self {
        Upstream::disabled()
    }
}

impl Upstream {
    /// Plaintext to the server.
    pub fn disabled() -> Upstream {
        Upstream {
            mode: ServerTlsMode::Disable,
            config: None,
            digest: super::digest(&[ServerTlsMode::Disable.as_str().as_bytes()]),
        }
    }

    /// Builds the client configuration for `mode`; `ca` is required by `verify-ca` and
    /// `verify-full` and ignored by the others. The error names the file and the setting.
    pub fn build(mode: ServerTlsMode, ca: Option<&Path>) -> Result<Upstream, String> {
        let provider = super::provider();
        let (verifier, ca_bytes): (Arc<dyn ServerCertVerifier>, Vec<u8>) = match mode {
            ServerTlsMode::Disable => return Ok(Upstream::disabled()),
            ServerTlsMode::Prefer | ServerTlsMode::Require => {
                (Arc::new(NoChainCheck(Arc::clone(&provider))), Vec::new())
            }
            ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull => {
                let ca = ca.ok_or_else(|| {
                    format!(
                        "server_tls = \"{mode}\" needs server_tls_ca, the CA file the server's \
                         certificate must chain to"
                    )
                })?;
                let bytes = pem::read(ca)?;
                let roots = pem::roots(ca, &bytes)?;
                let webpki = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                )
                .build()
                .map_err(|e| format!("{}: cannot verify servers with it: {e}", ca.display()))?;
                let verifier: Arc<dyn ServerCertVerifier> = if mode == ServerTlsMode::VerifyCa {
                    Arc::new(ChainOnly(webpki))
                } else {
                    webpki
                };
                (verifier, bytes)
            }
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![super::POSTGRES_ALPN.to_vec()];
        Ok(Upstream {
            mode,
            config: Some(Arc::new(config)),
            digest: super::digest(&[mode.as_str().as_bytes(), &ca_bytes]),
        })
    }

    /// Identifies the mode and CA contents: equal for equal settings.
    pub fn id(&self) -> [u8; 32] {
        self.digest
    }

    /// The rustls client configuration; `None` under `disable`.
    pub fn client_config(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.config.as_ref()
    }

    /// Whether a server answering `N` to SSLRequest must be refused rather than used in
    /// plaintext.
    pub fn requires_tls(&self) -> bool {
        !matches!(self.mode, ServerTlsMode::Disable | ServerTlsMode::Prefer)
    }

    /// What tokio-postgres connections (health probes, auth_query) should use: the same
    /// rustls configuration and the matching `sslmode`. `None` under `disable` (use `NoTls`).
    pub fn tokio_postgres(&self) -> Option<(tokio_postgres::config::SslMode, MakeTls)> {
        use tokio_postgres::config::SslMode;
        let config = self.config.as_deref()?.clone();
        let mode = match self.mode {
            ServerTlsMode::Disable | ServerTlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        };
        Some((mode, tokio_postgres_rustls::MakeRustlsConnect::new(config)))
    }
}

/// The TLS connector tokio-postgres connections use.
pub type MakeTls = tokio_postgres_rustls::MakeRustlsConnect;

impl PartialEq for Upstream {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Eq for Upstream {}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// `prefer` / `require`: any certificate, but the handshake must be signed by its key, so the
/// session is at least encrypted to whoever holds it.
#[derive(Debug)]
struct NoChainCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoChainCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the full WebPKI check except the host name.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
