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
mod checks;
mod fence;
mod from;
mod scope;
#[cfg(test)]
mod scope_tests;
mod write;

pub(crate) use checks::{check_execute_argument, check_type};
use checks::{check_function, check_operator, function_name, plain_wildcard};
pub(crate) use fence::build_fence;
use fence::{comparison, is_safe_comparison, join_and, split_and, split_and_ref, strip};
use scope::{Columns, Level, Scopes};
pub(crate) use write::{rewrite_copy_in, rewrite_write};

/// Rewrites a top-level query in place and caps it. Returns the lookup keys it pinned.
pub(crate) fn rewrite_read(
    enforcer: &Enforcer,
    query: &mut Query,
    clock: &Clock,
) -> Result<Vec<RawPin>, Denial> {
    let mut rewriter = Rewriter::new(enforcer, query, clock)?;
    rewriter.open_block = query.with.is_none() && matches!(*query.body, SetExpr::Select(_));
    rewriter.query(query)?;
    if let Some(cap) = enforcer.rules.max_rows {
        apply_cap(query, cap)?;
    }
    Ok(rewriter.pins.into_inner())
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
        // Refused before any subquery is built: the trees of tens of thousands of
        // them would take gigabytes.
        enforcer.limits.check_growth(growth)?;
        enforcer.limits.check_masking_subqueries(subqueries)?;
        tables.sort_unstable();
        tables.dedup();
        for table in tables {
            let rules = &enforcer.rules.tables[&table];
            for column in enforcer.classification()[&table].columns.keys() {
                if matches!(rules.columns.get(column), None | Some(ColumnRule::Deny)) {
                    rewriter
                        .denied
                        .entry(column.clone())
                        .or_insert_with(|| table.clone());
                }
            }
        }
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

    // ---------------------------------------------------------------- queries

    fn query(&mut self, query: &mut Query) -> Result<(), Denial> {
        self.clock.check()?;
        self.queries += 1;
        if !query.locks.is_empty() {
            return Err(Denial::unsupported("FOR UPDATE/FOR SHARE"));
        }
        if query.for_clause.is_some()
            || query.settings.is_some()
            || query.format_clause.is_some()
            || !query.pipe_operators.is_empty()
        {
            return Err(Denial::unsupported("this query clause"));
        }
        let depth = self.ctes.len();
        let result = self.query_inner(query);
        self.ctes.truncate(depth);
        result
    }

    fn query_inner(&mut self, query: &mut Query) -> Result<(), Denial> {
        if let Some(with) = &mut query.with {
            if with.recursive {
                for cte in &with.cte_tables {
                    self.ctes.push((cte_name(cte)?, cte_columns(cte)?));
                }
            }
            for cte in &mut with.cte_tables {
                let name = cte_name(cte)?;
                if cte.from.is_some() {
                    return Err(Denial::unsupported("CTE FROM"));
                }
                let columns = cte_columns(cte)?;
                self.query(&mut cte.query)?;
                if !with.recursive {
                    self.ctes.push((name, columns));
                }
            }
        }
        self.set_expr(&mut query.body, query.order_by.as_mut())?;
        match &mut query.limit_clause {
            None => {}
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                if !limit_by.is_empty() {
                    return Err(Denial::unsupported("LIMIT BY"));
                }
                if let Some(limit) = limit {
                    self.visit(limit)?;
                }
                if let Some(offset) = offset {
                    self.visit(&mut offset.value)?;
                }
            }
            Some(LimitClause::OffsetCommaLimit { .. }) => {
                return Err(Denial::unsupported("LIMIT offset, count"))
            }
        }
        if let Some(fetch) = &mut query.fetch {
            if let Some(quantity) = &mut fetch.quantity {
                self.visit(quantity)?;
            }
        }
        Ok(())
    }

    fn set_expr(
        &mut self,
        body: &mut SetExpr,
        order_by: Option<&mut sqlparser::ast::OrderBy>,
    ) -> Result<(), Denial> {
        match body {
            SetExpr::Select(select) => return self.select(select, order_by),
            SetExpr::Query(query) => self.query(query)?,
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left, None)?;
                self.set_expr(right, None)?;
            }
            SetExpr::Values(values) => {
                for row in &mut values.rows {
                    for expr in row {
                        self.visit(expr)?;
                    }
                }
            }
            SetExpr::Table(_) => return Err(Denial::unsupported("TABLE name")),
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                return Err(Denial::forbidden(
                    "a data-modifying statement inside a query",
                ))
            }
        }
        if let Some(order_by) = order_by {
            // The ORDER BY of a set operation sees only its output columns.
            let outputs = scope::set_output_names(body);
            self.order_by_outputs(order_by, &outputs)?;
        }
        Ok(())
    }

    /// ORDER BY of a block whose output columns are `outputs`: a bare name that is one
    /// of them means that output column (PostgreSQL looks there first), which the
    /// select list's own check covers.
    fn order_by_outputs(
        &mut self,
        order_by: &mut sqlparser::ast::OrderBy,
        outputs: &[String],
    ) -> Result<(), Denial> {
        if order_by.interpolate.is_some() {
            return Err(Denial::unsupported("INTERPOLATE"));
        }
        match &mut order_by.kind {
            OrderByKind::Expressions(exprs) => {
                for item in exprs {
                    if item.with_fill.is_some() {
                        return Err(Denial::unsupported("WITH FILL"));
                    }
                    if is_output_name(&item.expr, outputs)? {
                        continue;
                    }
                    self.visit(&mut item.expr)?;
                }
                Ok(())
            }
            OrderByKind::All(_) => Err(Denial::unsupported("ORDER BY ALL")),
        }
    }

    fn select(
        &mut self,
        select: &mut Select,
        order_by: Option<&mut sqlparser::ast::OrderBy>,
    ) -> Result<(), Denial> {
        if select.into.is_some() {
            return Err(Denial::forbidden("SELECT … INTO"));
        }
        if select.top.is_some()
            || select.exclude.is_some()
            || !select.lateral_views.is_empty()
            || select.prewhere.is_some()
            || !select.cluster_by.is_empty()
            || !select.distribute_by.is_empty()
            || !select.sort_by.is_empty()
            || select.qualify.is_some()
            || select.value_table_mode.is_some()
            || select.connect_by.is_some()
            || select.flavor != SelectFlavor::Standard
        {
            return Err(Denial::unsupported("this SELECT clause"));
        }

        let outermost = std::mem::take(&mut self.open_block);
        let (items, has_outer_join) = self.scan_from(&select.from)?;
        self.scopes.levels.push(Level::visible(items.clone()));
        let result = self.plan_select(select, order_by, &items, has_outer_join, outermost);
        self.scopes.levels.pop();
        result
    }

    /// [`Rewriter::select`] with the block's level pushed, all of it visible (as its
    /// WHERE sees it) until its FROM is walked.
    fn plan_select(
        &mut self,
        select: &mut Select,
        order_by: Option<&mut sqlparser::ast::OrderBy>,
        items: &[FromItem],
        has_outer_join: bool,
        outermost: bool,
    ) -> Result<(), Denial> {
        let mut plans = self.plan_fences(items, &mut select.selection, has_outer_join)?;
        if outermost && self.may_open_fence(select, items) {
            plans[0].open = true;
        }
        self.select_inner(select, order_by, items, &mut plans)
    }

    fn select_inner(
        &mut self,
        select: &mut Select,
        order_by: Option<&mut sqlparser::ast::OrderBy>,
        items: &[FromItem],
        plans: &mut Vec<FencePlan>,
    ) -> Result<(), Denial> {
        let mut cursor = Cursor {
            items,
            next: 0,
            plans,
        };
        for from in &mut select.from {
            self.walk_from(from, &mut cursor)?;
        }
        self.reveal();
        for item in &mut select.projection {
            match item {
                SelectItem::UnnamedExpr(expr) => self.visit(expr)?,
                SelectItem::ExprWithAlias { expr, .. } => self.visit(expr)?,
                SelectItem::Wildcard(options) => plain_wildcard(options)?,
                SelectItem::QualifiedWildcard(kind, options) => {
                    plain_wildcard(options)?;
                    match kind {
                        SelectItemQualifiedWildcardKind::ObjectName(name) => {
                            self.check_whole_row(name)?
                        }
                        SelectItemQualifiedWildcardKind::Expr(expr) => self.visit(expr)?,
                    }
                }
            }
        }
        if let Some(Distinct::On(exprs)) = &mut select.distinct {
            for expr in exprs {
                self.visit(expr)?;
            }
        }
        if let Some(selection) = &mut select.selection {
            self.visit(selection)?;
        }
        let outputs = scope::output_names(select);
        match &mut select.group_by {
            GroupByExpr::Expressions(exprs, modifiers) => {
                if !modifiers.is_empty() {
                    return Err(Denial::unsupported("this GROUP BY modifier"));
                }
                for expr in exprs {
                    // A bare name is an input column of this block or else an output
                    // column, never one of an enclosing block.
                    if is_output_name(expr, &outputs)? {
                        continue;
                    }
                    self.visit(expr)?;
                }
            }
            GroupByExpr::All(_) => return Err(Denial::unsupported("GROUP BY ALL")),
        }
        if let Some(having) = &mut select.having {
            self.visit(having)?;
        }
        for window in &mut select.named_window {
            self.visit(window)?;
        }
        if let Some(order_by) = order_by {
            self.order_by_outputs(order_by, &outputs)?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- expressions

    fn visit<T: VisitMut>(&mut self, node: &mut T) -> Result<(), Denial> {
        let mut checker = ExprCheck {
            rewriter: self,
            skip: 0,
        };
        match node.visit(&mut checker) {
            ControlFlow::Break(denial) => Err(denial),
            ControlFlow::Continue(()) => Ok(()),
        }
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
                check_function(function)?;
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
            Ok(()) => ControlFlow::Continue(()),
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
    for schema in path {
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

fn not_available(relation: &str) -> Denial {
    Denial::privilege(format!(
        "relation \"{relation}\" is not available to this account"
    ))
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

/// Makes the outermost query return at most `cap + 1` rows, merged with its own LIMIT
/// or FETCH FIRST.
fn apply_cap(query: &mut Query, cap: u64) -> Result<(), Denial> {
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
