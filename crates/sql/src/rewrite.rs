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

use crate::catalog;
use crate::denial::Denial;
use crate::enforce::Enforcer;
use crate::functions;
use crate::mask::MaskRenderer;
use crate::names::{self, fold, quote_ident, quoted};

mod binding;
mod scope;
#[cfg(test)]
mod scope_tests;
mod write;

use scope::{Columns, Level, Scopes};
pub(crate) use write::{rewrite_copy_in, rewrite_write};

/// Rewrites a top-level query in place and caps it.
pub(crate) fn rewrite_read(enforcer: &Enforcer, query: &mut Query) -> Result<(), Denial> {
    let mut rewriter = Rewriter::new(enforcer, query)?;
    rewriter.open_block = query.with.is_none() && matches!(*query.body, SetExpr::Select(_));
    rewriter.query(query)?;
    if let Some(cap) = enforcer.rules.max_rows {
        apply_cap(query, cap)?;
    }
    Ok(())
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
    fn new<T: sqlparser::ast::Visit>(enforcer: &'e Enforcer, node: &T) -> Result<Self, Denial> {
        let mut rewriter = Rewriter {
            enforcer,
            denied: BTreeMap::new(),
            ctes: Vec::new(),
            scopes: Scopes::default(),
            target: None,
            queries: 0,
            open_block: false,
        };
        let mut tables = Vec::new();
        let _ = sqlparser::ast::visit_relations(node, |name| {
            if let Ok(Resolved::Protected(table)) = rewriter.resolve(name) {
                tables.push(table);
            }
            ControlFlow::<()>::Continue(())
        });
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
                let path = self.enforcer.search_path();
                let catalog_listed = path.iter().any(|s| s == "pg_catalog");
                if !catalog_listed && relation.starts_with("pg_") {
                    return self.resolve_qualified("pg_catalog", relation);
                }
                for schema in path {
                    let candidate = QualifiedName::new(schema.as_str(), relation.as_str());
                    if self.enforcer.classification().contains_key(&candidate)
                        || (catalog::is_system_schema(schema)
                            && catalog::is_allowed(schema, relation))
                    {
                        return self.resolve_qualified(schema, relation);
                    }
                }
                Err(not_available(relation))
            }
            [schema, relation] => self.resolve_qualified(schema, relation),
            _ => Err(Denial::unsupported(
                "a relation name with more than two parts",
            )),
        }
    }

    fn resolve_qualified(&self, schema: &str, relation: &str) -> Result<Resolved, Denial> {
        let name = QualifiedName::new(schema, relation);
        if self.enforcer.classification().contains_key(&name) {
            if self.enforcer.rules.tables.contains_key(&name) {
                return Ok(Resolved::Protected(name));
            }
        } else if catalog::is_allowed(schema, relation) {
            return Ok(Resolved::Catalog(name));
        }
        Err(not_available(&name.to_string()))
    }

    // ---------------------------------------------------------------- queries

    fn query(&mut self, query: &mut Query) -> Result<(), Denial> {
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
            self.order_by(order_by)?;
        }
        Ok(())
    }

    fn order_by(&mut self, order_by: &mut sqlparser::ast::OrderBy) -> Result<(), Denial> {
        self.order_by_outputs(order_by, &[])
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
                    if let Expr::Identifier(ident) = &item.expr {
                        names::check_quote(ident)?;
                        if outputs.contains(&fold(ident)) {
                            continue;
                        }
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
        match &mut select.group_by {
            GroupByExpr::Expressions(exprs, modifiers) => {
                if !modifiers.is_empty() {
                    return Err(Denial::unsupported("this GROUP BY modifier"));
                }
                for expr in exprs {
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
            let outputs = scope::output_names(select);
            self.order_by_outputs(order_by, &outputs)?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- FROM

    /// Resolves the block's FROM items without changing them, in the order
    /// [`Rewriter::walk_from`] will meet them.
    fn scan_from(&self, from: &[TableWithJoins]) -> Result<(Vec<FromItem>, bool), Denial> {
        let mut items = Vec::new();
        let mut outer = false;
        for twj in from {
            self.scan_twj(twj, &mut items, &mut outer)?;
        }
        Ok((items, outer))
    }

    fn scan_twj(
        &self,
        twj: &TableWithJoins,
        items: &mut Vec<FromItem>,
        outer: &mut bool,
    ) -> Result<(), Denial> {
        self.scan_factor(&twj.relation, items, outer)?;
        for join in &twj.joins {
            if matches!(
                join.join_operator,
                JoinOperator::Left(_)
                    | JoinOperator::LeftOuter(_)
                    | JoinOperator::Right(_)
                    | JoinOperator::RightOuter(_)
                    | JoinOperator::FullOuter(_)
            ) {
                *outer = true;
            }
            self.scan_factor(&join.relation, items, outer)?;
        }
        Ok(())
    }

    fn scan_factor(
        &self,
        factor: &TableFactor,
        items: &mut Vec<FromItem>,
        outer: &mut bool,
    ) -> Result<(), Denial> {
        let item = |name: String, columns: Columns| FromItem {
            name,
            schema: None,
            columns,
            protected: None,
            resolved: None,
            raw: false,
        };
        match factor {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let parts = names::parts(name)?;
                let own = parts.last().cloned().unwrap_or_default();
                let alias_name = alias.as_ref().map(|a| fold(&a.name));
                if args.is_some() {
                    let columns = Columns::open(alias_columns(alias.as_ref()));
                    items.push(item(alias_name.unwrap_or(own), columns));
                    return Ok(());
                }
                let resolved = self.resolve(name)?;
                let (schema, columns, protected) = match &resolved {
                    Resolved::Protected(table) => (
                        Some(table.schema.clone()),
                        self.fence_columns(table),
                        Some(table.clone()),
                    ),
                    Resolved::Catalog(table) => {
                        (Some(table.schema.clone()), Columns::open(Vec::new()), None)
                    }
                    Resolved::Cte(columns) => (None, columns.clone(), None),
                };
                let columns = match alias.as_ref().filter(|a| !a.columns.is_empty()) {
                    Some(alias) => rename(&columns, &alias_columns(Some(alias))),
                    None => columns,
                };
                items.push(FromItem {
                    name: alias_name.unwrap_or(own),
                    schema: schema.filter(|_| alias.is_none()),
                    columns,
                    protected,
                    resolved: Some(resolved),
                    raw: false,
                });
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_some() {
                    // An alias hides the joined items' own names; not modelled.
                    return Err(Denial::unsupported("a parenthesized JOIN with an alias"));
                }
                self.scan_twj(table_with_joins, items, outer)?
            }
            TableFactor::Derived {
                alias, subquery, ..
            } => {
                let columns =
                    Columns::renamed(&scope::output_of(subquery), &alias_columns(alias.as_ref()));
                let name = alias.as_ref().map(|a| fold(&a.name)).unwrap_or_default();
                items.push(item(name, columns));
            }
            TableFactor::UNNEST { alias, .. } | TableFactor::Function { alias, .. } => {
                let name = alias.as_ref().map(|a| fold(&a.name)).unwrap_or_default();
                items.push(item(name, Columns::open(alias_columns(alias.as_ref()))));
            }
            _ => return Err(Denial::unsupported("this kind of FROM item")),
        }
        Ok(())
    }

    /// The columns a masking subquery of `table` projects.
    fn fence_columns(&self, table: &QualifiedName) -> Columns {
        let rules = self.rules(table);
        let names = self.enforcer.classification()[table]
            .columns
            .keys()
            .filter(|c| {
                matches!(
                    rules.columns.get(*c),
                    Some(ColumnRule::Allow | ColumnRule::Mask(_))
                )
            })
            .cloned()
            .collect();
        Columns::known(names)
    }

    fn walk_from(
        &mut self,
        twj: &mut TableWithJoins,
        cursor: &mut Cursor<'_>,
    ) -> Result<(), Denial> {
        let start = cursor.next;
        self.factor(&mut twj.relation, cursor)?;
        for join in &mut twj.joins {
            if join.global {
                return Err(Denial::unsupported("GLOBAL JOIN"));
            }
            let (constraint, refuses_left) = match &mut join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::CrossJoin(c) => (c, false),
                JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c) => (c, true),
                _ => return Err(Denial::unsupported("this kind of JOIN")),
            };
            // A LATERAL item on the right of a RIGHT or FULL JOIN may not refer to its
            // left side (PostgreSQL finds the name and refuses it).
            let left = start..cursor.next;
            let saved = self.refuse(left.clone(), refuses_left);
            let walked = self.factor(&mut join.relation, cursor);
            self.restore_refused(left, saved);
            walked?;
            // ON and USING see this join's own inputs, nothing else of the block.
            if let Some(level) = self.scopes.current() {
                level.only(start..cursor.next);
            }
            match constraint {
                JoinConstraint::On(expr) => self.visit(expr)?,
                JoinConstraint::Using(columns) => {
                    for column in columns {
                        let parts = names::parts(column)?;
                        if let Some(last) = parts.last() {
                            self.check_unqualified(last)?;
                        }
                    }
                }
                JoinConstraint::Natural | JoinConstraint::None => {}
            }
        }
        Ok(())
    }

    /// Marks the items `range` of the current block as refused to LATERAL references
    /// (when `refuse`); returns what they were.
    fn refuse(&mut self, range: std::ops::Range<usize>, refuse: bool) -> Vec<bool> {
        let Some(level) = self.scopes.current() else {
            return Vec::new();
        };
        let saved = level.refused[range.clone()].to_vec();
        if refuse {
            level.refused[range].fill(true);
        }
        saved
    }

    fn restore_refused(&mut self, range: std::ops::Range<usize>, saved: Vec<bool>) {
        if let Some(level) = self.scopes.current() {
            if saved.len() == range.len() {
                level.refused[range].copy_from_slice(&saved);
            }
        }
    }

    /// What the contents of FROM item `index` (a subquery, function arguments) see of
    /// their block: the items before it if it is LATERAL, none after it.
    fn entering(&mut self, index: usize, lateral: bool) {
        if let Some(level) = self.scopes.current() {
            level.before(index, lateral);
        }
    }

    /// The rest of a block (select list, WHERE, …) sees all of its FROM.
    fn reveal(&mut self) {
        if let Some(level) = self.scopes.current() {
            level.reveal();
        }
    }

    fn factor(&mut self, factor: &mut TableFactor, cursor: &mut Cursor<'_>) -> Result<(), Denial> {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_hints,
            } => {
                let index = cursor.next;
                cursor.next += 1;
                self.entering(index, true);
                if let Some(args) = args {
                    if args.settings.is_some() {
                        return Err(Denial::unsupported("SETTINGS"));
                    }
                    self.table_function(name)?;
                    for arg in &mut args.args {
                        self.visit(arg)?;
                    }
                    return Ok(());
                }
                if !with_hints.is_empty()
                    || version.is_some()
                    || *with_ordinality
                    || !partitions.is_empty()
                    || json_path.is_some()
                    || sample.is_some()
                    || !index_hints.is_empty()
                {
                    return Err(Denial::unsupported("this table modifier"));
                }
                let resolved = cursor.items[index]
                    .resolved
                    .clone()
                    .ok_or_else(|| Denial::unsupported("this FROM item"))?;
                match resolved {
                    Resolved::Cte(_) => {}
                    Resolved::Catalog(table) => match self.enforcer.catalog_fences.get(&table) {
                        None => {
                            *name =
                                ObjectName::from(vec![quoted(&table.schema), quoted(&table.name)]);
                        }
                        Some(fence) => {
                            check_alias(alias.as_ref())?;
                            let alias = alias.take().unwrap_or_else(|| TableAlias {
                                name: quoted(&table.name),
                                columns: Vec::new(),
                            });
                            *factor = TableFactor::Derived {
                                lateral: false,
                                subquery: fence.clone()?,
                                alias: Some(alias),
                            };
                        }
                    },
                    Resolved::Protected(table) => {
                        if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
                            return Err(Denial::unsupported(
                                "a column alias list on a protected table",
                            ));
                        }
                        let alias_ident = match alias.take() {
                            Some(alias) => alias.name,
                            None => quoted(&table.name),
                        };
                        let plan = std::mem::take(&mut cursor.plans[index]);
                        *factor = self.fence(&table, alias_ident, plan)?;
                    }
                }
            }
            TableFactor::Derived {
                subquery,
                alias,
                lateral,
            } => {
                self.entering(cursor.next, *lateral);
                cursor.next += 1;
                check_alias(alias.as_ref())?;
                self.query(subquery)?;
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                check_alias(alias.as_ref())?;
                self.walk_from(table_with_joins, cursor)?;
            }
            TableFactor::Function { name, args, .. } => {
                self.entering(cursor.next, true);
                cursor.next += 1;
                self.table_function(name)?;
                for arg in args {
                    self.visit(arg)?;
                }
            }
            TableFactor::UNNEST {
                array_exprs,
                with_offset: false,
                with_offset_alias: None,
                ..
            } => {
                self.entering(cursor.next, true);
                cursor.next += 1;
                for expr in array_exprs {
                    self.visit(expr)?;
                }
            }
            _ => return Err(Denial::unsupported("this kind of FROM item")),
        }
        Ok(())
    }

    fn table_function(&self, name: &ObjectName) -> Result<(), Denial> {
        let function = function_name(name)?;
        if functions::table_allowed(&function) {
            Ok(())
        } else {
            Err(Denial::privilege(format!(
                "function {function} is not allowed for this account"
            )))
        }
    }

    // ---------------------------------------------------------------- fences

    /// Finds, per protected FROM item, the lookup pin (moved out of WHERE) and the safe
    /// predicates (copied) that go inside its masking subquery.
    fn plan_fences(
        &self,
        items: &[FromItem],
        selection: &mut Option<Expr>,
        has_outer_join: bool,
    ) -> Result<Vec<FencePlan>, Denial> {
        let mut plans: Vec<FencePlan> = items.iter().map(|_| FencePlan::default()).collect();
        if !items.iter().any(|i| i.protected.is_some()) {
            return Ok(plans);
        }
        let mut conjuncts = Vec::new();
        if let Some(expr) = selection.as_ref() {
            split_and_ref(expr, &mut conjuncts);
        }
        let mut pinned = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let Some(table) = item.protected.as_ref().filter(|_| !item.raw) else {
                continue;
            };
            let rules = self.rules(table);
            if !rules.lookup_keys.is_empty() {
                if has_outer_join {
                    return Err(Denial::unsupported(format!(
                        "the lookup-only table {table} in a query with an outer join"
                    )));
                }
                let pin = conjuncts.iter().enumerate().position(|(i, c)| {
                    !pinned.contains(&i)
                        && comparison(c).is_some_and(|(column, op, _)| {
                            op == BinaryOperator::Eq
                                && self
                                    .column_of(column, index)
                                    .is_some_and(|name| rules.lookup_keys.contains(&name))
                        })
                });
                let Some(pin) = pin else {
                    return Err(lookup_only(table, rules));
                };
                pinned.push(pin);
                plans[index]
                    .inside
                    .push(self.raw_predicate(conjuncts[pin], &table.name)?);
            }
            for (i, conjunct) in conjuncts.iter().enumerate() {
                if pinned.contains(&i) {
                    continue;
                }
                if let Some((column, op, _)) = comparison(conjunct) {
                    if !is_safe_comparison(&op) {
                        continue;
                    }
                    let Some(name) = self.column_of(column, index) else {
                        continue;
                    };
                    if matches!(rules.columns.get(&name), Some(ColumnRule::Allow)) {
                        plans[index]
                            .inside
                            .push(self.raw_predicate(conjunct, &table.name)?);
                    }
                }
            }
        }
        if !pinned.is_empty() {
            let mut owned = Vec::new();
            if let Some(expr) = selection.take() {
                split_and(expr, &mut owned);
            }
            let kept = owned
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !pinned.contains(i))
                .map(|(_, c)| c)
                .collect();
            *selection = join_and(kept);
        }
        Ok(plans)
    }

    /// Whether the outermost block's only table may go without `OFFSET 0`. The fence
    /// exists so that PostgreSQL cannot evaluate the statement's own predicates on rows
    /// outside the row filter. When the block reads one protected table, has no
    /// joins and no HAVING (which PostgreSQL may move into WHERE), and every condition
    /// left in its WHERE is a safe comparison already copied inside, nothing of the
    /// statement's own is evaluated before the filter: select list, grouping, ordering
    /// and aggregates only see rows that passed it. No enclosing query exists to push
    /// predicates in. PostgreSQL may then flatten the subquery, which makes lookups
    /// cost nearly what the unmasked statement costs.
    fn may_open_fence(&self, select: &Select, items: &[FromItem]) -> bool {
        let [item] = items else {
            return false;
        };
        let Some(table) = item.protected.as_ref().filter(|_| !item.raw) else {
            return false;
        };
        if select.from.len() != 1 || !select.from[0].joins.is_empty() || select.having.is_some() {
            return false;
        }
        let rules = self.rules(table);
        let mut conjuncts = Vec::new();
        if let Some(selection) = &select.selection {
            split_and_ref(selection, &mut conjuncts);
        }
        conjuncts.iter().all(|conjunct| {
            comparison(conjunct).is_some_and(|(column, op, _)| {
                is_safe_comparison(&op)
                    && self.column_of(column, 0).is_some_and(|name| {
                        matches!(rules.columns.get(&name), Some(ColumnRule::Allow))
                    })
            })
        })
    }

    /// `column <op> value` rewritten against the raw table (named `qualifier`), inside
    /// the fence or in the WHERE of a write.
    fn raw_predicate(&self, conjunct: &Expr, qualifier: &str) -> Result<Expr, Denial> {
        let Some((column, op, value)) = comparison(conjunct) else {
            return Err(internal());
        };
        let name = match column {
            Expr::Identifier(ident) => fold(ident),
            Expr::CompoundIdentifier(parts) => fold(&parts[parts.len() - 1]),
            _ => return Err(internal()),
        };
        let raw = Expr::CompoundIdentifier(vec![quoted(qualifier), quoted(&name)]);
        let column_left = matches!(
            conjunct,
            Expr::BinaryOp { left, .. } if std::ptr::eq(strip(left), column)
        );
        let (left, right) = if column_left {
            (raw, value.clone())
        } else {
            (value.clone(), raw)
        };
        Ok(Expr::BinaryOp {
            left: Box::new(left),
            op,
            right: Box::new(right),
        })
    }

    /// The masking subquery for one reference to `table`: the account's prebuilt one
    /// with this reference's pins and pushed-down predicates added.
    fn fence(
        &self,
        table: &QualifiedName,
        alias: Ident,
        plan: FencePlan,
    ) -> Result<TableFactor, Denial> {
        let mut subquery = match self.enforcer.fences.get(table) {
            Some(Ok(query)) => query.clone(),
            Some(Err(denial)) => return Err(denial.clone()),
            None => return Err(internal()),
        };
        if plan.open {
            subquery.limit_clause = None;
        }
        if !plan.inside.is_empty() {
            let SetExpr::Select(select) = subquery.body.as_mut() else {
                return Err(internal());
            };
            let mut conjuncts: Vec<Expr> = select.selection.take().into_iter().collect();
            conjuncts.extend(plan.inside);
            select.selection = join_and(conjuncts);
        }
        Ok(TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(TableAlias {
                name: alias,
                columns: Vec::new(),
            }),
        })
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
        match self.rewriter.check_expr(expr) {
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

/// A CTE's columns: its query's, renamed by its column list.
fn cte_columns(cte: &sqlparser::ast::Cte) -> Result<Columns, Denial> {
    let mut aliases = Vec::with_capacity(cte.alias.columns.len());
    for column in &cte.alias.columns {
        names::check_quote(&column.name)?;
        aliases.push(fold(&column.name));
    }
    Ok(Columns::renamed(&scope::output_of(&cte.query), &aliases))
}

/// The column names of an alias list (`AS t(a, b)`), folded.
fn alias_columns(alias: Option<&TableAlias>) -> Vec<String> {
    alias.map_or_else(Vec::new, |alias| {
        alias.columns.iter().map(|c| fold(&c.name)).collect()
    })
}

/// `columns` with the first ones renamed by an alias list.
fn rename(columns: &Columns, aliases: &[String]) -> Columns {
    if columns.open {
        return Columns::open(aliases.to_vec());
    }
    let mut names = aliases.to_vec();
    names.extend(columns.names.iter().skip(aliases.len()).cloned());
    Columns::known(names)
}

fn check_alias(alias: Option<&TableAlias>) -> Result<(), Denial> {
    if let Some(alias) = alias {
        names::check_quote(&alias.name)?;
    }
    Ok(())
}

fn plain_wildcard(options: &WildcardAdditionalOptions) -> Result<(), Denial> {
    if options.opt_ilike.is_some()
        || options.opt_exclude.is_some()
        || options.opt_except.is_some()
        || options.opt_replace.is_some()
        || options.opt_rename.is_some()
    {
        return Err(Denial::unsupported("wildcard options"));
    }
    Ok(())
}

/// `name` or `pg_catalog.name`, folded; other schemas are never built-ins.
fn function_name(name: &ObjectName) -> Result<String, Denial> {
    let parts = names::parts(name)?;
    match parts.as_slice() {
        [function] => Ok(function.clone()),
        [schema, function] if schema == "pg_catalog" => Ok(function.clone()),
        _ => Err(Denial::privilege(format!(
            "function {} is not allowed for this account",
            names::display(&parts)
        ))),
    }
}

fn check_function(function: &Function) -> Result<(), Denial> {
    let name = function_name(&function.name)?;
    if function.uses_odbc_syntax || !matches!(function.parameters, FunctionArguments::None) {
        return Err(Denial::unsupported("this function call syntax"));
    }
    if let FunctionArguments::List(list) = &function.args {
        for clause in &list.clauses {
            if !matches!(clause, FunctionArgumentClause::OrderBy(_)) {
                return Err(Denial::unsupported("this function argument clause"));
            }
        }
    }
    if name == "pg_sleep" {
        return check_sleep(function);
    }
    if functions::scalar_allowed(&name) {
        Ok(())
    } else {
        Err(Denial::privilege(format!(
            "function {name} is not allowed for this account"
        )))
    }
}

/// `pg_sleep(<number literal>)` up to [`functions::MAX_SLEEP_SECONDS`].
fn check_sleep(function: &Function) -> Result<(), Denial> {
    let seconds = match &function.args {
        FunctionArguments::List(list) => match list.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(ValueWithSpan {
                value: Value::Number(n, _),
                ..
            })))] => n.parse::<f64>().ok(),
            _ => None,
        },
        _ => None,
    };
    match seconds {
        Some(s) if (0.0..=functions::MAX_SLEEP_SECONDS).contains(&s) => Ok(()),
        _ => Err(Denial::privilege(format!(
            "pg_sleep is allowed only with a literal of at most {} second",
            functions::MAX_SLEEP_SECONDS
        ))),
    }
}

/// An argument of SQL-level EXECUTE: a value, not a query. Literals, parameters,
/// casts and calls of allowed functions pass; column references and subqueries do not.
pub(crate) fn check_execute_argument(
    enforcer: &Enforcer,
    argument: &mut Expr,
) -> Result<(), Denial> {
    /// Stops at the first query or column reference.
    struct ReadsData;

    impl sqlparser::ast::Visitor for ReadsData {
        type Break = ();

        fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
            ControlFlow::Break(())
        }

        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Identifier(_)
                | Expr::CompoundIdentifier(_)
                | Expr::CompoundFieldAccess { .. }
                | Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::InSubquery { .. } => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }

    if sqlparser::ast::Visit::visit(&*argument, &mut ReadsData).is_break() {
        return Err(Denial::privilege(
            "EXECUTE arguments must be literals, parameters or casts of them",
        ));
    }
    let mut rewriter = Rewriter::new(enforcer, &*argument)?;
    rewriter.visit(argument)
}

pub(crate) fn check_type(data_type: &DataType) -> Result<(), Denial> {
    match data_type {
        DataType::Custom(name, modifiers) => {
            let parts = names::parts(name)?;
            let type_name = match parts.as_slice() {
                [one] => one.as_str(),
                [schema, one] if schema == "pg_catalog" => one.as_str(),
                _ => "",
            };
            if modifiers.is_empty() && functions::custom_type_allowed(type_name) {
                Ok(())
            } else {
                Err(Denial::privilege(format!(
                    "type {} is not allowed for this account",
                    names::display(&parts)
                )))
            }
        }
        DataType::Array(sqlparser::ast::ArrayElemTypeDef::AngleBracket(inner))
        | DataType::Array(sqlparser::ast::ArrayElemTypeDef::SquareBracket(inner, _))
        | DataType::Array(sqlparser::ast::ArrayElemTypeDef::Parenthesis(inner)) => {
            check_type(inner)
        }
        _ => Ok(()),
    }
}

fn check_operator(op: &BinaryOperator) -> Result<(), Denial> {
    match op {
        BinaryOperator::Custom(_) | BinaryOperator::PGCustomBinaryOperator(_) => Err(
            Denial::privilege("custom operators are not allowed for this account"),
        ),
        _ => Ok(()),
    }
}

fn is_safe_comparison(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
    )
}

/// Splits a WHERE into its top-level AND operands (looking through parentheses).
fn split_and(expr: Expr, out: &mut Vec<Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and(*left, out);
            split_and(*right, out);
        }
        Expr::Nested(inner)
            if matches!(
                *inner,
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_and(*inner, out)
        }
        other => out.push(other),
    }
}

/// Like [`split_and`], borrowing; yields the operands in the same order.
fn split_and_ref<'x>(expr: &'x Expr, out: &mut Vec<&'x Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and_ref(left, out);
            split_and_ref(right, out);
        }
        Expr::Nested(inner)
            if matches!(
                **inner,
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_and_ref(inner, out)
        }
        other => out.push(other),
    }
}

/// Joins conjuncts with AND, each parenthesised so precedence cannot change.
fn join_and(conjuncts: Vec<Expr>) -> Option<Expr> {
    conjuncts
        .into_iter()
        .map(|c| match c {
            Expr::Nested(_) => c,
            other => Expr::Nested(Box::new(other)),
        })
        .reduce(|left, right| Expr::BinaryOp {
            left: Box::new(left),
            op: BinaryOperator::And,
            right: Box::new(right),
        })
}

fn strip(expr: &Expr) -> &Expr {
    match expr {
        Expr::Nested(inner) => strip(inner),
        other => other,
    }
}

/// `column <op> value` or `value <op> column` where value is one literal or parameter;
/// returns (column, op as if the column were on the left, value).
fn comparison(expr: &Expr) -> Option<(&Expr, BinaryOperator, &Expr)> {
    let Expr::BinaryOp { left, op, right } = strip(expr) else {
        return None;
    };
    let (left, right) = (strip(left), strip(right));
    let is_column = |e: &Expr| {
        matches!(e, Expr::Identifier(_))
            || matches!(e, Expr::CompoundIdentifier(parts) if parts.len() == 2)
    };
    if is_column(left) && is_value(right) {
        Some((left, op.clone(), right))
    } else if is_value(left) && is_column(right) {
        Some((right, op.clone(), left))
    } else {
        None
    }
}

/// One literal string or number, or one `$n` parameter.
fn is_value(expr: &Expr) -> bool {
    match expr {
        Expr::Value(ValueWithSpan { value, .. }) => match value {
            Value::Number(..)
            | Value::SingleQuotedString(_)
            | Value::EscapedStringLiteral(_)
            | Value::UnicodeStringLiteral(_)
            | Value::DollarQuotedString(_)
            | Value::NationalStringLiteral(_) => true,
            Value::Placeholder(p) => {
                p.len() > 1 && p.starts_with('$') && p[1..].bytes().all(|b| b.is_ascii_digit())
            }
            _ => false,
        },
        _ => false,
    }
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

/// The masking subquery of `table` for an account, before any statement needs it:
/// masked projection, row filter, fence. Built once per [`Enforcer`].
pub(crate) fn build_fence(
    table: &QualifiedName,
    class: &TableClass,
    rules: &TableRules,
    masks: &dyn MaskRenderer,
) -> Result<Box<Query>, Denial> {
    let qualifier = quote_ident(&table.name);
    let mut projection = Vec::new();
    for (column, column_class) in &class.columns {
        let reference = format!("{qualifier}.{}", quote_ident(column));
        match rules.columns.get(column) {
            Some(ColumnRule::Allow) => projection.push(reference),
            Some(ColumnRule::Mask(spec)) => {
                let ty = parse_pg_type(&column_class.pg_type).unwrap_or_else(|| PgType {
                    family: TypeFamily::Any,
                    canonical: column_class.pg_type.clone(),
                    length: None,
                    blank_padded: false,
                    precision: None,
                    scale: None,
                });
                let expr = masks.render(spec, &reference, &ty).map_err(|_| {
                    Denial::unsupported(format!("the mask of column {column} of table {table}"))
                })?;
                projection.push(format!("({expr}) AS {}", quote_ident(column)));
            }
            Some(ColumnRule::Deny) | None => {}
        }
    }
    if projection.is_empty() {
        return Err(Denial::privilege(format!(
            "no column of table {table} is available to this account"
        )));
    }
    let mut sql = format!(
        "SELECT {} FROM {}.{}",
        projection.join(", "),
        quote_ident(&table.schema),
        qualifier
    );
    if let Some(filter) = &rules.row_filter {
        sql.push_str(" WHERE ");
        sql.push_str(filter);
    }
    sql.push_str(" OFFSET 0");
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut parser| parser.parse_query())
        .map_err(|_| Denial::unsupported(format!("the masking subquery of table {table}")))
}
