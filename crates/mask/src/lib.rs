//! The catalog of mask kinds: what each kind is called in a policy, which
//! parameters it takes and which values they may have, and which PostgreSQL
//! column types it can mask.
//!
//! Validation is strict because mask parameters end up inside SQL sent to the
//! register: a spec that passes [`MaskSpec::validate`] carries nothing that
//! could end a string literal or hide from a reviewer.
//!
//! [`MaskSpec::sql_expr`] turns a spec into a PostgreSQL expression, so the
//! database masks values before any predicate, join or function sees them;
//! [`PseudonymKeys`] holds the keys of the `pseudonym` kinds and hands them to
//! PostgreSQL as session settings rather than statement text.

mod error;
mod expr;
mod keys;
mod literal;
mod quote;
mod spec;
mod types;

pub use error::MaskError;
pub use expr::FIXED_MASK_RUN;
pub use keys::{
    PseudonymKeys, MAX_PSEUDONYM_DIGITS, MIN_SECRET_BYTES, SETTING_PREFIX, TOKEN_BYTES,
};
pub use literal::NumericLiteral;
pub use quote::{
    check_column_ref, check_type_name, quote_ident, quote_literal, QuoteError, MAX_IDENTIFIER_BYTES,
};
pub use spec::{
    MaskKind, MaskSpec, AGE_BAND_WIDTH_RANGE, DEFAULT_AGE_BAND_WIDTH, KIND_NAMES,
    ROUND_DIGITS_RANGE,
};
pub use types::{parse_pg_type, type_family, PgType, TypeFamily};
