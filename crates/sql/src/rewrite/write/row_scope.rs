//! Rows that must stay in the account's scope: which columns a write may set, what
//! an UPDATE may set a filter column to, what every inserted row must give, and the
//! row filter as UPDATE and DELETE apply it.

use super::*;

/// A column the account may write: one it sees as stored.
pub(super) fn writable(
    rewriter: &Rewriter<'_>,
    table: &QualifiedName,
    column: &str,
) -> Result<(), Denial> {
    if !rewriter.enforcer.classification()[table]
        .columns
        .contains_key(column)
    {
        return Err(denied_column(column, table));
    }
    match rewriter.rules(table).columns.get(column) {
        Some(ColumnRule::Allow) => Ok(()),
        Some(ColumnRule::Mask(_)) => Err(Denial::privilege(format!(
            "column \"{column}\" of table \"{table}\" is masked for this account and may not \
             be written"
        ))),
        Some(ColumnRule::Deny) | None => Err(denied_column(column, table)),
    }
}

/// SET targets: writable columns, and filter columns only to the filter's own value.
pub(super) fn check_assignment(
    rewriter: &Rewriter<'_>,
    table: &QualifiedName,
    facts: &FilterFacts,
    assignment: &Assignment,
) -> Result<(), Denial> {
    let targets: Vec<&ObjectName> = match &assignment.target {
        AssignmentTarget::ColumnName(name) => vec![name],
        AssignmentTarget::Tuple(names) => names.iter().collect(),
    };
    for name in &targets {
        let parts = names::parts(name)?;
        let [column] = parts.as_slice() else {
            return Err(Denial::unsupported("assigning to a field of a column"));
        };
        writable(rewriter, table, column)?;
        if facts.columns.contains(column) {
            let required = facts
                .equalities
                .as_ref()
                .and_then(|equalities| equalities.iter().find(|(c, _)| c == column));
            let keeps_scope = targets.len() == 1
                && required.is_some_and(|(_, value)| is_literal(&assignment.value, value));
            if !keeps_scope {
                return Err(Denial::privilege(format!(
                    "column \"{column}\" of table \"{table}\" is read by this account's row \
                     filter: an UPDATE may set it only to the literal value the filter requires"
                )));
            }
        }
    }
    Ok(())
}

/// Each inserted row must give every column of a `column = literal` filter as exactly
/// that literal, and every column a path of the filter starts from as a literal or
/// parameter that PostgreSQL checks against the parent's scope as the row is
/// inserted; rows from anything but VALUES or one plain SELECT cannot be checked.
pub(super) fn check_inserted_rows(
    rewriter: &Rewriter<'_>,
    table: &QualifiedName,
    facts: &FilterFacts,
    columns: &[String],
    source: &mut Query,
) -> Result<(), Denial> {
    if facts.filter.is_none() {
        return Ok(());
    }
    let Some(equalities) = &facts.equalities else {
        return Err(Denial::privilege(format!(
            "the row filter of table \"{table}\" cannot be checked on inserted rows, so this \
             account may not insert into it"
        )));
    };
    let mut required = Vec::with_capacity(equalities.len());
    for (column, value) in equalities {
        let Some(position) = columns.iter().position(|c| c == column) else {
            return Err(Denial::privilege(format!(
                "rows inserted into table \"{table}\" must give column \"{column}\", which this \
                 account's row filter reads"
            )));
        };
        required.push((position, column, value));
    }
    let mut through = Vec::with_capacity(facts.paths.len());
    for path in &facts.paths {
        let Some(position) = columns.iter().position(|c| *c == path.column) else {
            return Err(Denial::privilege(format!(
                "rows inserted into table \"{table}\" must give column \"{}\", which this \
                 account's row filter follows to {}",
                path.column,
                path.hops[path.hops.len() - 1].table
            )));
        };
        through.push((position, path));
    }
    let mut rows: Vec<Vec<&mut Expr>> = match source.body.as_mut() {
        SetExpr::Values(values) => values
            .rows
            .iter_mut()
            .map(|row| row.iter_mut().collect())
            .collect(),
        SetExpr::Select(select) => {
            let mut row = Vec::with_capacity(select.projection.len());
            for item in &mut select.projection {
                match item {
                    SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                        row.push(expr)
                    }
                    _ => return Err(unchecked_rows(table)),
                }
            }
            vec![row]
        }
        _ => return Err(unchecked_rows(table)),
    };
    for row in &mut rows {
        for (position, column, value) in &required {
            if !row
                .get(*position)
                .is_some_and(|expr| is_literal(expr, value))
            {
                return Err(Denial::privilege(format!(
                    "every row inserted into table \"{table}\" must give column \"{column}\" as \
                     the literal value this account's row filter requires (a parameter or an \
                     expression cannot be checked)"
                )));
            }
        }
        for (position, path) in &through {
            let expr = row
                .get_mut(*position)
                .ok_or_else(|| unchecked_rows(table))?;
            **expr = in_scope(rewriter, table, path, expr)?;
        }
    }
    Ok(())
}

/// `value` for a column a path of the row filter starts from, checked by PostgreSQL
/// against the keys of the parent's in-scope rows. Only a literal or parameter (or a
/// cast of one) is accepted: the check evaluates it twice.
pub(super) fn in_scope(
    rewriter: &Rewriter<'_>,
    table: &QualifiedName,
    path: &ScopePath,
    value: &Expr,
) -> Result<Expr, Denial> {
    if !is_plain_value(value) {
        return Err(Denial::privilege(format!(
            "column \"{}\" of table \"{table}\" leads this account's row filter to {}: a \
             write may set it only to a literal or a parameter, checked against the rows \
             of it this account may see",
            path.column,
            path.hops[path.hops.len() - 1].table
        )));
    }
    super::guard::in_scope(
        value.clone(),
        path.scope.clone(),
        &table.to_string(),
        &rewriter.enforcer.guard_token,
    )
}

fn is_plain_value(expr: &Expr) -> bool {
    match strip(expr) {
        Expr::Value(_) => true,
        Expr::Cast { expr, .. } => is_plain_value(expr),
        _ => false,
    }
}

pub(super) fn unchecked_rows(table: &QualifiedName) -> Denial {
    Denial::privilege(format!(
        "rows inserted into table \"{table}\" must come from VALUES or one plain SELECT list, so \
         that they can be checked against this account's row filter"
    ))
}

/// What the rewrite needs to know about a table's row filter.
pub(super) struct FilterFacts {
    /// The filter; `None` without one.
    pub(super) filter: Option<RowFilter>,
    /// The table's columns its own conditions read.
    pub(super) columns: BTreeSet<String>,
    /// `Some` when the own conditions are a conjunction of `column = literal`.
    pub(super) equalities: Option<Vec<(String, Value)>>,
    /// Its paths through foreign keys.
    pub(super) paths: Vec<ScopePath>,
}

impl FilterFacts {
    pub(super) fn of(
        rewriter: &Rewriter<'_>,
        table: &QualifiedName,
    ) -> Result<FilterFacts, Denial> {
        // A table without a masking subquery (no column to show) is not available.
        if let Some(Err(denial)) = rewriter.enforcer.fences.get(table) {
            return Err(denial.clone());
        }
        let Some(filter) = rewriter.rules(table).row_filter.clone() else {
            return Ok(FilterFacts {
                filter: None,
                columns: BTreeSet::new(),
                equalities: Some(Vec::new()),
                paths: Vec::new(),
            });
        };
        let class = &rewriter.enforcer.classification()[table];
        let mut columns = BTreeSet::new();
        let mut conjuncts = Vec::new();
        for own in &filter.own {
            let _ = visit_expressions(own, |e| {
                if let Some(column) = column_name(e).filter(|c| class.columns.contains_key(c)) {
                    columns.insert(column);
                }
                ControlFlow::<()>::Continue(())
            });
            split_and_ref(own, &mut conjuncts);
        }
        let equalities = conjuncts
            .iter()
            .map(|conjunct| equality(conjunct, class))
            .collect();
        Ok(FilterFacts {
            paths: filter.paths.clone(),
            filter: Some(filter),
            columns,
            equalities,
        })
    }

    /// The path that starts from `column`, if one does.
    pub(super) fn path_from(&self, column: &str) -> Option<&ScopePath> {
        self.paths.iter().find(|p| p.column == column)
    }
}

pub(super) fn column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(fold(ident)),
        Expr::CompoundIdentifier(parts) => parts.last().map(fold),
        _ => None,
    }
}

/// `column = literal` (either way round), NULL and parameters excluded.
pub(super) fn equality(expr: &Expr, class: &TableClass) -> Option<(String, Value)> {
    let Expr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    } = strip(expr)
    else {
        return None;
    };
    let (left, right) = (strip(left), strip(right));
    let (column, value) = match (column_name(left), column_name(right)) {
        (Some(column), None) => (column, right),
        (None, Some(column)) => (column, left),
        _ => return None,
    };
    if !class.columns.contains_key(&column) {
        return None;
    }
    match value {
        Expr::Value(value) if !matches!(value.value, Value::Null | Value::Placeholder(_)) => {
            Some((column, value.value.clone()))
        }
        _ => None,
    }
}

/// Exactly this literal (parentheses aside): the same text of the same kind, so it
/// becomes the same value of the column's type.
pub(super) fn is_literal(expr: &Expr, value: &Value) -> bool {
    matches!(strip(expr), Expr::Value(v) if v.value == *value)
}

/// `DEFAULT` as a whole SET value (sqlparser reads it as an identifier).
pub(super) fn is_default(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(ident) if ident.quote_style.is_none()
        && ident.value.eq_ignore_ascii_case("default"))
}

/// `CASE WHEN <filter> THEN <condition> ELSE false END`: PostgreSQL evaluates the
/// condition only on rows inside the filter, whatever order it picks for the quals.
pub(super) fn guard(filter: Expr, condition: Expr) -> Expr {
    Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: None,
        conditions: vec![CaseWhen {
            condition: filter,
            result: condition,
        }],
        else_result: Some(Box::new(Expr::Value(Value::Boolean(false).into()))),
    }
}
