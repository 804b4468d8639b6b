//! Sealed values: literals kept only encrypted, for investigators holding the key.
//!
//! A statement's literal values and bind parameters are personal data, so the
//! trail stores them only sealed with AES-256-GCM:
//!
//! ```json
//! {"key_id":"2025-07","nonce":"<base64, 12 bytes>","ciphertext":"<base64, data + 16-byte tag>"}
//! ```
//!
//! * `key_id` names the key in the seal key file ([`crate::keys`] gives the file
//!   format), so keys can rotate: new values use the last key of the file, and any
//!   key still in the file opens the values it sealed.
//! * `nonce` is 96 random bits per value. Random nonces are safe for far more
//!   values than one key should seal (NIST's bound is 2^32 per key); rotate keys
//!   long before that.
//! * The associated data is `"maskgate-audit seal v1\0" || key_id || "\0" || record_id`.
//!   Binding the record id means a sealed value copied into another record does
//!   not open there; binding the key id and a domain label means the same key
//!   used elsewhere cannot produce values that open here.
//!
//! Base64 is the standard alphabet with padding; decoding is strict.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::{read_key_file, validate_key_id, KeyError, SEAL_KEYS_HEADER};

/// Domain label at the start of every seal's associated data.
pub const SEAL_DOMAIN: &[u8] = b"maskgate-audit seal v1\0";

/// One sealed value, as stored in a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: String,
    pub ciphertext: String,
}

/// Why sealing or opening failed. Neither plaintext nor key bytes appear here.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the seal key file has no key {key_id:?}")]
    UnknownKey { key_id: String },
    #[error(
        "sealed value is malformed (nonce or ciphertext is not valid base64 of the right length)"
    )]
    Malformed,
    #[error("sealed value does not open: wrong key, wrong record, or altered")]
    Failed,
    #[error("sealing failed")]
    Encrypt,
}

struct SealKey {
    id: String,
    cipher: Aes256Gcm,
}

/// Seals and opens values with the keys of one seal key file.
pub struct Sealer {
    /// In file order; the last one is current. Never empty.
    keys: Vec<SealKey>,
}

impl Sealer {
    /// Loads a seal key file (refused if group or others can read it).
    pub fn load(path: &Path) -> Result<Sealer, KeyError> {
        let text = read_key_file(path, true)?;
        let keys = parse_key_lines(&text).map_err(|reason| KeyError::Format {
            path: path.to_owned(),
            reason,
        })?;
        Ok(Sealer::from_keys(keys))
    }

    fn from_keys(keys: Vec<KeyLine>) -> Sealer {
        let keys = keys
            .into_iter()
            .map(|(id, bytes)| SealKey {
                id,
                cipher: Aes256Gcm::new((&*bytes).into()),
            })
            .collect();
        Sealer { keys }
    }

    /// The id new values are sealed under.
    pub fn current_key_id(&self) -> &str {
        self.keys.last().map_or("", |k| k.id.as_str())
    }

    /// Every key id in the file, oldest first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// Seals `plaintext` for the record `record_id` under the current key.
    pub fn seal(&self, plaintext: &[u8], record_id: &[u8]) -> Result<Sealed, SealError> {
        let key = self.keys.last().ok_or(SealError::Encrypt)?;
        // The thread's ChaCha CSPRNG, seeded and periodically reseeded from the OS:
        // as unpredictable as `OsRng` without a system call per record.
        let nonce = Aes256Gcm::generate_nonce(&mut rand::thread_rng());
        let aad = associated_data(&key.id, record_id);
        let ciphertext = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Encrypt)?;
        Ok(Sealed {
            key_id: key.id.clone(),
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ciphertext),
        })
    }

    /// Opens a value sealed for `record_id` with whichever key it names.
    pub fn open(&self, sealed: &Sealed, record_id: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| SealError::UnknownKey {
                // The id comes from a file that may be hostile: quote it only if it
                // is a well-formed id, which cannot carry anything else.
                key_id: if validate_key_id(&sealed.key_id).is_ok() {
                    sealed.key_id.clone()
                } else {
                    "<invalid>".to_owned()
                },
            })?;
        let nonce = STANDARD
            .decode(&sealed.nonce)
            .map_err(|_| SealError::Malformed)?;
        if nonce.len() != 12 {
            return Err(SealError::Malformed);
        }
        let ciphertext = STANDARD
            .decode(&sealed.ciphertext)
            .map_err(|_| SealError::Malformed)?;
        let aad = associated_data(&key.id, record_id);
        key.cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Failed)
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .finish()
    }
}

fn associated_data(key_id: &str, record_id: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SEAL_DOMAIN.len() + key_id.len() + 1 + record_id.len());
    aad.extend_from_slice(SEAL_DOMAIN);
    aad.extend_from_slice(key_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(record_id);
    aad
}

/// One key of a seal key file: its id and its bytes (wiped when dropped).
pub(crate) type KeyLine = (String, Zeroizing<[u8; 32]>);

/// Parses a seal key file's text. Errors name the line number, never its contents.
pub(crate) fn parse_key_lines(text: &str) -> Result<Vec<KeyLine>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    match lines.next() {
        Some((_, header)) if header == SEAL_KEYS_HEADER => {}
        _ => return Err(format!("first line must be {SEAL_KEYS_HEADER:?}")),
    }
    let mut keys: Vec<KeyLine> = Vec::new();
    for (no, line) in lines {
        let mut fields = line.split_whitespace();
        let (Some(id), Some(hex_key), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!("line {no}: expected `key_id hex-key`"));
        };
        if validate_key_id(id).is_err() {
            return Err(format!(
                "line {no}: key id must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'"
            ));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        if hex::decode_to_slice(hex_key, &mut bytes[..]).is_err() {
            return Err(format!("line {no}: key must be 64 hex digits (32 bytes)"));
        }
        if keys.iter().any(|(known, _)| known == id) {
            return Err(format!("line {no}: key id {id:?} appears twice"));
        }
        keys.push((id.to_owned(), bytes));
    }
    if keys.is_empty() {
        return Err("no key".to_owned());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(text: &str) -> Sealer {
        Sealer::from_keys(parse_key_lines(text).unwrap())
    }

    const TWO: &str = "maskgate-audit seal-keys v1\n# old\nold 0000000000000000000000000000000000000000000000000000000000000001\n\nnew 00000000000000000000000000000000000000000000000000000000000000FF\n";

    #[test]
    fn round_trip_and_current_key() {
        let s = sealer(TWO);
        assert_eq!(s.current_key_id(), "new");
        let sealed = s.seal(b"1234567890123", b"42").unwrap();
        assert_eq!(sealed.key_id, "new");
        assert_eq!(STANDARD.decode(&sealed.nonce).unwrap().len(), 12);
        assert_eq!(&s.open(&sealed, b"42").unwrap()[..], b"1234567890123");
        // A fresh nonce every time.
        assert_ne!(
            s.seal(b"x", b"1").unwrap().nonce,
            s.seal(b"x", b"1").unwrap().nonce
        );
        assert!(!format!("{s:?}").contains("FF"));
    }

    #[test]
    fn tampering_fails() {
        let s = sealer(TWO);
        let sealed = s.seal(b"secret", b"42").unwrap();
        assert_eq!(s.open(&sealed, b"43").unwrap_err(), SealError::Failed);
        let mut ct = STANDARD.decode(&sealed.ciphertext).unwrap();
        ct[0] ^= 1;
        let altered = Sealed {
            ciphertext: STANDARD.encode(&ct),
            ..sealed.clone()
        };
        assert_eq!(s.open(&altered, b"42").unwrap_err(), SealError::Failed);
        let other_key = Sealed {
            key_id: "old".into(),
            ..sealed.clone()
        };
        assert_eq!(s.open(&other_key, b"42").unwrap_err(), SealError::Failed);
        let unknown = Sealed {
            key_id: "gone".into(),
            ..sealed.clone()
        };
        assert_eq!(
            s.open(&unknown, b"42").unwrap_err(),
            SealError::UnknownKey {
                key_id: "gone".into()
            }
        );
        let bad_nonce = Sealed {
            nonce: "AAAA".into(),
            ..sealed.clone()
        };
        assert_eq!(s.open(&bad_nonce, b"42").unwrap_err(), SealError::Malformed);
        let not_b64 = Sealed {
            ciphertext: "***".into(),
            ..sealed
        };
        assert_eq!(s.open(&not_b64, b"42").unwrap_err(), SealError::Malformed);
    }

    #[test]
    fn key_file_errors() {
        for (text, what) in [
            ("", "first line"),
            ("old 00\n", "first line"),
            ("maskgate-audit seal-keys v1\n", "no key"),
            ("maskgate-audit seal-keys v1\nk 00\n", "64 hex"),
            ("maskgate-audit seal-keys v1\nk\n", "expected"),
            ("maskgate-audit seal-keys v1\nk a b\n", "expected"),
            ("maskgate-audit seal-keys v1\nb@d 0000000000000000000000000000000000000000000000000000000000000001\n", "key id"),
            (
                "maskgate-audit seal-keys v1\nk 0000000000000000000000000000000000000000000000000000000000000001\nk 0000000000000000000000000000000000000000000000000000000000000002\n",
                "twice",
            ),
        ] {
            let err = parse_key_lines(text).err().unwrap();
            assert!(err.contains(what), "{text:?}: {err}");
            assert!(!err.contains("0000000000000000000000000000000000000000000000000000000000000001"));
        }
    }
}
