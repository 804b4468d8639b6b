//! System relations that drivers read for type and schema introspection.
//!
//! Each one holds metadata only: names, types, OIDs, constraints. Relations that show
//! data values (`pg_stats`, `pg_statistic`), other sessions' statements
//! (`pg_stat_activity`, `pg_stat_statements`), secrets (`pg_authid`, `pg_shadow`,
//! `pg_user_mappings`) or server settings (`pg_settings`, which includes the pseudonym
//! keys if they are kept there) are not on the list and are therefore denied. Those
//! that list tables, columns, indexes, constraints, types or comments are read
//! through filters ([`pg`] and [`FILTERED_VIEWS`]) keeping only what the account may
//! see.

use maskgate_mask::{quote_ident, quote_literal};

pub(crate) mod pg;

/// `pg_catalog` relations a restricted account may read.
const PG_CATALOG: &[&str] = &[
    "pg_am",
    "pg_attrdef",
    "pg_attribute",
    "pg_cast",
    "pg_class",
    "pg_collation",
    "pg_constraint",
    "pg_database",
    "pg_description",
    "pg_enum",
    "pg_index",
    "pg_inherits",
    "pg_namespace",
    "pg_opclass",
    "pg_operator",
    "pg_policy",
    "pg_proc",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_range",
    "pg_roles",
    "pg_sequence",
    "pg_statistic_ext",
    "pg_tables",
    "pg_tablespace",
    "pg_trigger",
    "pg_type",
];

/// `information_schema` views a restricted account may read.
const INFORMATION_SCHEMA: &[&str] = &[
    "columns",
    "key_column_usage",
    "referential_constraints",
    "schemata",
    "table_constraints",
    "tables",
];

/// `information_schema` views that name tables (and columns): a reference to one becomes
/// a fenced subquery keeping only the rows of what the account may see.
pub(crate) const FILTERED_VIEWS: &[&str] = &[
    "columns",
    "key_column_usage",
    "referential_constraints",
    "table_constraints",
    "tables",
];

/// The filtering subquery for one of [`FILTERED_VIEWS`]. `tables` are the account's
/// tables with the columns it may see (allowed or masked). Behind `OFFSET 0`, like the
/// masking subqueries, so the user's predicates never run on the hidden rows.
///
/// Names are written by [`quote_literal`] and [`quote_ident`]. A name neither can write
/// (NUL, or over 63 bytes) names no catalog row, so leaving it out of the lists keeps
/// exactly the rows the full list would keep.
pub(crate) fn filtered_view(view: &str, tables: &[(&str, &str, Vec<&str>)]) -> String {
    let tuple = |names: &[&str]| -> Option<String> {
        let literals: Result<Vec<String>, _> = names.iter().map(|n| quote_literal(n)).collect();
        Some(format!("({})", literals.ok()?.join(", ")))
    };
    let rows: Vec<String> = tables
        .iter()
        .filter_map(|(schema, name, _)| tuple(&[*schema, *name]))
        .collect();
    let table_set = if rows.is_empty() {
        "false".to_owned()
    } else {
        format!(
            "(\"table_schema\", \"table_name\") IN (VALUES {})",
            rows.join(", ")
        )
    };
    let rows: Vec<String> = tables
        .iter()
        .flat_map(|(schema, name, columns)| {
            columns
                .iter()
                .filter_map(move |column| tuple(&[*schema, *name, *column]))
        })
        .collect();
    let column_set = if rows.is_empty() {
        "false".to_owned()
    } else {
        format!(
            "(\"table_schema\", \"table_name\", \"column_name\") IN (VALUES {})",
            rows.join(", ")
        )
    };
    let constraints = format!(
        "SELECT \"constraint_schema\", \"constraint_name\" \
         FROM \"information_schema\".\"table_constraints\" WHERE {table_set}"
    );
    let filter = match view {
        "columns" | "key_column_usage" => column_set,
        "referential_constraints" => format!(
            "(\"constraint_schema\", \"constraint_name\") IN ({constraints}) \
             AND (\"unique_constraint_schema\", \"unique_constraint_name\") IN ({constraints})"
        ),
        _ => table_set,
    };
    // `view` is one of the fixed names above; a name that cannot be quoted selects nothing.
    match quote_ident(view) {
        Ok(view) => format!("SELECT * FROM \"information_schema\".{view} WHERE {filter} OFFSET 0"),
        Err(_) => "SELECT * FROM \"information_schema\".\"tables\" WHERE false OFFSET 0".to_owned(),
    }
}

/// Whether `schema.name` is an allowed system relation.
pub(crate) fn is_allowed(schema: &str, name: &str) -> bool {
    match schema {
        "pg_catalog" => PG_CATALOG.contains(&name),
        "information_schema" => INFORMATION_SCHEMA.contains(&name),
        _ => false,
    }
}

/// Whether `schema` is a system schema, whose relations are never policy tables.
pub(crate) fn is_system_schema(schema: &str) -> bool {
    matches!(schema, "pg_catalog" | "information_schema" | "pg_toast")
        || schema.starts_with("pg_temp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harmless_metadata_is_allowed_and_statistics_are_not() {
        assert!(is_allowed("pg_catalog", "pg_type"));
        assert!(is_allowed("information_schema", "columns"));
        for name in [
            "pg_stats",
            "pg_statistic",
            "pg_authid",
            "pg_shadow",
            "pg_settings",
            "pg_stat_activity",
            "pg_user_mappings",
        ] {
            assert!(!is_allowed("pg_catalog", name), "{name}");
        }
        assert!(!is_allowed("public", "pg_type"));
    }

    #[test]
    fn filtered_views_list_only_visible_tables_and_columns() {
        let tables = [("public", "o'k", vec!["id", "name"])];
        let sql = filtered_view("columns", &tables);
        assert_eq!(
            sql,
            "SELECT * FROM \"information_schema\".\"columns\" WHERE \
             (\"table_schema\", \"table_name\", \"column_name\") IN \
             (VALUES ('public', 'o''k', 'id'), ('public', 'o''k', 'name')) OFFSET 0"
        );
        let tables = [
            ("public", "a\\b", vec!["id"]),
            ("public", "nul\0", vec!["id"]),
        ];
        assert_eq!(
            filtered_view("tables", &tables),
            "SELECT * FROM \"information_schema\".\"tables\" WHERE \
             (\"table_schema\", \"table_name\") IN (VALUES ('public', E'a\\\\b')) OFFSET 0"
        );
        assert_eq!(
            filtered_view("tables", &[("public", "nul\0", vec![])]),
            "SELECT * FROM \"information_schema\".\"tables\" WHERE false OFFSET 0"
        );
        assert_eq!(
            filtered_view("tables", &[]),
            "SELECT * FROM \"information_schema\".\"tables\" WHERE false OFFSET 0"
        );
        for view in FILTERED_VIEWS {
            assert!(is_allowed("information_schema", view), "{view}");
        }
    }
}
