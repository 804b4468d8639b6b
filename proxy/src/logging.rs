//! Log output. Statements are never logged with their literal values: the
//! session logs fingerprints (see `maskgate_sql::fingerprint`).

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber; `RUST_LOG` overrides the configured level.
/// Does nothing if one is already installed (tests, embedding).
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log that cannot be written (stderr on a full disk) must not take the
        // process down: the fallback report of a failed write is an `eprintln!`,
        // which panics when stderr fails too, ending the session that logged.
        .log_internal_errors(false);
    let _ = match config.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
