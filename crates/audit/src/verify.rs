//! The offline verifier: a directory and a public key in, a [`Report`] out.
//!
//! It streams every segment once, in index order, and checks:
//!
//! * the directory: segments numbered 1, 2, 3… without gaps, nothing else named
//!   like a segment;
//! * every line: a well-formed record, its `seq` the next one, its `prev` the hash
//!   of the record before it (across segments);
//! * every segment: a `segment_start` first that names this file and the previous
//!   one; checkpoints validly signed and bound to this segment, range and hash;
//!   nothing after a final checkpoint; an unclosed segment followed by a `recovery`
//!   record that states exactly what the files show;
//! * the end: a clean shutdown's final checkpoint, or the unsealed records and the
//!   open segment are reported;
//! * a trail that starts after segment 1: accepted only if a `retention` record
//!   sealed by a valid checkpoint vouches for exactly the removed prefix
//!   ([`crate::retention`]); the sequence then continues from the prefix's end.
//!
//! Sequence numbers and links are tracked by seq, not only by position, so a
//! swap of two records reads as one reordering rather than a cascade of breaks.
//! Memory stays bounded: hashes are remembered for a window of recent records.

use std::io;
use std::path::{Path, PathBuf};

use crate::chain::Digest;
use crate::checkpoint::{Fault, SegmentEnd};
use crate::keys::PublicKey;
use crate::record::{self, KIND_RECOVERY, KIND_RETENTION, KIND_SEGMENT_START};
use crate::recovery::{RecoveryBody, RecoveryRecord, SegmentState, SegmentTracker};
use crate::report::{
    quote_from_file, Finding, Problem, RemovedPrefix, Report, SegmentSummary, SeqRange, Severity,
    Status,
};
use crate::retention::{Authorizations, RetentionBody, RetentionRecord};
use crate::segment::{segment_name, Item, LineReader, Listing, SegmentStartRecord};
use crate::sequence::SeqTrack;

/// Findings listed in a report; past this they are only counted (a thoroughly
/// damaged trail should not produce a report larger than itself).
const MAX_FINDINGS: usize = 10_000;

/// The directory could not be read. Findings about its contents are not errors
/// of this kind: they are in the [`Report`].
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Verifies the trail in `dir` against `public_key`.
///
/// A segment listed but gone when it is opened was removed by retention meanwhile
/// (oldest first, while the writer runs): the directory is then read again, at
/// most twice, so a verification of a live trail does not fail for that.
pub fn verify(dir: &Path, public_key: &PublicKey) -> Result<Report, VerifyError> {
    verify_with(dir, public_key, false)
}

/// Verifies an archive made by `maskgate audit export` ([`crate::export`]): like
/// [`verify`], except that a last segment closed by a rotation is expected (the
/// trail goes on where it is written) and reported in
/// [`Report::continues_after`] instead of as a missing next segment.
pub fn verify_archive(dir: &Path, public_key: &PublicKey) -> Result<Report, VerifyError> {
    verify_with(dir, public_key, true)
}

fn verify_with(dir: &Path, public_key: &PublicKey, archive: bool) -> Result<Report, VerifyError> {
    let mut attempt = 0;
    loop {
        match verify_once(dir, public_key, archive) {
            Err(VerifyError::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound && attempt < 2 =>
            {
                attempt += 1;
            }
            result => return result,
        }
    }
}

fn verify_once(dir: &Path, public_key: &PublicKey, archive: bool) -> Result<Report, VerifyError> {
    let listing = Listing::read(dir).map_err(|source| VerifyError::Io {
        op: "list",
        path: dir.to_owned(),
        source,
    })?;
    let mut v = Verifier::new(public_key);
    v.archive = archive;
    for name in &listing.unexpected {
        v.error(
            None,
            None,
            Problem::UnexpectedFile {
                name: quote_from_file(name),
            },
        );
    }
    if listing.segments.is_empty() {
        v.error(None, None, Problem::NoSegments);
    }
    let mut expected_index = 1;
    let mut prev_name: Option<&str> = None;
    for (index, name) in &listing.segments {
        if prev_name.is_none() && *index > 1 {
            // Removed by retention, or deleted: settled at the end, once every
            // retention record has been read.
            v.prefix = Some(Prefix {
                index: *index,
                name: name.clone(),
                start: None,
            });
        } else if *index != expected_index {
            v.error(
                Some(name),
                None,
                Problem::MissingSegments {
                    first_index: expected_index,
                    last_index: index - 1,
                },
            );
        }
        expected_index = index + 1;
        v.segment(dir, *index, name, prev_name)?;
        prev_name = Some(name);
    }
    Ok(v.finish())
}

/// What a segment's second line says about the end of the one before.
enum Declaration {
    None,
    Recovery(RecoveryBody),
    Unreadable,
}

struct Verifier<'k> {
    key: &'k PublicKey,
    fingerprint: String,
    findings: Vec<Finding>,
    omitted: u64,
    errors: u64,
    unsealed_findings: u64,
    seq: SeqTrack,
    /// Segments after the last clean one, waiting for a recovery declaration,
    /// each with whether its last line is a checkpoint that failed (already
    /// reported, so its missing end is not reported again as a cut).
    pending: Vec<(SegmentState, bool)>,
    /// How the last segment seen ended, if cleanly.
    last_end: Option<(String, SegmentEnd)>,
    segments: Vec<SegmentSummary>,
    records: u64,
    first_seq: Option<u64>,
    unsealed: Vec<SeqRange>,
    scratch: Vec<Problem>,
    /// The first segment, when it is not segment 1.
    prefix: Option<Prefix>,
    /// Retention records of the current segment, until its checkpoints are known.
    retention: Vec<(u64, RetentionBody)>,
    /// What the sealed retention records seen so far authorize.
    authorizations: Authorizations,
    /// An exported copy: the trail may go on after its last segment.
    archive: bool,
}

/// The first segment of a trail that does not start at segment 1.
struct Prefix {
    index: u64,
    name: String,
    /// Its first record's seq and link, when it is a `segment_start`.
    start: Option<(u64, Digest)>,
}

impl<'k> Verifier<'k> {
    fn new(key: &'k PublicKey) -> Verifier<'k> {
        Verifier {
            key,
            fingerprint: key.fingerprint(),
            findings: Vec::new(),
            omitted: 0,
            errors: 0,
            unsealed_findings: 0,
            seq: SeqTrack::default(),
            pending: Vec::new(),
            last_end: None,
            segments: Vec::new(),
            records: 0,
            first_seq: None,
            unsealed: Vec::new(),
            scratch: Vec::new(),
            prefix: None,
            retention: Vec::new(),
            authorizations: Authorizations::default(),
            archive: false,
        }
    }

    fn push(
        &mut self,
        severity: Severity,
        segment: Option<&str>,
        line: Option<u64>,
        problem: Problem,
    ) {
        match severity {
            Severity::Error => self.errors += 1,
            Severity::Unsealed => self.unsealed_findings += 1,
        }
        if let Problem::Unsealed { first, last } = problem {
            self.unsealed.push(SeqRange { first, last });
        }
        if self.findings.len() >= MAX_FINDINGS {
            self.omitted += 1;
            return;
        }
        self.findings.push(Finding {
            severity,
            segment: segment.map(str::to_owned),
            line,
            problem,
        });
    }

    fn error(&mut self, segment: Option<&str>, line: Option<u64>, problem: Problem) {
        self.push(Severity::Error, segment, line, problem);
    }

    fn segment(
        &mut self,
        dir: &Path,
        index: u64,
        name: &str,
        prev_name: Option<&str>,
    ) -> Result<(), VerifyError> {
        let path = dir.join(name);
        let io_err = |source| VerifyError::Io {
            op: "read",
            path: path.clone(),
            source,
        };
        let mut reader = LineReader::open(&path).map_err(io_err)?;
        let mut t = SegmentTracker::new(name, index);
        let mut resolved = false;
        let mut after_final_reported = false;
        let mut last_line_bad_checkpoint = false;
        while let Some(item) = reader.next_item().map_err(io_err)? {
            let line_no = t.lines() + 1;
            match item {
                Item::Line(bytes) => {
                    let ctx = LineCtx {
                        name,
                        index,
                        prev_name,
                        line_no,
                    };
                    last_line_bad_checkpoint = self.line(
                        &mut t,
                        bytes,
                        &ctx,
                        &mut resolved,
                        &mut after_final_reported,
                    );
                }
                Item::TooLong(bytes) => {
                    self.error(Some(name), Some(line_no), Problem::LineTooLong { bytes });
                    if line_no == 1 {
                        self.error(Some(name), Some(1), Problem::MissingSegmentStart);
                    }
                    t.too_long();
                    last_line_bad_checkpoint = false;
                    self.seq.damaged(Digest::ZERO);
                    if line_no == 2 && !resolved {
                        self.resolve(Declaration::None, name);
                        resolved = true;
                    }
                }
                Item::Torn(bytes) => t.torn(bytes),
            }
        }
        if !resolved && t.lines() > 0 {
            self.resolve(Declaration::None, name);
        }
        let state = t.state();
        for (seq, body) in std::mem::take(&mut self.retention) {
            // Only a record a valid checkpoint vouches for authorizes anything:
            // records after the last checkpoint can be appended by anyone.
            if state.sealed_through.is_some_and(|s| seq < s) {
                self.authorizations.add(seq, body);
            }
        }
        let end = t.end();
        if end.is_some() && state.torn_bytes > 0 {
            self.error(
                Some(name),
                None,
                Problem::BytesAfterFinal {
                    bytes: state.torn_bytes,
                },
            );
        }
        self.segments.push(SegmentSummary {
            name: name.to_owned(),
            index,
            lines: state.lines,
            first_seq: state.first_seq,
            last_seq: state.last_seq,
            sealed_through: state.sealed_through,
            end,
            torn_bytes: state.torn_bytes,
        });
        if state.is_clean() {
            self.pending.clear();
            self.last_end = end.map(|e| (name.to_owned(), e));
        } else {
            self.last_end = None;
            if state.lines > 0 {
                self.pending = vec![(state, last_line_bad_checkpoint)];
            } else {
                self.pending.push((state, false));
            }
        }
        Ok(())
    }

    fn line(
        &mut self,
        t: &mut SegmentTracker,
        bytes: &[u8],
        ctx: &LineCtx<'_>,
        resolved: &mut bool,
        after_final_reported: &mut bool,
    ) -> bool {
        let digest = Digest::of_line(bytes);
        let (name, line_no) = (ctx.name, ctx.line_no);
        let env = match record::parse_envelope(bytes) {
            Ok(env) => env,
            Err(reason) => {
                self.error(Some(name), Some(line_no), Problem::Malformed { reason });
                if line_no == 1 {
                    self.error(Some(name), Some(1), Problem::MissingSegmentStart);
                }
                t.line(bytes, digest, None, self.key);
                self.seq.damaged(digest);
                if line_no == 2 && !*resolved {
                    self.resolve(Declaration::None, name);
                    *resolved = true;
                }
                return false;
            }
        };
        if t.final_seen() && !*after_final_reported {
            self.error(
                Some(name),
                Some(line_no),
                Problem::RecordsAfterFinal { seq: Some(env.seq) },
            );
            *after_final_reported = true;
        }
        self.records += 1;
        if self.first_seq.is_none() {
            self.first_seq = Some(env.seq);
        }

        if line_no == 1 && env.seq > 1 && env.kind == KIND_SEGMENT_START {
            if let Some(prefix) = self.prefix.as_mut().filter(|p| p.index == ctx.index) {
                if self.records == 1 {
                    prefix.start = Some((env.seq, env.prev));
                    self.seq.start_after(env.seq - 1, env.prev);
                }
            }
        }
        let mut problems = std::mem::take(&mut self.scratch);
        self.seq.observe(
            env.seq,
            env.prev,
            digest,
            Some((name, line_no)),
            &mut problems,
        );
        for p in problems.drain(..) {
            self.error(Some(name), Some(line_no), p);
        }
        self.scratch = problems;

        let kind: &str = &env.kind;
        if line_no == 1 {
            if kind == KIND_SEGMENT_START {
                self.check_segment_start(bytes, ctx, &env.prev);
            } else {
                self.error(Some(name), Some(1), Problem::MissingSegmentStart);
            }
        } else if kind == KIND_SEGMENT_START {
            self.error(
                Some(name),
                Some(line_no),
                Problem::MisplacedRecord {
                    kind: KIND_SEGMENT_START,
                },
            );
        }
        if line_no == 2 && !*resolved {
            let declaration = if kind == KIND_RECOVERY {
                match serde_json::from_slice::<RecoveryRecord>(bytes) {
                    Ok(rec) => Declaration::Recovery(rec.body()),
                    Err(_) => Declaration::Unreadable,
                }
            } else {
                Declaration::None
            };
            self.resolve(declaration, name);
            *resolved = true;
        } else if kind == KIND_RECOVERY {
            self.error(
                Some(name),
                Some(line_no),
                Problem::MisplacedRecord {
                    kind: KIND_RECOVERY,
                },
            );
        }

        if kind == KIND_RETENTION {
            match serde_json::from_slice::<RetentionRecord>(bytes) {
                Ok(r) => self.retention.push((
                    env.seq,
                    RetentionBody {
                        removed: r.removed,
                        removed_before: r.removed_before,
                    },
                )),
                Err(_) => self.error(
                    Some(name),
                    Some(line_no),
                    Problem::Malformed {
                        reason: "retention record fields missing, unknown or of the wrong type",
                    },
                ),
            }
        }
        if let Some(Err(fault)) = t.line(bytes, digest, Some((env.seq, kind)), self.key) {
            let problem = self.fault_problem(fault);
            self.error(Some(name), Some(line_no), problem);
            return true;
        }
        false
    }

    fn fault_problem(&self, fault: Fault) -> Problem {
        match fault {
            Fault::Malformed(reason) => Problem::CheckpointMalformed { reason },
            Fault::MissingSignature => Problem::MissingSignature,
            Fault::BadSignature { signer } => Problem::BadSignature {
                claimed_signer: signer,
                expected_signer: self.fingerprint.clone(),
            },
            Fault::WrongSegment {
                claims_segment,
                claims_index,
            } => Problem::CheckpointWrongSegment {
                claims_segment: quote_from_file(&claims_segment),
                claims_index,
            },
            Fault::WrongRange {
                claims_first,
                claims_last,
                expected_first,
                expected_last,
            } => Problem::CheckpointWrongRange {
                claims_first,
                claims_last,
                expected_first,
                expected_last,
            },
            Fault::WrongHash => Problem::CheckpointWrongHash,
        }
    }

    fn check_segment_start(&mut self, bytes: &[u8], ctx: &LineCtx<'_>, prev: &Digest) {
        let at = (Some(ctx.name), Some(1));
        let Ok(start) = serde_json::from_slice::<SegmentStartRecord>(bytes) else {
            self.error(
                at.0,
                at.1,
                Problem::Malformed {
                    reason: "segment_start fields missing, unknown or of the wrong type",
                },
            );
            return;
        };
        if start.format != crate::FORMAT_VERSION {
            self.error(
                at.0,
                at.1,
                Problem::UnsupportedFormat {
                    format: start.format,
                },
            );
        }
        if start.segment != ctx.name || start.index != ctx.index {
            self.error(
                at.0,
                at.1,
                Problem::SegmentRenamed {
                    claims_segment: quote_from_file(&start.segment),
                    claims_index: start.index,
                },
            );
        }
        let claims = start.prev_segment.as_deref();
        // When the named predecessor is simply absent, MissingSegments already
        // said so; say it again only if the names disagree otherwise.
        let predecessor_missing = ctx.index > 1
            && claims == Some(segment_name(ctx.index - 1).as_str())
            && ctx.prev_name != claims;
        if claims != ctx.prev_name && !predecessor_missing {
            self.error(
                at.0,
                at.1,
                Problem::WrongPreviousSegment {
                    claims: claims.map(quote_from_file),
                    actual: ctx.prev_name.map(str::to_owned),
                },
            );
        }
        if Digest::parse_hex(&start.prev_hash) != Some(*prev) {
            self.error(
                at.0,
                at.1,
                Problem::Malformed {
                    reason: "segment_start prev_hash differs from its prev",
                },
            );
        }
    }

    /// Settles the segments waiting since the last clean one, given what the
    /// current segment's second line declares about them.
    fn resolve(&mut self, declaration: Declaration, current: &str) {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            if !matches!(declaration, Declaration::None) {
                self.error(Some(current), Some(2), Problem::UnexpectedRecovery);
            }
            return;
        }
        let declared = match declaration {
            Declaration::None => false,
            Declaration::Unreadable => {
                self.error(
                    Some(current),
                    Some(2),
                    Problem::RecoveryMismatch { field: "record" },
                );
                true
            }
            Declaration::Recovery(body) => {
                let expected =
                    RecoveryBody::from_states(pending.iter().map(|(s, _)| s.clone()).collect());
                let field = if body.segments != expected.segments {
                    Some("segments")
                } else if body.last_checkpoint_seq != expected.last_checkpoint_seq {
                    Some("last_checkpoint_seq")
                } else if (body.unsealed_first, body.unsealed_last)
                    != (expected.unsealed_first, expected.unsealed_last)
                {
                    Some("unsealed range")
                } else if body.torn_bytes != expected.torn_bytes {
                    Some("torn_bytes")
                } else {
                    None
                };
                if let Some(field) = field {
                    self.error(Some(current), Some(2), Problem::RecoveryMismatch { field });
                }
                true
            }
        };
        let severity = if declared {
            Severity::Unsealed
        } else {
            Severity::Error
        };
        for (state, bad_end) in &pending {
            let at = Some(state.segment.as_str());
            if state.lines == 0 {
                self.push(severity, at, None, Problem::EmptySegment { declared });
            } else if state.closed || *bad_end {
                // Closed but with bytes after the final checkpoint, or ending
                // with a checkpoint that failed: both are reported already.
            } else if declared {
                self.push(Severity::Unsealed, at, None, Problem::Crashed);
            } else {
                self.error(at, None, Problem::CutTail);
            }
            if state.torn_bytes > 0 {
                self.push(
                    severity,
                    at,
                    None,
                    Problem::TornTail {
                        bytes: state.torn_bytes,
                        declared,
                    },
                );
            }
            if let Some((first, last)) = state.unsealed() {
                self.push(
                    Severity::Unsealed,
                    at,
                    None,
                    Problem::Unsealed { first, last },
                );
            }
        }
    }

    fn finish(mut self) -> Report {
        for (state, _) in std::mem::take(&mut self.pending) {
            let at = Some(state.segment.as_str());
            if state.lines == 0 {
                self.push(
                    Severity::Unsealed,
                    at,
                    None,
                    Problem::EmptySegment { declared: false },
                );
            } else {
                self.push(Severity::Unsealed, at, None, Problem::OpenSegment);
            }
            if state.torn_bytes > 0 {
                self.push(
                    Severity::Unsealed,
                    at,
                    None,
                    Problem::TornTail {
                        bytes: state.torn_bytes,
                        declared: false,
                    },
                );
            }
            if let Some((first, last)) = state.unsealed() {
                self.push(
                    Severity::Unsealed,
                    at,
                    None,
                    Problem::Unsealed { first, last },
                );
            }
        }
        let mut continues_after = None;
        if let Some((name, SegmentEnd::Rotate)) = self.last_end.take() {
            if self.archive {
                continues_after = Some(name);
            } else {
                self.error(Some(&name), None, Problem::MissingNextSegment);
            }
        }
        let removed = self.settle_prefix();
        for (first, last, at) in self.seq.deleted() {
            let (segment, line) = at.map_or((None, None), |(s, l)| (Some(s), Some(l)));
            self.error(segment.as_deref(), line, Problem::Deleted { first, last });
        }
        let status = if self.errors > 0 {
            Status::Tampered
        } else if self.unsealed_findings > 0 {
            Status::UnsealedTail
        } else {
            Status::Clean
        };
        Report {
            status,
            public_key: self.fingerprint,
            segments: self.segments,
            records: self.records,
            first_seq: self.first_seq,
            last_seq: self.seq.max_seen(),
            unsealed: self.unsealed,
            findings: self.findings,
            omitted_findings: self.omitted,
            removed_by_retention: removed,
            continues_after,
        }
    }

    /// A trail starting after segment 1: removed by retention if a sealed record
    /// vouches for exactly the end the first segment chains from, else missing
    /// segments and deleted records.
    fn settle_prefix(&mut self) -> Option<RemovedPrefix> {
        let prefix = self.prefix.take()?;
        let last_index = prefix.index - 1;
        if let Some((first_seq, prev)) = prefix.start {
            if let Some(record) = self
                .authorizations
                .through(last_index, first_seq - 1, &prev)
            {
                return Some(RemovedPrefix {
                    last_index,
                    last_seq: first_seq - 1,
                    authorized_by: record,
                });
            }
        }
        self.error(
            Some(&prefix.name),
            None,
            Problem::MissingSegments {
                first_index: 1,
                last_index,
            },
        );
        if let Some((first_seq, _)) = prefix.start {
            // The sequence was started after the gap: report it here instead.
            self.error(
                Some(&prefix.name),
                Some(1),
                Problem::Deleted {
                    first: 1,
                    last: first_seq - 1,
                },
            );
        }
        None
    }
}

struct LineCtx<'a> {
    name: &'a str,
    index: u64,
    prev_name: Option<&'a str>,
    line_no: u64,
}
