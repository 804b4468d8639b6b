//! Row filters through foreign keys, resolved for one account.
//!
//! A role may say that a child table's rows are in scope when a path of foreign keys
//! (`participant_id -> public.participant(id)`, up to [`MAX_HOPS`] steps) leads to a
//! row of the last step's table that the account may see. The account's own merged
//! filter of that table is what decides (the parent is read through the same rules),
//! so the path becomes one subquery that returns the referenced keys of in-scope rows:
//!
//! ```text
//! "participant_id" IN (SELECT "participant"."id" FROM "public"."participant"
//!                      WHERE "participant"."province_code" = '01')
//! ```
//!
//! Every column inside is qualified by its table, so the subquery means the same
//! wherever it is put (a masking subquery, the WHERE of an UPDATE). A parent whose own
//! filter goes through a path adds its steps; the steps of one chain add up to at most
//! [`MAX_HOPS`], and a chain that comes back to a table it started from is an error.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use sqlparser::ast::{visit_expressions_mut, BinaryOperator, Expr, Ident, Query, SetExpr, Value};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::model::{PathHop, QualifiedName, RowFilter, ScopePath};

/// The most foreign-key steps between a filtered table and the table whose filter
/// decides, counting the steps of the parents' own paths.
pub const MAX_HOPS: usize = 3;

/// What one table's granting roles say, before paths are resolved.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Own conditions, attributes substituted.
    pub own: Vec<Expr>,
    /// Each role's path.
    pub paths: Vec<Vec<PathHop>>,
}

/// Why a table's filter could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathProblem {
    /// The chain of paths comes back to a table it started from.
    Cycle(Vec<QualifiedName>),
    /// The chain has more than [`MAX_HOPS`] steps.
    TooLong { steps: usize },
    /// The table whose filter decides is not available to the account.
    ParentUnavailable(QualifiedName),
}

/// Each table's resolved filter, and the tables whose paths could not be resolved.
pub(crate) type Resolution = (
    BTreeMap<QualifiedName, Option<RowFilter>>,
    Vec<(QualifiedName, PathProblem)>,
);

/// Resolves every table's filter. A table whose path cannot be resolved is left out
/// of the result (so it is denied) and its problem returned.
pub(crate) fn resolve(pending: &BTreeMap<QualifiedName, Pending>) -> Resolution {
    let mut resolver = Resolver {
        pending,
        done: BTreeMap::new(),
        stack: Vec::new(),
    };
    let mut problems = Vec::new();
    for table in pending.keys() {
        if let Err(problem) = resolver.table(table) {
            problems.push((table.clone(), problem));
        }
    }
    let filters = resolver
        .done
        .into_iter()
        .filter_map(|(table, resolved)| Some((table, resolved.ok()?.0)))
        .collect();
    (filters, problems)
}

type Resolved = Result<(Option<RowFilter>, usize), PathProblem>;

struct Resolver<'p> {
    pending: &'p BTreeMap<QualifiedName, Pending>,
    done: BTreeMap<QualifiedName, Resolved>,
    stack: Vec<QualifiedName>,
}

impl Resolver<'_> {
    /// The table's filter and the number of steps of its longest chain.
    fn table(&mut self, table: &QualifiedName) -> Resolved {
        if let Some(done) = self.done.get(table) {
            return done.clone();
        }
        if let Some(at) = self.stack.iter().position(|t| t == table) {
            let mut cycle = self.stack[at..].to_vec();
            cycle.push(table.clone());
            return Err(PathProblem::Cycle(cycle));
        }
        let Some(pending) = self.pending.get(table) else {
            return Err(PathProblem::ParentUnavailable(table.clone()));
        };
        self.stack.push(table.clone());
        let resolved = self.paths(pending);
        self.stack.pop();
        let resolved = resolved.map(|(paths, depth)| {
            let filter = (!pending.own.is_empty() || !paths.is_empty()).then(|| RowFilter {
                own: pending.own.clone(),
                paths,
            });
            (filter, depth)
        });
        self.done.insert(table.clone(), resolved.clone());
        resolved
    }

    fn paths(&mut self, pending: &Pending) -> Result<(Vec<ScopePath>, usize), PathProblem> {
        let mut paths = Vec::new();
        let mut depth = 0;
        for hops in &pending.paths {
            let Some(last) = hops.last() else {
                continue;
            };
            let (parent, parent_depth) = self.table(&last.table)?;
            let steps = hops.len() + parent_depth;
            if steps > MAX_HOPS {
                return Err(PathProblem::TooLong { steps });
            }
            depth = depth.max(steps);
            paths.push(ScopePath {
                column: hops[0].column.clone(),
                hops: hops.clone(),
                scope: scope_query(hops, parent.as_ref()),
            });
        }
        Ok((paths, depth))
    }
}

/// `SELECT "t1"."k1" FROM "s"."t1" WHERE "t1"."c2" IN (SELECT "t2"."k2" … WHERE <filter>)`.
fn scope_query(hops: &[PathHop], parent: Option<&RowFilter>) -> Box<Query> {
    let last = &hops[hops.len() - 1];
    let mut query = select_key(last, parent.map(|f| f.qualified(&last.table.name)));
    for (i, hop) in hops.iter().enumerate().rev().skip(1) {
        let next = &hops[i + 1];
        let condition = Expr::InSubquery {
            expr: Box::new(column(&hop.table.name, &next.column)),
            subquery: query,
            negated: false,
        };
        query = select_key(hop, Some(condition));
    }
    query
}

fn select_key(hop: &PathHop, condition: Option<Expr>) -> Box<Query> {
    let q = quote;
    let sql = format!(
        "SELECT {}.{} FROM {}.{}",
        q(&hop.table.name),
        q(&hop.key),
        q(&hop.table.schema),
        q(&hop.table.name)
    );
    let mut query = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut parser| parser.parse_query())
        // Every name was quoted, and PostgreSQL's names are what quote() accepts, so
        // this text always parses; a table that cannot be named selects nothing.
        .unwrap_or_else(|_| empty_query());
    if let SetExpr::Select(select) = query.body.as_mut() {
        select.selection = condition;
    }
    query
}

fn empty_query() -> Box<Query> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql("SELECT NULL WHERE false")
        .and_then(|mut parser| parser.parse_query())
        .expect("a constant query parses")
}

/// A double-quoted identifier (doubled quotes inside).
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn column(qualifier: &str, name: &str) -> Expr {
    Expr::CompoundIdentifier(vec![
        Ident::with_quote('"', qualifier),
        Ident::with_quote('"', name),
    ])
}

/// The whole filter (see [`RowFilter::expr`]).
pub(crate) fn filter_expr(filter: &RowFilter, qualifier: &str, qualify_own: bool) -> Expr {
    let own = filter.own.iter().map(|expr| {
        if qualify_own {
            qualify(expr, qualifier)
        } else {
            expr.clone()
        }
    });
    let paths = filter.paths.iter().map(|path| Expr::InSubquery {
        expr: Box::new(column(qualifier, &path.column)),
        subquery: path.scope.clone(),
        negated: false,
    });
    own.chain(paths)
        .map(|expr| Expr::Nested(Box::new(expr)))
        .reduce(|left, right| Expr::BinaryOp {
            left: Box::new(left),
            op: BinaryOperator::And,
            right: Box::new(right),
        })
        .unwrap_or(Expr::Value(Value::Boolean(true).into()))
}

/// An own condition with every column reference qualified by `qualifier`. Own
/// conditions hold no subquery and name only columns of their table (checked when
/// the policy loads), so every identifier is one of its columns.
pub(crate) fn qualify(expr: &Expr, qualifier: &str) -> Expr {
    let mut expr = expr.clone();
    let _ = visit_expressions_mut(&mut expr, |e| {
        let name = match e {
            Expr::Identifier(ident) => Some(fold(ident)),
            Expr::CompoundIdentifier(parts) => parts.last().map(fold),
            _ => None,
        };
        if let Some(name) = name {
            *e = column(qualifier, &name);
        }
        ControlFlow::<()>::Continue(())
    });
    expr
}

fn fold(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(column: &str, table: &str, key: &str) -> PathHop {
        PathHop {
            column: column.into(),
            table: QualifiedName::new("public", table),
            key: key.into(),
        }
    }

    fn expr(sql: &str) -> Expr {
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_expr()
            .unwrap()
    }

    fn pending(own: &[&str], paths: Vec<Vec<PathHop>>) -> Pending {
        Pending {
            own: own.iter().map(|s| expr(s)).collect(),
            paths,
        }
    }

    #[test]
    fn a_path_reads_the_parent_through_its_filter() {
        let mut tables = BTreeMap::new();
        let participant = QualifiedName::new("public", "participant");
        let card = QualifiedName::new("public", "TheBHYT");
        tables.insert(
            participant.clone(),
            pending(&["province_code = '01'"], vec![]),
        );
        tables.insert(
            card.clone(),
            pending(&[], vec![vec![hop("nguoi_id", "participant", "id")]]),
        );
        let (filters, problems) = resolve(&tables);
        assert!(problems.is_empty(), "{problems:?}");
        let filter = filters[&card].as_ref().unwrap();
        assert_eq!(
            filter.expr("TheBHYT").to_string(),
            "(\"TheBHYT\".\"nguoi_id\" IN (SELECT \"participant\".\"id\" FROM \"public\".\"participant\" \
             WHERE (\"participant\".\"province_code\" = '01')))"
        );
    }

    #[test]
    fn steps_add_up_and_chains_may_not_loop() {
        let mut tables = BTreeMap::new();
        let t = |n: &str| QualifiedName::new("public", n);
        tables.insert(t("p"), pending(&["x = 1"], vec![]));
        tables.insert(t("a"), pending(&[], vec![vec![hop("p_id", "p", "id")]]));
        tables.insert(
            t("b"),
            pending(
                &[],
                vec![vec![hop("a_id", "a", "id"), hop("p_id", "p", "id")]],
            ),
        );
        tables.insert(t("c"), pending(&[], vec![vec![hop("b_id", "b", "id")]]));
        tables.insert(t("d"), pending(&[], vec![vec![hop("c_id", "c", "id")]]));
        tables.insert(t("x"), pending(&[], vec![vec![hop("y_id", "y", "id")]]));
        tables.insert(t("y"), pending(&[], vec![vec![hop("x_id", "x", "id")]]));
        tables.insert(t("z"), pending(&[], vec![vec![hop("q_id", "q", "id")]]));
        let (filters, problems) = resolve(&tables);
        assert!(filters.contains_key(&t("b")));
        assert!(filters.contains_key(&t("c")), "1 + 2 steps");
        let text = filters[&t("b")].as_ref().unwrap().expr("b").to_string();
        assert!(
            text.contains("\"a\".\"p_id\" IN (SELECT \"p\".\"id\" FROM \"public\".\"p\" WHERE (\"p\".\"x\" = 1))"),
            "{text}"
        );
        assert!(!filters.contains_key(&t("d")));
        assert!(problems.contains(&(t("d"), PathProblem::TooLong { steps: 4 })));
        assert!(problems
            .iter()
            .any(|(table, p)| table == &t("x") && matches!(p, PathProblem::Cycle(_))));
        assert!(problems.contains(&(t("z"), PathProblem::ParentUnavailable(t("q")))));
    }

    #[test]
    fn own_conditions_are_qualified_on_request() {
        let filter = RowFilter {
            own: vec![expr("province_code = '01' AND t.status <> 'draft'")],
            paths: vec![],
        };
        assert_eq!(
            filter.qualified("x").to_string(),
            "(\"x\".\"province_code\" = '01' AND \"x\".\"status\" <> 'draft')"
        );
        assert_eq!(
            filter.expr("x").to_string(),
            "(province_code = '01' AND t.status <> 'draft')"
        );
    }
}
