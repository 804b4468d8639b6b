//! The validated policy: classification, roles, accounts and the rules they add up to.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use maskgate_mask::MaskSpec;
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
    /// deny > mask > allow: merging keeps the highest.
    pub fn restrictiveness(&self) -> u8 {
        match self {
            ColumnRule::Allow => 0,
            ColumnRule::Mask(_) => 1,
            ColumnRule::Deny => 2,
        }
    }
}

impl fmt::Display for ColumnRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnRule::Allow => f.write_str("allow"),
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
    /// Rolling quota of rows returned per hour.
    pub rows_per_hour: Option<u64>,
    /// Rolling quota of statements per minute.
    pub statements_per_minute: Option<u64>,
    /// Break-glass: statements pass unrewritten (still audited).
    pub unrestricted: bool,
    /// Notification channels it may LISTEN on and NOTIFY; no others.
    pub channels: BTreeSet<String>,
    /// The tables it may use; every other table is denied.
    pub tables: BTreeMap<QualifiedName, RoleTable>,
}

/// What a role says about one table.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleTable {
    /// SQL boolean expression, `:name` standing for account attributes.
    pub row_filter: Option<String>,
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
    /// Each role's filter, parenthesised and joined with AND; attributes are SQL literals.
    pub row_filter: Option<String>,
    /// Non-empty: each query must pin one of these columns by equality.
    pub lookup_keys: Vec<String>,
    /// Every classified column of the table; unmentioned ones are `Deny`.
    pub columns: BTreeMap<String, ColumnRule>,
}
