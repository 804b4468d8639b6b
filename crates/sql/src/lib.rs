//! Statement analysis for maskgate.
//!
//! - [`fingerprint`]: the literal-free form of a statement that logs and audit records
//!   carry instead of its text.
//! - [`Enforcer`]: parses a statement for a restricted account, denies what the policy
//!   does not allow (fail closed), and rewrites reads, writes, prepared statements and
//!   cursors so that PostgreSQL itself applies masks, row filters and the row cap. The
//!   proxy forwards [`EnforcedStatement::sql`], our serialization of the rewritten syntax
//!   tree, never the client's text.
//!
//! What the rewrite does and does not handle is listed in [`enforce`]'s module docs.

mod budget;
mod catalog;
mod classify;
mod copy_in;
mod copy_out;
mod cursor_position;
mod denial;
pub mod enforce;
mod facts;
mod fingerprint;
mod functions;
mod housekeeping;
mod lexical;
mod mask;
mod names;
mod normalize;
mod precedence;
mod print;
mod rewrite;
mod search_path;
mod verify;

pub use budget::Limits;
pub use classify::{is_utf8, SETTABLE};
pub use copy_in::CopyIn;
pub use copy_out::CopyOut;
pub use cursor_position::{CursorPosition, Motion};
pub use denial::{sqlstate, Denial};
pub use enforce::{
    CursorUse, Enforced, EnforcedStatement, Enforcer, StatementClass, DEFAULT_GUARD_TOKEN,
    RESERVED_NAME_PREFIX,
};
pub use facts::{KeyPin, PinnedValue, SqlPrepared, TablesTouched};
pub use fingerprint::fingerprint;
pub use mask::{KeyedMasks, MaskRenderer};
pub use normalize::{normalize, Normalized};
pub use search_path::{parse_setting as parse_search_path, PathChange, SearchPath};
pub use verify::{limit_verified_shapes, printer_mismatches, verified_shape_bytes};

#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;
