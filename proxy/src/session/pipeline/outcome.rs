//! What the pipeline reports about an audited statement once its answer ends.

use std::time::Duration;

use crate::error::{ClientError, SqlState};

/// What a statement sent to the client, as its audit record reports it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seen {
    pub rows: u64,
    pub bytes: u64,
    /// The SQLSTATE of the first error the client got.
    pub sqlstate: Option<SqlState>,
    pub stopped_by: Option<&'static str>,
    /// Shadow mode: the limit that would have stopped it.
    pub would_stop: Option<&'static str>,
}

/// How an audited statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed,
    Stopped,
    /// The server skipped it after an earlier error.
    Skipped,
    /// The session ended before it was answered.
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Stopped => "stopped",
            Outcome::Skipped => "skipped",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// An audited statement that has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub stmt: u64,
    pub outcome: Outcome,
    pub seen: Seen,
    pub duration: Duration,
}

/// The SQLSTATE a client gets for an ErrorResponse: the denial's when the proxy
/// replaces it, otherwise the server's `C` field.
pub(super) fn error_sqlstate(denial: Option<&ClientError>, body: &[u8]) -> SqlState {
    if let Some(denial) = denial {
        return denial.sqlstate;
    }
    let mut fields = body;
    while let [kind, rest @ ..] = fields {
        if *kind == 0 {
            break;
        }
        let Some(end) = rest.iter().position(|b| *b == 0) else {
            break;
        };
        if *kind == b'C' {
            if let Some(state) = SqlState::from_bytes(&rest[..end]) {
                return state;
            }
        }
        fields = &rest[end + 1..];
    }
    SqlState::INTERNAL_ERROR
}
