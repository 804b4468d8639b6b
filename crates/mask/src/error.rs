use thiserror::Error;

/// Why a mask specification was refused.
///
/// Every message names what is wrong and what would be accepted, because the
/// policy checker shows it to the person editing the policy as is. Values
/// echoed back are escaped with `{:?}` so a hostile parameter cannot forge
/// extra diagnostic lines.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MaskError {
    #[error("missing `mask` key; expected one of: {allowed}")]
    MissingKind { allowed: &'static str },

    #[error("`mask` must be a string naming the mask kind; expected one of: {allowed}")]
    KindNotString { allowed: &'static str },

    #[error("unknown mask kind {kind:?}; expected one of: {allowed}")]
    UnknownKind { kind: String, allowed: &'static str },

    #[error("unknown parameter {param:?} for mask `{kind}`; allowed: {allowed}")]
    UnknownParam {
        kind: &'static str,
        param: String,
        allowed: &'static str,
    },

    #[error("mask `{kind}` needs parameter `{param}` ({expected})")]
    MissingParam {
        kind: &'static str,
        param: &'static str,
        expected: &'static str,
    },

    #[error("parameter `{param}` of mask `{kind}` must be {expected}")]
    ParamType {
        kind: &'static str,
        param: &'static str,
        expected: &'static str,
    },

    #[error("parameter `{param}` of mask `{kind}` is {value}; allowed range is {min}..={max}")]
    OutOfRange {
        kind: &'static str,
        param: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },

    #[error("mask_char {value:?} is not allowed: {reason}; use a single visible character such as '*', 'x' or '•'")]
    InvalidMaskChar { value: String, reason: &'static str },

    #[error("{param} {value:?} is not allowed: {reason}")]
    InvalidSeparator {
        param: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error(
        "mask `{kind}` takes {first} or {second}, not both: they keep the same end of the value"
    )]
    Conflict {
        kind: &'static str,
        first: &'static str,
        second: &'static str,
    },

    #[error(
        "key id {value:?} is not allowed; use 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'"
    )]
    InvalidKeyId { value: String },

    #[error("constant value must not contain a NUL character")]
    ConstantNul,

    #[error("{param} {value:?} is not a positive decimal number; write digits with an optional fraction, e.g. \"1000\" or \"0.5\"")]
    InvalidDecimal { param: &'static str, value: String },

    #[error("column type {pg_type:?} is not supported by any mask; supported: text, varchar(n), char(n), date, timestamp[tz], smallint, integer, bigint, numeric(p,s), money, real, double precision (only `null` and `constant` fit any type)")]
    UnsupportedType { pg_type: String },

    #[error("mask `{kind}` does not fit column type {pg_type:?}; it accepts {allowed}")]
    TypeMismatch {
        kind: &'static str,
        pg_type: String,
        allowed: String,
    },

    #[error("mask `{kind}` on column type {pg_type:?} hides nothing: {reason}")]
    HidesNothing {
        kind: &'static str,
        pg_type: String,
        reason: String,
    },

    #[error("mask `{kind}` needs values of at least {needed} characters, but column type {pg_type:?} holds at most {length}")]
    TooShort {
        kind: &'static str,
        pg_type: String,
        needed: u32,
        length: u32,
    },

    #[error("bucket width {width} is finer than column type {pg_type:?} can store; use at most {max_fraction} decimal places")]
    FinerThanColumn {
        width: String,
        pg_type: String,
        max_fraction: u32,
    },

    #[error("constant {value:?} does not fit column type {pg_type:?}: {reason}")]
    ConstantDoesNotFit {
        value: String,
        pg_type: String,
        reason: &'static str,
    },

    #[error(transparent)]
    Quote(#[from] crate::quote::QuoteError),

    #[error("column reference {column:?} is not a quoted SQL identifier or a dotted path of them")]
    InvalidColumnRef { column: String },

    #[error("type name {pg_type:?} is not safe to use in a cast; expected a name as format_type() prints it")]
    UnsafeTypeName { pg_type: String },

    #[error("pseudonym key {key:?} is not in the key file; available: {available}")]
    UnknownKey { key: String, available: String },

    #[error("cannot read key file {path}: {reason}")]
    KeyFileRead { path: String, reason: String },

    #[error("key file {path} can be read or written by other users (mode {mode:o}); run `chmod 600` on it")]
    KeyFilePermissions { path: String, mode: u32 },

    #[error("key file {path}{}: {reason}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    KeyFileInvalid {
        path: String,
        line: Option<usize>,
        reason: String,
    },
}
