//! Errors from loading policy files.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::verifier::VerifierError;

/// Where in a policy file something is wrong, printed as `path:line:column` so editors
/// and terminals can jump to it. Line and column are 1-based; the column counts characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file as it was given to the loader.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Location {
    /// Turns a byte offset from the TOML parser into something a person can find.
    pub(crate) fn at(path: PathBuf, text: &str, offset: usize) -> Location {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            path,
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// Why a policy file was refused. Messages name the file, the position and the account,
/// but never a verifier or any part of one.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read at all.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file as it was given to the loader.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The file is not valid TOML.
    #[error("{at}: invalid TOML: {message}")]
    Syntax {
        /// Where the parser stopped.
        at: Location,
        /// The parser's description, without the quoted source line.
        message: String,
    },
    /// An account name that no PostgreSQL client could ever send.
    #[error("{at}: invalid user name: {reason}")]
    InvalidUserName {
        /// The key's position.
        at: Location,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The value for an account is not a string.
    #[error(
        "{at}: user {user:?}: expected a string holding a SCRAM-SHA-256 verifier, found {found}"
    )]
    NotAString {
        /// The value's position.
        at: Location,
        /// The account.
        user: String,
        /// The TOML type that was found instead.
        found: &'static str,
    },
    /// The string for an account is not a usable SCRAM-SHA-256 verifier.
    #[error("{at}: user {user:?}: {reason}")]
    InvalidVerifier {
        /// The value's position.
        at: Location,
        /// The account.
        user: String,
        /// What is wrong with the verifier.
        reason: VerifierError,
    },
}
