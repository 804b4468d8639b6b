//! Pseudonym keys: the key file, and how key material reaches PostgreSQL.
//!
//! Pseudonyms are HMAC-SHA-256 computed by PostgreSQL itself with its
//! built-in `sha256()`, so masking stays inside the database. The key must
//! therefore reach the server, but never as statement text (which lands in
//! `log_statement`, `pg_stat_statements` and `pg_stat_activity.query`). The
//! proxy precomputes the two HMAC pad blocks `K ⊕ ipad` and `K ⊕ opad` and
//! sends them as custom settings in the upstream StartupMessage `options`;
//! masking expressions only name the settings.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use toml::{Table, Value};

use crate::error::MaskError;
use crate::spec::check_key_id;

/// Prefix of every setting maskgate sets upstream; statement analysis must
/// never let a restricted user read (`SHOW`, `current_setting`, `pg_settings`)
/// or change settings under it, because the pads are as good as the key.
pub const SETTING_PREFIX: &str = "maskgate.";

/// Shortest secret accepted: 256 bits, the strength of the hash itself.
pub const MIN_SECRET_BYTES: usize = 32;
/// Longest secret accepted; longer HMAC keys are hashed down anyway.
const MAX_SECRET_BYTES: usize = 1024;
const BLOCK: usize = 64;
/// Digits per pseudonym_digits value: what a 63-bit number reduces to evenly enough.
pub const MAX_PSEUDONYM_DIGITS: usize = 18;
/// Bytes of the HMAC kept in a `pseudonym` token (128 bits).
pub const TOKEN_BYTES: usize = 16;

/// The keys from a key file, held as HMAC pad blocks.
///
/// `Debug` shows key ids only. The pads are key-equivalent secrets.
#[derive(Clone, Default)]
pub struct PseudonymKeys {
    current: Option<String>,
    keys: BTreeMap<String, Pads>,
}

#[derive(Clone)]
struct Pads {
    inner: [u8; BLOCK],
    outer: [u8; BLOCK],
}

impl Pads {
    /// RFC 2104: keys longer than the block are hashed, shorter ones zero-padded.
    fn new(secret: &[u8]) -> Pads {
        let mut key = [0u8; BLOCK];
        if secret.len() > BLOCK {
            key[..32].copy_from_slice(&Sha256::digest(secret));
        } else {
            key[..secret.len()].copy_from_slice(secret);
        }
        Pads {
            inner: key.map(|b| b ^ 0x36),
            outer: key.map(|b| b ^ 0x5c),
        }
    }

    fn hmac(&self, message: &[u8]) -> [u8; 32] {
        let inner = Sha256::new()
            .chain_update(self.inner)
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(self.outer)
            .chain_update(inner)
            .finalize()
            .into()
    }
}

impl fmt::Debug for PseudonymKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PseudonymKeys")
            .field("current", &self.current)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PseudonymKeys {
    /// Reads and validates a key file:
    ///
    /// ```toml
    /// current = "v1"
    /// [keys.v1]
    /// secret = "<base64 of at least 32 random bytes>"
    /// ```
    ///
    /// Refuses files other users can read or write. Error messages never
    /// quote the file's content, since any line of it may be a secret.
    pub fn load(path: &Path) -> Result<PseudonymKeys, MaskError> {
        let shown = path.display().to_string();
        let read_error = |e: std::io::Error| MaskError::KeyFileRead {
            path: shown.clone(),
            reason: e.kind().to_string(),
        };
        let meta = fs::metadata(path).map_err(read_error)?;
        check_permissions(&shown, &meta)?;
        let text = fs::read_to_string(path).map_err(read_error)?;
        PseudonymKeys::parse(&text, &shown)
    }

    /// No keys: for deployments without pseudonym masks.
    pub fn empty() -> PseudonymKeys {
        PseudonymKeys::default()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// The key id new policies should use; `None` only for [`PseudonymKeys::empty`].
    pub fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Key ids in sorted order, for error messages and `policy explain`.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The `options` startup parameter for upstream connections:
    /// `-c maskgate.pk_<hex id>_i=<hex> -c maskgate.pk_<hex id>_o=<hex>` per key.
    ///
    /// Startup parameters are not statement text, so they stay out of
    /// `log_statement`, `pg_stat_statements` and `pg_stat_activity.query`.
    /// Empty when there are no keys.
    pub fn upstream_options(&self) -> String {
        self.keys
            .iter()
            .flat_map(|(id, pads)| {
                [
                    format!("-c {}={}", setting_name(id, Pad::Inner), hex(&pads.inner)),
                    format!("-c {}={}", setting_name(id, Pad::Outer), hex(&pads.outer)),
                ]
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A new key file with one fresh 32-byte key from the OS random source,
    /// made `current`; for `maskgate keygen`. To rotate, add the new
    /// `[keys.<id>]` section of its output to the existing file.
    pub fn generate_key_file_text(id: &str) -> Result<String, MaskError> {
        check_key_id(id)?;
        let mut secret = [0u8; MIN_SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Ok(format!(
            "# maskgate pseudonym keys. Secret: readable by maskgate only (chmod 600).\n\
             # Losing a key changes every pseudonym made with it; keep a backup\n\
             # as safe as the register itself. Policies name keys by id.\n\
             current = \"{id}\"\n\
             \n\
             [keys.{id}]\n\
             secret = \"{}\"\n",
            STANDARD.encode(secret)
        ))
    }

    /// The `pseudonym` token of a value, computed locally exactly as
    /// PostgreSQL computes it: for investigators who must find the token of a
    /// known identifier, and for tests. `None` for an unknown key id.
    pub fn token(&self, id: &str, value: &str) -> Option<String> {
        let mac = self.keys.get(id)?.hmac(value.as_bytes());
        Some(format!("{id}:{}", hex(&mac[..TOKEN_BYTES])))
    }

    /// The `pseudonym_digits` value, computed locally like [`PseudonymKeys::token`].
    pub fn digits(&self, id: &str, value: &str) -> Option<String> {
        let len = value.len();
        if len == 0 || len > MAX_PSEUDONYM_DIGITS || !value.bytes().all(|b| b.is_ascii_digit()) {
            return self.token(id, value);
        }
        let mac = self.keys.get(id)?.hmac(value.as_bytes());
        let first: [u8; 8] = mac[..8].try_into().expect("HMAC has 32 bytes");
        let n = (u64::from_be_bytes(first) & (i64::MAX as u64)) % 10u64.pow(18);
        let all = format!("{n:018}");
        Some(all[all.len() - len..].to_string())
    }

    fn parse(text: &str, path: &str) -> Result<PseudonymKeys, MaskError> {
        let invalid = |line: Option<usize>, reason: String| MaskError::KeyFileInvalid {
            path: path.to_string(),
            line,
            reason,
        };
        let table: Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            invalid(line, format!("not valid TOML ({})", e.message().trim()))
        })?;
        if let Some(k) = table.keys().find(|k| *k != "current" && *k != "keys") {
            return Err(invalid(
                None,
                format!("unknown key {k:?}; expected `current` and `[keys.<id>]` sections"),
            ));
        }
        let Some(Value::Table(entries)) = table.get("keys") else {
            return Err(invalid(
                None,
                "no `[keys.<id>]` section with a `secret`".to_string(),
            ));
        };
        let mut keys = BTreeMap::new();
        for (id, entry) in entries {
            check_key_id(id)?;
            let secret = match entry {
                Value::Table(t) if t.len() == 1 => match t.get("secret") {
                    Some(Value::String(s)) => s,
                    _ => {
                        return Err(invalid(
                            None,
                            format!("[keys.{id}] must hold exactly `secret = \"<base64>\"`"),
                        ))
                    }
                },
                _ => {
                    return Err(invalid(
                        None,
                        format!("[keys.{id}] must hold exactly `secret = \"<base64>\"`"),
                    ))
                }
            };
            let bytes = STANDARD.decode(secret.trim()).map_err(|_| {
                invalid(
                    None,
                    format!("the secret of key {id:?} is not valid base64"),
                )
            })?;
            if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
                return Err(invalid(
                    None,
                    format!(
                        "the secret of key {id:?} has {} bytes; use {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes (`maskgate keygen`)",
                        bytes.len()
                    ),
                ));
            }
            keys.insert(id.clone(), Pads::new(&bytes));
        }
        if keys.is_empty() {
            return Err(invalid(
                None,
                "no `[keys.<id>]` section with a `secret`".to_string(),
            ));
        }
        let current = match table.get("current") {
            Some(Value::String(id)) if keys.contains_key(id) => id.clone(),
            Some(Value::String(id)) => {
                return Err(invalid(
                    None,
                    format!("`current = {id:?}` names no key in this file"),
                ))
            }
            _ => {
                return Err(invalid(
                    None,
                    "missing `current = \"<key id>\"`".to_string(),
                ))
            }
        };
        Ok(PseudonymKeys {
            current: Some(current),
            keys,
        })
    }
}

#[cfg(unix)]
fn check_permissions(path: &str, meta: &fs::Metadata) -> Result<(), MaskError> {
    use std::os::unix::fs::PermissionsExt;
    // Group access is tolerated for deployments where a secrets volume is
    // group-readable by the service; access by everyone is not.
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(MaskError::KeyFilePermissions {
            path: path.to_string(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &str, _meta: &fs::Metadata) -> Result<(), MaskError> {
    Ok(())
}

#[derive(Clone, Copy)]
pub(crate) enum Pad {
    Inner,
    Outer,
}

/// `maskgate.pk_<hex of the id>_i|_o`. The id is hex-encoded because setting
/// names are case-insensitive and cannot contain `-`, while key ids may.
pub(crate) fn setting_name(id: &str, pad: Pad) -> String {
    let suffix = match pad {
        Pad::Inner => 'i',
        Pad::Outer => 'o',
    };
    format!("{SETTING_PREFIX}pk_{}_{suffix}", hex(id.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn parse(text: &str) -> Result<PseudonymKeys, MaskError> {
        PseudonymKeys::parse(text, "keys.toml")
    }

    fn one_key() -> PseudonymKeys {
        parse(&format!(
            "current = \"v1\"\n[keys.v1]\nsecret = \"{SECRET_B64}\"\n"
        ))
        .unwrap()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 (short key) and 6 (key longer than the block).
        let mac = Pads::new(b"Jefe").hmac(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let mac =
            Pads::new(&[0xaa; 131]).hmac(b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(
            hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn loads_and_builds_upstream_options() {
        let keys = one_key();
        assert!(keys.contains("v1"));
        assert!(!keys.contains("v2"));
        assert_eq!(keys.current(), Some("v1"));
        let options = keys.upstream_options();
        let parts: Vec<&str> = options.split(' ').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "-c");
        assert!(parts[1].starts_with("maskgate.pk_7631_i="));
        assert!(parts[3].starts_with("maskgate.pk_7631_o="));
        assert_eq!(parts[1].len(), "maskgate.pk_7631_i=".len() + 128);
        assert_eq!(PseudonymKeys::empty().upstream_options(), "");
    }

    #[test]
    fn debug_and_errors_never_show_secrets() {
        let keys = one_key();
        let shown = format!("{keys:?}");
        assert!(shown.contains("v1"));
        assert!(!shown.contains(SECRET_B64));
        assert!(!shown.contains(&keys.upstream_options()[19..40]));

        let broken = format!("current = \"v1\"\n[keys.v1]\nsecret = \"{SECRET_B64}\n");
        let e = parse(&broken).unwrap_err().to_string();
        assert!(!e.contains(&SECRET_B64[..10]), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn rejects_bad_files() {
        let short = STANDARD.encode([7u8; 31]);
        for (text, wanted) in [
            ("".to_string(), "no `[keys"),
            ("current = \"v1\"\n".to_string(), "no `[keys"),
            (
                format!("[keys.v1]\nsecret = \"{SECRET_B64}\""),
                "missing `current",
            ),
            (
                format!("current = \"v2\"\n[keys.v1]\nsecret = \"{SECRET_B64}\""),
                "names no key",
            ),
            (
                format!("current = \"v1\"\n[keys.v1]\nsecret = \"{short}\""),
                "has 31 bytes",
            ),
            (
                "current = \"v1\"\n[keys.v1]\nsecret = \"not base64!\"".to_string(),
                "not valid base64",
            ),
            (
                format!("current = \"v1\"\n[keys.v1]\nsecret = \"{SECRET_B64}\"\nextra = 1"),
                "exactly `secret",
            ),
            (
                format!("current = \"v1\"\nother = 2\n[keys.v1]\nsecret = \"{SECRET_B64}\""),
                "unknown key",
            ),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(wanted), "{text:?}: {e}");
        }
        let hostile = format!(
            "current = \"v1\"\n[keys.\"v1'; DROP TABLE x; --\"]\nsecret = \"{SECRET_B64}\""
        );
        assert!(matches!(
            parse(&hostile),
            Err(MaskError::InvalidKeyId { .. })
        ));
    }

    #[test]
    fn setting_names_are_valid_and_distinct() {
        assert_eq!(setting_name("v1", Pad::Inner), "maskgate.pk_7631_i");
        assert_ne!(
            setting_name("V1", Pad::Inner),
            setting_name("v1", Pad::Inner)
        );
        assert_eq!(setting_name("k-1", Pad::Outer), "maskgate.pk_6b2d31_o");
    }

    #[test]
    fn generated_files_load() {
        let text = PseudonymKeys::generate_key_file_text("k2026-01").unwrap();
        let keys = parse(&text).unwrap();
        assert_eq!(keys.current(), Some("k2026-01"));
        let other = parse(&PseudonymKeys::generate_key_file_text("k2026-01").unwrap()).unwrap();
        assert_ne!(keys.upstream_options(), other.upstream_options());
        assert!(PseudonymKeys::generate_key_file_text("bad id").is_err());
    }

    #[test]
    fn local_tokens_and_digits() {
        let keys = one_key();
        let token = keys.token("v1", "001203004567").unwrap();
        assert!(token.starts_with("v1:"));
        assert_eq!(token.len(), 3 + 32);
        assert_eq!(keys.token("v1", "001203004567").unwrap(), token);
        assert_ne!(keys.token("v1", "001203004568").unwrap(), token);
        let digits = keys.digits("v1", "001203004567").unwrap();
        assert_eq!(digits.len(), 12);
        assert!(digits.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(
            keys.digits("v1", "12a").unwrap(),
            keys.token("v1", "12a").unwrap()
        );
        assert_eq!(
            keys.digits("v1", "").unwrap(),
            keys.token("v1", "").unwrap()
        );
        assert_eq!(keys.token("v9", "x"), None);
    }
}
