//! The only places where text from a policy or a catalog becomes SQL.
//!
//! Literals are written so that they mean the same thing whatever the
//! session's `standard_conforming_strings` says: single quotes are doubled and
//! a backslash never appears in the SQL text (it is spliced in with
//! `chr(92)`), so no setting can turn a quote back into a string terminator.
//! `E'…'` strings are never produced.

use crate::error::MaskError;

/// Quotes `value` as a SQL string literal (type `unknown`, or `text` when it
/// holds a backslash); NUL is refused because no PostgreSQL text can hold it.
pub fn quote_literal(value: &str) -> Result<String, MaskError> {
    if value.contains('\0') {
        return Err(MaskError::LiteralNul);
    }
    let quote = |piece: &str| format!("'{}'", piece.replace('\'', "''"));
    if !value.contains('\\') {
        return Ok(quote(value));
    }
    let pieces: Vec<String> = value.split('\\').map(quote).collect();
    Ok(format!("({})", pieces.join(" || chr(92) || ")))
}

/// Checks that `column` is one identifier or a dotted path of them, each bare
/// (`name`) or double-quoted with `""` for a quote, so that splicing it into
/// an expression cannot add anything but a column reference.
pub fn check_column_ref(column: &str) -> Result<(), MaskError> {
    let invalid = || MaskError::InvalidColumnRef {
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
pub fn check_type_name(pg_type: &str) -> Result<(), MaskError> {
    let unsafe_name = || MaskError::UnsafeTypeName {
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

    #[test]
    fn literals_double_quotes_and_avoid_backslashes() {
        assert_eq!(quote_literal("abc").unwrap(), "'abc'");
        assert_eq!(quote_literal("").unwrap(), "''");
        assert_eq!(quote_literal("O'Brien").unwrap(), "'O''Brien'");
        assert_eq!(
            quote_literal("'; DROP TABLE x; --").unwrap(),
            "'''; DROP TABLE x; --'"
        );
        assert_eq!(quote_literal(r"a\'b").unwrap(), "('a' || chr(92) || '''b')");
        assert_eq!(quote_literal(r"\").unwrap(), "('' || chr(92) || '')");
        assert_eq!(quote_literal("Ẩn danh").unwrap(), "'Ẩn danh'");
        assert_eq!(quote_literal("a\0b"), Err(MaskError::LiteralNul));
        for v in ["x'y", r"\\'", "''''", "a\\b'c\\"] {
            let q = quote_literal(v).unwrap();
            assert!(!q.contains('\\'), "{q}");
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
