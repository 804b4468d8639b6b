//! Built-in functions a restricted account may call.
//!
//! Each one computes from its arguments only: it cannot run SQL text, read files, large
//! objects or settings, reach other sessions or servers, or change state. Because masks
//! are applied before anything else sees the data, such functions can only ever see
//! masked values of in-scope rows. Everything not listed is denied (fail closed), which
//! covers `query_to_xml` and friends, `pg_read_file`, `pg_ls_dir`, `lo_*`, `dblink*`,
//! `set_config`, `current_setting` (it could read the pseudonym keys),
//! `pg_terminate_backend`, `pg_cancel_backend`, `nextval`, `pg_notify`...

/// Scalar, aggregate and window functions allowed anywhere in an expression.
const SCALAR: &[&str] = &[
    // aggregates
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bool_and",
    "bool_or",
    "count",
    "every",
    "json_agg",
    "json_object_agg",
    "jsonb_agg",
    "jsonb_object_agg",
    "max",
    "min",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "sum",
    "variance",
    "var_pop",
    "var_samp",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_slope",
    "regr_intercept",
    "regr_count",
    "regr_r2",
    // window
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    // strings
    "ascii",
    "btrim",
    "char_length",
    "character_length",
    "chr",
    "concat",
    "concat_ws",
    "format",
    "initcap",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "md5",
    "octet_length",
    "overlay",
    "position",
    "regexp_count",
    "regexp_instr",
    "regexp_like",
    "regexp_match",
    "regexp_replace",
    "regexp_substr",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "substring",
    "to_hex",
    "translate",
    "trim",
    "upper",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "normalize",
    "unistr",
    "string_to_array",
    "array_to_string",
    "to_char",
    "to_number",
    "to_date",
    "to_timestamp",
    "encode",
    "decode",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    // math
    "abs",
    "cbrt",
    "ceil",
    "ceiling",
    "degrees",
    "div",
    "exp",
    "factorial",
    "floor",
    "gcd",
    "lcm",
    "ln",
    "log",
    "log10",
    "mod",
    "pi",
    "power",
    "radians",
    "round",
    "scale",
    "sign",
    "sqrt",
    "trunc",
    "width_bucket",
    "greatest",
    "least",
    "random",
    "acos",
    "asin",
    "atan",
    "atan2",
    "cos",
    "cot",
    "sin",
    "tan",
    "min_scale",
    "trim_scale",
    // date and time
    "age",
    "clock_timestamp",
    "current_date",
    "current_time",
    "current_timestamp",
    "date_bin",
    "date_part",
    "date_trunc",
    "extract",
    "isfinite",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "localtime",
    "localtimestamp",
    "make_date",
    "make_interval",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "now",
    "statement_timestamp",
    "timeofday",
    "transaction_timestamp",
    "timezone",
    // conditionals and misc
    "coalesce",
    "nullif",
    "num_nulls",
    "num_nonnulls",
    "current_user",
    "session_user",
    "user",
    "current_schema",
    "current_catalog",
    "current_database",
    "version",
    "pg_typeof",
    "gen_random_uuid",
    // session housekeeping: releases only this session's own advisory locks (pools
    // call it when a connection is returned)
    "pg_advisory_unlock_all",
    // catalog helpers drivers and tools call; those that print an object's name or
    // definition from its OID are guarded by `catalog::pg::GUARDED` instead
    "current_schemas",
    "pg_get_userbyid",
    "pg_encoding_to_char",
    "pg_char_to_encoding",
    "pg_my_temp_schema",
    "pg_is_other_temp_schema",
    "pg_partition_ancestors",
    "pg_partition_root",
    // name -> OID lookups (NULL when nothing has the name); the filtered catalog
    // lists what the account may see of the object
    "pg_get_serial_sequence",
    // set-returning functions PostgreSQL also accepts in a select list
    "unnest",
    "generate_subscripts",
    "generate_series",
    "pg_collation_is_visible",
    "to_regclass",
    "to_regtype",
    "to_regnamespace",
    "to_regproc",
    "to_regprocedure",
    "information_schema._pg_expandarray",
    // json
    "to_json",
    "to_jsonb",
    "row_to_json",
    "array_to_json",
    "json_build_array",
    "json_build_object",
    "jsonb_build_array",
    "jsonb_build_object",
    "json_object",
    "jsonb_object",
    "json_typeof",
    "jsonb_typeof",
    "json_array_length",
    "jsonb_array_length",
    "json_extract_path",
    "json_extract_path_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_set",
    "jsonb_insert",
    "jsonb_pretty",
    "jsonb_strip_nulls",
    "json_strip_nulls",
    "jsonb_path_exists",
    "jsonb_path_match",
    "jsonb_path_query_first",
    "jsonb_path_query_array",
    // arrays
    "array",
    "array_append",
    "array_cat",
    "array_dims",
    "array_length",
    "array_lower",
    "array_ndims",
    "array_position",
    "array_positions",
    "array_prepend",
    "array_remove",
    "array_replace",
    "array_upper",
    "cardinality",
    "trim_array",
];

/// Set-returning functions allowed in FROM.
const TABLE: &[&str] = &[
    "generate_series",
    "generate_subscripts",
    "unnest",
    "json_each",
    "json_each_text",
    "jsonb_each",
    "jsonb_each_text",
    "json_array_elements",
    "json_array_elements_text",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "regexp_matches",
    "regexp_split_to_table",
    "string_to_table",
    "jsonb_path_query",
    "json_object_keys",
    "jsonb_object_keys",
    "information_schema._pg_expandarray",
    "pg_partition_ancestors",
];

/// Whether a scalar, aggregate or window function is allowed. `name` is folded.
pub(crate) fn scalar_allowed(name: &str) -> bool {
    SCALAR.contains(&name)
}

/// Whether a set-returning function is allowed in FROM. `name` is folded.
pub(crate) fn table_allowed(name: &str) -> bool {
    TABLE.contains(&name)
}

/// Type names sqlparser does not know as its own data types but which are safe to
/// cast to: their input functions only parse text.
pub(crate) fn custom_type_allowed(name: &str) -> bool {
    matches!(
        name,
        "int2"
            | "int4"
            | "int8"
            | "float4"
            | "float8"
            | "bpchar"
            | "varchar"
            | "timestamptz"
            | "timetz"
            | "oid"
            | "name"
            | "regclass"
            | "regtype"
            | "xid"
            | "inet"
            | "cidr"
            | "macaddr"
            | "tsvector"
            | "tsquery"
            | "int4range"
            | "int8range"
            | "numrange"
            | "daterange"
            | "tsrange"
            | "tstzrange"
            // built-in names drivers and psql write qualified (`pg_catalog.text`)
            | "text"
            | "bool"
            | "boolean"
            | "char"
            | "bytea"
            | "date"
            | "numeric"
            | "int2vector"
            | "oidvector"
            | "regproc"
            | "regprocedure"
            | "regnamespace"
            | "json"
            | "jsonb"
            | "uuid"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_functions_are_not_listed() {
        for name in [
            "query_to_xml",
            "table_to_xml",
            "cursor_to_xml",
            "database_to_xml",
            "pg_read_file",
            "pg_read_binary_file",
            "pg_ls_dir",
            "lo_import",
            "lo_get",
            "dblink",
            "dblink_exec",
            "set_config",
            "current_setting",
            "pg_terminate_backend",
            "pg_cancel_backend",
            "nextval",
            "pg_notify",
            "pg_sleep",
            "txid_current",
            "pg_stat_get_activity",
        ] {
            assert!(!scalar_allowed(name) && !table_allowed(name), "{name}");
        }
    }
}
