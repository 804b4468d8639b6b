//! Hashes that link records into one chain.
//!
//! A record's `prev` is the lowercase hex SHA-256 of the previous record's line
//! exactly as it sits in the file, without its newline. Hashing the bytes rather
//! than a re-serialization means no canonical JSON form is needed: what is on disk
//! is what is vouched for. The first record of a trail links to [`Digest::ZERO`].

use std::fmt;

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest of one line.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The link of the very first record of a trail: 64 zeros in hex.
    pub const ZERO: Digest = Digest([0; 32]);

    /// Hashes one line's bytes (without the trailing newline).
    pub fn of_line(line: &[u8]) -> Digest {
        Digest(Sha256::digest(line).into())
    }

    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Writes the lowercase hex form into `out` without allocating (the writer's
    /// hot path does this once per record).
    pub fn write_hex(&self, out: &mut [u8; 64]) {
        // encode_to_slice only fails on a wrong output length, which the array
        // type rules out.
        let _ = hex::encode_to_slice(self.0, out);
    }

    /// The lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the strict form the writer produces: exactly 64 lowercase hex digits.
    ///
    /// Upper case is refused on purpose: hex decoders accept it, so a flipped case
    /// bit would otherwise change a line's bytes (and its hash) without changing
    /// the value read from it, and such an edit of the last line would go unseen.
    pub fn parse_hex(text: &str) -> Option<Digest> {
        parse_lower_hex::<32>(text).map(Digest)
    }
}

/// Decodes exactly `2 * N` lowercase hex digits.
pub(crate) fn parse_lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N
        || !bytes
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(bytes, &mut out).ok()?;
    Some(out)
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hex = [0u8; 64];
        self.write_hex(&mut hex);
        // Hex digits are ASCII, so this never takes the error branch.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_sixty_four_zeros() {
        assert_eq!(Digest::ZERO.to_hex(), "0".repeat(64));
    }

    #[test]
    fn hex_round_trip_is_strict() {
        let d = Digest::of_line(b"{\"seq\":1}");
        let hex = d.to_hex();
        assert_eq!(Digest::parse_hex(&hex), Some(d));
        assert_eq!(d.to_string(), hex);
        assert_eq!(Digest::parse_hex(&hex.to_uppercase()), None);
        assert_eq!(Digest::parse_hex(&hex[..63]), None);
        assert_eq!(Digest::parse_hex(&format!("{hex}0")), None);
        assert_eq!(Digest::parse_hex(&format!("{}g", &hex[..63])), None);
    }

    #[test]
    fn hashes_the_exact_bytes() {
        assert_ne!(
            Digest::of_line(b"{\"a\":1}"),
            Digest::of_line(b"{ \"a\":1}")
        );
    }
}
