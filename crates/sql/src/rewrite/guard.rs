//! Checks PostgreSQL makes while the statement runs, for what the analysis cannot
//! know from the text: how many rows a collecting aggregate packs, the value of an
//! `OFFSET $1`, whether the parent an inserted row references is in scope.
//!
//! A failed check raises an error on purpose: `CAST(<text> AS integer)` of a text that
//! carries the enforcer's guard token and the reason (`<token>:packed:50`). The proxy
//! recognises the token in PostgreSQL's `invalid input syntax` message and answers the
//! client with maskgate's own error instead. The text comes from `set_config`, which
//! is volatile, so PostgreSQL never evaluates the branch while planning (it folds
//! constant branches of a CASE early; an immutable `CAST('…' AS integer)` there would
//! fail every statement).
//!
//! Packed rows add up per statement in the transaction-local setting
//! `maskgate.packed`, as `<statement_timestamp>/<rows>`: a new statement (another
//! timestamp) starts from 0, the end of the transaction forgets it, and restricted
//! accounts may neither read nor set `maskgate.` settings.

use sqlparser::ast::{Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::denial::Denial;

/// Why a running statement was stopped; the text after the token.
pub(crate) enum Reason<'a> {
    /// More rows packed into values than the cap.
    Packed(u64),
    /// An OFFSET at or beyond the cap.
    Offset(u64),
    /// A written row references a parent row outside the account's scope.
    OutOfScope(&'a str),
}

impl Reason<'_> {
    fn text(&self) -> String {
        match self {
            Reason::Packed(cap) => format!("packed:{cap}"),
            Reason::Offset(cap) => format!("offset:{cap}"),
            Reason::OutOfScope(table) => format!("scope:{table}"),
        }
    }
}

/// `'<text>'` as a SQL string literal (doubled quotes).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// An expression that always fails while running, with `reason`: integer-typed.
fn raise_sql(token: &str, reason: &Reason<'_>) -> String {
    let text = format!("{token}:{}", reason.text());
    format!(
        "CAST(pg_catalog.set_config('maskgate.guard', {}, true) AS integer)",
        literal(&text)
    )
}

/// `CASE WHEN <holds> THEN true ELSE <fail> END`: true, or the statement fails.
fn assert_sql(holds: &str, token: &str, reason: &Reason<'_>) -> String {
    format!(
        "(CASE WHEN {holds} THEN true ELSE CAST({} AS boolean) END)",
        raise_sql(token, reason)
    )
}

/// Adds `n` (an integer expression) to the statement's packed rows; true while they
/// are at most `cap`, otherwise the statement fails.
fn packed_sql(n: &str, cap: u64, token: &str) -> String {
    let now = "CAST(pg_catalog.statement_timestamp() AS text)";
    let stored = "pg_catalog.current_setting('maskgate.packed', true)";
    let before = format!(
        "(CASE WHEN pg_catalog.split_part({stored}, '/', 1) = {now} \
         THEN CAST(pg_catalog.split_part({stored}, '/', 2) AS bigint) ELSE 0 END)"
    );
    let total = format!(
        "CAST(pg_catalog.split_part(pg_catalog.set_config('maskgate.packed', \
         pg_catalog.concat({now}, '/', {before} + ({n})), true), '/', 2) AS bigint)"
    );
    assert_sql(&format!("{total} <= {cap}"), token, &Reason::Packed(cap))
}

/// Placeholders in the templates, replaced by the statement's own expressions.
const VALUE: &str = "maskgate_guard_value";
const COUNT: &str = "maskgate_guard_count";

fn parse(sql: &str) -> Result<Expr, Denial> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_expr())
        .map_err(|_| Denial::unsupported("this statement (internal guard error)"))
}

/// Puts `value` (and `count`) where the template names them.
fn fill(mut template: Expr, value: Expr, count: Option<Expr>) -> Expr {
    let mut value = Some(value);
    let mut count = count;
    let _ = sqlparser::ast::visit_expressions_mut(&mut template, |e| {
        if let Expr::Identifier(ident) = e {
            let slot = match ident.value.as_str() {
                VALUE => value.take(),
                COUNT => count.take(),
                _ => None,
            };
            if let Some(slot) = slot {
                *e = slot;
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    template
}

/// `value` if packing `n` more rows keeps the statement within `cap`; `n` is an
/// integer expression evaluated once per evaluation of `value`.
pub(crate) fn packed(value: Expr, n: Expr, cap: u64, token: &str) -> Result<Expr, Denial> {
    let template = format!(
        "CASE WHEN {} THEN {VALUE} END",
        packed_sql(COUNT, cap, token)
    );
    Ok(fill(parse(&template)?, value, Some(n)))
}

/// The number of rows a collecting aggregate reads (its FILTER included), counted at
/// the aggregate's own query level: `count((1, <arguments>, <ORDER BY keys>))`.
///
/// PostgreSQL evaluates an aggregate at the level of the variables it names, so
/// `(SELECT string_agg(p.name, ','))` aggregates the *outer* query's rows. A plain
/// `count(*)` beside it would belong to the subquery and count one row per
/// evaluation; a count over the same variables (a row constructor is never NULL, so
/// every row counts) lands where the aggregate does.
pub(crate) fn count_of(aggregate: &Function) -> Result<Expr, Denial> {
    let mut items = vec![Expr::Value(
        sqlparser::ast::Value::Number("1".into(), false).into(),
    )];
    if let FunctionArguments::List(list) = &aggregate.args {
        for arg in &list.args {
            let arg = match arg {
                FunctionArg::Unnamed(arg) => arg,
                FunctionArg::Named { arg, .. } | FunctionArg::ExprNamed { arg, .. } => arg,
            };
            match arg {
                FunctionArgExpr::Expr(expr) => items.push(expr.clone()),
                FunctionArgExpr::QualifiedWildcard(name) => items.push(Expr::QualifiedWildcard(
                    name.clone(),
                    sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
                )),
                FunctionArgExpr::Wildcard => {
                    return Err(Denial::unsupported("this aggregate's arguments"))
                }
            }
        }
        for clause in &list.clauses {
            if let sqlparser::ast::FunctionArgumentClause::OrderBy(keys) = clause {
                items.extend(keys.iter().map(|key| key.expr.clone()));
            }
        }
    }
    items.extend(aggregate.within_group.iter().map(|key| key.expr.clone()));
    Ok(Expr::Function(Function {
        name: sqlparser::ast::ObjectName::from(vec![Ident::new("count")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(sqlparser::ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Tuple(
                items,
            )))],
            clauses: Vec::new(),
        }),
        filter: aggregate.filter.clone(),
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    }))
}

/// `OFFSET <value>` as a bigint below `cap`, or the statement fails.
pub(crate) fn offset_below(value: Expr, cap: u64, token: &str) -> Result<Expr, Denial> {
    let value_sql = format!("CAST({VALUE} AS bigint)");
    let template = format!(
        "CASE WHEN {} THEN {value_sql} END",
        assert_sql(
            &format!("{value_sql} IS NULL OR {value_sql} < {cap}"),
            token,
            &Reason::Offset(cap)
        )
    );
    let template = parse(&template)?;
    // The value appears three times; it is one literal or parameter (checked by the
    // caller), so evaluating it more than once is harmless.
    let mut filled = template;
    for _ in 0..3 {
        filled = fill(filled, value.clone(), None);
    }
    Ok(filled)
}

/// `value` when it is a key of an in-scope row of the parent (`scope` returns them),
/// or the statement fails. NULL references no parent, so it fails too.
pub(crate) fn in_scope(
    value: Expr,
    scope: Box<sqlparser::ast::Query>,
    table: &str,
    token: &str,
) -> Result<Expr, Denial> {
    let template = format!(
        "CASE WHEN {} THEN {VALUE} END",
        assert_sql(
            &format!("{COUNT} IN (SELECT 1)"),
            token,
            &Reason::OutOfScope(table)
        )
    );
    let mut template = parse(&template)?;
    // The IN list's query is the scope, its operand the value.
    let _ = sqlparser::ast::visit_expressions_mut(&mut template, |e| {
        if let Expr::InSubquery { expr, subquery, .. } = e {
            if matches!(expr.as_ref(), Expr::Identifier(i) if i.value == COUNT) {
                **expr = value.clone();
                *subquery = scope.clone();
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    Ok(fill(template, value, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(n: &str) -> Expr {
        Expr::Value(sqlparser::ast::Value::Number(n.into(), false).into())
    }

    #[test]
    fn templates_fill_in() {
        let e = packed(Expr::Identifier(Ident::new("x")), number("3"), 50, "tok")
            .unwrap()
            .to_string();
        assert!(e.contains("+ (3)"), "{e}");
        assert!(e.contains("<= 50"), "{e}");
        assert!(e.contains("'tok:packed:50'"), "{e}");
        assert!(e.ends_with("THEN x END"), "{e}");
        let e = offset_below(number("7"), 20, "tok").unwrap().to_string();
        assert!(!e.contains(VALUE), "{e}");
        assert!(e.contains("CAST(7 AS BIGINT) < 20"), "{e}");
        let scope = Parser::new(&PostgreSqlDialect {})
            .try_with_sql("SELECT id FROM public.p")
            .unwrap()
            .parse_query()
            .unwrap();
        let e = in_scope(number("42"), scope, "public.c", "tok")
            .unwrap()
            .to_string();
        assert!(e.contains("42 IN (SELECT id FROM public.p)"), "{e}");
        assert!(e.contains("'tok:scope:public.c'"), "{e}");
        assert!(e.ends_with("THEN 42 END"), "{e}");
    }
}
