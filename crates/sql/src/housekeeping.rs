//! Session housekeeping that needs more than a classification: `RESET`, which
//! sqlparser does not read (its tokens are rewritten as the equivalent SET), and the
//! options of an allowed `EXPLAIN`.

use sqlparser::ast::Ident;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::denial::Denial;
use crate::names;

/// The setting name `RESET ALL` is parsed as (`SET "…" TO DEFAULT`, which sqlparser
/// reads); printed back as `RESET ALL`.
pub(crate) const RESET_ALL_MARKER: &str = "_maskgate_reset_all";

/// `RESET name` as `SET name TO DEFAULT` (PostgreSQL documents them as the same
/// statement), `RESET ALL` as `SET "_maskgate_reset_all" TO DEFAULT`. sqlparser reads
/// no RESET. `at` is the index of the RESET keyword.
pub(crate) fn reset_tokens(tokens: &mut Vec<TokenWithSpan>, at: usize) {
    let span = tokens[at].span;
    let token = |token: Token| TokenWithSpan { token, span };
    tokens[at] = token(Token::make_keyword("SET"));
    let end = tokens[at + 1..]
        .iter()
        .position(|t| matches!(t.token, Token::SemiColon))
        .map_or(tokens.len(), |p| at + 1 + p);
    let words: Vec<usize> = (at + 1..end)
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    if let [one] = words.as_slice() {
        if is_keyword(&tokens[*one].token, Keyword::ALL) {
            tokens[*one] = token(Token::make_word(RESET_ALL_MARKER, Some('"')));
        }
    }
    let suffix = [
        token(Token::Whitespace(sqlparser::tokenizer::Whitespace::Space)),
        token(Token::make_keyword("TO")),
        token(Token::Whitespace(sqlparser::tokenizer::Whitespace::Space)),
        token(Token::make_keyword("DEFAULT")),
    ];
    tokens.splice(end..end, suffix);
}

/// The options of an allowed EXPLAIN: always `COSTS false` (no row or cost
/// estimates, which come from statistics over the whole table, rows outside the
/// account's filter included), and the client's FORMAT. ANALYZE (it runs the
/// statement and counts the rows every node saw, the filtered ones included),
/// VERBOSE, BUFFERS, SETTINGS and the rest are refused.
pub(crate) fn explain_options(
    options: Option<&[sqlparser::ast::UtilityOption]>,
) -> Result<Vec<sqlparser::ast::UtilityOption>, Denial> {
    let refused = || {
        Denial::privilege(
            "EXPLAIN is allowed with the options FORMAT and COSTS OFF only (no ANALYZE)",
        )
    };
    let mut format = None;
    for option in options.unwrap_or_default() {
        names::check_quote(&option.name)?;
        let word = |expr: Option<&sqlparser::ast::Expr>| match expr {
            Some(sqlparser::ast::Expr::Identifier(ident)) if ident.quote_style.is_none() => {
                Some(ident.value.to_ascii_lowercase())
            }
            Some(sqlparser::ast::Expr::Value(v)) => match &v.value {
                sqlparser::ast::Value::Boolean(b) => Some(b.to_string()),
                _ => None,
            },
            _ => None,
        };
        match (
            names::fold(&option.name).as_str(),
            word(option.arg.as_ref()),
        ) {
            ("format", Some(kind)) if ["text", "json", "xml", "yaml"].contains(&kind.as_str()) => {
                format = Some(kind)
            }
            ("costs", Some(off)) if ["false", "off", "0"].contains(&off.as_str()) => {}
            _ => return Err(refused()),
        }
    }
    let option = |name: &str, value: &str| sqlparser::ast::UtilityOption {
        name: Ident::new(name),
        arg: Some(sqlparser::ast::Expr::Identifier(Ident::new(value))),
    };
    let mut out = vec![option("COSTS", "false")];
    if let Some(format) = format {
        out.push(option("FORMAT", &format.to_ascii_uppercase()));
    }
    Ok(out)
}

fn is_keyword(token: &Token, keyword: Keyword) -> bool {
    matches!(token, Token::Word(word) if word.quote_style.is_none() && word.keyword == keyword)
}
