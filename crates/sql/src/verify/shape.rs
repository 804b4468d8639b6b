//! Printed texts already checked, by shape.
//!
//! The check reads the printed text with PostgreSQL's parser, which costs far more
//! than the rest of an analysis. What it proves does not depend on the contents of
//! the string constants: maskgate prints every string through one quoting function
//! (`'…'` with quotes doubled, or `E'…'` with backslashes and quotes escaped), which
//! property tests check against PostgreSQL for every content, so a constant is one
//! token that ends where maskgate meant it to, whatever it holds. A text that differs
//! from an already-checked one only inside its string constants therefore reads the
//! same way, and is not parsed again. Everything else (names, numbers, operators,
//! keywords, the form of each constant) is part of the shape.

use std::sync::OnceLock;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

type Shapes = moka::sync::Cache<Box<str>, ()>;

static VERIFIED: OnceLock<Shapes> = OnceLock::new();

/// Printed shapes PostgreSQL's parser read as meant, weighed by what they hold.
fn verified() -> &'static Shapes {
    VERIFIED.get_or_init(|| build(DEFAULT_SHAPE_CACHE_BYTES))
}

fn build(max_bytes: u64) -> Shapes {
    moka::sync::Cache::builder()
        .max_capacity(max_bytes)
        .weigher(|shape, _: &()| weight(shape))
        .build()
}

/// Bounds the memory of the checked shapes, for the whole process. Only the first
/// call counts (the cache is made once); it returns whether this one did.
pub fn limit_verified_shapes(max_bytes: u64) -> bool {
    VERIFIED.set(build(max_bytes.max(1))).is_ok()
}

/// Bytes the checked shapes hold, by the weigher's estimate (for the metrics).
pub fn verified_shape_bytes() -> u64 {
    let cache = verified();
    cache.run_pending_tasks();
    cache.weighted_size()
}

#[allow(clippy::borrowed_box)] // moka's weigher takes the key type by reference
fn weight(shape: &Box<str>) -> u32 {
    u32::try_from(shape.len() + SHAPE_ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

/// What an entry costs beyond its text: the cache's node, the key's hash and
/// frequency sketch, and the allocator's share (measured on resident memory:
/// about 250 bytes for a 60-byte shape).
const SHAPE_ENTRY_OVERHEAD: usize = 192;

/// Used when the server does not say (unit tests, benches).
const DEFAULT_SHAPE_CACHE_BYTES: u64 = 16 << 20;

/// The shape of a printed text: its tokens, each string constant emptied. `None`
/// when sqlparser cannot tokenize it (the full check then decides).
pub(super) fn of(printed: &str) -> Option<Box<str>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, printed)
        .tokenize()
        .ok()?;
    let mut shape = String::with_capacity(printed.len());
    for token in &tokens {
        match token {
            Token::SingleQuotedString(_) => shape.push_str("''"),
            Token::EscapedStringLiteral(_) => shape.push_str("E''"),
            other => shape.push_str(&other.to_string()),
        }
    }
    Some(shape.into_boxed_str())
}

/// Whether a text of this shape was checked before.
pub(super) fn is_verified(shape: &str) -> bool {
    verified().contains_key(shape)
}

/// Notes a shape PostgreSQL's parser read as meant.
pub(super) fn remember(shape: Box<str>) {
    verified().insert(shape, ());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_string_contents_are_left_out() {
        let a = of("SELECT 'a''b', E'\\\\x' FROM t WHERE n = 1").unwrap();
        let b = of("SELECT 'zz', E'\\\\y\\\\z' FROM t WHERE n = 1").unwrap();
        assert_eq!(a, b);
        for other in [
            "SELECT 'a', 'x' FROM t WHERE n = 1",
            "SELECT 'a', E'x' FROM t WHERE n = 2",
            "SELECT 'a', E'x' FROM u WHERE n = 1",
            "SELECT 'a', E'x' FROM \"t\" WHERE n = 1",
            "SELECT 'a', E'x' FROM t WHERE n <> 1",
        ] {
            assert_ne!(of(other).unwrap(), a, "{other}");
        }
    }
}
