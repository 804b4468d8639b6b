//! Masking subqueries: the prebuilt fence per table, and the pins and provably safe
//! predicates that go inside it.

use super::*;
use crate::facts::RawValue;

impl Rewriter<'_> {
    /// Remembers the value a lookup pin (`key = value`) compares `table`'s key with.
    pub(super) fn note_pin(&self, table: &QualifiedName, column: String, pin: &Expr) {
        if let Some((_, _, value)) = comparison(pin) {
            self.note_value(table, column, value);
        }
    }

    /// Remembers `value` as the value `table`'s `column` is pinned to (once).
    pub(super) fn note_value(&self, table: &QualifiedName, column: String, value: &Expr) {
        let Expr::Value(ValueWithSpan { value, span }) = value else {
            return;
        };
        let value = match value {
            Value::Placeholder(p) => match p[1..].parse() {
                Ok(n) => RawValue::Parameter(n),
                Err(_) => return,
            },
            _ => RawValue::Constant(*span),
        };
        let mut pins = self.pins.borrow_mut();
        if !pins
            .iter()
            .any(|p| &p.table == table && p.column == column && p.value == value)
        {
            pins.push(RawPin {
                table: table.clone(),
                column,
                value,
            });
        }
    }

    /// Finds, per protected FROM item, the lookup pin (moved out of WHERE) and the safe
    /// predicates (copied) that go inside its masking subquery. `joins` are the ON
    /// conditions of the block's inner joins, where a lookup-only table may be tied to
    /// a pinned parent (see [`super::pins`]).
    pub(super) fn plan_fences(
        &self,
        items: &[FromItem],
        selection: &mut Option<Expr>,
        joins: &[Expr],
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
        let mut unpinned = Vec::new();
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
                let pin = conjuncts.iter().enumerate().find_map(|(i, c)| {
                    let (column, op, _) = comparison(c).filter(|_| !pinned.contains(&i))?;
                    let name = self.column_of(column, index)?;
                    (op == BinaryOperator::Eq && rules.lookup_keys.contains(&name))
                        .then_some((i, name))
                });
                match pin {
                    Some((pin, key)) => {
                        pinned.push(pin);
                        self.note_pin(table, key, conjuncts[pin]);
                        self.plan_inside(&mut plans[index], conjuncts[pin], index, &table.name)?;
                    }
                    None => unpinned.push(index),
                }
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
                        self.plan_inside(&mut plans[index], conjunct, index, &table.name)?;
                    }
                }
            }
        }
        let mut ties: Vec<&Expr> = conjuncts.clone();
        ties.extend(joins.iter());
        self.pin_through_parents(&unpinned, items, &ties, &mut plans)?;
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

    /// Lookup-only items not pinned by their own keys: pinned through a pinned parent,
    /// or refused.
    fn pin_through_parents(
        &self,
        unpinned: &[usize],
        items: &[FromItem],
        ties: &[&Expr],
        plans: &mut [FencePlan],
    ) -> Result<(), Denial> {
        for &index in unpinned {
            let Some(pin) = self.parent_pin(index, items, ties, plans)? else {
                let table = items[index].protected.as_ref().ok_or_else(internal)?;
                return Err(lookup_only(table, self.rules(table)));
            };
            plans[index].inside.push(pin);
        }
        Ok(())
    }

    /// Puts `conjunct` (a comparison of a column of item `index`) inside its masking
    /// subquery, remembering an equality for the items that may be pinned through it.
    fn plan_inside(
        &self,
        plan: &mut FencePlan,
        conjunct: &Expr,
        index: usize,
        qualifier: &str,
    ) -> Result<(), Denial> {
        if let Some((column, BinaryOperator::Eq, value)) = comparison(conjunct) {
            if let Some(name) = self.column_of(column, index) {
                plan.equal.push((name, value.clone()));
            }
        }
        plan.inside.push(self.raw_predicate(conjunct, qualifier)?);
        Ok(())
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
    pub(super) fn may_open_fence(&self, select: &Select, items: &[FromItem]) -> bool {
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
    pub(super) fn raw_predicate(&self, conjunct: &Expr, qualifier: &str) -> Result<Expr, Denial> {
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
    pub(super) fn fence(
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
}

pub(super) fn is_safe_comparison(op: &BinaryOperator) -> bool {
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
pub(super) fn split_and(expr: Expr, out: &mut Vec<Expr>) {
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
pub(super) fn split_and_ref<'x>(expr: &'x Expr, out: &mut Vec<&'x Expr>) {
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
pub(super) fn join_and(conjuncts: Vec<Expr>) -> Option<Expr> {
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

pub(super) fn strip(expr: &Expr) -> &Expr {
    match expr {
        Expr::Nested(inner) => strip(inner),
        other => other,
    }
}

/// `column <op> value` or `value <op> column` where value is one literal or parameter;
/// returns (column, op as if the column were on the left, value).
pub(super) fn comparison(expr: &Expr) -> Option<(&Expr, BinaryOperator, &Expr)> {
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
pub(super) fn is_value(expr: &Expr) -> bool {
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

/// The masking subquery of `table` for an account, before any statement needs it:
/// masked projection, row filter, fence. Built once per [`Enforcer`]. `order` is the
/// table's column order in the database (attnum), so `*` expands as PostgreSQL would;
/// columns it does not name follow in the classification's order.
pub(crate) fn build_fence(
    table: &QualifiedName,
    class: &TableClass,
    rules: &TableRules,
    masks: &dyn MaskRenderer,
    order: &[String],
) -> Result<Box<Query>, Denial> {
    let qualifier = quote_ident(&table.name);
    let mut projection = Vec::new();
    for (column, column_class) in in_column_order(class, order) {
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
    sql.push_str(" OFFSET 0");
    let mut query = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut parser| parser.parse_query())
        .map_err(|_| Denial::unsupported(format!("the masking subquery of table {table}")))?;
    // The filter is the validated policy's expression, never text parsed again.
    if let (Some(filter), SetExpr::Select(select)) = (&rules.row_filter, query.body.as_mut()) {
        select.selection = Some(filter.expr(&table.name));
    }
    Ok(query)
}

/// The classified columns of a table, those named in `order` first, in its order.
fn in_column_order<'c>(
    class: &'c TableClass,
    order: &'c [String],
) -> impl Iterator<Item = (&'c String, &'c maskgate_policy::ColumnClass)> {
    let ordered = order
        .iter()
        .filter_map(|column| class.columns.get_key_value(column));
    let rest = class.columns.iter().filter(|(c, _)| !order.contains(c));
    ordered.chain(rest)
}
