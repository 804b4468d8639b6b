//! Row filters: `:name` attribute placeholders, their substitution as SQL literals, and the
//! check that a filter is one boolean expression over the table's own columns.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{visit_expressions, Expr};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

/// A piece of a filter: literal SQL text or an attribute placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Sql(&'a str),
    /// The name without the colon; `start` is the byte offset of the colon.
    Attribute {
        name: &'a str,
        start: usize,
    },
}

/// Splits a filter into SQL text and `:name` placeholders. Placeholders inside string
/// literals, quoted identifiers, dollar quotes and comments are left alone, and `::`
/// casts are not placeholders.
fn split(filter: &str) -> Vec<Piece<'_>> {
    let bytes = filter.as_bytes();
    let mut pieces = Vec::new();
    let mut sql_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => {
                let escapes = i > 0
                    && matches!(bytes[i - 1], b'e' | b'E')
                    && (i < 2 || !is_ident_byte(bytes[i - 2]));
                i = skip_quoted(bytes, i, b'\'', escapes);
            }
            b'"' => i = skip_quoted(bytes, i, b'"', false),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = filter[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'$' if i == 0 || !is_ident_byte(bytes[i - 1]) => i = skip_dollar_quote(filter, i),
            b':' if bytes.get(i + 1) == Some(&b':') => i += 2,
            b':' if bytes
                .get(i + 1)
                .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') =>
            {
                let end = (i + 1..bytes.len())
                    .find(|&j| !is_ident_byte(bytes[j]))
                    .unwrap_or(bytes.len());
                if sql_start < i {
                    pieces.push(Piece::Sql(&filter[sql_start..i]));
                }
                pieces.push(Piece::Attribute {
                    name: &filter[i + 1..end],
                    start: i,
                });
                sql_start = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    if sql_start < bytes.len() {
        pieces.push(Piece::Sql(&filter[sql_start..]));
    }
    pieces
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Returns the index just past the closing quote (doubled quotes stay inside).
fn skip_quoted(bytes: &[u8], open: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if backslash_escapes && bytes[i] == b'\\' {
            i += 2;
        } else if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

fn skip_block_comment(bytes: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i + 1 < bytes.len() {
        if bytes[i] == b'/' && bytes[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// `$tag$ ... $tag$`; a `$` that does not open a dollar quote (e.g. `$1`) is skipped alone.
fn skip_dollar_quote(text: &str, open: usize) -> usize {
    let rest = &text[open + 1..];
    let Some(tag_len) = rest.find('$') else {
        return open + 1;
    };
    let tag = &rest[..tag_len];
    let valid_tag = tag.bytes().enumerate().all(|(k, b)| {
        b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 || (k > 0 && b.is_ascii_digit())
    });
    if !valid_tag {
        return open + 1;
    }
    let delimiter = &text[open..open + tag_len + 2];
    let body = open + tag_len + 2;
    text[body..]
        .find(delimiter)
        .map_or(text.len(), |n| body + n + delimiter.len())
}

/// The attribute names a filter uses, in order of first use.
pub(crate) fn attributes(filter: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    split(filter)
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Attribute { name, .. } if seen.insert(name) => Some(name.to_owned()),
            _ => None,
        })
        .collect()
}

/// Replaces every placeholder by its attribute as a literal made by
/// [`maskgate_mask::quote_literal`]; `Err(name)` names the first attribute `lookup` does
/// not know or whose value cannot be a literal (NUL, which loading already refuses).
pub(crate) fn substitute<'a>(
    filter: &str,
    lookup: impl Fn(&str) -> Option<&'a str>,
) -> Result<String, String> {
    let mut out = String::with_capacity(filter.len());
    for piece in split(filter) {
        match piece {
            Piece::Sql(sql) => out.push_str(sql),
            Piece::Attribute { name, .. } => {
                let literal = lookup(name)
                    .and_then(|value| maskgate_mask::quote_literal(value).ok())
                    .ok_or_else(|| name.to_owned())?;
                out.push_str(&literal);
            }
        }
    }
    Ok(out)
}

/// A placeholder must be a token of its own. Glued to a word (`E:x`, `U&:x`, `int4:x`)
/// the literal would be read as a prefixed or typed constant, and glued to a quote or
/// another placeholder (`'a':x`, `:x:y`) two literals would merge into one.
fn glued(filter: &str, start: usize, end: usize) -> bool {
    let bytes = filter.as_bytes();
    let before = start
        .checked_sub(1)
        .map(|i| bytes[i])
        .is_some_and(|b| is_ident_byte(b) || matches!(b, b'&' | b'\'' | b'"' | b'$'));
    let after = match bytes.get(end) {
        Some(b'\'' | b'"' | b'$') => true,
        Some(b':') => bytes.get(end + 1) != Some(&b':'),
        _ => false,
    };
    before || after
}

/// A problem with a filter; `offset` is a byte offset into the filter text when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilterProblem {
    pub offset: Option<usize>,
    pub message: String,
}

/// Checks that the filter is exactly one expression whose column references are all in
/// `columns` (unquoted names fold to lower case) and that it holds no subquery.
/// Placeholders are replaced by same-length literals first, so positions stay valid.
pub(crate) fn check(filter: &str, table: &str, columns: &BTreeSet<&str>) -> Vec<FilterProblem> {
    let mut probe = String::with_capacity(filter.len());
    let mut problems = Vec::new();
    for piece in split(filter) {
        match piece {
            Piece::Sql(sql) => probe.push_str(sql),
            Piece::Attribute { name, start } => {
                if glued(filter, start, start + 1 + name.len()) {
                    problems.push(FilterProblem {
                        offset: Some(start),
                        message: format!(
                            "placeholder :{name} must stand alone; put a space or an operator \
                             between it and the text around it"
                        ),
                    });
                }
                probe.push('\'');
                probe.push_str(&"x".repeat(name.len().saturating_sub(1)));
                probe.push('\'');
            }
        }
    }
    let offsets = LineIndex::new(&probe);
    let dialect = PostgreSqlDialect {};
    let parsed = Parser::new(&dialect)
        .try_with_sql(&probe)
        .and_then(|mut parser| {
            let expr = parser.parse_expr()?;
            Ok((expr, parser.peek_token()))
        });
    let (expr, next) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            problems.push(FilterProblem {
                offset: None,
                message: format!(
                    "row_filter does not parse: {}",
                    parser_message(&error.to_string())
                ),
            });
            return problems;
        }
    };
    if next.token != Token::EOF {
        problems.push(FilterProblem {
            offset: offsets.offset(next.span.start.line, next.span.start.column),
            message: format!(
                "row_filter must be a single expression; unexpected {} after it",
                next.token
            ),
        });
        return problems;
    }
    let _ = visit_expressions(&expr, |e| {
        match e {
            Expr::Identifier(ident) => check_column(ident, table, columns, &offsets, &mut problems),
            Expr::CompoundIdentifier(parts) => {
                if let Some((column, qualifier)) = parts.split_last() {
                    let qualifier: Vec<String> = qualifier.iter().map(fold).collect();
                    let (schema, name) = table.split_once('.').unwrap_or(("", table));
                    let ok = match qualifier.as_slice() {
                        [t] => t == name,
                        [s, t] => s == schema && t == name,
                        _ => false,
                    };
                    if ok {
                        check_column(column, table, columns, &offsets, &mut problems);
                    } else {
                        problems.push(FilterProblem {
                            offset: offsets
                                .offset(parts[0].span.start.line, parts[0].span.start.column),
                            message: format!(
                                "row_filter may only use columns of {table}, not {}",
                                parts
                                    .iter()
                                    .map(|p| p.value.as_str())
                                    .collect::<Vec<_>>()
                                    .join(".")
                            ),
                        });
                    }
                }
            }
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                problems.push(FilterProblem {
                    offset: None,
                    message: "row_filter must not contain a subquery".into(),
                });
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    problems
}

fn fold(ident: &sqlparser::ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn check_column(
    ident: &sqlparser::ast::Ident,
    table: &str,
    columns: &BTreeSet<&str>,
    offsets: &LineIndex,
    problems: &mut Vec<FilterProblem>,
) {
    let name = fold(ident);
    if !columns.contains(name.as_str()) {
        problems.push(FilterProblem {
            offset: offsets.offset(ident.span.start.line, ident.span.start.column),
            message: format!("row_filter uses {name:?}, which is not a column of {table}"),
        });
    }
}

/// sqlparser's messages start with "sql parser error: "; the context says that already.
fn parser_message(message: &str) -> &str {
    message
        .strip_prefix("sql parser error: ")
        .unwrap_or(message)
}

/// Maps sqlparser's (line, column) back to a byte offset.
struct LineIndex<'a> {
    text: &'a str,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        LineIndex { text }
    }

    fn offset(&self, line: u64, column: u64) -> Option<usize> {
        if line == 0 || column == 0 {
            return None;
        }
        let line_start = if line == 1 {
            0
        } else {
            self.text
                .match_indices('\n')
                .nth(usize::try_from(line).ok()? - 2)?
                .0
                + 1
        };
        let rest = &self.text[line_start..];
        let column = usize::try_from(column).ok()? - 1;
        rest.char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(rest.len()))
            .nth(column)
            .map(|i| line_start + i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> BTreeSet<&'static str> {
        ["province_code", "unit", "id", "Weird"]
            .into_iter()
            .collect()
    }

    #[test]
    fn finds_placeholders_outside_literals_and_comments() {
        let f = "province_code = :province and x::text = ':not' -- :nor\n and y = $$:no$$ and \"a:b\" = :unit /* :c */ and e'\\':x' = :_u1";
        assert_eq!(attributes(f), vec!["province", "unit", "_u1"]);
    }

    #[test]
    fn substitutes_quoted_literals() {
        let out = substitute(
            "province_code = :province and unit = :unit",
            |name| match name {
                "province" => Some("01"),
                "unit" => Some("O'Brien"),
                _ => None,
            },
        )
        .unwrap();
        assert_eq!(out, "province_code = '01' and unit = 'O''Brien'");
        assert_eq!(substitute("a = :missing", |_| None).unwrap_err(), "missing");
        assert_eq!(
            substitute("a = :v", |_| Some("x\\'; --")).unwrap(),
            "a = E'x\\\\''; --'"
        );
        assert_eq!(substitute("a = :v", |_| Some("a\0")).unwrap_err(), "v");
        assert_eq!(
            substitute("a::text = :v", |_| Some("1")).unwrap(),
            "a::text = '1'"
        );
    }

    #[test]
    fn placeholders_must_stand_alone() {
        for glued in [
            "province_code = E:p",
            "province_code = U&:p",
            "province_code = int4:p",
            "province_code = 'a':p",
            "province_code = :p'a'",
            "province_code = :p:q",
            "province_code = :p\"x\"",
        ] {
            let problems = check(glued, "public.t", &cols());
            assert!(
                problems
                    .iter()
                    .any(|p| p.message.contains("must stand alone")),
                "{glued}: {problems:?}"
            );
        }
        for alone in [
            "province_code = :p",
            "province_code=:p",
            "province_code IN (:p,:q)",
            "(province_code||:p) = 'x'",
            "province_code = :p::text",
        ] {
            assert_eq!(check(alone, "public.t", &cols()), vec![], "{alone}");
        }
    }

    #[test]
    fn accepts_good_filters() {
        for f in [
            "province_code = :province",
            "province_code = :p AND unit::text IN ('a', 'b')",
            "public.t.id > 3 or t.id < 0",
            "lower(unit) = lower(:u)",
            "\"Weird\" IS NOT NULL",
        ] {
            assert_eq!(check(f, "public.t", &cols()), vec![], "{f}");
        }
    }

    #[test]
    fn rejects_bad_filters() {
        let problems = check(
            "province_code = :province; drop table x",
            "public.t",
            &cols(),
        );
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].message.contains("single expression"),
            "{problems:?}"
        );
        assert_eq!(problems[0].offset, Some(25));

        let problems = check("provinse_code = :province", "public.t", &cols());
        assert_eq!(problems[0].offset, Some(0));
        assert!(problems[0].message.contains("\"provinse_code\""));

        let problems = check("id = :a and weird = 1", "public.t", &cols());
        assert_eq!(problems[0].offset, Some(12));

        let problems = check("id in (select id from other)", "public.t", &cols());
        assert!(problems.iter().any(|p| p.message.contains("subquery")));

        let problems = check("other.id = 1", "public.t", &cols());
        assert!(problems[0].message.contains("only use columns of public.t"));

        let problems = check("id = = 1", "public.t", &cols());
        assert!(problems[0].message.starts_with("row_filter does not parse"));
    }
}
