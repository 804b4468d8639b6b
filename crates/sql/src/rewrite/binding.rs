//! Column references checked against the item PostgreSQL binds them to ([`super::scope`]):
//! the stored target of a write is read only through columns the account sees as
//! stored, and a name that may reach it is checked as if it did (fail closed).

use maskgate_policy::ColumnRule;
use sqlparser::ast::{Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName};

use super::scope::{Has, ItemRef};
use super::{denied_column, internal, unknown_in_write, whole_row_of_target, FromItem, Rewriter};
use crate::denial::Denial;
use crate::names::{self, fold};

impl Rewriter<'_> {
    /// The column of FROM item `index` of the innermost block that `expr` names, if
    /// PostgreSQL certainly binds it there (the block's FROM fully visible, as its
    /// WHERE sees it).
    pub(super) fn column_of(&self, expr: &Expr, index: usize) -> Option<String> {
        let here = ItemRef {
            level: self.scopes.levels.len().checked_sub(1)?,
            item: index,
        };
        match expr {
            Expr::Identifier(ident) => {
                let column = fold(ident);
                (self.scopes.column(&column).certain() == Some(here)).then_some(column)
            }
            Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                let column = fold(&parts[1]);
                let named = self.scopes.relation(&fold(&parts[0]), None);
                (named == [here] && self.scopes.item(here).columns.has(&column) == Has::Yes)
                    .then_some(column)
            }
            _ => None,
        }
    }

    pub(super) fn check_unqualified(&self, column: &str) -> Result<(), Denial> {
        if let Some(table) = self.denied.get(column) {
            return Err(denied_column(column, table));
        }
        if self.target.is_none() {
            return Ok(());
        }
        let lookup = self.scopes.column(column);
        for at in lookup.possible() {
            if self.scopes.item(*at).raw {
                self.check_target_column(column)?;
                // RETURNING replaces the bare name by the mask, which is right only
                // where the name certainly means the target.
                if self.at_returning_top()
                    && self.target_masks(column)
                    && lookup.certain() != Some(*at)
                {
                    return Err(Denial::privilege(format!(
                        "column \"{column}\" in RETURNING may not mean the table this \
                         statement writes; qualify it with its table"
                    )));
                }
            }
        }
        if lookup.found.is_empty() && lookup.whole_row.iter().any(|at| self.scopes.item(*at).raw) {
            return Err(whole_row_of_target(column));
        }
        Ok(())
    }

    /// A dotted column name, read as PostgreSQL reads it: `rel.col` (or `col.field`
    /// without such a relation), `schema.rel.col` (or `rel.col.field`).
    pub(super) fn check_compound(&self, parts: &[String]) -> Result<(), Denial> {
        match parts {
            [] => Ok(()),
            [column] => self.check_unqualified(column),
            [qualifier, column] => self.check_qualified(qualifier, column),
            [schema, relation, column] => {
                let named = self.scopes.relation(relation, Some(schema));
                if named.is_empty() {
                    return self.check_qualified(schema, relation);
                }
                named
                    .iter()
                    .try_for_each(|at| self.check_item_column(*at, column))
            }
            [.., qualifier, column] if self.target.is_none() => {
                self.check_qualified(qualifier, column)
            }
            _ => Err(Denial::unsupported(
                "a column name of more than three parts in a write",
            )),
        }
    }

    /// `schema.table.column` naming an unaliased FROM item becomes `table.column`:
    /// the item may now be a masking or filtering subquery under the table's name,
    /// which a schema-qualified reference would not find (PostgreSQL refuses two
    /// unaliased items of one name, so the shorter reference means the same).
    pub(super) fn unqualify_schema(&self, expr: &mut Expr) {
        let Expr::CompoundIdentifier(parts) = expr else {
            return;
        };
        let [schema, relation, _] = parts.as_slice() else {
            return;
        };
        if !self
            .scopes
            .relation(&fold(relation), Some(&fold(schema)))
            .is_empty()
        {
            parts.remove(0);
        }
    }

    fn check_qualified(&self, qualifier: &str, column: &str) -> Result<(), Denial> {
        let named = self.scopes.relation(qualifier, None);
        if named.is_empty() {
            if self.target.is_some() {
                // Inside a write an unknown qualifier may still reach the stored target:
                // `old`/`new` in RETURNING (PostgreSQL 18), or a composite column.
                return Err(Denial::privilege(format!(
                    "\"{qualifier}\" names no table of this statement; a write may only \
                     qualify columns with its tables"
                )));
            }
            // PostgreSQL then reads `qualifier` as a (composite) column.
            self.check_unqualified(qualifier)?;
            return self.check_unqualified(column);
        }
        named
            .iter()
            .try_for_each(|at| self.check_item_column(*at, column))
    }

    /// `column` of one FROM item, named with its qualifier.
    fn check_item_column(&self, at: ItemRef, column: &str) -> Result<(), Denial> {
        let item = self.scopes.item(at);
        match &item.protected {
            Some(_) if item.raw => self.check_target_column(column),
            Some(table)
                if matches!(
                    self.rules(table).columns.get(column),
                    None | Some(ColumnRule::Deny)
                ) && self.enforcer.classification()[table]
                    .columns
                    .contains_key(column) =>
            {
                Err(denied_column(column, table))
            }
            _ => Ok(()),
        }
    }

    /// Whether the innermost block being checked is the write's own (not a subquery):
    /// the only place RETURNING may name masked columns of the target.
    fn at_returning_top(&self) -> bool {
        self.target
            .as_ref()
            .is_some_and(|t| t.returning && t.level + 1 == self.scopes.levels.len())
    }

    /// Whether the write's target has `column` masked for this account.
    fn target_masks(&self, column: &str) -> bool {
        self.target.as_ref().is_some_and(|target| {
            matches!(
                self.rules(&target.table).columns.get(column),
                Some(ColumnRule::Mask(_))
            )
        })
    }

    /// Whether `item` is a masking subquery that projects `column`.
    pub(super) fn projects(&self, item: &FromItem, column: &str) -> bool {
        !item.raw
            && item.protected.as_ref().is_some_and(|table| {
                matches!(
                    self.rules(table).columns.get(column),
                    Some(ColumnRule::Allow | ColumnRule::Mask(_))
                )
            })
    }

    /// A column of the write's target, named (qualified or not) where it may reach it.
    /// Names the policy does not classify are refused: the stored table may have
    /// columns the policy does not know, and a name may be a whole-row reference.
    fn check_target_column(&self, column: &str) -> Result<(), Denial> {
        let Some(target) = &self.target else {
            return Err(internal());
        };
        let table = &target.table;
        if !self.enforcer.classification()[table]
            .columns
            .contains_key(column)
        {
            if column == target.name {
                return Err(whole_row_of_target(column));
            }
            return Err(unknown_in_write(column, table));
        }
        match self.rules(table).columns.get(column) {
            Some(ColumnRule::Allow) => Ok(()),
            Some(ColumnRule::Mask(_)) if self.at_returning_top() => Ok(()),
            Some(ColumnRule::Mask(_)) => Err(Denial::privilege(format!(
                "column \"{column}\" of table \"{table}\" is masked for this account: a \
                 write may not read it (only RETURNING shows it, masked)"
            ))),
            Some(ColumnRule::Deny) | None => Err(denied_column(column, table)),
        }
    }

    /// `name.*` as a select item or function argument: a whole row, which for the
    /// target of a write would be the stored row.
    pub(super) fn check_whole_row(&self, name: &ObjectName) -> Result<(), Denial> {
        if self.target.is_none() {
            return Ok(());
        }
        let parts = names::parts(name)?;
        let named = match parts.as_slice() {
            [relation] => self.scopes.relation(relation, None),
            [schema, relation] => self.scopes.relation(relation, Some(schema)),
            _ => return Err(Denial::unsupported("this whole-row reference in a write")),
        };
        match named.iter().find(|at| self.scopes.item(**at).raw) {
            Some(at) => Err(whole_row_of_target(&self.scopes.item(*at).name)),
            None => Ok(()),
        }
    }

    pub(super) fn check_function_wildcards(&self, function: &Function) -> Result<(), Denial> {
        if let FunctionArguments::List(list) = &function.args {
            for arg in &list.args {
                let (FunctionArg::Unnamed(arg)
                | FunctionArg::Named { arg, .. }
                | FunctionArg::ExprNamed { arg, .. }) = arg;
                if let FunctionArgExpr::QualifiedWildcard(name) = arg {
                    self.check_whole_row(name)?;
                }
            }
        }
        Ok(())
    }
}
