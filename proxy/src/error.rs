//! Errors as clients see them.
//!
//! Every failure that reaches a client leaves as a PostgreSQL ErrorResponse with
//! a SQLSTATE and a message a DBA understands. Internal errors carry detail for
//! the operator's log; [`UserFacingError`] decides what of it a client may see,
//! so addresses, file paths and upstream internals never leak to the client.

use std::fmt;

use bytes::BytesMut;
use pgwire::messages::response::ErrorResponse;
use pgwire::messages::Message;

/// A SQLSTATE code, e.g. `28P01`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SqlState([u8; 5]);

impl SqlState {
    pub const INVALID_PASSWORD: SqlState = SqlState(*b"28P01");
    pub const INVALID_AUTHORIZATION: SqlState = SqlState(*b"28000");
    pub const PROTOCOL_VIOLATION: SqlState = SqlState(*b"08P01");
    pub const CONNECTION_FAILURE: SqlState = SqlState(*b"08006");
    pub const CONNECTION_REJECTED: SqlState = SqlState(*b"08004");
    pub const INSUFFICIENT_RESOURCES: SqlState = SqlState(*b"53000");
    pub const TOO_MANY_CONNECTIONS: SqlState = SqlState(*b"53300");
    pub const ADMIN_SHUTDOWN: SqlState = SqlState(*b"57P01");
    pub const IDLE_SESSION_TIMEOUT: SqlState = SqlState(*b"57P05");
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState(*b"0A000");
    pub const INSUFFICIENT_PRIVILEGE: SqlState = SqlState(*b"42501");
    pub const INVALID_CATALOG_NAME: SqlState = SqlState(*b"3D000");
    pub const PROGRAM_LIMIT_EXCEEDED: SqlState = SqlState(*b"54000");
    pub const CONFIGURATION_LIMIT_EXCEEDED: SqlState = SqlState(*b"53400");
    pub const SYNTAX_ERROR: SqlState = SqlState(*b"42601");
    pub const INTERNAL_ERROR: SqlState = SqlState(*b"XX000");
    pub const OUT_OF_MEMORY: SqlState = SqlState(*b"53200");
    pub const CHARACTER_NOT_IN_REPERTOIRE: SqlState = SqlState(*b"22021");

    /// A SQLSTATE received from PostgreSQL; `None` unless five ASCII letters or digits.
    pub fn from_bytes(code: &[u8]) -> Option<SqlState> {
        let code: [u8; 5] = code.try_into().ok()?;
        code.iter()
            .all(u8::is_ascii_alphanumeric)
            .then_some(SqlState(code))
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a SQLSTATE is ASCII")
    }
}

impl fmt::Debug for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// ErrorResponse severity; `Fatal` means the proxy closes the connection after sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// An error ready to be sent to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub severity: Severity,
    pub sqlstate: SqlState,
    pub message: String,
    pub hint: Option<String>,
}

impl ClientError {
    pub fn fatal(sqlstate: SqlState, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Fatal,
            sqlstate,
            message: message.into(),
            hint: None,
        }
    }

    pub fn error(sqlstate: SqlState, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            sqlstate,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Appends the ErrorResponse message to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        let mut fields = vec![
            (b'S', self.severity.as_str().to_string()),
            (b'V', self.severity.as_str().to_string()),
            (b'C', self.sqlstate.code().to_string()),
            (b'M', self.message.clone()),
        ];
        if let Some(hint) = &self.hint {
            fields.push((b'H', hint.clone()));
        }
        ErrorResponse::new(fields)
            .encode(buf)
            .expect("an ErrorResponse built by the proxy is always encodable");
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.severity.as_str(),
            self.sqlstate,
            self.message
        )
    }
}

impl std::error::Error for ClientError {}

/// An error that can be shown to a client.
///
/// Implementations return only what the client may know; the full error (with
/// addresses, paths and causes) goes to the operator's log through `Display`.
pub trait UserFacingError: fmt::Display {
    fn to_client_error(&self) -> ClientError;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_postgres_error_fields() {
        let mut buf = BytesMut::new();
        ClientError::fatal(SqlState::INVALID_PASSWORD, "password authentication failed")
            .with_hint("check the password")
            .encode(&mut buf);
        assert_eq!(buf[0], b'E');
        let len = u32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
        assert_eq!(len + 1, buf.len());
        let body = &buf[5..];
        assert!(body.windows(6).any(|w| w == b"C28P01"));
        assert!(body.windows(6).any(|w| w == b"SFATAL"));
        assert_eq!(*body.last().unwrap(), 0);
    }
}
