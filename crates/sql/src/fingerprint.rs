//! Statement fingerprints: the statement with every literal replaced by `?`.
//!
//! Logs must never hold personal data, and literals are where it hides
//! (`WHERE citizen_id = '001203004567'`). A fingerprint keeps the shape of a
//! statement, which is what an operator needs, and nothing else.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// Longest fingerprint kept; longer statements are cut (marked with `…`).
const MAX_LEN: usize = 2048;

/// The statement's tokens with literals replaced by `?`, comments dropped and
/// white space collapsed. Text that does not tokenize is summarized by its
/// length alone, since it cannot be told apart from a literal.
pub fn fingerprint(sql: &str) -> String {
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return format!("<untokenizable statement of {} bytes>", sql.len());
    };
    let mut out = String::with_capacity(sql.len().min(MAX_LEN));
    let mut space = false;
    for token in tokens {
        let piece = match &token {
            Token::Whitespace(Whitespace::Space | Whitespace::Newline | Whitespace::Tab) => {
                space = !out.is_empty();
                continue;
            }
            Token::Whitespace(_) => {
                // Comments may quote data; they are dropped.
                space = !out.is_empty();
                continue;
            }
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::DollarQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_) => "?".to_string(),
            other => other.to_string(),
        };
        if space {
            out.push(' ');
            space = false;
        }
        out.push_str(&piece);
        if out.len() > MAX_LEN {
            let mut cut = MAX_LEN;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn replaces_literals_and_keeps_the_shape() {
        assert_eq!(
            fingerprint(
                "SELECT full_name FROM participant WHERE citizen_id = '001203004567' AND age > 42"
            ),
            "SELECT full_name FROM participant WHERE citizen_id = ? AND age > ?"
        );
    }

    #[test]
    fn drops_comments_and_collapses_space() {
        assert_eq!(
            fingerprint("select 1 -- Nguyễn Văn An\n  ,  /* 0912345678 */ 2"),
            "select ? , ?"
        );
    }

    #[test]
    fn hides_every_string_form() {
        for sql in [
            "SELECT E'secret\\n'",
            "SELECT $$secret$$",
            "SELECT $tag$secret$tag$",
            "SELECT U&'secr\\0065t'",
            "SELECT X'DEADBEEF'",
            "SELECT B'0101'",
            "SELECT N'secret'",
        ] {
            let f = fingerprint(sql);
            assert!(
                !f.to_lowercase().contains("secret") && !f.contains("DEADBEEF"),
                "{sql} -> {f}"
            );
        }
    }

    #[test]
    fn untokenizable_text_is_not_echoed() {
        let f = fingerprint("SELECT 'unterminated secret");
        assert!(!f.contains("secret"), "{f}");
    }

    #[test]
    fn is_bounded() {
        let long = format!("SELECT {}", "a, ".repeat(5000));
        assert!(fingerprint(&long).len() <= 2048 + '…'.len_utf8());
    }
}
