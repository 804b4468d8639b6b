//! `maskgate policy check --live`: the classification against the upstream catalog.
//!
//! The policy is checked offline against itself; only the database knows whether
//! the tables it classifies exist and have the declared types. A mask checked
//! against a declared `text` column that is really a `date` would be rejected by
//! PostgreSQL at the first query, so the mismatch is reported before serving.

use std::collections::BTreeMap;
use std::fmt;

use maskgate_mask::{quote_literal, QuoteError};
use maskgate_policy::{Policy, QualifiedName, Severity, TableClass, TableKind};

use crate::upstream::{UpstreamConn, UpstreamError};

/// One difference between the classification and the database. The catalog has
/// no file positions, so a finding names the table (and column) instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogFinding {
    /// Errors mean the policy does not describe the database; warnings are
    /// columns the policy does not mention (denied to restricted roles).
    pub severity: Severity,
    /// The classified table.
    pub table: QualifiedName,
    /// The column, for column findings.
    pub column: Option<String>,
    /// What differs.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl fmt::Display for CatalogFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.table)?;
        if let Some(column) = &self.column {
            write!(f, ".{column}")?;
        }
        write!(f, ": {}: {}", self.severity, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// What the catalog says about one relation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Relation {
    /// `pg_class.relkind`.
    relkind: String,
    /// `(attname, format_type(atttypid, atttypmod))` in column order.
    columns: Vec<(String, String)>,
}

/// Checks every classified table against the catalog of the database `conn` is
/// connected to: the relation exists with the declared kind, every classified
/// column exists with the declared type, and columns the policy does not list are
/// reported as warnings. The names are quoted by [`quote_literal`], which means
/// the same under either `standard_conforming_strings`.
pub async fn check_catalog(
    policy: &Policy,
    conn: &mut UpstreamConn,
) -> Result<Vec<CatalogFinding>, UpstreamError> {
    let mut findings = Vec::new();
    for (name, class) in policy.tables() {
        // A name no literal can hold (NUL) names no relation either.
        let relation = match relation_query(name) {
            Ok(sql) => relation_from_rows(conn.query_rows(&sql).await?),
            Err(_) => None,
        };
        findings.extend(compare(name, class, relation.as_ref()));
    }
    findings.extend(check_path_keys(policy, conn).await?);
    Ok(findings)
}

/// Every column a `row_filter_path` step refers to must be a primary key or carry a
/// unique constraint (or a unique index without a predicate or expression) on its own:
/// a child row references one parent, whose filter decides.
async fn check_path_keys(
    policy: &Policy,
    conn: &mut UpstreamConn,
) -> Result<Vec<CatalogFinding>, UpstreamError> {
    let mut keys = std::collections::BTreeSet::new();
    for role in policy.roles().values() {
        for table in role.tables.values() {
            for hop in &table.row_filter_path {
                keys.insert((hop.table.clone(), hop.key.clone()));
            }
        }
    }
    let mut findings = Vec::new();
    for (table, key) in keys {
        let Ok(sql) = unique_key_query(&table, &key) else {
            continue;
        };
        let unique = conn
            .query_rows(&sql)
            .await?
            .first()
            .and_then(|row| row.first().cloned().flatten())
            .is_some_and(|v| v == "t");
        if !unique {
            findings.push(CatalogFinding {
                severity: Severity::Error,
                table,
                column: Some(key),
                message: "a row_filter_path refers to this column, which is neither a primary \
                          key nor unique on its own"
                    .to_owned(),
                hint: Some(
                    "refer to the parent's primary key, or add a unique constraint on the column"
                        .to_owned(),
                ),
            });
        }
    }
    Ok(findings)
}

fn unique_key_query(table: &QualifiedName, key: &str) -> Result<String, QuoteError> {
    Ok(format!(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
           JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
           JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] \
          WHERE n.nspname = {} AND c.relname = {} AND a.attname = {} \
            AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL)",
        quote_literal(&table.schema)?,
        quote_literal(&table.name)?,
        quote_literal(key)?
    ))
}

fn relation_query(name: &QualifiedName) -> Result<String, QuoteError> {
    Ok(format!(
        "SELECT c.relkind::text, a.attname::text, \
                pg_catalog.format_type(a.atttypid, a.atttypmod) \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_catalog.pg_attribute a \
           ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         WHERE n.nspname = {} AND c.relname = {} \
         ORDER BY a.attnum",
        quote_literal(&name.schema)?,
        quote_literal(&name.name)?
    ))
}

/// No rows: no such relation. A relation without columns yields one row of NULLs
/// for the column part (the LEFT JOIN).
fn relation_from_rows(rows: Vec<Vec<Option<String>>>) -> Option<Relation> {
    let mut relation: Option<Relation> = None;
    for mut row in rows {
        row.resize(3, None);
        let mut values = row.into_iter();
        let (relkind, attname, pg_type) = (values.next()?, values.next()?, values.next()?);
        let relation = relation.get_or_insert_with(|| Relation {
            relkind: relkind.unwrap_or_default(),
            columns: Vec::new(),
        });
        if let (Some(attname), Some(pg_type)) = (attname, pg_type) {
            relation.columns.push((attname, pg_type));
        }
    }
    relation
}

fn kind_of(relkind: &str) -> Option<TableKind> {
    match relkind {
        // Ordinary, partitioned and foreign tables are all queried like tables.
        "r" | "p" | "f" => Some(TableKind::Table),
        "v" => Some(TableKind::View),
        "m" => Some(TableKind::MaterializedView),
        _ => None,
    }
}

/// The `format_type()` spelling of a type, so `varchar(50)` and
/// `character varying(50)` compare equal; types the mask catalog does not know
/// are compared as written, ignoring case and spacing.
fn normalize_type(pg_type: &str) -> String {
    match maskgate_mask::parse_pg_type(pg_type) {
        Some(parsed) => parsed.canonical,
        None => pg_type
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase(),
    }
}

fn compare(
    name: &QualifiedName,
    class: &TableClass,
    relation: Option<&Relation>,
) -> Vec<CatalogFinding> {
    let finding = |severity, column: Option<&str>, message: String, hint: &str| CatalogFinding {
        severity,
        table: name.clone(),
        column: column.map(str::to_owned),
        message,
        hint: Some(hint.to_owned()),
    };
    let Some(relation) = relation else {
        return vec![finding(
            Severity::Error,
            None,
            format!("the database has no table or view {name}"),
            "check the schema and the name (unquoted names are stored in lower case), \
             or remove the table from the classification",
        )];
    };
    let mut findings = Vec::new();
    match kind_of(&relation.relkind) {
        Some(kind) if kind == class.kind => {}
        Some(kind) => findings.push(finding(
            Severity::Error,
            None,
            format!(
                "{name} is a {} in the database, but the classification says kind = \"{}\"",
                describe(kind),
                class.kind
            ),
            &format!("set kind = \"{kind}\" for this table"),
        )),
        None => {
            findings.push(finding(
                Severity::Error,
                None,
                format!(
                    "{name} is not a table or view in the database (relkind {:?})",
                    relation.relkind
                ),
                "classify only tables, views and materialized views",
            ));
            return findings;
        }
    }
    let actual: BTreeMap<&str, &str> = relation
        .columns
        .iter()
        .map(|(column, pg_type)| (column.as_str(), pg_type.as_str()))
        .collect();
    for (column, declared) in &class.columns {
        match actual.get(column.as_str()) {
            None => findings.push(finding(
                Severity::Error,
                Some(column),
                format!("the database has no column {column} in {name}"),
                "check the spelling, or remove the column from the classification",
            )),
            Some(real) if normalize_type(real) != normalize_type(&declared.pg_type) => findings
                .push(finding(
                    Severity::Error,
                    Some(column),
                    format!(
                        "declared type {} but the database has {real}",
                        declared.pg_type
                    ),
                    &format!(
                        "set type = \"{real}\" and check that the column's rules still fit it"
                    ),
                )),
            Some(_) => {}
        }
    }
    for (column, _) in &relation.columns {
        if !class.columns.contains_key(column) {
            findings.push(finding(
                Severity::Warning,
                Some(column),
                "not classified: denied to restricted roles".to_owned(),
                "classify the column if a role should read it",
            ));
        }
    }
    findings
}

fn describe(kind: TableKind) -> &'static str {
    match kind {
        TableKind::Table => "table",
        TableKind::View => "view",
        TableKind::MaterializedView => "materialized view",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maskgate_policy::ColumnClass;

    fn class(kind: TableKind, columns: &[(&str, &str)]) -> TableClass {
        TableClass {
            kind,
            columns: columns
                .iter()
                .map(|(c, t)| {
                    (
                        c.to_string(),
                        ColumnClass {
                            pg_type: t.to_string(),
                            labels: Vec::new(),
                        },
                    )
                })
                .collect(),
        }
    }

    fn relation(relkind: &str, columns: &[(&str, &str)]) -> Relation {
        Relation {
            relkind: relkind.into(),
            columns: columns
                .iter()
                .map(|(c, t)| (c.to_string(), t.to_string()))
                .collect(),
        }
    }

    fn name() -> QualifiedName {
        QualifiedName::new("public", "participant")
    }

    #[test]
    fn matching_table_has_no_findings() {
        let declared = class(
            TableKind::Table,
            &[
                ("id", "bigint"),
                ("code", "char(12)"),
                ("tax", "varchar(14)"),
            ],
        );
        let real = relation(
            "r",
            &[
                ("id", "bigint"),
                ("code", "character(12)"),
                ("tax", "character varying(14)"),
            ],
        );
        assert_eq!(compare(&name(), &declared, Some(&real)), vec![]);
    }

    #[test]
    fn missing_table_is_one_error() {
        let declared = class(TableKind::Table, &[("id", "bigint")]);
        let findings = compare(&name(), &declared, None);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].severity, Severity::Error);
        assert!(findings[0]
            .to_string()
            .starts_with("public.participant: error:"));
    }

    #[test]
    fn column_differences_are_named() {
        let declared = class(
            TableKind::Table,
            &[("id", "bigint"), ("phone", "text"), ("born", "date")],
        );
        let real = relation(
            "r",
            &[("id", "integer"), ("born", "date"), ("note", "jsonb")],
        );
        let findings: Vec<String> = compare(&name(), &declared, Some(&real))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(findings.len(), 3, "{findings:#?}");
        assert!(findings[0].starts_with(
            "public.participant.id: error: declared type bigint but the database has integer"
        ));
        assert!(findings[1]
            .starts_with("public.participant.phone: error: the database has no column phone"));
        assert!(findings[2].starts_with("public.participant.note: warning: not classified"));
    }

    #[test]
    fn kind_must_match() {
        let declared = class(TableKind::Table, &[]);
        let findings = compare(&name(), &declared, Some(&relation("v", &[])));
        assert_eq!(findings.len(), 1);
        assert!(
            findings[0].message.contains("is a view"),
            "{:?}",
            findings[0]
        );
        let findings = compare(&name(), &declared, Some(&relation("S", &[])));
        assert!(findings[0].message.contains("not a table or view"));
        let partitioned = compare(&name(), &declared, Some(&relation("p", &[])));
        assert!(partitioned.is_empty());
    }

    #[test]
    fn rows_become_a_relation() {
        assert_eq!(relation_from_rows(vec![]), None);
        let empty = relation_from_rows(vec![vec![Some("v".into()), None, None]]).unwrap();
        assert_eq!(empty, relation("v", &[]));
        let two = relation_from_rows(vec![
            vec![Some("r".into()), Some("id".into()), Some("bigint".into())],
            vec![Some("r".into()), Some("name".into()), Some("text".into())],
        ])
        .unwrap();
        assert_eq!(two, relation("r", &[("id", "bigint"), ("name", "text")]));
    }

    #[test]
    fn names_are_quoted_as_literals() {
        let q = relation_query(&QualifiedName::new("public", "o'brien")).unwrap();
        assert!(q.contains("c.relname = 'o''brien'"), "{q}");
        let q = relation_query(&QualifiedName::new("public", "a\\b")).unwrap();
        assert!(q.contains("c.relname = E'a\\\\b'"), "{q}");
        assert!(relation_query(&QualifiedName::new("public", "a\0")).is_err());
    }

    #[test]
    fn unknown_types_compare_as_written() {
        assert_eq!(normalize_type("UUID"), "uuid");
        assert_eq!(normalize_type("int4"), "integer");
        assert_ne!(normalize_type("text[]"), normalize_type("text"));
    }
}
