//! Where events go.

use std::sync::Arc;

use tokio::sync::mpsc::{self, error::TrySendError};

use super::event::Event;
use super::{audit_sink, sinks};
use crate::audit::Trail;
use crate::metrics::Metrics;

/// Events waiting for the sinks that do I/O. A burst beyond this is logged inline
/// rather than waited for or dropped.
const QUEUE: usize = 8192;

/// The sinks of every event. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    metrics: Arc<Metrics>,
    background: Option<mpsc::Sender<Event>>,
    /// The audit trail, when one is configured.
    audit: Option<Trail>,
}

impl Events {
    /// Counts inline and logs on a task of its own (needs a tokio runtime).
    pub fn start(metrics: Arc<Metrics>, audit: Option<Trail>) -> Events {
        let (sender, mut receiver) = mpsc::channel::<Event>(QUEUE);
        tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                sinks::log(&event);
            }
        });
        Events {
            metrics,
            background: Some(sender),
            audit,
        }
    }

    /// Every sink inline, on the caller's thread: for tests and tools.
    pub fn inline(metrics: Arc<Metrics>) -> Events {
        Events {
            metrics,
            background: None,
            audit: None,
        }
    }

    /// Hands the event to every sink.
    pub fn emit(&self, event: Event) {
        sinks::count(&self.metrics, &event);
        if let Some(trail) = &self.audit {
            audit_sink::record(trail, &event);
        }
        let Some(background) = &self.background else {
            sinks::log(&event);
            return;
        };
        match background.try_send(event) {
            Ok(()) => {}
            // Never dropped: a full queue or a stopped task costs the caller one log
            // line written here instead.
            Err(TrySendError::Full(event)) | Err(TrySendError::Closed(event)) => {
                self.metrics.event_overflow();
                sinks::log(&event);
            }
        }
    }

    /// The audit trail, for the records sessions write themselves.
    pub fn audit(&self) -> Option<&Trail> {
        self.audit.as_ref()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RejectReason;
    use crate::observe::{LoginAttempt, LoginOutcome};

    fn refused_login() -> Event {
        Event::Login(LoginAttempt {
            client: "127.0.0.1:5000".parse().unwrap(),
            login: Some("clerk".into()),
            outcome: LoginOutcome::Refused {
                reason: RejectReason::AuthFailed,
                detail: "password authentication failed".into(),
            },
        })
    }

    fn rejected(metrics: &Metrics) -> bool {
        metrics
            .encode_text()
            .contains("maskgate_client_connections_rejected_total{reason=\"auth_failed\"} 1")
    }

    #[test]
    fn an_event_is_counted_where_it_happens() {
        let events = Events::inline(Arc::new(Metrics::new()));
        events.emit(refused_login());
        assert!(
            rejected(events.metrics()),
            "{}",
            events.metrics().encode_text()
        );
    }

    #[test]
    fn a_full_queue_logs_inline_instead_of_dropping() {
        let metrics = Arc::new(Metrics::new());
        let (sender, _receiver) = mpsc::channel(1);
        let events = Events {
            metrics: metrics.clone(),
            background: Some(sender),
            audit: None,
        };
        events.emit(refused_login());
        events.emit(refused_login());
        let text = metrics.encode_text();
        assert!(text.contains("maskgate_event_overflows_total 1"), "{text}");
        assert!(text.contains("reason=\"auth_failed\"} 2"), "{text}");
    }
}
