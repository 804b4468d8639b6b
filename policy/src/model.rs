//! The validated policy: classification, roles, accounts and the rules they add up to.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use maskgate_mask::{MaskKind, MaskSpec};
use sqlparser::ast::{Expr, Query};
use time::{Date, UtcOffset};

use crate::net::IpNet;
use crate::verifier::ScramVerifier;

/// How the policy's dates and hours are read and how unqualified names will be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// Fixed offset for `valid_from`/`valid_until` and login hours, so they mean the same
    /// on every host regardless of its time zone database.
    pub timezone: UtcOffset,
    /// Schemas searched for unqualified table names (`pg_catalog` implicitly last).
    pub search_path: Vec<String>,
    /// Ids of the keys in the pseudonym key file; a pseudonym mask naming any
    /// other key is an error (empty: no key file, so no pseudonym masks).
    pub pseudonym_keys: Vec<String>,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            timezone: UtcOffset::UTC,
            search_path: vec!["public".to_owned()],
            pseudonym_keys: Vec::new(),
        }
    }
}

/// A schema-qualified table or view name, as PostgreSQL stores it (unquoted names folded
/// to lower case).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QualifiedName {
    /// The schema.
    pub schema: String,
    /// The table, view or materialized view.
    pub name: String,
}

impl QualifiedName {
    /// Builds a name from parts already in catalog form.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> QualifiedName {
        QualifiedName {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// What kind of relation a classified name is; views cannot be written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// An ordinary table.
    Table,
    /// A view.
    View,
    /// A materialized view.
    MaterializedView,
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TableKind::Table => "table",
            TableKind::View => "view",
            TableKind::MaterializedView => "materialized_view",
        })
    }
}

/// The classification of one table: its columns, their declared types and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableClass {
    /// Table, view or materialized view.
    pub kind: TableKind,
    /// Every column the policy knows, by name.
    pub columns: BTreeMap<String, ColumnClass>,
}

/// One classified column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnClass {
    /// As `format_type()` prints it, e.g. `char(12)`; masks are checked against it.
    pub pg_type: String,
    /// Classification labels, in the order written.
    pub labels: Vec<String>,
}

/// A honeytoken: a value of a column that belongs to no real person (a fake
/// participant). Detection raises an alert when a statement looks it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    pub table: QualifiedName,
    pub column: String,
    pub value: String,
}

/// What a role (or the merge of an account's roles) does with one column.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnRule {
    /// Returned as stored.
    Allow,
    /// Returned masked.
    Mask(MaskSpec),
    /// Not readable at all.
    Deny,
}

impl ColumnRule {
    /// deny > null > mask > allow: merging keeps the highest. `null` (a column that
    /// reads as NULL) hides more than any other mask.
    pub fn restrictiveness(&self) -> u8 {
        match self {
            ColumnRule::Allow => 0,
            ColumnRule::Mask(spec) if spec.kind == MaskKind::Null => 2,
            ColumnRule::Mask(_) => 1,
            ColumnRule::Deny => 3,
        }
    }
}

impl fmt::Display for ColumnRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnRule::Allow => f.write_str("allow"),
            ColumnRule::Mask(spec) if spec.kind == MaskKind::Null => f.write_str("null"),
            ColumnRule::Mask(spec) => write!(f, "mask {spec}"),
            ColumnRule::Deny => f.write_str("deny"),
        }
    }
}

/// A kind of statement a role may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StatementKind {
    /// SELECT (and other reads).
    Read,
    /// INSERT.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// `COPY … TO STDOUT`: a read whose rows leave as COPY data (masked and filtered
    /// like a SELECT, counted against the same caps).
    Export,
}

impl StatementKind {
    /// All kinds, in the order they are printed.
    pub const ALL: [StatementKind; 5] = [
        StatementKind::Read,
        StatementKind::Insert,
        StatementKind::Update,
        StatementKind::Delete,
        StatementKind::Export,
    ];

    /// The word used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Read => "read",
            StatementKind::Insert => "insert",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
            StatementKind::Export => "export",
        }
    }

    /// Parses the word used in policy files.
    pub fn parse(word: &str) -> Option<StatementKind> {
        StatementKind::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

/// A set of statement kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatementKinds {
    bits: u8,
}

impl StatementKinds {
    /// Whether `kind` is in the set.
    pub fn contains(self, kind: StatementKind) -> bool {
        self.bits & (1 << kind as u8) != 0
    }

    /// Adds `kind`.
    pub fn insert(&mut self, kind: StatementKind) {
        self.bits |= 1 << kind as u8;
    }

    /// Both sets together (roles of one account add up).
    pub fn union(self, other: StatementKinds) -> StatementKinds {
        StatementKinds {
            bits: self.bits | other.bits,
        }
    }

    /// Whether nothing is allowed.
    pub fn is_empty(self) -> bool {
        self.bits == 0
    }

    /// The kinds in the set.
    pub fn iter(self) -> impl Iterator<Item = StatementKind> {
        StatementKind::ALL
            .into_iter()
            .filter(move |kind| self.contains(*kind))
    }
}

impl FromIterator<StatementKind> for StatementKinds {
    fn from_iter<I: IntoIterator<Item = StatementKind>>(iter: I) -> Self {
        let mut kinds = StatementKinds::default();
        for kind in iter {
            kinds.insert(kind);
        }
        kinds
    }
}

impl fmt::Display for StatementKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let words: Vec<_> = self.iter().map(StatementKind::as_str).collect();
        f.write_str(&words.join(", "))
    }
}

/// A role as written (before merging with an account's other roles).
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    /// The role's name.
    pub name: String,
    /// What the role is for, for reviewers.
    pub description: Option<String>,
    /// Statement kinds it may run.
    pub statements: StatementKinds,
    /// Rows per statement.
    pub max_rows: Option<u64>,
    /// Rows one session may read in all (paging in cap-sized steps ends there).
    pub max_rows_per_session: Option<u64>,
    /// What a statement with more rows than its cap gets.
    pub over_cap: OverCap,
    /// Rolling quota of rows returned per hour.
    pub rows_per_hour: Option<u64>,
    /// Rolling quota of statements per minute.
    pub statements_per_minute: Option<u64>,
    /// Break-glass: statements pass unrewritten (still audited).
    pub unrestricted: bool,
    /// Enforced, or only recorded as it would have been enforced.
    pub mode: RoleMode,
    /// Notification channels it may LISTEN on and NOTIFY; no others.
    pub channels: BTreeSet<String>,
    /// The tables it may use; every other table is denied.
    pub tables: BTreeMap<QualifiedName, RoleTable>,
}

/// Whether a role's rules are applied or only recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RoleMode {
    /// Statements are rewritten, denied and capped.
    #[default]
    Enforce,
    /// Shadow mode, for rolling a role out: each statement is decided and recorded as
    /// it would be enforced, and the original runs unchanged.
    Monitor,
}

/// What a statement with more rows than its cap gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum OverCap {
    /// The rows up to the cap, then `54000`.
    #[default]
    Partial,
    /// `54000` before any row is sent (at most cap + 1 rows are held back).
    Refuse,
}

/// A cap one table sets on the statements that read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableCap {
    /// At most this many rows.
    Rows(u64),
    /// No personal data (a reference list): the table does not cap statements.
    Exempt,
}

/// A row filter as written: one SQL boolean expression over the table's own columns,
/// parsed once; `:name` attributes are `Value::Placeholder(":name")` in it.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterExpr {
    /// As written, for reviewers.
    pub text: String,
    /// The parsed expression.
    pub expr: Expr,
}

/// One step of a row filter through a foreign key: `column -> table(key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathHop {
    /// The referencing column, of the table before this step.
    pub column: String,
    /// The referenced table.
    pub table: QualifiedName,
    /// Its referenced column (a primary key or unique column).
    pub key: String,
}

impl fmt::Display for PathHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}({})", self.column, self.table, self.key)
    }
}

/// What a role says about one table.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleTable {
    /// Over the table's own columns, `:name` standing for account attributes.
    pub row_filter: Option<FilterExpr>,
    /// Non-empty: a row is in scope only if this path of foreign keys leads to a row
    /// of the last step's table that the account may see (its row filter applies).
    pub row_filter_path: Vec<PathHop>,
    /// Replaces the role's `max_rows` for statements reading this table.
    pub max_rows: Option<TableCap>,
    /// Non-empty: each query must pin one of these columns by equality.
    pub lookup_keys: Vec<String>,
    /// Rules by classification label.
    pub labels: BTreeMap<String, ColumnRule>,
    /// Rules by column; these win over label rules.
    pub columns: BTreeMap<String, ColumnRule>,
}

/// The written decision that gave a person access, for audits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Reference of the decision, e.g. "QĐ-123/2026".
    pub document: String,
    /// Its date.
    pub date: Date,
    /// Who signed it.
    pub assigned_by: String,
}

/// One person's account. `Debug` never shows the verifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// The PostgreSQL user name the person logs in with.
    pub login: String,
    /// Who this is.
    pub name: String,
    /// Checks the password (SCRAM-SHA-256).
    pub verifier: ScramVerifier,
    /// Role names, sorted.
    pub roles: Vec<String>,
    /// Values for `:name` in row filters.
    pub attributes: BTreeMap<String, String>,
    /// First day the account may log in (policy time zone).
    pub valid_from: Option<Date>,
    /// Last day the account may log in (inclusive).
    pub valid_until: Option<Date>,
    /// Switched off without deleting it, so its history stays readable.
    pub disabled: bool,
    /// The decision that grants the access.
    pub assignment: Option<Assignment>,
    /// Where it may connect from; empty means anywhere.
    pub networks: Vec<IpNet>,
    /// SHA-256 of client certificates it must present one of; empty means none required.
    pub cert_fingerprints: Vec<[u8; 32]>,
    /// Allowed days, indexed from Monday; `None` means every day.
    pub login_days: Option<[bool; 7]>,
    /// Allowed local time window in minutes since midnight, `(start, end)`, end exclusive;
    /// `start > end` spans midnight. `None` means any time.
    pub login_hours: Option<(u16, u16)>,
    /// Concurrent sessions.
    pub max_sessions: Option<u32>,
}

/// Everything an account may do, merged across its roles, with its attributes already
/// substituted into the row filters. The proxy needs nothing else to enforce it.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveRules {
    /// The account.
    pub login: String,
    /// No rewriting at all (still audited).
    pub unrestricted: bool,
    /// Union across roles.
    pub statements: StatementKinds,
    /// Minimum across roles.
    pub max_rows: Option<u64>,
    /// Minimum across roles.
    pub max_rows_per_session: Option<u64>,
    /// The most restrictive across roles.
    pub over_cap: OverCap,
    /// Every role is in monitor mode: statements run as sent, and what enforcing
    /// them would have done is recorded.
    pub monitor: bool,
    /// Minimum across roles.
    pub rows_per_hour: Option<u64>,
    /// Minimum across roles.
    pub statements_per_minute: Option<u64>,
    /// Union across roles: the notification channels it may LISTEN on and NOTIFY.
    /// Payloads are whatever other sessions send, never masked, so a restricted
    /// account gets only channels a role names.
    pub channels: BTreeSet<String>,
    /// Union of the roles' tables; any other table is denied.
    pub tables: BTreeMap<QualifiedName, TableRules>,
}

/// The merged rules for one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRules {
    /// Every role's filter, ANDed; attributes substituted as string literals.
    pub row_filter: Option<RowFilter>,
    /// The cap this table sets on statements that read it; `None`: the account's
    /// `max_rows`.
    pub max_rows: Option<TableCap>,
    /// Non-empty: each query must pin one of these columns by equality.
    pub lookup_keys: Vec<String>,
    /// Every classified column of the table; unmentioned ones are `Deny`.
    pub columns: BTreeMap<String, ColumnRule>,
}

/// A table's merged row filter, parsed, with the account's attributes substituted.
#[derive(Debug, Clone, PartialEq)]
pub struct RowFilter {
    /// Each granting role's condition on the table's own columns, as written.
    pub own: Vec<Expr>,
    /// Each granting role's path of foreign keys.
    pub paths: Vec<ScopePath>,
}

/// A row filter through foreign keys, resolved for one account: a row is in scope when
/// its `column` is one of the keys `scope` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopePath {
    /// The referencing column of the filtered table.
    pub column: String,
    /// The steps as written; the last one's table is read through its own filter.
    pub hops: Vec<PathHop>,
    /// `SELECT "t"."key" FROM "schema"."t" WHERE …`: the referenced keys of the first
    /// step's table whose rows are in scope, every column qualified.
    pub scope: Box<Query>,
}

impl RowFilter {
    /// The whole filter, with the path columns qualified by `qualifier` (how the
    /// statement names the filtered table); own conditions stay as written.
    pub fn expr(&self, qualifier: &str) -> Expr {
        crate::scope::filter_expr(self, qualifier, false)
    }

    /// The whole filter with every column of the filtered table qualified by
    /// `qualifier`, for use where other tables are in scope too.
    pub fn qualified(&self, qualifier: &str) -> Expr {
        crate::scope::filter_expr(self, qualifier, true)
    }
}

impl fmt::Display for RowFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self.own.iter().map(|e| format!("({e})")).collect();
        for path in &self.paths {
            parts.push(format!("({} IN ({}))", path.column, path.scope));
        }
        f.write_str(&parts.join(" AND "))
    }
}
