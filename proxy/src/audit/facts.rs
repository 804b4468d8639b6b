//! What each policy table's rules do for one account, precomputed once per account
//! so a statement's record names its masks, filters, pins and roles without work.

use std::collections::BTreeMap;
use std::sync::Arc;

use maskgate_policy::{ColumnRule, EffectiveRules, Policy, QualifiedName};

use super::TableFacts;

/// The facts of every table the account's roles grant.
pub fn table_facts(
    policy: &Policy,
    login: &str,
    rules: &EffectiveRules,
) -> BTreeMap<QualifiedName, Arc<TableFacts>> {
    let roles = policy
        .account(login)
        .map(|a| a.roles.clone())
        .unwrap_or_default();
    rules
        .tables
        .iter()
        .map(|(table, table_rules)| {
            let granting: Vec<_> = roles
                .iter()
                .filter_map(|name| policy.roles().get(name))
                .filter_map(|role| role.tables.get(table).map(|t| (role, t)))
                .collect();
            let mut masked = Vec::new();
            let mut denied = Vec::new();
            for (column, rule) in &table_rules.columns {
                match rule {
                    ColumnRule::Allow => {}
                    ColumnRule::Mask(spec) => masked.push(format!("{column}:{}", spec.kind.name())),
                    ColumnRule::Deny => denied.push(column.clone()),
                }
            }
            let facts = TableFacts {
                table: table.to_string(),
                masked,
                denied,
                filtered_by: granting
                    .iter()
                    .filter(|(_, t)| t.row_filter.is_some())
                    .map(|(role, _)| role.name.clone())
                    .collect(),
                pinned_by: table_rules.lookup_keys.clone(),
                roles: granting.iter().map(|(role, _)| role.name.clone()).collect(),
            };
            (table.clone(), Arc::new(facts))
        })
        .collect()
}
