//! Keyed fingerprints of lookup keys: how detection counts the distinct people an
//! account looks up, and recognises a honeytoken, without ever holding a key in clear.
//!
//! The proxy's audit writer, which already holds a statement's constants to seal
//! them, fingerprints the one value each lookup pinned on a lookup-only table's key
//! (the analyzer names it: a constant by its place, or a bind parameter by its
//! number), in its canonical form for the key column's type ([`crate::canonical`]):
//!
//! * `k`: HMAC-SHA256 of the canonical value under a key derived from the audit
//!   signing key, cut to 64 bits (16 hex digits);
//! * `n`, when the value ends in at least three digits: the same of the value
//!   without its last two digits — its *neighbourhood*. Sequential harvesting
//!   (…100, …101, …102) puts many distinct `k` in one `n`; a clerk's lookups almost
//!   never share one.
//!
//! Both are written into the statement's record. Nobody without the key can link a
//! fingerprint to a value; the key never leaves the proxy's machine (but whoever
//! holds the signing key can recompute the fingerprint of every possible key).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::canonical::{canonical, KeyKind, RawKey};

/// The purpose the fingerprint key is derived for from the audit signing key.
pub const PURPOSE: &str = "detection lookup fingerprints";

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

    /// The fingerprints of a value already in canonical form.
    pub fn print(&self, canonical: &str) -> KeyPrint {
        let bytes = canonical.as_bytes();
        let digits = bytes
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let n = (digits >= 3).then(|| self.hash(b'n', &bytes[..bytes.len() - 2]));
        KeyPrint {
            k: self.hash(b'k', bytes),
            n,
        }
    }

    /// The fingerprints of a key value compared with a column of `kind`; `None`
    /// when the value cannot be read (it is then counted, not fingerprinted).
    pub fn key(&self, raw: RawKey<'_>, kind: KeyKind) -> Option<KeyPrint> {
        canonical(raw, kind).map(|c| self.print(&c))
    }
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
        let p = a.print("079188004321");
        assert_eq!(
            Some(p),
            a.key(RawKey::Constant("'079188004321  '"), KeyKind::Char)
        );
        assert_ne!(p.k, b.print("079188004321").k);
        let q = a.print("079188004399");
        assert_ne!(p.k, q.k);
        assert_eq!(p.n, q.n, "same neighbourhood");
        assert_ne!(p.n, a.print("079188004421").n);
        assert_eq!(a.print("ab1").n, None);
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("079188"));
        assert_eq!(serde_json::from_str::<KeyPrint>(&json).unwrap(), p);
        assert_eq!(a.key(RawKey::Binary(b"AAAA", None), KeyKind::Number), None);
    }
}
