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
/// that literal; rows from anything but VALUES or one plain SELECT cannot be checked.
pub(super) fn check_inserted_rows(
    table: &QualifiedName,
    facts: &FilterFacts,
    columns: &[String],
    source: &Query,
) -> Result<(), Denial> {
    if facts.expr.is_none() {
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
    let rows: Vec<Vec<&Expr>> = match source.body.as_ref() {
        SetExpr::Values(values) => values.rows.iter().map(|row| row.iter().collect()).collect(),
        SetExpr::Select(select) => {
            let mut row = Vec::with_capacity(select.projection.len());
            for item in &select.projection {
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
    for row in rows {
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
    }
    Ok(())
}

pub(super) fn unchecked_rows(table: &QualifiedName) -> Denial {
    Denial::privilege(format!(
        "rows inserted into table \"{table}\" must come from VALUES or one plain SELECT list, so \
         that they can be checked against this account's row filter"
    ))
}

/// What the rewrite needs to know about a table's row filter.
pub(super) struct FilterFacts {
    /// The filter as the masking subquery applies it; `None` without one.
    pub(super) expr: Option<Expr>,
    /// The table's columns it reads.
    pub(super) columns: BTreeSet<String>,
    /// `Some` when the filter is a conjunction of `column = literal`.
    pub(super) equalities: Option<Vec<(String, Value)>>,
}

impl FilterFacts {
    pub(super) fn of(
        rewriter: &Rewriter<'_>,
        table: &QualifiedName,
    ) -> Result<FilterFacts, Denial> {
        let fence = match rewriter.enforcer.fences.get(table) {
            Some(Ok(fence)) => fence,
            Some(Err(denial)) => return Err(denial.clone()),
            None => return Err(internal()),
        };
        let SetExpr::Select(select) = fence.body.as_ref() else {
            return Err(internal());
        };
        let Some(expr) = select.selection.clone() else {
            return Ok(FilterFacts {
                expr: None,
                columns: BTreeSet::new(),
                equalities: Some(Vec::new()),
            });
        };
        let class = &rewriter.enforcer.classification()[table];
        let mut columns = BTreeSet::new();
        let _ = visit_expressions(&expr, |e| {
            if let Some(column) = column_name(e).filter(|c| class.columns.contains_key(c)) {
                columns.insert(column);
            }
            ControlFlow::<()>::Continue(())
        });
        let mut conjuncts = Vec::new();
        split_and_ref(&expr, &mut conjuncts);
        let equalities = conjuncts
            .iter()
            .map(|conjunct| equality(conjunct, class))
            .collect();
        Ok(FilterFacts {
            expr: Some(expr),
            columns,
            equalities,
        })
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

/// The filter with every column qualified by the target's name, so it means the target
/// whatever the alias and whatever else UPDATE … FROM brings in.
pub(super) fn qualify_filter(filter: &Expr, class: &TableClass, reference: &str) -> Expr {
    let mut filter = filter.clone();
    let _ = visit_expressions_mut(&mut filter, |expr| {
        if matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
            if let Some(column) = column_name(expr).filter(|c| class.columns.contains_key(c)) {
                *expr = Expr::CompoundIdentifier(vec![quoted(reference), quoted(&column)]);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    filter
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
