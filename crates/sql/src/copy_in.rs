//! `COPY table (columns) FROM STDIN` for accounts that may insert.
//!
//! sqlparser reads the rows of a COPY from the statement text itself (as in a dump),
//! so the one form maskgate accepts is recognized from its tokens: a table, a column
//! list, `FROM STDIN`, text format. The rows arrive afterwards as CopyData, which the
//! proxy checks line by line against the [`CopyIn`] the rewrite returns.

use sqlparser::ast::{Ident, ObjectName};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer, Word};

use crate::classify;
use crate::denial::Denial;

/// What each copied row must look like: `columns` tab-separated fields per line, and
/// the fields at the given positions exactly the given text (the value the account's
/// row filter requires, as COPY's text format writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyIn {
    pub columns: usize,
    pub required: Vec<(usize, String)>,
}

/// `None` unless `sql` is a `COPY … FROM`; then the table and columns of the one
/// accepted form, or why the form is refused.
pub(crate) fn recognize(sql: &str) -> Option<Result<(ObjectName, Vec<Ident>), Denial>> {
    // Most statements never mention COPY; only those are tokenized a second time.
    if !sql
        .as_bytes()
        .windows(4)
        .any(|w| w.eq_ignore_ascii_case(b"copy"))
    {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let tokens: Vec<Token> = tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    if !matches!(tokens.first(), Some(Token::Word(w)) if w.keyword == Keyword::COPY && w.quote_style.is_none())
    {
        return None;
    }
    let mut depth = 0usize;
    let has_from = tokens.iter().any(|t| match t {
        Token::LParen => {
            depth += 1;
            false
        }
        Token::RParen => {
            depth = depth.saturating_sub(1);
            false
        }
        Token::Word(w) => depth == 0 && w.keyword == Keyword::FROM && w.quote_style.is_none(),
        _ => false,
    });
    if !has_from {
        return None;
    }
    Some(accepted_form(&tokens[1..]).ok_or_else(classify::copy_from))
}

/// `name [. name] ( col [, col]* ) FROM STDIN [;]`
fn accepted_form(tokens: &[Token]) -> Option<(ObjectName, Vec<Ident>)> {
    let mut rest = tokens.iter();
    let mut name = vec![ident(rest.next()?)?];
    let mut next = rest.next()?;
    if matches!(next, Token::Period) {
        name.push(ident(rest.next()?)?);
        next = rest.next()?;
    }
    if !matches!(next, Token::LParen) {
        return None;
    }
    let mut columns = Vec::new();
    loop {
        columns.push(ident(rest.next()?)?);
        match rest.next()? {
            Token::Comma => continue,
            Token::RParen => break,
            _ => return None,
        }
    }
    if !keyword(rest.next()?, Keyword::FROM) || !keyword(rest.next()?, Keyword::STDIN) {
        return None;
    }
    match rest.next() {
        None => {}
        Some(Token::SemiColon) if rest.next().is_none() => {}
        Some(_) => return None,
    }
    Some((ObjectName::from(name), columns))
}

fn ident(token: &Token) -> Option<Ident> {
    match token {
        Token::Word(Word {
            value, quote_style, ..
        }) if *quote_style != Some('`') && *quote_style != Some('[') => Some(match quote_style {
            Some(q) => Ident::with_quote(*q, value.clone()),
            None => Ident::new(value.clone()),
        }),
        _ => None,
    }
}

fn keyword(token: &Token, keyword: Keyword) -> bool {
    matches!(token, Token::Word(w) if w.keyword == keyword && w.quote_style.is_none())
}

/// A value as COPY's text format writes it, for a field compared byte for byte.
pub(crate) fn copy_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_plain_form_is_accepted() {
        let (name, columns) = recognize("copy public.Person (id, \"Note\") from stdin;")
            .unwrap()
            .unwrap();
        assert_eq!(name.to_string(), "public.Person");
        assert_eq!(columns.len(), 2);
        assert!(recognize("COPY person TO STDOUT").is_none());
        assert!(recognize("SELECT 1").is_none());
        for refused in [
            "COPY person FROM STDIN",
            "COPY person (id) FROM '/etc/passwd'",
            "COPY person (id) FROM PROGRAM 'id'",
            "COPY person (id) FROM STDIN WITH (FORMAT csv)",
            "COPY person (id) FROM STDIN; SELECT 1",
        ] {
            assert!(recognize(refused).unwrap().is_err(), "{refused}");
        }
    }

    #[test]
    fn text_format_escapes() {
        assert_eq!(copy_text("a\tb\\c\n"), "a\\tb\\\\c\\n");
    }
}
