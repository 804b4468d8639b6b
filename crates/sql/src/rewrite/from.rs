//! FROM: resolving a block's items (what names they offer, see [`super::scope`]),
//! then walking them in PostgreSQL's order with the visibility each part has.

use super::*;

impl Rewriter<'_> {
    /// Resolves the block's FROM items without changing them, in the order
    /// [`Rewriter::walk_from`] will meet them.
    pub(super) fn scan_from(
        &self,
        from: &[TableWithJoins],
    ) -> Result<(Vec<FromItem>, bool), Denial> {
        let mut items = Vec::new();
        let mut outer = false;
        for twj in from {
            self.scan_twj(twj, &mut items, &mut outer)?;
        }
        Ok((items, outer))
    }

    pub(super) fn scan_twj(
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

    pub(super) fn scan_factor(
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
    pub(super) fn fence_columns(&self, table: &QualifiedName) -> Columns {
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

    pub(super) fn walk_from(
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
    pub(super) fn refuse(&mut self, range: std::ops::Range<usize>, refuse: bool) -> Vec<bool> {
        let Some(level) = self.scopes.current() else {
            return Vec::new();
        };
        let saved = level.refused[range.clone()].to_vec();
        if refuse {
            level.refused[range].fill(true);
        }
        saved
    }

    pub(super) fn restore_refused(&mut self, range: std::ops::Range<usize>, saved: Vec<bool>) {
        if let Some(level) = self.scopes.current() {
            if saved.len() == range.len() {
                level.refused[range].copy_from_slice(&saved);
            }
        }
    }

    /// What the contents of FROM item `index` (a subquery, function arguments) see of
    /// their block: the items before it if it is LATERAL, none after it.
    pub(super) fn entering(&mut self, index: usize, lateral: bool) {
        if let Some(level) = self.scopes.current() {
            level.before(index, lateral);
        }
    }

    /// The rest of a block (select list, WHERE, …) sees all of its FROM.
    pub(super) fn reveal(&mut self) {
        if let Some(level) = self.scopes.current() {
            level.reveal();
        }
    }

    pub(super) fn factor(
        &mut self,
        factor: &mut TableFactor,
        cursor: &mut Cursor<'_>,
    ) -> Result<(), Denial> {
        self.clock.tick()?;
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

    pub(super) fn table_function(&self, name: &ObjectName) -> Result<(), Denial> {
        let function = function_name(name)?;
        if functions::table_allowed(&function) {
            Ok(())
        } else {
            Err(Denial::privilege(format!(
                "function {function} is not allowed for this account"
            )))
        }
    }
}

/// The column names of an alias list (`AS t(a, b)`), folded.
pub(super) fn alias_columns(alias: Option<&TableAlias>) -> Vec<String> {
    alias.map_or_else(Vec::new, |alias| {
        alias.columns.iter().map(|c| fold(&c.name)).collect()
    })
}

/// `columns` with the first ones renamed by an alias list.
pub(super) fn rename(columns: &Columns, aliases: &[String]) -> Columns {
    if columns.open {
        return Columns::open(aliases.to_vec());
    }
    let mut names = aliases.to_vec();
    names.extend(columns.names.iter().skip(aliases.len()).cloned());
    Columns::known(names)
}
