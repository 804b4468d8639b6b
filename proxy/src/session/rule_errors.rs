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
    maskgate_sql::is_utf8(encoding)
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

/// The text of a Query body as PostgreSQL reads it: UTF-8 up to a NUL that ends the
/// message. Otherwise the error PostgreSQL answers (an ERROR: the session goes on).
pub(super) fn statement_text(body: &[u8]) -> Result<&str, ClientError> {
    let Some(end) = body.iter().position(|&b| b == 0) else {
        return Err(ClientError::error(
            SqlState::PROTOCOL_VIOLATION,
            "invalid string in message",
        ));
    };
    if end + 1 != body.len() {
        return Err(ClientError::error(
            SqlState::PROTOCOL_VIOLATION,
            "invalid message format",
        ));
    }
    let text = &body[..end];
    std::str::from_utf8(text).map_err(|e| invalid_encoding(text, e))
}

/// PostgreSQL's error for bytes that are not UTF-8: the offending character's bytes,
/// as many as its first byte announces.
pub(super) fn invalid_encoding(text: &[u8], error: std::str::Utf8Error) -> ClientError {
    let bad = &text[error.valid_up_to()..];
    let announced = match bad.first().copied().unwrap_or(0) {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    };
    let bytes: Vec<String> = bad
        .iter()
        .take(announced)
        .map(|b| format!("0x{b:02x}"))
        .collect();
    ClientError::error(
        SqlState::CHARACTER_NOT_IN_REPERTOIRE,
        format!(
            "invalid byte sequence for encoding \"UTF8\": {}",
            bytes.join(" ")
        ),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_texts_are_read_as_postgresql_reads_them() {
        assert_eq!(statement_text(b"SELECT 1\0").unwrap(), "SELECT 1");
        let e = statement_text(b"SELECT 1\0garbage").unwrap_err();
        assert_eq!(
            (e.sqlstate, e.message.as_str()),
            (SqlState::PROTOCOL_VIOLATION, "invalid message format")
        );
        assert_eq!(
            statement_text(b"SELECT 1").unwrap_err().message,
            "invalid string in message"
        );
        let e = statement_text(b"SELECT '\xe2\x82'\0").unwrap_err();
        assert_eq!(e.sqlstate, SqlState::CHARACTER_NOT_IN_REPERTOIRE);
        assert_eq!(
            e.message,
            "invalid byte sequence for encoding \"UTF8\": 0xe2 0x82 0x27"
        );
        let e = statement_text(b"\xff\0").unwrap_err();
        assert!(e.message.ends_with(": 0xff"), "{}", e.message);
        assert!(matches!(e.severity, crate::error::Severity::Error));
    }
}
