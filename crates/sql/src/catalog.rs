//! System relations that drivers read for type and schema introspection.
//!
//! Each one holds metadata only: names, types, OIDs, constraints. Relations that show
//! data values (`pg_stats`, `pg_statistic`), other sessions' statements
//! (`pg_stat_activity`, `pg_stat_statements`), secrets (`pg_authid`, `pg_shadow`,
//! `pg_user_mappings`) or server settings (`pg_settings`, which includes the pseudonym
//! keys if they are kept there) are not on the list and are therefore denied.

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
    "pg_proc",
    "pg_range",
    "pg_tables",
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
}
