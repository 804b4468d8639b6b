//! `[audit] retention`: removing old exported segments from the writer thread.
//!
//! The thread calls [`Retention::tick`] once per loop. A check is due at each
//! rotation and every `min(retention / 4, 1 h)`. Reading and hashing the old
//! segments ([`maskgate_audit::plan_retention`]) happens on a helper thread, so
//! records keep being written meanwhile; only the `retention` record and the
//! deletions ([`maskgate_audit::Writer::remove_segments`]) run on the writer
//! thread, at the first tick after the plan is ready.
//!
//! Segments past retention that cannot be removed (not exported, changed since,
//! not verifiable, after one that is kept) are kept: counted in the
//! `maskgate_audit_segments_overdue` gauge and logged at warn in one line, when
//! what is overdue changes and hourly while it stays.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use maskgate_audit::{RetentionError, RetentionPlan, WriteError, Writer};
use time::OffsetDateTime;

use super::TrailState;

/// At most this many segments are removed per run, which bounds the record's
/// size and the helper's reading; a run that stops there is followed by another.
const MAX_PER_RUN: usize = 256;

/// Checks are at least this frequent.
const LONGEST_INTERVAL: Duration = Duration::from_secs(3600);

type Planned = Result<RetentionPlan, RetentionError>;

pub(super) struct Retention {
    /// `None`: keep every segment (the tick does nothing).
    keep: Option<Duration>,
    every: Duration,
    dir: PathBuf,
    state: Arc<TrailState>,
    last_check: Option<Instant>,
    /// The segment being written at the last check, to notice rotations.
    last_segment: Option<String>,
    running: Option<JoinHandle<Planned>>,
    /// The last plan stopped at its bound: check again at once.
    again: bool,
    /// The last warning about overdue segments: what it said and when.
    warned: Option<(usize, String, Instant)>,
}

impl Retention {
    pub(super) fn new(keep: Option<Duration>, dir: PathBuf, state: Arc<TrailState>) -> Retention {
        let every = keep.map_or(LONGEST_INTERVAL, |k| {
            (k / 4).clamp(Duration::from_millis(100), LONGEST_INTERVAL)
        });
        Retention {
            keep,
            every,
            dir,
            state,
            last_check: None,
            last_segment: None,
            running: None,
            again: false,
            warned: None,
        }
    }

    /// Applies a finished plan, or starts one when a check is due. An error is a
    /// failed write of the retention record: the writer is poisoned and the caller
    /// handles it like any other failed write.
    pub(super) fn tick(&mut self, writer: Option<&mut Writer>) -> Result<(), WriteError> {
        let (Some(keep), Some(writer)) = (self.keep, writer) else {
            return Ok(());
        };
        if let Some(running) = self.running.take() {
            if !running.is_finished() {
                self.running = Some(running);
                return Ok(());
            }
            return match running.join() {
                Ok(planned) => self.apply(writer, planned),
                Err(_) => {
                    tracing::error!("the audit retention check panicked; it runs again later");
                    Ok(())
                }
            };
        }
        let rotated = self.last_segment.as_deref() != Some(writer.segment_name());
        let due = self.last_check.is_none_or(|at| at.elapsed() >= self.every);
        if !(rotated || due || self.again) {
            return Ok(());
        }
        self.last_check = Some(Instant::now());
        self.last_segment = Some(writer.segment_name().to_owned());
        self.again = false;
        let Some(cutoff) = time::Duration::try_from(keep)
            .ok()
            .and_then(|k| OffsetDateTime::now_utc().checked_sub(k))
        else {
            return Ok(());
        };
        let (dir, open, key) = (
            self.dir.clone(),
            writer.segment_name().to_owned(),
            writer.public_key(),
        );
        let spawned = std::thread::Builder::new()
            .name("maskgate-audit-retention".into())
            .spawn(move || maskgate_audit::plan_retention(&dir, &open, &key, cutoff, MAX_PER_RUN));
        match spawned {
            Ok(handle) => self.running = Some(handle),
            Err(error) => tracing::error!(%error, "cannot start the audit retention check"),
        }
        Ok(())
    }

    fn apply(&mut self, writer: &mut Writer, planned: Planned) -> Result<(), WriteError> {
        let plan = match planned {
            Ok(plan) => plan,
            Err(error) => {
                tracing::warn!(%error, "the audit retention check could not read the trail");
                return Ok(());
            }
        };
        self.report_overdue(&plan);
        self.again = plan.more;
        let Some(last) = plan.body.removed.last() else {
            return Ok(());
        };
        let (first, last) = (plan.body.removed[0].segment.clone(), last.segment.clone());
        match writer.remove_segments(&plan.body) {
            Ok(removal) => {
                // The record is sealed by a checkpoint of its own.
                self.state.checkpoints.fetch_add(1, Ordering::Relaxed);
                self.state
                    .segments_removed
                    .fetch_add(removal.deleted as u64, Ordering::Relaxed);
                tracing::info!(
                    first = %first,
                    last = %last,
                    deleted = removal.deleted,
                    record = removal.record,
                    "audit segments past retention removed, as the retention record states"
                );
                if let Some(error) = removal.error {
                    tracing::warn!(
                        %error,
                        "an audit segment past retention could not be deleted; the next check tries again"
                    );
                    self.again = true;
                }
                Ok(())
            }
            Err(WriteError::StalePlan(why)) => {
                tracing::warn!(why, "audit retention plan out of date; checking again");
                self.again = true;
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// The gauge, and one warning (never one per segment) when what is overdue
    /// changed, or hourly while it stays.
    fn report_overdue(&mut self, plan: &RetentionPlan) {
        self.state
            .segments_overdue
            .store(plan.overdue.len() as u64, Ordering::Relaxed);
        let Some(first) = plan.overdue.first() else {
            self.warned = None;
            return;
        };
        let same = self.warned.as_ref().is_some_and(|(n, name, at)| {
            *n == plan.overdue.len() && *name == first.segment && at.elapsed() < LONGEST_INTERVAL
        });
        if same {
            return;
        }
        self.warned = Some((plan.overdue.len(), first.segment.clone(), Instant::now()));
        tracing::warn!(
            overdue = plan.overdue.len(),
            first = %first.segment,
            reason = first.reason,
            "audit segments are past retention but kept; export them with `maskgate audit export`, or see docs/audit.md"
        );
    }
}
