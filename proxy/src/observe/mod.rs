//! What happens in maskgate, as events: the seam that metrics, the log, the audit
//! trail and detection hang on.
//!
//! Each session has one [`SessionContext`], filled once at login and used only to
//! describe what the session does, never to decide anything. Every login attempt,
//! session end, statement refusal or stop and policy reload is one [`Event`], emitted
//! once where it happens; sinks turn it into what they keep. Sinks that touch only
//! atomics (the metrics) run inline; sinks that do I/O (the log) run on a task of
//! their own behind a bounded channel, so a slow sink never holds up a session.

mod audit_sink;
mod bus;
mod context;
mod event;
mod sinks;

pub use audit_sink::{admitted_login, session_facts};
pub use bus::Events;
pub use context::{SessionContext, SessionId, SessionTotals, TlsFacts};
pub use event::{
    Event, GuardCheck, LoginAttempt, LoginOutcome, Monitored, PolicyReload, Refusal, SessionEnd,
    SessionEnded, StatementRefused, StatementStopped, StopLimit, Would,
};
