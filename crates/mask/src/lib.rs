//! The catalog of mask kinds: what each kind is called in a policy, which
//! parameters it takes and which values they may have, and which PostgreSQL
//! column types it can mask.
//!
//! Validation is strict because mask parameters end up inside SQL sent to the
//! register: a spec that passes [`MaskSpec::validate`] carries nothing that
//! could end a string literal or hide from a reviewer.

mod error;
mod literal;
mod spec;
mod types;

pub use error::MaskError;
pub use literal::NumericLiteral;
pub use spec::{
    MaskKind, MaskSpec, AGE_BAND_WIDTH_RANGE, DEFAULT_AGE_BAND_WIDTH, KIND_NAMES,
    ROUND_DIGITS_RANGE,
};
pub use types::{parse_pg_type, type_family, PgType, TypeFamily};
