//! Process-wide counters for the admin `/metrics` endpoint.
//!
//! Everything the relay touches per message is a plain atomic: label sets are
//! resolved once (at construction, or on the first sighting of a SQLSTATE
//! class) and the resulting counter handles are cached, so the hot path never
//! takes the `Family` lock nor allocates.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

mod guards;
mod kinds;

pub use guards::Guards;
use kinds::*;

use crate::observe::{GuardCheck, Would};

/// `Content-Type` of [`Metrics::encode_text`] output (Prometheus text 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Why a client connection was turned away; a closed set so the
/// `reason` label cannot grow without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// `max_client_connections` reached.
    MaxConnections,
    /// Plain TCP where the TLS mode requires TLS.
    TlsRequired,
    /// TLS handshake failed.
    Tls,
    /// Unknown user or wrong password.
    AuthFailed,
    /// Malformed or unsupported protocol traffic before the session started.
    Protocol,
    /// A refused startup parameter (role, search_path, …).
    StartupParameter,
    /// Login did not finish within `login_timeout`.
    LoginTimeout,
    /// The upstream could not be reached for this client.
    Upstream,
    /// The server is shutting down.
    ShuttingDown,
    /// Too many failed logins: the login name is locked for a while.
    LockedOut,
    /// Account disabled, expired or not yet valid.
    AccountInactive,
    /// Client address or certificate not registered for the account.
    UnregisteredMachine,
    /// Outside the account's login hours or days.
    OutsideHours,
    /// The account already has its maximum of open sessions.
    MaxSessions,
    /// A restricted account whose rules cannot be enforced right now (the
    /// protected tables' column identities could not be read upstream).
    EnforcementUnavailable,
    /// The audit trail could not take the admitted login's record.
    AuditUnavailable,
    /// Too many connections were logging in (in total or from the client's address).
    PendingLogins,
    /// The client's address failed to log in too often; refused for a while.
    AddressLimited,
    /// Suspended by detection until an officer unlocks it.
    Suspended,
}

impl RejectReason {
    /// Every variant, in label order; the counters are pre-created from this
    /// so each reason is exported (as 0) before it first happens.
    pub const ALL: [RejectReason; 19] = [
        RejectReason::MaxConnections,
        RejectReason::TlsRequired,
        RejectReason::Tls,
        RejectReason::AuthFailed,
        RejectReason::Protocol,
        RejectReason::StartupParameter,
        RejectReason::LoginTimeout,
        RejectReason::Upstream,
        RejectReason::ShuttingDown,
        RejectReason::LockedOut,
        RejectReason::AccountInactive,
        RejectReason::UnregisteredMachine,
        RejectReason::OutsideHours,
        RejectReason::MaxSessions,
        RejectReason::EnforcementUnavailable,
        RejectReason::AuditUnavailable,
        RejectReason::PendingLogins,
        RejectReason::AddressLimited,
        RejectReason::Suspended,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MaxConnections => "max_connections",
            RejectReason::TlsRequired => "tls_required",
            RejectReason::Tls => "tls",
            RejectReason::AuthFailed => "auth_failed",
            RejectReason::Protocol => "protocol",
            RejectReason::StartupParameter => "startup_parameter",
            RejectReason::LoginTimeout => "login_timeout",
            RejectReason::Upstream => "upstream",
            RejectReason::ShuttingDown => "shutting_down",
            RejectReason::LockedOut => "locked_out",
            RejectReason::AccountInactive => "account_inactive",
            RejectReason::UnregisteredMachine => "unregistered_machine",
            RejectReason::OutsideHours => "outside_hours",
            RejectReason::MaxSessions => "max_sessions",
            RejectReason::EnforcementUnavailable => "enforcement_unavailable",
            RejectReason::AuditUnavailable => "audit_unavailable",
            RejectReason::PendingLogins => "pending_logins",
            RejectReason::AddressLimited => "address_limited",
            RejectReason::Suspended => "suspended",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// All of maskgate's metrics. Build once and share it behind an `Arc`;
/// every recording method takes `&self` and touches only atomics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    client_connections: Gauge,
    client_connections_total: Counter,
    client_rejected: [Counter; RejectReason::ALL.len()],
    upstream_connections: Gauge,
    upstream_idle: Gauge,
    upstream_connect_errors: Counter,
    statements: Counter,
    errors: Family<ClassLabel, Counter>,
    error_slots: Box<[OnceLock<Counter>]>,
    bytes_from_client: Counter,
    bytes_to_client: Counter,
    statement_duration: SharedHistogram,
    lockouts: Counter,
    policy_reloads_ok: Counter,
    policy_reloads_refused: Counter,
    policy_valid: Gauge,
    sessions_ended_by_policy: Counter,
    statements_denied: Counter,
    row_cap_exceeded: Counter,
    quota_statements_exceeded: Counter,
    quota_rows_exceeded: Counter,
    quota_session_exceeded: Counter,
    guard_refusals: Family<CheckLabel, Counter>,
    monitor_decisions: Family<WouldLabel, Counter>,
    result_column_violations: Counter,
    event_overflows: Counter,
    guards: Guards,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("maskgate");

        let client_connections = Gauge::default();
        registry.register(
            "client_connections",
            "Client connections currently open",
            client_connections.clone(),
        );
        let client_connections_total = Counter::default();
        registry.register(
            "client_connections",
            "Client connections accepted",
            client_connections_total.clone(),
        );
        let rejected = Family::<ReasonLabel, Counter>::default();
        let client_rejected =
            RejectReason::ALL.map(|reason| rejected.get_or_create_owned(&ReasonLabel(reason)));
        registry.register(
            "client_connections_rejected",
            "Client connections refused before a session started, by reason",
            rejected,
        );

        let upstream_connections = Gauge::default();
        registry.register(
            "upstream_connections",
            "Upstream connections currently open, including idle pooled ones",
            upstream_connections.clone(),
        );
        let upstream_idle = Gauge::default();
        registry.register(
            "upstream_connections_idle",
            "Authenticated upstream connections idle in the pool",
            upstream_idle.clone(),
        );
        let upstream_connect_errors = Counter::default();
        registry.register(
            "upstream_connect_errors",
            "Failed attempts to open an upstream connection",
            upstream_connect_errors.clone(),
        );

        let statements = Counter::default();
        registry.register(
            "statements",
            "Statements relayed to the upstream",
            statements.clone(),
        );
        let errors = Family::<ClassLabel, Counter>::default();
        registry.register(
            "errors",
            "Error responses sent to clients, by SQLSTATE class",
            errors.clone(),
        );

        let bytes_from_client = Counter::default();
        registry.register(
            "client_bytes_received",
            "Bytes received from clients",
            bytes_from_client.clone(),
        );
        let bytes_to_client = Counter::default();
        registry.register(
            "client_bytes_sent",
            "Bytes sent to clients",
            bytes_to_client.clone(),
        );

        let statement_duration = SharedHistogram(std::sync::Arc::new(AtomicHistogram::new(
            &latency_bounds_micros(),
        )));
        registry.register_with_unit(
            "statement_duration",
            "Time from a statement reaching the proxy until its result is complete",
            Unit::Seconds,
            statement_duration.clone(),
        );

        let lockouts = Counter::default();
        registry.register(
            "login_lockouts",
            "Login names locked after repeated failed logins",
            lockouts.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        let policy_reloads_ok = reloads.get_or_create_owned(&ResultLabel("ok"));
        let policy_reloads_refused = reloads.get_or_create_owned(&ResultLabel("refused"));
        registry.register(
            "policy_reloads",
            "Policy reloads, by result (a refused policy leaves the previous one in force)",
            reloads,
        );
        let policy_valid = Gauge::default();
        policy_valid.set(1);
        registry.register(
            "policy_valid",
            "1 when the last policy load succeeded, 0 when the policy on disk was refused",
            policy_valid.clone(),
        );
        let sessions_ended_by_policy = Counter::default();
        registry.register(
            "sessions_ended_by_policy",
            "Open sessions ended because their account was disabled, expired or removed",
            sessions_ended_by_policy.clone(),
        );

        let statements_denied = Counter::default();
        registry.register(
            "statements_denied",
            "Statements of restricted accounts refused by the policy (never sent upstream)",
            statements_denied.clone(),
        );
        let row_cap_exceeded = Counter::default();
        registry.register(
            "row_cap_exceeded",
            "Statements ended because they returned more rows than the roles allow",
            row_cap_exceeded.clone(),
        );
        let quotas = Family::<QuotaLabel, Counter>::default();
        let quota_statements_exceeded =
            quotas.get_or_create_owned(&QuotaLabel("statements_per_minute"));
        let quota_rows_exceeded = quotas.get_or_create_owned(&QuotaLabel("rows_per_hour"));
        let quota_session_exceeded =
            quotas.get_or_create_owned(&QuotaLabel("max_rows_per_session"));
        registry.register(
            "quota_exceeded",
            "Statements refused or ended because the account's rolling quota was used up, by quota",
            quotas,
        );
        registry.register(
            "printer_mismatches",
            "Rewritten statements refused because PostgreSQL's parser read maskgate's text \
             differently from what was analyzed (a printer bug)",
            PrinterMismatches,
        );
        let guard_refusals = Family::<CheckLabel, Counter>::default();
        registry.register(
            "guard_refusals",
            "Statements PostgreSQL failed on a check the rewrite made it run: rows packed into \
             values past the cap, an OFFSET parameter at or past the cap, a write referencing a \
             parent outside the account's scope; by check",
            guard_refusals.clone(),
        );
        let monitor_decisions = Family::<WouldLabel, Counter>::default();
        registry.register(
            "monitor_decisions",
            "Statements of accounts in monitor mode, by what enforcement would have done \
             (deny, rewrite, row_cap); they ran as sent",
            monitor_decisions.clone(),
        );
        let result_column_violations = Counter::default();
        registry.register(
            "result_column_violations",
            "Results stopped because a protected column arrived as stored (a rewrite bug)",
            result_column_violations.clone(),
        );
        let event_overflows = Counter::default();
        registry.register(
            "event_overflows",
            "Events logged by the session itself because the log task's queue was full",
            event_overflows.clone(),
        );

        let guards = Guards::register(&mut registry);
        Metrics {
            guards,
            event_overflows,
            registry,
            statements_denied,
            row_cap_exceeded,
            quota_statements_exceeded,
            quota_rows_exceeded,
            quota_session_exceeded,
            guard_refusals,
            monitor_decisions,
            result_column_violations,
            lockouts,
            policy_reloads_ok,
            policy_reloads_refused,
            policy_valid,
            sessions_ended_by_policy,
            client_connections,
            client_connections_total,
            client_rejected,
            upstream_connections,
            upstream_idle,
            upstream_connect_errors,
            statements,
            errors,
            error_slots: (0..=INVALID_CLASS_SLOT).map(|_| OnceLock::new()).collect(),
            bytes_from_client,
            bytes_to_client,
            statement_duration,
        }
    }

    /// The guards' counters.
    pub fn guards(&self) -> &Guards {
        &self.guards
    }

    /// A login name was locked after repeated failures.
    pub fn lockout(&self) {
        self.lockouts.inc();
    }

    /// A policy load finished: `ok` means it is now in force.
    pub fn policy_reload(&self, ok: bool) {
        if ok {
            self.policy_reloads_ok.inc();
        } else {
            self.policy_reloads_refused.inc();
        }
        self.policy_valid.set(i64::from(ok));
    }

    /// A restricted account's statement was refused.
    pub fn statement_denied(&self) {
        self.statements_denied.inc();
    }

    /// A statement was ended at the row cap.
    pub fn row_cap_exceeded(&self) {
        self.row_cap_exceeded.inc();
    }

    /// A rolling quota was used up: `rows` for rows per hour, else statements per minute.
    pub fn quota_exceeded(&self, rows: bool) {
        if rows {
            self.quota_rows_exceeded.inc();
        } else {
            self.quota_statements_exceeded.inc();
        }
    }

    /// A session's `max_rows_per_session` refused or ended a statement.
    pub fn session_budget_exceeded(&self) {
        self.quota_session_exceeded.inc();
    }

    /// A check PostgreSQL ran for the rewrite failed the statement.
    pub fn guard_refusal(&self, check: GuardCheck) {
        self.guard_refusals
            .get_or_create(&CheckLabel(check.as_str()))
            .inc();
    }

    /// Monitor mode: what enforcing a statement would have done.
    pub fn monitor_decision(&self, would: Would) {
        self.monitor_decisions
            .get_or_create(&WouldLabel(would.as_str()))
            .inc();
    }

    /// A result column that should have been masked arrived as stored.
    pub fn result_column_violation(&self) {
        self.result_column_violations.inc();
    }

    /// An event found the log task's queue full and was logged inline.
    pub fn event_overflow(&self) {
        self.event_overflows.inc();
    }

    /// A session was ended because its account may no longer be used.
    pub fn session_ended_by_policy(&self) {
        self.sessions_ended_by_policy.inc();
    }

    /// A client connection was accepted (counts it and raises the open gauge).
    pub fn client_connected(&self) {
        self.client_connections_total.inc();
        self.client_connections.inc();
    }

    /// An accepted client connection ended; pairs with [`Self::client_connected`].
    pub fn client_disconnected(&self) {
        self.client_connections.dec();
    }

    /// A client was refused. Independent of the open-connection gauge, so a
    /// connection that was counted as connected must still be disconnected.
    pub fn client_rejected(&self, reason: RejectReason) {
        self.client_rejected[reason.index()].inc();
    }

    /// An upstream connection was established.
    pub fn upstream_opened(&self) {
        self.upstream_connections.inc();
    }

    /// An upstream connection was closed (for any reason).
    pub fn upstream_closed(&self) {
        self.upstream_connections.dec();
    }

    /// Current number of idle pooled upstream connections.
    pub fn upstream_idle_set(&self, n: usize) {
        self.upstream_idle.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Opening an upstream connection failed.
    pub fn upstream_connect_error(&self) {
        self.upstream_connect_errors.inc();
    }

    /// A statement was relayed upstream.
    pub fn statement(&self) {
        self.statements.inc();
    }

    /// An ErrorResponse went to a client; `sqlstate` is its `C` field (five
    /// bytes, only the first two are used). Malformed codes are counted under
    /// the class `invalid`.
    pub fn error(&self, sqlstate: &[u8]) {
        let (slot, label) = sqlstate_class(sqlstate);
        self.error_slots[slot]
            .get_or_init(|| self.errors.get_or_create_owned(&label))
            .inc();
    }

    /// Bytes read from a client socket.
    pub fn bytes_from_client(&self, n: usize) {
        self.bytes_from_client.inc_by(n as u64);
    }

    /// Bytes written to a client socket.
    pub fn bytes_to_client(&self, n: usize) {
        self.bytes_to_client.inc_by(n as u64);
    }

    /// Records one statement's latency.
    pub fn observe_statement(&self, elapsed: Duration) {
        self.statement_duration.0.observe(elapsed);
    }

    /// Renders every metric in the Prometheus text format (see [`CONTENT_TYPE`]).
    pub fn encode_text(&self) -> String {
        let mut out = String::with_capacity(4096);
        if prometheus_text::encode(&mut out, &self.registry).is_err() {
            // Writing into a String cannot fail and no metric here produces
            // errors of its own; keep whatever was rendered rather than panic.
            tracing::error!("encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Value of the sample line that starts with `series ` exactly.
    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    #[test]
    fn fresh_metrics_export_zeroes_with_types() {
        let text = Metrics::new().encode_text();
        for (name, kind) in [
            ("maskgate_client_connections", "gauge"),
            ("maskgate_client_connections_total", "counter"),
            ("maskgate_client_connections_rejected_total", "counter"),
            ("maskgate_upstream_connections", "gauge"),
            ("maskgate_upstream_connections_idle", "gauge"),
            ("maskgate_upstream_connect_errors_total", "counter"),
            ("maskgate_statements_total", "counter"),
            ("maskgate_client_bytes_received_total", "counter"),
            ("maskgate_client_bytes_sent_total", "counter"),
            ("maskgate_statement_duration_seconds", "histogram"),
        ] {
            let line = format!("# TYPE {name} {kind}");
            assert!(text.lines().any(|l| l == line), "missing {line:?}:\n{text}");
        }
        assert_eq!(
            sample(&text, "maskgate_client_connections").as_deref(),
            Some("0")
        );
        assert_eq!(
            sample(
                &text,
                "maskgate_client_connections_rejected_total{reason=\"auth_failed\"}"
            )
            .as_deref(),
            Some("0")
        );
        // An empty family is left out entirely until its first error.
        assert!(!text.contains("maskgate_errors_total"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn counters_and_gauges_show_up() {
        let m = Metrics::new();
        m.client_connected();
        m.client_connected();
        m.client_connected();
        m.client_disconnected();
        m.client_rejected(RejectReason::MaxConnections);
        m.client_rejected(RejectReason::StartupParameter);
        m.client_rejected(RejectReason::StartupParameter);
        m.upstream_opened();
        m.upstream_opened();
        m.upstream_closed();
        m.upstream_idle_set(7);
        m.upstream_connect_error();
        m.statement();
        m.statement();
        m.bytes_from_client(100);
        m.bytes_from_client(23);
        m.bytes_to_client(4096);
        let text = m.encode_text();

        for (series, value) in [
            ("maskgate_client_connections", "2"),
            ("maskgate_client_connections_total", "3"),
            (
                "maskgate_client_connections_rejected_total{reason=\"max_connections\"}",
                "1",
            ),
            (
                "maskgate_client_connections_rejected_total{reason=\"startup_parameter\"}",
                "2",
            ),
            (
                "maskgate_client_connections_rejected_total{reason=\"tls_required\"}",
                "0",
            ),
            ("maskgate_upstream_connections", "1"),
            ("maskgate_upstream_connections_idle", "7"),
            ("maskgate_upstream_connect_errors_total", "1"),
            ("maskgate_statements_total", "2"),
            ("maskgate_client_bytes_received_total", "123"),
            ("maskgate_client_bytes_sent_total", "4096"),
        ] {
            assert_eq!(
                sample(&text, series).as_deref(),
                Some(value),
                "{series}:\n{text}"
            );
        }
    }

    #[test]
    fn errors_are_counted_by_class() {
        let m = Metrics::new();
        m.error(b"42P01");
        m.error(b"42703");
        m.error(b"57014");
        m.error(b"08006");
        m.error(b"4");
        m.error(b"a1000");
        let text = m.encode_text();
        assert!(
            text.contains("# TYPE maskgate_errors_total counter\n"),
            "{text}"
        );
        for (class, value) in [("42", "2"), ("57", "1"), ("08", "1"), ("invalid", "2")] {
            let series = format!("maskgate_errors_total{{sqlstate_class=\"{class}\"}}");
            assert_eq!(
                sample(&text, &series).as_deref(),
                Some(value),
                "{series}:\n{text}"
            );
        }
    }

    #[test]
    fn sqlstate_slots_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for a in (b'0'..=b'9').chain(b'A'..=b'Z') {
            for b in (b'0'..=b'9').chain(b'A'..=b'Z') {
                let (slot, label) = sqlstate_class(&[a, b, b'0', b'0', b'0']);
                assert!(slot < INVALID_CLASS_SLOT);
                assert_eq!(label.as_str().as_bytes(), [a, b]);
                assert!(seen.insert(slot));
            }
        }
        assert_eq!(sqlstate_class(b"").0, INVALID_CLASS_SLOT);
        assert_eq!(sqlstate_class(b"4-").0, INVALID_CLASS_SLOT);
    }

    #[test]
    fn latency_buckets_span_100us_to_30s() {
        let bounds = latency_bounds_micros();
        assert_eq!(bounds.first(), Some(&100));
        assert_eq!(bounds.last(), Some(&30_000_000));
        assert!(bounds.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new();
        m.observe_statement(Duration::from_micros(50));
        m.observe_statement(Duration::from_micros(100));
        m.observe_statement(Duration::from_millis(3));
        m.observe_statement(Duration::from_secs(60));
        let text = m.encode_text();
        let name = "maskgate_statement_duration_seconds";
        assert_eq!(
            sample(&text, &format!("{name}_bucket{{le=\"0.0001\"}}")).as_deref(),
            Some("2"),
            "{text}"
        );
        assert_eq!(
            sample(&text, &format!("{name}_bucket{{le=\"30\"}}")).as_deref(),
            Some("3"),
            "{text}"
        );
        assert_eq!(
            sample(&text, &format!("{name}_bucket{{le=\"+Inf\"}}")).as_deref(),
            Some("4"),
            "{text}"
        );
        assert_eq!(
            sample(&text, &format!("{name}_count")).as_deref(),
            Some("4")
        );
        let sum: f64 = sample(&text, &format!("{name}_sum"))
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        assert!((sum - 60.00315).abs() < 1e-9, "{sum}");
    }
}
