//! Merging an account's roles into the rules the proxy enforces.
//!
//! Within a role an explicit column rule beats a label rule and several label rules give
//! the most restrictive; across roles deny > mask > allow, filters are ANDed and limits
//! take the minimum. Anything not granted is denied.

use std::collections::BTreeMap;

use sqlparser::ast::{Expr, Value};

use crate::filter;
use crate::model::{
    Account, ColumnRule, EffectiveRules, QualifiedName, Role, RoleMode, RoleTable, StatementKinds,
    TableCap, TableClass, TableRules,
};
use crate::scope::{self, PathProblem, Pending};

/// The rule one role gives each classified column of a table (fail closed: `Deny`).
pub(crate) fn role_columns(rt: &RoleTable, class: &TableClass) -> BTreeMap<String, ColumnRule> {
    class
        .columns
        .iter()
        .map(|(name, column)| {
            let rule = match rt.columns.get(name) {
                Some(rule) => rule.clone(),
                None => column
                    .labels
                    .iter()
                    .filter_map(|label| rt.labels.get(label))
                    .fold(None::<&ColumnRule>, |best, rule| match best {
                        Some(best) if best.restrictiveness() >= rule.restrictiveness() => {
                            Some(best)
                        }
                        _ => Some(rule),
                    })
                    .cloned()
                    .unwrap_or(ColumnRule::Deny),
            };
            (name.clone(), rule)
        })
        .collect()
}

/// Something about the merge that a reviewer should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MergeNote {
    /// `granting` allows or masks columns that `denying` denies, so the grant has no effect.
    VoidGrant {
        table: QualifiedName,
        columns: Vec<String>,
        granting: String,
        denying: String,
        /// The denying role does not mention the columns: denied by default.
        by_default: bool,
    },
    /// Two roles mask a column differently; the first role's mask is used.
    MaskConflict {
        table: QualifiedName,
        column: String,
        used: String,
        ignored: String,
    },
    /// Roles make a table lookup-only on keys that have nothing in common; it is denied.
    DisjointLookupKeys { table: QualifiedName },
    /// A row filter through foreign keys cannot be resolved; the table is denied.
    Path {
        table: QualifiedName,
        problem: PathProblem,
    },
    /// Some roles are in monitor mode and some are not: everything is enforced.
    MixedModes { monitored: Vec<String> },
}

/// One role's rules for a table: the role, what it says, and its rule per column.
type Granting<'r> = (&'r Role, &'r RoleTable, BTreeMap<String, ColumnRule>);

/// Merges the account's roles (in name order). Unknown roles or tables are skipped: the
/// validator reports them, and a policy with errors is never used.
pub(crate) fn merge(
    account: &Account,
    roles: &BTreeMap<String, Role>,
    tables: &BTreeMap<QualifiedName, TableClass>,
) -> (EffectiveRules, Vec<MergeNote>) {
    let mut notes = Vec::new();
    let held: Vec<&Role> = account
        .roles
        .iter()
        .filter_map(|name| roles.get(name))
        .collect();
    let mut rules = account_rules(account, &held, &mut notes);
    let mut names: Vec<&QualifiedName> = held.iter().flat_map(|r| r.tables.keys()).collect();
    names.sort();
    names.dedup();
    let mut pending: BTreeMap<QualifiedName, Pending> = BTreeMap::new();
    for name in names {
        let Some(class) = tables.get(name) else {
            continue;
        };
        let granting: Vec<Granting<'_>> = held
            .iter()
            .filter(|role| !role.unrestricted)
            .filter_map(|role| {
                let rt = role.tables.get(name)?;
                Some((*role, rt, role_columns(rt, class)))
            })
            .collect();
        if granting.is_empty() {
            continue;
        }
        let columns = merge_columns(name, &granting, &mut notes);
        void_grants(name, class, &granting, &mut notes);
        let Some(lookup_keys) = merge_lookup_keys(&granting) else {
            notes.push(MergeNote::DisjointLookupKeys {
                table: name.clone(),
            });
            continue;
        };
        pending.insert(name.clone(), pending_filter(account, &granting));
        rules.tables.insert(
            name.clone(),
            TableRules {
                row_filter: None,
                max_rows: table_cap(granting.iter().map(|(_, rt, _)| rt.max_rows)),
                lookup_keys,
                columns,
            },
        );
    }
    let (filters, problems) = scope::resolve(&pending);
    for (table, problem) in problems {
        rules.tables.remove(&table);
        notes.push(MergeNote::Path { table, problem });
    }
    for (table, filter) in filters {
        if let Some(table_rules) = rules.tables.get_mut(&table) {
            table_rules.row_filter = filter;
        }
    }
    (rules, notes)
}

/// Everything but the tables: statement kinds, limits, channels, the mode.
fn account_rules(account: &Account, held: &[&Role], notes: &mut Vec<MergeNote>) -> EffectiveRules {
    let enforced: Vec<&&Role> = held.iter().filter(|r| !r.unrestricted).collect();
    let monitored: Vec<String> = enforced
        .iter()
        .filter(|r| r.mode == RoleMode::Monitor)
        .map(|r| r.name.clone())
        .collect();
    let monitor = !monitored.is_empty() && monitored.len() == enforced.len();
    if !monitored.is_empty() && !monitor {
        notes.push(MergeNote::MixedModes { monitored });
    }
    EffectiveRules {
        login: account.login.clone(),
        unrestricted: held.iter().any(|role| role.unrestricted),
        statements: held.iter().fold(StatementKinds::default(), |acc, role| {
            acc.union(role.statements)
        }),
        max_rows: min_of(held.iter().map(|r| r.max_rows)),
        max_rows_per_session: min_of(held.iter().map(|r| r.max_rows_per_session)),
        over_cap: held.iter().map(|r| r.over_cap).max().unwrap_or_default(),
        monitor,
        rows_per_hour: min_of(held.iter().map(|r| r.rows_per_hour)),
        statements_per_minute: min_of(held.iter().map(|r| r.statements_per_minute)),
        channels: held
            .iter()
            .flat_map(|role| role.channels.iter().cloned())
            .collect(),
        tables: BTreeMap::new(),
    }
}

/// Per column the most restrictive rule; two different masks: the first role's.
fn merge_columns(
    name: &QualifiedName,
    granting: &[Granting<'_>],
    notes: &mut Vec<MergeNote>,
) -> BTreeMap<String, ColumnRule> {
    let mut columns: BTreeMap<String, (ColumnRule, &str)> = BTreeMap::new();
    for (role, _, role_cols) in granting {
        for (column, rule) in role_cols {
            match columns.get(column) {
                None => {
                    columns.insert(column.clone(), (rule.clone(), &role.name));
                }
                Some((current, first)) => {
                    if rule.restrictiveness() > current.restrictiveness() {
                        columns.insert(column.clone(), (rule.clone(), &role.name));
                    } else if let (ColumnRule::Mask(a), ColumnRule::Mask(b)) = (current, rule) {
                        if a != b && rule.restrictiveness() == current.restrictiveness() {
                            notes.push(MergeNote::MaskConflict {
                                table: name.clone(),
                                column: column.clone(),
                                used: (*first).to_owned(),
                                ignored: role.name.clone(),
                            });
                        }
                    }
                }
            }
        }
    }
    columns
        .into_iter()
        .map(|(column, (rule, _))| (column, rule))
        .collect()
}

/// Columns one role grants and another denies: the grant has no effect (warning).
fn void_grants(
    name: &QualifiedName,
    class: &TableClass,
    granting: &[Granting<'_>],
    notes: &mut Vec<MergeNote>,
) {
    for (granter, _, granter_cols) in granting {
        for (denier, denier_rt, denier_cols) in granting {
            if granter.name == denier.name {
                continue;
            }
            let mut explicit = Vec::new();
            let mut by_default = Vec::new();
            for (column, rule) in granter_cols {
                if matches!(rule, ColumnRule::Deny)
                    || !matches!(denier_cols.get(column), Some(ColumnRule::Deny))
                {
                    continue;
                }
                let mentioned = denier_rt.columns.contains_key(column)
                    || class.columns[column]
                        .labels
                        .iter()
                        .any(|label| denier_rt.labels.contains_key(label));
                if mentioned {
                    explicit.push(column.clone());
                } else {
                    by_default.push(column.clone());
                }
            }
            for (columns, by_default) in [(explicit, false), (by_default, true)] {
                if !columns.is_empty() {
                    notes.push(MergeNote::VoidGrant {
                        table: name.clone(),
                        columns,
                        granting: granter.name.clone(),
                        denying: denier.name.clone(),
                        by_default,
                    });
                }
            }
        }
    }
}

/// The keys every lookup-only role accepts; `None` when they have none in common.
fn merge_lookup_keys(granting: &[Granting<'_>]) -> Option<Vec<String>> {
    let mut lookup_keys: Option<Vec<String>> = None;
    for (_, rt, _) in granting {
        if rt.lookup_keys.is_empty() {
            continue;
        }
        lookup_keys = Some(match lookup_keys {
            None => rt.lookup_keys.clone(),
            Some(keys) => keys
                .into_iter()
                .filter(|k| rt.lookup_keys.contains(k))
                .collect(),
        });
    }
    match lookup_keys {
        Some(keys) if keys.is_empty() => None,
        keys => Some(keys.unwrap_or_default()),
    }
}

/// The roles' own conditions with the account's attributes, and their paths.
fn pending_filter(account: &Account, granting: &[Granting<'_>]) -> Pending {
    let own = granting
        .iter()
        .filter_map(|(_, rt, _)| rt.row_filter.as_ref())
        .map(|f| {
            // The validator made sure every attribute is there; fail closed anyway.
            filter::substitute(&f.expr, |attr| {
                account.attributes.get(attr).map(String::as_str)
            })
            .unwrap_or(Expr::Value(Value::Boolean(false).into()))
        })
        .collect();
    let paths = granting
        .iter()
        .map(|(_, rt, _)| rt.row_filter_path.clone())
        .filter(|p| !p.is_empty())
        .collect();
    Pending { own, paths }
}

/// Per-table caps across roles: the smallest number wins over "none"; `None` when no
/// role sets one (the account's `max_rows` applies).
fn table_cap(caps: impl Iterator<Item = Option<TableCap>>) -> Option<TableCap> {
    caps.flatten().reduce(|a, b| match (a, b) {
        (TableCap::Rows(x), TableCap::Rows(y)) => TableCap::Rows(x.min(y)),
        (TableCap::Rows(x), TableCap::Exempt) | (TableCap::Exempt, TableCap::Rows(x)) => {
            TableCap::Rows(x)
        }
        (TableCap::Exempt, TableCap::Exempt) => TableCap::Exempt,
    })
}

fn min_of(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    values.flatten().min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ColumnClass, TableKind};
    use maskgate_mask::MaskSpec;

    fn mask(kind: &str) -> ColumnRule {
        let table: toml::Table = toml::from_str(&format!("mask = {kind:?}")).unwrap();
        ColumnRule::Mask(MaskSpec::from_toml(&table).unwrap())
    }

    fn class() -> TableClass {
        let column = |labels: &[&str]| ColumnClass {
            pg_type: "text".into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
        };
        TableClass {
            kind: TableKind::Table,
            columns: [
                ("a".to_string(), column(&["x"])),
                ("b".to_string(), column(&["x", "y"])),
                ("c".to_string(), column(&["y"])),
                ("d".to_string(), column(&[])),
                ("e".to_string(), column(&["x", "z"])),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn explicit_beats_label_and_labels_take_most_restrictive() {
        let rt = RoleTable {
            row_filter: None,
            row_filter_path: vec![],
            max_rows: None,
            lookup_keys: vec![],
            labels: [
                ("x".to_string(), ColumnRule::Allow),
                ("y".to_string(), ColumnRule::Deny),
                ("z".to_string(), mask("initials")),
            ]
            .into_iter()
            .collect(),
            columns: [("c".to_string(), ColumnRule::Allow)].into_iter().collect(),
        };
        let rules = role_columns(&rt, &class());
        assert_eq!(rules["a"], ColumnRule::Allow);
        assert_eq!(rules["b"], ColumnRule::Deny, "x allows, y denies");
        assert_eq!(
            rules["c"],
            ColumnRule::Allow,
            "explicit rule wins over label y"
        );
        assert_eq!(rules["d"], ColumnRule::Deny, "not mentioned: fail closed");
        assert_eq!(rules["e"], mask("initials"), "mask beats allow");
    }
}
