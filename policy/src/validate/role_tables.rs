//! One table of a role: column and label rules, lookup keys, the row filter (own
//! columns and through foreign keys) and a per-table row cap.

use super::*;

/// The classification the checks of a role's table look things up in.
type Classification<'a> = (
    &'a BTreeMap<QualifiedName, TableClass>,
    &'a BTreeMap<String, String>,
);

impl Checker<'_> {
    /// The table's rules, and where its `row_filter_path` is written (if it has one).
    pub(super) fn role_table(
        &mut self,
        role: &str,
        entry: &Entry,
        table: &QualifiedName,
        class: &TableClass,
        (tables, labels): Classification<'_>,
    ) -> Option<(RoleTable, Option<Pos>)> {
        let what = format!("role {role:?} table {table}");
        let fields = self.table(&entry.value, &what)?;
        self.unknown_keys(fields, ROLE_TABLE_KEYS, &what);
        let before = self.diags.error_count();
        let columns = self.column_rules(fields, table, class);
        let label_rules = self.label_rules(fields, class, labels, &columns);
        let lookup_keys = self.lookup_keys(fields, table, class);
        let row_filter = self.row_filter(fields, table, class);
        let path_entry = get(fields, "row_filter_path");
        let row_filter_path = path_entry
            .and_then(|p| self.filter_path(&p.value, table, tables))
            .unwrap_or_default();
        let max_rows = get(fields, "max_rows").and_then(|m| self.table_cap(&m.value));
        let ok = self.diags.error_count() == before;
        ok.then(|| {
            let rt = RoleTable {
                row_filter,
                row_filter_path,
                max_rows,
                lookup_keys,
                labels: label_rules,
                columns,
            };
            (rt, path_entry.map(|p| p.value.pos))
        })
    }

    fn column_rules(
        &mut self,
        fields: &[Entry],
        table: &QualifiedName,
        class: &TableClass,
    ) -> BTreeMap<String, ColumnRule> {
        let column_names: Vec<&str> = class.columns.keys().map(String::as_str).collect();
        let mut columns = BTreeMap::new();
        let Some(c) = get(fields, "columns") else {
            return columns;
        };
        for column in self.table(&c.value, "columns").unwrap_or_default() {
            let Some(class_column) = class.columns.get(&column.key) else {
                self.not_a_column(&column.key, column.key_pos, table, &column_names);
                continue;
            };
            let rule_what = format!("column {}", column.key);
            if let Some(rule) = self.rule(&column.value, &rule_what) {
                if let ColumnRule::Mask(spec) = &rule {
                    self.mask_fits(spec, &column.value, &column.key, class_column);
                }
                columns.insert(column.key.clone(), rule);
            }
        }
        columns
    }

    fn label_rules(
        &mut self,
        fields: &[Entry],
        class: &TableClass,
        labels: &BTreeMap<String, String>,
        columns: &BTreeMap<String, ColumnRule>,
    ) -> BTreeMap<String, ColumnRule> {
        let mut label_rules = BTreeMap::new();
        let Some(l) = get(fields, "labels") else {
            return label_rules;
        };
        for label in self.table(&l.value, "labels").unwrap_or_default() {
            if !labels.contains_key(&label.key) {
                self.unknown_label(&label.key, label.key_pos, labels);
                continue;
            }
            let rule_what = format!("label {}", label.key);
            let Some(rule) = self.rule(&label.value, &rule_what) else {
                continue;
            };
            if let ColumnRule::Mask(spec) = &rule {
                for (column_name, class_column) in &class.columns {
                    if class_column.labels.contains(&label.key)
                        && !columns.contains_key(column_name)
                    {
                        self.mask_fits(spec, &label.value, column_name, class_column);
                    }
                }
            }
            label_rules.insert(label.key.clone(), rule);
        }
        label_rules
    }

    fn lookup_keys(
        &mut self,
        fields: &[Entry],
        table: &QualifiedName,
        class: &TableClass,
    ) -> Vec<String> {
        let column_names: Vec<&str> = class.columns.keys().map(String::as_str).collect();
        let mut lookup_keys = Vec::new();
        if let Some(k) = get(fields, "lookup_keys") {
            for (key, pos) in self.strings(&k.value, "lookup_keys").unwrap_or_default() {
                if class.columns.contains_key(key) {
                    lookup_keys.push(key.to_owned());
                } else {
                    self.not_a_column(key, pos, table, &column_names);
                }
            }
        }
        lookup_keys
    }

    /// The filter over the table's own columns, parsed once here: a validated policy
    /// holds expressions, so nothing about it can fail to parse later.
    fn row_filter(
        &mut self,
        fields: &[Entry],
        table: &QualifiedName,
        class: &TableClass,
    ) -> Option<FilterExpr> {
        let f = get(fields, "row_filter")?;
        let text = self.string(&f.value, "row_filter")?;
        let column_names: Vec<&str> = class.columns.keys().map(String::as_str).collect();
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
        if !problems.is_empty() {
            return None;
        }
        match filter::parse(text) {
            Some(expr) => Some(FilterExpr {
                text: text.to_owned(),
                expr,
            }),
            None => {
                self.error(f.value.pos, "row_filter does not parse", None);
                None
            }
        }
    }

    /// `max_rows = <n>` or `max_rows = "none"` for a table without personal data.
    fn table_cap(&mut self, node: &Node) -> Option<TableCap> {
        match &node.value {
            NodeValue::Str(s) if s == "none" => Some(TableCap::Exempt),
            NodeValue::Int(_) => self.positive(node, "max_rows").map(TableCap::Rows),
            other => {
                self.error(
                    node.pos,
                    format!(
                        "a table's max_rows must be a positive integer or \"none\", found {}",
                        other.type_name()
                    ),
                    Some(
                        "\"none\" exempts a table without personal data (a list of provinces) \
                         from the role's max_rows"
                            .into(),
                    ),
                );
                None
            }
        }
    }
}
