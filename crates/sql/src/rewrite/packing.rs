//! Values that carry rows of other rows. The row cap counts result rows on the wire,
//! but one row can carry every person of a table: `json_agg(p)`, `string_agg(name,
//! ',')`, `ARRAY(SELECT …)`, a scalar subquery per output row, `lag(name, k)` for many
//! `k`. In the select lists of a capped read (of any block: a derived table's packed
//! values reach the result too), each such value adds the rows it packs to a count
//! PostgreSQL keeps for the statement (see [`super::guard`]), and once the count
//! passes the cap the statement fails; it is never cut short silently:
//!
//! - a collecting aggregate (`array_agg`, `string_agg`, `json_agg`, `jsonb_agg`,
//!   `json_object_agg`, `jsonb_object_agg`) adds the rows it aggregates, `count(*)`
//!   with its FILTER; as a window function (`OVER`) it is refused, since each row
//!   would carry its whole window;
//! - `ARRAY(subquery)` adds its number of elements;
//! - a scalar subquery adds one row per evaluation, unless it computes a statistic
//!   (`count`, `sum`, `avg` and the like, which pack no one);
//! - `lag`, `lead`, `first_value`, `last_value` and `nth_value` add one row per call.
//!
//! Statistics (`count`, `sum`, `avg`, `min`, `max` at the top of a select list) are
//! not counted: each is one value per group, as any computed column.

use sqlparser::ast::{FunctionArguments, SelectItem};

use super::*;

/// Aggregates that put every row they read into their one value.
const COLLECTING: &[&str] = &[
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
];

/// Window functions that show another row's value in this row.
const ROW_PICKING: &[&str] = &["lag", "lead", "first_value", "last_value", "nth_value"];

/// Aggregates whose value describes many rows without showing any of them.
const STATISTICS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_slope",
    "regr_intercept",
    "regr_count",
    "regr_r2",
    "percentile_cont",
];

/// Ordered-set aggregates that pick rows' values: with an array of fractions each
/// returns one value per element (`percentile_disc(ARRAY[0, 0.01, …])`).
const PICKING_ORDERED_SET: &[&str] = &["percentile_cont", "percentile_disc"];

impl Rewriter<'_> {
    /// Wraps `expr`, a node whose insides were checked, when it packs rows (see the
    /// module docs). `output`: the node is in a select list. Collecting aggregates and
    /// `ARRAY(subquery)` are counted wherever they are, since a value computed in
    /// HAVING, ORDER BY or WHERE still reaches the client through an error message
    /// (`CAST(string_agg(…) AS integer)` quotes its input); one-row values (scalar
    /// subqueries, `lag`) only where they reach the result.
    pub(super) fn pack(&self, expr: &mut Expr, output: bool) -> Result<(), Denial> {
        let Some(cap) = self.read_cap.filter(|_| !self.tables.is_empty()) else {
            return Ok(());
        };
        let token = &self.enforcer.guard_token;
        match expr {
            Expr::Function(function) => {
                let name = function_name(&function.name)?;
                if COLLECTING.contains(&name.as_str()) {
                    if function.over.is_some() {
                        return Err(Denial::unsupported(format!(
                            "{name}(…) OVER (…) under a row cap (every row would carry its \
                             whole window)"
                        )));
                    }
                    let count = guard::count_of(function)?;
                    *expr = guard::packed(expr.clone(), count, cap, token)?;
                } else if name == "array" && matches!(function.args, FunctionArguments::Subquery(_))
                {
                    *expr = packed_array(expr.clone(), cap, token)?;
                } else if PICKING_ORDERED_SET.contains(&name.as_str()) {
                    scalar_fraction(function, &name)?;
                } else if output && ROW_PICKING.contains(&name.as_str()) && function.over.is_some()
                {
                    *expr = guard::packed(expr.clone(), one(), cap, token)?;
                }
            }
            Expr::Subquery(query) if output && !is_statistic(query) => {
                *expr = guard::packed(expr.clone(), one(), cap, token)?;
            }
            // `x = ANY(ARRAY(q))` compares with the array's elements; the counted form
            // of `ARRAY(q)` is a subquery, which PostgreSQL would read as
            // `ANY (subquery)` (comparing with whole arrays): keep it an expression.
            Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } if is_packed_array(right) => {
                let packed = std::mem::replace(right.as_mut(), one());
                **right = Expr::Case {
                    case_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
                    end_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
                    operand: None,
                    conditions: vec![sqlparser::ast::CaseWhen {
                        condition: Expr::Value(Value::Boolean(true).into()),
                        result: packed,
                    }],
                    else_result: None,
                };
            }
            _ => {}
        }
        Ok(())
    }
}

/// The direct argument of `percentile_cont`/`percentile_disc` under a cap: one
/// number, never an array of fractions (which returns one row's value per element).
fn scalar_fraction(function: &Function, name: &str) -> Result<(), Denial> {
    let FunctionArguments::List(list) = &function.args else {
        return Err(refused_fraction(name));
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] = list.args.as_slice() else {
        return Err(refused_fraction(name));
    };
    match strip(arg) {
        Expr::Value(value) if matches!(value.value, Value::Number(..)) => Ok(()),
        _ => Err(refused_fraction(name)),
    }
}

fn refused_fraction(name: &str) -> Denial {
    Denial::unsupported(format!(
        "{name}(…) under a row cap with anything but one numeric literal fraction (an \
         array of fractions returns a row's value per element)"
    ))
}

fn one() -> Expr {
    Expr::Value(Value::Number("1".into(), false).into())
}

/// `ARRAY(q)` evaluated once, its elements counted:
/// `(SELECT CASE WHEN <packed cardinality(v)> THEN v END FROM (SELECT ARRAY(q) AS v OFFSET 0) AS …)`.
/// `OFFSET 0` keeps PostgreSQL from inlining `ARRAY(q)` at both uses.
fn packed_array(array: Expr, cap: u64, token: &str) -> Result<Expr, Denial> {
    const ALIAS: &str = "maskgate_packed";
    let value = Expr::CompoundIdentifier(vec![Ident::new(ALIAS), Ident::new("v")]);
    let count = Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new("pg_catalog"), Ident::new("cardinality")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(sqlparser::ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(value.clone()))],
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    });
    let checked = guard::packed(value, count, cap, token)?;
    let mut query = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!(
            "SELECT NULL FROM (SELECT NULL AS v OFFSET 0) AS {ALIAS}"
        ))
        .and_then(|mut parser| parser.parse_query())
        .map_err(|_| internal())?;
    let SetExpr::Select(outer) = query.body.as_mut() else {
        return Err(internal());
    };
    outer.projection = vec![SelectItem::UnnamedExpr(checked)];
    let Some(TableFactor::Derived { subquery, .. }) =
        outer.from.first_mut().map(|t| &mut t.relation)
    else {
        return Err(internal());
    };
    let SetExpr::Select(inner) = subquery.body.as_mut() else {
        return Err(internal());
    };
    inner.projection = vec![SelectItem::ExprWithAlias {
        expr: array,
        alias: Ident::new("v"),
    }];
    Ok(Expr::Subquery(query))
}

/// What [`packed_array`] made: a subquery reading `(…) AS maskgate_packed`.
fn is_packed_array(expr: &Expr) -> bool {
    let Expr::Subquery(query) = expr else {
        return false;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    matches!(
        select.from.first().map(|t| &t.relation),
        Some(TableFactor::Derived { alias: Some(alias), .. }) if alias.name.value == "maskgate_packed"
    )
}

/// A subquery whose one output is a statistic (`count(*)`, `sum(x)`, …).
fn is_statistic(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let [SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }] =
        select.projection.as_slice()
    else {
        return false;
    };
    match strip(expr) {
        Expr::Function(function) if function.over.is_none() => {
            function_name(&function.name).is_ok_and(|name| STATISTICS.contains(&name.as_str()))
        }
        _ => false,
    }
}
