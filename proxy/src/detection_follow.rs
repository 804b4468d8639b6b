//! Records in order: from the writer's queue while it took every record, from the
//! trail itself once it dropped one, until detection has caught up.

use std::path::Path;
use std::sync::atomic::Ordering;

use maskgate_detect::trail::{line_seq, read_since};
use maskgate_detect::{Alert, Detector};

use crate::audit::TrailState;

/// Where detection reads records from.
#[derive(Debug, Default)]
pub(super) struct Follow {
    /// The queue dropped a record: records are read from the trail, in order,
    /// until detection has read through `newest`, the last seq the queue handed
    /// over (or the writer said it dropped).
    behind: bool,
    newest: u64,
}

impl Follow {
    /// A line from the writer's queue: read now, or, once the queue has dropped a
    /// record, only noted (it is read from the trail, after the dropped ones).
    pub(super) fn line(
        &mut self,
        detector: &mut Detector,
        state: &TrailState,
        line: &[u8],
    ) -> Vec<Alert> {
        let dropped = state.detection_resume.swap(0, Ordering::AcqRel);
        if dropped != 0 {
            self.behind = true;
            self.newest = self.newest.max(dropped);
        }
        if self.behind {
            self.newest = self.newest.max(line_seq(line).unwrap_or(0));
            return Vec::new();
        }
        detector.ingest_line(line)
    }

    /// While behind: reads the records after the last one read from the trail.
    /// Records the writer has not committed yet are read at a later call.
    pub(super) fn catch_up(
        &mut self,
        detector: &mut Detector,
        state: &TrailState,
        dir: &Path,
    ) -> Vec<Alert> {
        if !self.behind {
            return Vec::new();
        }
        let since = detector.last_time().map(|t| t - time::Duration::minutes(1));
        let last = detector.last_seq();
        let mut alerts = Vec::new();
        let read = read_since(dir, since, |line| {
            if line_seq(line).is_some_and(|seq| seq > last) {
                alerts.extend(detector.ingest_line(line));
            }
        });
        if let Err(e) = read {
            tracing::error!(error = %e, "detection could not read the records its queue dropped");
        }
        if detector.last_seq() >= self.newest {
            match state.detection_resume.swap(0, Ordering::AcqRel) {
                0 => self.behind = false,
                dropped => self.newest = self.newest.max(dropped),
            }
        }
        alerts
    }

    #[cfg(test)]
    fn is_behind(&self) -> bool {
        self.behind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{kind, Login, Payload, ProxyStart, Trail};
    use crate::config::{AuditConfig, WhenUnavailable};

    fn config(dir: &Path) -> AuditConfig {
        let keys = dir.join("keys");
        std::fs::create_dir(&keys).unwrap();
        let (signing, seal) = (keys.join("signing.pem"), keys.join("seal.keys"));
        maskgate_audit::keys::generate_signing_key_files(&signing, &keys.join("public.pem"))
            .unwrap();
        maskgate_audit::keys::generate_seal_key_file(&seal, "k1").unwrap();
        AuditConfig {
            dir: dir.join("trail"),
            signing_key: signing,
            seal_key: seal,
            checkpoint_interval: std::time::Duration::from_secs(5),
            commit_interval: std::time::Duration::from_millis(5),
            segment_bytes: 64 << 20,
            segment_age: std::time::Duration::from_secs(3600),
            queue: 1024,
            strict: false,
            unrestricted_when_unavailable: WhenUnavailable::Refuse,
            retention: None,
        }
    }

    fn refused(user: &str) -> Payload {
        Payload::Login(Login {
            outcome: "refused",
            session: None,
            client: "10.0.0.1:5000".into(),
            user: Some(user.into()),
            reason: Some("auth_failed"),
            detail: None,
            facts: None,
        })
    }

    /// A record the queue dropped is read, before the ones after it: once the
    /// writer says it dropped one, the next lines from the queue (even earlier
    /// ones) wait, and the trail is read in order until detection has caught up.
    #[test]
    fn records_the_queue_dropped_are_read_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let (feed, queue) = std::sync::mpsc::sync_channel(2);
        let start = ProxyStart {
            instance: "t".into(),
            version: "0",
            policy: "p".into(),
            strict: false,
        };
        let trail = Trail::start_with_feed(&config, start, Some(feed)).unwrap();
        // proxy_start and a fill the queue; b is dropped.
        trail.record_event(kind::LOGIN, refused("a"));
        trail.record_event(kind::LOGIN, refused("b"));
        trail.flush_blocking();
        let mut detector = Detector::new(Default::default(), time::UtcOffset::UTC);
        let mut follow = Follow::default();
        for line in queue.try_iter() {
            follow.line(&mut detector, trail.state(), &line);
        }
        // c comes through the queue: it waits for b.
        trail.record_event(kind::LOGIN, refused("c"));
        trail.flush_blocking();
        for line in queue.try_iter() {
            follow.line(&mut detector, trail.state(), &line);
        }
        assert!(follow.is_behind());
        assert_eq!(detector.records(), 0);
        for _ in 0..100 {
            follow.catch_up(&mut detector, trail.state(), &config.dir);
            if !follow.is_behind() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!follow.is_behind());
        assert_eq!(detector.records(), 4, "proxy_start, a, b and c");
        // Back on the queue.
        trail.record_event(kind::LOGIN, refused("d"));
        trail.flush_blocking();
        for line in queue.try_iter() {
            follow.line(&mut detector, trail.state(), &line);
        }
        assert_eq!(detector.records(), 5);
    }
}
