//! The events, one per thing that happened.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use maskgate_policy::{FileChange, Generation};

use super::SessionContext;
use crate::error::SqlState;
use crate::metrics::RejectReason;

#[derive(Debug, Clone)]
pub enum Event {
    Login(LoginAttempt),
    /// A login name was locked after repeated failures.
    Lockout {
        client: SocketAddr,
        login: String,
    },
    SessionEnded(SessionEnded),
    StatementRefused(StatementRefused),
    StatementStopped(StatementStopped),
    /// Shadow mode: what enforcing a statement would have done.
    Monitored(Monitored),
    PolicyReload(PolicyReload),
}

/// One connection's attempt to log in.
#[derive(Debug, Clone)]
pub struct LoginAttempt {
    pub client: SocketAddr,
    /// The login name, once the client sent one.
    pub login: Option<String>,
    pub outcome: LoginOutcome,
}

#[derive(Debug, Clone)]
pub enum LoginOutcome {
    /// The session starts.
    Admitted(Arc<SessionContext>),
    Refused {
        reason: RejectReason,
        /// What went wrong, for the operator (never a password or a statement).
        detail: String,
    },
}

#[derive(Debug, Clone)]
pub struct SessionEnded {
    pub session: Arc<SessionContext>,
    pub end: SessionEnd,
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client said goodbye or went away.
    Client,
    /// The database server closed the session's connection.
    UpstreamGone,
    /// maskgate ended it, for this reason.
    ClosedByMaskgate(String),
}

/// A statement that was not run. Each kind names the metric it counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The policy does not allow it.
    Policy,
    /// `statements_per_minute` is used up.
    StatementQuota,
    /// `rows_per_hour` is used up.
    RowQuota,
    /// The session has read its `max_rows_per_session`.
    SessionBudget,
    /// A row of `COPY … FROM STDIN` outside the account's scope.
    CopyRow,
    /// The audit trail could not take the statement's record.
    Unrecorded,
    /// The session holds its maximum of prepared statements or portals.
    SessionLimit,
}

#[derive(Debug, Clone)]
pub struct StatementRefused {
    pub session: Arc<SessionContext>,
    pub refusal: Refusal,
    pub sqlstate: SqlState,
    /// The client's error message.
    pub reason: String,
    /// The statement's fingerprint (literals replaced), empty when there is none.
    pub statement: String,
}

/// What stopped a statement while its rows streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopLimit {
    /// More rows than the account's `max_rows`.
    RowCap(u64),
    /// The account's `rows_per_hour` ran out.
    HourlyRows,
    /// The session's `max_rows_per_session` ran out.
    SessionRows(u64),
    /// A check PostgreSQL made as the statement ran failed.
    Guard(GuardCheck),
    /// A result column would have shown a protected column as stored.
    ProtectedColumn,
}

#[derive(Debug, Clone)]
pub struct StatementStopped {
    pub session: Arc<SessionContext>,
    pub limit: StopLimit,
    /// For [`StopLimit::ProtectedColumn`]: `schema.table.column`.
    pub column: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PolicyReload {
    /// The generation in force before.
    pub before: Generation,
    /// The policy files added, removed or modified since `before` (of the refused
    /// files, for a refused reload).
    pub files: Vec<FileChange>,
    /// The new generation, or why the files were refused.
    pub outcome: Result<Generation, String>,
}

/// A check the rewrite has PostgreSQL make while a statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardCheck {
    /// More rows packed into values (`json_agg`, `ARRAY(…)`, …) than the cap.
    PackedRows(u64),
    /// An OFFSET parameter at or beyond the cap.
    Offset(u64),
    /// A written row referenced a parent outside the account's scope.
    ParentScope,
}

impl GuardCheck {
    /// The name metrics and audit records use.
    pub fn as_str(self) -> &'static str {
        match self {
            GuardCheck::PackedRows(_) => "packed_rows",
            GuardCheck::Offset(_) => "offset",
            GuardCheck::ParentScope => "parent_scope",
        }
    }
}

/// What enforcing a monitored account's statement would have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Would {
    /// Deny it (with this SQLSTATE).
    Deny,
    /// Rewrite it.
    Rewrite,
    /// Stop it at its row cap.
    Cap,
}

impl Would {
    pub fn as_str(self) -> &'static str {
        match self {
            Would::Deny => "deny",
            Would::Rewrite => "rewrite",
            Would::Cap => "row_cap",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Monitored {
    pub session: Arc<SessionContext>,
    pub would: Would,
    /// The statement's fingerprint; empty for a cap.
    pub statement: String,
}
