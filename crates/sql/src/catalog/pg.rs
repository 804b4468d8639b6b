//! `pg_catalog` as a restricted account sees it: the rows of the relations drivers
//! and tools introspect, limited to the account's policy tables, the columns it sees
//! (allowed or masked) and the built-in objects every role shares.
//!
//! Each filter is a WHERE clause over one system relation. The building blocks are
//! subqueries over the raw catalog, written by maskgate (never by the client):
//!
//! - `R`: the OIDs of the account's policy tables;
//! - `C`: `(attrelid, attnum)` of the columns it sees;
//! - `I`: indexes of those tables whose every key and INCLUDE column is in `C`, with
//!   no expression and no predicate (an index on a denied column names it);
//! - `K`: constraints of those tables whose columns, and for a foreign key the
//!   referenced table's columns, are all in `C`, and whose index (an exclusion
//!   constraint's) has no expression and no predicate: `pg_get_constraintdef` prints
//!   an exclusion constraint's `WHERE`, which can name denied columns and values;
//! - `T`: the types of the columns in `C`.
//!
//! Built-in objects are those with an OID below 16384 (`FirstNormalObjectId`):
//! initdb creates them, every database has them, and they hold no data.
//!
//! Nothing here echoes a data value: `pg_class` reports no row count estimates
//! (`reltuples`, `relpages`, `relallvisible` read as a never-analyzed relation's),
//! `pg_attrdef` shows defaults of visible columns only, and not of generated columns
//! (whose expressions may read denied ones), and statistics, policies, triggers and
//! publications read as empty.

use maskgate_mask::quote_literal;

/// `pg_catalog` relations whose rows are filtered, with the filter kind.
pub(crate) const FILTERED: &[&str] = &[
    "pg_attrdef",
    "pg_attribute",
    "pg_class",
    "pg_constraint",
    "pg_description",
    "pg_enum",
    "pg_index",
    "pg_inherits",
    "pg_namespace",
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
    "pg_trigger",
    "pg_type",
];

/// What a guarded catalog function's OID argument must be one of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Guard {
    /// A relation in the account's `pg_class`.
    Relation,
    /// A (relation, column number) pair in its `pg_attribute`: the call's first two
    /// arguments.
    Column,
    /// An index in its `pg_index`.
    Index,
    /// A constraint in its `pg_constraint`.
    Constraint,
    /// A type in its `pg_type`.
    Type,
    /// A built-in function.
    Function,
    /// An object with a comment in its `pg_description`.
    Described,
    /// Nothing: the catalog it reads is empty for the account.
    Nothing,
}

/// Catalog functions that take an object's OID and print its name or definition,
/// with the argument that must name a visible object. For any other OID the call
/// answers NULL, as PostgreSQL does for an OID that names nothing.
pub(crate) const GUARDED: &[(&str, usize, Guard)] = &[
    ("col_description", 0, Guard::Column),
    ("format_type", 0, Guard::Type),
    ("obj_description", 0, Guard::Described),
    ("pg_function_is_visible", 0, Guard::Function),
    ("pg_get_constraintdef", 0, Guard::Constraint),
    ("pg_get_expr", 1, Guard::Relation),
    ("pg_get_function_arguments", 0, Guard::Function),
    ("pg_get_function_identity_arguments", 0, Guard::Function),
    ("pg_get_function_result", 0, Guard::Function),
    ("pg_get_indexdef", 0, Guard::Index),
    ("pg_get_partkeydef", 0, Guard::Relation),
    ("pg_get_statisticsobjdef_columns", 0, Guard::Nothing),
    ("pg_get_triggerdef", 0, Guard::Nothing),
    ("pg_relation_is_publishable", 0, Guard::Relation),
    ("pg_table_is_visible", 0, Guard::Relation),
    ("pg_type_is_visible", 0, Guard::Type),
];

/// The guard of a catalog function, by folded name.
pub(crate) fn guard_of(function: &str) -> Option<(usize, Guard)> {
    GUARDED
        .iter()
        .find(|(name, _, _)| *name == function)
        .map(|(_, argument, guard)| (*argument, *guard))
}

/// `pg_class`'s columns (PostgreSQL 13 to 17) with the size estimates replaced.
const PG_CLASS_COLUMNS: &str = "\"oid\", \"relname\", \"relnamespace\", \"reltype\", \
    \"reloftype\", \"relowner\", \"relam\", \"relfilenode\", \"reltablespace\", \
    0 AS \"relpages\", CAST(-1 AS pg_catalog.float4) AS \"reltuples\", \
    0 AS \"relallvisible\", \"reltoastrelid\", \"relhasindex\", \"relisshared\", \
    \"relpersistence\", \"relkind\", \"relnatts\", \"relchecks\", \"relhasrules\", \
    \"relhastriggers\", \"relhassubclass\", \"relrowsecurity\", \"relforcerowsecurity\", \
    \"relispopulated\", \"relreplident\", \"relispartition\", \"relrewrite\", \
    \"relfrozenxid\", \"relminmxid\", \"relacl\", \"reloptions\", \"relpartbound\"";

/// The subqueries the filters are made of, for one account.
pub(crate) struct Sets {
    /// `VALUES` rows of (schema, table), or `None` for no table.
    tables: Option<String>,
    /// `VALUES` rows of (schema, table, column), or `None` for no column.
    columns: Option<String>,
}

impl Sets {
    /// `tables` are the account's tables with the columns it sees. Names neither
    /// quoting function can write (NUL) name no catalog row and are left out.
    pub(crate) fn new(tables: &[(&str, &str, Vec<&str>)]) -> Sets {
        let tuple = |names: &[&str]| -> Option<String> {
            let literals: Result<Vec<String>, _> = names.iter().map(|n| quote_literal(n)).collect();
            Some(format!("({})", literals.ok()?.join(", ")))
        };
        let rows: Vec<String> = tables
            .iter()
            .filter_map(|(schema, name, _)| tuple(&[*schema, *name]))
            .collect();
        let columns: Vec<String> = tables
            .iter()
            .flat_map(|(schema, name, columns)| {
                columns
                    .iter()
                    .filter_map(move |column| tuple(&[*schema, *name, *column]))
            })
            .collect();
        Sets {
            tables: (!rows.is_empty()).then(|| rows.join(", ")),
            columns: (!columns.is_empty()).then(|| columns.join(", ")),
        }
    }

    /// `R`: the account's tables.
    fn relations(&self) -> String {
        match &self.tables {
            Some(rows) => format!(
                "SELECT \"c\".\"oid\" FROM \"pg_catalog\".\"pg_class\" AS \"c\" \
                 JOIN \"pg_catalog\".\"pg_namespace\" AS \"n\" ON \"n\".\"oid\" = \"c\".\"relnamespace\" \
                 WHERE (\"n\".\"nspname\", \"c\".\"relname\") IN (VALUES {rows})"
            ),
            None => "SELECT \"oid\" FROM \"pg_catalog\".\"pg_class\" WHERE false".to_owned(),
        }
    }

    /// `C`: the columns the account sees.
    fn columns(&self) -> String {
        match &self.columns {
            Some(rows) => format!(
                "SELECT \"a\".\"attrelid\", \"a\".\"attnum\" FROM \"pg_catalog\".\"pg_attribute\" AS \"a\" \
                 JOIN \"pg_catalog\".\"pg_class\" AS \"c\" ON \"c\".\"oid\" = \"a\".\"attrelid\" \
                 JOIN \"pg_catalog\".\"pg_namespace\" AS \"n\" ON \"n\".\"oid\" = \"c\".\"relnamespace\" \
                 WHERE (\"n\".\"nspname\", \"c\".\"relname\", \"a\".\"attname\") IN (VALUES {rows}) \
                 AND \"a\".\"attnum\" > 0 AND NOT \"a\".\"attisdropped\""
            ),
            None => "SELECT \"attrelid\", \"attnum\" FROM \"pg_catalog\".\"pg_attribute\" WHERE false"
                .to_owned(),
        }
    }

    /// Whether every element of the int2 array `array` is a visible column of
    /// relation `relation` (true for NULL or empty).
    fn all_visible(&self, array: &str, relation: &str) -> String {
        format!(
            "NOT EXISTS (SELECT 1 FROM pg_catalog.unnest({array}) AS \"u\"(\"n\") \
             WHERE ({relation}, \"u\".\"n\") NOT IN ({}))",
            self.columns()
        )
    }

    /// `I`: the indexes that name visible columns only.
    fn indexes(&self) -> String {
        format!(
            "SELECT \"i\".\"indexrelid\" FROM \"pg_catalog\".\"pg_index\" AS \"i\" \
             WHERE \"i\".\"indrelid\" IN ({}) AND \"i\".\"indexprs\" IS NULL \
             AND \"i\".\"indpred\" IS NULL AND {}",
            self.relations(),
            self.all_visible(
                "CAST(\"i\".\"indkey\" AS pg_catalog.int2[])",
                "\"i\".\"indrelid\""
            )
        )
    }

    /// `K`: the constraints that name visible columns only.
    fn constraints(&self) -> String {
        format!(
            "SELECT \"k\".\"oid\" FROM \"pg_catalog\".\"pg_constraint\" AS \"k\" \
             WHERE \"k\".\"conrelid\" IN ({}) AND {} \
             AND (\"k\".\"confrelid\" = 0 OR {}) \
             AND \"k\".\"conindid\" NOT IN (SELECT \"x\".\"indexrelid\" \
             FROM \"pg_catalog\".\"pg_index\" AS \"x\" \
             WHERE \"x\".\"indexprs\" IS NOT NULL OR \"x\".\"indpred\" IS NOT NULL)",
            self.relations(),
            self.all_visible("\"k\".\"conkey\"", "\"k\".\"conrelid\""),
            self.all_visible("\"k\".\"confkey\"", "\"k\".\"confrelid\""),
        )
    }

    /// `T`: the types of the visible columns.
    fn types(&self) -> String {
        format!(
            "SELECT \"a\".\"atttypid\" FROM \"pg_catalog\".\"pg_attribute\" AS \"a\" \
             WHERE (\"a\".\"attrelid\", \"a\".\"attnum\") IN ({})",
            self.columns()
        )
    }

    fn namespaces(&self) -> String {
        format!(
            "SELECT \"relnamespace\" FROM \"pg_catalog\".\"pg_class\" WHERE \"oid\" IN ({})",
            self.relations()
        )
    }

    /// The WHERE clause of `relation`'s filter; `None` for relations not filtered.
    pub(crate) fn filter(&self, relation: &str) -> Option<String> {
        let (r, c, i, k, t) = (
            self.relations(),
            self.columns(),
            self.indexes(),
            self.constraints(),
            self.types(),
        );
        Some(match relation {
            "pg_namespace" => format!("\"oid\" < 16384 OR \"oid\" IN ({})", self.namespaces()),
            "pg_class" => format!("\"oid\" < 16384 OR \"oid\" IN ({r}) OR \"oid\" IN ({i})"),
            "pg_attribute" => format!(
                "\"attrelid\" < 16384 OR (\"attrelid\", \"attnum\") IN ({c}) \
                 OR (\"attnum\" < 0 AND \"attrelid\" IN ({r})) OR \"attrelid\" IN ({i})"
            ),
            "pg_index" => format!("\"indexrelid\" IN ({i})"),
            "pg_constraint" => format!("\"oid\" IN ({k})"),
            "pg_attrdef" => format!(
                "(\"adrelid\", \"adnum\") IN ({c}) AND (\"adrelid\", \"adnum\") NOT IN \
                 (SELECT \"attrelid\", \"attnum\" FROM \"pg_catalog\".\"pg_attribute\" \
                 WHERE \"attgenerated\" <> '')"
            ),
            "pg_description" => format!(
                "\"objoid\" < 16384 \
                 OR (\"classoid\" = CAST('pg_catalog.pg_class' AS pg_catalog.regclass) \
                     AND ((\"objsubid\" = 0 AND \"objoid\" IN ({r})) \
                          OR (\"objoid\", \"objsubid\") IN ({c}) OR \"objoid\" IN ({i}))) \
                 OR (\"classoid\" = CAST('pg_catalog.pg_constraint' AS pg_catalog.regclass) \
                     AND \"objoid\" IN ({k})) \
                 OR (\"classoid\" = CAST('pg_catalog.pg_namespace' AS pg_catalog.regclass) \
                     AND \"objoid\" IN ({}))",
                self.namespaces()
            ),
            "pg_type" => format!(
                "\"oid\" < 16384 OR \"typrelid\" IN ({r}) OR \"oid\" IN ({t}) \
                 OR \"typelem\" IN ({t}) \
                 OR \"oid\" IN (SELECT \"typbasetype\" FROM \"pg_catalog\".\"pg_type\" WHERE \"oid\" IN ({t})) \
                 OR \"typelem\" IN (SELECT \"reltype\" FROM \"pg_catalog\".\"pg_class\" WHERE \"oid\" IN ({r}))"
            ),
            "pg_enum" => format!("\"enumtypid\" IN ({t})"),
            "pg_range" => format!("\"rngtypid\" < 16384 OR \"rngtypid\" IN ({t})"),
            "pg_proc" => "\"oid\" < 16384".to_owned(),
            "pg_inherits" => format!("\"inhrelid\" IN ({r}) AND \"inhparent\" IN ({r})"),
            "pg_tables" => match &self.tables {
                Some(rows) => format!(
                    "(\"schemaname\", \"tablename\") IN (VALUES {rows}) \
                     OR \"schemaname\" IN ('pg_catalog', 'information_schema')"
                ),
                None => "\"schemaname\" IN ('pg_catalog', 'information_schema')".to_owned(),
            },
            "pg_policy" | "pg_statistic_ext" | "pg_publication" | "pg_publication_namespace"
            | "pg_publication_rel" | "pg_trigger" | "pg_roles" | "pg_sequence" => "false".to_owned(),
            _ => return None,
        })
    }

    /// The filtering subquery of `relation`, behind `OFFSET 0` like the masking
    /// subqueries (the client's predicates never run on the rows left out).
    pub(crate) fn fence(&self, relation: &str) -> Option<String> {
        let filter = self.filter(relation)?;
        let columns = if relation == "pg_class" {
            PG_CLASS_COLUMNS
        } else {
            "*"
        };
        Some(format!(
            "SELECT {columns} FROM \"pg_catalog\".\"{relation}\" WHERE {filter} OFFSET 0"
        ))
    }

    /// The OIDs a guarded function's argument may name.
    pub(crate) fn guard(&self, guard: Guard) -> String {
        let of = |relation: &str, column: &str| {
            let filter = self.filter(relation).unwrap_or_else(|| "false".to_owned());
            format!("SELECT \"{column}\" FROM \"pg_catalog\".\"{relation}\" WHERE {filter}")
        };
        match guard {
            Guard::Relation => of("pg_class", "oid"),
            Guard::Column => of("pg_attribute", "attrelid\", \"attnum"),
            Guard::Index => self.indexes(),
            Guard::Constraint => self.constraints(),
            Guard::Type => of("pg_type", "oid"),
            Guard::Function => of("pg_proc", "oid"),
            Guard::Described => of("pg_description", "objoid"),
            Guard::Nothing => {
                "SELECT \"oid\" FROM \"pg_catalog\".\"pg_class\" WHERE false".to_owned()
            }
        }
    }
}
