//! Which FROM item a column name binds to, by PostgreSQL's rules (its parser's
//! namespace: `p_rel_visible`, `p_cols_visible`, `p_lateral_only`, `p_lateral_ok`).
//!
//! - Names are looked up from the innermost query block outwards; the first block where
//!   some visible item has the column wins, and two items there make it ambiguous
//!   (PostgreSQL refuses, or merges a `USING` column). Only then a bare name may be a
//!   whole-row reference to an item of that name.
//! - While a FROM item is analyzed, the items before it in its block are visible only
//!   to LATERAL items (a function in FROM is always LATERAL); the items after it never.
//!   A JOIN's ON clause sees that join's own inputs, nothing else of its block.
//! - The target of UPDATE or DELETE is visible to the rest of the statement, and to its
//!   FROM/USING items only as a reference PostgreSQL refuses.
//!
//! An item whose columns maskgate cannot list (a catalog relation, a function, a derived
//! table with `*` or unnamed expressions, the stored table of a write) may have any
//! name: a lookup reports it as a possible binding, so callers can fail closed.

use sqlparser::ast::{Expr, Query, Select, SelectItem, SetExpr};

use super::FromItem;
use crate::names::fold;

/// The column names of a FROM item, as far as they are known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Columns {
    /// Names it certainly has (a name twice makes references to it ambiguous).
    pub(super) names: Vec<String>,
    /// It may have other columns too.
    pub(super) open: bool,
}

/// Whether an item has a column of some name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Has {
    Yes,
    Maybe,
    No,
}

impl Columns {
    pub(super) fn known(names: Vec<String>) -> Columns {
        Columns { names, open: false }
    }

    pub(super) fn open(names: Vec<String>) -> Columns {
        Columns { names, open: true }
    }

    pub(super) fn has(&self, column: &str) -> Has {
        if self.names.iter().any(|n| n == column) {
            Has::Yes
        } else if self.open {
            Has::Maybe
        } else {
            Has::No
        }
    }

    /// The columns of a derived table or CTE with its alias column list applied: the
    /// list renames the first columns, the others keep their names.
    pub(super) fn renamed(output: &Output, aliases: &[String]) -> Columns {
        let mut names = aliases.to_vec();
        let mut open = !output.exact;
        for position in output.positions.iter().skip(aliases.len()) {
            match position {
                Some(name) => names.push(name.clone()),
                None => open = true,
            }
        }
        Columns { names, open }
    }
}

/// The output columns of a query, by position: `None` where PostgreSQL would make up a
/// name maskgate does not reproduce (`?column?`, a function's name, …).
#[derive(Debug, Clone, Default)]
pub(super) struct Output {
    pub(super) positions: Vec<Option<String>>,
    /// False when a `*` makes the count (and the later positions) unknown; `positions`
    /// then stops before it.
    pub(super) exact: bool,
}

/// The output column names of `query`, for the FROM item or CTE it defines.
pub(super) fn output_of(query: &Query) -> Output {
    output_of_set(&query.body)
}

fn output_of_set(body: &SetExpr) -> Output {
    match body {
        SetExpr::Select(select) => output_of_select(select),
        SetExpr::Query(query) => output_of(query),
        SetExpr::SetOperation { left, .. } => output_of_set(left),
        SetExpr::Values(values) => {
            let width = values.rows.first().map_or(0, Vec::len);
            Output {
                positions: (1..=width).map(|i| Some(format!("column{i}"))).collect(),
                exact: true,
            }
        }
        _ => Output::default(),
    }
}

fn output_of_select(select: &Select) -> Output {
    let mut positions = Vec::with_capacity(select.projection.len());
    for item in &select.projection {
        match item {
            SelectItem::ExprWithAlias { alias, .. } => positions.push(Some(fold(alias))),
            SelectItem::UnnamedExpr(expr) => positions.push(expr_name(expr)),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                return Output {
                    positions,
                    exact: false,
                }
            }
        }
    }
    Output {
        positions,
        exact: true,
    }
}

/// The output column names of a SELECT that maskgate is sure of.
pub(super) fn output_names(select: &Select) -> Vec<String> {
    output_of_select(select)
        .positions
        .into_iter()
        .flatten()
        .collect()
}

/// The output column names of a query body that maskgate is sure of.
pub(super) fn set_output_names(body: &SetExpr) -> Vec<String> {
    output_of_set(body)
        .positions
        .into_iter()
        .flatten()
        .collect()
}

/// The name PostgreSQL gives an unaliased output column, where maskgate is sure of it:
/// a column reference's last part.
fn expr_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(fold(ident)),
        Expr::CompoundIdentifier(parts) => parts.last().map(fold),
        _ => None,
    }
}

/// How an item of a block can be seen at the point being analyzed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Visibility {
    /// Not at all: an item after the one being analyzed, or outside the JOIN whose ON
    /// clause is being analyzed.
    Hidden,
    /// An earlier item of the FROM list, seen only from a LATERAL item. With `ok`
    /// false PostgreSQL finds it but refuses the reference (the target of a write seen
    /// from its FROM items, the left side of a RIGHT or FULL JOIN).
    LateralOnly {
        ok: bool,
    },
    Visible,
}

/// One query block's FROM items and what of them is visible now.
#[derive(Debug, Clone)]
pub(super) struct Level {
    pub(super) items: Vec<FromItem>,
    pub(super) visibility: Vec<Visibility>,
    /// The FROM item being analyzed is LATERAL (so LateralOnly items are seen).
    pub(super) lateral: bool,
    /// Earlier items PostgreSQL finds but refuses from the FROM item being analyzed.
    pub(super) refused: Vec<bool>,
}

impl Level {
    /// A block whose FROM has been analyzed: everything visible.
    pub(super) fn visible(items: Vec<FromItem>) -> Level {
        let visibility = vec![Visibility::Visible; items.len()];
        let refused = vec![false; items.len()];
        Level {
            items,
            visibility,
            lateral: false,
            refused,
        }
    }

    /// Whether item `index` can be seen, and whether PostgreSQL accepts the reference.
    fn sees(&self, index: usize) -> Option<bool> {
        match self.visibility[index] {
            Visibility::Visible => Some(true),
            Visibility::LateralOnly { ok } if self.lateral => Some(ok),
            _ => None,
        }
    }

    /// Makes the items `range` visible and hides the others: a JOIN's ON clause.
    pub(super) fn only(&mut self, range: std::ops::Range<usize>) {
        for (i, v) in self.visibility.iter_mut().enumerate() {
            *v = if range.contains(&i) {
                Visibility::Visible
            } else {
                Visibility::Hidden
            };
        }
        self.lateral = false;
    }

    /// The state while FROM item `index` (a leaf) is analyzed.
    pub(super) fn before(&mut self, index: usize, lateral: bool) {
        for (i, v) in self.visibility.iter_mut().enumerate() {
            *v = if i < index {
                Visibility::LateralOnly {
                    ok: !self.refused[i],
                }
            } else {
                Visibility::Hidden
            };
        }
        self.lateral = lateral;
    }

    pub(super) fn reveal(&mut self) {
        self.visibility.fill(Visibility::Visible);
        self.lateral = false;
    }
}

/// An item of some enclosing block: `levels[level].items[item]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ItemRef {
    pub(super) level: usize,
    pub(super) item: usize,
}

/// Where an unqualified column name may bind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct ColumnLookup {
    /// Items of the innermost block where some item certainly has the column. One: the
    /// binding (unless a `tied` item has it too); more: PostgreSQL refuses or merges.
    pub(super) found: Vec<ItemRef>,
    /// Items of that same block that may have it (then the name is ambiguous).
    pub(super) tied: Vec<ItemRef>,
    /// Items of inner blocks that may have it: possible bindings too.
    pub(super) maybe: Vec<ItemRef>,
    /// With nothing found: the item a bare name would mean as a whole-row reference.
    pub(super) whole_row: Vec<ItemRef>,
    /// PostgreSQL refuses the reference (a found item it does not let this place see).
    pub(super) refused: bool,
}

impl ColumnLookup {
    /// Every item this name could bind to without PostgreSQL refusing it.
    pub(super) fn possible(&self) -> impl Iterator<Item = &ItemRef> {
        self.maybe.iter().chain(&self.found)
    }

    /// The one item the name certainly binds to, if there is one.
    pub(super) fn certain(&self) -> Option<ItemRef> {
        match (
            self.found.as_slice(),
            self.maybe.is_empty() && self.tied.is_empty(),
        ) {
            ([one], true) if !self.refused => Some(*one),
            _ => None,
        }
    }
}

/// The enclosing query blocks, innermost last.
#[derive(Debug, Default, Clone)]
pub(super) struct Scopes {
    pub(super) levels: Vec<Level>,
}

impl Scopes {
    pub(super) fn item(&self, at: ItemRef) -> &FromItem {
        &self.levels[at.level].items[at.item]
    }

    /// Whether PostgreSQL finds this item from here but refuses the reference.
    #[cfg(test)]
    pub(super) fn refused(&self, at: ItemRef) -> bool {
        self.levels[at.level].sees(at.item) == Some(false)
    }

    pub(super) fn current(&mut self) -> Option<&mut Level> {
        self.levels.last_mut()
    }

    /// PostgreSQL's `colNameToVar`, then its whole-row fallback.
    pub(super) fn column(&self, column: &str) -> ColumnLookup {
        let mut lookup = ColumnLookup::default();
        for (level_index, level) in self.levels.iter().enumerate().rev() {
            let mut found = Vec::new();
            let mut maybe = Vec::new();
            for (index, item) in level.items.iter().enumerate() {
                let Some(ok) = level.sees(index) else {
                    continue;
                };
                let at = ItemRef {
                    level: level_index,
                    item: index,
                };
                match item.columns.has(column) {
                    Has::Yes => {
                        lookup.refused |= !ok;
                        found.push(at);
                    }
                    Has::Maybe if ok => maybe.push(at),
                    Has::Maybe | Has::No => {}
                }
            }
            if !found.is_empty() {
                lookup.found = found;
                lookup.tied = maybe;
                return lookup;
            }
            lookup.maybe.extend(maybe);
        }
        lookup.whole_row = self.relation(column, None);
        lookup
    }

    /// PostgreSQL's `refnameNamespaceItem`: the items of the innermost block with a
    /// visible item of that name (more than one: PostgreSQL refuses). With a schema,
    /// only unaliased tables of that schema match.
    pub(super) fn relation(&self, name: &str, schema: Option<&str>) -> Vec<ItemRef> {
        for (level_index, level) in self.levels.iter().enumerate().rev() {
            let matches: Vec<ItemRef> = level
                .items
                .iter()
                .enumerate()
                .filter(|(index, item)| {
                    level.sees(*index).is_some()
                        && item.name == name
                        && schema.is_none_or(|s| item.schema.as_deref() == Some(s))
                })
                .map(|(index, _)| ItemRef {
                    level: level_index,
                    item: index,
                })
                .collect();
            if !matches.is_empty() {
                return matches;
            }
        }
        Vec::new()
    }
}
