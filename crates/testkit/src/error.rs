//! The one error type of this crate.

use std::io;
use std::path::Path;

/// Everything that can go wrong while finding PostgreSQL or driving a cluster.
///
/// Messages carry enough context (paths, stderr, log tail) to diagnose a
/// failing test from CI output alone, but never the cluster password.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A PostgreSQL program is missing; `searched` says where we looked so the
    /// fix (install PostgreSQL, set PATH or `MASKGATE_PG_BINDIR`) is obvious.
    #[error("PostgreSQL program `{program}` not found; searched: {searched}")]
    BinaryNotFound {
        program: &'static str,
        searched: String,
    },

    /// PostgreSQL refuses to run as root, so when the tests run as root we
    /// need an unprivileged `postgres` OS user to own the cluster.
    #[error("running as root but the OS user `postgres` does not exist (needed to own the cluster): {0}")]
    PostgresUserMissing(String),

    /// A filesystem or process-spawning operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// An external program ran but reported failure.
    #[error("`{program}` failed ({status}): {stderr}")]
    Command {
        program: String,
        status: String,
        stderr: String,
    },

    /// The server did not come up; `log_tail` is the end of its log file.
    #[error("PostgreSQL failed to start after {attempts} attempt(s): {reason}\n--- server log tail ---\n{log_tail}")]
    Startup {
        attempts: u32,
        reason: String,
        log_tail: String,
    },

    /// Creating the per-process template data directory failed earlier; the
    /// failure is cached so every later cluster reports the same cause.
    #[error("template cluster unavailable: {0}")]
    Template(String),

    /// maskgate could not be configured or started in front of a cluster.
    #[error("maskgate did not start: {0}")]
    Proxy(String),

    /// Starting the process-wide shared cluster failed earlier; cached so
    /// every test using it fails with the same cause.
    #[error("shared cluster unavailable: {0}")]
    Shared(String),

    /// Stop/start/restart only make sense for clusters this crate owns.
    #[error("`{0}` is not supported on an external server (MASKGATE_TEST_PG_URL)")]
    External(&'static str),

    /// `MASKGATE_TEST_PG_URL` could not be parsed (the URL itself is not
    /// repeated because it may contain a password).
    #[error("MASKGATE_TEST_PG_URL is not a valid postgres:// URL: {0}")]
    InvalidUrl(String),
}

impl TestkitError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        TestkitError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn io_path(what: &str, path: &Path, source: io::Error) -> Self {
        TestkitError::io(format!("{what} {}", path.display()), source)
    }
}
