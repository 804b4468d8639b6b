//! What the verifier found, for machines (JSON via serde) and for people (`Display`).

use std::fmt;

use serde::Serialize;

use crate::checkpoint::SegmentEnd;

/// The verdict over a whole directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every record is chained and sealed by a valid checkpoint, and the trail
    /// ends with a clean shutdown's final checkpoint.
    Clean,
    /// Nothing contradicts the signatures, but some records are not vouched for:
    /// records after the last checkpoint, records left by a crash, or a last
    /// segment still open. A tail cut off while the writer was down looks exactly
    /// like this, which is why it is never reported as clean.
    UnsealedTail,
    /// The trail is not what the writer wrote: a broken link, a gap, a bad
    /// signature, a missing or renamed segment, a cut tail… (see the findings).
    Tampered,
}

/// Whether a finding proves a change or only marks records nothing vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Unsealed,
}

/// One thing the verifier found, with where it found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The segment file, when the finding is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// The line in that file, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(flatten)]
    pub problem: Problem,
}

/// What is wrong. Strings taken from the files (claimed names, fingerprints) are
/// cut to a short length: a report must be safe to print and to paste.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The directory holds no segment at all.
    NoSegments,
    /// Segment indexes are missing from the directory.
    MissingSegments {
        first_index: u64,
        last_index: u64,
    },
    /// A file named like a segment that is not one (a renamed segment?).
    UnexpectedFile {
        name: String,
    },
    /// The segment's start record says it was written as another file.
    SegmentRenamed {
        claims_segment: String,
        claims_index: u64,
    },
    /// The segment's start record names another previous segment than the one
    /// before it in the directory.
    WrongPreviousSegment {
        claims: Option<String>,
        actual: Option<String>,
    },
    /// The first line of a segment is not its `segment_start` record.
    MissingSegmentStart,
    UnsupportedFormat {
        format: u64,
    },
    /// A line that is not a well-formed record.
    Malformed {
        reason: &'static str,
    },
    LineTooLong {
        bytes: u64,
    },
    /// Record `seq`'s `prev` is not the hash of record `seq - 1`: one of the two
    /// was modified.
    BrokenLink {
        seq: u64,
    },
    /// Records that should be there and are not.
    Deleted {
        first: u64,
        last: u64,
    },
    /// A second record claiming an existing seq: one of them was inserted.
    Duplicate {
        seq: u64,
    },
    /// A record found after a later one.
    OutOfOrder {
        seq: u64,
        after: Option<u64>,
    },
    /// A writer-only record where it cannot be.
    MisplacedRecord {
        kind: &'static str,
    },
    CheckpointMalformed {
        reason: &'static str,
    },
    MissingSignature,
    /// Not signed by the given key (`claimed_signer` is what the line says).
    BadSignature {
        claimed_signer: Option<String>,
        expected_signer: String,
    },
    /// A validly signed checkpoint from another segment.
    CheckpointWrongSegment {
        claims_segment: String,
        claims_index: u64,
    },
    /// A validly signed checkpoint claiming a range that does not end where it
    /// stands: an older checkpoint put in place of a newer, or records removed
    /// before it.
    CheckpointWrongRange {
        claims_first: u64,
        claims_last: u64,
        expected_first: Option<u64>,
        expected_last: Option<u64>,
    },
    /// A validly signed checkpoint whose `last_hash` is not the hash of the record
    /// before it: that record was rewritten.
    CheckpointWrongHash,
    /// Records after a segment's final checkpoint.
    RecordsAfterFinal {
        seq: Option<u64>,
    },
    /// Bytes after a segment's final checkpoint.
    BytesAfterFinal {
        bytes: u64,
    },
    /// The segment ends without a final checkpoint and the next segment declares
    /// no crash: its tail was cut.
    CutTail,
    /// The last segment ends with a rotation: the segment it announces is missing.
    MissingNextSegment,
    /// A `recovery` record where no unclean end precedes it.
    UnexpectedRecovery,
    /// The `recovery` record does not state what the files show.
    RecoveryMismatch {
        field: &'static str,
    },
    /// Bytes after the last newline: a torn write (declared by a recovery record,
    /// or at the very end of the trail) or a truncation.
    TornTail {
        bytes: u64,
        declared: bool,
    },
    /// A segment without a complete line.
    EmptySegment {
        declared: bool,
    },
    /// The writer stopped without closing this segment; the next writer declared it.
    Crashed,
    /// The last segment has no final checkpoint: the writer is running, crashed
    /// and has not restarted, or the tail was cut.
    OpenSegment,
    /// Records no valid checkpoint covers.
    Unsealed {
        first: u64,
        last: u64,
    },
}

/// One segment as verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentSummary {
    pub name: String,
    pub index: u64,
    pub lines: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Seq of the last valid checkpoint in it.
    pub sealed_through: Option<u64>,
    /// How it ended, if with a valid final checkpoint.
    pub end: Option<SegmentEnd>,
    pub torn_bytes: u64,
}

/// An inclusive range of sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SeqRange {
    pub first: u64,
    pub last: u64,
}

/// The oldest segments, removed by retention as a sealed `retention` record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RemovedPrefix {
    /// Segments 1 to this index are gone.
    pub last_index: u64,
    /// Records 1 to this seq are gone.
    pub last_seq: u64,
    /// Seq of the `retention` record that vouches for it.
    pub authorized_by: u64,
}

/// The verifier's full answer.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub(crate) status: Status,
    /// Fingerprint of the public key the trail was checked against.
    pub(crate) public_key: String,
    pub(crate) segments: Vec<SegmentSummary>,
    /// Complete lines that parsed as records.
    pub(crate) records: u64,
    pub(crate) first_seq: Option<u64>,
    pub(crate) last_seq: Option<u64>,
    pub(crate) unsealed: Vec<SeqRange>,
    pub(crate) findings: Vec<Finding>,
    /// Findings past the report's limit, counted but not listed.
    pub(crate) omitted_findings: u64,
    /// The oldest segments, removed by retention: not a finding, the status is
    /// unchanged.
    pub(crate) removed_by_retention: Option<RemovedPrefix>,
    /// Archives only: the last segment, closed by a rotation; the trail goes on
    /// in segments not (yet) exported.
    pub(crate) continues_after: Option<String>,
}

impl Report {
    pub fn status(&self) -> Status {
        self.status
    }
    pub fn public_key_fingerprint(&self) -> &str {
        &self.public_key
    }
    pub fn segments(&self) -> &[SegmentSummary] {
        &self.segments
    }
    pub fn records(&self) -> u64 {
        self.records
    }
    pub fn first_seq(&self) -> Option<u64> {
        self.first_seq
    }
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }
    /// Every range of records no checkpoint vouches for.
    pub fn unsealed(&self) -> &[SeqRange] {
        &self.unsealed
    }
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }
    /// The findings that prove a change.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }
    pub fn omitted_findings(&self) -> u64 {
        self.omitted_findings
    }
    /// The oldest segments, removed by retention (informational).
    pub fn removed_by_retention(&self) -> Option<RemovedPrefix> {
        self.removed_by_retention
    }
    /// Archives only: the last segment, closed by a rotation ([`crate::verify_archive`]).
    pub fn continues_after(&self) -> Option<&str> {
        self.continues_after.as_deref()
    }
}

/// Cuts a string taken from a file to a printable, bounded form.
pub(crate) fn quote_from_file(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(80).collect()
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Clean => "CLEAN",
            Status::UnsealedTail => "UNSEALED TAIL",
            Status::Tampered => "TAMPERED",
        })
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Problem::*;
        match self {
            NoSegments => write!(f, "no audit segment in the directory (wrong directory, or every segment removed)"),
            MissingSegments { first_index, last_index } if first_index == last_index => {
                write!(f, "segment {first_index} is missing")
            }
            MissingSegments { first_index, last_index } => {
                write!(f, "segments {first_index} to {last_index} are missing")
            }
            UnexpectedFile { name } => write!(f, "unexpected file {name:?} named like a segment (a renamed segment?)"),
            SegmentRenamed { claims_segment, claims_index } => write!(
                f,
                "segment was written as {claims_segment:?} (index {claims_index}): renamed or out of order"
            ),
            WrongPreviousSegment { claims, actual } => write!(
                f,
                "segment start names {} as the previous segment, the directory has {}",
                claims.as_deref().unwrap_or("none"),
                actual.as_deref().unwrap_or("none")
            ),
            MissingSegmentStart => write!(f, "first line is not a segment_start record"),
            UnsupportedFormat { format } => write!(f, "unknown format version {format}"),
            Malformed { reason } => write!(f, "malformed record: {reason}"),
            LineTooLong { bytes } => write!(f, "line of {bytes} bytes, longer than any record"),
            BrokenLink { seq } => write!(
                f,
                "hash link broken at seq {seq}: record {} or record {seq} was modified",
                seq.saturating_sub(1)
            ),
            Deleted { first, last } if first == last => write!(f, "record {first} is missing (deleted)"),
            Deleted { first, last } => write!(f, "records {first} to {last} are missing (deleted)"),
            Duplicate { seq } => write!(f, "a second record claims seq {seq}: one of them was inserted"),
            OutOfOrder { seq, after: Some(after) } => write!(f, "record {seq} appears after record {after} (reordered)"),
            OutOfOrder { seq, after: None } => write!(f, "record {seq} appears out of order (reordered)"),
            MisplacedRecord { kind } => write!(f, "{kind} record where none can be"),
            CheckpointMalformed { reason } => write!(f, "malformed checkpoint: {reason}"),
            MissingSignature => write!(f, "checkpoint without a signature"),
            BadSignature { claimed_signer, expected_signer } => match claimed_signer {
                Some(c) if c != expected_signer => write!(
                    f,
                    "checkpoint signature invalid: it names key {c}, the trail is verified with key {expected_signer} (forged or re-signed)"
                ),
                _ => write!(f, "checkpoint signature invalid (the checkpoint or the bytes it signs were altered)"),
            },
            CheckpointWrongSegment { claims_segment, claims_index } => write!(
                f,
                "validly signed checkpoint belongs to {claims_segment:?} (index {claims_index}): moved from another segment"
            ),
            CheckpointWrongRange { claims_first, claims_last, expected_first, expected_last } => write!(
                f,
                "validly signed checkpoint covers {claims_first}..={claims_last} but stands after {}..={}: an older checkpoint, or records removed before it",
                opt(expected_first),
                opt(expected_last)
            ),
            CheckpointWrongHash => write!(f, "validly signed checkpoint does not match the record before it: that record was rewritten"),
            RecordsAfterFinal { seq } => write!(f, "record {} after the segment's final checkpoint", opt(seq)),
            BytesAfterFinal { bytes } => write!(f, "{bytes} bytes after the segment's final checkpoint"),
            CutTail => write!(f, "segment ends without a final checkpoint and the next segment declares no crash: tail cut"),
            MissingNextSegment => write!(f, "last segment was closed by a rotation: the next segment is missing (tail cut)"),
            UnexpectedRecovery => write!(f, "recovery record, but the previous segment ended cleanly"),
            RecoveryMismatch { field } => write!(f, "recovery record's {field} does not match the files"),
            TornTail { bytes, declared: true } => write!(f, "{bytes} bytes of a torn last line, declared by the next writer"),
            TornTail { bytes, declared: false } => write!(f, "{bytes} bytes after the last complete line (torn write or truncation)"),
            EmptySegment { declared: true } => write!(f, "segment has no complete line, declared by the next writer"),
            EmptySegment { declared: false } => write!(f, "segment has no complete line"),
            Crashed => write!(f, "writer stopped without closing this segment (declared by the next writer)"),
            OpenSegment => write!(f, "last segment has no final checkpoint: writer running, crashed, or tail cut"),
            Unsealed { first, last } => write!(f, "records {first} to {last} are not covered by any valid checkpoint"),
        }
    }
}

fn opt(v: &Option<u64>) -> String {
    v.map_or_else(|| "?".to_owned(), |v| v.to_string())
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error   ",
            Severity::Unsealed => "unsealed",
        };
        write!(f, "{severity} ")?;
        match (&self.segment, self.line) {
            (Some(s), Some(l)) => write!(f, "{s} line {l}: ")?,
            (Some(s), None) => write!(f, "{s}: ")?,
            _ => {}
        }
        write!(f, "{}", self.problem)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "audit trail: {}", self.status)?;
        write!(
            f,
            "  {} segment(s), {} record(s)",
            self.segments.len(),
            self.records
        )?;
        if let (Some(a), Some(b)) = (self.first_seq, self.last_seq) {
            write!(f, " (seq {a} to {b})")?;
        }
        writeln!(f, ", verified with public key {}", self.public_key)?;
        if let Some(r) = &self.removed_by_retention {
            writeln!(
                f,
                "  removed by retention: segment(s) 1 to {}, records 1 to {} (as record {} states)",
                r.last_index, r.last_seq, r.authorized_by
            )?;
        }
        if let Some(name) = &self.continues_after {
            writeln!(
                f,
                "  archive: ends with {name}, closed by a rotation (the trail goes on where it is written)"
            )?;
        }
        for r in &self.unsealed {
            writeln!(f, "  unsealed: records {} to {}", r.first, r.last)?;
        }
        if !self.findings.is_empty() {
            writeln!(f, "  findings:")?;
            for finding in &self.findings {
                writeln!(f, "    {finding}")?;
            }
        }
        if self.omitted_findings > 0 {
            writeln!(f, "    … and {} more", self.omitted_findings)?;
        }
        Ok(())
    }
}
