//! What the metrics and the log make of each event.

use super::event::*;
use crate::metrics::Metrics;

/// Counts the event. Atomics only: runs inline where the event happens.
pub(super) fn count(metrics: &Metrics, event: &Event) {
    match event {
        Event::Login(attempt) => match &attempt.outcome {
            LoginOutcome::Admitted(_) => metrics.client_connected(),
            LoginOutcome::Refused { reason, .. } => metrics.client_rejected(*reason),
        },
        Event::Lockout { .. } => metrics.lockout(),
        Event::SessionEnded(_) => metrics.client_disconnected(),
        Event::StatementRefused(refused) => match refused.refusal {
            Refusal::Policy | Refusal::CopyRow | Refusal::Unrecorded => metrics.statement_denied(),
            Refusal::StatementQuota => metrics.quota_exceeded(false),
            Refusal::RowQuota => metrics.quota_exceeded(true),
            // Counted by the session, which knows which cap it was.
            Refusal::SessionLimit => {}
            Refusal::SessionBudget => metrics.session_budget_exceeded(),
        },
        Event::StatementStopped(stopped) => match stopped.limit {
            StopLimit::RowCap(_) => metrics.row_cap_exceeded(),
            StopLimit::HourlyRows => metrics.quota_exceeded(true),
            StopLimit::SessionRows(_) => metrics.session_budget_exceeded(),
            StopLimit::Guard(check) => metrics.guard_refusal(check),
            StopLimit::ProtectedColumn => metrics.result_column_violation(),
        },
        Event::Monitored(monitored) => metrics.monitor_decision(monitored.would),
        Event::PolicyReload(reload) => metrics.policy_reload(reload.outcome.is_ok()),
    }
}

/// Writes the event's log line. Every value a client chose or that can quote one
/// (login names, error details, denial reasons naming its identifiers, statement
/// fingerprints, which keep quoted identifiers) is logged with `?`, quoted and
/// escaped, so a newline or an escape sequence cannot forge a line of the
/// human-format log; the JSON format escapes them as JSON. Statements appear only
/// as fingerprints.
pub(super) fn log(event: &Event) {
    match event {
        Event::Login(attempt) => log_login(attempt),
        Event::Lockout { client, login } => tracing::warn!(
            peer = %client,
            user = ?login,
            "login name locked after repeated failed logins"
        ),
        Event::SessionEnded(ended) => {
            let s = &ended.session;
            match &ended.end {
                SessionEnd::Client => tracing::info!(
                    peer = %s.client, user = ?s.login, session = %s.id,
                    duration_ms = ended.duration.as_millis() as u64, "session ended"
                ),
                SessionEnd::UpstreamGone => tracing::warn!(
                    peer = %s.client, user = ?s.login, session = %s.id,
                    "database server closed the session's connection"
                ),
                SessionEnd::ClosedByMaskgate(reason) => tracing::info!(
                    peer = %s.client, user = ?s.login, session = %s.id, reason = ?reason,
                    "session closed by maskgate"
                ),
            }
        }
        Event::StatementRefused(refused) => match refused.refusal {
            Refusal::CopyRow => tracing::info!(
                session = %refused.session.id,
                reason = ?refused.reason,
                "COPY rows refused"
            ),
            _ => tracing::info!(
                session = %refused.session.id,
                sqlstate = %refused.sqlstate,
                reason = ?refused.reason,
                statement = ?refused.statement,
                "statement denied"
            ),
        },
        Event::StatementStopped(stopped) => match stopped.limit {
            StopLimit::ProtectedColumn => tracing::error!(
                session = %stopped.session.id,
                column = stopped.column.as_deref().unwrap_or(""),
                "a protected column reached a result as stored: the statement is stopped; \
                 this is a maskgate rewrite bug, please report it"
            ),
            StopLimit::RowCap(cap) => tracing::info!(
                session = %stopped.session.id, cap, "statement stopped at its row cap"
            ),
            StopLimit::HourlyRows => tracing::info!(
                session = %stopped.session.id, "statement stopped: hourly rows used up"
            ),
            StopLimit::SessionRows(budget) => tracing::info!(
                session = %stopped.session.id, budget, "statement stopped: the session's rows used up"
            ),
            StopLimit::Guard(check) => tracing::info!(
                session = %stopped.session.id, check = check.as_str(),
                "statement stopped by a check it ran under"
            ),
        },
        Event::Monitored(monitored) => tracing::info!(
            session = %monitored.session.id,
            would = monitored.would.as_str(),
            statement = %monitored.statement,
            "monitor mode: what enforcement would have done"
        ),
        Event::PolicyReload(reload) => match &reload.outcome {
            Ok(after) => tracing::info!(before = %reload.before, after = %after, "policy reloaded"),
            Err(errors) => tracing::error!(
                generation = %reload.before,
                "policy reload refused; the previous policy stays in force:\n{errors}"
            ),
        },
    }
}

fn log_login(attempt: &LoginAttempt) {
    let peer = attempt.client;
    let user = attempt.login.as_deref().unwrap_or("");
    match &attempt.outcome {
        LoginOutcome::Admitted(s) => tracing::info!(
            %peer, user = ?user, session = %s.id, policy = %s.policy, "session started"
        ),
        LoginOutcome::Refused { reason, detail } => {
            use crate::metrics::RejectReason as R;
            match reason {
                R::AuthFailed => tracing::info!(%peer, user = ?user, "authentication failed"),
                R::Upstream => tracing::warn!(%peer, error = ?detail, "no upstream connection"),
                R::Protocol if detail.is_empty() => {
                    tracing::debug!(%peer, "client left during login")
                }
                R::LoginTimeout => tracing::info!(%peer, "login timed out"),
                _ => {
                    tracing::info!(%peer, user = ?user, reason = %reason, error = ?detail, "login refused")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::metrics::RejectReason;

    /// The human-format log of `event`.
    fn logged(event: &Event) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || log(event));
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_login_name_cannot_forge_a_log_line() {
        let forged = "clerk\n2026-12-02T00:00:00Z  INFO session started user=\"dba\"";
        for reason in [RejectReason::AuthFailed, RejectReason::OutsideHours] {
            let text = logged(&Event::Login(LoginAttempt {
                client: "127.0.0.1:5000".parse().unwrap(),
                login: Some(forged.into()),
                outcome: LoginOutcome::Refused {
                    reason,
                    detail: format!("no account {forged}"),
                },
            }));
            assert_eq!(text.lines().count(), 1, "{text}");
            assert!(text.contains("clerk\\n2026"), "{text}");
        }
    }

    #[test]
    fn denial_reasons_and_fingerprints_cannot_forge_a_log_line() {
        let policy = maskgate_policy::Policy::from_texts(
            vec![("p.toml".into(), String::new())],
            Default::default(),
            time::macros::date!(2026 - 01 - 01),
        )
        .expect("an empty policy loads")
        .policy;
        let session = std::sync::Arc::new(crate::observe::SessionContext {
            id: crate::observe::SessionId::next(),
            login: "clerk".into(),
            account_name: None,
            roles: Vec::new(),
            client: "127.0.0.1:5000".parse().unwrap(),
            tls: None,
            application_name: None,
            database: "register".into(),
            policy: policy.generation().clone(),
            restricted: true,
            started: std::time::Instant::now(),
            totals: Default::default(),
        });
        let forged = "a\n2026-12-02T00:00:00Z  INFO session started user=\"dba\"";
        for refusal in [Refusal::Policy, Refusal::CopyRow] {
            let text = logged(&Event::StatementRefused(StatementRefused {
                session: session.clone(),
                refusal,
                sqlstate: crate::error::SqlState::INSUFFICIENT_PRIVILEGE,
                reason: format!("relation \"{forged}\" is not in the policy"),
                statement: format!("SELECT * FROM \"{forged}\""),
            }));
            assert_eq!(text.lines().count(), 1, "{text}");
        }
    }
}
