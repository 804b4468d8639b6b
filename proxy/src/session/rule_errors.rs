//! The errors a session's rules answer with, in PostgreSQL's format.

use maskgate_sql::Denial;

use crate::error::{ClientError, SqlState};

pub(super) fn reserved_error(what: &str) -> ClientError {
    ClientError::error(
        SqlState::INSUFFICIENT_PRIVILEGE,
        format!("{what} names starting with _maskgate_ are reserved"),
    )
}

pub(super) fn denial_error(denial: &Denial) -> ClientError {
    ClientError::error(
        SqlState::from_bytes(denial.sqlstate.as_bytes())
            .unwrap_or(SqlState::INSUFFICIENT_PRIVILEGE),
        denial.message.clone(),
    )
}

/// Statements are analyzed as UTF-8; PostgreSQL must read them the same way, or a
/// multi-byte encoding could hide a quote from the analyzer.
pub(super) fn is_utf8(encoding: &str) -> bool {
    matches!(
        encoding.to_ascii_lowercase().as_str(),
        "utf8" | "utf-8" | "unicode"
    )
}

pub(super) fn encoding_error() -> ClientError {
    ClientError::fatal(
        SqlState::FEATURE_NOT_SUPPORTED,
        "restricted accounts must use client_encoding UTF8",
    )
    .with_hint("connect with client_encoding=UTF8; maskgate analyzes statements as UTF-8")
}

pub(super) fn cap_error(cap: u64) -> ClientError {
    ClientError::error(
        SqlState::PROGRAM_LIMIT_EXCEEDED,
        format!("the result has more than {cap} rows, the most this account's roles allow per statement"),
    )
    .with_hint("narrow the query: a more selective WHERE clause returns fewer rows")
}

pub(super) fn hourly_error(per_hour: u64) -> ClientError {
    ClientError::error(
        SqlState::CONFIGURATION_LIMIT_EXCEEDED,
        format!("this account has used its quota of {per_hour} rows per hour"),
    )
    .with_hint("wait before reading more rows, or ask your security officer")
}

pub(super) fn session_budget_error(budget: u64) -> ClientError {
    ClientError::error(
        SqlState::CONFIGURATION_LIMIT_EXCEEDED,
        format!(
            "this session has read {budget} rows, the most this account's roles allow per session"
        ),
    )
    .with_hint("end the session; paging through a table is not what this account is for")
}

pub(super) fn malformed(what: &str) -> ClientError {
    ClientError::fatal(
        SqlState::PROTOCOL_VIOLATION,
        format!("malformed {what} message"),
    )
}
