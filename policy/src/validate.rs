//! From the merged file trees to a checked [`crate::Policy`], reporting every problem.

use std::collections::{BTreeMap, BTreeSet};

use maskgate_mask::{MaskKind, MaskSpec};
use time::{Date, Month};

use crate::account::{parse_day, parse_fingerprint, parse_hours, DAY_NAMES};
use crate::diagnostics::{Diags, Pos, Sources};
use crate::effective::{self, MergeNote};
use crate::filter;
use crate::load::{Entry, Node, NodeValue};
use crate::model::{
    Account, Assignment, Canary, ColumnClass, ColumnRule, EffectiveRules, FilterExpr, OverCap,
    PathHop, QualifiedName, Role, RoleMode, RoleTable, StatementKind, StatementKinds, TableCap,
    TableClass, TableKind,
};
use crate::net::IpNet;
use crate::scope::{PathProblem, MAX_HOPS};
use crate::verifier::ScramVerifier;

mod account_fields;
mod accounts;
mod classification;
mod column_rules;
mod paths;
mod role_tables;
mod roles;
mod values;

use accounts::account_warnings;
use values::{closest, get, list_or_none};

/// The checked content; only used when no error was reported.
#[derive(Debug, Default)]
pub(crate) struct Validated {
    pub labels: BTreeMap<String, String>,
    pub tables: BTreeMap<QualifiedName, TableClass>,
    pub roles: BTreeMap<String, Role>,
    pub accounts: BTreeMap<String, Account>,
    pub effective: BTreeMap<String, EffectiveRules>,
    pub canaries: Vec<Canary>,
}

const TOP_KEYS: &[&str] = &["labels", "tables", "roles", "accounts"];
const TABLE_KEYS: &[&str] = &["kind", "columns"];
const COLUMN_KEYS: &[&str] = &["type", "labels", "canaries"];
const ROLE_KEYS: &[&str] = &[
    "description",
    "statements",
    "max_rows",
    "max_rows_per_session",
    "over_cap",
    "rows_per_hour",
    "statements_per_minute",
    "unrestricted",
    "mode",
    "channels",
    "tables",
];
const ROLE_TABLE_KEYS: &[&str] = &[
    "row_filter",
    "row_filter_path",
    "lookup_keys",
    "max_rows",
    "labels",
    "columns",
];
const ACCOUNT_KEYS: &[&str] = &[
    "name",
    "verifier",
    "roles",
    "attributes",
    "valid_from",
    "valid_until",
    "disabled",
    "assignment",
    "networks",
    "cert_fingerprints",
    "login_hours",
    "login_days",
    "max_sessions",
];
const ASSIGNMENT_KEYS: &[&str] = &["document", "date", "assigned_by"];

/// Row filter attributes a role needs: (table, attribute).
type NeededAttributes = Vec<(QualifiedName, String)>;

struct Checker<'a> {
    sources: &'a Sources,
    diags: &'a mut Diags,
    pseudonym_keys: &'a [String],
    /// Honeytoken values found in the classification.
    canaries: Vec<Canary>,
}

pub(crate) fn validate(
    roots: &[Node],
    sources: &Sources,
    today: Date,
    pseudonym_keys: &[String],
    diags: &mut Diags,
) -> Validated {
    let mut c = Checker {
        sources,
        diags,
        pseudonym_keys,
        canaries: Vec::new(),
    };
    let sections = c.sections(roots);
    let mut out = Validated::default();

    for entry in &sections[0] {
        if let Some(text) = c.string(&entry.value, &format!("label {:?}", entry.key)) {
            out.labels.insert(entry.key.clone(), text.to_owned());
        }
    }

    let mut table_positions: BTreeMap<QualifiedName, Pos> = BTreeMap::new();
    for entry in &sections[1] {
        let Some(name) = c.qualified_name(entry) else {
            continue;
        };
        if let Some(first) = table_positions.get(&name) {
            c.duplicate(&format!("table {name}"), entry.key_pos, *first);
            continue;
        }
        table_positions.insert(name.clone(), entry.key_pos);
        if let Some(class) = c.table_class(entry, &name, &out.labels) {
            out.tables.insert(name, class);
        }
    }

    out.canaries = std::mem::take(&mut c.canaries);

    let mut needs: BTreeMap<String, NeededAttributes> = BTreeMap::new();
    let mut role_positions: BTreeMap<String, Pos> = BTreeMap::new();
    for entry in &sections[2] {
        role_positions.insert(entry.key.clone(), entry.key_pos);
        let (role, needed) = c.role(entry, &out.tables, &out.labels);
        needs.insert(entry.key.clone(), needed);
        if let Some(role) = role {
            out.roles.insert(entry.key.clone(), role);
        }
    }
    let known_roles: Vec<&str> = role_positions.keys().map(String::as_str).collect();

    let mut used_roles = BTreeSet::new();
    let mut roles_line: BTreeMap<String, Pos> = BTreeMap::new();
    for entry in &sections[3] {
        let fields = c.account(entry, &known_roles, &needs, today);
        if let Some(roles) = &fields.roles {
            used_roles.extend(roles.iter().cloned());
        }
        roles_line.insert(entry.key.clone(), fields.roles_pos.unwrap_or(entry.key_pos));
        if let Some(account) = fields.account {
            out.accounts.insert(entry.key.clone(), account);
        }
    }

    for (name, pos) in &role_positions {
        if !used_roles.contains(name) {
            c.diags.warn(
                *pos,
                format!("role {name:?} is not held by any account"),
                Some("remove it, or add it to the roles of the accounts that need it".into()),
            );
        }
    }

    for (login, account) in &out.accounts {
        let (rules, notes) = effective::merge(account, &out.roles, &out.tables);
        let pos = roles_line[login];
        for note in notes {
            c.merge_note(login, pos, note);
        }
        out.effective.insert(login.clone(), rules);
    }
    account_warnings(&out, &roles_line, c.diags);
    out
}

/// Accounts fields needed after the account itself is checked.
struct AccountOutcome {
    account: Option<Account>,
    roles: Option<Vec<String>>,
    roles_pos: Option<Pos>,
}

impl Checker<'_> {
    fn error(&mut self, pos: Pos, message: impl Into<String>, hint: Option<String>) {
        self.diags.error(pos, message, hint);
    }

    /// Splits the files into the four sections, reporting unknown top-level keys and
    /// names defined twice.
    fn sections<'n>(&mut self, roots: &'n [Node]) -> [Vec<&'n Entry>; 4] {
        let mut sections: [Vec<&Entry>; 4] = Default::default();
        let mut seen: [BTreeMap<&str, Pos>; 4] = Default::default();
        for root in roots {
            let NodeValue::Table(entries) = &root.value else {
                continue;
            };
            self.unknown_keys(entries, TOP_KEYS, "a policy file");
            for entry in entries {
                let Some(index) = TOP_KEYS.iter().position(|k| *k == entry.key) else {
                    continue;
                };
                let what = TOP_KEYS[index];
                let Some(items) = self.table(&entry.value, what) else {
                    continue;
                };
                for item in items {
                    if let Some(first) = seen[index].get(item.key.as_str()) {
                        let kind = &what[..what.len() - 1];
                        self.duplicate(&format!("{kind} {:?}", item.key), item.key_pos, *first);
                        continue;
                    }
                    seen[index].insert(&item.key, item.key_pos);
                    sections[index].push(item);
                }
            }
        }
        sections
    }
}
