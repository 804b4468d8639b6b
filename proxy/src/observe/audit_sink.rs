//! What the audit trail makes of each event. Statements are recorded by the
//! session itself (their records must be queued before they run, and refuse them
//! when they cannot be); every other event is recorded here.

use super::event::*;
use super::SessionContext;
use crate::audit::{self, kind, Payload, Trail};

/// Queues the event's record, if it has one. Never blocks.
pub(super) fn record(trail: &Trail, event: &Event) {
    let (kind, payload) = match event {
        // An admitted login is recorded by the session before it starts (its
        // record must be queued, or the session refused).
        Event::Login(LoginAttempt {
            outcome: LoginOutcome::Admitted(_),
            ..
        }) => return,
        Event::Login(attempt) => (kind::LOGIN, login(attempt)),
        Event::Lockout { client, login } => (
            kind::LOCKOUT,
            Payload::Lockout(audit::Lockout {
                user: login.clone(),
                client: client.to_string(),
            }),
        ),
        Event::SessionEnded(ended) => (kind::SESSION_END, session_end(ended)),
        Event::PolicyReload(reload) => (
            kind::POLICY_RELOAD,
            Payload::PolicyReload(audit::PolicyReload {
                outcome: if reload.outcome.is_ok() {
                    "accepted"
                } else {
                    "refused"
                },
                before: reload.before.to_string(),
                after: reload.outcome.as_ref().ok().map(ToString::to_string),
                files: reload.files.clone(),
                error: reload.outcome.as_ref().err().cloned(),
            }),
        ),
        // In the statement's own records.
        Event::StatementRefused(_) | Event::StatementStopped(_) | Event::Monitored(_) => return,
    };
    trail.record_event(kind, payload);
}

/// Who the session is, as its login record states it.
pub fn session_facts(s: &SessionContext) -> audit::SessionFacts {
    audit::SessionFacts {
        login: s.login.clone(),
        account_name: s.account_name.clone(),
        roles: s.roles.clone(),
        restricted: s.restricted,
        database: s.database.clone(),
        application_name: s.application_name.clone(),
        tls: s.tls.as_ref().map(|t| t.version.clone()),
        client_certificate: s.tls.as_ref().and_then(|t| t.client_certificate.clone()),
        policy: s.policy.to_string(),
    }
}

/// The record of an admitted login.
pub fn admitted_login(session: &SessionContext) -> Payload {
    Payload::Login(audit::Login {
        outcome: "admitted",
        session: Some(session.id.to_string()),
        client: session.client.to_string(),
        user: Some(session.login.clone()),
        reason: None,
        detail: None,
        facts: Some(session_facts(session)),
    })
}

fn login(attempt: &LoginAttempt) -> Payload {
    let (reason, detail) = match &attempt.outcome {
        LoginOutcome::Admitted(session) => return admitted_login(session),
        LoginOutcome::Refused { reason, detail } => (reason, detail),
    };
    Payload::Login(audit::Login {
        outcome: "refused",
        session: None,
        client: attempt.client.to_string(),
        user: attempt.login.clone(),
        reason: Some(reason.as_str()),
        detail: Some(detail.clone()),
        facts: None,
    })
}

fn session_end(ended: &SessionEnded) -> Payload {
    let s = &ended.session;
    let (statements, rows, bytes) = s.totals.get();
    let (end, detail) = match &ended.end {
        SessionEnd::Client => ("client", None),
        SessionEnd::UpstreamGone => ("upstream_gone", None),
        SessionEnd::ClosedByMaskgate(reason) => ("closed_by_maskgate", Some(reason.clone())),
    };
    Payload::SessionEnd(audit::SessionEnd {
        session: s.id.to_string(),
        user: s.login.clone(),
        client: s.client.to_string(),
        end,
        detail,
        duration_ms: ended.duration.as_millis() as u64,
        statements,
        rows,
        bytes,
    })
}
