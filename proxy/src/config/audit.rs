//! The `[audit]` section: where the trail is written, with which keys, how often it
//! is committed and sealed, and what happens when it cannot take a record.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Context};

/// What an unrestricted account's statement does when the trail cannot take its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnavailable {
    /// Refused with 53000, like a restricted account's (the default).
    Refuse,
    /// Runs; the missing record is counted and logged.
    Allow,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The audit directory (segments, lock file).
    pub dir: PathBuf,
    /// Ed25519 private key (PKCS#8 PEM, mode 0600) that signs checkpoints.
    pub signing_key: PathBuf,
    /// AES-256 key file that seals statement constants and bind parameters.
    pub seal_key: PathBuf,
    /// Signed checkpoint at least this often while records arrive.
    pub checkpoint_interval: Duration,
    /// Records wait at most this long before they are written.
    pub commit_interval: Duration,
    pub segment_bytes: u64,
    pub segment_age: Duration,
    /// Records waiting for the writer; beyond, statements are refused.
    pub queue: usize,
    /// A restricted statement's results wait until its record is on disk (fsync).
    pub strict: bool,
    pub unrestricted_when_unavailable: WhenUnavailable,
    /// Exported segments whose last record is older than this are removed
    /// (behind a `retention` record); `None` keeps every segment.
    pub retention: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    dir: Spanned<String>,
    signing_key: Spanned<String>,
    seal_key: Spanned<String>,
    checkpoint_interval: Option<Spanned<String>>,
    commit_interval: Option<Spanned<String>>,
    segment_size: Option<Spanned<i64>>,
    segment_age: Option<Spanned<String>>,
    queue: Option<Spanned<i64>>,
    strict: Option<bool>,
    unrestricted_when_unavailable: Option<Spanned<String>>,
    retention: Option<Spanned<String>>,
}

impl Context<'_> {
    pub(super) fn validate_audit(&self, raw: &RawAudit) -> Result<AuditConfig, ConfigError> {
        let checkpoint_interval =
            self.duration_or(&raw.checkpoint_interval, Duration::from_secs(5))?;
        if let Some(span) = raw.checkpoint_interval.as_ref() {
            if checkpoint_interval < Duration::from_millis(100)
                || checkpoint_interval > Duration::from_secs(3600)
            {
                return Err(self.error(
                    span,
                    "checkpoint_interval must be between 100ms and 1h: records written \
                     after the last checkpoint are reported as unsealed",
                ));
            }
        }
        let commit_interval = self.duration_or(&raw.commit_interval, Duration::from_millis(5))?;
        if let Some(span) = raw.commit_interval.as_ref() {
            if commit_interval.is_zero() || commit_interval > Duration::from_secs(1) {
                return Err(
                    self.error(span, "commit_interval must be longer than 0 and at most 1s")
                );
            }
        }
        let segment_bytes = match &raw.segment_size {
            None => 64 << 20,
            Some(n) if (1 << 20..=1 << 32).contains(n.get_ref()) => *n.get_ref() as u64,
            Some(n) => {
                return Err(self.error(
                    n,
                    "segment_size must be between 1048576 (1 MiB) and 4294967296 (4 GiB) bytes",
                ))
            }
        };
        let segment_age = self.duration_or(&raw.segment_age, Duration::from_secs(3600))?;
        if let Some(span) = raw.segment_age.as_ref() {
            if segment_age < Duration::from_secs(1) {
                return Err(self.error(span, "segment_age must be at least 1s"));
            }
        }
        let queue = match &raw.queue {
            None => 65_536,
            Some(n) if (16..=1 << 22).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => return Err(self.error(n, "queue must be between 16 and 4194304 records")),
        };
        let unrestricted_when_unavailable = match raw
            .unrestricted_when_unavailable
            .as_ref()
            .map(|v| (v, v.get_ref().as_str()))
        {
            None | Some((_, "refuse")) => WhenUnavailable::Refuse,
            Some((_, "allow")) => WhenUnavailable::Allow,
            Some((v, other)) => {
                return Err(self.error(
                    v,
                    format!(
                        "unrestricted_when_unavailable `{other}` is unknown; use \"refuse\" or \"allow\""
                    ),
                ))
            }
        };
        let retention = match &raw.retention {
            None => None,
            Some(span) => {
                let keep = self.duration(span)?;
                if keep < Duration::from_secs(1) {
                    return Err(self.error(
                        span,
                        "retention must be at least 1s (production values are days, e.g. \"400d\")",
                    ));
                }
                Some(keep)
            }
        };
        Ok(AuditConfig {
            dir: self.resolve_path(&raw.dir),
            signing_key: self.resolve_path(&raw.signing_key),
            seal_key: self.resolve_path(&raw.seal_key),
            checkpoint_interval,
            commit_interval,
            segment_bytes,
            segment_age,
            queue,
            strict: raw.strict.unwrap_or(false),
            unrestricted_when_unavailable,
            retention,
        })
    }
}
