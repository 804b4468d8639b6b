//! Key files: the checkpoint signing key, its public key and the sealing keys.
//!
//! # Formats
//!
//! * **Signing key** — Ed25519 private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`),
//!   the form `openssl genpkey -algorithm ed25519` writes. It stays with maskgate.
//! * **Public key** — the matching SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`),
//!   the form `openssl pkey -pubout` writes. It is not secret: give it to whoever
//!   verifies the trail, by a channel that does not pass through the audited
//!   machine (the verifier trusts whatever key it is handed).
//! * **Seal keys** — text, one AES-256 key per line ([`crate::seal`] has the details):
//!
//!   ```text
//!   maskgate-audit seal-keys v1
//!   # comments and blank lines are ignored
//!   2025-01 3f1c…(64 hex digits)
//!   2025-07 9a0b…(64 hex digits)
//!   ```
//!
//!   The last key is the current one; older lines stay so old records can still be
//!   opened. A key id is 1–64 characters of `A-Z a-z 0-9 . _ -`.
//!
//! New key files are created with mode 0600 and never overwrite an existing file:
//! losing a signing or sealing key by a mistyped path would lose the trail's
//! guarantees or its readable literals. Private key files are refused on load if
//! group or others can read them, as ssh does, so a key is not used from a file
//! that has already leaked.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// Header line of a seal key file.
pub const SEAL_KEYS_HEADER: &str = "maskgate-audit seal-keys v1";

/// Longest key file read: real ones are a few kilobytes, a bound keeps a wrong
/// path (a device, a log) from being read whole.
const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// Why a key file could not be made or used. Key material never appears here.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} already exists; key files are never overwritten", path.display())]
    Exists { path: PathBuf },
    #[error("{} is readable by group or others (mode {mode:o}); make it 0600", path.display())]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("not {expected}")]
    Pem { expected: &'static str },
    #[error("key id must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'")]
    InvalidKeyId,
    #[error("key id {id:?} is already in {}", path.display())]
    DuplicateKeyId { id: String, path: PathBuf },
}

/// The Ed25519 key that signs checkpoints.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::generate(&mut OsRng))
    }

    /// The public half, which is all a verifier needs.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(SigningKey)
            .map_err(|_| KeyError::Pem {
                expected: "an Ed25519 PKCS#8 PEM private key",
            })
    }

    /// The PKCS#8 PEM form (wiped from memory when dropped).
    pub fn to_pem(&self) -> Zeroizing<String> {
        // Encoding a valid key into PEM cannot fail; fall back to an empty string
        // rather than panic, which a later load would refuse loudly.
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap_or_else(|_| Zeroizing::new(String::new()))
    }

    /// A 32-byte secret for another purpose, derived from this key (SHA-256 over a
    /// fixed label, `purpose` and the secret key). Nothing about the signing key can
    /// be learned from it, and it stays the same for as long as the key does.
    pub fn derive_secret(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        h.update(b"maskgate derived secret v1\0");
        h.update(purpose.as_bytes());
        h.update(b"\0");
        h.update(self.0.to_bytes());
        Zeroizing::new(h.finalize().into())
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        self.0.sign(message)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {})", self.public_key().fingerprint())
    }
}

/// The Ed25519 public key that verifies checkpoints.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// Reads a SubjectPublicKeyInfo PEM public key.
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
            .map(PublicKey)
            .map_err(|_| KeyError::Pem {
                expected: "an Ed25519 PEM public key",
            })
    }

    /// The SubjectPublicKeyInfo PEM form.
    pub fn to_pem(&self) -> String {
        self.0.to_public_key_pem(LineEnding::LF).unwrap_or_default()
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// A short name for the key: the first 8 bytes of SHA-256 over its raw bytes,
    /// in hex. Checkpoints carry it so a report can say "signed by another key"
    /// instead of only "bad signature".
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        hex::encode(&digest[..8])
    }

    /// Strict verification (no malleable or small-order encodings accepted).
    pub(crate) fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        self.0.verify_strict(message, signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

/// Generates a signing key, writes it to `secret_path` and its public key to
/// `public_path` (both created 0600, neither overwritten), and returns the public key.
pub fn generate_signing_key_files(
    secret_path: &Path,
    public_path: &Path,
) -> Result<PublicKey, KeyError> {
    let key = SigningKey::generate();
    let public = key.public_key();
    // Refuse before writing anything if the public path is taken, so a failure
    // does not leave a private key without its public half.
    if public_path.exists() {
        return Err(KeyError::Exists {
            path: public_path.to_owned(),
        });
    }
    create_secret_file(secret_path, key.to_pem().as_bytes())?;
    if let Err(e) = create_secret_file(public_path, public.to_pem().as_bytes()) {
        let _ = fs::remove_file(secret_path);
        return Err(e);
    }
    Ok(public)
}

/// Loads the signing key written by [`generate_signing_key_files`] (or openssl).
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = read_key_file(path, true)?;
    SigningKey::from_pem(&text).map_err(|e| KeyError::Format {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Loads a public key file. Its permissions are not checked: it is public.
pub fn load_public_key(path: &Path) -> Result<PublicKey, KeyError> {
    let text = read_key_file(path, false)?;
    PublicKey::from_pem(&text).map_err(|e| KeyError::Format {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Creates a seal key file holding one fresh random key named `key_id`.
pub fn generate_seal_key_file(path: &Path, key_id: &str) -> Result<(), KeyError> {
    validate_key_id(key_id)?;
    let mut text = Zeroizing::new(format!("{SEAL_KEYS_HEADER}\n"));
    push_seal_key_line(&mut text, key_id);
    create_secret_file(path, text.as_bytes())
}

/// Appends a fresh random key named `key_id` to an existing seal key file, making
/// it the current key. Older keys stay, so records sealed with them still open.
pub fn add_seal_key(path: &Path, key_id: &str) -> Result<(), KeyError> {
    validate_key_id(key_id)?;
    let text = read_key_file(path, true)?;
    let keys = crate::seal::parse_key_lines(&text).map_err(|reason| KeyError::Format {
        path: path.to_owned(),
        reason,
    })?;
    if keys.iter().any(|(id, _)| id == key_id) {
        return Err(KeyError::DuplicateKeyId {
            id: key_id.to_owned(),
            path: path.to_owned(),
        });
    }
    let mut line = Zeroizing::new(String::new());
    if !text.is_empty() && !text.ends_with('\n') {
        line.push('\n');
    }
    push_seal_key_line(&mut line, key_id);
    let io_err = |op| {
        move |source| KeyError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    };
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err("open"))?;
    file.write_all(line.as_bytes()).map_err(io_err("write"))?;
    file.sync_all().map_err(io_err("sync"))
}

fn push_seal_key_line(out: &mut String, key_id: &str) {
    let mut key = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut key[..]);
    let mut hex = Zeroizing::new([0u8; 64]);
    // The lengths match, so this cannot fail.
    let _ = hex::encode_to_slice(&key[..], &mut hex[..]);
    out.push_str(key_id);
    out.push(' ');
    out.extend(hex.iter().map(|b| char::from(*b)));
    out.push('\n');
}

/// Checks a seal key id's alphabet (it is written into every sealed value).
pub fn validate_key_id(id: &str) -> Result<(), KeyError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::InvalidKeyId)
    }
}

/// Creates `path` with mode 0600 (never replacing a file), writes `contents` and
/// makes both the file and its directory entry durable.
pub(crate) fn create_secret_file(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let io_err = |op| {
        move |source| KeyError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    };
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(KeyError::Exists {
                path: path.to_owned(),
            })
        }
        Err(e) => return Err(io_err("create")(e)),
    };
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_err("write"));
    if written.is_err() {
        // Only a file this call created and could not finish is removed.
        let _ = fs::remove_file(path);
        return written;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync the directory of"))?;
    }
    Ok(())
}

/// Reads a key file, refusing one readable by group or others when `secret`.
pub(crate) fn read_key_file(path: &Path, secret: bool) -> Result<Zeroizing<String>, KeyError> {
    let io_err = |op| {
        move |source| KeyError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    };
    let file = File::open(path).map_err(io_err("open"))?;
    let meta = file.metadata().map_err(io_err("stat"))?;
    let mode = meta.permissions().mode() & 0o777;
    if secret && mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("read"))?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(KeyError::Format {
            path: path.to_owned(),
            reason: "larger than any key file".to_owned(),
        });
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(KeyError::Format {
            path: path.to_owned(),
            reason: "not UTF-8 text".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn signing_key_files_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let (sk, pk) = (dir.path().join("sign.pem"), dir.path().join("sign.pub.pem"));
        let public = generate_signing_key_files(&sk, &pk).unwrap();
        assert_eq!(mode(&sk), 0o600);
        assert_eq!(mode(&pk), 0o600);
        let text = fs::read_to_string(&sk).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(fs::read_to_string(&pk)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
        let key = load_signing_key(&sk).unwrap();
        assert_eq!(key.public_key(), public);
        assert_eq!(load_public_key(&pk).unwrap(), public);
        let sig = key.sign(b"m");
        assert!(public.verify(b"m", &sig));
        assert!(!public.verify(b"n", &sig));
        assert_eq!(public.fingerprint().len(), 16);
        assert!(!format!("{key:?}").contains(&text));
    }

    #[test]
    fn never_overwrites_and_refuses_open_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let (sk, pk) = (dir.path().join("k"), dir.path().join("k.pub"));
        generate_signing_key_files(&sk, &pk).unwrap();
        let before = fs::read(&sk).unwrap();
        assert!(matches!(
            generate_signing_key_files(&sk, &dir.path().join("other")),
            Err(KeyError::Exists { .. })
        ));
        assert!(matches!(
            generate_signing_key_files(&dir.path().join("other"), &pk),
            Err(KeyError::Exists { .. })
        ));
        assert!(!dir.path().join("other").exists());
        assert_eq!(fs::read(&sk).unwrap(), before);

        fs::set_permissions(&sk, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            load_signing_key(&sk),
            Err(KeyError::Permissions { mode: 0o640, .. })
        ));
        // The public key may be world-readable.
        fs::set_permissions(&pk, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_public_key(&pk).is_ok());
    }

    #[test]
    fn wrong_contents_are_format_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        create_secret_file(&p, b"not a key").unwrap();
        assert!(matches!(load_signing_key(&p), Err(KeyError::Format { .. })));
        assert!(matches!(load_public_key(&p), Err(KeyError::Format { .. })));
        assert!(matches!(
            load_signing_key(&dir.path().join("missing")),
            Err(KeyError::Io { .. })
        ));
    }

    #[test]
    fn seal_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seal.keys");
        generate_seal_key_file(&p, "2025-01").unwrap();
        assert_eq!(mode(&p), 0o600);
        add_seal_key(&p, "2025-07").unwrap();
        assert!(matches!(
            add_seal_key(&p, "2025-01"),
            Err(KeyError::DuplicateKeyId { .. })
        ));
        assert!(matches!(
            add_seal_key(&p, "bad id"),
            Err(KeyError::InvalidKeyId)
        ));
        assert!(matches!(
            generate_seal_key_file(&p, "x"),
            Err(KeyError::Exists { .. })
        ));
        let text = fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], SEAL_KEYS_HEADER);
        assert!(lines[1].starts_with("2025-01 ") && lines[1].len() == 8 + 64);
        assert!(lines[2].starts_with("2025-07 "));
        assert_ne!(lines[1][8..], lines[2][8..]);
    }
}
