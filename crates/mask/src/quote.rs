//! The workspace's only quoting functions: [`quote_literal`] for string
//! constants and [`quote_ident`] for names. Every crate that writes SQL text
//! (mask expressions, row filters, catalog queries, startup settings, the
//! rewrite) goes through them, so there is one set of rules to review.
//!
//! Both assume what maskgate guarantees for every session it writes SQL into:
//! a client encoding in which `'`, `"` and `\` can only ever be themselves
//! (UTF-8, which restricted sessions are held to, or any server encoding), never
//! the second byte of a multi-byte character.
//!
//! The output is one token. Callers put whitespace or punctuation before it:
//! glued to a word (`E`, `U&`, a type name) PostgreSQL would read it as a
//! prefixed or typed constant.

use thiserror::Error;

/// Longest name PostgreSQL keeps (`NAMEDATALEN - 1`); longer names are
/// truncated with only a NOTICE.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Why a value cannot be written as SQL text. Values themselves are never
/// echoed: they may be personal data.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuoteError {
    #[error("SQL literals must not contain a NUL character")]
    LiteralNul,

    #[error("identifiers must not be empty")]
    EmptyIdentifier,

    #[error("identifiers must not contain a NUL character")]
    IdentifierNul,

    #[error("identifier of {bytes} bytes is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}, which it would silently truncate")]
    IdentifierTooLong { bytes: usize },
}

/// Quotes `value` as one SQL string constant (type `unknown`) that PostgreSQL
/// reads as exactly `value` whatever `standard_conforming_strings` says.
///
/// - No backslash: `'…'` with each `'` doubled. A backslash is the only
///   character whose meaning in `'…'` depends on that setting.
/// - Otherwise: `E'…'`, with `\` written `\\` and `'` written `''`. An `E`
///   string reads backslashes as escapes under both settings; `\'` is never
///   written (PostgreSQL refuses it under some client encodings).
///
/// Either way the constant ends at the same quote whether it is read as a
/// standard or as an escape string, so no value can end it early.
/// NUL is refused: no PostgreSQL text can hold it.
pub fn quote_literal(value: &str) -> Result<String, QuoteError> {
    if value.contains('\0') {
        return Err(QuoteError::LiteralNul);
    }
    let escape = value.contains('\\');
    let mut out = String::with_capacity(value.len() + 3);
    if escape {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    Ok(out)
}

/// Quotes `name` as one identifier: always `"…"` with each `"` doubled, so
/// case, keywords, dots and spaces all stay part of the name. `name` is taken
/// exactly (pass the folded name, `participant`, not `Participant`).
///
/// Refused: the empty name and NUL (PostgreSQL rejects both) and names over
/// [`MAX_IDENTIFIER_BYTES`] bytes, which PostgreSQL would truncate so they
/// could name a different object. Bytes are counted in UTF-8, exact for a
/// UTF-8 database.
pub fn quote_ident(name: &str) -> Result<String, QuoteError> {
    if name.is_empty() {
        return Err(QuoteError::EmptyIdentifier);
    }
    if name.contains('\0') {
        return Err(QuoteError::IdentifierNul);
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(QuoteError::IdentifierTooLong { bytes: name.len() });
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// Checks that `column` is one identifier or a dotted path of them, each bare
/// (`name`) or double-quoted with `""` for a quote, so that splicing it into
/// an expression cannot add anything but a column reference.
pub fn check_column_ref(column: &str) -> Result<(), crate::MaskError> {
    let invalid = || crate::MaskError::InvalidColumnRef {
        column: column.to_string(),
    };
    let mut rest = column;
    let mut parts = 0;
    loop {
        rest = identifier(rest).ok_or_else(invalid)?;
        parts += 1;
        match rest.strip_prefix('.') {
            Some(next) if parts < 4 => rest = next,
            Some(_) => return Err(invalid()),
            None if rest.is_empty() => return Ok(()),
            None => return Err(invalid()),
        }
    }
}

/// Consumes one identifier and returns what follows it.
fn identifier(s: &str) -> Option<&str> {
    if let Some(body) = s.strip_prefix('"') {
        let mut chars = body.char_indices().peekable();
        let mut empty = true;
        while let Some((i, c)) = chars.next() {
            match c {
                '\0' => return None,
                '"' if chars.peek().is_some_and(|&(_, n)| n == '"') => {
                    chars.next();
                    empty = false;
                }
                '"' if !empty => return Some(&body[i + 1..]),
                '"' => return None,
                _ => empty = false,
            }
        }
        return None;
    }
    let end = s
        .char_indices()
        .find(|&(i, c)| {
            let start_ok = c.is_alphabetic() || c == '_';
            let ok = if i == 0 {
                start_ok
            } else {
                start_ok || c.is_ascii_digit() || c == '$'
            };
            !ok
        })
        .map_or(s.len(), |(i, _)| i);
    (end > 0).then(|| &s[end..])
}

/// Checks a type name before it is used in `::<type>`: words, digits,
/// parentheses, commas, dots, brackets, spaces and double-quoted identifiers,
/// which is everything `format_type()` prints; nothing that can start a
/// comment, a string or a new clause.
pub fn check_type_name(pg_type: &str) -> Result<(), crate::MaskError> {
    let unsafe_name = || crate::MaskError::UnsafeTypeName {
        pg_type: pg_type.to_string(),
    };
    if pg_type.trim().is_empty() || pg_type.len() > 256 {
        return Err(unsafe_name());
    }
    let mut rest = pg_type;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            rest = identifier(rest).ok_or_else(unsafe_name)?;
        } else if c.is_ascii_alphanumeric() || " _.,()[]".contains(c) {
            rest = &rest[1..];
        } else {
            return Err(unsafe_name());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sqlparser::ast::{Expr, Value};
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    #[test]
    fn literals() {
        assert_eq!(quote_literal("abc").unwrap(), "'abc'");
        assert_eq!(quote_literal("").unwrap(), "''");
        assert_eq!(quote_literal("O'Brien").unwrap(), "'O''Brien'");
        assert_eq!(
            quote_literal("'; DROP TABLE x; --").unwrap(),
            "'''; DROP TABLE x; --'"
        );
        assert_eq!(quote_literal(r"a\'b").unwrap(), r"E'a\\''b'");
        assert_eq!(quote_literal(r"\").unwrap(), r"E'\\'");
        assert_eq!(quote_literal(r"\x41\n").unwrap(), r"E'\\x41\\n'");
        assert_eq!(quote_literal("Ẩn danh").unwrap(), "'Ẩn danh'");
        assert_eq!(quote_literal("a\nb -- c").unwrap(), "'a\nb -- c'");
        assert_eq!(quote_literal("$$x$$").unwrap(), "'$$x$$'");
        assert_eq!(quote_literal("a\0b"), Err(QuoteError::LiteralNul));
    }

    #[test]
    fn identifiers() {
        assert_eq!(quote_ident("participant").unwrap(), "\"participant\"");
        assert_eq!(quote_ident("Odd.Name").unwrap(), "\"Odd.Name\"");
        assert_eq!(quote_ident("a\"b").unwrap(), "\"a\"\"b\"");
        assert_eq!(quote_ident("\"").unwrap(), "\"\"\"\"");
        assert_eq!(quote_ident("select").unwrap(), "\"select\"");
        assert_eq!(quote_ident("a\\b").unwrap(), "\"a\\b\"");
        assert_eq!(quote_ident(""), Err(QuoteError::EmptyIdentifier));
        assert_eq!(quote_ident("a\0"), Err(QuoteError::IdentifierNul));
        let long = "x".repeat(MAX_IDENTIFIER_BYTES);
        assert!(quote_ident(&long).is_ok());
        assert_eq!(
            quote_ident(&format!("{long}y")),
            Err(QuoteError::IdentifierTooLong { bytes: 64 })
        );
        // 21 three-byte characters fit, 22 do not.
        assert!(quote_ident(&"ẩ".repeat(21)).is_ok());
        assert!(quote_ident(&"ẩ".repeat(22)).is_err());
    }

    /// What the quoted text tokenizes to, in the parser the rewrite builds its
    /// masking subqueries with.
    fn parsed(sql: &str) -> Expr {
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| {
                let e = p.parse_expr()?;
                p.expect_token(&sqlparser::tokenizer::Token::EOF)?;
                Ok(e)
            })
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Values full of the characters that matter to a SQL lexer.
    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            "[^\\x00]{0,40}",
            proptest::collection::vec(
                prop::sample::select(vec![
                    "'", "\"", "\\", "$", "$$", "-", "--", "/*", "*/", ";", "\n", "\r", " ", "E",
                    "e", "U&", "x", "N", "ẩ", "\u{2028}", "\u{feff}", "\t", "0", "\\'",
                ]),
                0..24,
            )
            .prop_map(|parts| parts.concat()),
        ]
    }

    proptest! {
        #[test]
        fn literals_are_one_constant_with_the_value(value in hostile()) {
            let sql = quote_literal(&value).unwrap();
            let got = match parsed(&sql) {
                Expr::Value(v) => match v.value {
                    Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => s,
                    other => panic!("{sql}: {other:?}"),
                },
                other => panic!("{sql}: {other:?}"),
            };
            prop_assert_eq!(got, value);
        }

        #[test]
        fn identifiers_are_one_name(name in hostile()) {
            match quote_ident(&name) {
                Ok(sql) => match parsed(&sql) {
                    Expr::Identifier(ident) => {
                        prop_assert_eq!(ident.quote_style, Some('"'));
                        prop_assert_eq!(ident.value, name);
                    }
                    other => panic!("{sql}: {other:?}"),
                },
                Err(_) => prop_assert!(name.is_empty() || name.len() > MAX_IDENTIFIER_BYTES),
            }
        }
    }

    #[test]
    fn column_refs() {
        for ok in [
            "c",
            "citizen_id",
            "\"citizen_id\"",
            "\"p\".\"citizen_id\"",
            "s.t.c",
            "\"a\"\"b\"",
            "\"x; DROP TABLE t\"",
            "ho_tên",
            "a$1",
            "db.s.t.c",
        ] {
            check_column_ref(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "1c",
            "c;",
            "c; DROP TABLE t",
            "c)",
            "(c)",
            "\"\"",
            "\"c",
            "\"c\"x",
            "a..b",
            "a.",
            ".a",
            "a b",
            "c--",
            "a.b.c.d.e",
            "\"a\0\"",
            "c::text",
            "c'",
        ] {
            assert!(check_column_ref(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn type_names() {
        for ok in [
            "text",
            "character varying(12)",
            "numeric(12,2)",
            "timestamp(3) with time zone",
            "integer[]",
            "public.my_enum",
            "\"MyType\"",
            "public.\"odd \"\" name\"",
        ] {
            check_type_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            " ",
            "text; DROP TABLE x",
            "text--",
            "text/*",
            "text'",
            "\"unterminated",
            "int4 -- x",
            "text::int",
        ] {
            assert!(check_type_name(bad).is_err(), "{bad:?}");
        }
    }
}
