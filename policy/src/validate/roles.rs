//! Roles: statement kinds, caps and quotas, and each table's row filter and column rules.

use super::*;

impl Checker<'_> {
    pub(super) fn role(
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
                                Some(
                                    "statements are any of: read, insert, update, delete, export"
                                        .into(),
                                ),
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
        let channels = match get(fields, "channels") {
            None => BTreeSet::new(),
            Some(c) => {
                let mut channels = BTreeSet::new();
                for (channel, pos) in self.strings(&c.value, "channels").unwrap_or_default() {
                    if is_channel_name(channel) {
                        channels.insert(channel.to_owned());
                    } else {
                        ok = false;
                        self.error(
                            pos,
                            format!("channel {channel:?} of role {name:?} is not a plain name"),
                            Some(
                                "a channel is lower-case letters, digits and _, starting with a \
                                 letter or _, at most 63 bytes: the name LISTEN folds it to"
                                    .into(),
                            ),
                        );
                    }
                }
                channels
            }
        };

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
            channels,
            tables: role_tables,
        };
        (ok.then_some(role), needed)
    }

    pub(super) fn role_table(
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
    pub(super) fn inside_string(&self, node: &Node, value: &str, offset: usize) -> Option<Pos> {
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

    pub(super) fn not_a_column(
        &mut self,
        column: &str,
        pos: Pos,
        table: &QualifiedName,
        known: &[&str],
    ) {
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
    pub(super) fn rule(&mut self, node: &Node, what: &str) -> Option<ColumnRule> {
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

    pub(super) fn mask_fits(
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
}

/// A channel name as `LISTEN name` folds an unquoted name: what a policy may list.
fn is_channel_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 63
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
