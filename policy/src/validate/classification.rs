//! The data classification: tables, their columns, types and labels.

use super::*;

impl Checker<'_> {
    pub(super) fn table_class(
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
            if let Some(c) = get(spec, "canaries") {
                for (value, _) in self.strings(&c.value, "canaries").unwrap_or_default() {
                    self.canaries.push(Canary {
                        table: name.clone(),
                        column: column.key.clone(),
                        value: value.to_owned(),
                    });
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

    pub(super) fn unknown_label(
        &mut self,
        label: &str,
        pos: Pos,
        labels: &BTreeMap<String, String>,
    ) {
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
}

#[cfg(test)]
mod canary_tests {
    use crate::{Policy, PolicySettings};

    #[test]
    fn canary_values_are_kept_with_their_column() {
        let text = r#"
[labels]
"pii.identifier" = "Citizen ID"
[tables."public.person".columns]
id = { type = "bigint" }
citizen_id = { type = "char(12)", labels = ["pii.identifier"], canaries = ["999000000001", "999000000002"] }
"#;
        let loaded = Policy::from_texts(
            vec![("c.toml".into(), text.into())],
            PolicySettings::default(),
            time::macros::date!(2026 - 01 - 01),
        )
        .unwrap();
        let canaries = loaded.policy.canaries();
        assert_eq!(canaries.len(), 2);
        assert_eq!(canaries[0].table.to_string(), "public.person");
        assert_eq!(canaries[0].column, "citizen_id");
        assert_eq!(canaries[1].value, "999000000002");
    }
}
