//! Statement analysis for maskgate.
//!
//! Today: [`fingerprint`], the literal-free form of a statement that logs and
//! audit records carry instead of its text. Rewriting lands here next.

mod fingerprint;

pub use fingerprint::fingerprint;
