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
        let Some(fields) = self.table(&entry.value, &what) else {
            return (None, Vec::new());
        };
        self.unknown_keys(fields, ROLE_KEYS, &what);
        let before = self.diags.error_count();
        let description = get(fields, "description")
            .and_then(|d| self.string(&d.value, "description"))
            .map(str::to_owned);
        let unrestricted = match get(fields, "unrestricted") {
            Some(u) => self.boolean(&u.value, "unrestricted").unwrap_or(false),
            None => false,
        };
        let statements = self.statement_kinds(fields, name, unrestricted);
        let mut limit = |key: &str| -> Option<u64> {
            let node = &get(fields, key)?.value;
            self.positive(node, key)
        };
        let max_rows = limit("max_rows");
        let max_rows_per_session = limit("max_rows_per_session");
        let rows_per_hour = limit("rows_per_hour");
        let statements_per_minute = limit("statements_per_minute");
        let over_cap = self.over_cap(fields);
        let mode = self.mode(fields);
        let channels = self.channels(fields, name);
        let (role_tables, needed) = self.role_tables(fields, name, tables, labels);
        let role = Role {
            name: name.clone(),
            description,
            statements,
            max_rows,
            max_rows_per_session,
            over_cap,
            rows_per_hour,
            statements_per_minute,
            unrestricted,
            mode,
            channels,
            tables: role_tables,
        };
        let ok = self.diags.error_count() == before;
        (ok.then_some(role), needed)
    }

    fn statement_kinds(
        &mut self,
        fields: &[Entry],
        role: &str,
        unrestricted: bool,
    ) -> StatementKinds {
        let Some(s) = get(fields, "statements") else {
            return if unrestricted {
                StatementKind::ALL.into_iter().collect()
            } else {
                [StatementKind::Read].into_iter().collect()
            };
        };
        let mut kinds = StatementKinds::default();
        for (word, pos) in self.strings(&s.value, "statements").unwrap_or_default() {
            match StatementKind::parse(word) {
                Some(kind) => kinds.insert(kind),
                None => self.error(
                    pos,
                    format!("unknown statement kind {word:?} in role {role:?}"),
                    Some("statements are any of: read, insert, update, delete, export".into()),
                ),
            }
        }
        kinds
    }

    fn over_cap(&mut self, fields: &[Entry]) -> OverCap {
        let Some(entry) = get(fields, "over_cap") else {
            return OverCap::default();
        };
        match self.string(&entry.value, "over_cap") {
            Some("partial") => OverCap::Partial,
            Some("refuse") => OverCap::Refuse,
            Some(other) => {
                self.error(
                    entry.value.pos,
                    format!("unknown over_cap {other:?}"),
                    Some(
                        "over_cap is \"partial\" (the rows up to the cap, then an error) or \
                         \"refuse\" (only the error, before any row is sent)"
                            .into(),
                    ),
                );
                OverCap::default()
            }
            None => OverCap::default(),
        }
    }

    fn mode(&mut self, fields: &[Entry]) -> RoleMode {
        let Some(entry) = get(fields, "mode") else {
            return RoleMode::default();
        };
        match self.string(&entry.value, "mode") {
            Some("enforce") => RoleMode::Enforce,
            Some("monitor") => RoleMode::Monitor,
            Some(other) => {
                self.error(
                    entry.value.pos,
                    format!("unknown mode {other:?}"),
                    Some(
                        "mode is \"enforce\" (the default) or \"monitor\" (statements run as \
                         sent; what enforcing them would do is recorded)"
                            .into(),
                    ),
                );
                RoleMode::default()
            }
            None => RoleMode::default(),
        }
    }

    fn channels(&mut self, fields: &[Entry], role: &str) -> BTreeSet<String> {
        let mut channels = BTreeSet::new();
        let Some(c) = get(fields, "channels") else {
            return channels;
        };
        for (channel, pos) in self.strings(&c.value, "channels").unwrap_or_default() {
            if is_channel_name(channel) {
                channels.insert(channel.to_owned());
            } else {
                self.error(
                    pos,
                    format!("channel {channel:?} of role {role:?} is not a plain name"),
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

    /// The role's tables, each checked, and the attributes their filters use. A path
    /// must end at a table the same role grants: that table's filter is what it applies.
    fn role_tables(
        &mut self,
        fields: &[Entry],
        role: &str,
        tables: &BTreeMap<QualifiedName, TableClass>,
        labels: &BTreeMap<String, String>,
    ) -> (BTreeMap<QualifiedName, RoleTable>, NeededAttributes) {
        let mut role_tables = BTreeMap::new();
        let mut needed = Vec::new();
        let mut path_positions = Vec::new();
        let Some(t) = get(fields, "tables") else {
            return (role_tables, needed);
        };
        for table_entry in self.table(&t.value, "tables").unwrap_or_default() {
            let Some(table_name) = self.qualified_name(table_entry) else {
                continue;
            };
            let Some(class) = tables.get(&table_name) else {
                let known: Vec<String> = tables.keys().map(|t| t.to_string()).collect();
                let known: Vec<&str> = known.iter().map(String::as_str).collect();
                self.error(
                    table_entry.key_pos,
                    format!("role {role:?} refers to table {table_name}, which is not classified"),
                    Some(format!(
                        "classify it under [tables.\"{table_name}\"] or fix the name; classified tables: {}",
                        list_or_none(&known)
                    )),
                );
                continue;
            };
            let before = self.diags.error_count();
            let checked = self.role_table(role, table_entry, &table_name, class, (tables, labels));
            if let Some((rt, path_pos)) = checked {
                if let Some(f) = &rt.row_filter {
                    for attribute in filter::attributes(&f.text) {
                        needed.push((table_name.clone(), attribute));
                    }
                }
                if self.diags.error_count() == before {
                    if let Some(pos) = path_pos {
                        path_positions.push((table_name.clone(), pos));
                    }
                    role_tables.insert(table_name, rt);
                }
            }
        }
        for (table, pos) in path_positions {
            self.path_end(role, &table, pos, &role_tables);
        }
        (role_tables, needed)
    }

    /// The last step of `table`'s path must be a table `role` grants; a parent the
    /// role reads unfiltered keeps every row that has a parent (warning).
    fn path_end(
        &mut self,
        role: &str,
        table: &QualifiedName,
        pos: Pos,
        role_tables: &BTreeMap<QualifiedName, RoleTable>,
    ) {
        let Some(last) = role_tables[table].row_filter_path.last() else {
            return;
        };
        match role_tables.get(&last.table) {
            None => self.error(
                pos,
                format!(
                    "the row_filter_path of role {role:?} on {table} ends at {}, which the role does not grant",
                    last.table
                ),
                Some(format!(
                    "grant {} in role {role:?}: its row filter is what the path applies",
                    last.table
                )),
            ),
            Some(parent) if parent.row_filter.is_none() && parent.row_filter_path.is_empty() => {
                self.diags.warn(
                    pos,
                    format!(
                        "role {role:?} reads {} without a row filter, so the row_filter_path on {table} only keeps rows that have a parent",
                        last.table
                    ),
                    Some(format!("give {} a row filter in role {role:?}, or drop the path", last.table)),
                )
            }
            Some(_) => {}
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
