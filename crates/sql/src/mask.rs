//! How a mask rule becomes an SQL expression inside the masking subquery.

use maskgate_mask::{MaskError, MaskSpec, PgType, PseudonymKeys};

/// Renders a column's mask as SQL. A trait so the enforcer does not need to know about
/// pseudonym keys, and tests can use fixed expressions.
pub trait MaskRenderer: Send + Sync {
    /// `column` is an already-quoted column reference; `ty` is the column's declared type.
    /// The result is trusted SQL: it is parsed but not checked against the allowlists.
    fn render(&self, spec: &MaskSpec, column: &str, ty: &PgType) -> Result<String, MaskError>;
}

/// The production renderer: the mask catalog's expressions, pseudonyms keyed with the
/// proxy's key file.
pub struct KeyedMasks<'k> {
    keys: &'k PseudonymKeys,
}

impl<'k> KeyedMasks<'k> {
    /// Renders with `keys` (an empty set is fine when no role uses pseudonyms).
    pub fn new(keys: &'k PseudonymKeys) -> KeyedMasks<'k> {
        KeyedMasks { keys }
    }
}

impl MaskRenderer for KeyedMasks<'_> {
    fn render(&self, spec: &MaskSpec, column: &str, ty: &PgType) -> Result<String, MaskError> {
        spec.sql_expr(column, ty, self.keys)
    }
}
