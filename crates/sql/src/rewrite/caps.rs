//! Row caps: the cap of a statement (the account's `max_rows`, or the caps of the
//! tables it reads), the LIMIT that makes PostgreSQL stop after cap + 1 rows, and
//! OFFSET at or beyond the cap, which would page past what the cap lets through.

use maskgate_policy::TableCap;

use super::fence::is_value;
use super::*;
use crate::denial::sqlstate;

/// The cap of a statement that reads the policy tables `tables`: the smallest of
/// their caps, where a table without one of its own has the account's `max_rows` and a
/// table exempt from caps (reference data) has none. A statement that reads no policy
/// table has the account's `max_rows`.
pub(crate) fn statement_cap(enforcer: &Enforcer, tables: &[QualifiedName]) -> Option<u64> {
    let account = enforcer.rules.max_rows;
    if tables.is_empty() {
        return account;
    }
    tables
        .iter()
        .filter_map(|table| match enforcer.rules.tables.get(table)?.max_rows {
            Some(TableCap::Rows(n)) => Some(n),
            Some(TableCap::Exempt) => None,
            None => account,
        })
        .min()
}

impl Rewriter<'_> {
    /// OFFSET of a query block of a capped read: a number below the cap, or one
    /// parameter (possibly cast) checked below the cap as the statement runs.
    pub(super) fn check_offset(&self, offset: &mut Expr) -> Result<(), Denial> {
        let Some(cap) = self.read_cap else {
            return Ok(());
        };
        let value = strip(offset);
        if let Expr::Value(ValueWithSpan {
            value: Value::Number(n, _),
            ..
        }) = value
        {
            return match n.parse::<u64>() {
                Ok(n) if n < cap => Ok(()),
                _ => Err(offset_denial(cap)),
            };
        }
        if !is_parameter(value) {
            return Err(Denial::unsupported(
                "an OFFSET other than a number or a parameter under a row cap",
            ));
        }
        let checked = guard::offset_below(offset.clone(), cap, &self.enforcer.guard_token)?;
        *offset = checked;
        Ok(())
    }
}

/// `$n`, perhaps cast.
fn is_parameter(expr: &Expr) -> bool {
    match strip(expr) {
        Expr::Cast { expr, .. } => is_parameter(expr),
        value @ Expr::Value(v) => matches!(v.value, Value::Placeholder(_)) && is_value(value),
        _ => false,
    }
}

fn offset_denial(cap: u64) -> Denial {
    Denial {
        sqlstate: sqlstate::PROGRAM_LIMIT_EXCEEDED,
        message: format!(
            "OFFSET at or beyond {cap}, the most rows this statement may return, is refused: \
             it would page past the cap"
        ),
    }
}

/// Makes the outermost query return at most `cap + 1` rows, merged with its own LIMIT
/// or FETCH FIRST.
pub(super) fn apply_cap(query: &mut Query, cap: u64) -> Result<(), Denial> {
    let bound = cap.saturating_add(1);
    let mut existing = None;
    if let Some(fetch) = query.fetch.take() {
        if fetch.with_ties || fetch.percent {
            return Err(Denial::unsupported(
                "FETCH … WITH TIES or PERCENT under a row cap",
            ));
        }
        existing = Some(fetch.quantity.unwrap_or_else(|| number(1)));
    }
    match &mut query.limit_clause {
        None => {
            query.limit_clause = Some(LimitClause::LimitOffset {
                limit: Some(merge_limit(existing, bound)),
                offset: None,
                limit_by: Vec::new(),
            });
        }
        Some(LimitClause::LimitOffset { limit, .. }) => {
            let current = limit.take().or(existing);
            *limit = Some(merge_limit(current, bound));
        }
        Some(LimitClause::OffsetCommaLimit { .. }) => {
            return Err(Denial::unsupported("LIMIT offset, count"))
        }
    }
    Ok(())
}

fn merge_limit(existing: Option<Expr>, bound: u64) -> Expr {
    match existing {
        None => number(bound),
        Some(Expr::Value(ValueWithSpan {
            value: Value::Number(n, _),
            ..
        })) if n.parse::<u64>().is_ok() => number(n.parse::<u64>().unwrap_or(bound).min(bound)),
        Some(other) => {
            let bound = Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(number(bound)),
                data_type: DataType::BigInt(None),
                format: None,
            };
            Expr::Function(Function {
                name: ObjectName::from(vec![Ident::new("LEAST")]),
                uses_odbc_syntax: false,
                parameters: FunctionArguments::None,
                args: FunctionArguments::List(sqlparser::ast::FunctionArgumentList {
                    duplicate_treatment: None,
                    args: vec![
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(other)),
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(bound)),
                    ],
                    clauses: Vec::new(),
                }),
                filter: None,
                null_treatment: None,
                over: None,
                within_group: Vec::new(),
            })
        }
    }
}

fn number(n: u64) -> Expr {
    Expr::Value(Value::Number(n.to_string(), false).into())
}
