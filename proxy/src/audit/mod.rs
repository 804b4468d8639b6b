//! The audit trail as the proxy feeds it: a bounded queue in front of one writer
//! thread that owns the [`maskgate_audit::Writer`].
//!
//! Sessions never wait for the disk unless strict mode asks them to: a record is
//! handed over with `try_send`, and a full queue or a failed disk makes the record
//! refused, which refuses the statement it describes (back-pressure, never a
//! silent drop). The writer commits what arrived every `commit_interval`, signs a
//! checkpoint every `checkpoint_interval`, and in strict mode syncs before it
//! tells the waiting sessions their records are durable.

mod facts;
mod records;
mod retention;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;

use tokio::sync::oneshot;

pub use facts::table_facts;
pub use records::*;

use crate::config::{AuditConfig, WhenUnavailable};
use crate::error::{ClientError, SqlState};

/// Why the trail could not take a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the audit queue is full")]
    QueueFull,
    #[error("the audit trail cannot be written")]
    Failed,
}

impl Unavailable {
    /// The error a client gets for a statement that could not be recorded.
    pub fn client_error(self) -> ClientError {
        ClientError::error(
            SqlState::INSUFFICIENT_RESOURCES,
            format!("maskgate cannot record this statement in its audit trail ({self}), so it is not run"),
        )
        .with_hint("try again shortly; if it persists, tell your administrator")
    }
}

/// Why the trail did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("audit signing key: {0}")]
    SigningKey(#[source] maskgate_audit::KeyError),
    #[error("audit seal key: {0}")]
    SealKey(#[source] maskgate_audit::KeyError),
    #[error("audit directory: {0}")]
    Writer(#[source] maskgate_audit::WriteError),
    #[error("cannot start the audit writer thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A record on its way to the writer.
pub(crate) struct Pending {
    kind: &'static str,
    payload: Payload,
    secret: Option<Secret>,
    /// Strict mode: told once the record is on disk.
    durable: Option<oneshot::Sender<()>>,
}

pub(crate) enum Entry {
    Record(Box<Pending>),
    /// Write and sync everything before it, then answer.
    Flush(std::sync::mpsc::Sender<()>),
    /// Close the trail cleanly (final checkpoint) and stop.
    Close(std::sync::mpsc::Sender<()>),
}

/// Counters the metrics endpoint and `/health` read.
#[derive(Debug, Default)]
pub struct TrailState {
    /// False once the writer failed and until it reopened the trail.
    healthy: AtomicBool,
    pub written: AtomicU64,
    /// Records that could not be queued (their statements were refused, or for
    /// events that cannot be refused, logged).
    pub refused: AtomicU64,
    /// Records queued but lost with a failed write.
    pub lost: AtomicU64,
    pub checkpoints: AtomicU64,
    /// Records detection's queue could not take (it reads them from the trail).
    pub detection_dropped: AtomicU64,
    /// The seq of the first record detection's queue dropped since detection last
    /// looked (0: none): detection reads the trail from there, in order.
    pub detection_resume: AtomicU64,
    /// Segments past `retention` that are kept (not exported, changed since, …).
    pub segments_overdue: AtomicU64,
    /// Segments removed by retention.
    pub segments_removed: AtomicU64,
}

impl TrailState {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// The handle sessions use. Cheap to clone.
#[derive(Clone)]
pub struct Trail {
    sender: SyncSender<Entry>,
    state: Arc<TrailState>,
    strict: bool,
    unrestricted: WhenUnavailable,
    /// Keyed fingerprints of lookup keys, the same the writer puts in records.
    fingerprinter: maskgate_detect::Fingerprinter,
}

impl Trail {
    /// Loads the keys, opens the directory (recovering an unclean end) and starts
    /// the writer thread.
    pub fn start(config: &AuditConfig, start: ProxyStart) -> Result<Trail, StartError> {
        Trail::start_with_feed(config, start, None)
    }

    /// Like [`Trail::start`]; every record appended is also handed to `feed`
    /// (detection) without waiting: a full feed drops the line and counts it.
    pub fn start_with_feed(
        config: &AuditConfig,
        start: ProxyStart,
        feed: Option<SyncSender<Vec<u8>>>,
    ) -> Result<Trail, StartError> {
        let signing_key = maskgate_audit::keys::load_signing_key(&config.signing_key)
            .map_err(StartError::SigningKey)?;
        let sealer = maskgate_audit::Sealer::load(&config.seal_key).map_err(StartError::SealKey)?;
        let fingerprinter = maskgate_detect::Fingerprinter::new(
            &signing_key.derive_secret(maskgate_detect::fingerprint::PURPOSE),
        );
        let mut writer_config = maskgate_audit::WriterConfig::new(signing_key);
        writer_config.keep_last_record = feed.is_some();
        writer_config.max_segment_bytes = config.segment_bytes;
        writer_config.max_segment_age = config.segment_age;
        let writer =
            maskgate_audit::Writer::open(&config.dir, writer_config).map_err(StartError::Writer)?;
        if let Some(recovery) = writer.recovery() {
            tracing::warn!(
                recovery = ?recovery,
                "the audit trail did not end cleanly last time; the new segment declares what was found"
            );
        }
        let state = Arc::new(TrailState::default());
        state.healthy.store(true, Ordering::Relaxed);
        let (sender, receiver) = mpsc::sync_channel(config.queue);
        let trail = Trail {
            sender,
            state: state.clone(),
            strict: config.strict,
            unrestricted: config.unrestricted_when_unavailable,
            fingerprinter: fingerprinter.clone(),
        };
        trail
            .record(kind::PROXY_START, Payload::ProxyStart(start), None)
            .map_err(|_| StartError::Thread(std::io::Error::other("queue")))?;
        let feed = writer::Feed {
            fingerprinter,
            lines: feed,
        };
        let thread = writer::WriterThread::new(config, writer, sealer, receiver, state, feed);
        std::thread::Builder::new()
            .name("maskgate-audit".into())
            .spawn(move || thread.run())
            .map_err(StartError::Thread)?;
        Ok(trail)
    }

    /// The fingerprints records carry for lookup keys (for honeytoken values).
    pub fn fingerprinter(&self) -> &maskgate_detect::Fingerprinter {
        &self.fingerprinter
    }

    pub fn state(&self) -> &Arc<TrailState> {
        &self.state
    }

    /// Whether restricted statements wait for their records to be durable.
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// Whether a statement of an account (`restricted` or not) must be refused
    /// when its record cannot be taken.
    pub fn refuses_unrecorded(&self, restricted: bool) -> bool {
        restricted || self.unrestricted == WhenUnavailable::Refuse
    }

    /// Hands a record to the writer without waiting.
    pub fn record(
        &self,
        kind: &'static str,
        payload: Payload,
        secret: Option<Secret>,
    ) -> Result<(), Unavailable> {
        self.send(kind, payload, secret, None)
    }

    /// Like [`Trail::record`]; the receiver fires once the record is on disk.
    pub fn record_durable(
        &self,
        kind: &'static str,
        payload: Payload,
        secret: Option<Secret>,
    ) -> Result<oneshot::Receiver<()>, Unavailable> {
        let (tell, told) = oneshot::channel();
        self.send(kind, payload, secret, Some(tell))?;
        Ok(told)
    }

    /// A record of something that happened and cannot be refused (a login refusal,
    /// a session's end): if the trail cannot take it, that is counted and logged.
    pub fn record_event(&self, kind: &'static str, payload: Payload) {
        if let Err(why) = self.record(kind, payload, None) {
            tracing::error!(kind, error = %why, "an audit record could not be queued");
        }
    }

    fn send(
        &self,
        kind: &'static str,
        payload: Payload,
        secret: Option<Secret>,
        durable: Option<oneshot::Sender<()>>,
    ) -> Result<(), Unavailable> {
        if !self.state.is_healthy() {
            self.state.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Unavailable::Failed);
        }
        let entry = Entry::Record(Box::new(Pending {
            kind,
            payload,
            secret,
            durable,
        }));
        match self.sender.try_send(entry) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.state.refused.fetch_add(1, Ordering::Relaxed);
                Err(Unavailable::QueueFull)
            }
            Err(TrySendError::Disconnected(_)) => {
                self.state.refused.fetch_add(1, Ordering::Relaxed);
                Err(Unavailable::Failed)
            }
        }
    }

    /// Waits (blocking) until every record queued before is written and synced.
    pub fn flush_blocking(&self) {
        let (tell, told) = std::sync::mpsc::channel();
        if self.sender.send(Entry::Flush(tell)).is_ok() {
            let _ = told.recv();
        }
    }

    /// Writes what is queued, a final checkpoint, and stops the writer (blocking).
    pub fn close_blocking(&self, stop: ProxyStop) {
        self.record_event(kind::PROXY_STOP, Payload::ProxyStop(stop));
        let (tell, told) = std::sync::mpsc::channel();
        if self.sender.send(Entry::Close(tell)).is_ok() {
            let _ = told.recv();
        }
    }
}

/// This process's prefix of session ids: random, so ids of different runs never
/// collide in one trail.
pub fn instance() -> &'static str {
    static INSTANCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    INSTANCE.get_or_init(|| format!("{:08x}", rand::random::<u32>()))
}
