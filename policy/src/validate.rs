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
    Account, Assignment, ColumnClass, ColumnRule, EffectiveRules, QualifiedName, Role, RoleTable,
    StatementKind, StatementKinds, TableClass, TableKind,
};
use crate::net::IpNet;
use crate::verifier::ScramVerifier;

/// The checked content; only used when no error was reported.
#[derive(Debug, Default)]
pub(crate) struct Validated {
    pub labels: BTreeMap<String, String>,
    pub tables: BTreeMap<QualifiedName, TableClass>,
    pub roles: BTreeMap<String, Role>,
    pub accounts: BTreeMap<String, Account>,
    pub effective: BTreeMap<String, EffectiveRules>,
}

const TOP_KEYS: &[&str] = &["labels", "tables", "roles", "accounts"];
const TABLE_KEYS: &[&str] = &["kind", "columns"];
const COLUMN_KEYS: &[&str] = &["type", "labels"];
const ROLE_KEYS: &[&str] = &[
    "description",
    "statements",
    "max_rows",
    "rows_per_hour",
    "statements_per_minute",
    "unrestricted",
    "tables",
];
const ROLE_TABLE_KEYS: &[&str] = &["row_filter", "lookup_keys", "labels", "columns"];
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

    fn duplicate(&mut self, what: &str, pos: Pos, first: Pos) {
        let first = self.sources.location(first);
        self.error(
            pos,
            format!("{what} is defined twice"),
            Some(format!("first defined at {first}; keep one definition")),
        );
    }

    fn unknown_keys(&mut self, entries: &[Entry], known: &[&str], what: &str) {
        for entry in entries {
            if !known.contains(&entry.key.as_str()) {
                let suggestion = closest(&entry.key, known)
                    .map(|k| format!("did you mean {k:?}? "))
                    .unwrap_or_default();
                self.error(
                    entry.key_pos,
                    format!("unknown key {:?} in {what}", entry.key),
                    Some(format!("{suggestion}known keys: {}", known.join(", "))),
                );
            }
        }
    }

    fn table<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Entry]> {
        match &node.value {
            NodeValue::Table(entries) => Some(entries),
            other => {
                self.error(
                    node.pos,
                    format!("{what} must be a table, found {}", other.type_name()),
                    None,
                );
                None
            }
        }
    }

    fn string<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n str> {
        match &node.value {
            NodeValue::Str(s) => Some(s),
            other => {
                self.error(
                    node.pos,
                    format!("{what} must be a string, found {}", other.type_name()),
                    None,
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match &node.value {
            NodeValue::Bool(b) => Some(*b),
            other => {
                self.error(
                    node.pos,
                    format!("{what} must be true or false, found {}", other.type_name()),
                    None,
                );
                None
            }
        }
    }

    fn positive(&mut self, node: &Node, what: &str) -> Option<u64> {
        match &node.value {
            NodeValue::Int(i) if *i > 0 => Some(*i as u64),
            NodeValue::Int(_) => {
                self.error(
                    node.pos,
                    format!("{what} must be a positive integer"),
                    Some(format!("remove {what} for no limit")),
                );
                None
            }
            other => {
                self.error(
                    node.pos,
                    format!(
                        "{what} must be a positive integer, found {}",
                        other.type_name()
                    ),
                    None,
                );
                None
            }
        }
    }

    /// An array of strings with the position of each element.
    fn strings<'n>(&mut self, node: &'n Node, what: &str) -> Option<Vec<(&'n str, Pos)>> {
        let NodeValue::Array(items) = &node.value else {
            self.error(
                node.pos,
                format!(
                    "{what} must be an array of strings, found {}",
                    node.value.type_name()
                ),
                Some(format!("write {what} = [\"...\", \"...\"]")),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match &item.value {
                NodeValue::Str(s) => out.push((s.as_str(), item.pos)),
                other => {
                    ok = false;
                    self.error(
                        item.pos,
                        format!(
                            "{what} entries must be strings, found {}",
                            other.type_name()
                        ),
                        None,
                    );
                }
            }
        }
        ok.then_some(out)
    }

    fn local_date(&mut self, node: &Node, what: &str) -> Option<Date> {
        let hint = Some(format!("write a bare date, e.g. {what} = 2026-01-31"));
        let NodeValue::Datetime(dt) = &node.value else {
            self.error(
                node.pos,
                format!("{what} must be a date, found {}", node.value.type_name()),
                hint,
            );
            return None;
        };
        let (Some(date), None, None) = (dt.date, dt.time, dt.offset) else {
            self.error(
                node.pos,
                format!("{what} must be a date without time or offset"),
                hint,
            );
            return None;
        };
        let month = Month::try_from(date.month).ok()?;
        match Date::from_calendar_date(i32::from(date.year), month, date.day) {
            Ok(date) => Some(date),
            Err(_) => {
                self.error(node.pos, format!("{what} is not a valid date"), None);
                None
            }
        }
    }

    fn qualified_name(&mut self, entry: &Entry) -> Option<QualifiedName> {
        match parse_qualified(&entry.key) {
            Ok(name) => Some(name),
            Err(reason) => {
                self.error(
                    entry.key_pos,
                    format!("invalid table name {:?}: {reason}", entry.key),
                    Some("write it schema-qualified, e.g. \"public.participant\"".into()),
                );
                None
            }
        }
    }

    fn table_class(
        &mut self,
        entry: &Entry,
        name: &QualifiedName,
        labels: &BTreeMap<String, String>,
    ) -> Option<TableClass> {
        let fields = self.table(&entry.value, &format!("table {name}"))?;
        self.unknown_keys(fields, TABLE_KEYS, &format!("table {name}"));
        let errors_before = self.diags.error_count();
        let kind = match get(fields, "kind") {
            None => Some(TableKind::Table),
            Some(kind) => match self.string(&kind.value, "kind")? {
                "table" => Some(TableKind::Table),
                "view" => Some(TableKind::View),
                "materialized_view" => Some(TableKind::MaterializedView),
                other => {
                    self.error(
                        kind.value.pos,
                        format!("unknown kind {other:?} for table {name}"),
                        Some("kind is one of: table, view, materialized_view".into()),
                    );
                    None
                }
            },
        };
        let Some(columns_entry) = get(fields, "columns") else {
            self.error(
                entry.key_pos,
                format!("table {name} has no columns"),
                Some(format!(
                    "add [tables.\"{name}\".columns] with one line per column, e.g. id = {{ type = \"bigint\" }}"
                )),
            );
            return None;
        };
        let column_entries = self.table(&columns_entry.value, "columns")?;
        let mut columns = BTreeMap::new();
        for column in column_entries {
            let what = format!("column {}.{}", name, column.key);
            if let Err(e) = maskgate_mask::quote_ident(&column.key) {
                self.error(
                    column.key_pos,
                    format!("{what} cannot be a PostgreSQL column name: {e}"),
                    None,
                );
                continue;
            }
            let Some(spec) = self.table(&column.value, &what) else {
                continue;
            };
            self.unknown_keys(spec, COLUMN_KEYS, &what);
            let pg_type = match get(spec, "type") {
                Some(t) => self.string(&t.value, "type").map(str::to_owned),
                None => {
                    self.error(
                        column.key_pos,
                        format!("{what} has no type"),
                        Some(
                            "add type = \"...\" as format_type() prints it, e.g. \"char(12)\""
                                .into(),
                        ),
                    );
                    None
                }
            };
            let mut column_labels = Vec::new();
            if let Some(l) = get(spec, "labels") {
                for (label, pos) in self.strings(&l.value, "labels").unwrap_or_default() {
                    if labels.contains_key(label) {
                        column_labels.push(label.to_owned());
                    } else {
                        self.unknown_label(label, pos, labels);
                    }
                }
            }
            if let Some(pg_type) = pg_type {
                columns.insert(
                    column.key.clone(),
                    ColumnClass {
                        pg_type,
                        labels: column_labels,
                    },
                );
            }
        }
        let kind = kind?;
        (self.diags.error_count() == errors_before).then_some(TableClass { kind, columns })
    }

    fn unknown_label(&mut self, label: &str, pos: Pos, labels: &BTreeMap<String, String>) {
        let known: Vec<&str> = labels.keys().map(String::as_str).collect();
        self.error(
            pos,
            format!("unknown label {label:?}"),
            Some(format!(
                "define it under [labels]; known labels: {}",
                list_or_none(&known)
            )),
        );
    }

    fn role(
        &mut self,
        entry: &Entry,
        tables: &BTreeMap<QualifiedName, TableClass>,
        labels: &BTreeMap<String, String>,
    ) -> (Option<Role>, NeededAttributes) {
        let name = &entry.key;
        let what = format!("role {name:?}");
        let mut needed = Vec::new();
        let Some(fields) = self.table(&entry.value, &what) else {
            return (None, needed);
        };
        self.unknown_keys(fields, ROLE_KEYS, &what);
        let mut ok = true;
        let description = get(fields, "description")
            .and_then(|d| self.string(&d.value, "description"))
            .map(str::to_owned);
        let unrestricted = match get(fields, "unrestricted") {
            Some(u) => self.boolean(&u.value, "unrestricted").unwrap_or(false),
            None => false,
        };
        let statements = match get(fields, "statements") {
            None if unrestricted => StatementKind::ALL.into_iter().collect(),
            None => [StatementKind::Read].into_iter().collect(),
            Some(s) => {
                let mut kinds = StatementKinds::default();
                for (word, pos) in self.strings(&s.value, "statements").unwrap_or_default() {
                    match StatementKind::parse(word) {
                        Some(kind) => kinds.insert(kind),
                        None => {
                            ok = false;
                            self.error(
                                pos,
                                format!("unknown statement kind {word:?} in role {name:?}"),
                                Some("statements are any of: read, insert, update, delete".into()),
                            );
                        }
                    }
                }
                kinds
            }
        };
        let mut limit = |key: &str| -> Option<u64> {
            let node = &get(fields, key)?.value;
            let value = self.positive(node, key);
            ok &= value.is_some();
            value
        };
        let max_rows = limit("max_rows");
        let rows_per_hour = limit("rows_per_hour");
        let statements_per_minute = limit("statements_per_minute");

        let mut role_tables = BTreeMap::new();
        if let Some(t) = get(fields, "tables") {
            if let Some(entries) = self.table(&t.value, "tables") {
                for table_entry in entries {
                    let Some(table_name) = self.qualified_name(table_entry) else {
                        ok = false;
                        continue;
                    };
                    let Some(class) = tables.get(&table_name) else {
                        ok = false;
                        let known: Vec<String> = tables.keys().map(|t| t.to_string()).collect();
                        let known: Vec<&str> = known.iter().map(String::as_str).collect();
                        self.error(
                            table_entry.key_pos,
                            format!(
                                "role {name:?} refers to table {table_name}, which is not classified"
                            ),
                            Some(format!(
                                "classify it under [tables.\"{table_name}\"] or fix the name; classified tables: {}",
                                list_or_none(&known)
                            )),
                        );
                        continue;
                    };
                    let before = self.diags.error_count();
                    let rt = self.role_table(name, table_entry, &table_name, class, labels);
                    if let Some(rt) = rt {
                        if let Some(f) = &rt.row_filter {
                            for attribute in filter::attributes(f) {
                                needed.push((table_name.clone(), attribute));
                            }
                        }
                        if self.diags.error_count() == before {
                            role_tables.insert(table_name, rt);
                            continue;
                        }
                    }
                    ok = false;
                }
            }
        }
        let role = Role {
            name: name.clone(),
            description,
            statements,
            max_rows,
            rows_per_hour,
            statements_per_minute,
            unrestricted,
            tables: role_tables,
        };
        (ok.then_some(role), needed)
    }

    fn role_table(
        &mut self,
        role: &str,
        entry: &Entry,
        table: &QualifiedName,
        class: &TableClass,
        labels: &BTreeMap<String, String>,
    ) -> Option<RoleTable> {
        let what = format!("role {role:?} table {table}");
        let fields = self.table(&entry.value, &what)?;
        self.unknown_keys(fields, ROLE_TABLE_KEYS, &what);
        let column_names: Vec<&str> = class.columns.keys().map(String::as_str).collect();
        let mut ok = true;

        let mut columns = BTreeMap::new();
        if let Some(c) = get(fields, "columns") {
            for column in self.table(&c.value, "columns").unwrap_or_default() {
                let Some(class_column) = class.columns.get(&column.key) else {
                    ok = false;
                    self.not_a_column(&column.key, column.key_pos, table, &column_names);
                    continue;
                };
                let rule_what = format!("column {}", column.key);
                match self.rule(&column.value, &rule_what) {
                    Some(rule) => {
                        if let ColumnRule::Mask(spec) = &rule {
                            ok &= self.mask_fits(spec, &column.value, &column.key, class_column);
                        }
                        columns.insert(column.key.clone(), rule);
                    }
                    None => ok = false,
                }
            }
        }

        let mut label_rules = BTreeMap::new();
        if let Some(l) = get(fields, "labels") {
            for label in self.table(&l.value, "labels").unwrap_or_default() {
                if !labels.contains_key(&label.key) {
                    ok = false;
                    self.unknown_label(&label.key, label.key_pos, labels);
                    continue;
                }
                let rule_what = format!("label {}", label.key);
                match self.rule(&label.value, &rule_what) {
                    Some(rule) => {
                        if let ColumnRule::Mask(spec) = &rule {
                            for (column_name, class_column) in &class.columns {
                                if class_column.labels.contains(&label.key)
                                    && !columns.contains_key(column_name)
                                {
                                    ok &= self.mask_fits(
                                        spec,
                                        &label.value,
                                        column_name,
                                        class_column,
                                    );
                                }
                            }
                        }
                        label_rules.insert(label.key.clone(), rule);
                    }
                    None => ok = false,
                }
            }
        }

        let mut lookup_keys = Vec::new();
        if let Some(k) = get(fields, "lookup_keys") {
            for (key, pos) in self.strings(&k.value, "lookup_keys").unwrap_or_default() {
                if class.columns.contains_key(key) {
                    lookup_keys.push(key.to_owned());
                } else {
                    ok = false;
                    self.not_a_column(key, pos, table, &column_names);
                }
            }
        }

        let mut row_filter = None;
        if let Some(f) = get(fields, "row_filter") {
            if let Some(text) = self.string(&f.value, "row_filter") {
                let set: BTreeSet<&str> = column_names.iter().copied().collect();
                let problems = filter::check(text, &table.to_string(), &set);
                for problem in &problems {
                    let pos = problem
                        .offset
                        .and_then(|offset| self.inside_string(&f.value, text, offset))
                        .unwrap_or(f.value.pos);
                    self.error(
                        pos,
                        problem.message.clone(),
                        Some(format!(
                            "a row filter is one SQL boolean expression over the columns of {table} (known: {}); :name stands for an account attribute",
                            column_names.join(", ")
                        )),
                    );
                }
                ok &= problems.is_empty();
                row_filter = Some(text.to_owned());
            }
        }

        ok.then_some(RoleTable {
            row_filter,
            lookup_keys,
            labels: label_rules,
            columns,
        })
    }

    /// Where byte `offset` of a string value is in the file, when the string is written
    /// without escapes (so source and value line up).
    fn inside_string(&self, node: &Node, value: &str, offset: usize) -> Option<Pos> {
        let text = self.sources.text(node.pos.file);
        let raw = text.get(node.pos.offset..)?;
        let quote = raw.chars().next().filter(|q| *q == '"' || *q == '\'')?;
        let body = raw.get(1..1 + value.len())?;
        let closes = raw[1 + value.len()..].starts_with(quote);
        (body == value && closes).then_some(Pos {
            file: node.pos.file,
            offset: node.pos.offset + 1 + offset,
        })
    }

    fn not_a_column(&mut self, column: &str, pos: Pos, table: &QualifiedName, known: &[&str]) {
        let suggestion = closest(column, known)
            .map(|k| format!("did you mean {k:?}? "))
            .unwrap_or_default();
        self.error(
            pos,
            format!("{column:?} is not a column of {table}"),
            Some(format!(
                "{suggestion}columns classified for {table}: {}",
                list_or_none(known)
            )),
        );
    }

    /// `"allow"`, `"deny"` or `{ mask = "<kind>", ... }`.
    fn rule(&mut self, node: &Node, what: &str) -> Option<ColumnRule> {
        const HINT: &str = "a rule is \"allow\", \"deny\" or { mask = \"<kind>\", <parameters> }";
        match &node.value {
            NodeValue::Str(s) if s == "allow" => Some(ColumnRule::Allow),
            NodeValue::Str(s) if s == "deny" => Some(ColumnRule::Deny),
            NodeValue::Str(s) => {
                self.error(
                    node.pos,
                    format!("unknown rule {s:?} for {what}"),
                    Some(HINT.into()),
                );
                None
            }
            NodeValue::Table(entries) => {
                if get(entries, "mask").is_none() {
                    self.error(
                        node.pos,
                        format!("the rule for {what} has no mask kind"),
                        Some(HINT.into()),
                    );
                    return None;
                }
                let toml::Value::Table(table) = node.value.to_toml() else {
                    return None;
                };
                match MaskSpec::from_toml(&table) {
                    Ok(spec) => {
                        if let MaskKind::Pseudonym { key } | MaskKind::PseudonymDigits { key } =
                            &spec.kind
                        {
                            if !self.pseudonym_keys.iter().any(|k| k == key) {
                                let hint = if self.pseudonym_keys.is_empty() {
                                    "no pseudonym key file is configured: set [masking] key_file in maskgate.toml".to_string()
                                } else {
                                    format!(
                                        "the key file holds: {}",
                                        self.pseudonym_keys.join(", ")
                                    )
                                };
                                self.error(
                                    node.pos,
                                    format!("the mask for {what} uses pseudonym key {key:?}, which the key file does not hold"),
                                    Some(hint),
                                );
                                return None;
                            }
                        }
                        Some(ColumnRule::Mask(spec))
                    }
                    Err(error) => {
                        self.error(
                            node.pos,
                            format!("invalid mask for {what}: {error}"),
                            Some("docs/policy.md lists the mask kinds and their parameters".into()),
                        );
                        None
                    }
                }
            }
            other => {
                self.error(
                    node.pos,
                    format!(
                        "the rule for {what} must be a string or a table, found {}",
                        other.type_name()
                    ),
                    Some(HINT.into()),
                );
                None
            }
        }
    }

    fn mask_fits(
        &mut self,
        spec: &MaskSpec,
        node: &Node,
        column: &str,
        class: &ColumnClass,
    ) -> bool {
        match spec.check_type(&class.pg_type) {
            Ok(()) => true,
            Err(error) => {
                self.error(
                    node.pos,
                    format!(
                        "mask {spec} does not fit column {column} of type {}: {error}",
                        class.pg_type
                    ),
                    Some("choose a mask kind made for this type, or deny the column".into()),
                );
                false
            }
        }
    }

    fn account(
        &mut self,
        entry: &Entry,
        known_roles: &[&str],
        needs: &BTreeMap<String, NeededAttributes>,
        today: Date,
    ) -> AccountOutcome {
        let login = &entry.key;
        let what = format!("account {login:?}");
        let mut outcome = AccountOutcome {
            account: None,
            roles: None,
            roles_pos: None,
        };
        let Some(fields) = self.table(&entry.value, &what) else {
            return outcome;
        };
        self.unknown_keys(fields, ACCOUNT_KEYS, &what);
        let mut ok = true;
        if login.is_empty() || login.contains('\0') {
            ok = false;
            self.error(
                entry.key_pos,
                "account names must be non-empty and must not contain NUL",
                None,
            );
        }

        let required = |c: &mut Self, key: &str, hint: String| -> Option<&Node> {
            let found = get(fields, key).map(|e| &e.value);
            if found.is_none() {
                c.error(entry.key_pos, format!("{what} has no {key}"), Some(hint));
            }
            found
        };
        let name = required(
            self,
            "name",
            "add name = \"<who this account belongs to>\"".into(),
        )
        .and_then(|n| self.string(n, "name"))
        .map(str::to_owned);
        let verifier = required(
            self,
            "verifier",
            format!("run `maskgate passwd {login}` and paste the verifier it prints"),
        )
        .and_then(|node| {
            let text = self.string(node, "verifier")?;
            match text.parse::<ScramVerifier>() {
                Ok(v) => Some(v),
                Err(reason) => {
                    self.error(
                        node.pos,
                        format!("invalid verifier for {what}: {reason}"),
                        Some(format!(
                            "run `maskgate passwd {login}` and paste the verifier it prints"
                        )),
                    );
                    None
                }
            }
        });
        let roles_entry = get(fields, "roles");
        outcome.roles_pos = roles_entry.map(|e| e.key_pos);
        let roles = match roles_entry {
            None => {
                self.error(
                    entry.key_pos,
                    format!("{what} has no roles"),
                    Some(format!(
                        "add roles = [...]; known roles: {}",
                        list_or_none(known_roles)
                    )),
                );
                None
            }
            Some(r) => self.strings(&r.value, "roles").map(|list| {
                let mut roles = Vec::new();
                for (role, pos) in list {
                    if known_roles.contains(&role) {
                        roles.push(role.to_owned());
                    } else {
                        ok = false;
                        let suggestion = closest(role, known_roles)
                            .map(|k| format!("did you mean {k:?}? "))
                            .unwrap_or_default();
                        self.error(
                            pos,
                            format!("unknown role {role:?}"),
                            Some(format!(
                                "{suggestion}known roles: {}",
                                list_or_none(known_roles)
                            )),
                        );
                    }
                }
                roles.sort();
                roles.dedup();
                roles
            }),
        };

        let mut attributes = BTreeMap::new();
        let mut attributes_ok = true;
        if let Some(a) = get(fields, "attributes") {
            match self.table(&a.value, "attributes") {
                Some(entries) => {
                    for attr in entries {
                        let Some(value) =
                            self.string(&attr.value, &format!("attribute {}", attr.key))
                        else {
                            attributes_ok = false;
                            continue;
                        };
                        if value.contains('\0') {
                            attributes_ok = false;
                            self.error(
                                attr.value.pos,
                                format!("attribute {} contains a NUL character", attr.key),
                                Some("PostgreSQL cannot carry NUL in a string; remove it".into()),
                            );
                            continue;
                        }
                        attributes.insert(attr.key.clone(), value.to_owned());
                    }
                }
                None => attributes_ok = false,
            }
        }

        if let (Some(roles), Some(roles_pos), true) = (&roles, outcome.roles_pos, attributes_ok) {
            for role in roles {
                for (table, attribute) in needs.get(role).map(Vec::as_slice).unwrap_or_default() {
                    if !attributes.contains_key(attribute) {
                        ok = false;
                        self.error(
                            roles_pos,
                            format!(
                                "{what} lacks attribute {attribute:?}, which the row filter of role {role:?} on {table} uses"
                            ),
                            Some(format!(
                                "add it to the account, e.g. attributes = {{ {attribute} = \"...\" }}"
                            )),
                        );
                    }
                }
            }
        }

        let valid_from =
            get(fields, "valid_from").map(|e| (self.local_date(&e.value, "valid_from"), e));
        let valid_until =
            get(fields, "valid_until").map(|e| (self.local_date(&e.value, "valid_until"), e));
        ok &= valid_from.is_none_or(|(d, _)| d.is_some());
        ok &= valid_until.is_none_or(|(d, _)| d.is_some());
        let valid_from_date = valid_from.and_then(|(d, _)| d);
        let valid_until_date = valid_until.and_then(|(d, _)| d);
        match (
            valid_from_date,
            valid_until.and_then(|(d, e)| Some((d?, e))),
        ) {
            (Some(from), Some((until, until_entry))) if until < from => {
                ok = false;
                self.error(
                    until_entry.value.pos,
                    format!("valid_until ({until}) is before valid_from ({from})"),
                    Some("valid_until is the last day the account may log in".into()),
                );
            }
            (_, Some((until, until_entry))) if until < today => self.diags.warn(
                until_entry.value.pos,
                format!("{what} expired on {until}"),
                Some("it cannot log in; remove it or renew the assignment".into()),
            ),
            _ => {}
        }
        if valid_until.is_none() {
            self.diags.warn(
                entry.key_pos,
                format!("{what} has no valid_until"),
                Some("set the last day of the assignment so access ends by itself".into()),
            );
        }

        let disabled = match get(fields, "disabled") {
            Some(d) => {
                let value = self.boolean(&d.value, "disabled");
                ok &= value.is_some();
                value.unwrap_or(true)
            }
            None => false,
        };

        let assignment = match get(fields, "assignment") {
            None => {
                self.diags.warn(
                    entry.key_pos,
                    format!("{what} has no assignment"),
                    Some(
                        "record the decision that grants the access: assignment = { document = \"...\", date = 2026-01-05, assigned_by = \"...\" }"
                            .into(),
                    ),
                );
                None
            }
            Some(a) => {
                let assignment = self.assignment(&a.value, a.key_pos);
                ok &= assignment.is_some();
                assignment
            }
        };

        let mut networks = Vec::new();
        if let Some(n) = get(fields, "networks") {
            for (text, pos) in self.strings(&n.value, "networks").unwrap_or_default() {
                match text.parse::<IpNet>() {
                    Ok(net) => networks.push(net),
                    Err(error) => {
                        ok = false;
                        self.error(
                            pos,
                            format!("invalid network {text:?}: {error}"),
                            Some(
                                "write CIDR notation, e.g. \"10.1.20.0/24\" or \"127.0.0.1/32\""
                                    .into(),
                            ),
                        );
                    }
                }
            }
        }
        let mut cert_fingerprints = Vec::new();
        if let Some(n) = get(fields, "cert_fingerprints") {
            for (text, pos) in self
                .strings(&n.value, "cert_fingerprints")
                .unwrap_or_default()
            {
                match parse_fingerprint(text) {
                    Some(fp) => cert_fingerprints.push(fp),
                    None => {
                        ok = false;
                        self.error(
                            pos,
                            format!("invalid certificate fingerprint {text:?}"),
                            Some(
                                "write the SHA-256 of the certificate (DER) as 64 hex digits, colons allowed, e.g. from `openssl x509 -noout -fingerprint -sha256`"
                                    .into(),
                            ),
                        );
                    }
                }
            }
        }
        if networks.is_empty() && cert_fingerprints.is_empty() {
            self.diags.warn(
                entry.key_pos,
                format!("{what} may connect from any address"),
                Some(
                    "bind it to its registered machines with networks or cert_fingerprints".into(),
                ),
            );
        }

        let login_hours = get(fields, "login_hours").and_then(|h| {
            let text = self.string(&h.value, "login_hours");
            let parsed = text.and_then(|text| match parse_hours(text) {
                Ok(hours) => Some(hours),
                Err(reason) => {
                    self.error(h.value.pos, reason, Some(
                        "hours are local time in the [policy] timezone; \"22:00-06:00\" spans midnight".into(),
                    ));
                    None
                }
            });
            ok &= parsed.is_some();
            parsed
        });
        let login_days = get(fields, "login_days").and_then(|d| {
            let list = self.strings(&d.value, "login_days")?;
            let mut days = [false; 7];
            let mut days_ok = true;
            for (text, pos) in &list {
                match parse_day(text) {
                    Some(index) => days[index] = true,
                    None => {
                        days_ok = false;
                        self.error(
                            *pos,
                            format!("unknown day {text:?} in login_days"),
                            Some(format!("days are: {}", DAY_NAMES.join(", "))),
                        );
                    }
                }
            }
            if list.is_empty() {
                days_ok = false;
                self.error(
                    d.value.pos,
                    "login_days is empty, so the account could never log in",
                    Some("use disabled = true to switch an account off, or remove login_days to allow every day".into()),
                );
            }
            ok &= days_ok;
            days_ok.then_some(days)
        });
        ok &= get(fields, "login_days").is_none() || login_days.is_some();
        let max_sessions = get(fields, "max_sessions").and_then(|m| {
            let value = self
                .positive(&m.value, "max_sessions")
                .and_then(|v| u32::try_from(v).ok());
            ok &= value.is_some();
            value
        });

        outcome.roles.clone_from(&roles);
        let (Some(name), Some(verifier), Some(roles), true) = (name, verifier, roles, ok) else {
            return outcome;
        };
        outcome.account = Some(Account {
            login: login.clone(),
            name,
            verifier,
            roles,
            attributes,
            valid_from: valid_from_date,
            valid_until: valid_until_date,
            disabled,
            assignment,
            networks,
            cert_fingerprints,
            login_days,
            login_hours,
            max_sessions,
        });
        outcome
    }

    fn assignment(&mut self, node: &Node, key_pos: Pos) -> Option<Assignment> {
        let fields = self.table(node, "assignment")?;
        self.unknown_keys(fields, ASSIGNMENT_KEYS, "assignment");
        let field = |c: &mut Self, key: &str| {
            let found = get(fields, key);
            if found.is_none() {
                c.error(
                    key_pos,
                    format!("assignment has no {key}"),
                    Some("assignment = { document = \"QĐ-123/2026\", date = 2026-01-05, assigned_by = \"...\" }".into()),
                );
            }
            found.map(|e| &e.value)
        };
        let document = field(self, "document").and_then(|n| self.string(n, "document"));
        let date = field(self, "date").and_then(|n| self.local_date(n, "date"));
        let assigned_by = field(self, "assigned_by").and_then(|n| self.string(n, "assigned_by"));
        Some(Assignment {
            document: document?.to_owned(),
            date: date?,
            assigned_by: assigned_by?.to_owned(),
        })
    }

    fn merge_note(&mut self, login: &str, pos: Pos, note: MergeNote) {
        match note {
            MergeNote::VoidGrant {
                table,
                columns,
                granting,
                denying,
                by_default,
            } => self.diags.warn(
                pos,
                format!(
                    "account {login:?}: role {granting:?} grants {table} column(s) {} but role {denying:?} {}, so the grant has no effect",
                    columns.join(", "),
                    if by_default {
                        "does not mention them (denied by default)"
                    } else {
                        "denies them"
                    }
                ),
                Some(format!(
                    "across roles deny wins; allow or mask the columns in role {denying:?} too, or give the account only one of the roles"
                )),
            ),
            MergeNote::MaskConflict {
                table,
                column,
                used,
                ignored,
            } => self.diags.warn(
                pos,
                format!(
                    "account {login:?}: roles {used:?} and {ignored:?} mask {table}.{column} differently; the mask of {used:?} is used"
                ),
                Some("make the roles agree on the mask".into()),
            ),
            MergeNote::DisjointLookupKeys { table } => self.diags.warn(
                pos,
                format!(
                    "account {login:?}: its roles make {table} lookup-only on keys that have nothing in common, so the table is denied"
                ),
                Some("give the roles a common lookup key".into()),
            ),
        }
    }
}

/// Checks run after all accounts are known: unrestricted roles combined with others.
fn account_warnings(validated: &Validated, positions: &BTreeMap<String, Pos>, diags: &mut Diags) {
    for (login, account) in &validated.accounts {
        let unrestricted: Vec<&str> = account
            .roles
            .iter()
            .filter(|r| {
                validated
                    .roles
                    .get(*r)
                    .is_some_and(|role| role.unrestricted)
            })
            .map(String::as_str)
            .collect();
        if !unrestricted.is_empty() && account.roles.len() > 1 {
            if let Some(pos) = positions.get(login) {
                diags.warn(
                    *pos,
                    format!(
                        "account {login:?} holds unrestricted role {:?} together with other roles, which then have no effect",
                        unrestricted[0]
                    ),
                    Some("give break-glass access through a separate account".into()),
                );
            }
        }
    }
}

fn get<'e>(entries: &'e [Entry], key: &str) -> Option<&'e Entry> {
    entries.iter().find(|e| e.key == key)
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

/// `schema.name`, either part in double quotes to keep case or dots.
pub(crate) fn parse_qualified(text: &str) -> Result<QualifiedName, &'static str> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err("unterminated quoted identifier"),
                }
            }
            if part.is_empty() {
                return Err("empty quoted identifier");
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| *c != '.') {
                if !(c.is_alphanumeric() || c == '_' || c == '$') {
                    return Err("unquoted names may only hold letters, digits, _ and $");
                }
                part.push(c.to_lowercase().next().unwrap_or(c));
                chars.next();
            }
            if part.is_empty() {
                return Err("empty name part");
            }
        }
        match maskgate_mask::quote_ident(&part) {
            Ok(_) => {}
            Err(maskgate_mask::QuoteError::IdentifierTooLong { .. }) => {
                return Err("a name part is longer than 63 bytes, which PostgreSQL truncates")
            }
            Err(_) => return Err("names must not contain NUL"),
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(_) => return Err("expected a dot after a quoted identifier"),
        }
    }
    match <[String; 2]>::try_from(parts) {
        Ok([schema, name]) => Ok(QualifiedName { schema, name }),
        Err(_) => Err("expected schema.name"),
    }
}

/// The known word closest to a misspelling, if one is close enough to be a likely typo.
fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.chars().count() / 4))
        .min()
        .map(|(_, k)| k)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        assert_eq!(
            parse_qualified("public.participant"),
            Ok(QualifiedName::new("public", "participant"))
        );
        assert_eq!(
            parse_qualified("Public.Participant"),
            Ok(QualifiedName::new("public", "participant"))
        );
        assert_eq!(
            parse_qualified("public.\"Odd.Name\""),
            Ok(QualifiedName::new("public", "Odd.Name"))
        );
        assert!(parse_qualified("participant").is_err());
        assert!(parse_qualified("a.b.c").is_err());
        assert!(parse_qualified("public.").is_err());
        assert!(parse_qualified("public.part icipant").is_err());
        assert!(parse_qualified("public.\"a\0b\"").is_err());
        assert!(parse_qualified(&format!("public.{}", "x".repeat(63))).is_ok());
        assert!(parse_qualified(&format!("public.{}", "x".repeat(64))).is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("verifer", ACCOUNT_KEYS), Some("verifier"));
        assert_eq!(closest("zzz", ACCOUNT_KEYS), None);
    }
}
