//! Where classified columns live in the upstream catalog, for the check of every
//! RowDescription a restricted account receives.
//!
//! PostgreSQL names the origin of a result column by (table OID, column number)
//! when the column is a plain reference to a table column, also through
//! subqueries. A masked column comes out of the masking subquery as an expression
//! (OID 0), so a protected column that arrives with its own OID was not masked: the
//! rewrite has a bug, and the statement is stopped before any row leaves.

use std::collections::{HashMap, HashSet};

use maskgate_policy::{ColumnRule, EffectiveRules, Policy, QualifiedName};

use crate::upstream::{UpstreamConn, UpstreamError};

/// A column's identity on the wire: (table OID, attribute number).
pub type ColumnId = (u32, i16);

/// Every classified column of the policy, by its identity in the database.
#[derive(Debug, Default)]
pub struct ColumnOids {
    columns: HashMap<ColumnId, (QualifiedName, String)>,
}

impl ColumnOids {
    /// Reads the catalog of the database `conn` is connected to.
    pub async fn load(policy: &Policy, conn: &mut UpstreamConn) -> Result<Self, UpstreamError> {
        let rows = conn
            .query_rows(
                "SELECT c.oid::text, a.attnum::text, n.nspname::text, c.relname::text, a.attname::text \
                 FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE a.attnum > 0 AND NOT a.attisdropped \
                   AND c.relkind IN ('r', 'p', 'f', 'v', 'm') \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
            )
            .await?;
        let mut columns = HashMap::new();
        for row in rows {
            let [Some(oid), Some(attnum), Some(schema), Some(table), Some(column)] =
                <[Option<String>; 5]>::try_from(row).unwrap_or_default()
            else {
                continue;
            };
            let table = QualifiedName::new(schema.as_str(), table.as_str());
            if !policy
                .tables()
                .get(&table)
                .is_some_and(|class| class.columns.contains_key(&column))
            {
                continue;
            }
            let (Ok(oid), Ok(attnum)) = (oid.parse::<u32>(), attnum.parse::<i16>()) else {
                return Err(UpstreamError::Protocol(
                    "unexpected pg_attribute row while loading column identities".into(),
                ));
            };
            columns.insert((oid, attnum), (table, column));
        }
        Ok(ColumnOids { columns })
    }

    /// The columns these rules do not let the account receive as stored.
    pub fn hidden_from(&self, rules: &EffectiveRules) -> HashSet<ColumnId> {
        self.columns
            .iter()
            .filter(|(_, (table, column))| {
                !matches!(
                    rules.tables.get(table).and_then(|t| t.columns.get(column)),
                    Some(ColumnRule::Allow)
                )
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Each table's classified columns in the database's order (attnum), so `*`
    /// expands as PostgreSQL would.
    pub fn column_order(&self) -> std::collections::BTreeMap<QualifiedName, Vec<String>> {
        let mut by_table: std::collections::BTreeMap<QualifiedName, Vec<(i16, String)>> =
            std::collections::BTreeMap::new();
        for ((_, attnum), (table, column)) in &self.columns {
            by_table
                .entry(table.clone())
                .or_default()
                .push((*attnum, column.clone()));
        }
        by_table
            .into_iter()
            .map(|(table, mut columns)| {
                columns.sort_unstable();
                (table, columns.into_iter().map(|(_, c)| c).collect())
            })
            .collect()
    }

    /// The table and column behind a wire identity, for the log.
    pub fn describe(&self, id: ColumnId) -> Option<String> {
        self.columns
            .get(&id)
            .map(|(table, column)| format!("{table}.{column}"))
    }

    #[cfg(test)]
    pub(crate) fn from_entries(entries: Vec<(ColumnId, QualifiedName, String)>) -> Self {
        ColumnOids {
            columns: entries
                .into_iter()
                .map(|(id, table, column)| (id, (table, column)))
                .collect(),
        }
    }
}
