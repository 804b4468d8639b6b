//! Query blocks: WITH, set operations, VALUES, LIMIT/OFFSET/FETCH, and each SELECT's
//! FROM, select list, WHERE, GROUP BY, HAVING, windows and ORDER BY in the order and
//! with the visibility PostgreSQL gives them.

use super::*;

impl Rewriter<'_> {
    pub(super) fn query(&mut self, query: &mut Query) -> Result<(), Denial> {
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

    pub(super) fn query_inner(&mut self, query: &mut Query) -> Result<(), Denial> {
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
            if with.recursive && self.read_cap.is_some() && !self.tables.is_empty() {
                // Each step of a recursive CTE can append a row's values to the last
                // (`acc || p.name`), packing a whole table into one row without any
                // aggregate to count. Checked after the CTEs, so what they would be
                // refused for anyway is said first.
                return Err(Denial::unsupported(
                    "WITH RECURSIVE in a statement that reads a policy table under a row \
                     cap (its steps can pack rows into one value)",
                ));
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
                    self.check_offset(&mut offset.value)?;
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

    pub(super) fn set_expr(
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
                // VALUES rows are a block's output like a select list: what they pack
                // (one person per scalar subquery) reaches the result.
                for row in &mut values.rows {
                    for expr in row {
                        self.visit_output(expr)?;
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
    pub(super) fn order_by_outputs(
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

    pub(super) fn select(
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
    pub(super) fn plan_select(
        &mut self,
        select: &mut Select,
        order_by: Option<&mut sqlparser::ast::OrderBy>,
        items: &[FromItem],
        has_outer_join: bool,
        outermost: bool,
    ) -> Result<(), Denial> {
        let joins = pins::inner_join_conditions(&select.from);
        let mut plans = self.plan_fences(items, &mut select.selection, &joins, has_outer_join)?;
        if outermost && self.may_open_fence(select, items) {
            plans[0].open = true;
        }
        self.select_inner(select, order_by, items, &mut plans)
    }

    pub(super) fn select_inner(
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
                SelectItem::UnnamedExpr(expr) => self.visit_output(expr)?,
                SelectItem::ExprWithAlias { expr, .. } => self.visit_output(expr)?,
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
}
