//! The writer thread: group commit, periodic signed checkpoints, strict-mode syncs,
//! and recovery from a failed disk.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::mpsc::{SyncSender, TrySendError};

use maskgate_audit::{Sealed, Sealer, WriteError, Writer, WriterConfig};
use maskgate_detect::{Fingerprinter, KeyPrint, RawKey};
use serde::Serialize;
use tokio::sync::oneshot;

use super::retention::Retention;
use super::{Entry, KeySource, KeyValue, ParamForm, Payload, Pending, TrailState};
use crate::config::AuditConfig;

/// How often a failed trail is opened again.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// A payload with its sealed secret, as one JSON object.
#[derive(Serialize)]
struct WithSeal<'a> {
    #[serde(flatten)]
    payload: &'a Payload,
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed: Option<Sealed>,
    /// Keyed fingerprints of the keys a lookup pinned (`maskgate_detect::fingerprint`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    keys: Vec<KeyPrint>,
    /// Pinned keys that could not be read, so not fingerprinted.
    #[serde(skip_serializing_if = "is_zero")]
    unkeyed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where appended records go on to, and how lookups are fingerprinted.
pub(super) struct Feed {
    pub fingerprinter: Fingerprinter,
    /// Detection's queue of record lines.
    pub lines: Option<SyncSender<Vec<u8>>>,
}

pub(super) struct WriterThread {
    writer: Option<Writer>,
    sealer: Sealer,
    receiver: Receiver<Entry>,
    state: Arc<TrailState>,
    dir: PathBuf,
    signing_key: PathBuf,
    segment_bytes: u64,
    segment_age: Duration,
    commit_interval: Duration,
    checkpoint_interval: Duration,
    /// Strict-mode sessions waiting for records appended since the last sync.
    waiting: Vec<oneshot::Sender<()>>,
    /// Records appended since the last successful commit (lost if it fails).
    uncommitted: u64,
    last_checkpoint: Instant,
    last_reopen: Option<Instant>,
    feed: Feed,
    retention: Retention,
}

impl WriterThread {
    pub(super) fn new(
        config: &AuditConfig,
        writer: Writer,
        sealer: Sealer,
        receiver: Receiver<Entry>,
        state: Arc<TrailState>,
        feed: Feed,
    ) -> WriterThread {
        WriterThread {
            writer: Some(writer),
            sealer,
            receiver,
            retention: Retention::new(config.retention, config.dir.clone(), state.clone()),
            state,
            dir: config.dir.clone(),
            signing_key: config.signing_key.clone(),
            segment_bytes: config.segment_bytes,
            segment_age: config.segment_age,
            commit_interval: config.commit_interval,
            checkpoint_interval: config.checkpoint_interval,
            waiting: Vec::new(),
            uncommitted: 0,
            last_checkpoint: Instant::now(),
            last_reopen: None,
            feed,
        }
    }

    pub(super) fn run(mut self) {
        loop {
            if let Err(error) = self.retention.tick(self.writer.as_mut()) {
                self.failed(error, 0);
            }
            let wait = self
                .checkpoint_interval
                .saturating_sub(self.last_checkpoint.elapsed());
            let first = match self.receiver.recv_timeout(wait) {
                Ok(entry) => entry,
                Err(RecvTimeoutError::Timeout) => {
                    self.checkpoint();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.close();
                    return;
                }
            };
            if self.handle(first) {
                return;
            }
            // Group commit: what arrives within the interval goes in one write.
            std::thread::sleep(self.commit_interval);
            while let Ok(entry) = self.receiver.try_recv() {
                if self.handle(entry) {
                    return;
                }
            }
            self.commit();
            if self.last_checkpoint.elapsed() >= self.checkpoint_interval {
                self.checkpoint();
            }
        }
    }

    /// `true` when the thread is to stop.
    fn handle(&mut self, entry: Entry) -> bool {
        match entry {
            Entry::Record(pending) => self.append(*pending),
            Entry::Flush(done) => {
                self.commit();
                self.sync();
                let _ = done.send(());
            }
            Entry::Close(done) => {
                while let Ok(Entry::Record(pending)) = self.receiver.try_recv() {
                    self.append(*pending);
                }
                self.close();
                let _ = done.send(());
                return true;
            }
        }
        false
    }

    fn append(&mut self, pending: Pending) {
        if self.usable_writer().is_none() {
            self.state.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                kind = pending.kind,
                "an audit record is lost: the audit trail cannot be written"
            );
            return;
        };
        let Pending {
            kind,
            payload,
            secret,
            durable,
        } = pending;
        let (keys, unkeyed) = lookup_prints(&self.feed.fingerprinter, &payload, secret.as_ref());
        let (Some(writer), sealer) = (self.writer.as_mut(), &self.sealer) else {
            return;
        };
        let result = writer.append_typed_with(kind, |seq| {
            let sealed = match secret.as_ref().filter(|s| !s.is_empty()) {
                None => None,
                Some(secret) => {
                    let plain = serde_json::to_vec(secret)
                        .map_err(|_| maskgate_audit::SealError::Encrypt)?;
                    Some(sealer.seal(&plain, seq.to_string().as_bytes())?)
                }
            };
            Ok(WithSeal {
                payload: &payload,
                sealed,
                keys,
                unkeyed,
            })
        });
        match result {
            Ok(seq) => {
                if let (Some(lines), Some(line)) = (&self.feed.lines, writer.last_record()) {
                    match lines.try_send(line.to_vec()) {
                        Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                        Err(TrySendError::Full(_)) => {
                            // Detection reads the trail from here before it takes
                            // another line from its queue.
                            let _ = self.state.detection_resume.compare_exchange(
                                0,
                                seq,
                                Ordering::AcqRel,
                                Ordering::Relaxed,
                            );
                            let n =
                                self.state.detection_dropped.fetch_add(1, Ordering::Relaxed) + 1;
                            if n.is_power_of_two() {
                                tracing::warn!(dropped = n, "detection is behind: records it has not seen are counted in maskgate_detection_records_dropped_total");
                            }
                        }
                    }
                }
                self.uncommitted += 1;
                if let Some(durable) = durable {
                    self.waiting.push(durable);
                }
            }
            Err(error) => self.failed(error, 1),
        }
    }

    fn commit(&mut self) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        let result = writer.commit();
        match result {
            Ok(()) => {
                self.state
                    .written
                    .fetch_add(self.uncommitted, Ordering::Relaxed);
                self.uncommitted = 0;
                if !self.waiting.is_empty() {
                    self.sync();
                }
            }
            Err(error) => {
                let lost = self.uncommitted;
                self.failed(error, lost);
            }
        }
    }

    fn sync(&mut self) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        match writer.sync() {
            Ok(()) => {
                for waiting in self.waiting.drain(..) {
                    let _ = waiting.send(());
                }
            }
            Err(error) => self.failed(error, 0),
        }
    }

    fn checkpoint(&mut self) {
        self.commit();
        self.last_checkpoint = Instant::now();
        let Some(writer) = self.usable_writer() else {
            return;
        };
        match writer.checkpoint() {
            Ok(Some(_)) => {
                self.state.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => {}
            Err(error) => self.failed(error, 0),
        }
    }

    fn close(&mut self) {
        self.commit();
        if let Some(writer) = self.writer.take() {
            if let Err(error) = writer.close() {
                tracing::error!(error = %error, "the audit trail could not be closed cleanly");
            }
        }
        for waiting in self.waiting.drain(..) {
            let _ = waiting.send(());
        }
    }

    /// The writer, opened again if an earlier failure dropped it.
    fn usable_writer(&mut self) -> Option<&mut Writer> {
        if self.writer.is_none() {
            self.reopen();
        }
        self.writer.as_mut()
    }

    fn reopen(&mut self) {
        // Bounded: a failing disk is tried again at most once a second.
        if self
            .last_reopen
            .is_some_and(|at| at.elapsed() < REOPEN_EVERY)
        {
            return;
        }
        self.last_reopen = Some(Instant::now());
        let opened = maskgate_audit::keys::load_signing_key(&self.signing_key)
            .map_err(|e| e.to_string())
            .and_then(|key| {
                let mut config = WriterConfig::new(key);
                config.keep_last_record = self.feed.lines.is_some();
                config.max_segment_bytes = self.segment_bytes;
                config.max_segment_age = self.segment_age;
                Writer::open(&self.dir, config).map_err(|e| e.to_string())
            });
        match opened {
            Ok(writer) => {
                tracing::warn!("the audit trail is written again");
                self.writer = Some(writer);
                self.state.healthy.store(true, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::error!(error = %error, "the audit trail still cannot be written");
            }
        }
    }

    /// A write failed: what was not committed is lost (counted and logged), the
    /// trail is marked unavailable so statements are refused, and strict-mode
    /// waiters are released with an error (their sender is dropped).
    fn failed(&mut self, error: WriteError, lost: u64) {
        self.state.healthy.store(false, Ordering::Relaxed);
        self.state.lost.fetch_add(lost, Ordering::Relaxed);
        self.uncommitted = 0;
        self.waiting.clear();
        self.writer = None;
        tracing::error!(
            error = %error,
            lost,
            "the audit trail cannot be written; statements are refused until it can"
        );
    }
}

/// The fingerprints of the keys a statement pinned on lookup-only tables, each in
/// its canonical form for the key column, and how many could not be read:
/// detection counts distinct people looked up, and spots honeytokens, from these.
fn lookup_prints(
    fingerprinter: &Fingerprinter,
    payload: &Payload,
    secret: Option<&super::Secret>,
) -> (Vec<KeyPrint>, u64) {
    let (Payload::Statement(statement), Some(secret)) = (payload, secret) else {
        return (Vec::new(), 0);
    };
    let mut prints: Vec<KeyPrint> = Vec::new();
    let mut unkeyed = 0;
    for source in &statement.keys {
        match key_print(fingerprinter, source, secret) {
            Some(Some(p)) if prints.iter().any(|q| q.k == p.k) => {}
            Some(Some(p)) => prints.push(p),
            Some(None) => unkeyed += 1,
            // `key = NULL` finds nobody.
            None => {}
        }
    }
    (prints, unkeyed)
}

/// One pinned key's fingerprint: `Some(None)` when its value cannot be read,
/// `None` for a NULL parameter.
fn key_print(
    fingerprinter: &Fingerprinter,
    source: &KeySource,
    secret: &super::Secret,
) -> Option<Option<KeyPrint>> {
    let print = |raw: RawKey<'_>| fingerprinter.key(raw, source.kind);
    Some(match source.value {
        KeyValue::Constant(index) => index
            .and_then(|i| secret.literals.get(i))
            .and_then(|typed| print(RawKey::Constant(typed))),
        KeyValue::Param { index, form, oid } => {
            let value = match secret.params.get(index) {
                Some(None) => return None,
                Some(Some(value)) => value,
                None => return Some(None),
            };
            match form {
                ParamForm::Text => print(RawKey::Text(value)),
                ParamForm::Binary => value
                    .strip_prefix("\\x")
                    .and_then(|h| hex::decode(h).ok())
                    .and_then(|bytes| print(RawKey::Binary(&bytes, oid))),
                ParamForm::Cut => None,
            }
        }
    })
}
