//! Row filters: `:name` attribute placeholders, the check that a filter is one boolean
//! expression over the table's own columns, the parsed expression the validated policy
//! keeps, and the substitution of an account's attributes into it as string literals.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{visit_expressions, visit_expressions_mut, Expr, Value};
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

/// The filter as an expression, each `:name` a `Value::Placeholder(":name")`. Call
/// only on a filter [`check`] found no problem with.
pub(crate) fn parse(filter: &str) -> Option<Expr> {
    // Placeholders become `$k` (a token of their own whatever surrounds them), then
    // `:name` again in the tree; `check` refused every `$k` of the filter's own.
    let mut text = String::with_capacity(filter.len());
    let mut names = Vec::new();
    for piece in split(filter) {
        match piece {
            Piece::Sql(sql) => text.push_str(sql),
            Piece::Attribute { name, .. } => {
                names.push(name);
                text.push_str(&format!(" ${} ", names.len()));
            }
        }
    }
    let mut expr = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&text)
        .and_then(|mut parser| parser.parse_expr())
        .ok()?;
    let _ = visit_expressions_mut(&mut expr, |e| {
        if let Expr::Value(value) = e {
            if let Value::Placeholder(p) = &mut value.value {
                let index = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok());
                if let Some(name) = index.and_then(|i| names.get(i.wrapping_sub(1))) {
                    *p = format!(":{name}");
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Some(expr)
}

/// Replaces every `:name` placeholder of a parsed filter by its attribute as a string
/// literal (the printer of the statement encodes it); `Err(name)` names the first
/// attribute `lookup` does not know.
pub(crate) fn substitute<'a>(
    filter: &Expr,
    lookup: impl Fn(&str) -> Option<&'a str>,
) -> Result<Expr, String> {
    let mut expr = filter.clone();
    let mut missing = None;
    let _ = visit_expressions_mut(&mut expr, |e| {
        if let Expr::Value(value) = e {
            if let Value::Placeholder(p) = &value.value {
                let name = p.strip_prefix(':').unwrap_or(p);
                match lookup(name) {
                    Some(v) if !v.contains('\0') => {
                        value.value = Value::SingleQuotedString(v.to_owned())
                    }
                    _ => {
                        missing = Some(name.to_owned());
                        return ControlFlow::Break(());
                    }
                }
            }
        }
        ControlFlow::Continue(())
    });
    match missing {
        Some(name) => Err(name),
        None => Ok(expr),
    }
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
                    message: "row_filter must not contain a subquery; to filter through \
                              another table use row_filter_path"
                        .into(),
                });
            }
            // The probe holds strings where the attributes were: any placeholder left is
            // the filter's own, which would bind to a parameter of the client's.
            Expr::Value(value) if matches!(value.value, Value::Placeholder(_)) => {
                problems.push(FilterProblem {
                    offset: offsets.offset(value.span.start.line, value.span.start.column),
                    message: format!(
                        "row_filter must not contain the parameter {}; \
                         use :name for an account attribute",
                        value.value
                    ),
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

    fn substituted(
        filter: &str,
        lookup: impl Fn(&str) -> Option<&'static str>,
    ) -> Result<Expr, String> {
        substitute(&parse(filter).unwrap(), lookup)
    }

    #[test]
    fn substitutes_string_literals() {
        let out = substituted(
            "province_code = :province and unit = :unit",
            |name| match name {
                "province" => Some("01"),
                "unit" => Some("O'Brien"),
                _ => None,
            },
        )
        .unwrap();
        assert_eq!(
            out.to_string(),
            "province_code = '01' AND unit = 'O''Brien'"
        );
        assert_eq!(
            substituted("a = :missing", |_| None).unwrap_err(),
            "missing"
        );
        let hostile = substituted("a = :v", |_| Some("x\\'; --")).unwrap();
        assert!(matches!(
            hostile,
            Expr::BinaryOp { right, .. }
                if matches!(&right.as_ref(), Expr::Value(v) if v.value == Value::SingleQuotedString("x\\'; --".into()))
        ));
        assert_eq!(substituted("a = :v", |_| Some("a\0")).unwrap_err(), "v");
        assert_eq!(
            substituted("a::text = :v", |_| Some("1"))
                .unwrap()
                .to_string(),
            "a::TEXT = '1'"
        );
        assert_eq!(
            substituted("(province_code||:p) = ':q' and x = :q", |n| Some(
                if n == "p" { "P" } else { "Q" }
            ))
            .unwrap()
            .to_string(),
            "(province_code || 'P') = ':q' AND x = 'Q'"
        );
    }

    #[test]
    fn the_filters_own_parameters_are_refused() {
        for bad in ["province_code = $1", "id = $2::bigint"] {
            let problems = check(bad, "public.t", &cols());
            assert!(
                problems.iter().any(|p| p.message.contains("parameter")),
                "{bad}: {problems:?}"
            );
        }
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
