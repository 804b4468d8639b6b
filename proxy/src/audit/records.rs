//! The records maskgate writes, one struct per kind. `docs/audit.md` describes every
//! field; a field added here is added there.
//!
//! Nothing here holds personal data in clear: statements are normalized (constants
//! replaced by `$L1`, `$L2`, …), and the constants and bind parameters travel in a
//! [`Secret`] that the writer seals under the audit key, bound to the record's seq.

use std::sync::Arc;

use serde::Serialize;

/// `kind` of each record.
pub mod kind {
    pub const PROXY_START: &str = "proxy_start";
    pub const PROXY_STOP: &str = "proxy_stop";
    pub const LOGIN: &str = "login";
    pub const SESSION_END: &str = "session_end";
    pub const STATEMENT: &str = "statement";
    pub const STATEMENT_END: &str = "statement_end";
    pub const POLICY_RELOAD: &str = "policy_reload";
    pub const LOCKOUT: &str = "lockout";
    pub const LOGIN_REFUSALS: &str = "login_refusals";
    pub const AUDIT_TOOL: &str = "audit_tool";
    pub const ALERT: &str = maskgate_detect::observe::kind::ALERT;
    pub const ACCOUNT_SUSPENDED: &str = maskgate_detect::observe::kind::SUSPENDED;
    pub const ACCOUNT_UNLOCKED: &str = maskgate_detect::observe::kind::UNLOCKED;
}

/// One record's payload, before the writer adds the envelope and seals its secret.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Payload {
    ProxyStart(ProxyStart),
    ProxyStop(ProxyStop),
    Login(Login),
    SessionEnd(SessionEnd),
    Statement(Statement),
    StatementEnd(StatementEnd),
    PolicyReload(PolicyReload),
    Lockout(Lockout),
    LoginRefusals(LoginRefusals),
    AuditTool(AuditTool),
    /// What detection found (`docs/detection.md`).
    Alert(maskgate_detect::Alert),
    AccountSuspended(AccountSuspended),
    AccountUnlocked(AccountUnlocked),
}

/// An account suspended by an alert's rule.
#[derive(Debug, Serialize)]
pub struct AccountSuspended {
    pub login: String,
    pub alert: String,
    pub rule: String,
    /// Set when a suspension that vanished from the state file without an unlock
    /// was put back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored: Option<&'static str>,
}

/// A suspension lifted by `maskgate account unlock`.
#[derive(Debug, Serialize)]
pub struct AccountUnlocked {
    pub login: String,
    pub reason: String,
    /// The OS user who ran the command.
    pub by: String,
    /// When the command ran (the record is written when the proxy picks it up).
    pub requested: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ProxyStart {
    /// Prefix of every session id of this process.
    pub instance: String,
    pub version: &'static str,
    pub policy: String,
    pub strict: bool,
}

#[derive(Debug, Serialize)]
pub struct ProxyStop {
    pub instance: String,
}

/// Who a session is, repeated in its login record and referred to by `session` after.
#[derive(Debug, Clone, Serialize)]
pub struct SessionFacts {
    pub login: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    pub roles: Vec<String>,
    pub restricted: bool,
    pub database: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    pub policy: String,
}

#[derive(Debug, Serialize)]
pub struct Login {
    /// `admitted` or `refused`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub client: String,
    /// The login name the client sent, if it got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Machine-readable reason of a refusal (`auth_failed`, `outside_hours`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub facts: Option<SessionFacts>,
}

#[derive(Debug, Serialize)]
pub struct SessionEnd {
    pub session: String,
    pub user: String,
    pub client: String,
    /// `client`, `upstream_gone` or `closed_by_maskgate`.
    pub end: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub duration_ms: u64,
    pub statements: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// What the rules of a policy table did to a statement that touched it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TableFacts {
    pub table: String,
    /// Masked columns with their mask (`column:mask`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<String>,
    /// Columns the account may not see at all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<String>,
    /// The roles whose row filters were applied (empty: the table is not filtered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filtered_by: Vec<String>,
    /// Lookup keys one of which the statement had to pin.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pinned_by: Vec<String>,
    /// The roles that grant the table.
    pub roles: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Statement {
    pub session: String,
    /// The statement's number within its session; its `statement_end` repeats it.
    pub stmt: u64,
    pub user: String,
    pub client: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    /// `simple` (Query), `extended` (Execute of a portal), `copy`.
    pub protocol: &'static str,
    /// The normalized text: constants as `$L1`, `$L2`, …, parameters as `$1`.
    pub statement: String,
    /// The text was cut (normalized text or constants past their bounds).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cut: bool,
    /// `read`, `write`, `session`, `transaction`, `cursor`, or `unanalyzed` for
    /// unrestricted accounts; several comma-separated for a multi-statement Query.
    pub class: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<Arc<TableFacts>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub written: Vec<String>,
    /// `allowed` (unrestricted, sent as typed), `rewritten`, `denied`, or `monitored`
    /// (monitor mode: sent as typed; `would` says what enforcing it would have done).
    pub decision: &'static str,
    /// Monitor mode: `deny` or `rewrite`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would: Option<&'static str>,
    /// Monitor mode: the SQLSTATE and message the denial would have had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_sqlstate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_message: Option<String>,
    /// For a denial: `policy`, `statement_quota`, `row_quota`, `copy_row`, `reserved_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Number of constants and bind parameters in the sealed value.
    pub sealed_values: usize,
    /// Where the keys it pinned on lookup-only tables are among the sealed values:
    /// the writer fingerprints those (`keys`, `unkeyed`), never writes them.
    #[serde(skip)]
    pub keys: Vec<KeySource>,
}

/// A pinned lookup key: where its value is, and how its column compares.
#[derive(Debug, Clone)]
pub struct KeySource {
    pub value: KeyValue,
    pub kind: maskgate_detect::KeyKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyValue {
    /// `Secret::literals[i]`; `None`: a constant the trail does not keep.
    Constant(Option<usize>),
    /// `Secret::params[index]`, as it was sent, read as the type `oid` if known.
    Param {
        index: usize,
        form: ParamForm,
        oid: Option<u32>,
    },
}

/// How a bind parameter was sent, as far as its record can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamForm {
    Text,
    Binary,
    /// Not kept: past the bytes kept per statement.
    Cut,
}

#[derive(Debug, Serialize)]
pub struct StatementEnd {
    pub session: String,
    pub stmt: u64,
    /// `completed`, `failed`, `stopped`, `skipped` (the server never ran it, after an
    /// earlier error) or `interrupted` (the session ended before its answer).
    pub outcome: &'static str,
    /// The SQLSTATE the client got, if it got an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// What stopped it: `row_cap`, `hourly_rows`, `session_rows`, `packed_rows`,
    /// `offset`, `parent_scope`, `protected_column`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<&'static str>,
    /// Monitor mode: what would have stopped it (`row_cap`); it ran to its end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_stop: Option<&'static str>,
    /// Rows sent to the client (DataRow and COPY TO data messages).
    pub rows: u64,
    /// Bytes of those messages, as sent on the wire.
    pub bytes: u64,
    pub duration_us: u64,
}

#[derive(Debug, Serialize)]
pub struct PolicyReload {
    /// `accepted` or `refused`.
    pub outcome: &'static str,
    pub before: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Policy files added, removed or modified since `before`.
    pub files: Vec<maskgate_policy::FileChange>,
    /// How the accepted policy lets in more than the one before.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub widened: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Lockout {
    pub user: String,
    pub client: String,
}

/// Login refusals of one client address and reason within a minute, past the
/// first few recorded one by one.
#[derive(Debug, Serialize)]
pub struct LoginRefusals {
    /// The client address; absent for the sum of the addresses beyond the bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    pub reason: &'static str,
    /// Refusals summed up in this record.
    pub count: u64,
    pub first: String,
    pub last: String,
    /// Up to eight distinct login names among them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
}

/// A use of `maskgate audit` itself.
#[derive(Debug, Serialize)]
pub struct AuditTool {
    /// `search`, `show`, `verify`.
    pub command: &'static str,
    /// The OS user who ran it.
    pub os_user: String,
    /// What was asked, normalized (filters, record ids), never a decrypted value.
    pub arguments: String,
    /// Whether sealed values were opened.
    pub decrypted: bool,
    pub results: u64,
}

/// Values kept only sealed: a statement's constants and bind parameters.
#[derive(Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Secret {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub literals: Vec<String>,
    /// Bind parameters: text as sent, binary as `\x` hex, NULL as null.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Option<String>>,
}

impl Secret {
    pub fn is_empty(&self) -> bool {
        self.literals.is_empty() && self.params.is_empty()
    }

    pub fn len(&self) -> usize {
        self.literals.len() + self.params.len()
    }
}
