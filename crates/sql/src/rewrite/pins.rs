//! Lookup-only tables pinned through their parent.
//!
//! A lookup-only table must be pinned by equality of one of its keys with a value.
//! A table whose row filter goes through a foreign key may instead be tied to its
//! parent, when the parent is pinned in the same block: `FROM participant p JOIN
//! health_card c ON c.participant_id = p.id WHERE p.citizen_id = '…'` finds the cards
//! of one person. The parent's pin (its key, or one of its lookup keys, equal to a
//! literal or parameter) then goes inside the child's masking subquery as
//!
//! ```text
//! "health_card"."participant_id" IN (SELECT "participant"."id" FROM "public"."participant"
//!                                    WHERE "participant"."citizen_id" = '…')
//! ```
//!
//! evaluated on the stored parent key, so the child is read by its index like a pinned
//! lookup, and can never be browsed.

use sqlparser::ast::JoinConstraint;

use super::*;

/// The ON conditions of the inner joins of a block's FROM (copied), split at AND.
pub(super) fn inner_join_conditions(from: &[TableWithJoins]) -> Vec<Expr> {
    let mut conditions = Vec::new();
    let mut pending: Vec<&TableWithJoins> = from.iter().collect();
    while let Some(twj) = pending.pop() {
        if let TableFactor::NestedJoin {
            table_with_joins, ..
        } = &twj.relation
        {
            pending.push(table_with_joins);
        }
        for join in &twj.joins {
            if let TableFactor::NestedJoin {
                table_with_joins, ..
            } = &join.relation
            {
                pending.push(table_with_joins);
            }
            if let JoinOperator::Join(JoinConstraint::On(on))
            | JoinOperator::Inner(JoinConstraint::On(on)) = &join.join_operator
            {
                let mut parts = Vec::new();
                split_and_ref(on, &mut parts);
                conditions.extend(parts.into_iter().cloned());
            }
        }
    }
    conditions
}

impl Rewriter<'_> {
    /// The pin of lookup-only item `index` through a pinned parent, if `ties` holds an
    /// equality of its path's first column with the parent's key (see the module docs).
    pub(super) fn parent_pin(
        &self,
        index: usize,
        items: &[FromItem],
        ties: &[&Expr],
        plans: &[FencePlan],
    ) -> Result<Option<Expr>, Denial> {
        let Some(table) = items[index].protected.as_ref() else {
            return Ok(None);
        };
        let Some(filter) = &self.rules(table).row_filter else {
            return Ok(None);
        };
        for path in &filter.paths {
            let hop = &path.hops[0];
            for tie in ties {
                let Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                } = strip(tie)
                else {
                    continue;
                };
                let (left, right) = (strip(left), strip(right));
                for (child, parent) in [(left, right), (right, left)] {
                    if self.column_of(child, index).as_deref() != Some(hop.column.as_str()) {
                        continue;
                    }
                    let pinned = (0..items.len()).find_map(|j| {
                        let item = &items[j];
                        let reads_parent = !item.raw && item.protected.as_ref() == Some(&hop.table);
                        (reads_parent
                            && self.column_of(parent, j).as_deref() == Some(hop.key.as_str()))
                        .then(|| self.parent_equality(&hop.table, &hop.key, &plans[j]))
                        .flatten()
                    });
                    if let Some((column, value)) = pinned {
                        // The child is read by the parent's key value: detection
                        // fingerprints that value as a lookup of the parent.
                        self.note_value(&hop.table, column.clone(), value);
                        return self.pin_through(&table.name, hop, &column, value).map(Some);
                    }
                }
            }
        }
        Ok(None)
    }

    /// The parent item's equality on its key or one of its lookup keys.
    fn parent_equality<'p>(
        &self,
        parent: &QualifiedName,
        key: &str,
        plan: &'p FencePlan,
    ) -> Option<(String, &'p Expr)> {
        let lookup_keys = &self.rules(parent).lookup_keys;
        plan.equal
            .iter()
            .find(|(column, _)| column == key || lookup_keys.contains(column))
            .map(|(column, value)| (column.clone(), value))
    }

    /// `"child"."fk" IN (SELECT "p"."key" FROM "s"."p" WHERE "p"."column" = value)`.
    fn pin_through(
        &self,
        child: &str,
        hop: &maskgate_policy::PathHop,
        column: &str,
        value: &Expr,
    ) -> Result<Expr, Denial> {
        let sql = format!(
            "SELECT {p}.{key} FROM {schema}.{p}",
            p = quote_ident(&hop.table.name),
            key = quote_ident(&hop.key),
            schema = quote_ident(&hop.table.schema),
        );
        let mut query = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(&sql)
            .and_then(|mut parser| parser.parse_query())
            .map_err(|_| internal())?;
        let SetExpr::Select(select) = query.body.as_mut() else {
            return Err(internal());
        };
        select.selection = Some(Expr::BinaryOp {
            left: Box::new(Expr::CompoundIdentifier(vec![
                quoted(&hop.table.name),
                quoted(column),
            ])),
            op: BinaryOperator::Eq,
            right: Box::new(value.clone()),
        });
        Ok(Expr::InSubquery {
            expr: Box::new(Expr::CompoundIdentifier(vec![
                quoted(child),
                quoted(&hop.column),
            ])),
            subquery: query,
            negated: false,
        })
    }
}
