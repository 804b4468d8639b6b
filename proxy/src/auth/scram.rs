//! The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it.
//!
//! This is a state machine without IO so it can be tested against a real client
//! implementation and reused whatever the transport. The caller sends
//! `AuthenticationSASL` offering [`MECHANISM`], feeds the client's `SASLInitialResponse`
//! to [`ScramExchange::client_first`] and its `SASLResponse` to
//! [`ScramExchange::client_final`], and relays the returned bytes in
//! `AuthenticationSASLContinue` / `AuthenticationSASLFinal`.
//!
//! Like PostgreSQL, the user name inside the SCRAM messages is ignored (the startup
//! packet's user is authoritative) and an unknown user gets a mock exchange that fails
//! only at the very end, exactly like a wrong password.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use maskgate_policy::{ScramVerifier, DEFAULT_ITERATIONS, KEY_LEN, SALT_LEN};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// The only mechanism we offer: no `-PLUS` until channel binding is wired to TLS.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// Random bytes in the server's part of the nonce (base64 makes it 24 characters).
const SERVER_NONCE_LEN: usize = 18;

/// Why an exchange ended without authenticating. Carries no secrets and no client data,
/// so it can be logged as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// Wrong password or unknown user; deliberately indistinguishable.
    #[error("password authentication failed")]
    AuthenticationFailed,
    /// The client broke the protocol; the proxy answers with SQLSTATE 08P01.
    #[error("malformed SCRAM message: {0}")]
    Protocol(&'static str),
}

/// What the exchange checks against; for an unknown user it is derived, not stored.
struct Credentials {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
}

enum State {
    AwaitingClientFirst,
    AwaitingClientFinal {
        /// `n,,` or `y,,`, which the client must echo base64-encoded in `c=`.
        gs2_header: &'static str,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Finished,
}

/// One client's SCRAM-SHA-256 login attempt.
pub struct ScramExchange {
    credentials: Credentials,
    /// False for the mock exchange: even a "correct" proof must fail.
    user_exists: Choice,
    state: State,
}

impl ScramExchange {
    /// Starts an exchange for `user`; `verifier` is `None` when the user is unknown.
    ///
    /// For an unknown user the salt is derived from `HMAC(server_secret, user)`, so
    /// repeated attempts see the same salt just as they would for a real account, and
    /// the iteration count is PostgreSQL's default so it does not stand out either.
    pub fn new(user: &str, verifier: Option<&ScramVerifier>, server_secret: &[u8; 32]) -> Self {
        match verifier {
            Some(verifier) => ScramExchange {
                credentials: Credentials {
                    iterations: verifier.iterations(),
                    salt: verifier.salt().to_vec(),
                    stored_key: *verifier.stored_key(),
                    server_key: *verifier.server_key(),
                },
                user_exists: Choice::from(1),
                state: State::AwaitingClientFirst,
            },
            None => ScramExchange {
                credentials: mock_credentials(user, server_secret),
                user_exists: Choice::from(0),
                state: State::AwaitingClientFirst,
            },
        }
    }

    /// Handles `SASLInitialResponse`; returns server-first-message.
    pub fn client_first(&mut self, mechanism: &str, message: &[u8]) -> Result<Vec<u8>, ScramError> {
        let mut nonce = [0u8; SERVER_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        self.client_first_with_server_nonce(mechanism, message, &STANDARD.encode(nonce))
    }

    fn client_first_with_server_nonce(
        &mut self,
        mechanism: &str,
        message: &[u8],
        server_nonce: &str,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::AwaitingClientFirst) {
            return Err(self.fail(ScramError::Protocol("unexpected SCRAM message")));
        }
        let parsed = parse_client_first(mechanism, message).map_err(|e| self.fail(e))?;

        let nonce = format!("{}{server_nonce}", parsed.client_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&self.credentials.salt),
            self.credentials.iterations
        );
        let reply = server_first.as_bytes().to_vec();
        self.state = State::AwaitingClientFinal {
            gs2_header: parsed.gs2_header,
            client_first_bare: parsed.bare.to_owned(),
            server_first,
            nonce,
        };
        Ok(reply)
    }

    /// Handles the client's final `SASLResponse`; returns server-final-message
    /// (`v=...`) only if the client proved it knows the password.
    pub fn client_final(&mut self, message: &[u8]) -> Result<Vec<u8>, ScramError> {
        let State::AwaitingClientFinal {
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, State::Finished)
        else {
            return Err(ScramError::Protocol("unexpected SCRAM message"));
        };
        let parsed = parse_client_final(message, gs2_header, &nonce)?;

        let auth_message = format!(
            "{client_first_bare},{server_first},{}",
            parsed.without_proof
        );
        let client_signature = hmac_sha256(&self.credentials.stored_key, auth_message.as_bytes());
        let mut client_key = parsed.proof;
        for (key, signature) in client_key.iter_mut().zip(client_signature) {
            *key ^= signature;
        }
        let computed: [u8; KEY_LEN] = Sha256::digest(client_key).into();
        let valid = computed.ct_eq(&self.credentials.stored_key) & self.user_exists;
        if !bool::from(valid) {
            return Err(ScramError::AuthenticationFailed);
        }

        let server_signature = hmac_sha256(&self.credentials.server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)).into_bytes())
    }

    fn fail(&mut self, error: ScramError) -> ScramError {
        self.state = State::Finished;
        error
    }
}

impl fmt::Debug for ScramExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::AwaitingClientFirst => "awaiting client-first-message",
            State::AwaitingClientFinal { .. } => "awaiting client-final-message",
            State::Finished => "finished",
        };
        f.debug_struct("ScramExchange")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

fn mock_credentials(user: &str, server_secret: &[u8; 32]) -> Credentials {
    let derive = |label: &[u8]| {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(server_secret).expect("HMAC accepts any key length");
        mac.update(label);
        mac.update(user.as_bytes());
        <[u8; KEY_LEN]>::from(mac.finalize().into_bytes())
    };
    Credentials {
        iterations: DEFAULT_ITERATIONS,
        salt: derive(b"maskgate mock SCRAM salt\0")[..SALT_LEN].to_vec(),
        stored_key: derive(b"maskgate mock SCRAM StoredKey\0"),
        server_key: derive(b"maskgate mock SCRAM ServerKey\0"),
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; KEY_LEN] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

struct ClientFirst<'a> {
    gs2_header: &'static str,
    bare: &'a str,
    client_nonce: &'a str,
}

fn parse_client_first<'a>(
    mechanism: &str,
    message: &'a [u8],
) -> Result<ClientFirst<'a>, ScramError> {
    if mechanism != MECHANISM {
        return Err(ScramError::Protocol(
            "client selected an invalid SASL authentication mechanism",
        ));
    }
    let message = std::str::from_utf8(message)
        .map_err(|_| ScramError::Protocol("SCRAM message is not valid UTF-8"))?;

    // gs2-header: cbind-flag "," [authzid] ","
    let (gs2_header, bare) = if let Some(bare) = message.strip_prefix("n,") {
        ("n,,", bare)
    } else if let Some(bare) = message.strip_prefix("y,") {
        // The client could do channel binding but thinks we cannot; true, we did not offer it.
        ("y,,", bare)
    } else if message.starts_with("p=") {
        return Err(ScramError::Protocol(
            "client requires channel binding, which the server did not offer",
        ));
    } else {
        return Err(ScramError::Protocol(
            "unexpected channel-binding flag in client-first-message",
        ));
    };
    if bare.starts_with("a=") {
        return Err(ScramError::Protocol(
            "client uses an authorization identity, which is not supported",
        ));
    }
    let bare = bare.strip_prefix(',').ok_or(ScramError::Protocol(
        "malformed gs2 header in client-first-message",
    ))?;

    let mut attributes = bare.split(',');
    match attributes.next() {
        Some(attribute) if attribute.starts_with("m=") => {
            return Err(ScramError::Protocol(
                "client requires an unsupported SCRAM extension",
            ))
        }
        // The user name is ignored: the startup packet's user is the one that counts.
        Some(attribute) if attribute.starts_with("n=") => {}
        _ => {
            return Err(ScramError::Protocol(
                "expected user name attribute in client-first-message",
            ))
        }
    }
    let client_nonce = attributes
        .next()
        .and_then(|attribute| attribute.strip_prefix("r="))
        .ok_or(ScramError::Protocol(
            "expected nonce attribute in client-first-message",
        ))?;
    if client_nonce.is_empty() || !client_nonce.bytes().all(is_nonce_char) {
        return Err(ScramError::Protocol(
            "invalid nonce in client-first-message",
        ));
    }
    if !attributes.all(is_extension) {
        return Err(ScramError::Protocol(
            "malformed attribute in client-first-message",
        ));
    }
    Ok(ClientFirst {
        gs2_header,
        bare,
        client_nonce,
    })
}

struct ClientFinal<'a> {
    without_proof: &'a str,
    proof: [u8; KEY_LEN],
}

fn parse_client_final<'a>(
    message: &'a [u8],
    gs2_header: &str,
    nonce: &str,
) -> Result<ClientFinal<'a>, ScramError> {
    let message = std::str::from_utf8(message)
        .map_err(|_| ScramError::Protocol("SCRAM message is not valid UTF-8"))?;

    // The proof is always the last attribute, and values never contain commas.
    let (without_proof, proof) = message
        .rsplit_once(',')
        .and_then(|(rest, last)| Some((rest, last.strip_prefix("p=")?)))
        .ok_or(ScramError::Protocol(
            "expected proof attribute at the end of client-final-message",
        ))?;

    let mut attributes = without_proof.split(',');
    let binding = attributes
        .next()
        .and_then(|attribute| attribute.strip_prefix("c="))
        .ok_or(ScramError::Protocol(
            "expected channel-binding attribute in client-final-message",
        ))?;
    let binding = STANDARD
        .decode(binding)
        .map_err(|_| ScramError::Protocol("invalid channel-binding data"))?;
    if binding != gs2_header.as_bytes() {
        return Err(ScramError::Protocol(
            "channel-binding data does not match client-first-message",
        ));
    }
    let final_nonce = attributes
        .next()
        .and_then(|attribute| attribute.strip_prefix("r="))
        .ok_or(ScramError::Protocol(
            "expected nonce attribute in client-final-message",
        ))?;
    if final_nonce != nonce {
        return Err(ScramError::Protocol(
            "unexpected nonce in client-final-message",
        ));
    }
    if !attributes.all(|attribute| is_extension(attribute) && !attribute.starts_with("p=")) {
        return Err(ScramError::Protocol(
            "malformed attribute in client-final-message",
        ));
    }
    let proof = STANDARD
        .decode(proof)
        .ok()
        .and_then(|proof| <[u8; KEY_LEN]>::try_from(proof).ok())
        .ok_or(ScramError::Protocol(
            "malformed proof in client-final-message",
        ))?;
    Ok(ClientFinal {
        without_proof,
        proof,
    })
}

/// RFC 5802 `printable`: visible ASCII except the comma.
fn is_nonce_char(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte) && byte != b','
}

/// RFC 5802 `attr-val`: one letter, `=`, then anything (the caller already split on commas).
fn is_extension(attribute: &str) -> bool {
    let bytes = attribute.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b'='
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const SECRET: [u8; 32] = [42; 32];

    fn protocol_error(result: Result<Vec<u8>, ScramError>) -> &'static str {
        match result {
            Err(ScramError::Protocol(why)) => why,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    /// Runs a whole exchange with the real client; returns the server's verdict and,
    /// on success, whether the client accepted the server's signature.
    fn login(
        verifier: Option<&ScramVerifier>,
        password: &str,
        binding: ChannelBinding,
    ) -> Result<(), ScramError> {
        let mut server = ScramExchange::new("alice", verifier, &SECRET);
        let mut client = ScramSha256::new(password.as_bytes(), binding);
        let server_first = server.client_first(MECHANISM, client.message())?;
        client
            .update(&server_first)
            .expect("client accepts server-first-message");
        let server_final = server.client_final(client.message())?;
        client
            .finish(&server_final)
            .expect("client accepts the server signature");
        Ok(())
    }

    fn pg_verifier(password: &str) -> ScramVerifier {
        postgres_protocol::password::scram_sha_256(password.as_bytes())
            .parse()
            .unwrap()
    }

    #[test]
    fn right_password_succeeds_with_our_verifiers() {
        let verifier = ScramVerifier::generate("correct horse", 4096);
        assert_eq!(
            login(
                Some(&verifier),
                "correct horse",
                ChannelBinding::unrequested()
            ),
            Ok(())
        );
        assert_eq!(
            login(
                Some(&verifier),
                "correct horse",
                ChannelBinding::unsupported()
            ),
            Ok(())
        );
    }

    #[test]
    fn right_password_succeeds_with_verifiers_made_by_the_client_library() {
        let verifier = pg_verifier("correct horse");
        assert_eq!(
            login(
                Some(&verifier),
                "correct horse",
                ChannelBinding::unrequested()
            ),
            Ok(())
        );
        assert_eq!(
            login(
                Some(&verifier),
                "correct horse",
                ChannelBinding::unsupported()
            ),
            Ok(())
        );
    }

    #[test]
    fn non_ascii_passwords_work_after_saslprep() {
        let password = "p\u{e4}ss\u{a0}w\u{f6}rd";
        let ours = ScramVerifier::generate(password, 4096);
        let theirs = pg_verifier(password);
        for verifier in [&ours, &theirs] {
            assert_eq!(
                login(Some(verifier), password, ChannelBinding::unrequested()),
                Ok(())
            );
        }
    }

    #[test]
    fn wrong_password_fails() {
        for verifier in [ScramVerifier::generate("right", 4096), pg_verifier("right")] {
            assert_eq!(
                login(Some(&verifier), "wrong", ChannelBinding::unrequested()),
                Err(ScramError::AuthenticationFailed)
            );
            assert_eq!(
                login(Some(&verifier), "", ChannelBinding::unsupported()),
                Err(ScramError::AuthenticationFailed)
            );
        }
    }

    #[test]
    fn unknown_user_fails_like_a_wrong_password() {
        assert_eq!(
            login(None, "anything", ChannelBinding::unrequested()),
            Err(ScramError::AuthenticationFailed)
        );
    }

    /// The part of server-first-message after the nonce: salt and iteration count.
    fn salt_and_iterations(user: &str, secret: &[u8; 32]) -> String {
        let mut server = ScramExchange::new(user, None, secret);
        let client = ScramSha256::new(b"pw", ChannelBinding::unsupported());
        let reply = server.client_first(MECHANISM, client.message()).unwrap();
        let reply = String::from_utf8(reply).unwrap();
        reply.split_once(",s=").unwrap().1.to_owned()
    }

    #[test]
    fn unknown_user_server_first_message_is_stable_and_looks_real() {
        let first = salt_and_iterations("mallory", &SECRET);
        assert_eq!(salt_and_iterations("mallory", &SECRET), first);
        assert_ne!(salt_and_iterations("trent", &SECRET), first);
        assert_ne!(salt_and_iterations("mallory", &[7; 32]), first);

        let (salt, iterations) = first.split_once(",i=").unwrap();
        assert_eq!(STANDARD.decode(salt).unwrap().len(), SALT_LEN);
        assert_eq!(iterations, DEFAULT_ITERATIONS.to_string());
    }

    #[test]
    fn server_nonce_is_fresh_and_extends_the_client_nonce() {
        let verifier = ScramVerifier::generate("pw", 1);
        let client = ScramSha256::new(b"pw", ChannelBinding::unsupported());
        let client_nonce = std::str::from_utf8(client.message())
            .unwrap()
            .split_once("r=")
            .unwrap()
            .1
            .to_owned();
        let nonce_of = |reply: Vec<u8>| {
            let reply = String::from_utf8(reply).unwrap();
            reply[2..reply.find(",s=").unwrap()].to_owned()
        };
        let a = nonce_of(
            ScramExchange::new("u", Some(&verifier), &SECRET)
                .client_first(MECHANISM, client.message())
                .unwrap(),
        );
        let b = nonce_of(
            ScramExchange::new("u", Some(&verifier), &SECRET)
                .client_first(MECHANISM, client.message())
                .unwrap(),
        );
        assert_ne!(a, b);
        for nonce in [&a, &b] {
            let server_part = nonce.strip_prefix(&client_nonce).unwrap();
            assert_eq!(
                STANDARD.decode(server_part).unwrap().len(),
                SERVER_NONCE_LEN
            );
        }
    }

    #[test]
    fn matches_the_rfc_7677_example() {
        // RFC 7677 section 3: user "user", password "pencil".
        let verifier: ScramVerifier = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
            .parse()
            .unwrap();
        let mut server = ScramExchange::new("user", Some(&verifier), &SECRET);
        let server_first = server
            .client_first_with_server_nonce(
                MECHANISM,
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            )
            .unwrap();
        assert_eq!(
            server_first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let server_final = server
            .client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    /// A bare-bones client for what the real one cannot send: a non-empty SCRAM user
    /// name. Uses one iteration so SaltedPassword is a single HMAC.
    fn final_message_for(password: &[u8], client_first_bare: &str, server_first: &str) -> String {
        let salt = server_first
            .split_once(",s=")
            .unwrap()
            .1
            .split_once(",i=")
            .unwrap();
        assert_eq!(salt.1, "1");
        let salt = [STANDARD.decode(salt.0).unwrap(), vec![0, 0, 0, 1]].concat();
        let salted_password = hmac_sha256(password, &salt);
        let client_key = hmac_sha256(&salted_password, b"Client Key");
        let stored_key: [u8; KEY_LEN] = Sha256::digest(client_key).into();
        let nonce = server_first[2..].split_once(',').unwrap().0;
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac_sha256(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", STANDARD.encode(proof))
    }

    #[test]
    fn the_scram_user_name_is_ignored() {
        let verifier = ScramVerifier::generate("pw", 1);
        for bare in ["n=bob,r=abc", "n=b=2Co=3Db,r=abc", "n=,r=abc"] {
            let mut server = ScramExchange::new("alice", Some(&verifier), &SECRET);
            let first = format!("n,,{bare}");
            let server_first = server.client_first(MECHANISM, first.as_bytes()).unwrap();
            let server_first = String::from_utf8(server_first).unwrap();
            let last = final_message_for(b"pw", bare, &server_first);
            assert!(server.client_final(last.as_bytes()).is_ok(), "{bare}");
        }
    }

    #[test]
    fn client_first_protocol_errors() {
        let verifier = ScramVerifier::generate("pw", 1);
        let cases: &[(&str, &[u8])] = &[
            (MECHANISM, b""),
            (MECHANISM, b"n"),
            (MECHANISM, b"n,"),
            (MECHANISM, b"n,,"),
            (MECHANISM, b"n,,n="),
            (MECHANISM, b"n,,n=,"),
            (MECHANISM, b"n,,n=,r="),
            (MECHANISM, b"n,,r=abc"),
            (MECHANISM, b"n,,n=,r=ab c"),
            (MECHANISM, b"n,,n=,r=ab\x7fc"),
            (MECHANISM, b"n,,n=,r=abc,"),
            (MECHANISM, b"n,,n=,r=abc,xyz"),
            (MECHANISM, b"n,,m=x,n=,r=abc"),
            (MECHANISM, b"x,,n=,r=abc"),
            (MECHANISM, b"N,,n=,r=abc"),
            (MECHANISM, b"n,a=bob,n=,r=abc"),
            (MECHANISM, b"n,x,n=,r=abc"),
            (MECHANISM, b"p=tls-server-end-point,,n=,r=abc"),
            (MECHANISM, b"n,,n=\xff,r=abc"),
            (MECHANISM, b"\xc3\x28"),
            ("SCRAM-SHA-256-PLUS", b"n,,n=,r=abc"),
            ("SCRAM-SHA-1", b"n,,n=,r=abc"),
            ("", b"n,,n=,r=abc"),
        ];
        for (mechanism, message) in cases {
            for verifier in [Some(&verifier), None] {
                let mut server = ScramExchange::new("alice", verifier, &SECRET);
                let why = protocol_error(server.client_first(mechanism, message));
                assert!(!why.is_empty());
                // A failed exchange cannot be continued.
                protocol_error(server.client_final(b"c=biws,r=abc,p=AAAA"));
            }
        }
    }

    #[test]
    fn extensions_after_the_nonce_are_tolerated() {
        let verifier = ScramVerifier::generate("pw", 1);
        let mut server = ScramExchange::new("alice", Some(&verifier), &SECRET);
        assert!(server.client_first(MECHANISM, b"n,,n=,r=abc,x=1").is_ok());
    }

    #[test]
    fn the_real_client_asking_for_channel_binding_is_refused() {
        let verifier = ScramVerifier::generate("pw", 1);
        let mut server = ScramExchange::new("alice", Some(&verifier), &SECRET);
        let client = ScramSha256::new(b"pw", ChannelBinding::tls_server_end_point(vec![1; 32]));
        protocol_error(server.client_first(MECHANISM, client.message()));
    }

    /// Runs the real client up to its final message, returning the server, the
    /// client's final message and the full nonce.
    fn until_final(binding: ChannelBinding) -> (ScramExchange, String, String) {
        let verifier = ScramVerifier::generate("pw", 1);
        let mut server = ScramExchange::new("alice", Some(&verifier), &SECRET);
        let mut client = ScramSha256::new(b"pw", binding);
        let server_first = server.client_first(MECHANISM, client.message()).unwrap();
        client.update(&server_first).unwrap();
        let nonce = String::from_utf8(server_first).unwrap()[2..]
            .split_once(',')
            .unwrap()
            .0
            .to_owned();
        let message = String::from_utf8(client.message().to_vec()).unwrap();
        (server, message, nonce)
    }

    #[test]
    fn the_untouched_final_message_is_accepted() {
        let (mut server, message, _) = until_final(ChannelBinding::unsupported());
        assert!(server.client_final(message.as_bytes()).is_ok());
    }

    #[test]
    fn client_final_protocol_errors() {
        let (_, message, nonce) = until_final(ChannelBinding::unsupported());
        let proof = message.rsplit_once(",p=").unwrap().1.to_owned();
        let wrong_nonce = format!("{}x", &nonce[..nonce.len() - 1]);
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"c=biws".to_vec(),
            format!("c=biws,r={nonce}").into_bytes(),
            format!("c=biws,r={nonce},p=").into_bytes(),
            format!("c=biws,r={nonce},p={}", &proof[..proof.len() - 4]).into_bytes(),
            format!("c=biws,r={nonce},p={proof}A").into_bytes(),
            format!("c=biws,r={nonce},p=*{}", &proof[1..]).into_bytes(),
            format!("c=biws,r={wrong_nonce},p={proof}").into_bytes(),
            format!("c=biws,r={},p={proof}", &nonce[..nonce.len() - 1]).into_bytes(),
            format!("c=biws,r=,p={proof}").into_bytes(),
            format!("c=biws,p={proof}").into_bytes(),
            format!("r={nonce},c=biws,p={proof}").into_bytes(),
            format!("c=eSws,r={nonce},p={proof}").into_bytes(),
            format!("c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r={nonce},p={proof}").into_bytes(),
            format!("c=!!!!,r={nonce},p={proof}").into_bytes(),
            format!("c=biws,r={nonce},p={proof},x=1").into_bytes(),
            format!("c=biws,r={nonce},p={proof},p={proof}").into_bytes(),
            format!("c=biws,r={nonce},xyz,p={proof}").into_bytes(),
            format!("c=biws,r={nonce}\u{e9},p={proof}").into_bytes(),
            [
                b"c=biws,r=".as_slice(),
                nonce.as_bytes(),
                b"\xff,p=",
                proof.as_bytes(),
            ]
            .concat(),
        ];
        for message in cases {
            let (mut server, _, _) = until_final(ChannelBinding::unsupported());
            protocol_error(server.client_final(&message));
            protocol_error(server.client_final(&message));
        }
    }

    #[test]
    fn channel_binding_echo_must_match_the_flag_used() {
        let (mut server, message, _) = until_final(ChannelBinding::unrequested());
        assert!(message.starts_with("c=eSws,"));
        let swapped = message.replacen("c=eSws,", "c=biws,", 1);
        protocol_error(server.client_final(swapped.as_bytes()));
    }

    #[test]
    fn a_tampered_proof_is_an_authentication_failure() {
        let (mut server, message, _) = until_final(ChannelBinding::unsupported());
        let (head, proof) = message.rsplit_once(",p=").unwrap();
        let mut proof = STANDARD.decode(proof).unwrap();
        proof[0] ^= 1;
        let tampered = format!("{head},p={}", STANDARD.encode(proof));
        assert_eq!(
            server.client_final(tampered.as_bytes()),
            Err(ScramError::AuthenticationFailed)
        );
    }

    #[test]
    fn messages_out_of_order_are_protocol_errors() {
        let verifier = ScramVerifier::generate("pw", 1);
        let mut server = ScramExchange::new("alice", Some(&verifier), &SECRET);
        protocol_error(server.client_final(b"c=biws,r=abc,p=AAAA"));

        let (mut server, message, _) = until_final(ChannelBinding::unsupported());
        protocol_error(server.client_first(MECHANISM, b"n,,n=,r=abc"));
        protocol_error(server.client_final(message.as_bytes()));

        let (mut server, message, _) = until_final(ChannelBinding::unsupported());
        server.client_final(message.as_bytes()).unwrap();
        protocol_error(server.client_final(message.as_bytes()));
    }

    #[test]
    fn random_corruption_never_panics_or_authenticates() {
        let mut rng = StdRng::seed_from_u64(5802);
        for _ in 0..300 {
            let (mut server, message, _) = until_final(ChannelBinding::unsupported());
            let mut bytes = message.clone().into_bytes();
            for _ in 0..rng.gen_range(1..4) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.gen_range(0..bytes.len());
                match rng.gen_range(0..3) {
                    0 => bytes[at] = rng.gen(),
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at),
                }
            }
            if bytes == message.as_bytes() {
                continue;
            }
            if let Ok(reply) = server.client_final(&bytes) {
                panic!(
                    "corrupted message authenticated: {:?}",
                    String::from_utf8_lossy(&reply)
                );
            }
        }
        for _ in 0..300 {
            let client = ScramSha256::new(b"pw", ChannelBinding::unsupported());
            let mut bytes = client.message().to_vec();
            let at = rng.gen_range(0..bytes.len());
            bytes[at] = rng.gen();
            let mut server = ScramExchange::new("alice", None, &SECRET);
            let _ = server.client_first(MECHANISM, &bytes);
        }
    }

    #[test]
    fn errors_and_debug_carry_no_secrets() {
        let verifier = ScramVerifier::generate("pw", 1);
        let server = ScramExchange::new("alice", Some(&verifier), &SECRET);
        let debug = format!("{server:?}");
        assert!(!debug.contains(&STANDARD.encode(verifier.salt())));
        assert!(!debug.contains("stored"));
        assert_eq!(
            ScramError::AuthenticationFailed.to_string(),
            "password authentication failed"
        );
    }
}
