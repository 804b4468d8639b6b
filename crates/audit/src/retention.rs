//! Retention: removing the oldest segments once they are exported, so that the
//! removal is declared in the trail itself and never looks like (or hides) tampering.
//!
//! # The `retention` record
//!
//! Before a writer deletes any segment it appends this record, commits it, seals it
//! with a signed checkpoint and syncs ([`crate::Writer::remove_segments`]):
//!
//! ```text
//! {"seq":..,"time":..,"kind":"retention","prev":"<hex>",
//!  "removed":[{"segment":"audit-000004.jsonl","index":4,"first_seq":301,"last_seq":400,
//!              "last_hash":"<hex>","sha256":"<hex>"}, ...],
//!  "removed_before":{"segment":"audit-000003.jsonl","index":3,"last_seq":300,"last_hash":"<hex>"}}
//! ```
//!
//! * `removed` — the segments this run deletes, oldest first: each with its range,
//!   the hash of its last line (what the next segment chains from) and the SHA-256
//!   of the whole file, which is the one its export receipt names.
//! * `removed_before` — the last segment removed by earlier runs (`null` if none),
//!   so that this record alone vouches for the whole removed prefix even once the
//!   records of earlier runs are removed in turn.
//!
//! Then the files are deleted oldest first (a crash leaves a contiguous suffix of
//! them, still authorized) and the directory is synced.
//!
//! # What may be removed
//!
//! [`plan_retention`] walks the segments from the oldest and takes the longest
//! prefix in which every segment:
//!
//! * is not the segment being written, and its last record is older than the cutoff;
//! * has a receipt in `export-receipts.jsonl` ([`crate::export`]) whose `sha256` is
//!   the file's current SHA-256: it is the very file that was verified and exported;
//! * verifies on its own: a `segment_start` naming it, an unbroken chain from the
//!   previous segment's end, every checkpoint valid under the public key;
//! * is chained to by the next segment's `segment_start` (`prev_hash` and `prev_segment`);
//! * ended with a final checkpoint, or, if the writer crashed in it, is removed
//!   together with the next segment (whose `recovery` record declares that end):
//!   otherwise the first remaining segment would declare the end of a segment
//!   that is gone.
//!
//! Segments past the cutoff that cannot be removed are kept and listed as overdue,
//! each with the reason, for the operator.
//!
//! # How the verifier accepts a removed prefix
//!
//! A trail whose first segment has index `j > 1` verifies only if a `retention`
//! record sealed by a valid checkpoint names segment `j - 1` (in `removed` or as
//! `removed_before`) with the `last_seq` and `last_hash` the first remaining
//! segment chains from. Anything else is reported as missing segments and deleted
//! records, as before.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::chain::Digest;
pub use crate::export::RECEIPTS_FILE;
use crate::export::{read_receipts, Receipt};
use crate::keys::PublicKey;
use crate::record::{self, KIND_SEGMENT_START};
use crate::recovery::SegmentTracker;
use crate::segment::{
    parse_segment_name, segment_name, Item, LineReader, Listing, SegmentStartRecord,
};

/// One segment a `retention` record removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovedSegment {
    pub segment: String,
    pub index: u64,
    /// Seq of its first record; `null` for a segment without a complete line.
    pub first_seq: Option<u64>,
    /// The chain head at its end: its last record, or for a segment without a
    /// complete line the record before it (0 and zeros at the very start).
    pub last_seq: u64,
    pub last_hash: String,
    /// SHA-256 of the whole file, as its export receipt names it.
    pub sha256: String,
}

/// The last segment removed by earlier runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovedBefore {
    pub segment: String,
    pub index: u64,
    pub last_seq: u64,
    pub last_hash: String,
}

/// The payload of a `retention` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    pub removed: Vec<RemovedSegment>,
    pub removed_before: Option<RemovedBefore>,
}

/// A `retention` record read back, envelope included.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the envelope fields are there to be allowed, not read
pub(crate) struct RetentionRecord {
    pub seq: u64,
    pub time: String,
    pub kind: String,
    pub prev: String,
    pub removed: Vec<RemovedSegment>,
    pub removed_before: Option<RemovedBefore>,
}

/// Hashes every byte read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A segment read whole and checked on its own.
#[derive(Debug, Clone)]
pub(crate) struct SegmentCheck {
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
    pub first_seq: Option<u64>,
    /// The link of its `segment_start`: the chain head it continues.
    pub start_prev: Option<Digest>,
    /// Seq and hash of its last complete line.
    pub last: Option<(u64, Digest)>,
    /// Ends with a valid final checkpoint and nothing after it.
    pub closed: bool,
}

/// Reads segment `name` once: its SHA-256, and whether it holds together on its
/// own (start record, chain, checkpoints under `key`). `Ok(Err(why))` when it does not.
pub(crate) fn check_segment(
    path: &Path,
    name: &str,
    index: u64,
    key: &PublicKey,
) -> io::Result<Result<SegmentCheck, &'static str>> {
    let mut reader = LineReader::new(HashingReader {
        inner: File::open(path)?,
        hasher: Sha256::new(),
    });
    let mut t = SegmentTracker::new(name, index);
    let (mut first_seq, mut start_prev, mut last) = (None, None, None::<(u64, Digest)>);
    while let Some(item) = reader.next_item()? {
        let bytes = match item {
            Item::Line(bytes) => bytes,
            Item::TooLong(_) => return Ok(Err("a line is longer than any record")),
            Item::Torn(_) if t.final_seen() => return Ok(Err("bytes after its final checkpoint")),
            Item::Torn(n) => {
                t.torn(n);
                continue;
            }
        };
        if t.final_seen() {
            return Ok(Err("records after its final checkpoint"));
        }
        let digest = Digest::of_line(bytes);
        let Ok(env) = record::parse_envelope(bytes) else {
            return Ok(Err("a line is not a well-formed record"));
        };
        match last {
            None => {
                if !starts_itself(bytes, name, index, &env.prev) {
                    return Ok(Err("it does not begin with its own segment_start record"));
                }
                first_seq = Some(env.seq);
                start_prev = Some(env.prev);
            }
            Some((seq, hash)) => {
                if Some(env.seq) != seq.checked_add(1) || env.prev != hash {
                    return Ok(Err("its hash chain is broken"));
                }
                if env.kind == KIND_SEGMENT_START {
                    return Ok(Err("a second segment_start record"));
                }
            }
        }
        if let Some(Err(_)) = t.line(bytes, digest, Some((env.seq, &env.kind)), key) {
            return Ok(Err("a checkpoint does not verify with the public key"));
        }
        last = Some((env.seq, digest));
    }
    let closed = t.state().is_clean();
    let sha256 = reader.into_inner().hasher.finalize().into();
    Ok(Ok(SegmentCheck {
        sha256,
        first_seq,
        start_prev,
        last,
        closed,
    }))
}

/// Whether `line` is the `segment_start` of segment `name`, linking to `prev`.
fn starts_itself(line: &[u8], name: &str, index: u64, prev: &Digest) -> bool {
    serde_json::from_slice::<SegmentStartRecord>(line).is_ok_and(|s| {
        s.kind == KIND_SEGMENT_START
            && s.segment == name
            && s.index == index
            && Digest::parse_hex(&s.prev_hash).as_ref() == Some(prev)
    })
}

/// What a segment's first line says about the chain before it.
#[derive(Debug, Clone)]
pub(crate) struct StartFacts {
    pub seq: u64,
    pub index: u64,
    pub prev_segment: Option<String>,
    pub prev_hash: Digest,
}

/// Reads the `segment_start` of segment `name`; `None` if its first line is not one.
pub(crate) fn read_start(path: &Path) -> io::Result<Option<StartFacts>> {
    let mut reader = LineReader::open(path)?;
    let Some(Item::Line(line)) = reader.next_item()? else {
        return Ok(None);
    };
    let Ok(env) = record::parse_envelope(line) else {
        return Ok(None);
    };
    let Ok(start) = serde_json::from_slice::<SegmentStartRecord>(line) else {
        return Ok(None);
    };
    Ok(
        (env.kind == KIND_SEGMENT_START && Digest::parse_hex(&start.prev_hash) == Some(env.prev))
            .then_some(StartFacts {
                seq: env.seq,
                index: start.index,
                prev_segment: start.prev_segment,
                prev_hash: env.prev,
            }),
    )
}

/// How old a segment is: the time of its last complete record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Age {
    /// No complete line: it holds no record to keep.
    Empty,
    At(OffsetDateTime),
    /// The last line is not a record; the full check will say why.
    Unknown,
}

/// Reads the last complete line from the end of the file (its last 64 KiB, the
/// whole file only when that line is longer).
fn last_record_age(path: &Path) -> io::Result<Age> {
    const TAIL: u64 = 64 * 1024;
    let mut f = File::open(path)?;
    let start = f.metadata()?.len().saturating_sub(TAIL);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take(TAIL).read_to_end(&mut buf)?;
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
        return if start == 0 {
            Ok(Age::Empty)
        } else {
            last_record_age_slow(path)
        };
    };
    let from = match buf[..end].iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None if start == 0 => 0,
        None => return last_record_age_slow(path),
    };
    Ok(age_of(&buf[from..end]))
}

fn last_record_age_slow(path: &Path) -> io::Result<Age> {
    let mut reader = LineReader::open(path)?;
    let mut age = Age::Empty;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Line(line) => age = age_of(line),
            Item::TooLong(_) => age = Age::Unknown,
            Item::Torn(_) => {}
        }
    }
    Ok(age)
}

/// Whether the segment's last record is older than `cutoff` (a segment without
/// a readable last record counts as past: the full check says what is wrong).
fn past(path: &Path, cutoff: OffsetDateTime) -> io::Result<bool> {
    Ok(!matches!(last_record_age(path)?, Age::At(t) if t >= cutoff))
}

fn age_of(line: &[u8]) -> Age {
    record::parse_envelope(line).map_or(Age::Unknown, |env| Age::At(env.time))
}

/// A segment past retention that is kept, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdue {
    pub segment: String,
    pub index: u64,
    pub reason: &'static str,
}

/// What [`plan_retention`] found.
#[derive(Debug, Clone)]
pub struct RetentionPlan {
    /// The record to write; nothing to do when `removed` is empty.
    pub body: RetentionBody,
    /// Segments past retention that stay, oldest first.
    pub overdue: Vec<Overdue>,
    /// The plan stopped at its size bound: more may be removable right after it.
    pub more: bool,
}

/// The directory could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {source}", path.display())]
pub struct RetentionError {
    op: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// Finds the oldest segments that may be removed: those whose last record is
/// older than `cutoff` and that meet every condition of the module documentation,
/// at most `max_segments` of them. `open_segment` is the segment being written.
/// Reads only; the writer removes ([`crate::Writer::remove_segments`]).
pub fn plan_retention(
    dir: &Path,
    open_segment: &str,
    key: &PublicKey,
    cutoff: OffsetDateTime,
    max_segments: usize,
) -> Result<RetentionPlan, RetentionError> {
    let err = |op, path: &Path| {
        let path = path.to_owned();
        move |source| RetentionError { op, path, source }
    };
    let listing = Listing::read(dir).map_err(err("list", dir))?;
    let receipts = read_receipts(dir).map_err(err("read", &dir.join(RECEIPTS_FILE)))?;
    let mut p = Planner {
        dir,
        key,
        receipts,
        open: parse_segment_name(open_segment).unwrap_or(u64::MAX),
        head: (0, Digest::ZERO),
        expected: 0,
        removed: Vec::new(),
        overdue: Vec::new(),
    };
    let before = match listing.segments.first() {
        Some((index, name)) if *index > 1 && *index < p.open => {
            let path = dir.join(name);
            match read_start(&path).map_err(err("read", &path))? {
                Some(s) if s.index == *index && s.seq > 0 => Some(RemovedBefore {
                    segment: segment_name(index - 1),
                    index: index - 1,
                    last_seq: s.seq - 1,
                    last_hash: s.prev_hash.to_hex(),
                }),
                _ => None,
            }
        }
        _ => None,
    };
    if let Some(b) = &before {
        p.head = (
            b.last_seq,
            Digest::parse_hex(&b.last_hash).unwrap_or(Digest::ZERO),
        );
    }
    p.expected = listing.segments.first().map_or(1, |(i, _)| *i);
    let broken_start = p.expected > 1 && before.is_none();
    let more = p
        .walk(&listing.segments, cutoff, max_segments, broken_start)
        .map_err(|(path, source)| RetentionError {
            op: "read",
            path,
            source,
        })?;
    Ok(p.finish(before, more))
}

struct Planner<'a> {
    dir: &'a Path,
    key: &'a PublicKey,
    receipts: HashMap<u64, Vec<Receipt>>,
    /// Index of the segment being written.
    open: u64,
    /// Chain head at the end of the last segment taken (or of the removed prefix).
    head: (u64, Digest),
    /// Index the next segment taken must have.
    expected: u64,
    /// Segments taken, with whether each ended with a final checkpoint.
    removed: Vec<(RemovedSegment, bool)>,
    overdue: Vec<Overdue>,
}

impl Planner<'_> {
    /// Takes segments from the oldest; returns whether it stopped at the bound.
    /// Once a segment past the cutoff cannot be taken, the later ones past the
    /// cutoff are overdue too: their number is found by bisection on their ages,
    /// so a long unexported backlog costs a few reads per check, not one per segment.
    fn walk(
        &mut self,
        all: &[(u64, String)],
        cutoff: OffsetDateTime,
        max: usize,
        broken_start: bool,
    ) -> Result<bool, (PathBuf, io::Error)> {
        let end = all
            .iter()
            .position(|(i, _)| *i >= self.open)
            .unwrap_or(all.len());
        let segments = &all[..end];
        let mut kept = broken_start.then_some((
            0,
            "the oldest segment does not begin with a readable segment_start record",
        ));
        if kept.is_none() {
            for (pos, (index, name)) in segments.iter().enumerate() {
                if self.removed.len() >= max {
                    return Ok(true);
                }
                let path = self.dir.join(name);
                if !past(&path, cutoff).map_err(|e| (path.clone(), e))? {
                    return Ok(false);
                }
                // The segment after the last older one is the open segment.
                let next = all.get(pos + 1);
                if let Err(reason) = self.take(*index, name, next).map_err(|e| (path, e))? {
                    kept = Some((pos, reason));
                    break;
                }
            }
        }
        let Some((from, reason)) = kept else {
            return Ok(false);
        };
        let rest = &segments[from..];
        let n = self
            .past_prefix(rest, cutoff)?
            .max(usize::from(!broken_start));
        for (i, (index, name)) in rest[..n].iter().enumerate() {
            let why = if i == 0 {
                reason
            } else {
                "an older segment past retention is kept"
            };
            self.overdue(*index, name, why);
        }
        Ok(false)
    }

    /// How many of `segments` (oldest first) are past the cutoff, by bisection.
    fn past_prefix(
        &self,
        segments: &[(u64, String)],
        cutoff: OffsetDateTime,
    ) -> Result<usize, (PathBuf, io::Error)> {
        let (mut lo, mut hi) = (0, segments.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let path = self.dir.join(&segments[mid].1);
            if past(&path, cutoff).map_err(|e| (path, e))? {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    fn overdue(&mut self, index: u64, name: &str, reason: &'static str) {
        self.overdue.push(Overdue {
            segment: name.to_owned(),
            index,
            reason,
        });
    }

    /// Checks one segment against every condition and takes it, or says why not.
    fn take(
        &mut self,
        index: u64,
        name: &str,
        next: Option<&(u64, String)>,
    ) -> io::Result<Result<(), &'static str>> {
        if index != self.expected {
            return Ok(Err("a segment before it is missing"));
        }
        let receipts = self.receipts.get(&index).map_or(&[][..], Vec::as_slice);
        if !receipts.iter().any(|r| r.segment == name) {
            return Ok(Err("not exported: no receipt in export-receipts.jsonl"));
        }
        let check = match check_segment(&self.dir.join(name), name, index, self.key)? {
            Ok(c) => c,
            Err(why) => return Ok(Err(why)),
        };
        let sha = hex::encode(check.sha256);
        if !receipts
            .iter()
            .any(|r| r.segment == name && r.sha256 == sha)
        {
            return Ok(Err(
                "changed since it was exported: its SHA-256 is not the one of its receipt",
            ));
        }
        if let Some(prev) = check.start_prev {
            if prev != self.head.1 || check.first_seq != self.head.0.checked_add(1) {
                return Ok(Err("it does not chain from the segment before it"));
            }
        }
        let (last_seq, last_hash) = check.last.unwrap_or(self.head);
        let Some((next_index, next_name)) = next else {
            return Ok(Err("no segment follows it"));
        };
        let chained = read_start(&self.dir.join(next_name))?.is_some_and(|s| {
            s.index == *next_index
                && *next_index == index + 1
                && s.prev_segment.as_deref() == Some(name)
                && s.prev_hash == last_hash
                && Some(s.seq) == last_seq.checked_add(1)
        });
        if !chained {
            return Ok(Err("the next segment does not chain from it"));
        }
        self.removed.push((
            RemovedSegment {
                segment: name.to_owned(),
                index,
                first_seq: check.first_seq,
                last_seq,
                last_hash: last_hash.to_hex(),
                sha256: sha,
            },
            check.closed,
        ));
        self.head = (last_seq, last_hash);
        self.expected = index + 1;
        Ok(Ok(()))
    }

    fn finish(mut self, before: Option<RemovedBefore>, more: bool) -> RetentionPlan {
        // A segment the writer crashed in goes only with the next one, whose
        // recovery record declares its end.
        let mut waiting = Vec::new();
        while self.removed.last().is_some_and(|(_, closed)| !closed) {
            if let Some((r, _)) = self.removed.pop() {
                waiting.push(Overdue {
                    segment: r.segment,
                    index: r.index,
                    reason: "the writer stopped in it: it goes only with the segment after it",
                });
            }
        }
        if !more {
            self.overdue.extend(waiting);
        }
        self.overdue.sort_by_key(|o| o.index);
        RetentionPlan {
            body: RetentionBody {
                removed: self.removed.into_iter().map(|(r, _)| r).collect(),
                removed_before: before,
            },
            overdue: self.overdue,
            more,
        }
    }
}

/// Checks, just before a writer removes `body.removed`, that they are still the
/// oldest segments of `dir`, contiguous and older than the open segment `open`.
pub(crate) fn still_oldest(dir: &Path, body: &RetentionBody, open: u64) -> io::Result<bool> {
    let listing = Listing::read(dir)?;
    let Some(first) = body.removed.first() else {
        return Ok(false);
    };
    let oldest = listing.segments.first().map(|(i, _)| *i);
    let contiguous = body
        .removed
        .iter()
        .zip(first.index..)
        .all(|(r, i)| r.index == i && r.segment == segment_name(i) && i < open);
    let present = body.removed.iter().all(|r| {
        listing
            .segments
            .iter()
            .any(|(i, n)| *i == r.index && *n == r.segment)
    });
    Ok(oldest == Some(first.index) && contiguous && present)
}

/// Deletes the files oldest first and syncs the directory. Returns how many were
/// deleted and the error that stopped it, if any.
pub(crate) fn delete(dir: &Path, body: &RetentionBody) -> (usize, Option<(PathBuf, io::Error)>) {
    let mut deleted = 0;
    for r in &body.removed {
        let path = dir.join(&r.segment);
        match fs::remove_file(&path) {
            Ok(()) => deleted += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return (deleted, Some((path, e))),
        }
    }
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => (deleted, None),
        Err(e) => (deleted, Some((dir.to_owned(), e))),
    }
}

/// One authorization a sealed `retention` record gives: the chain head at the end
/// of a removed segment.
#[derive(Debug, Clone)]
struct End {
    segment: String,
    last_seq: u64,
    last_hash: String,
    /// Seq of the record that says so.
    record: u64,
}

/// What the sealed `retention` records of a trail authorize, by segment index.
#[derive(Debug, Default)]
pub(crate) struct Authorizations {
    ends: HashMap<u64, Vec<End>>,
}

impl Authorizations {
    /// Adds what a record sealed by a valid checkpoint states.
    pub fn add(&mut self, record: u64, body: RetentionBody) {
        let before = body
            .removed_before
            .map(|b| (b.index, b.segment, b.last_seq, b.last_hash));
        let removed = body
            .removed
            .into_iter()
            .map(|r| (r.index, r.segment, r.last_seq, r.last_hash));
        for (index, segment, last_seq, last_hash) in removed.chain(before) {
            self.ends.entry(index).or_default().push(End {
                segment,
                last_seq,
                last_hash,
                record,
            });
        }
    }

    /// The seq of a record that authorizes removing every segment through `index`,
    /// whose end was record `last_seq` with hash `last_hash`.
    pub fn through(&self, index: u64, last_seq: u64, last_hash: &Digest) -> Option<u64> {
        let name = segment_name(index);
        self.ends.get(&index)?.iter().find_map(|e| {
            (e.segment == name
                && e.last_seq == last_seq
                && Digest::parse_hex(&e.last_hash).as_ref() == Some(last_hash))
            .then_some(e.record)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, time: &str, pad: usize) -> String {
        format!(
            "{{\"seq\":{seq},\"time\":\"{time}\",\"kind\":\"x\",\"prev\":\"{}\",\"pad\":\"{}\"}}\n",
            "0".repeat(64),
            "p".repeat(pad)
        )
    }

    #[test]
    fn age_is_the_last_complete_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let t1 = "2025-01-01T00:00:00Z";
        let t2 = "2025-02-01T00:00:00Z";
        let at = |s: &str| {
            Age::At(
                OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap(),
            )
        };
        fs::write(&path, "").unwrap();
        assert_eq!(last_record_age(&path).unwrap(), Age::Empty);
        fs::write(&path, "torn").unwrap();
        assert_eq!(last_record_age(&path).unwrap(), Age::Empty);
        fs::write(&path, line(1, t1, 10) + &line(2, t2, 10) + "torn").unwrap();
        assert_eq!(last_record_age(&path).unwrap(), at(t2));
        // A last line longer than the tail read, after a long first one.
        fs::write(&path, line(1, t1, 70_000) + &line(2, t2, 100_000)).unwrap();
        assert_eq!(last_record_age(&path).unwrap(), at(t2));
        fs::write(&path, line(1, t1, 10) + "not a record\n").unwrap();
        assert_eq!(last_record_age(&path).unwrap(), Age::Unknown);
    }

    #[test]
    fn authorizations_cover_removed_and_removed_before() {
        let h = |s: &str| Digest::of_line(s.as_bytes());
        let mut a = Authorizations::default();
        a.add(
            90,
            RetentionBody {
                removed: vec![RemovedSegment {
                    segment: segment_name(4),
                    index: 4,
                    first_seq: Some(31),
                    last_seq: 40,
                    last_hash: h("40").to_hex(),
                    sha256: "0".repeat(64),
                }],
                removed_before: Some(RemovedBefore {
                    segment: segment_name(3),
                    index: 3,
                    last_seq: 30,
                    last_hash: h("30").to_hex(),
                }),
            },
        );
        assert_eq!(a.through(4, 40, &h("40")), Some(90));
        assert_eq!(a.through(3, 30, &h("30")), Some(90));
        assert_eq!(a.through(4, 39, &h("40")), None);
        assert_eq!(a.through(4, 40, &h("41")), None);
        assert_eq!(a.through(2, 20, &h("20")), None);
        assert_eq!(a.through(5, 40, &h("40")), None);
    }
}
