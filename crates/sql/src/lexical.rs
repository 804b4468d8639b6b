//! Tokens that sqlparser's tokenizer and PostgreSQL's lexer read differently.
//!
//! maskgate sends its own printing of sqlparser's tree, so PostgreSQL runs what was
//! analyzed whatever the client wrote. But where the two lexers disagree about the
//! client's text, that tree is not what the client meant, and often not something
//! PostgreSQL would have run at all. Such texts are refused here, before parsing:
//!
//! - A number running into a name (`123abc`, `1e`, `0b101`): sqlparser reads a number
//!   and a column alias; PostgreSQL 15 refuses it ("trailing junk after numeric
//!   literal") and PostgreSQL 16 reads `0b101` as one integer.
//! - `0x1F`: sqlparser reads the bit string `X'1F'`; PostgreSQL 15 refuses it and
//!   PostgreSQL 16 reads the integer 31.
//! - String constants on consecutive lines (`'a'` newline `'b'`): PostgreSQL joins
//!   them into one constant, sqlparser reads a constant and an alias.
//! - A quoted name holding `"`, `\` or NUL, which sqlparser's printer and PostgreSQL
//!   can read as different names.

use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Whitespace};

use crate::denial::{sqlstate, Denial};

/// Refuses a token stream (white space included) with any of the readings above.
pub(crate) fn check(sql: &str, tokens: &[TokenWithSpan]) -> Result<(), Denial> {
    let mut hex = false;
    let mut after_number = false;
    for token in tokens {
        if after_number && matches!(&token.token, Token::Word(w) if w.quote_style.is_none()) {
            return Err(trailing_junk());
        }
        after_number = matches!(token.token, Token::Number(..));
        match &token.token {
            Token::Word(word)
                if word.quote_style.is_some() && word.value.contains(['"', '\\', '\0']) =>
            {
                return Err(Denial::unsupported(
                    "a quoted name containing a double quote, a backslash or NUL",
                ));
            }
            Token::HexStringLiteral(_) => hex = true,
            _ => {}
        }
    }
    if hex {
        check_hex_forms(sql, tokens)?;
    }
    check_continued_strings(tokens)
}

/// Refuses a string constant followed, across white space with a line break in it,
/// by another `'…'`: PostgreSQL's lexer reads the two as one constant.
fn check_continued_strings(tokens: &[TokenWithSpan]) -> Result<(), Denial> {
    let mut after_string = false;
    let mut line_break = false;
    for token in tokens {
        match &token.token {
            Token::Whitespace(space) => {
                line_break |= match space {
                    Whitespace::Newline => true,
                    Whitespace::SingleLineComment { .. } => true,
                    Whitespace::MultiLineComment(text) => text.contains('\n'),
                    Whitespace::Space | Whitespace::Tab => false,
                };
                continue;
            }
            Token::SingleQuotedString(_) if after_string && line_break => {
                return Err(Denial {
                    sqlstate: sqlstate::FEATURE_NOT_SUPPORTED,
                    message: "a string constant continued on the next line ('…' newline \
                              '…') is not supported through maskgate; write one constant, \
                              or join them with ||"
                        .to_owned(),
                });
            }
            _ => {}
        }
        after_string = matches!(
            token.token,
            Token::SingleQuotedString(_)
                | Token::EscapedStringLiteral(_)
                | Token::NationalStringLiteral(_)
                | Token::HexStringLiteral(_)
                | Token::UnicodeStringLiteral(_)
                | Token::SingleQuotedByteStringLiteral(_)
        );
        line_break = false;
    }
    Ok(())
}

fn trailing_junk() -> Denial {
    Denial {
        sqlstate: sqlstate::SYNTAX_ERROR,
        message: "trailing junk after numeric literal".to_owned(),
    }
}

/// Refuses `0x…`, which sqlparser reads as `X'…'`: the character a hex string token
/// starts with tells the two apart.
fn check_hex_forms(sql: &str, tokens: &[TokenWithSpan]) -> Result<(), Denial> {
    let starts = byte_offsets(sql, tokens, |t| matches!(t, Token::HexStringLiteral(_)));
    match starts {
        Some(starts)
            if starts
                .iter()
                .all(|&at| !sql.as_bytes()[at].is_ascii_digit()) =>
        {
            Ok(())
        }
        _ => Err(trailing_junk()),
    }
}

/// Byte offsets where the tokens that `keep` selects start. sqlparser gives lines and
/// columns in characters; one cursor walks the text once to turn them into bytes,
/// since tokens come in order. `None` if a location is not in the text.
pub(crate) fn byte_offsets(
    sql: &str,
    tokens: &[TokenWithSpan],
    keep: impl Fn(&Token) -> bool,
) -> Option<Vec<usize>> {
    let mut offsets = Vec::new();
    let mut chars = sql.char_indices().peekable();
    let mut at = Location { line: 1, column: 1 };
    for token in tokens.iter().filter(|t| keep(&t.token)) {
        let target = token.span.start;
        while (at.line, at.column) < (target.line, target.column) {
            match chars.next()?.1 {
                '\n' => {
                    at = Location {
                        line: at.line + 1,
                        column: 1,
                    }
                }
                _ => at.column += 1,
            }
        }
        if (at.line, at.column) != (target.line, target.column) {
            return None;
        }
        offsets.push(chars.peek().map_or(sql.len(), |&(byte, _)| byte));
    }
    Some(offsets)
}

#[cfg(test)]
mod tests {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::Tokenizer;

    use super::*;

    fn checked(sql: &str) -> Result<(), &'static str> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .unwrap();
        check(sql, &tokens).map_err(|d| d.sqlstate)
    }

    #[test]
    fn numbers_running_into_names_are_refused() {
        for sql in [
            "SELECT 123abc",
            "SELECT 1e",
            "SELECT 0b101",
            "SELECT 1.5e3x",
            "SELECT 0x1F",
            "SELECT 'é',\n  0X1f",
        ] {
            assert_eq!(checked(sql), Err("42601"), "{sql}");
        }
    }

    #[test]
    fn ordinary_numbers_strings_and_names_pass() {
        for sql in [
            "SELECT 123 abc",
            "SELECT 1e5, 1.5E-3, .5",
            "SELECT X'1F', x'2a', B'101'",
            "SELECT 'é', X'1F'",
            "SELECT \"1e\"",
            "SELECT a1, t.c2 FROM t",
        ] {
            assert_eq!(checked(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn strings_continued_over_lines_are_refused() {
        assert_eq!(checked("SELECT 'a'\n'b'"), Err("0A000"));
        assert_eq!(checked("SELECT 'a' -- note\n  'b'"), Err("0A000"));
        assert_eq!(checked("SELECT E'a'\r\n'b'"), Err("0A000"));
        assert_eq!(checked("SELECT 'a',\n'b'"), Ok(()));
        assert_eq!(checked("SELECT 'a'\n|| 'b'"), Ok(()));
    }

    #[test]
    fn quoted_names_that_print_ambiguously_are_refused() {
        assert_eq!(checked("SELECT \"a\"\"b\""), Err("0A000"));
        assert_eq!(checked("SELECT \"a\\b\""), Err("0A000"));
    }
}
