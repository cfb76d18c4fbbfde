//! SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, sans-IO: stored verifiers and the
//! two-step exchange with a client. The caller moves the bytes (`auth::client`).
//!
//! Written by hand on `hmac`/`sha2` so that every byte a client sends goes through our own
//! bounds-checked parsing (no panics on garbage) and the proof check is constant-time
//! (`subtle`).
//!
//! Channel binding (RFC 5929 `tls-server-end-point`, RFC 7677's `SCRAM-SHA-256-PLUS`) is
//! offered when the caller has a TLS connection and hands us its binding data (the hash of our
//! certificate): a client that binds proves it talks to the holder of our certificate, not to a
//! man in the middle relaying the exchange. The rules are Postgres's:
//! - over TLS, `SCRAM-SHA-256-PLUS` and `SCRAM-SHA-256` are advertised; PLUS requires the
//!   `p=tls-server-end-point` flag and `c=` must carry our binding data; plain SCRAM requires
//!   `n` (a client that cannot bind); `y` (the client could bind but thinks we cannot) is a
//!   downgrade attack signal and refused;
//! - without TLS only `SCRAM-SHA-256` exists: `p=` is refused, `y` is fine.
//!
//! The client side with a ClientKey instead of a password (for auth_query users) is
//! [`client`].
//!
//! Not here: which secret to use, unknown users, message framing (all in `auth::client`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthError;

pub mod client;

/// Iterations for verifiers we build ourselves; Postgres's default `scram_iterations`.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Salt length for verifiers we build ourselves; Postgres's `SCRAM_DEFAULT_SALT_LEN`.
pub const DEFAULT_SALT_LEN: usize = 16;
/// Raw server nonce length; Postgres's `SCRAM_RAW_NONCE_LEN`.
const SERVER_NONCE_LEN: usize = 18;
/// The mechanism without channel binding, always offered.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// The mechanism with channel binding, offered only over TLS.
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The one channel-binding type we (and Postgres) support.
const CHANNEL_BINDING_TYPE: &str = "tls-server-end-point";

/// A stored SCRAM-SHA-256 verifier, as in `pg_authid.rolpassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys let anyone impersonate the server, and StoredKey enables offline guessing:
        // never log them.
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramVerifier {
    /// Parses `SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>`, the format
    /// Postgres stores and `postgres_protocol::password::scram_sha_256` produces. Anything off
    /// is an error naming what is wrong (never the secret itself).
    pub fn parse(s: &str) -> Result<Self, AuthError> {
        let bad = |why: &str| {
            AuthError::InvalidSecret(format!("malformed SCRAM-SHA-256 verifier: {why}"))
        };
        let rest = s
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or_else(|| bad("missing the SCRAM-SHA-256$ prefix"))?;
        let (iter_salt, keys) = rest.split_once('$').ok_or_else(|| bad("missing '$'"))?;
        let (iter, salt) = iter_salt
            .split_once(':')
            .ok_or_else(|| bad("missing ':' after the iteration count"))?;
        let (stored, server) = keys
            .split_once(':')
            .ok_or_else(|| bad("missing ':' between the keys"))?;
        let iterations: u32 = iter
            .parse()
            .map_err(|_| bad("the iteration count is not a number"))?;
        if iterations == 0 {
            return Err(bad("the iteration count is zero"));
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| bad("the salt is not base64"))?;
        if salt.is_empty() {
            return Err(bad("the salt is empty"));
        }
        let key = |k: &str, what: &str| -> Result<[u8; 32], AuthError> {
            let v = B64.decode(k).map_err(|_| bad(what))?;
            <[u8; 32]>::try_from(v.as_slice()).map_err(|_| bad(what))
        };
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key: key(stored, "StoredKey is not 32 bytes of base64")?,
            server_key: key(server, "ServerKey is not 32 bytes of base64")?,
        })
    }

    /// Builds the verifier for a plaintext password. SASLprep as Postgres does it: when the
    /// password cannot be prepared (prohibited characters), the raw bytes are used, so the
    /// result matches what Postgres and libpq compute for the same password.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Self {
        let prepared = stringprep::saslprep(password);
        let bytes = match &prepared {
            Ok(p) => p.as_bytes(),
            Err(_) => password.as_bytes(),
        };
        let salted = hi(bytes, salt, iterations);
        let client_key = hmac_sha256(&salted, &[b"Client Key"]);
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac_sha256(&salted, &[b"Server Key"]),
        }
    }

    /// The verifier for a user whose configured secret is a plaintext password. Its salt is
    /// the same as [`ScramVerifier::mock`]'s for that name, so a user with a plaintext secret,
    /// a user without one and an unknown user all show a stable salt across attempts. Costs
    /// `DEFAULT_ITERATIONS` HMACs: callers should build it once (e.g. at config load).
    pub fn for_plain_password(username: &str, password: &str, secret: &[u8; 32]) -> Self {
        Self::from_password(password, &mock_salt(username, secret), DEFAULT_ITERATIONS)
    }

    /// Fake but stable verifier for an unknown user, so the exchange looks the same as for a
    /// real user (no user enumeration): salt = HMAC(secret, username), the keys likewise
    /// derived, nothing random, so repeated attempts see the same salt as for a real user.
    pub fn mock(username: &str, secret: &[u8; 32]) -> Self {
        ScramVerifier {
            iterations: DEFAULT_ITERATIONS,
            salt: mock_salt(username, secret),
            stored_key: hmac_sha256(secret, &[b"lagoon mock StoredKey\0", username.as_bytes()]),
            server_key: hmac_sha256(secret, &[b"lagoon mock ServerKey\0", username.as_bytes()]),
        }
    }

    /// The stored form, `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn encode(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

fn mock_salt(username: &str, secret: &[u8; 32]) -> Vec<u8> {
    hmac_sha256(secret, &[username.as_bytes()])
        .iter()
        .take(DEFAULT_SALT_LEN)
        .copied()
        .collect()
}

/// HMAC-SHA-256 over the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // Infallible: HMAC accepts keys of any length (long ones are hashed). Not peer-reachable.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// `Hi()` of RFC 5802: PBKDF2-HMAC-SHA-256 with one output block. Zero iterations count as one.
pub(crate) fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut u = hmac_sha256(password, &[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac_sha256(password, &[&u]);
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

/// Where the exchange stands.
enum State {
    /// Waiting for the client-first-message.
    Initial,
    /// Server-first-message sent; waiting for the client-final-message.
    SentFirst {
        /// What the client must echo (base64) in `c=`: its GS2 header (`n,,` or `y,,`), or for
        /// PLUS the header followed by the connection's binding data.
        expected_cbind: Vec<u8>,
        /// Client nonce followed by ours.
        nonce: String,
        /// client-first-message-bare "," server-first-message, the start of AuthMessage.
        auth_prefix: String,
    },
    /// Finished (successfully or not); any further message is a protocol error.
    Done,
}

/// The server side of one SCRAM-SHA-256 exchange.
pub struct ScramServer {
    verifier: ScramVerifier,
    succeed_possible: bool,
    /// The connection's `tls-server-end-point` data; `Some` means PLUS is offered.
    channel_binding: Option<Vec<u8>>,
    /// The client chose `SCRAM-SHA-256-PLUS` ([`ScramServer::select_mechanism`]).
    plus_selected: bool,
    /// ClientKey recovered from the proof, once it verified.
    client_key: Option<[u8; 32]>,
    state: State,
}

impl ScramServer {
    /// `succeed_possible = false` for unknown users (with a [`ScramVerifier::mock`]): the
    /// exchange runs fully, doing the same work, and fails at the end like a wrong password.
    pub fn new(verifier: ScramVerifier, succeed_possible: bool) -> Self {
        ScramServer {
            verifier,
            succeed_possible,
            channel_binding: None,
            plus_selected: false,
            client_key: None,
            state: State::Initial,
        }
    }

    /// Offers `SCRAM-SHA-256-PLUS` with `data`, the connection's `tls-server-end-point`
    /// binding (the hash of our certificate). Without it only plain SCRAM is offered.
    pub fn with_channel_binding(mut self, data: &[u8]) -> Self {
        self.channel_binding = Some(data.to_vec());
        self
    }

    /// The mechanisms to advertise in AuthenticationSASL, preferred first (as Postgres
    /// lists them).
    pub fn mechanisms(&self) -> &'static [&'static str] {
        if self.channel_binding.is_some() {
            &[MECHANISM_PLUS, MECHANISM]
        } else {
            &[MECHANISM]
        }
    }

    /// Records the mechanism named in SASLInitialResponse; it must be one we advertised.
    /// Not calling this means plain `SCRAM-SHA-256`.
    pub fn select_mechanism(&mut self, mechanism: &[u8]) -> Result<(), AuthError> {
        match self.mechanisms().iter().find(|m| m.as_bytes() == mechanism) {
            Some(m) => {
                self.plus_selected = *m == MECHANISM_PLUS;
                Ok(())
            }
            None => {
                self.state = State::Done;
                Err(AuthError::Protocol(
                    "client selected an invalid SASL authentication mechanism".into(),
                ))
            }
        }
    }

    /// The ClientKey the client proved it knows, after [`Self::client_final`] succeeded:
    /// what the proxy can log in to Postgres with for a user whose password it never holds.
    /// `None` before, after a failure, and always for an exchange that cannot succeed.
    pub fn client_key(&self) -> Option<[u8; 32]> {
        self.client_key
    }

    /// Takes the data of SASLInitialResponse (after the mechanism name) and returns the
    /// server-first-message. The channel-binding flag must agree with the mechanism and with
    /// what we offered (see the module docs).
    pub fn client_first(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let mut raw = [0u8; SERVER_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut raw);
        self.client_first_with_nonce(data, &B64.encode(raw))
    }

    /// [`Self::client_first`] with a chosen server nonce (tests use RFC 7677's vector).
    fn client_first_with_nonce(
        &mut self,
        data: &[u8],
        server_nonce: &str,
    ) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, State::Initial) {
            self.state = State::Done;
            return Err(malformed("unexpected client-first-message"));
        }
        // Whatever happens next, this exchange cannot be restarted.
        self.state = State::Done;
        let msg = text(data)?;
        let (gs2_header, bare) = split_gs2_header(msg)?;
        let expected_cbind = self.check_binding(gs2_header)?;
        let client_nonce = parse_client_first_bare(bare)?;
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        self.state = State::SentFirst {
            expected_cbind,
            nonce,
            auth_prefix: format!("{bare},{server_first}"),
        };
        Ok(server_first.into_bytes())
    }

    /// Takes the data of SASLResponse and returns the server-final-message (`v=...`) when the
    /// proof verifies. A wrong proof is [`AuthError::Rejected`]; a malformed message is
    /// [`AuthError::Protocol`].
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let State::SentFirst {
            expected_cbind,
            nonce,
            auth_prefix,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(malformed("unexpected client-final-message"));
        };
        let msg = text(data)?;
        let (without_proof, proof_b64) = msg
            .rsplit_once(",p=")
            .ok_or_else(|| malformed("missing proof"))?;
        let proof = B64
            .decode(proof_b64)
            .map_err(|_| malformed("proof is not base64"))?;
        let proof = <[u8; 32]>::try_from(proof.as_slice())
            .map_err(|_| malformed("proof is not 32 bytes"))?;

        let mut attrs = without_proof.split(',');
        let cbind = attr(attrs.next(), 'c')?;
        let cbind = B64
            .decode(cbind)
            .map_err(|_| malformed("channel binding is not base64"))?;
        // Constant-time: with PLUS this is the certificate hash, and a man in the middle
        // must not learn how much of his own he got right.
        if !bool::from(cbind.ct_eq(&expected_cbind)) {
            return Err(malformed("unexpected channel binding data"));
        }
        if attr(attrs.next(), 'r')? != nonce {
            return Err(malformed("nonce mismatch"));
        }
        for ext in attrs {
            // Extensions are allowed and ignored (as Postgres does), but must be well-formed.
            attr(Some(ext), '*')?;
        }

        let auth_message = format!("{auth_prefix},{without_proof}");
        let signature = hmac_sha256(&self.verifier.stored_key, &[auth_message.as_bytes()]);
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(signature) {
            *k ^= s;
        }
        let computed: [u8; 32] = Sha256::digest(client_key).into();
        // Same work whether or not success is possible; only the final bit differs.
        let matches = computed.ct_eq(&self.verifier.stored_key);
        if !bool::from(matches & subtle::Choice::from(u8::from(self.succeed_possible))) {
            return Err(AuthError::Rejected);
        }
        self.client_key = Some(client_key);
        let server_sig = hmac_sha256(&self.verifier.server_key, &[auth_message.as_bytes()]);
        Ok(format!("v={}", B64.encode(server_sig)).into_bytes())
    }

    /// Checks the GS2 header's channel-binding flag against the chosen mechanism and what we
    /// offered; returns what `c=` must decode to. Messages follow Postgres's.
    fn check_binding(&self, gs2: Gs2) -> Result<Vec<u8>, AuthError> {
        let negotiation = |detail: &str| {
            AuthError::Protocol(format!("SCRAM channel binding negotiation error: {detail}"))
        };
        match (gs2, &self.channel_binding, self.plus_selected) {
            (Gs2::Binds(kind), Some(data), true) => {
                if kind != CHANNEL_BINDING_TYPE {
                    return Err(AuthError::Protocol(format!(
                        "unsupported SCRAM channel-binding type \"{}\"",
                        kind.escape_default()
                    )));
                }
                let mut expected = gs2.header().into_bytes();
                expected.extend_from_slice(data);
                Ok(expected)
            }
            (Gs2::Binds(_), _, false) => Err(malformed(if self.channel_binding.is_some() {
                "the client selected SCRAM-SHA-256 without channel binding, but the SCRAM \
                 message includes channel binding data"
            } else {
                "the client selected SCRAM-SHA-256-PLUS channel binding, but the server does \
                 not support it on this connection"
            })),
            (Gs2::NoBinding | Gs2::CouldBind, _, true) => Err(malformed(
                "the client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not \
                 include channel binding data",
            )),
            (Gs2::CouldBind, Some(_), false) => Err(negotiation(
                "the client supports SCRAM channel binding but thinks the server does not; \
                 however, this server does support channel binding",
            )),
            // Unreachable: PLUS cannot be selected unless offered (`select_mechanism`).
            (Gs2::Binds(_), None, true) => Err(malformed("channel binding is not offered")),
            (Gs2::NoBinding | Gs2::CouldBind, _, false) => Ok(gs2.header().into_bytes()),
        }
    }
}

/// The channel-binding flag of a GS2 header (RFC 5802 section 7), with an empty authzid.
#[derive(Clone, Copy)]
enum Gs2<'a> {
    /// `n`: the client does not support channel binding.
    NoBinding,
    /// `y`: the client supports it but thinks the server does not.
    CouldBind,
    /// `p=<type>`: the client binds with this type.
    Binds(&'a str),
}

impl Gs2<'_> {
    /// The header as sent, `n,,` / `y,,` / `p=<type>,,`.
    fn header(self) -> String {
        match self {
            Gs2::NoBinding => "n,,".to_owned(),
            Gs2::CouldBind => "y,,".to_owned(),
            Gs2::Binds(kind) => format!("p={kind},,"),
        }
    }
}

fn malformed(why: &str) -> AuthError {
    AuthError::Protocol(format!("malformed SCRAM message: {why}"))
}

/// SCRAM messages are printable text; no NULs (Postgres reads them as C strings).
fn text(data: &[u8]) -> Result<&str, AuthError> {
    let s = std::str::from_utf8(data).map_err(|_| malformed("not valid UTF-8"))?;
    if s.contains('\0') {
        return Err(malformed("contains a NUL byte"));
    }
    Ok(s)
}

/// Splits the GS2 header off a client-first-message: its channel-binding flag and the
/// client-first-message-bare.
fn split_gs2_header(msg: &str) -> Result<(Gs2<'_>, &str), AuthError> {
    let (flag, rest) = msg
        .split_once(',')
        .ok_or_else(|| malformed("bad GS2 header"))?;
    let gs2 = match flag {
        "n" => Gs2::NoBinding,
        "y" => Gs2::CouldBind,
        _ => match flag.strip_prefix("p=") {
            Some(kind) if !kind.is_empty() => Gs2::Binds(kind),
            _ => return Err(malformed("bad GS2 header")),
        },
    };
    match rest.strip_prefix(',') {
        Some(bare) => Ok((gs2, bare)),
        None if rest.starts_with("a=") => {
            Err(malformed("authorization identities (a=) are not supported"))
        }
        None => Err(malformed("bad GS2 header")),
    }
}

/// Parses client-first-message-bare, returning the client nonce. The user name (`n=`) is
/// ignored, as Postgres does: the StartupMessage's user is the one authenticated.
fn parse_client_first_bare(bare: &str) -> Result<&str, AuthError> {
    let mut attrs = bare.split(',');
    let first = attrs.next();
    if first.is_some_and(|a| a.starts_with("m=")) {
        return Err(malformed("mandatory extensions (m=) are not supported"));
    }
    attr(first, 'n')?;
    let nonce = attr(attrs.next(), 'r')?;
    if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(malformed("the client nonce is empty or not printable"));
    }
    for ext in attrs {
        attr(Some(ext), '*')?;
    }
    Ok(nonce)
}

/// Checks `a` is `<name>=<value>` and returns the value; `'*'` accepts any letter as name.
fn attr(a: Option<&str>, name: char) -> Result<&str, AuthError> {
    let a = a.ok_or_else(|| malformed("missing attribute"))?;
    let mut chars = a.chars();
    match (chars.next(), chars.next()) {
        (Some(n), Some('=')) if n == name || (name == '*' && n.is_ascii_alphabetic()) => {
            Ok(chars.as_str())
        }
        _ => Err(malformed(&format!("expected attribute '{name}='"))),
    }
}

#[cfg(test)]
mod tests;
/// Deterministic "no panic on random input" checks, the CI-sized cousin of `fuzz/` target
/// `scram`: generated client messages and stored secrets never panic, a correct proof is
/// accepted whatever extensions surround it, and parsed verifiers round-trip.
#[cfg(test)]
mod random_input_tests {
    use super::*;
    use crate::auth::Secret;

    /// The generator must reach each interesting case (see the final assertion) at least this
    /// often, so that it cannot quietly stop exercising the code under test.
    const LOTS: usize = 40;

    use crate::test_rng::Rng;

    /// Builds SCRAM-ish messages out of pieces.
    trait Pieces {
        fn text(&mut self, pieces: &[&str], max: usize) -> String;
    }

    impl Pieces for Rng {
        /// A string of up to `max` random pieces.
        fn text(&mut self, pieces: &[&str], max: usize) -> String {
            (0..self.below(max + 1))
                .map(|_| pieces[self.below(pieces.len())])
                .collect()
        }
    }

    const SALT: &[u8] = b"salt1234salt1234";
    /// Few iterations: the exchange does not depend on the count, and the test stays fast.
    const ITERATIONS: u32 = 64;
    const SERVER_NONCE: &str = "srvNONCE+/=";

    const FIRST: &[&str] = &[
        "n,,",
        "y,,",
        "p=tls,,",
        "p=tls-server-end-point,,",
        "p=,,",
        "n,a=u,,",
        "n=",
        "n=user",
        "r=",
        "r=abc",
        "r=\u{7f}",
        ",",
        "m=1",
        "e=x",
        "=",
        "\0",
        "é",
        " ",
        "x",
    ];
    const FINAL: &[&str] = &[
        "c=biws", "c=eSws", "c=!!", "r=", "<nonce>", ",", "e=1", "p=", ",p=AAAA", "=", "\0", "é",
        "x",
    ];
    /// A stand-in for a certificate hash (`tls-server-end-point` data).
    const BINDING: &[u8] = b"\x00cert-hash\xff";
    const GS2: &[&str] = &["n,,", "y,,", "p=tls-server-end-point,,", "p=tls-unique,,"];

    /// Whether Postgres's rules accept GS2 header `gs2` for this offer and mechanism.
    fn binding_accepted(gs2: &str, offered: bool, plus: bool) -> bool {
        match gs2 {
            "n,," => !plus,
            "y,," => !plus && !offered,
            "p=tls-server-end-point,," => plus && offered,
            _ => false,
        }
    }

    #[test]
    fn random_exchanges_never_panic() {
        let verifier = ScramVerifier::from_password("pw", SALT, ITERATIONS);
        let client_key = hmac_sha256(&hi(b"pw", SALT, ITERATIONS), &[b"Client Key"]);
        let mut rng = Rng(0x6A09_E667_F3BC_C908);
        let (mut accepted, mut accepted_plus) = (0, 0);
        for _ in 0..4000 {
            let succeed_possible = rng.below(4) != 0;
            let mut server = ScramServer::new(verifier.clone(), succeed_possible);
            // Half over "TLS" (PLUS offered); the mechanism may be either, offered or not.
            let offered = rng.below(2) == 0;
            if offered {
                server = server.with_channel_binding(BINDING);
            }
            let plus = rng.below(2) == 0;
            let mechanism = if plus { MECHANISM_PLUS } else { MECHANISM };
            if server.select_mechanism(mechanism.as_bytes()).is_err() {
                assert!(plus && !offered);
                assert!(server.client_first(b"n,,n=,r=abc").is_err());
                continue;
            }
            assert!(offered || !plus);
            // Half the time the header that fits the mechanism, else any.
            let gs2_header = match (rng.below(2), plus) {
                (0, true) => GS2[2],
                (0, false) => GS2[0],
                _ => rng.pick(GS2),
            };
            let first = match rng.below(4) {
                0 => rng.text(FIRST, 8),
                1 => format!("{gs2_header}n=,r={}", rng.text(FIRST, 3)),
                _ => format!(
                    "{gs2_header}n=u,r=abc{}",
                    rng.text(&["~", ",e=1", ",f=é"], 2)
                ),
            };
            let Ok(server_first) = server.client_first_with_nonce(first.as_bytes(), SERVER_NONCE)
            else {
                assert!(server.client_final(b"c=biws,r=x,p=").is_err());
                continue;
            };
            let header = GS2
                .iter()
                .find(|h| first.starts_with(**h))
                .expect("only a known GS2 header gets past client-first");
            assert!(
                binding_accepted(header, offered, plus),
                "{header} accepted (offered {offered}, plus {plus})"
            );
            let server_first = String::from_utf8(server_first).unwrap();
            let nonce = &server_first[2..server_first.find(",s=").unwrap()];
            assert!(nonce.ends_with(SERVER_NONCE));
            let mut cbind = header.as_bytes().to_vec();
            if header.starts_with("p=") {
                // Now and then the wrong certificate (a man in the middle).
                let data: &[u8] = if rng.below(8) == 0 { b"other" } else { BINDING };
                cbind.extend_from_slice(data);
            }
            let gs2 = B64.encode(&cbind);
            let body = match rng.below(4) {
                0 => rng.text(FINAL, 8),
                1 => format!("c={gs2},r=<nonce>{}", rng.text(FINAL, 2)),
                _ => format!("c={gs2},r=<nonce>{}", rng.text(&[",e=1", ",x=é"], 1)),
            }
            .replace("<nonce>", nonce);
            let with_proof = rng.below(2) == 0;
            let bare = &first[header.len()..];
            let fin = if with_proof {
                let auth = format!("{bare},{server_first},{body}");
                let sig = hmac_sha256(&verifier.stored_key, &[auth.as_bytes()]);
                let mut proof = client_key;
                for (p, s) in proof.iter_mut().zip(sig) {
                    *p ^= s;
                }
                format!("{body},p={}", B64.encode(proof))
            } else {
                body
            };
            match server.client_final(fin.as_bytes()) {
                Ok(v) => {
                    assert!(succeed_possible && with_proof, "{fin:?}");
                    assert!(
                        fin.starts_with(&format!(
                            "c={},",
                            B64.encode(
                                [header.as_bytes(), if plus { BINDING } else { b"" }].concat()
                            )
                        )),
                        "accepted a wrong binding: {fin:?}"
                    );
                    let (without_proof, _) = fin.rsplit_once(",p=").unwrap();
                    let auth = format!("{bare},{server_first},{without_proof}");
                    let sig = hmac_sha256(&verifier.server_key, &[auth.as_bytes()]);
                    assert_eq!(v, format!("v={}", B64.encode(sig)).into_bytes());
                    assert_eq!(server.client_key(), Some(client_key));
                    accepted += 1;
                    accepted_plus += usize::from(plus);
                }
                Err(AuthError::Rejected) => {
                    assert!(
                        !(with_proof && succeed_possible),
                        "correct proof refused: {fin:?}"
                    );
                    assert_eq!(server.client_key(), None);
                }
                Err(e) => {
                    assert!(matches!(e, AuthError::Protocol(_)), "{e:?}");
                    assert_eq!(server.client_key(), None);
                }
            }
            assert!(server.client_final(fin.as_bytes()).is_err());
            assert!(server.client_first(first.as_bytes()).is_err());
        }
        assert!(
            accepted > 100 && accepted_plus > LOTS,
            "the generator must reach success, with and without binding: {accepted} \
             {accepted_plus}"
        );
    }

    #[test]
    fn random_secrets_parse_without_panic() {
        let good = ScramVerifier::from_password("pw", SALT, ITERATIONS).encode();
        // SCRAM-SHA-256$<iter>:<salt>$<stored>:<server>
        let (_, rest) = good.split_once('$').unwrap();
        let (iter_salt, keys) = rest.split_once('$').unwrap();
        let (_, salt) = iter_salt.split_once(':').unwrap();
        let (stored, server) = keys.split_once(':').unwrap();
        let iters = [
            "4096",
            "4096",
            "1",
            "+5",
            "04096",
            "0",
            "-1",
            "99999999999",
            "x",
            "",
        ];
        let salts = [salt, salt, "c2FsdA==", "c2FsdA", "", "!!!!"];
        let keys = [stored, server, stored, server, "AAAA", "", &stored[1..]];
        let pieces = [
            "SCRAM-SHA-256$",
            "$",
            ":",
            "4096",
            "=",
            "é",
            "md5",
            "0123456789abcdef",
            "ABCDEF",
            &good[14..],
            &good[..40],
        ];
        let mut rng = Rng(0xBB67_AE85_84CA_A73B);
        let (mut verifiers, mut md5s) = (0, 0);
        for _ in 0..3000 {
            let s = match rng.below(4) {
                0 => rng.text(&pieces, 8),
                1 => {
                    let len = [32, 32, 32, 31, 33][rng.below(5)];
                    // Now and then an uppercase digit, which makes it plaintext.
                    let hex = b"0123456789abcdef0123456789abcdefF";
                    let digits = (0..len).map(|_| char::from(hex[rng.below(hex.len())]));
                    "md5".to_owned() + &digits.collect::<String>()
                }
                _ => format!(
                    "SCRAM-SHA-256${}:{}${}:{}",
                    rng.pick(&iters),
                    rng.pick(&salts),
                    rng.pick(&keys),
                    rng.pick(&keys)
                ),
            };
            let v = ScramVerifier::parse(&s);
            if let Ok(v) = &v {
                assert!(v.iterations > 0 && !v.salt.is_empty());
                assert_eq!(ScramVerifier::parse(&v.encode()).ok().as_ref(), Some(v));
            }
            match Secret::parse(&s) {
                Ok(Secret::Scram(sv)) => {
                    assert_eq!(Some(&sv), v.as_ref().ok());
                    verifiers += 1;
                }
                Ok(Secret::Md5(m)) => {
                    assert_eq!((m.len(), &*m), (35, &*s));
                    md5s += 1;
                }
                Ok(Secret::Plain(p)) => {
                    assert_eq!(p, s);
                    assert!(!s.starts_with("SCRAM-SHA-256$"));
                }
                Err(e) => {
                    assert!(matches!(e, AuthError::InvalidSecret(_)));
                    assert!(s.starts_with("SCRAM-SHA-256$") && v.is_err());
                }
            }
        }
        // The generator must keep reaching the parsed cases.
        assert!(verifiers > LOTS && md5s > LOTS, "{verifiers} {md5s}");
    }
}
