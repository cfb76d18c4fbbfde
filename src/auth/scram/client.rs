//! SCRAM-SHA-256 client side, sans-IO, for logging in to Postgres with a *ClientKey* instead
//! of a password: what the proxy does for users looked up by auth_query, whose plaintext it
//! never has.
//!
//! RFC 5802 lets a client that knows ClientKey and StoredKey prove itself without the password:
//! ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage). The ClientKey comes from the
//! user's own successful login to the proxy (`ScramServer::client_key`); StoredKey, ServerKey,
//! salt and iteration count come from the verifier that login was checked against. The keys
//! only fit the server's verifier if its salt and iteration count are the ones we have: if they
//! differ the role's password changed since we fetched the verifier, and we say so instead of
//! sending a proof that cannot verify.
//!
//! Not here: the password-based client (`postgres_protocol`'s, used for configured
//! passwords), message framing and the login state machine (`auth::upstream`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::{ScramVerifier, hmac_sha256};

/// Raw client nonce length, as libpq (`SCRAM_RAW_NONCE_LEN`).
const CLIENT_NONCE_LEN: usize = 18;

/// What logging in with a ClientKey needs: the key and the verifier it belongs to.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub client_key: [u8; 32],
    pub verifier: ScramVerifier,
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The ClientKey logs in as the user: never print it.
        f.debug_struct("ScramKeys")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

/// Why the exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server's message is not what SCRAM allows at this point.
    #[error("invalid SCRAM message from the server: {0}")]
    Protocol(String),
    /// The server's salt or iteration count differ from the verifier's: the role's password
    /// changed after the verifier was fetched, so our ClientKey is stale.
    #[error(
        "the server's SCRAM salt or iteration count differ from the verifier the ClientKey \
         belongs to: the password changed since the verifier was fetched"
    )]
    VerifierChanged,
    /// The server's signature did not verify: it does not know the verifier.
    #[error("the server's SCRAM signature did not verify")]
    BadSignature,
    /// The server ended the exchange with `e=...`.
    #[error("the server refused the SCRAM exchange: {0}")]
    Server(String),
}

enum State {
    /// client-first-message sent; waiting for server-first.
    First,
    /// client-final sent; waiting for server-final, which must carry this signature.
    Final { server_signature: [u8; 32] },
    /// Finished (successfully or not).
    Done,
}

/// One client-side exchange with a ClientKey.
pub struct KeyClient {
    keys: ScramKeys,
    /// client-first-message-bare, the start of AuthMessage.
    first_bare: String,
    nonce: String,
    state: State,
}

impl KeyClient {
    /// Starts an exchange with a fresh random nonce. The user name in the message is empty,
    /// as libpq sends it: Postgres authenticates the StartupMessage's user.
    pub fn new(keys: ScramKeys) -> Self {
        let mut raw = [0u8; CLIENT_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut raw);
        Self::with_nonce(keys, "", &B64.encode(raw))
    }

    /// [`Self::new`] with a chosen user name and nonce (tests use RFC 7677's vector).
    fn with_nonce(keys: ScramKeys, user: &str, nonce: &str) -> Self {
        KeyClient {
            keys,
            first_bare: format!("n={user},r={nonce}"),
            nonce: nonce.to_owned(),
            state: State::First,
        }
    }

    /// The client-first-message (the SASLInitialResponse data): no channel binding (`n`).
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare).into_bytes()
    }

    /// Takes the server-first-message (SASLContinue data) and returns the client-final-message
    /// with the proof.
    pub fn server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ClientError> {
        if !matches!(
            std::mem::replace(&mut self.state, State::Done),
            State::First
        ) {
            return Err(bad("unexpected server-first-message"));
        }
        let msg = std::str::from_utf8(data).map_err(|_| bad("not valid UTF-8"))?;
        let mut attrs = msg.split(',');
        let nonce = value(attrs.next(), 'r')?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(bad("the server nonce does not extend ours"));
        }
        if !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(bad("the server nonce is not printable"));
        }
        let salt = B64
            .decode(value(attrs.next(), 's')?)
            .map_err(|_| bad("the salt is not base64"))?;
        let iterations: u32 = value(attrs.next(), 'i')?
            .parse()
            .map_err(|_| bad("the iteration count is not a number"))?;
        let v = &self.keys.verifier;
        // Public values (the server just sent them in clear): a plain comparison is fine.
        if salt != v.salt || iterations != v.iterations {
            return Err(ClientError::VerifierChanged);
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{msg},{without_proof}", self.first_bare);
        let signature = hmac_sha256(&v.stored_key, &[auth_message.as_bytes()]);
        let mut proof = self.keys.client_key;
        for (p, s) in proof.iter_mut().zip(signature) {
            *p ^= s;
        }
        self.state = State::Final {
            server_signature: hmac_sha256(&v.server_key, &[auth_message.as_bytes()]),
        };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Takes the server-final-message (SASLFinal data) and checks the server's signature:
    /// only then has the server proven it knows the verifier.
    pub fn server_final(&mut self, data: &[u8]) -> Result<(), ClientError> {
        let State::Final { server_signature } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(bad("unexpected server-final-message"));
        };
        let msg = std::str::from_utf8(data).map_err(|_| bad("not valid UTF-8"))?;
        if let Some(e) = msg.strip_prefix("e=") {
            return Err(ClientError::Server(e.to_owned()));
        }
        let sig = value(msg.split(',').next(), 'v')?;
        // Garbled or wrong, the server has not proven it knows the verifier.
        let sig = B64.decode(sig).unwrap_or_default();
        if bool::from(sig.ct_eq(&server_signature)) {
            Ok(())
        } else {
            Err(ClientError::BadSignature)
        }
    }
}

fn bad(why: &str) -> ClientError {
    ClientError::Protocol(why.to_owned())
}

/// The value of attribute `<name>=...`.
fn value(a: Option<&str>, name: char) -> Result<&str, ClientError> {
    a.and_then(|a| a.strip_prefix(name))
        .and_then(|a| a.strip_prefix('='))
        .ok_or_else(|| ClientError::Protocol(format!("expected attribute '{name}='")))
}

#[cfg(test)]
mod tests {
    use super::super::{ScramServer, hi};
    use super::*;

    /// RFC 7677's user "user" / password "pencil", as keys.
    fn rfc_keys() -> ScramKeys {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = ScramVerifier::from_password("pencil", &salt, 4096);
        ScramKeys {
            client_key: hmac_sha256(&hi(b"pencil", &salt, 4096), &[b"Client Key"]),
            verifier,
        }
    }

    /// RFC 7677 section 3, client side: the same proof as a password-based client.
    #[test]
    fn rfc7677_vector() {
        let mut c = KeyClient::with_nonce(rfc_keys(), "user", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let fin = c
            .server_first(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        assert_eq!(
            fin,
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
    }

    fn run(keys: ScramKeys, server_verifier: ScramVerifier) -> Result<(), ClientError> {
        let mut client = KeyClient::new(keys);
        let mut server = ScramServer::new(server_verifier, true);
        let first = server.client_first(&client.client_first()).unwrap();
        let fin = client.server_first(&first)?;
        let sig = server
            .client_final(&fin)
            .map_err(|e| ClientError::Server(e.to_string()))?;
        client.server_final(&sig)
    }

    #[test]
    fn logs_in_to_our_own_server_with_the_key_alone() {
        let keys = rfc_keys();
        run(keys.clone(), keys.verifier.clone()).unwrap();
        // A key recovered by our server from a password login works the same.
        let salt = b"0123456789abcdef";
        let verifier = ScramVerifier::from_password("s3cret", salt, 4096);
        let mut pw_client = postgres_protocol::authentication::sasl::ScramSha256::new(
            b"s3cret",
            postgres_protocol::authentication::sasl::ChannelBinding::unsupported(),
        );
        let mut server = ScramServer::new(verifier.clone(), true);
        let first = server.client_first(pw_client.message()).unwrap();
        pw_client.update(&first).unwrap();
        server.client_final(pw_client.message()).unwrap();
        let client_key = server.client_key().unwrap();
        run(
            ScramKeys {
                client_key,
                verifier: verifier.clone(),
            },
            verifier,
        )
        .unwrap();
    }

    #[test]
    fn a_changed_password_is_named() {
        let keys = rfc_keys();
        // Same password, new salt: what ALTER ROLE ... PASSWORD does.
        let new = ScramVerifier::from_password("pencil", b"another-salt-16b", 4096);
        assert_eq!(run(keys.clone(), new), Err(ClientError::VerifierChanged));
        let more = ScramVerifier::from_password("pencil", &keys.verifier.salt, 8192);
        assert_eq!(run(keys, more), Err(ClientError::VerifierChanged));
    }

    #[test]
    fn a_wrong_key_is_refused_by_the_server() {
        let mut keys = rfc_keys();
        keys.client_key[0] ^= 1;
        let v = keys.verifier.clone();
        assert!(matches!(run(keys, v), Err(ClientError::Server(_))));
    }

    #[test]
    fn server_messages_are_checked() {
        let keys = rfc_keys();
        let first_ok = "r=abcXYZ,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let mut c = KeyClient::with_nonce(keys.clone(), "", "abc");
        c.server_first(first_ok.as_bytes()).unwrap();
        // A signature from someone without ServerKey.
        assert_eq!(
            c.server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(ClientError::BadSignature)
        );
        for bad_first in [
            "r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "r=xyzabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "s=W22ZaJ0SNY7soEsUEjb6gQ==,r=abcX,i=4096",
            "r=abcX,s=!!,i=4096",
            "r=abcX,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=x",
            "r=abcX,s=W22ZaJ0SNY7soEsUEjb6gQ==",
            "r=abc\u{7f},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "",
        ] {
            let mut c = KeyClient::with_nonce(keys.clone(), "", "abc");
            assert!(
                matches!(
                    c.server_first(bad_first.as_bytes()),
                    Err(ClientError::Protocol(_))
                ),
                "{bad_first}"
            );
            // The exchange is over.
            assert!(c.server_final(b"v=AAAA").is_err());
        }
        let mut c = KeyClient::with_nonce(keys.clone(), "", "abc");
        c.server_first(first_ok.as_bytes()).unwrap();
        assert_eq!(
            c.server_final(b"e=invalid-proof"),
            Err(ClientError::Server("invalid-proof".into()))
        );
        let mut c = KeyClient::with_nonce(keys, "", "abc");
        assert!(c.server_final(b"v=AAAA").is_err());
        assert!(c.server_first(first_ok.as_bytes()).is_err());
    }
}
