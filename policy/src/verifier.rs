//! SCRAM-SHA-256 verifiers in PostgreSQL's stored form.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The scheme prefix PostgreSQL writes in `pg_authid.rolpassword`.
const SCHEME: &str = "SCRAM-SHA-256";

/// PostgreSQL's default `scram_iterations`; also what unknown users are shown so they
/// blend in with verifiers made by PostgreSQL itself.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Salt length used by PostgreSQL and by [`ScramVerifier::generate`].
pub const SALT_LEN: usize = 16;

/// Length of StoredKey and ServerKey (one SHA-256 output).
pub const KEY_LEN: usize = 32;

/// What is wrong with a verifier string. Never contains any part of the string itself,
/// because the salt and keys are enough for an offline dictionary attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifierError {
    /// Not `SCRAM-SHA-256$...`, e.g. an MD5 hash or a cleartext password.
    #[error("not a SCRAM-SHA-256 verifier (expected \"SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>\")")]
    UnknownScheme,
    /// The `$` and `:` separators are not where they must be.
    #[error("malformed verifier (expected \"SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>\")")]
    Malformed,
    /// The iteration count is not a decimal number in 1..=2147483647.
    #[error("iteration count must be a decimal number between 1 and 2147483647")]
    InvalidIterations,
    /// The salt is not non-empty standard base64.
    #[error("salt is not valid non-empty base64")]
    InvalidSalt,
    /// StoredKey is not base64 of exactly 32 bytes.
    #[error("StoredKey is not base64 of 32 bytes")]
    InvalidStoredKey,
    /// ServerKey is not base64 of exactly 32 bytes.
    #[error("ServerKey is not base64 of 32 bytes")]
    InvalidServerKey,
}

/// What the server keeps instead of a password: enough to check a SCRAM proof and to
/// prove itself to the client, but not enough to log in as the user.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
}

impl ScramVerifier {
    /// Derives a verifier from a password with a fresh random salt, exactly as
    /// PostgreSQL's `CREATE ROLE ... PASSWORD` does, so that ordinary clients
    /// (libpq, JDBC, postgres-protocol) can authenticate against it.
    ///
    /// The password goes through SASLprep first when it can, like PostgreSQL and its
    /// clients do; otherwise non-ASCII passwords would never match.
    ///
    /// # Panics
    ///
    /// If `iterations` is 0, which is a programming error: SCRAM requires at least one.
    pub fn generate(password: &str, iterations: u32) -> ScramVerifier {
        assert!(iterations > 0, "SCRAM iteration count must be at least 1");
        let mut salt = vec![0u8; SALT_LEN];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::with_salt(password, iterations, salt)
    }

    fn with_salt(password: &str, iterations: u32, salt: Vec<u8>) -> ScramVerifier {
        let prepared = match stringprep::saslprep(password) {
            Ok(prepared) => prepared.into_owned(),
            Err(_) => password.to_owned(),
        };
        let mut salted_password = [0u8; KEY_LEN];
        pbkdf2::pbkdf2::<Hmac<Sha256>>(
            prepared.as_bytes(),
            &salt,
            iterations,
            &mut salted_password,
        )
        .expect("HMAC accepts keys of any length");
        let client_key = hmac_sha256(&salted_password, b"Client Key");
        let stored_key: [u8; KEY_LEN] = Sha256::digest(client_key).into();
        let server_key = hmac_sha256(&salted_password, b"Server Key");
        ScramVerifier {
            iterations,
            salt,
            stored_key,
            server_key,
        }
    }

    /// PBKDF2 rounds the client must run; sent to it in server-first-message.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Sent to the client in server-first-message.
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// SHA-256(ClientKey): checks the client's proof.
    pub fn stored_key(&self) -> &[u8; KEY_LEN] {
        &self.stored_key
    }

    /// Signs the exchange so the client knows the server holds the verifier.
    pub fn server_key(&self) -> &[u8; KEY_LEN] {
        &self.server_key
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; KEY_LEN] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn decode_key(text: &str, error: VerifierError) -> Result<[u8; KEY_LEN], VerifierError> {
    let bytes = STANDARD.decode(text).map_err(|_| error)?;
    bytes.try_into().map_err(|_| error)
}

impl FromStr for ScramVerifier {
    type Err = VerifierError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let rest = text
            .strip_prefix(SCHEME)
            .and_then(|rest| rest.strip_prefix('$'))
            .ok_or(VerifierError::UnknownScheme)?;
        let (params, keys) = rest.split_once('$').ok_or(VerifierError::Malformed)?;
        let (iterations, salt) = params.split_once(':').ok_or(VerifierError::Malformed)?;
        let (stored_key, server_key) = keys.split_once(':').ok_or(VerifierError::Malformed)?;

        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return Err(VerifierError::InvalidIterations);
        }
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|n| (1..=i32::MAX as u32).contains(n))
            .ok_or(VerifierError::InvalidIterations)?;
        let salt = STANDARD
            .decode(salt)
            .ok()
            .filter(|salt| !salt.is_empty())
            .ok_or(VerifierError::InvalidSalt)?;
        let stored_key = decode_key(stored_key, VerifierError::InvalidStoredKey)?;
        let server_key = decode_key(server_key, VerifierError::InvalidServerKey)?;
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }
}

impl fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored by PostgreSQL 15 for `CREATE ROLE r PASSWORD 'secret'`.
    const PG15_SECRET: &str = "SCRAM-SHA-256$4096:niJMvhNryDenKjcd1V4Y2Q==$ivKd2oXBIQzVUolzm116DBhmTJyf6gTPcc59wpQEksc=:Zo5Byj9U+QcjHhvCh9jgpiFqiP645xdFgy5u4jW6aGE=";

    /// Stored by PostgreSQL 15 for a password of "a", U+00A0 NO-BREAK SPACE, "b".
    const PG15_NBSP: &str = "SCRAM-SHA-256$4096:v0AJUeSPLjVrcRmGaH9IWQ==$KU8TKL6weQa/Q3Aq4KRZPXgF6W2NCePDv5xIujjEqIo=:zlgX3VHFKi64HV3x0gBreFT2Ko783jbiY9tAF8wQdzM=";

    fn fixed(password: &str) -> ScramVerifier {
        ScramVerifier::with_salt(password, DEFAULT_ITERATIONS, b"0123456789abcdef".to_vec())
    }

    fn same_salt_as(stored: &ScramVerifier, password: &str) -> ScramVerifier {
        ScramVerifier::with_salt(password, stored.iterations(), stored.salt().to_vec())
    }

    #[test]
    fn generate_then_display_then_parse_round_trips() {
        let verifier = ScramVerifier::generate("correct horse", 4096);
        let text = verifier.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"));
        let parsed: ScramVerifier = text.parse().unwrap();
        assert_eq!(parsed, verifier);
        assert_eq!(parsed.iterations(), 4096);
        assert_eq!(parsed.salt().len(), SALT_LEN);
    }

    #[test]
    fn generate_uses_a_fresh_salt_each_time() {
        let a = ScramVerifier::generate("pw", 1);
        let b = ScramVerifier::generate("pw", 1);
        assert_ne!(a.salt(), b.salt());
        assert_ne!(a.stored_key(), b.stored_key());
    }

    #[test]
    fn keys_follow_rfc_5802_definitions() {
        let verifier = fixed("pencil");
        let mut salted = [0u8; KEY_LEN];
        pbkdf2::pbkdf2::<Hmac<Sha256>>(b"pencil", verifier.salt(), 4096, &mut salted).unwrap();
        let client_key = hmac_sha256(&salted, b"Client Key");
        assert_eq!(
            verifier.stored_key(),
            &<[u8; 32]>::from(Sha256::digest(client_key))
        );
        assert_eq!(verifier.server_key(), &hmac_sha256(&salted, b"Server Key"));
    }

    #[test]
    fn matches_what_postgresql_itself_stores() {
        let stored: ScramVerifier = PG15_SECRET.parse().unwrap();
        assert_eq!(stored.to_string(), PG15_SECRET);
        assert_eq!(stored.iterations(), 4096);
        assert_eq!(same_salt_as(&stored, "secret"), stored);
        assert_ne!(same_salt_as(&stored, "Secret"), stored);
    }

    #[test]
    fn saslprep_is_applied_like_postgresql_does() {
        let stored: ScramVerifier = PG15_NBSP.parse().unwrap();
        assert_eq!(same_salt_as(&stored, "a\u{a0}b"), stored);
        assert_eq!(same_salt_as(&stored, "a b"), stored);
        assert_ne!(fixed("a b"), fixed("ab"));
    }

    #[test]
    fn strict_parsing_rejects_every_malformed_part() {
        let salt = STANDARD.encode(b"0123456789abcdef");
        let key = STANDARD.encode([7u8; 32]);
        let short = STANDARD.encode([7u8; 31]);
        let cases: Vec<(String, VerifierError)> = vec![
            ("md5abcdef".into(), VerifierError::UnknownScheme),
            (
                "SCRAM-SHA-1$4096:x$y:z".into(),
                VerifierError::UnknownScheme,
            ),
            (
                "scram-sha-256$4096:x$y:z".into(),
                VerifierError::UnknownScheme,
            ),
            ("SCRAM-SHA-256".into(), VerifierError::UnknownScheme),
            ("SCRAM-SHA-256$".into(), VerifierError::Malformed),
            (
                format!("SCRAM-SHA-256$4096{salt}${key}:{key}"),
                VerifierError::Malformed,
            ),
            (
                format!("SCRAM-SHA-256$4096:{salt}${key}{key}"),
                VerifierError::Malformed,
            ),
            (
                format!("SCRAM-SHA-256$4096:{salt}:{key}:{key}"),
                VerifierError::Malformed,
            ),
            (
                format!("SCRAM-SHA-256$:{salt}${key}:{key}"),
                VerifierError::InvalidIterations,
            ),
            (
                format!("SCRAM-SHA-256$0:{salt}${key}:{key}"),
                VerifierError::InvalidIterations,
            ),
            (
                format!("SCRAM-SHA-256$+1:{salt}${key}:{key}"),
                VerifierError::InvalidIterations,
            ),
            (
                format!("SCRAM-SHA-256$ 1:{salt}${key}:{key}"),
                VerifierError::InvalidIterations,
            ),
            (
                format!("SCRAM-SHA-256$2147483648:{salt}${key}:{key}"),
                VerifierError::InvalidIterations,
            ),
            (
                format!("SCRAM-SHA-256$99999999999:{salt}${key}:{key}"),
                VerifierError::InvalidIterations,
            ),
            (
                format!("SCRAM-SHA-256$4096:${key}:{key}"),
                VerifierError::InvalidSalt,
            ),
            (
                format!("SCRAM-SHA-256$4096:not*base64${key}:{key}"),
                VerifierError::InvalidSalt,
            ),
            (
                format!("SCRAM-SHA-256$4096:{salt}${short}:{key}"),
                VerifierError::InvalidStoredKey,
            ),
            (
                format!("SCRAM-SHA-256$4096:{salt}$:{key}"),
                VerifierError::InvalidStoredKey,
            ),
            (
                format!("SCRAM-SHA-256$4096:{salt}${key}:{short}"),
                VerifierError::InvalidServerKey,
            ),
            (
                format!("SCRAM-SHA-256$4096:{salt}${key}:{key}$"),
                VerifierError::InvalidServerKey,
            ),
            (
                format!("SCRAM-SHA-256$4096:{salt}${key}:{key} "),
                VerifierError::InvalidServerKey,
            ),
            (
                format!("SCRAM-SHA-256$4096:{salt}${key}:{key}:{key}"),
                VerifierError::InvalidServerKey,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<ScramVerifier>(), Err(expected), "{text}");
        }
    }

    #[test]
    fn errors_and_debug_never_show_secret_material() {
        let verifier = fixed("pw");
        let text = verifier.to_string();
        let salt = STANDARD.encode(verifier.salt());
        let stored = STANDARD.encode(verifier.stored_key());
        let server = STANDARD.encode(verifier.server_key());
        let debug = format!("{verifier:?}");
        for secret in [&salt, &stored, &server] {
            assert!(!debug.contains(secret.as_str()), "{debug}");
        }
        let broken = text.replace(&server, "AAAA");
        let message = broken.parse::<ScramVerifier>().unwrap_err().to_string();
        for secret in [&salt, &stored] {
            assert!(!message.contains(secret.as_str()), "{message}");
        }
    }

    #[test]
    #[should_panic(expected = "at least 1")]
    fn zero_iterations_is_a_programming_error() {
        ScramVerifier::generate("pw", 0);
    }
}
