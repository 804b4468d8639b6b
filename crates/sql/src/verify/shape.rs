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

/// Printed shapes PostgreSQL's parser read as meant, weighed by their length.
fn verified() -> &'static moka::sync::Cache<Box<str>, ()> {
    static VERIFIED: OnceLock<moka::sync::Cache<Box<str>, ()>> = OnceLock::new();
    VERIFIED.get_or_init(|| {
        moka::sync::Cache::builder()
            .max_capacity(SHAPE_CACHE_BYTES)
            .weigher(|shape, _: &()| weight(shape))
            .build()
    })
}

#[allow(clippy::borrowed_box)] // moka's weigher takes the key type by reference
fn weight(shape: &Box<str>) -> u32 {
    u32::try_from(shape.len()).unwrap_or(u32::MAX)
}

/// Memory for the shapes of every statement an application sends, and more.
const SHAPE_CACHE_BYTES: u64 = 32 << 20;

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
