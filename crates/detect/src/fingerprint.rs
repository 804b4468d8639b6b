//! Keyed fingerprints of lookup keys: how detection counts the distinct people an
//! account looks up, and recognises a honeytoken, without ever holding a key in clear.
//!
//! The proxy's audit writer, which already holds a statement's constants to seal
//! them, computes for each constant of a statement on a lookup-only table
//!
//! * `k`: HMAC-SHA256 of the value under a key derived from the audit signing key,
//!   cut to 64 bits (16 hex digits);
//! * `n`, when the value ends in at least three digits: the same of the value
//!   without its last two digits — its *neighbourhood*. Sequential harvesting
//!   (…100, …101, …102) puts many distinct `k` in one `n`; a clerk's lookups almost
//!   never share one.
//!
//! Both are written into the statement's record. Nobody without the key can link a
//! fingerprint to a value; the key never leaves the proxy's machine.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The purpose the fingerprint key is derived for from the audit signing key.
pub const PURPOSE: &str = "detection lookup fingerprints";

/// Longest value fingerprinted: longer constants are not lookup keys.
const MAX_VALUE: usize = 256;
/// Values fingerprinted per statement.
pub const MAX_KEYS: usize = 16;

/// The two fingerprints of one value, as stored in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyPrint {
    /// The value's fingerprint.
    #[serde(with = "hex64")]
    pub k: u64,
    /// Its neighbourhood's, if it ends in digits.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex64")]
    pub n: Option<u64>,
}

/// Computes fingerprints under one key.
#[derive(Clone)]
pub struct Fingerprinter {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprinter(..)")
    }
}

impl Fingerprinter {
    /// A fingerprinter keyed with `key` (32 secret bytes).
    pub fn new(key: &[u8; 32]) -> Fingerprinter {
        Fingerprinter {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length"),
        }
    }

    fn hash(&self, domain: u8, value: &[u8]) -> u64 {
        let mut mac = self.mac.clone();
        mac.update(&[domain]);
        mac.update(value);
        let out = mac.finalize().into_bytes();
        u64::from_be_bytes(out[..8].try_into().expect("8 bytes"))
    }

    /// The fingerprints of one value, `None` for values too long to be a key.
    /// Surrounding blanks are ignored (`char(12)` pads).
    pub fn print(&self, value: &str) -> Option<KeyPrint> {
        let value = value.trim();
        if value.is_empty() || value.len() > MAX_VALUE {
            return None;
        }
        let bytes = value.as_bytes();
        let digits = bytes
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let n = (digits >= 3).then(|| self.hash(b'n', &bytes[..bytes.len() - 2]));
        Some(KeyPrint {
            k: self.hash(b'k', bytes),
            n,
        })
    }

    /// The fingerprints of a statement's constants and parameters, at most
    /// [`MAX_KEYS`], each value once.
    pub fn prints<'a>(&self, values: impl IntoIterator<Item = &'a str>) -> Vec<KeyPrint> {
        let mut out: Vec<KeyPrint> = Vec::new();
        for value in values {
            if out.len() == MAX_KEYS {
                break;
            }
            if let Some(p) = self.print(value) {
                if !out.iter().any(|o| o.k == p.k) {
                    out.push(p);
                }
            }
        }
        out
    }
}

/// The text of a bind parameter as the audit trail keeps it: binary parameters
/// are kept as `\x` hex. A lookup key sent in binary is turned back into the text
/// a policy writes: UTF-8 text as is (text, varchar, char), otherwise a 2-, 4- or
/// 8-byte value as a big-endian integer (int2, int4, int8). Anything else stays
/// as kept.
pub fn param_text(kept: &str) -> Cow<'_, str> {
    let Some(bytes) = kept.strip_prefix("\\x").and_then(|h| hex::decode(h).ok()) else {
        return Cow::Borrowed(kept);
    };
    if let Ok(text) = std::str::from_utf8(&bytes) {
        if !text.is_empty() && text.chars().all(|c| !c.is_control()) {
            return Cow::Owned(text.to_owned());
        }
    }
    let number = match bytes.len() {
        2 => i16::from_be_bytes([bytes[0], bytes[1]]) as i64,
        4 => i32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as i64,
        8 => i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
        _ => return Cow::Borrowed(kept),
    };
    Cow::Owned(number.to_string())
}

mod hex64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        u64::from_str_radix(&text, 16).map_err(serde::de::Error::custom)
    }
}

mod opt_hex64 {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::hex64::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        super::hex64::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_are_keyed_stable_and_neighbourly() {
        let a = Fingerprinter::new(&[1; 32]);
        let b = Fingerprinter::new(&[2; 32]);
        let p = a.print("079188004321").unwrap();
        assert_eq!(Some(p), a.print(" 079188004321 "));
        assert_ne!(p.k, b.print("079188004321").unwrap().k);
        let q = a.print("079188004399").unwrap();
        assert_ne!(p.k, q.k);
        assert_eq!(p.n, q.n, "same neighbourhood");
        assert_ne!(p.n, a.print("079188004421").unwrap().n);
        assert_eq!(a.print("ab1").unwrap().n, None);
        assert_eq!(a.print(""), None);
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("079188"));
        assert_eq!(serde_json::from_str::<KeyPrint>(&json).unwrap(), p);
        assert_eq!(a.prints(["1", "1", "2"]).len(), 2);
    }

    #[test]
    fn binary_parameters_read_as_text_or_integers() {
        assert_eq!(param_text("\\x393939"), "999");
        assert_eq!(param_text("\\x0000000000003039"), "12345");
        assert_eq!(param_text("\\x00003039"), "12345");
        assert_eq!(param_text("plain"), "plain");
        assert_eq!(param_text("\\xzz"), "\\xzz");
    }
}
