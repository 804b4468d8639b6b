//! Resuming after an unclean stop.
//!
//! When a writer opens a directory whose last segment does not end with a final
//! checkpoint (kill -9, power loss, a failed disk), it never touches the old files:
//! a torn last line is left as it is, and records written before the stop are never
//! signed by a new checkpoint, because they may have been altered while the process
//! was down. Instead it starts a new segment that chains from the last complete
//! record and declares, in a `recovery` record right after its `segment_start`,
//! exactly what it found:
//!
//! ```text
//! {"seq":..,"time":..,"kind":"recovery","prev":"<hex>",
//!  "segments":[{"segment":"audit-000003.jsonl","lines":120,"first_seq":101,"last_seq":220,
//!               "sealed_through":200,"closed":false,"torn_bytes":37}],
//!  "last_checkpoint_seq":200,"unsealed_first":201,"unsealed_last":220,"torn_bytes":37}
//! ```
//!
//! * `segments` — the segments after the last cleanly closed one, oldest first:
//!   the segment holding the last complete record (unless it was closed) and any
//!   later ones with no complete line (a crash right after a rotation).
//!   `sealed_through` is the seq of its last valid checkpoint (which seals the
//!   segment up to and including itself), `closed` whether that checkpoint was a
//!   final one and the last line, `torn_bytes` the bytes after its last newline.
//! * `last_checkpoint_seq`, `unsealed_first`/`unsealed_last`, `torn_bytes` — the
//!   same facts summed up: the range of records no checkpoint will ever cover.
//!
//! The verifier recomputes all of it from the files and reports any difference;
//! when it agrees, the unsealed range is reported as unsealed, never as clean.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::chain::Digest;
use crate::checkpoint::{self, Expect, Fault, SegmentEnd, Valid};
use crate::keys::PublicKey;
use crate::record::{self, KIND_CHECKPOINT};
use crate::segment::{Item, LineReader, Listing};
use crate::writer::WriteError;

/// One segment as found on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentState {
    pub segment: String,
    /// Complete lines (each ended by a newline).
    pub lines: u64,
    /// Seq of the first line, if it parsed.
    pub first_seq: Option<u64>,
    /// Seq of the last complete line, if it parsed.
    pub last_seq: Option<u64>,
    /// Seq of the last checkpoint that holds where it stands.
    pub sealed_through: Option<u64>,
    /// Whether the last complete line is a valid final checkpoint.
    pub closed: bool,
    /// Bytes after the last newline.
    pub torn_bytes: u64,
}

impl SegmentState {
    /// Closed, and nothing after the final checkpoint.
    pub fn is_clean(&self) -> bool {
        self.closed && self.torn_bytes == 0
    }

    /// The records after the last valid checkpoint, if any.
    pub fn unsealed(&self) -> Option<(u64, u64)> {
        let last = self.last_seq?;
        let from = match self.sealed_through {
            Some(s) => s.checked_add(1)?,
            None => self.first_seq?,
        };
        (from <= last).then_some((from, last))
    }
}

/// The payload of a `recovery` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryBody {
    pub segments: Vec<SegmentState>,
    pub last_checkpoint_seq: Option<u64>,
    pub unsealed_first: Option<u64>,
    pub unsealed_last: Option<u64>,
    pub torn_bytes: u64,
}

impl RecoveryBody {
    /// Sums up the states of the segments after the last clean one.
    pub(crate) fn from_states(segments: Vec<SegmentState>) -> RecoveryBody {
        // Only the oldest of them can hold records: the later ones have no line.
        let holder = segments.iter().find(|s| s.lines > 0);
        let unsealed = holder.and_then(SegmentState::unsealed);
        RecoveryBody {
            last_checkpoint_seq: holder.and_then(|s| s.sealed_through),
            unsealed_first: unsealed.map(|(f, _)| f),
            unsealed_last: unsealed.map(|(_, l)| l),
            torn_bytes: segments.iter().map(|s| s.torn_bytes).sum(),
            segments,
        }
    }
}

/// A `recovery` record read back, envelope included.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the envelope fields are there to be allowed, not read
pub(crate) struct RecoveryRecord {
    pub seq: u64,
    pub time: String,
    pub kind: String,
    pub prev: String,
    pub segments: Vec<SegmentState>,
    pub last_checkpoint_seq: Option<u64>,
    pub unsealed_first: Option<u64>,
    pub unsealed_last: Option<u64>,
    pub torn_bytes: u64,
}

impl RecoveryRecord {
    pub fn body(self) -> RecoveryBody {
        RecoveryBody {
            segments: self.segments,
            last_checkpoint_seq: self.last_checkpoint_seq,
            unsealed_first: self.unsealed_first,
            unsealed_last: self.unsealed_last,
            torn_bytes: self.torn_bytes,
        }
    }
}

/// Follows one segment line by line and works out its [`SegmentState`]. The writer
/// (on recovery) and the verifier both use it, so what the one declares and the
/// other recomputes cannot drift apart.
pub(crate) struct SegmentTracker {
    name: String,
    index: u64,
    lines: u64,
    first_seq: Option<u64>,
    /// The previous line: its seq (if it parsed) and hash.
    prev: Option<(Option<u64>, Digest)>,
    sealed_through: Option<u64>,
    /// Line number and kind of the last valid final checkpoint.
    final_at: Option<(u64, SegmentEnd)>,
    torn_bytes: u64,
}

impl SegmentTracker {
    pub fn new(name: &str, index: u64) -> SegmentTracker {
        SegmentTracker {
            name: name.to_owned(),
            index,
            lines: 0,
            first_seq: None,
            prev: None,
            sealed_through: None,
            final_at: None,
            torn_bytes: 0,
        }
    }

    /// Takes one complete line. `seq` and `kind` come from its envelope when it
    /// parsed. For a checkpoint, returns how it checks out where it stands.
    pub fn line(
        &mut self,
        line: &[u8],
        digest: Digest,
        envelope: Option<(u64, &str)>,
        key: &PublicKey,
    ) -> Option<Result<Valid, Fault>> {
        self.lines += 1;
        let seq = envelope.map(|(s, _)| s);
        if self.lines == 1 {
            self.first_seq = seq;
        }
        let checked = match envelope {
            Some((_, KIND_CHECKPOINT)) => {
                let expect = Expect {
                    segment: &self.name,
                    index: self.index,
                    first_seq: self.first_seq,
                    prev: self.prev,
                };
                let result = checkpoint::check(line, &expect, key);
                if let Ok(valid) = &result {
                    self.sealed_through = Some(valid.seq);
                    if let Some(end) = valid.end {
                        self.final_at = Some((self.lines, end));
                    }
                }
                Some(result)
            }
            _ => None,
        };
        self.prev = Some((seq, digest));
        checked
    }

    /// Takes a line too long to read; it counts, but nothing can vouch for it.
    pub fn too_long(&mut self) {
        self.lines += 1;
        self.prev = Some((None, Digest::ZERO));
    }

    pub fn torn(&mut self, bytes: u64) {
        self.torn_bytes = bytes;
    }

    /// The line before the next one: seq and hash.
    pub fn prev(&self) -> Option<(Option<u64>, Digest)> {
        self.prev
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Whether a valid final checkpoint has been seen (records after it are wrong).
    pub fn final_seen(&self) -> bool {
        self.final_at.is_some()
    }

    /// How the segment ended, if its last line is a valid final checkpoint.
    pub fn end(&self) -> Option<SegmentEnd> {
        match self.final_at {
            Some((line, end)) if line == self.lines => Some(end),
            _ => None,
        }
    }

    pub fn state(&self) -> SegmentState {
        SegmentState {
            segment: self.name.clone(),
            lines: self.lines,
            first_seq: self.first_seq,
            last_seq: self.prev.and_then(|(s, _)| s),
            sealed_through: self.sealed_through,
            closed: self.end().is_some(),
            torn_bytes: self.torn_bytes,
        }
    }
}

/// What the writer needs to know about the end of an existing trail.
#[derive(Debug)]
pub(crate) struct Tail {
    /// Seq and hash of the last complete record, `None` if there is none.
    pub head: Option<(u64, Digest)>,
    /// The highest existing segment: `(index, name)`.
    pub last_segment: Option<(u64, String)>,
    /// Segments after the last clean one; non-empty means a recovery record.
    pub unclean: Vec<SegmentState>,
}

fn scan_segment(
    dir: &Path,
    index: u64,
    name: &str,
    key: &PublicKey,
) -> Result<SegmentTracker, WriteError> {
    let path = dir.join(name);
    let io_err = |source| WriteError::Io {
        op: "read",
        path: path.clone(),
        source,
    };
    let mut reader = LineReader::open(&path).map_err(io_err)?;
    let mut tracker = SegmentTracker::new(name, index);
    while let Some(item) = reader.next_item().map_err(io_err)? {
        match item {
            Item::Line(line) => {
                let digest = Digest::of_line(line);
                let env = record::parse_envelope(line).ok();
                tracker.line(line, digest, env.as_ref().map(|e| (e.seq, &*e.kind)), key);
            }
            Item::TooLong(_) => tracker.too_long(),
            Item::Torn(n) => tracker.torn(n),
        }
    }
    Ok(tracker)
}

/// Reads the end of the trail in `dir`: segments from the last one backwards,
/// down to the first that has a complete line.
pub(crate) fn scan_tail(
    dir: &Path,
    listing: &Listing,
    key: &PublicKey,
) -> Result<Tail, WriteError> {
    let mut unclean = Vec::new();
    let mut head = None;
    for (index, name) in listing.segments.iter().rev() {
        let tracker = scan_segment(dir, *index, name, key)?;
        let state = tracker.state();
        if state.lines == 0 {
            unclean.push(state);
            continue;
        }
        let (Some((Some(seq), digest)), Some(_)) = (tracker.prev(), state.last_seq) else {
            // Without the last record's seq the chain cannot be continued; starting
            // over would hide the break, so refuse and let an operator look.
            return Err(WriteError::Recovery {
                segment: name.clone(),
                reason: "its last complete line is not a readable record",
            });
        };
        head = Some((seq, digest));
        if !state.is_clean() {
            unclean.push(state);
        }
        break;
    }
    unclean.reverse();
    Ok(Tail {
        head,
        last_segment: listing.segments.last().cloned(),
        unclean,
    })
}
