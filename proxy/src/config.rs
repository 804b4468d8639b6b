//! The proxy's configuration file (`maskgate.toml`).
//!
//! Parsing happens in two steps: serde reads the TOML into a raw form that keeps
//! the source span of every value, then validation turns it into [`Config`].
//! Every error names `file:line:column`, so an operator can fix a bad file
//! without guessing, and the proxy refuses to start rather than run with a
//! half-understood configuration.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// A problem with the configuration; the proxy does not start with one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration file: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration was read from (relative paths resolve against its directory).
    pub source: PathBuf,
    pub server: ServerConfig,
    pub client_tls: ClientTlsConfig,
    pub upstream: UpstreamConfig,
    /// The policy directory and how its dates and names are read.
    pub policy: PolicyConfig,
    /// Where `/health` and `/metrics` are served; `None` turns the endpoint off.
    pub admin_listen: Option<SocketAddr>,
    pub admin: AdminLimits,
    pub log: LogConfig,
    /// The audit trail; `None` when the file has no `[audit]` section (warned at start).
    pub audit: Option<AuditConfig>,
    /// Detection, alerts and suspensions; `None` without a `[detection]` section.
    pub detection: Option<DetectionConfig>,
}

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Directory of policy files (`*.toml`), all merged.
    pub dir: PathBuf,
    pub settings: maskgate_policy::PolicySettings,
    /// The pseudonym keys (`[masking] key_file`); empty when none is configured.
    pub pseudonym_keys: std::sync::Arc<maskgate_mask::PseudonymKeys>,
    /// When a reload that removes accounts is refused.
    pub removal_guard: RemovalGuard,
    /// How often the policy files are compared with the policy in force, besides
    /// the directory watch (which a swapped directory can escape).
    pub check_interval: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_client_connections: usize,
    /// A client must finish TLS, startup and authentication within this time.
    pub login_timeout: Duration,
    /// Sessions idle (between statements) longer than this are closed; `None` = never.
    pub client_idle_timeout: Option<Duration>,
    /// How long SIGTERM waits for busy sessions before closing them with 57P01.
    pub shutdown_grace: Duration,
    /// Applied to every failed login, so timing does not reveal which accounts exist.
    pub auth_failure_delay: Duration,
    /// Largest message accepted from a client, in bytes.
    pub max_message_size: usize,
    /// What one analysis of a restricted account's statement may cost.
    pub analysis: maskgate_sql::Limits,
    /// When repeated failed logins lock an account.
    pub lockout: crate::login::LockoutPolicy,
    /// Connections that have not finished logging in, at most (in total and per
    /// client address); they do not take sessions' places.
    pub max_pending_logins: usize,
    pub max_pending_logins_per_address: usize,
    /// The first bytes, the TLS handshake and each authentication message must
    /// arrive within this time.
    pub login_step_timeout: Duration,
    /// What one session may hold upstream.
    pub session_limits: SessionLimits,
    /// The analyzer's decisions kept, for all accounts together, in bytes.
    pub decision_cache_bytes: u64,
    /// The listen queue (`listen(2)` backlog) of the client listener.
    pub listen_backlog: u32,
    /// A new connection's first packet must arrive within this time.
    pub first_packet_timeout: Duration,
    /// Bytes of large client messages buffered at once, in all sessions together.
    pub message_buffer_bytes: usize,
    /// A client message, once begun, must arrive whole within this time.
    pub message_timeout: Duration,
}

/// Whether clients must, may or may not use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTlsMode {
    Require,
    Prefer,
    Disable,
}

#[derive(Debug, Clone)]
pub struct ClientTlsConfig {
    pub mode: ClientTlsMode,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// How the proxy protects its connection to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTlsMode {
    Disable,
    /// TLS when the server offers it, without certificate verification.
    Prefer,
    /// TLS required; the certificate must chain to `ca_file` and name `host`.
    VerifyFull,
}

#[derive(Clone)]
pub struct UpstreamConfig {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<Secret>,
    pub tls: UpstreamTlsMode,
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Idle, authenticated connections kept for reuse.
    pub pool_size: usize,
    pub pool_idle_timeout: Duration,
    /// A session waits at most this long for its upstream connection to be ready
    /// (taken from the pool or opened, then set up).
    pub checkout_timeout: Duration,
    /// A pooled connection's reset (`DISCARD ALL`) may take at most this long.
    pub reset_timeout: Duration,
    /// TCP keepalive idle time on upstream connections; `None` = off.
    pub tcp_keepalive: Option<Duration>,
    /// How often the database's responsiveness is probed for `/health`; `None` = never.
    pub health_check_interval: Option<Duration>,
    /// A connection whose sessions held more prepared statements than this at
    /// once is closed rather than pooled: its backend's memory stays grown.
    pub recycle_after_prepared: usize,
}

/// The largest `max_statement_size` accepted: 16 MiB of text is about four million
/// tokens, a few gigabytes of trees.
const MAX_STATEMENT_SIZE: usize = 16 << 20;

/// The longest `max_sleep` accepted.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// The longest `max_analysis_time` accepted.
const MAX_ANALYSIS_TIME: Duration = Duration::from_secs(30);

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_size", &self.pool_size)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("checkout_timeout", &self.checkout_timeout)
            .field("reset_timeout", &self.reset_timeout)
            .field("tcp_keepalive", &self.tcp_keepalive)
            .field("health_check_interval", &self.health_check_interval)
            .field("recycle_after_prepared", &self.recycle_after_prepared)
            .finish()
    }
}

/// A secret string that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `maskgate_proxy=debug`.
    pub level: String,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates configuration text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cx = Context { text, path };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            cx.error_at(offset, e.message().to_string())
        })?;
        cx.validate(raw)
    }
}

struct Context<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Context<'_> {
    fn error_at(&self, offset: usize, message: String) -> ConfigError {
        let (line, column) = line_column(self.text, offset);
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            message,
        }
    }

    fn error<T>(&self, value: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.error_at(value.span().start, message.into())
    }

    fn resolve_path(&self, value: &Spanned<String>) -> PathBuf {
        let p = Path::new(value.get_ref());
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or_else(|| Path::new(".")).join(p)
        }
    }

    fn duration(&self, value: &Spanned<String>) -> Result<Duration, ConfigError> {
        humantime::parse_duration(value.get_ref()).map_err(|e| {
            self.error(
                value,
                format!(
                    "`{}` is not a duration ({e}); write e.g. \"500ms\", \"15s\" or \"5m\"",
                    value.get_ref()
                ),
            )
        })
    }

    fn duration_or(
        &self,
        value: &Option<Spanned<String>>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        value.as_ref().map_or(Ok(default), |v| self.duration(v))
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let server = self.validate_server(&raw.server)?;
        let client_tls = self.validate_client_tls(raw.tls.as_ref(), &server)?;
        let upstream = self.validate_upstream(&raw.upstream)?;
        let mut policy = self.validate_policy(&raw.policy)?;
        if let Some(file) = raw.masking.as_ref().and_then(|m| m.key_file.as_ref()) {
            let path = self.resolve_path(file);
            let keys = maskgate_mask::PseudonymKeys::load(&path).map_err(|e| {
                self.error(file, format!("pseudonym key file {}: {e}", path.display()))
            })?;
            policy.settings.pseudonym_keys = keys.ids().map(str::to_string).collect();
            policy.pseudonym_keys = std::sync::Arc::new(keys);
        }
        let admin_listen = match raw.admin.as_ref().and_then(|a| a.listen.as_ref()) {
            Some(addr) => Some(self.socket_addr(addr)?),
            None => None,
        };
        let admin = self.validate_admin_limits(raw.admin.as_ref())?;
        let log = match &raw.log {
            None => LogConfig {
                format: LogFormat::Human,
                level: "info".into(),
            },
            Some(log) => LogConfig {
                format: match log.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
                    None | Some((_, "human")) => LogFormat::Human,
                    Some((_, "json")) => LogFormat::Json,
                    Some((f, other)) => {
                        return Err(self.error(
                            f,
                            format!("log format `{other}` is unknown; use \"human\" or \"json\""),
                        ))
                    }
                },
                level: log
                    .level
                    .as_ref()
                    .map_or_else(|| "info".to_string(), |l| l.get_ref().clone()),
            },
        };
        Ok(Config {
            source: self.path.to_path_buf(),
            server,
            client_tls,
            upstream,
            policy,
            admin_listen,
            admin,
            log,
            audit: raw
                .audit
                .as_ref()
                .map(|a| self.validate_audit(a))
                .transpose()?,
            detection: raw
                .detection
                .as_ref()
                .map(|d| self.validate_detection(d, raw.audit.is_some()))
                .transpose()?,
        })
    }

    fn validate_policy(&self, raw: &RawPolicy) -> Result<PolicyConfig, ConfigError> {
        let mut settings = maskgate_policy::PolicySettings::default();
        if let Some(tz) = &raw.timezone {
            settings.timezone = parse_utc_offset(tz.get_ref()).ok_or_else(|| {
                self.error(
                    tz,
                    format!(
                        "timezone `{}` is not a UTC offset; write e.g. \"+07:00\" or \"UTC\"",
                        tz.get_ref()
                    ),
                )
            })?;
        }
        if let Some(path) = &raw.search_path {
            if path.get_ref().is_empty() {
                return Err(self.error(path, "search_path needs at least one schema"));
            }
            settings.search_path = path.get_ref().clone();
        }
        Ok(PolicyConfig {
            dir: self.resolve_path(&raw.dir),
            settings,
            pseudonym_keys: std::sync::Arc::new(maskgate_mask::PseudonymKeys::empty()),
            removal_guard: self.validate_removal_guard(raw)?,
            check_interval: self.validate_check_interval(raw)?,
        })
    }

    fn socket_addr(&self, value: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
        value.get_ref().parse().map_err(|_| {
            self.error(
                value,
                format!(
                    "`{}` is not an address; write host:port with a literal IP, e.g. \"127.0.0.1:6432\"",
                    value.get_ref()
                ),
            )
        })
    }

    fn validate_server(&self, raw: &RawServer) -> Result<ServerConfig, ConfigError> {
        let listen = self.socket_addr(&raw.listen)?;
        let max_client_connections = match &raw.max_client_connections {
            None => 1000,
            Some(n) if *n.get_ref() >= 1 => *n.get_ref() as usize,
            Some(n) => return Err(self.error(n, "max_client_connections must be at least 1")),
        };
        let max_message_size = match &raw.max_message_size {
            None => 64 << 20,
            Some(n) if *n.get_ref() >= 1024 && *n.get_ref() <= (1 << 30) => *n.get_ref() as usize,
            Some(n) => {
                return Err(self.error(
                    n,
                    "max_message_size must be between 1024 and 1073741824 bytes",
                ))
            }
        };
        let idle = self.duration_or(&raw.client_idle_timeout, Duration::ZERO)?;
        let analysis = self.validate_analysis(raw, max_message_size)?;
        let max_failures = match &raw.max_failed_logins {
            None => 5,
            Some(n) if (0..=1000).contains(n.get_ref()) => *n.get_ref() as u32,
            Some(n) => {
                return Err(self.error(
                    n,
                    "max_failed_logins must be between 0 (no lockout) and 1000",
                ))
            }
        };
        let limits =
            self.validate_server_limits(raw, (max_client_connections, max_message_size))?;
        let lockout = crate::login::LockoutPolicy {
            max_failures,
            window: self.duration_or(&raw.failed_login_window, Duration::from_secs(15 * 60))?,
            duration: self.duration_or(&raw.lockout_duration, Duration::from_secs(15 * 60))?,
            max_failures_per_address: limits.max_failures_per_address,
            max_tracked_names: limits.lockout_table_size,
            max_tracked_addresses: limits.lockout_table_size,
        };
        Ok(ServerConfig {
            listen,
            max_client_connections,
            login_timeout: self.duration_or(&raw.login_timeout, Duration::from_secs(15))?,
            client_idle_timeout: (!idle.is_zero()).then_some(idle),
            shutdown_grace: self.duration_or(&raw.shutdown_grace, Duration::from_secs(30))?,
            auth_failure_delay: self
                .duration_or(&raw.auth_failure_delay, Duration::from_millis(500))?,
            max_message_size,
            analysis,
            lockout,
            max_pending_logins: limits.max_pending_logins,
            max_pending_logins_per_address: limits.max_pending_logins_per_address,
            login_step_timeout: limits.login_step_timeout,
            session_limits: limits.session,
            decision_cache_bytes: limits.decision_cache_bytes,
            listen_backlog: limits.listen_backlog,
            first_packet_timeout: limits.first_packet_timeout,
            message_buffer_bytes: limits.message_buffer_bytes,
            message_timeout: limits.message_timeout,
        })
    }

    /// Limits of the analyzer for restricted accounts' statements.
    ///
    /// The upper bounds keep an operator's slip from undoing the budget: tokens, and
    /// so the analysis memory, scale with the statement size.
    fn validate_analysis(
        &self,
        raw: &RawServer,
        max_message_size: usize,
    ) -> Result<maskgate_sql::Limits, ConfigError> {
        let mut limits = maskgate_sql::Limits::default();
        if let Some(n) = &raw.max_statement_size {
            let bytes = *n.get_ref();
            let most = MAX_STATEMENT_SIZE.min(max_message_size) as u64;
            if bytes < 1024 || bytes as u64 > most {
                return Err(self.error(
                    n,
                    format!(
                        "max_statement_size must be between 1024 and {most} bytes (and at \
                         most max_message_size): analysis memory grows with it"
                    ),
                ));
            }
            limits.max_statement_bytes = bytes as usize;
            limits.max_tokens = limits.max_tokens.max(limits.max_statement_bytes / 4);
        }
        if let Some(n) = &raw.max_statement_depth {
            if !(100..=10_000).contains(n.get_ref()) {
                return Err(self.error(n, "max_statement_depth must be between 100 and 10000"));
            }
            limits.max_depth = *n.get_ref() as usize;
        }
        limits.max_analysis_time =
            self.duration_or(&raw.max_analysis_time, limits.max_analysis_time)?;
        if limits.max_analysis_time.is_zero() || limits.max_analysis_time > MAX_ANALYSIS_TIME {
            let span = raw
                .max_analysis_time
                .as_ref()
                .expect("out of range only when set");
            return Err(self.error(
                span,
                "max_analysis_time must be longer than 0s and at most 30s: an analysis \
                 holds one of a few analysis slots for as long as it runs",
            ));
        }
        limits.max_sleep = self.duration_or(&raw.max_sleep, limits.max_sleep)?;
        if limits.max_sleep > MAX_SLEEP {
            let span = raw.max_sleep.as_ref().expect("out of range only when set");
            return Err(self.error(
                span,
                "max_sleep must be at most 1h: a sleeping statement holds its connection",
            ));
        }
        Ok(limits)
    }
}

/// `UTC`, `Z`, `+07:00`, `-03:30` or `+7`.
fn parse_utc_offset(text: &str) -> Option<time::UtcOffset> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("utc") || text == "Z" {
        return Some(time::UtcOffset::UTC);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1i8, &text[1..]),
        b'-' => (-1i8, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':').unwrap_or((rest, "0"));
    let hours: i8 = hours.parse().ok()?;
    let minutes: i8 = minutes.parse().ok()?;
    if !(0..=14).contains(&hours) || !(0..60).contains(&minutes) {
        return None;
    }
    time::UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
}

/// `::ffff:127.0.0.1` (an IPv4 loopback address on a dual-stack socket) included.
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    tls: Option<RawTls>,
    upstream: RawUpstream,
    policy: RawPolicy,
    masking: Option<RawMasking>,
    admin: Option<RawAdmin>,
    log: Option<RawLog>,
    audit: Option<audit::RawAudit>,
    detection: Option<Spanned<maskgate_detect::RawSettings>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Spanned<String>,
    max_client_connections: Option<Spanned<i64>>,
    login_timeout: Option<Spanned<String>>,
    client_idle_timeout: Option<Spanned<String>>,
    shutdown_grace: Option<Spanned<String>>,
    auth_failure_delay: Option<Spanned<String>>,
    max_message_size: Option<Spanned<i64>>,
    max_statement_size: Option<Spanned<i64>>,
    max_statement_depth: Option<Spanned<i64>>,
    max_analysis_time: Option<Spanned<String>>,
    max_sleep: Option<Spanned<String>>,
    max_failed_logins: Option<Spanned<i64>>,
    failed_login_window: Option<Spanned<String>>,
    lockout_duration: Option<Spanned<String>>,
    max_failed_logins_per_address: Option<Spanned<i64>>,
    lockout_table_size: Option<Spanned<i64>>,
    max_pending_logins: Option<Spanned<i64>>,
    max_pending_logins_per_address: Option<Spanned<i64>>,
    login_step_timeout: Option<Spanned<String>>,
    max_prepared_statements: Option<Spanned<i64>>,
    max_prepared_statement_bytes: Option<Spanned<i64>>,
    max_portals: Option<Spanned<i64>>,
    decision_cache_bytes: Option<Spanned<i64>>,
    listen_backlog: Option<Spanned<i64>>,
    first_packet_timeout: Option<Spanned<String>>,
    message_buffer_bytes: Option<Spanned<i64>>,
    message_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    mode: Spanned<String>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    host: String,
    port: Option<Spanned<i64>>,
    database: String,
    user: String,
    password: Option<Spanned<toml::Value>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    tls: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    pool_size: Option<Spanned<i64>>,
    pool_idle_timeout: Option<Spanned<String>>,
    checkout_timeout: Option<Spanned<String>>,
    reset_timeout: Option<Spanned<String>>,
    tcp_keepalive: Option<Spanned<String>>,
    health_check_interval: Option<Spanned<String>>,
    recycle_after_prepared: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    dir: Spanned<String>,
    timezone: Option<Spanned<String>>,
    search_path: Option<Spanned<Vec<String>>>,
    max_account_removal_share: Option<Spanned<f64>>,
    confirm_account_removal: Option<bool>,
    check_interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMasking {
    key_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<Spanned<String>>,
    max_connections: Option<Spanned<i64>>,
    max_connections_per_address: Option<Spanned<i64>>,
    header_timeout: Option<Spanned<String>>,
    body_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<Spanned<String>>,
    level: Option<Spanned<String>>,
}

mod connections;
#[cfg(test)]
mod tests;

#[path = "config/audit.rs"]
mod audit;
pub use audit::{AuditConfig, WhenUnavailable};

#[path = "config/limits.rs"]
mod limits;
pub use limits::{AdminLimits, RemovalGuard, SessionLimits};
#[path = "config/detection.rs"]
mod detection;
pub use detection::DetectionConfig;
