//! The read rewrite: every reference to a protected table becomes a masking subquery.
//!
//! ```text
//! FROM participant p
//!   =>
//! FROM (SELECT <allowed cols>, <mask> AS "col", … FROM "public"."participant"
//!       WHERE (<row filter>) AND <pins and pushed-down predicates> OFFSET 0) AS p
//! ```
//!
//! `OFFSET 0` keeps PostgreSQL from pulling the user's predicates into the subquery,
//! so they never run on rows outside the filter (no division-by-zero or cast-error
//! oracles). Only predicates proven safe go inside: lookup pins (a declared key `=` one
//! literal or parameter, on the raw key) and `allowed column <cmp> literal`. The
//! outermost block goes without `OFFSET 0` when nothing of the statement's own would
//! run beside the filter ([`Rewriter::may_open_fence`]).
//!
//! References to the `information_schema` views that name tables and columns become
//! fenced subqueries too, keeping only the rows of the tables (and columns) the account
//! may see. Writes are in [`write`].
//!
//! Every check that depends on what a column name means (pins, pushdown, the write
//! target's columns, whole-row references, RETURNING masks) asks [`scope`], which binds
//! names as PostgreSQL's parser does; a binding it cannot be sure of is treated as the
//! most dangerous one it could be, or refused.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use maskgate_mask::{parse_pg_type, PgType, TypeFamily};
use maskgate_policy::{ColumnRule, QualifiedName, TableClass, TableRules};
use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Distinct, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentClause, FunctionArguments, GroupByExpr, Ident, JoinConstraint, JoinOperator,
    LimitClause, ObjectName, OrderByKind, Query, Select, SelectFlavor, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, TableAlias, TableFactor, TableWithJoins, Value,
    ValueWithSpan, VisitMut, VisitorMut, WildcardAdditionalOptions,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::budget::Clock;
use crate::catalog;
use crate::denial::Denial;
use crate::enforce::Enforcer;
use crate::facts::RawPin;
use crate::functions;
use crate::mask::MaskRenderer;
use crate::names::{self, fold, quote_ident, quoted};

mod binding;
mod blocks;
mod caps;
mod checks;
mod fence;
mod from;
mod guard;
mod packing;
mod pins;
mod scope;
#[cfg(test)]
mod scope_tests;
mod write;

use caps::apply_cap;
pub(crate) use caps::statement_cap;
pub(crate) use checks::{check_execute_argument, check_type};
use checks::{check_function, check_operator, function_name, plain_wildcard};
pub(crate) use fence::build_fence;
use fence::{comparison, is_safe_comparison, join_and, split_and, split_and_ref, strip};
use scope::{Columns, Level, Scopes};
pub(crate) use write::{rewrite_copy_in, rewrite_write};

/// Rewrites a top-level query in place and caps it; returns its cap (see
/// [`statement_cap`]) and the lookup keys it pinned.
pub(crate) fn rewrite_read(
    enforcer: &Enforcer,
    query: &mut Query,
    clock: &Clock,
) -> Result<(Option<u64>, Vec<RawPin>), Denial> {
    let mut rewriter = Rewriter::new(enforcer, query, clock)?;
    let cap = statement_cap(enforcer, &rewriter.tables);
    rewriter.read_cap = cap;
    rewriter.open_block = query.with.is_none() && matches!(*query.body, SetExpr::Select(_));
    rewriter.query(query)?;
    if let Some(cap) = cap {
        apply_cap(query, cap)?;
    }
    Ok((cap, rewriter.pins.into_inner()))
}

/// What a relation name in FROM turned out to be.
#[derive(Debug, Clone)]
enum Resolved {
    /// A CTE of an enclosing WITH: left as written.
    Cte(Columns),
    /// An allowed system relation, to be schema-qualified.
    Catalog(QualifiedName),
    /// A policy table the account may read, to be replaced by a masking subquery.
    Protected(QualifiedName),
}

/// One FROM item of a query block, as far as column references care.
#[derive(Debug, Clone)]
struct FromItem {
    /// The alias, or the relation's own (folded) name; empty for none.
    name: String,
    /// The schema of an unaliased table, which a qualified name may spell out.
    schema: Option<String>,
    /// Its column names, as far as they are known.
    columns: Columns,
    /// Set for protected tables.
    protected: Option<QualifiedName>,
    /// How the name resolved; `None` for derived tables and functions.
    resolved: Option<Resolved>,
    /// The target of a write: read as stored, not through a masking subquery.
    raw: bool,
}

/// Extra predicates for one masking subquery.
#[derive(Debug, Default)]
struct FencePlan {
    inside: Vec<Expr>,
    /// The `column = value` comparisons among them, by column: what pins the item.
    equal: Vec<(String, Expr)>,
    /// Nothing of the statement's own runs beside the row filter: no `OFFSET 0`.
    open: bool,
}

struct Rewriter<'e> {
    enforcer: &'e Enforcer,
    /// The analysis' time budget, read as query blocks, FROM items and expressions
    /// are walked.
    clock: &'e Clock,
    /// Every column that some protected table of the statement denies, with that table.
    denied: BTreeMap<String, QualifiedName>,
    /// CTEs visible at this point with their columns, innermost last.
    ctes: Vec<(String, Columns)>,
    /// FROM items of the enclosing query blocks and what of them is visible now.
    scopes: Scopes,
    /// The table a write changes, while its WHERE, SET and RETURNING are checked.
    target: Option<Target>,
    /// Queries walked so far (a write that contains one also reads).
    queries: usize,
    /// The next query block is the statement's outermost one, whose fence may be left
    /// open (see [`Rewriter::may_open_fence`]).
    open_block: bool,
    /// The policy tables the statement names.
    tables: Vec<QualifiedName>,
    /// The cap of a read: OFFSETs must stay below it, and what the select lists pack
    /// into values counts against it (see [`packing`]); the same for the subqueries and
    /// RETURNING of writes.
    read_cap: Option<u64>,
    /// A select-list expression is being checked.
    output: bool,
    /// The lookup keys pinned so far, for the statement's audit record.
    pins: std::cell::RefCell<Vec<RawPin>>,
}

/// The table of an UPDATE, DELETE or INSERT. PostgreSQL reads it as stored, so every
/// column reference that may reach it is checked by name: only columns the account
/// sees as stored may be read, and masked ones only at the top of RETURNING (where the
/// write rewrite replaces them by their masks).
struct Target {
    table: QualifiedName,
    /// How the statement names it: its alias, or the table's own name (folded).
    name: String,
    /// Index in [`Scopes::levels`] of the write's own block.
    level: usize,
    /// RETURNING is being checked.
    returning: bool,
}

impl<'e> Rewriter<'e> {
    fn new<T: sqlparser::ast::Visit>(
        enforcer: &'e Enforcer,
        node: &T,
        clock: &'e Clock,
    ) -> Result<Self, Denial> {
        let mut rewriter = Rewriter {
            enforcer,
            clock,
            denied: BTreeMap::new(),
            ctes: Vec::new(),
            scopes: Scopes::default(),
            target: None,
            queries: 0,
            open_block: false,
            tables: Vec::new(),
            read_cap: None,
            output: false,
            pins: std::cell::RefCell::default(),
        };
        let mut tables = Vec::new();
        let mut growth = 0usize;
        let mut subqueries = 0usize;
        let _ = sqlparser::ast::visit_relations(node, |name| {
            match rewriter.resolve(name) {
                Ok(Resolved::Protected(table)) => {
                    growth = growth.saturating_add(enforcer.fence_bytes(&table));
                    subqueries += 1;
                    tables.push(table);
                }
                Ok(Resolved::Catalog(view)) => {
                    let bytes = enforcer.fence_bytes(&view);
                    growth = growth.saturating_add(bytes);
                    // Catalog relations read as they are get no subquery.
                    subqueries += usize::from(bytes > 0);
                }
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
        let _ = sqlparser::ast::visit_expressions(node, |expr| {
            if let Expr::Function(function) = expr {
                if let Some((_, guard)) = function_name(&function.name)
                    .ok()
                    .and_then(|name| catalog::pg::guard_of(&name))
                {
                    growth = growth.saturating_add(enforcer.guard_bytes(guard));
                }
            }
            ControlFlow::<()>::Continue(())
        });
        // Refused before any subquery is built: the trees of tens of thousands of
        // them would take gigabytes.
        enforcer.limits.check_growth(growth)?;
        enforcer.limits.check_masking_subqueries(subqueries)?;
        tables.sort_unstable();
        tables.dedup();
        for table in &tables {
            let rules = &enforcer.rules.tables[table];
            for column in enforcer.classification()[table].columns.keys() {
                if matches!(rules.columns.get(column), None | Some(ColumnRule::Deny)) {
                    rewriter
                        .denied
                        .entry(column.clone())
                        .or_insert_with(|| table.clone());
                }
            }
        }
        rewriter.tables = tables;
        Ok(rewriter)
    }

    fn rules(&self, table: &QualifiedName) -> &'e TableRules {
        &self.enforcer.rules.tables[table]
    }

    // ---------------------------------------------------------------- names

    fn resolve(&self, name: &ObjectName) -> Result<Resolved, Denial> {
        let parts = names::parts(name)?;
        match parts.as_slice() {
            [relation] => {
                if let Some((_, columns)) = self.ctes.iter().rev().find(|(cte, _)| cte == relation)
                {
                    return Ok(Resolved::Cte(columns.clone()));
                }
                resolve_unqualified(self.enforcer, relation)
            }
            [schema, relation] => resolve_qualified(self.enforcer, schema, relation),
            _ => Err(Denial::unsupported(
                "a relation name with more than two parts",
            )),
        }
    }

    // ---------------------------------------------------------------- expressions

    fn visit<T: VisitMut>(&mut self, node: &mut T) -> Result<(), Denial> {
        self.visit_as(node, false)
    }

    /// An expression of a select list: what it packs into values is counted.
    fn visit_output(&mut self, expr: &mut Expr) -> Result<(), Denial> {
        self.visit_as(expr, true)
    }

    fn visit_as<T: VisitMut>(&mut self, node: &mut T, output: bool) -> Result<(), Denial> {
        let saved = std::mem::replace(&mut self.output, output);
        let mut checker = ExprCheck {
            rewriter: self,
            skip: 0,
        };
        let result = match node.visit(&mut checker) {
            ControlFlow::Break(denial) => Err(denial),
            ControlFlow::Continue(()) => Ok(()),
        };
        self.output = saved;
        result
    }

    fn check_expr(&self, expr: &Expr) -> Result<(), Denial> {
        match expr {
            Expr::Identifier(ident) => {
                names::check_quote(ident)?;
                #[cfg(test)]
                scope_tests::record(self, &[fold(ident)], ident.span.start);
                self.check_unqualified(&fold(ident))
            }
            Expr::CompoundIdentifier(parts) => {
                for part in parts {
                    names::check_quote(part)?;
                }
                let folded: Vec<String> = parts.iter().map(fold).collect();
                #[cfg(test)]
                if let Some(first) = parts.first() {
                    scope_tests::record(self, &folded, first.span.start);
                }
                self.check_compound(&folded)
            }
            Expr::Function(function) => {
                if function_name(&function.name)? == "pg_notify" {
                    self.check_notify(function)?;
                } else {
                    check_function(function, self.enforcer.limits.max_sleep)?;
                }
                self.check_function_wildcards(function)
            }
            Expr::Cast {
                data_type, kind, ..
            } => {
                if matches!(kind, CastKind::TryCast | CastKind::SafeCast) {
                    return Err(Denial::unsupported("TRY_CAST"));
                }
                check_type(data_type)
            }
            Expr::TypedString(typed) => check_type(&typed.data_type),
            Expr::BinaryOp { op, .. } => check_operator(op),
            Expr::AnyOp { compare_op, .. } | Expr::AllOp { compare_op, .. } => {
                check_operator(compare_op)
            }
            Expr::Value(_)
            | Expr::CompoundFieldAccess { .. }
            | Expr::IsFalse(_)
            | Expr::IsNotFalse(_)
            | Expr::IsTrue(_)
            | Expr::IsNotTrue(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsUnknown(_)
            | Expr::IsNotUnknown(_)
            | Expr::IsDistinctFrom(..)
            | Expr::IsNotDistinctFrom(..)
            | Expr::IsNormalized { .. }
            | Expr::InList { .. }
            | Expr::InSubquery { .. }
            | Expr::Between { .. }
            | Expr::Like { .. }
            | Expr::ILike { .. }
            | Expr::SimilarTo { .. }
            | Expr::UnaryOp { .. }
            | Expr::AtTimeZone { .. }
            | Expr::Extract { .. }
            | Expr::Ceil { .. }
            | Expr::Floor { .. }
            | Expr::Position { .. }
            | Expr::Substring { .. }
            | Expr::Trim { .. }
            | Expr::Overlay { .. }
            | Expr::Collate { .. }
            | Expr::Nested(_)
            | Expr::Case { .. }
            | Expr::Exists { .. }
            | Expr::Subquery(_)
            | Expr::GroupingSets(_)
            | Expr::Cube(_)
            | Expr::Rollup(_)
            | Expr::Tuple(_)
            | Expr::Array(_)
            | Expr::Interval(_) => Ok(()),
            _ => Err(Denial::unsupported("this kind of expression")),
        }
    }
}

/// Walks one expression tree (or any node holding expressions): checks every
/// expression and hands nested queries back to the rewriter, skipping their insides
/// (the rewriter already did them).
struct ExprCheck<'r, 'e> {
    rewriter: &'r mut Rewriter<'e>,
    skip: usize,
}

impl VisitorMut for ExprCheck<'_, '_> {
    type Break = Denial;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Denial> {
        if self.skip == 0 {
            if let Err(denial) = self.rewriter.query(query) {
                return ControlFlow::Break(denial);
            }
        }
        self.skip += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<Denial> {
        self.skip -= 1;
        ControlFlow::Continue(())
    }

    /// Catalog functions are guarded, and select-list values that pack rows are
    /// wrapped, once their arguments were checked, so the guard's subquery and the
    /// wrapper are not walked as the client's.
    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Denial> {
        if self.skip > 0 {
            return ControlFlow::Continue(());
        }
        let output = self.rewriter.output;
        let rewritten = self
            .rewriter
            .guard_catalog_call(expr)
            .and_then(|()| self.rewriter.pack(expr, output));
        match rewritten {
            Ok(()) => ControlFlow::Continue(()),
            Err(denial) => ControlFlow::Break(denial),
        }
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Denial> {
        if self.skip > 0 {
            return ControlFlow::Continue(());
        }
        match self
            .rewriter
            .clock
            .tick()
            .and_then(|()| self.rewriter.check_expr(expr))
        {
            Ok(()) => {
                self.rewriter.unqualify_schema(expr);
                ControlFlow::Continue(())
            }
            Err(denial) => ControlFlow::Break(denial),
        }
    }
}

/// Walk position in a block's FROM: which scanned item comes next.
struct Cursor<'i> {
    items: &'i [FromItem],
    next: usize,
    plans: &'i mut Vec<FencePlan>,
}

// -------------------------------------------------------------------- helpers

/// A relation named without a schema, looked up along the policy's search_path as
/// PostgreSQL would (CTEs aside, which the caller looks at first).
fn resolve_unqualified(enforcer: &Enforcer, relation: &str) -> Result<Resolved, Denial> {
    let path = enforcer.search_path();
    let catalog_listed = path.iter().any(|s| s == "pg_catalog");
    if !catalog_listed && relation.starts_with("pg_") {
        return resolve_qualified(enforcer, "pg_catalog", relation);
    }
    for schema in &path {
        let candidate = QualifiedName::new(schema.as_str(), relation);
        if enforcer.classification().contains_key(&candidate)
            || (catalog::is_system_schema(schema) && catalog::is_allowed(schema, relation))
        {
            return resolve_qualified(enforcer, schema, relation);
        }
    }
    Err(not_available(relation))
}

fn resolve_qualified(
    enforcer: &Enforcer,
    schema: &str,
    relation: &str,
) -> Result<Resolved, Denial> {
    let name = QualifiedName::new(schema, relation);
    if enforcer.classification().contains_key(&name) {
        if enforcer.rules.tables.contains_key(&name) {
            return Ok(Resolved::Protected(name));
        }
    } else if catalog::is_allowed(schema, relation) {
        return Ok(Resolved::Catalog(name));
    }
    Err(not_available(&name.to_string()))
}

/// The policy table `name` resolves to for this account, if it is one.
pub(crate) fn protected_table(enforcer: &Enforcer, name: &ObjectName) -> Option<QualifiedName> {
    let parts = names::parts(name).ok()?;
    let resolved = match parts.as_slice() {
        [relation] => resolve_unqualified(enforcer, relation),
        [schema, relation] => resolve_qualified(enforcer, schema, relation),
        _ => return None,
    };
    match resolved {
        Ok(Resolved::Protected(table)) => Some(table),
        _ => None,
    }
}

/// A relation the account cannot use. System relations it may not read are listed
/// in its catalog, so they are refused as PostgreSQL refuses a relation without the
/// privilege (`42501`); any other relation outside its policy is not listed, and is
/// answered exactly as one that does not exist (`42P01`), so the answer reveals
/// nothing the account's catalog does not.
fn not_available(relation: &str) -> Denial {
    let system = relation
        .split_once('.')
        .map_or(relation.starts_with("pg_"), |(schema, _)| {
            catalog::is_system_schema(schema)
        });
    if system {
        return Denial::privilege(format!(
            "relation \"{relation}\" is not available to this account"
        ));
    }
    Denial {
        sqlstate: crate::denial::sqlstate::UNDEFINED_TABLE,
        message: format!("relation \"{relation}\" does not exist"),
    }
}

fn denied_column(column: &str, table: &QualifiedName) -> Denial {
    Denial::privilege(format!(
        "column \"{column}\" of table \"{table}\" is not available to this account"
    ))
}

fn lookup_only(table: &QualifiedName, rules: &TableRules) -> Denial {
    Denial::privilege(format!(
        "table {table} is lookup-only for this account: its WHERE must \
         include `<key> = <value>` for one of: {}",
        rules.lookup_keys.join(", ")
    ))
}

fn unknown_in_write(column: &str, table: &QualifiedName) -> Denial {
    Denial::privilege(format!(
        "column \"{column}\" may refer to table \"{table}\", which this statement writes, \
         and is not one of its columns this account may read; qualify it with its table"
    ))
}

fn whole_row_of_target(name: &str) -> Denial {
    Denial::privilege(format!(
        "a whole-row reference to \"{name}\", the table this statement writes, is not allowed"
    ))
}

fn internal() -> Denial {
    Denial::unsupported("this statement (internal rewrite error)")
}

fn cte_name(cte: &sqlparser::ast::Cte) -> Result<String, Denial> {
    names::check_quote(&cte.alias.name)?;
    Ok(fold(&cte.alias.name))
}

/// A bare name that is one of `outputs`: in ORDER BY it means that output column, in
/// GROUP BY it does unless an input column of the block has the name. Either way it
/// cannot reach an enclosing block, and the select list's own check covers it.
fn is_output_name(expr: &Expr, outputs: &[String]) -> Result<bool, Denial> {
    let Expr::Identifier(ident) = expr else {
        return Ok(false);
    };
    names::check_quote(ident)?;
    Ok(outputs.contains(&fold(ident)))
}

/// A CTE's columns: its query's, renamed by its column list.
fn cte_columns(cte: &sqlparser::ast::Cte) -> Result<Columns, Denial> {
    let mut aliases = Vec::with_capacity(cte.alias.columns.len());
    for column in &cte.alias.columns {
        names::check_quote(&column.name)?;
        aliases.push(fold(&column.name));
    }
    Ok(Columns::renamed(&scope::output_of(&cte.query), &aliases))
}

fn check_alias(alias: Option<&TableAlias>) -> Result<(), Denial> {
    if let Some(alias) = alias {
        names::check_quote(&alias.name)?;
    }
    Ok(())
}
