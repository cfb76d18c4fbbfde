//! `tls-server-end-point` channel binding (RFC 5929 section 4): the hash of the server's
//! certificate, with the hash function of the certificate's signature algorithm, except that
//! MD5 and SHA-1 become SHA-256. A client doing SCRAM-SHA-256-PLUS hashes the certificate it
//! received; a man in the middle presenting another certificate cannot produce the same value.

use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::oid::db::rfc5912::{
    ECDSA_WITH_SHA_256, ECDSA_WITH_SHA_384, ECDSA_WITH_SHA_512, ID_RSASSA_PSS,
    SHA_1_WITH_RSA_ENCRYPTION, SHA_256_WITH_RSA_ENCRYPTION, SHA_384_WITH_RSA_ENCRYPTION,
    SHA_512_WITH_RSA_ENCRYPTION,
};

/// `ecdsa-with-SHA1` (1.2.840.10045.4.1) and `md5WithRSAEncryption` (1.2.840.113549.1.1.4):
/// both bind with SHA-256.
const ECDSA_WITH_SHA_1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");
const MD5_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.4");

/// The binding data for a DER certificate, or `None` when its signature algorithm has no
/// defined hash (Ed25519, RSA-PSS, unparsable): then SCRAM-SHA-256-PLUS is not offered, as
/// Postgres does.
pub fn end_point_hash(cert_der: &[u8]) -> Option<Vec<u8>> {
    let cert = Certificate::from_der(cert_der).ok()?;
    let oid = cert.signature_algorithm.oid;
    if oid == ID_RSASSA_PSS {
        // The hash sits in the parameters; Postgres refuses these too.
        return None;
    }
    if [
        MD5_WITH_RSA,
        SHA_1_WITH_RSA_ENCRYPTION,
        ECDSA_WITH_SHA_1,
        SHA_256_WITH_RSA_ENCRYPTION,
        ECDSA_WITH_SHA_256,
    ]
    .contains(&oid)
    {
        Some(Sha256::digest(cert_der).to_vec())
    } else if [SHA_384_WITH_RSA_ENCRYPTION, ECDSA_WITH_SHA_384].contains(&oid) {
        Some(Sha384::digest(cert_der).to_vec())
    } else if [SHA_512_WITH_RSA_ENCRYPTION, ECDSA_WITH_SHA_512].contains(&oid) {
        Some(Sha512::digest(cert_der).to_vec())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_p256_binds_with_sha256_and_garbage_has_no_binding() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        assert_eq!(end_point_hash(&der), Some(Sha256::digest(&der).to_vec()));

        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        assert_eq!(end_point_hash(&der), Some(Sha384::digest(&der).to_vec()));

        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(end_point_hash(cert.der()), None);

        assert_eq!(end_point_hash(b"not a certificate"), None);
        assert_eq!(end_point_hash(&[]), None);
    }
}
