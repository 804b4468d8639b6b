//! The settings that keep clients, strangers and operator slips from taking the
//! proxy down: pre-login budgets, per-session caps, upstream liveness, the admin
//! endpoint's limits and the policy-reload guard.

use std::ops::RangeInclusive;
use std::time::Duration;

use toml::Spanned;

use super::{ConfigError, Context, RawAdmin, RawPolicy, RawServer, RawUpstream};

/// What one session may hold upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Named prepared statements (protocol-level and SQL `PREPARE`) open at once.
    pub max_prepared_statements: usize,
    /// Bytes of text of those statements together: the backend's memory grows with
    /// the text (about three times it), not with the count.
    pub max_prepared_bytes: usize,
    /// Named portals open at once.
    pub max_portals: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_prepared_statements: 1000,
            max_prepared_bytes: 16 << 20,
            max_portals: 1000,
        }
    }
}

/// Limits of the admin endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// Connections served at once; beyond it, the oldest connection that is not
    /// being answered makes room, or the new one is closed.
    pub max_connections: usize,
    /// Connections from one client address served at once.
    pub max_connections_per_address: usize,
    /// A request's headers (or, on an idle keep-alive connection, the next
    /// request) must arrive within this time.
    pub header_timeout: Duration,
    /// A request's body must arrive within this time.
    pub body_timeout: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            max_connections: 16,
            max_connections_per_address: 4,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
        }
    }
}

/// When a policy reload that removes accounts is refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemovalGuard {
    /// A reload removing more than this share of the accounts in force is refused.
    pub max_share: f64,
    /// The operator confirmed that large removals (even of every account) are meant.
    pub confirmed: bool,
}

impl Default for RemovalGuard {
    fn default() -> Self {
        RemovalGuard {
            max_share: 0.5,
            confirmed: false,
        }
    }
}

/// The server section's limits, before they are put in `ServerConfig`.
pub(super) struct ServerLimits {
    pub max_pending_logins: usize,
    pub max_pending_logins_per_address: usize,
    pub login_step_timeout: Duration,
    pub session: SessionLimits,
    pub decision_cache_bytes: u64,
    pub max_failures_per_address: u32,
    pub lockout_table_size: usize,
    pub listen_backlog: u32,
    pub first_packet_timeout: Duration,
    pub message_buffer_bytes: usize,
    pub message_timeout: Duration,
}

/// The upstream section's liveness settings.
pub(super) struct Liveness {
    pub checkout_timeout: Duration,
    pub reset_timeout: Duration,
    pub tcp_keepalive: Option<Duration>,
    pub health_check_interval: Option<Duration>,
    pub recycle_after_prepared: usize,
}

impl Context<'_> {
    /// An integer setting within `range`, or `default` when absent.
    fn count(
        &self,
        value: &Option<Spanned<i64>>,
        name: &str,
        range: RangeInclusive<i64>,
        default: i64,
    ) -> Result<i64, ConfigError> {
        match value {
            None => Ok(default),
            Some(n) if range.contains(n.get_ref()) => Ok(*n.get_ref()),
            Some(n) => Err(self.error(
                n,
                format!(
                    "{name} must be between {} and {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    /// A duration longer than zero, or `default` when absent.
    fn positive_duration(
        &self,
        value: &Option<Spanned<String>>,
        name: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let d = self.duration_or(value, default)?;
        match value {
            Some(v) if d.is_zero() => Err(self.error(v, format!("{name} must be longer than 0s"))),
            _ => Ok(d),
        }
    }

    pub(super) fn validate_server_limits(
        &self,
        raw: &RawServer,
        (sessions, max_message_size): (usize, usize),
    ) -> Result<ServerLimits, ConfigError> {
        let max_pending_logins = self.count(
            &raw.max_pending_logins,
            "max_pending_logins",
            1..=1_000_000,
            512,
        )?;
        let per_address = self.count(
            &raw.max_pending_logins_per_address,
            "max_pending_logins_per_address",
            1..=1_000_000,
            64,
        )?;
        let defaults = SessionLimits::default();
        let login_step_timeout = self.positive_duration(
            &raw.login_step_timeout,
            "login_step_timeout",
            Duration::from_secs(5),
        )?;
        // PostgreSQL sizes its listen queue from its connection limit too; the kernel
        // caps it at net.core.somaxconn.
        let backlog = (2 * (max_pending_logins as usize + sessions)).clamp(1024, 65535);
        Ok(ServerLimits {
            max_pending_logins: max_pending_logins as usize,
            max_pending_logins_per_address: per_address.min(max_pending_logins) as usize,
            login_step_timeout,
            first_packet_timeout: self
                .positive_duration(
                    &raw.first_packet_timeout,
                    "first_packet_timeout",
                    Duration::from_secs(2),
                )?
                .min(login_step_timeout),
            listen_backlog: self.count(
                &raw.listen_backlog,
                "listen_backlog",
                16..=65535,
                backlog as i64,
            )? as u32,
            message_buffer_bytes: self.count(
                &raw.message_buffer_bytes,
                "message_buffer_bytes",
                (1 << 20)..=(1 << 40),
                (2 * max_message_size).max(32 << 20) as i64,
            )? as usize,
            message_timeout: self.positive_duration(
                &raw.message_timeout,
                "message_timeout",
                Duration::from_secs(60),
            )?,
            session: SessionLimits {
                max_prepared_statements: self.count(
                    &raw.max_prepared_statements,
                    "max_prepared_statements",
                    1..=1_000_000,
                    defaults.max_prepared_statements as i64,
                )? as usize,
                max_prepared_bytes: self.count(
                    &raw.max_prepared_statement_bytes,
                    "max_prepared_statement_bytes",
                    (64 << 10)..=(1 << 34),
                    defaults.max_prepared_bytes as i64,
                )? as usize,
                max_portals: self.count(
                    &raw.max_portals,
                    "max_portals",
                    1..=1_000_000,
                    defaults.max_portals as i64,
                )? as usize,
            },
            decision_cache_bytes: self.count(
                &raw.decision_cache_bytes,
                "decision_cache_bytes",
                (1 << 20)..=(1 << 40),
                64 << 20,
            )? as u64,
            max_failures_per_address: self.count(
                &raw.max_failed_logins_per_address,
                "max_failed_logins_per_address (0 turns the limit off)",
                0..=1_000_000,
                50,
            )? as u32,
            lockout_table_size: self.count(
                &raw.lockout_table_size,
                "lockout_table_size",
                1000..=100_000_000,
                100_000,
            )? as usize,
        })
    }

    pub(super) fn validate_liveness(&self, raw: &RawUpstream) -> Result<Liveness, ConfigError> {
        let keepalive = self.duration_or(&raw.tcp_keepalive, Duration::from_secs(60))?;
        let interval = self.duration_or(&raw.health_check_interval, Duration::from_secs(10))?;
        Ok(Liveness {
            checkout_timeout: self.positive_duration(
                &raw.checkout_timeout,
                "checkout_timeout",
                Duration::from_secs(5),
            )?,
            reset_timeout: self.positive_duration(
                &raw.reset_timeout,
                "reset_timeout",
                Duration::from_secs(5),
            )?,
            tcp_keepalive: (!keepalive.is_zero()).then_some(keepalive),
            health_check_interval: (!interval.is_zero()).then_some(interval),
            recycle_after_prepared: self.count(
                &raw.recycle_after_prepared,
                "recycle_after_prepared",
                1..=1_000_000,
                500,
            )? as usize,
        })
    }

    pub(super) fn validate_admin_limits(
        &self,
        raw: Option<&RawAdmin>,
    ) -> Result<AdminLimits, ConfigError> {
        let defaults = AdminLimits::default();
        let Some(raw) = raw else {
            return Ok(defaults);
        };
        let max_connections = self.count(
            &raw.max_connections,
            "admin max_connections",
            1..=10_000,
            defaults.max_connections as i64,
        )? as usize;
        Ok(AdminLimits {
            max_connections,
            max_connections_per_address: self
                .count(
                    &raw.max_connections_per_address,
                    "admin max_connections_per_address",
                    1..=10_000,
                    (max_connections / 4).max(1) as i64,
                )?
                .min(max_connections as i64) as usize,
            header_timeout: self.positive_duration(
                &raw.header_timeout,
                "admin header_timeout",
                defaults.header_timeout,
            )?,
            body_timeout: self.positive_duration(
                &raw.body_timeout,
                "admin body_timeout",
                defaults.body_timeout,
            )?,
        })
    }

    pub(super) fn validate_removal_guard(
        &self,
        raw: &RawPolicy,
    ) -> Result<RemovalGuard, ConfigError> {
        let mut guard = RemovalGuard::default();
        if let Some(share) = &raw.max_account_removal_share {
            if !(0.0..=1.0).contains(share.get_ref()) {
                return Err(self.error(
                    share,
                    "max_account_removal_share must be between 0.0 and 1.0 (a share of the accounts)",
                ));
            }
            guard.max_share = *share.get_ref();
        }
        guard.confirmed = raw.confirm_account_removal.unwrap_or(false);
        Ok(guard)
    }

    pub(super) fn validate_check_interval(&self, raw: &RawPolicy) -> Result<Duration, ConfigError> {
        self.positive_duration(
            &raw.check_interval,
            "check_interval",
            Duration::from_secs(15),
        )
    }
}
