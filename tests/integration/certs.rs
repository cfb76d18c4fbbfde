//! Test certificates made with rcgen: a CA, a server certificate for `localhost` and
//! 127.0.0.1 signed by it (used by the test Postgres servers and by Lagoon's client side), and
//! a client certificate. `Pki::new` makes an independent set (another CA), for "wrong CA" and
//! certificate-rotation tests.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// One CA and the certificates it signed, as PEM text and as files under `dir`.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl Pki {
    /// A fresh CA named after `tag`, a server certificate and a client certificate for
    /// `client_cn`, written to a fresh directory.
    pub fn new(tag: &str) -> Pki {
        Pki::with_server_name(tag, "localhost", true)
    }

    /// Like [`Pki::new`], with the server certificate naming only `dns` (and 127.0.0.1 when
    /// `loopback_ip`), for host-name verification tests.
    pub fn with_server_name(tag: &str, dns: &str, loopback_ip: bool) -> Pki {
        let dir = std::env::temp_dir().join(format!("lagoon-pki-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("pki dir");
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("Lagoon test CA {tag}"));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().expect("server key");
        let mut server = CertificateParams::new(vec![dns.to_owned()]).expect("params");
        if loopback_ip {
            server
                .subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        }
        server.distinguished_name.push(DnType::CommonName, dns);
        let server_cert = server.signed_by(&server_key, &issuer).expect("server cert");

        let client_key = KeyPair::generate().expect("client key");
        let mut client = CertificateParams::new(Vec::<String>::new()).expect("params");
        client
            .distinguished_name
            .push(DnType::CommonName, crate::harness::SCRAM_USER.0);
        let client_cert = client.signed_by(&client_key, &issuer).expect("client cert");

        let pki = Pki {
            dir,
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        };
        pki.write("ca.crt", &pki.ca_pem);
        pki.write("server.crt", &pki.server_cert_pem);
        pki.write("server.key", &pki.server_key_pem);
        pki.write("client.crt", &client_cert.pem());
        pki.write("client.key", &client_key.serialize_pem());
        pki
    }

    fn write(&self, name: &str, text: &str) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // libpq refuses a client key readable by others.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(self.dir.join(name))
            .expect("write pki file");
        f.write_all(text.as_bytes()).expect("write pki file");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// `[tls]` for Lagoon's client side with this set's server certificate.
    pub fn tls_section(&self, mode: &str) -> String {
        format!(
            "[tls]\nmode = \"{mode}\"\ncert = {:?}\nkey = {:?}\n",
            path_str(&self.path("server.crt")),
            path_str(&self.path("server.key"))
        )
    }

    /// A rustls client configuration trusting this set's CA (and offering ALPN `postgresql`,
    /// as libpq 17 does).
    pub fn client_config(&self) -> rustls::ClientConfig {
        let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(self.roots())
        .with_no_client_auth();
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        config
    }

    /// A root store holding this set's CA.
    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.expect("ca pem")).expect("add ca");
        }
        roots
    }
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// The set the shared test cluster serves (`ssl = on`) and most TLS tests use.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| Pki::new("main"))
}
