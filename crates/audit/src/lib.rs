//! maskgate's audit trail: storage, sealing and offline verification.
//!
//! The security team has to be able to trust this trail without trusting the
//! machine that wrote it. Three mechanisms give that, each cheap on the hot path:
//!
//! * **A hash chain.** Records are JSON Lines in append-only segment files. Every
//!   record names, in `prev`, the SHA-256 of the exact bytes of the previous
//!   record's line; the chain runs across segments. Changing, removing, adding or
//!   moving a record breaks a link ([`chain`], [`record`]).
//! * **Signed checkpoints.** Every few seconds (the caller's clock), at every
//!   segment end and at clean shutdown the [`Writer`] appends a checkpoint record
//!   signed with Ed25519. The signature covers every byte of the checkpoint line
//!   before the signature itself: the segment's name and index, the first and last
//!   sequence numbers covered and the hash of the last covered record. Whoever
//!   holds only the public key can verify; nobody without the signing key can
//!   re-sign a rewritten chain ([`checkpoint`]).
//! * **Sealed values.** Literal values of statements never appear in clear: the
//!   caller seals them with AES-256-GCM under a rotating key file, bound to the
//!   record they belong to ([`Sealer`]).
//!
//! [`verify`] reads a directory with nothing but the public key and says, precisely,
//! what is wrong: a [`Report`] with a [`Status`] of clean, tampered or unsealed tail.
//!
//! The crate is storage only: queueing, group-commit timing and the strict mode's
//! waiting belong to the caller, which owns one [`Writer`] from one thread.
//!
//! File formats are described where they are produced: [`record`] (a line),
//! [`segment`] (file names), [`checkpoint`], [`recovery`], [`retention`] (removing
//! old segments, export receipts), [`keys`] and [`seal`] (key files).

#[cfg(not(unix))]
compile_error!("maskgate-audit needs a unix platform: key files are created 0600 and the audit directory is locked with flock");

pub mod chain;
pub mod checkpoint;
pub mod export;
pub mod keys;
pub mod record;
pub mod recovery;
mod report;
pub mod retention;
pub mod seal;
pub mod segment;
mod sequence;
mod verify;
mod writer;

pub use chain::Digest;
pub use checkpoint::SegmentEnd;
pub use export::{plan_export, ExportError, ExportPlan, Receipt};
pub use keys::{KeyError, PublicKey, SigningKey};
pub use record::RecordError;
pub use recovery::{RecoveryBody, SegmentState};
pub use report::{
    Finding, Problem, RemovedPrefix, Report, SegmentSummary, SeqRange, Severity, Status,
};
pub use retention::{plan_retention, RetentionBody, RetentionError, RetentionPlan};
pub use seal::{SealError, Sealed, Sealer};
pub use verify::{verify, verify_archive, VerifyError};
pub use writer::{Removal, WriteError, Writer, WriterConfig};

/// Version of the on-disk format, written into every `segment_start` record so a
/// reader can refuse a layout it does not know instead of misreading it.
pub const FORMAT_VERSION: u64 = 1;

/// Longest line the writer produces and the verifier reads. A bound keeps a
/// damaged or hostile file (gigabytes without a newline) from exhausting memory.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
