//! The writer: appends records, commits them in groups, signs checkpoints and
//! rotates segments.
//!
//! One [`Writer`] owns a directory (an exclusive `flock` on `audit.lock`) and is
//! driven from one thread. The caller's loop decides the timing:
//!
//! ```text
//! loop {
//!     for event in queue.drain_for(5 ms) { writer.append(kind, &event)?; }
//!     writer.commit()?;                         // one write(2) for the whole group
//!     if strict { writer.sync()?; }             // results wait for fdatasync
//!     if every_5_s { writer.checkpoint()?; }    // signed, fsynced
//! }
//! writer.close()?;                              // final checkpoint
//! ```
//!
//! [`Writer::append`] only formats into a reused buffer and hashes the line, so it
//! is cheap; nothing reaches the file before [`Writer::commit`].
//!
//! **Failure is sticky.** After an I/O error the file may hold part of a group, so
//! the writer cannot know what is on disk: every later call returns
//! [`WriteError::Poisoned`]. The caller must stop admitting statements that need a
//! record and open a new writer, whose recovery declares whatever was left.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;
use time::OffsetDateTime;

use crate::chain::Digest;
use crate::checkpoint::{self, Cover, SegmentEnd};
use crate::keys::PublicKey;
use crate::keys::SigningKey;
use crate::record::{
    self, KeyCheck, RecordError, KIND_RECOVERY, KIND_RETENTION, KIND_SEGMENT_START,
};
use crate::recovery::{scan_tail, RecoveryBody};
use crate::retention::{self, RetentionBody};
use crate::seal::SealError;
use crate::segment::{segment_name, Listing, SegmentStart, LOCK_FILE};

/// Smallest accepted `max_segment_bytes`: below this a segment would hold little
/// more than its own start and final checkpoint.
pub const MIN_SEGMENT_BYTES: u64 = 4096;

/// Buffered bytes at which `append` commits by itself, so a caller that forgets to
/// commit cannot grow the buffer without bound.
const AUTO_COMMIT_BYTES: usize = 4 * 1024 * 1024;

/// How a writer is set up.
#[derive(Debug)]
pub struct WriterConfig {
    /// Rotate once a segment has reached this size (checked before each append,
    /// so a segment can exceed it by one record and its final checkpoint).
    pub max_segment_bytes: u64,
    /// Rotate at the first append once a segment is this old.
    pub max_segment_age: Duration,
    /// Signs checkpoints.
    pub signing_key: SigningKey,
    /// Keep a copy of the last caller record's line ([`Writer::last_record`]), for
    /// a caller that hands records on (detection).
    pub keep_last_record: bool,
}

impl WriterConfig {
    /// 64 MiB segments, rotated at least hourly.
    pub fn new(signing_key: SigningKey) -> WriterConfig {
        WriterConfig {
            max_segment_bytes: 64 * 1024 * 1024,
            max_segment_age: Duration::from_secs(3600),
            signing_key,
            keep_last_record: false,
        }
    }
}

/// Why the writer could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is in use by another audit writer", dir.display())]
    Locked { dir: PathBuf },
    #[error("invalid writer configuration: {0}")]
    Config(&'static str),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(
        "the audit writer failed earlier and cannot know what reached the disk; open a new one"
    )]
    Poisoned,
    #[error("cannot resume the trail after {segment}: {reason}")]
    Recovery {
        segment: String,
        reason: &'static str,
    },
    #[error("sequence numbers are exhausted")]
    Exhausted,
    /// A retention plan no longer describes the oldest segments (nothing was
    /// written or removed; the writer is still usable).
    #[error("retention plan is out of date: {0}")]
    StalePlan(&'static str),
}

/// What [`Writer::remove_segments`] did.
#[derive(Debug)]
pub struct Removal {
    /// Seq of the `retention` record.
    pub record: u64,
    /// Files deleted.
    pub deleted: usize,
    /// What stopped the deletion after the record was written, if anything: the
    /// files left are still authorized by the record, and the trail still verifies.
    /// The writer stays usable.
    pub error: Option<WriteError>,
}

/// The segment being written.
struct Current {
    file: File,
    path: PathBuf,
    index: u64,
    name: String,
    first_seq: u64,
    /// Bytes written plus bytes buffered for it.
    bytes: u64,
    opened: Instant,
    /// Caller records in it (not segment_start, recovery or checkpoints).
    caller_records: u64,
    /// Whether anything was appended since the last checkpoint.
    since_checkpoint: bool,
}

/// Appends chained records to an audit directory. See the module documentation.
pub struct Writer {
    dir: PathBuf,
    _lock: Flock<File>,
    max_segment_bytes: u64,
    max_segment_age: Duration,
    key: SigningKey,
    signer: String,
    seg: Current,
    buf: Vec<u8>,
    next_seq: u64,
    /// Hash of the last record appended (written or buffered).
    head: Digest,
    poisoned: bool,
    closed: bool,
    recovery: Option<RecoveryBody>,
    /// The last caller record's line, when asked to keep it.
    last_record: Option<Vec<u8>>,
}

impl Writer {
    /// Opens `dir` (created 0750 if missing) and starts a new segment.
    ///
    /// If the directory already has a trail, the new segment continues its chain
    /// from the last complete record. If that trail did not end cleanly, the new
    /// segment's second record declares what was found ([`crate::recovery`]);
    /// [`Writer::recovery`] returns the same facts for the caller to log.
    pub fn open(dir: impl AsRef<Path>, config: WriterConfig) -> Result<Writer, WriteError> {
        let dir = dir.as_ref().to_owned();
        if config.max_segment_bytes < MIN_SEGMENT_BYTES {
            return Err(WriteError::Config(
                "max_segment_bytes must be at least 4096",
            ));
        }
        if config.max_segment_age.is_zero() {
            return Err(WriteError::Config("max_segment_age must be positive"));
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&dir)
            .map_err(|source| io_error("create", &dir, source))?;
        let lock = lock_dir(&dir)?;
        let listing = Listing::read(&dir).map_err(|source| io_error("list", &dir, source))?;
        let public = config.signing_key.public_key();
        let tail = scan_tail(&dir, &listing, &public)?;

        let (next_seq, head) = match tail.head {
            Some((seq, digest)) => (seq.checked_add(1).ok_or(WriteError::Exhausted)?, digest),
            None => (1, Digest::ZERO),
        };
        let (index, prev_segment) = match &tail.last_segment {
            Some((index, name)) => (
                index.checked_add(1).ok_or(WriteError::Exhausted)?,
                Some(name.clone()),
            ),
            None => (1, None),
        };
        let recovery = (!tail.unclean.is_empty()).then(|| RecoveryBody::from_states(tail.unclean));
        let seg = create_segment(&dir, index, next_seq)?;
        let mut writer = Writer {
            dir,
            _lock: lock,
            max_segment_bytes: config.max_segment_bytes,
            max_segment_age: config.max_segment_age,
            signer: public.fingerprint(),
            key: config.signing_key,
            seg,
            buf: Vec::with_capacity(64 * 1024),
            next_seq,
            head,
            poisoned: false,
            closed: false,
            recovery,
            last_record: config.keep_last_record.then(Vec::new),
        };
        writer.write_segment_head(prev_segment, true)?;
        // A recovery declaration is worth making durable at once.
        writer.sync()?;
        Ok(writer)
    }

    /// Buffers one record and returns its seq. Nothing is written before
    /// [`Writer::commit`] (or a rotation).
    ///
    /// `payload` must serialize to a JSON object whose keys are not `seq`, `time`,
    /// `kind` or `prev` and appear once. A refused record changes nothing.
    pub fn append<P: Serialize + ?Sized>(
        &mut self,
        kind: &str,
        payload: &P,
    ) -> Result<u64, WriteError> {
        self.append_with(kind, |_| Ok(payload))
    }

    /// Like [`Writer::append`], but the payload is built from the seq the record
    /// will get, after any rotation: the way to seal literals bound to their
    /// record ([`crate::Sealer::seal`] with the seq as record id). If `build`
    /// fails, nothing is appended and the seq is not used.
    pub fn append_with<P, F>(&mut self, kind: &str, build: F) -> Result<u64, WriteError>
    where
        P: Serialize,
        F: FnOnce(u64) -> Result<P, SealError>,
    {
        self.append_checked(kind, build, KeyCheck::Check)
    }

    /// Like [`Writer::append_with`] for payloads whose keys are fixed by their
    /// type (structs, no maps): the scan of the serialized keys for reserved or
    /// repeated names, a second JSON pass, is done only in debug builds.
    pub fn append_typed_with<P, F>(&mut self, kind: &str, build: F) -> Result<u64, WriteError>
    where
        P: Serialize,
        F: FnOnce(u64) -> Result<P, SealError>,
    {
        let check = if cfg!(debug_assertions) {
            KeyCheck::Check
        } else {
            KeyCheck::Trusted
        };
        self.append_checked(kind, build, check)
    }

    fn append_checked<P, F>(
        &mut self,
        kind: &str,
        build: F,
        check: KeyCheck,
    ) -> Result<u64, WriteError>
    where
        P: Serialize,
        F: FnOnce(u64) -> Result<P, SealError>,
    {
        self.healthy()?;
        record::validate_kind(kind)?;
        if self.rotation_due() {
            self.rotate()?;
        }
        let payload = build(self.take_seq()?)?;
        let before = self.buf.len();
        let seq = self.push(kind, &payload, check)?;
        if let Some(last) = &mut self.last_record {
            last.clear();
            // Without its newline.
            last.extend_from_slice(&self.buf[before..self.buf.len() - 1]);
        }
        self.seg.caller_records += 1;
        if self.buf.len() >= AUTO_COMMIT_BYTES {
            // The record is buffered; if this write fails the writer is poisoned
            // and the error says so.
            self.commit()?;
        }
        Ok(seq)
    }

    /// The line of the last record appended with `append*` (without its newline),
    /// when [`WriterConfig::keep_last_record`] is set.
    pub fn last_record(&self) -> Option<&[u8]> {
        self.last_record.as_deref()
    }

    /// The seq the next record will get if no rotation comes first (a size or
    /// age limit reached at the next append inserts writer records). To bind a
    /// value to its record's seq, use [`Writer::append_with`].
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Writes the buffered records with one `write(2)`. Cheap when nothing is buffered.
    pub fn commit(&mut self) -> Result<(), WriteError> {
        self.healthy()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(source) = self.seg.file.write_all(&self.buf) {
            self.poisoned = true;
            return Err(io_error("write", &self.seg.path, source));
        }
        self.buf.clear();
        Ok(())
    }

    /// [`Writer::commit`], then `fdatasync`: when this returns, every record
    /// appended so far survives a crash (strict mode).
    pub fn sync(&mut self) -> Result<(), WriteError> {
        self.commit()?;
        if let Err(source) = self.seg.file.sync_data() {
            self.poisoned = true;
            return Err(io_error("sync", &self.seg.path, source));
        }
        Ok(())
    }

    /// Writes a signed checkpoint covering the current segment from its first
    /// record, commits and syncs. Returns its seq, or `None` when nothing was
    /// appended since the last checkpoint (an idle writer adds nothing). If the
    /// segment is due for rotation, rotates instead: the rotation's final
    /// checkpoint is the one returned.
    pub fn checkpoint(&mut self) -> Result<Option<u64>, WriteError> {
        self.healthy()?;
        if self.rotation_due() {
            return self.rotate().map(Some);
        }
        if !self.seg.since_checkpoint {
            return Ok(None);
        }
        let seq = self.push_checkpoint(None)?;
        self.sync()?;
        Ok(Some(seq))
    }

    /// Clean shutdown: a final checkpoint, committed and synced.
    ///
    /// Dropping a writer without closing it commits what is buffered but signs
    /// nothing, so the next writer declares the end as unclean, as after a crash.
    pub fn close(mut self) -> Result<(), WriteError> {
        self.healthy()?;
        self.push_checkpoint(Some(SegmentEnd::Close))?;
        self.sync()?;
        self.closed = true;
        Ok(())
    }

    /// Removes the oldest segments, as planned by [`crate::retention::plan_retention`]:
    /// first a `retention` record naming them, committed, sealed by a signed
    /// checkpoint and synced, then the files, oldest first, and the directory's
    /// entries synced. See [`crate::retention`].
    ///
    /// The plan is checked again first: if its segments are no longer the oldest
    /// ones, nothing is written and [`WriteError::StalePlan`] is returned.
    pub fn remove_segments(&mut self, body: &RetentionBody) -> Result<Removal, WriteError> {
        self.healthy()?;
        if body.removed.is_empty() {
            return Err(WriteError::StalePlan("it removes nothing"));
        }
        let fresh = retention::still_oldest(&self.dir, body, self.seg.index)
            .map_err(|source| io_error("list", &self.dir, source))?;
        if !fresh {
            return Err(WriteError::StalePlan(
                "its segments are not the oldest ones of the directory",
            ));
        }
        let record = self.push(KIND_RETENTION, body, KeyCheck::Trusted)?;
        self.push_checkpoint(None)?;
        self.sync()?;
        let (deleted, error) = retention::delete(&self.dir, body);
        Ok(Removal {
            record,
            deleted,
            error: error.map(|(path, source)| io_error("remove", &path, source)),
        })
    }

    /// The key that verifies this writer's checkpoints.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// What this writer found and declared when it opened after an unclean stop.
    pub fn recovery(&self) -> Option<&RecoveryBody> {
        self.recovery.as_ref()
    }

    /// The file name of the segment being written.
    pub fn segment_name(&self) -> &str {
        &self.seg.name
    }

    /// The audit directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes appended but not yet committed.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Whether an earlier I/O error has stopped this writer.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    fn healthy(&self) -> Result<(), WriteError> {
        if self.poisoned {
            Err(WriteError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn rotation_due(&self) -> bool {
        self.seg.bytes >= self.max_segment_bytes
            // An idle segment is not rotated for age alone: it would only produce
            // segments holding a start and a final checkpoint.
            || (self.seg.caller_records > 0 && self.seg.opened.elapsed() >= self.max_segment_age)
    }

    /// Appends one record to the buffer and advances the chain.
    fn push<P: Serialize + ?Sized>(
        &mut self,
        kind: &str,
        payload: &P,
        check: KeyCheck,
    ) -> Result<u64, WriteError> {
        let seq = self.take_seq()?;
        let before = self.buf.len();
        let digest = record::encode(
            &mut self.buf,
            seq,
            OffsetDateTime::now_utc(),
            kind,
            &self.head,
            payload,
            check,
        )?;
        self.advance(digest, before);
        Ok(seq)
    }

    fn push_checkpoint(&mut self, end: Option<SegmentEnd>) -> Result<u64, WriteError> {
        let seq = self.take_seq()?;
        let before = self.buf.len();
        let cover = Cover {
            segment: &self.seg.name,
            index: self.seg.index,
            first: self.seg.first_seq,
            last: seq - 1,
            end,
        };
        let digest = checkpoint::encode(
            &mut self.buf,
            seq,
            OffsetDateTime::now_utc(),
            &self.head,
            &cover,
            &self.key,
            &self.signer,
        )?;
        self.advance(digest, before);
        self.seg.since_checkpoint = false;
        Ok(seq)
    }

    fn take_seq(&self) -> Result<u64, WriteError> {
        // seq - 1 is "last" of a checkpoint and seq + 1 the next record's seq;
        // refusing u64::MAX keeps both representable.
        if self.next_seq == u64::MAX {
            return Err(WriteError::Exhausted);
        }
        Ok(self.next_seq)
    }

    fn advance(&mut self, digest: Digest, buffer_len_before: usize) {
        self.head = digest;
        self.next_seq += 1;
        self.seg.bytes += (self.buf.len() - buffer_len_before) as u64;
        self.seg.since_checkpoint = true;
    }

    /// Closes the current segment with a final checkpoint and starts the next.
    /// Returns the final checkpoint's seq.
    fn rotate(&mut self) -> Result<u64, WriteError> {
        let seq = self.push_checkpoint(Some(SegmentEnd::Rotate))?;
        self.sync()?;
        let next = self.seg.index.checked_add(1).ok_or(WriteError::Exhausted)?;
        let seg = match create_segment(&self.dir, next, self.next_seq) {
            Ok(seg) => seg,
            Err(e) => {
                self.poisoned = true;
                return Err(e);
            }
        };
        let prev = std::mem::replace(&mut self.seg, seg);
        self.write_segment_head(Some(prev.name), false)?;
        Ok(seq)
    }

    /// Writes the new segment's `segment_start` (and, when `declare` is set, the
    /// recovery declaration found at open) and commits them.
    fn write_segment_head(
        &mut self,
        prev_segment: Option<String>,
        declare: bool,
    ) -> Result<(), WriteError> {
        let start = SegmentStart {
            format: crate::FORMAT_VERSION,
            segment: self.seg.name.clone(),
            index: self.seg.index,
            prev_segment,
            prev_hash: self.head.to_hex(),
        };
        self.push(KIND_SEGMENT_START, &start, KeyCheck::Trusted)?;
        if declare {
            if let Some(body) = self.recovery.take() {
                let pushed = self.push(KIND_RECOVERY, &body, KeyCheck::Trusted);
                self.recovery = Some(body);
                pushed?;
            }
        }
        self.commit()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.closed && !self.poisoned {
            // Best effort: keep what the caller appended. Nothing is signed, so
            // the next writer reports the end as unclean.
            let _ = self.commit();
        }
    }
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> WriteError {
    WriteError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn lock_dir(dir: &Path) -> Result<Flock<File>, WriteError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|source| io_error("open", &path, source))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, Errno::EWOULDBLOCK)) => Err(WriteError::Locked {
            dir: dir.to_owned(),
        }),
        Err((_, errno)) => Err(io_error("lock", &path, io::Error::from(errno))),
    }
}

/// Creates segment `index` (never reusing an existing file) and makes its
/// directory entry durable, so a synced record is never in a file that vanishes.
fn create_segment(dir: &Path, index: u64, first_seq: u64) -> Result<Current, WriteError> {
    let name = segment_name(index);
    let path = dir.join(&name);
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        // Group-readable so a log shipper in the group can read it: the trail
        // holds no personal data in clear.
        .mode(0o640)
        .open(&path)
        .map_err(|source| io_error("create", &path, source))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_error("sync", dir, source))?;
    Ok(Current {
        file,
        path,
        index,
        name,
        first_seq,
        bytes: 0,
        opened: Instant::now(),
        caller_records: 0,
        since_checkpoint: false,
    })
}
