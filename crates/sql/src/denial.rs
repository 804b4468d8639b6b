//! Why a statement was refused, in the form the proxy sends to the client.

use std::fmt;

/// SQLSTATE codes the enforcer answers with.
pub mod sqlstate {
    /// The policy does not let this account do it (a relation, column, function or
    /// statement kind it may not use, or a construct that is never allowed). Also a
    /// statement that does not parse (or uses a PostgreSQL syntax sqlparser lacks):
    /// it cannot be analyzed, so it is refused; the message says so.
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    /// A relation outside the account's policy, or one that does not exist: the
    /// account's catalog lists neither, so both are answered as PostgreSQL answers
    /// a relation that is not there.
    pub const UNDEFINED_TABLE: &str = "42P01";
    /// A construct maskgate does not analyze (yet); refused rather than guessed at.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// Text PostgreSQL's own grammar does not accept (sqlparser, more lenient, did).
    pub const SYNTAX_ERROR: &str = "42601";
    /// A statement beyond the analysis budget (size, tokens, time), as PostgreSQL
    /// answers one beyond its own limits.
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    /// A statement nesting deeper than the analyzer's bound: PostgreSQL's own
    /// `stack depth limit exceeded`.
    pub const STATEMENT_TOO_COMPLEX: &str = "54001";
    /// An analysis that ran out of time, as PostgreSQL answers a statement that hits
    /// `statement_timeout`. Depends on the load, so it is not remembered.
    pub const QUERY_CANCELED: &str = "57014";
    /// No analysis could start in time because others hold every slot. Depends on
    /// the load, so it is not remembered.
    pub const INSUFFICIENT_RESOURCES: &str = "53000";
}

/// A refused statement. The message names the construct, relation, column or function
/// and never echoes a literal value from the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// One of [`sqlstate`].
    pub sqlstate: &'static str,
    /// For the client's ErrorResponse.
    pub message: String,
}

impl Denial {
    /// Whether the same statement may be allowed when tried again: a denial that
    /// depends on the load, not on the statement, and must not be cached.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.sqlstate,
            sqlstate::QUERY_CANCELED | sqlstate::INSUFFICIENT_RESOURCES
        )
    }

    pub(crate) fn privilege(message: impl Into<String>) -> Denial {
        Denial {
            sqlstate: sqlstate::INSUFFICIENT_PRIVILEGE,
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(construct: impl fmt::Display) -> Denial {
        Denial {
            sqlstate: sqlstate::FEATURE_NOT_SUPPORTED,
            message: format!("{construct} is not supported through maskgate"),
        }
    }

    pub(crate) fn forbidden(construct: impl fmt::Display) -> Denial {
        Denial::privilege(format!("{construct} is not allowed through maskgate"))
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.sqlstate)
    }
}

impl std::error::Error for Denial {}
