//! Mask kinds as PostgreSQL expressions.
//!
//! Masking happens inside the database: the enforcement layer puts these
//! expressions in the projection of a subquery that replaces the protected
//! table, so predicates, joins and functions only ever see masked values.
//! Every expression is NULL for NULL input, uses only built-in functions of
//! PostgreSQL 13+, and embeds parameters only as literals made by
//! [`quote_literal`] or as integers and checked decimals.

use crate::error::MaskError;
use crate::keys::{setting_name, Pad, PseudonymKeys, MAX_PSEUDONYM_DIGITS, TOKEN_BYTES};
use crate::quote::{check_column_ref, check_type_name, quote_literal};
use crate::spec::{MaskKind, MaskSpec};
use crate::types::{parse_pg_type, PgType, TypeFamily};

/// Width of the hidden run when `keep_length = false`.
pub const FIXED_MASK_RUN: u32 = 4;
/// The character the identifier shortcuts mask with.
const SHORTCUT_CHAR: char = '*';
/// No text value is longer than 1 GB, so keeping more characters than this
/// already masks everything; clamping keeps the SQL integers in `int4`.
const MAX_KEEP: u32 = 1 << 30;

impl MaskSpec {
    /// A PostgreSQL expression computing the masked value of `column` (an
    /// already-quoted identifier or qualified reference such as
    /// `"p"."citizen_id"`, checked to be exactly that).
    ///
    /// The result has the column's own type (cast back with
    /// `ty.canonical`) except for `pseudonym`, `initials` and `age_band`,
    /// which give `text`; see [`MaskSpec::output_type`]. NULL stays NULL.
    /// Fails if the kind does not fit the type, a parameter is invalid, or a
    /// pseudonym key is not in `keys`.
    pub fn sql_expr(
        &self,
        column: &str,
        ty: &PgType,
        keys: &PseudonymKeys,
    ) -> Result<String, MaskError> {
        self.validate()?;
        check_column_ref(column)?;
        check_type_name(&ty.canonical)?;
        self.check_type(&ty.canonical)?;
        // Rebuilt from the canonical name so the flags match the text that
        // is cast to; types no mask knows keep the caller's (checked) name.
        let ty = parse_pg_type(&ty.canonical).unwrap_or_else(|| ty.clone());
        let col = format!("({column})");
        let text = text_value(&col, &ty);
        let keep_type = |expr: String| cast(&expr, &ty);
        Ok(match &self.kind {
            MaskKind::Partial {
                keep_first,
                keep_last,
                mask_char,
                keep_length,
            } => keep_type(partial(
                &text,
                (*keep_first).min(MAX_KEEP),
                (*keep_last).min(MAX_KEEP),
                &quote_literal(&mask_char.to_string())?,
                *keep_length,
            )),
            MaskKind::PartialAround { .. } => keep_type(partial_around_sql(&self.kind, &text)?),
            MaskKind::CitizenId => keep_type(shortcut(
                &text,
                "^[0-9]{12}$",
                &[Keep::Hide(8), Keep::Last(4)],
            )?),
            MaskKind::SocialInsuranceCode => keep_type(shortcut(
                &text,
                "^[0-9]{10}$",
                &[Keep::Hide(6), Keep::Last(4)],
            )?),
            MaskKind::HealthCard => keep_type(shortcut(
                &text,
                "^[A-Za-z]{2}[0-9]{13}$",
                &[
                    Keep::First(2),
                    Keep::Hide(1),
                    Keep::Middle(4, 2),
                    Keep::Hide(10),
                ],
            )?),
            MaskKind::Phone => keep_type(shortcut(
                &text,
                "^[0-9]{10}$",
                &[Keep::Hide(7), Keep::Last(3)],
            )?),
            MaskKind::Email => keep_type(email(&text)?),
            MaskKind::EmailDomain => keep_type(email_domain(&text)?),
            MaskKind::Initials => initials(&text)?,
            MaskKind::Year => truncate_date("year", &col, &ty)?,
            MaskKind::Month => truncate_date("month", &col, &ty)?,
            MaskKind::AgeBand { width } => age_band(&col, *width),
            MaskKind::Round { digits } => keep_type(format!("round({col}::numeric, {digits})")),
            MaskKind::Bucket { width } => {
                keep_type(format!("floor({col}::numeric / {width}) * {width}"))
            }
            MaskKind::Null => format!("NULL::{}", ty.canonical),
            MaskKind::Constant { value } => {
                // Cast outside the CASE: a CASE with a NULL branch loses the typmod.
                cast(
                    &format!(
                        "CASE WHEN {col} IS NULL THEN NULL ELSE {} END",
                        quote_literal(value)?
                    ),
                    &ty,
                )
            }
            MaskKind::Pseudonym { key } => token(&text, key, keys)?,
            MaskKind::PseudonymDigits { key } => keep_type(pseudonym_digits(&text, key, keys)?),
        })
    }

    /// The type of [`MaskSpec::sql_expr`]'s result as `format_type()` prints
    /// it: the column's own type, or `text` for the kinds that change it.
    pub fn output_type(&self, ty: &PgType) -> String {
        match self.kind {
            MaskKind::Pseudonym { .. } | MaskKind::Initials | MaskKind::AgeBand { .. } => {
                "text".to_string()
            }
            _ => ty.canonical.clone(),
        }
    }
}

/// The value as `text`. For `char(n)` the cast drops the blank padding, so
/// lengths and pseudonyms ignore trailing blanks exactly as `char(n)`
/// comparisons do.
fn text_value(col: &str, ty: &PgType) -> String {
    if ty.canonical == "text" {
        col.to_string()
    } else {
        format!("{col}::text")
    }
}

fn cast(expr: &str, ty: &PgType) -> String {
    if ty.canonical == "text" {
        expr.to_string()
    } else {
        format!("({expr})::{}", ty.canonical)
    }
}

/// Values no longer than what is kept are masked completely: never reveal a
/// value because it is short.
fn partial(v: &str, first: u32, last: u32, c: &str, keep_length: bool) -> String {
    let kept = u64::from(first) + u64::from(last);
    let len = format!("char_length({v})");
    let (short, hidden) = if keep_length {
        (
            format!("repeat({c}, {len})"),
            format!("repeat({c}, {len} - {kept})"),
        )
    } else {
        let run = format!("repeat({c}, {FIXED_MASK_RUN})");
        (run.clone(), run)
    };
    let mut parts = Vec::new();
    if first > 0 {
        parts.push(format!("left({v}, {first})"));
    }
    parts.push(hidden);
    if last > 0 {
        parts.push(format!("right({v}, {last})"));
    }
    format!(
        "CASE WHEN {v} IS NULL THEN NULL WHEN {len} <= {kept} THEN {short} ELSE {} END",
        parts.join(" || ")
    )
}

/// What one end of a `partial` mask around separators keeps.
enum Side {
    /// A fixed number of characters.
    Fixed(u32),
    /// Up to and including the first occurrence of this (quoted) separator.
    Before(String),
    /// From the last occurrence of this (quoted) separator on.
    After(String),
}

impl Side {
    /// How many characters of `v` this end keeps (0 when the separator is absent).
    fn kept(&self, v: &str) -> String {
        let found = |haystack: &str, needle: &str| {
            let at = format!("strpos({haystack}, {needle})");
            format!("(CASE WHEN {at} > 0 THEN {at} + char_length({needle}) - 1 ELSE 0 END)")
        };
        match self {
            Side::Fixed(n) => n.to_string(),
            Side::Before(separator) => found(v, separator),
            Side::After(separator) => {
                found(&format!("reverse({v})"), &format!("reverse({separator})"))
            }
        }
    }
}

/// `partial` with `keep_before` or `keep_after`.
fn partial_around_sql(kind: &MaskKind, text: &str) -> Result<String, MaskError> {
    let MaskKind::PartialAround {
        keep_before,
        keep_after,
        keep_first,
        keep_last,
        mask_char,
        keep_length,
    } = kind
    else {
        return Err(MaskError::Conflict {
            kind: "partial",
            first: "keep_before",
            second: "keep_after",
        });
    };
    let before = match keep_before {
        Some(separator) => Side::Before(quote_literal(separator)?),
        None => Side::Fixed((*keep_first).min(MAX_KEEP)),
    };
    let after = match keep_after {
        Some(separator) => Side::After(quote_literal(separator)?),
        None => Side::Fixed((*keep_last).min(MAX_KEEP)),
    };
    Ok(partial_around(
        text,
        &before,
        &after,
        &quote_literal(&mask_char.to_string())?,
        *keep_length,
    ))
}

/// Like [`partial`], with ends whose length depends on where a separator is:
/// `keep_after = " "` on `Nguyễn Văn An` → `********** An`. A value no longer than
/// what both ends keep is masked completely.
fn partial_around(v: &str, first: &Side, last: &Side, c: &str, keep_length: bool) -> String {
    let (first, last) = (first.kept(v), last.kept(v));
    let len = format!("char_length({v})");
    let kept = format!("({first} + {last})");
    let (short, hidden) = if keep_length {
        (
            format!("repeat({c}, {len})"),
            format!("repeat({c}, {len} - {kept})"),
        )
    } else {
        let run = format!("repeat({c}, {FIXED_MASK_RUN})");
        (run.clone(), run)
    };
    format!(
        "CASE WHEN {v} IS NULL THEN NULL WHEN {len} <= {kept} THEN {short} \
         ELSE left({v}, {first}) || {hidden} || right({v}, {last}) END"
    )
}

/// One segment of a fixed-format identifier, in order.
enum Keep {
    First(u32),
    Hide(u32),
    /// Keep `len` characters starting at 1-based `from`.
    Middle(u32, u32),
    Last(u32),
}

/// Masks a well-formed identifier segment by segment; anything that does not
/// match the format is masked completely, keeping its length.
fn shortcut(v: &str, pattern: &str, segments: &[Keep]) -> Result<String, MaskError> {
    let star = SHORTCUT_CHAR.to_string();
    let parts: Vec<String> = segments
        .iter()
        .map(|s| match *s {
            Keep::First(n) => Ok(format!("left({v}, {n})")),
            Keep::Hide(n) => Ok(quote_literal(&star.repeat(n as usize))?),
            Keep::Middle(from, n) => Ok(format!("substr({v}, {from}, {n})")),
            Keep::Last(n) => Ok(format!("right({v}, {n})")),
        })
        .collect::<Result<_, MaskError>>()?;
    Ok(format!(
        "CASE WHEN {} THEN {} ELSE {} END",
        matches(v, pattern)?,
        parts.join(" || "),
        full_mask(v)?
    ))
}

/// Regular-expression match under the "C" collation: the patterns are
/// ASCII-only, and a nondeterministic column collation would refuse `~`.
fn matches(v: &str, pattern: &str) -> Result<String, MaskError> {
    Ok(format!("({v}) COLLATE \"C\" ~ {}", quote_literal(pattern)?))
}

fn full_mask(v: &str) -> Result<String, MaskError> {
    Ok(format!(
        "repeat({}, char_length({v}))",
        quote_literal(&SHORTCUT_CHAR.to_string())?
    ))
}

/// `an.nguyen@example.vn` → `a*********@example.vn`; a one-character local
/// part is masked too. Keeps the length so the value fits the column.
fn email(v: &str) -> Result<String, MaskError> {
    let star = quote_literal(&SHORTCUT_CHAR.to_string())?;
    let at = format!("strpos({v}, '@')");
    Ok(format!(
        "CASE WHEN {} THEN CASE WHEN {at} > 2 THEN left({v}, 1) ELSE {star} END || repeat({star}, {at} - 2) || substr({v}, {at}) ELSE {} END",
        matches(v, "^[^@]+@[^@]+$")?,
        full_mask(v)?
    ))
}

/// `an.nguyen@gmail.com` → `***@gmail.com`: a fixed run for the local part, so
/// its length does not show; anything that is not one `@` between two non-empty
/// parts is masked completely.
fn email_domain(v: &str) -> Result<String, MaskError> {
    Ok(format!(
        "CASE WHEN {} THEN {} || substr({v}, strpos({v}, '@')) ELSE {} END",
        matches(v, "^[^@]+@[^@]+$")?,
        quote_literal(&SHORTCUT_CHAR.to_string().repeat(3))?,
        full_mask(v)?
    ))
}

/// First character of each whitespace-separated word, upper-cased, each
/// followed by `.`, separated by one space: `Nguyễn Văn An` → `N. V. A.`.
fn initials(v: &str) -> Result<String, MaskError> {
    Ok(format!(
        "btrim(upper(regexp_replace({v}, {}, {}, 'g')))",
        quote_literal("([^[:space:]])[^[:space:]]*[[:space:]]*")?,
        quote_literal("\\1. ")?
    ))
}

/// `date` goes through `timestamp` so the session time zone plays no part;
/// `timestamptz` is truncated in the session's time zone.
fn truncate_date(field: &str, col: &str, ty: &PgType) -> Result<String, MaskError> {
    let field = quote_literal(field)?;
    Ok(match ty.family {
        TypeFamily::Date => format!("date_trunc({field}, {col}::timestamp)::date"),
        _ => cast(&format!("date_trunc({field}, {col})"), ty),
    })
}

/// Completed years between the value's date and `current_date`, as the band
/// `lo-hi` (`30-39`), or just `lo` for width 1.
fn age_band(col: &str, width: u32) -> String {
    let years =
        format!("extract(year FROM age(current_date::timestamp, {col}::date::timestamp))::integer");
    let lo = format!("(floor({years} / {width}.0)::integer * {width})");
    if width == 1 {
        format!("{lo}::text")
    } else {
        format!("{lo}::text || '-' || ({lo} + {})::text", width - 1)
    }
}

/// HMAC-SHA-256 of the value's UTF-8 bytes under key `key`, from the pads
/// the proxy put in the session's settings (see [`crate::keys`]). Fails at
/// query time if the session lacks them, instead of producing a weaker value.
fn hmac(v: &str, key: &str, keys: &PseudonymKeys) -> Result<String, MaskError> {
    if !keys.contains(key) {
        return Err(MaskError::UnknownKey {
            key: key.to_string(),
            available: {
                let ids: Vec<&str> = keys.ids().collect();
                if ids.is_empty() {
                    "none (no key file is configured)".to_string()
                } else {
                    ids.join(", ")
                }
            },
        });
    }
    let pad = |p| -> Result<String, MaskError> {
        Ok(format!(
            "decode(current_setting({}), 'hex')",
            quote_literal(&setting_name(key, p))?
        ))
    };
    Ok(format!(
        "sha256({} || sha256({} || convert_to({v}, 'UTF8')))",
        pad(Pad::Outer)?,
        pad(Pad::Inner)?
    ))
}

/// `<key id>:` and the first 16 bytes of the HMAC in lower-case hex.
fn token(v: &str, key: &str, keys: &PseudonymKeys) -> Result<String, MaskError> {
    Ok(format!(
        "{} || encode(substr({}, 1, {TOKEN_BYTES}), 'hex')",
        quote_literal(&format!("{key}:"))?,
        hmac(v, key, keys)?
    ))
}

/// All-digit values of 1 to 18 digits: the first 8 HMAC bytes as a 63-bit
/// number, modulo 10^18, last `len` digits (zero-padded). Anything else gets
/// the `pseudonym` token, cut to the column's length by the cast back.
fn pseudonym_digits(v: &str, key: &str, keys: &PseudonymKeys) -> Result<String, MaskError> {
    let number = format!(
        "((('x' || encode(substr({}, 1, 8), 'hex'))::bit(64)::bigint & 9223372036854775807) % 1000000000000000000)",
        hmac(v, key, keys)?
    );
    Ok(format!(
        "CASE WHEN {} THEN right(lpad({number}::text, 18, '0'), char_length({v})) ELSE {} END",
        matches(v, &format!("^[0-9]{{1,{MAX_PSEUDONYM_DIGITS}}}$"))?,
        token(v, key, keys)?
    ))
}

/// Checks a `constant` against the column type where that can be done
/// without PostgreSQL, so the policy check catches it instead of the first
/// query. Dates must be ISO (`YYYY-MM-DD…`) so `DateStyle` cannot change
/// their meaning; `timestamp` details and `money` are left to PostgreSQL,
/// where a bad value fails every query on the column (never shows data).
pub(crate) fn check_constant(value: &str, ty: &PgType) -> Result<(), MaskError> {
    let fail = |reason: &'static str| {
        Err(MaskError::ConstantDoesNotFit {
            value: value.to_string(),
            pg_type: ty.canonical.clone(),
            reason,
        })
    };
    match ty.family {
        TypeFamily::Text => {
            if let Some(n) = ty.length {
                let len = if ty.blank_padded {
                    value.trim_end_matches(' ').chars().count()
                } else {
                    value.chars().count()
                };
                if len > n as usize {
                    return fail("it is longer than the column and would be cut");
                }
            }
        }
        TypeFamily::Integer => {
            let (min, max) = match ty.canonical.as_str() {
                "smallint" => (i16::MIN.into(), i16::MAX.into()),
                "integer" => (i32::MIN.into(), i32::MAX.into()),
                _ => (i64::MIN, i64::MAX),
            };
            match value.trim().parse::<i64>() {
                Ok(v) if (min..=max).contains(&v) => {}
                Ok(_) => return fail("it is out of the type's range"),
                Err(_) => return fail("it is not an integer"),
            }
        }
        TypeFamily::Numeric if ty.canonical != "money" => {
            let v = value.trim();
            let unsigned = v.strip_prefix(['-', '+']).unwrap_or(v);
            let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
            let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
            if int.is_empty() && frac.is_empty() || !digits(int) || !digits(frac) {
                return fail("it is not a decimal number such as 0 or -12.50");
            }
            if let (Some(p), Some(s)) = (ty.precision, ty.scale) {
                let int_digits = int.trim_start_matches('0').len() as i64;
                if int_digits > i64::from(p) - i64::from(s) {
                    return fail("it has more integer digits than the type allows");
                }
            }
        }
        TypeFamily::Float if value.trim().parse::<f64>().is_err() => {
            return fail("it is not a number");
        }
        TypeFamily::Date | TypeFamily::Timestamp => {
            let b = value.as_bytes();
            let iso = b.len() >= 10
                && b[..10].iter().enumerate().all(|(i, c)| {
                    if i == 4 || i == 7 {
                        *c == b'-'
                    } else {
                        c.is_ascii_digit()
                    }
                })
                && (b.len() == 10 || ty.family == TypeFamily::Timestamp);
            if !iso {
                return fail("write dates as YYYY-MM-DD (timestamps may add a time)");
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(src: &str) -> MaskSpec {
        let table: toml::Table = toml::from_str(src).unwrap();
        MaskSpec::from_toml(&table).unwrap()
    }

    fn ty(s: &str) -> PgType {
        parse_pg_type(s).unwrap()
    }

    fn expr(src: &str, t: &str) -> String {
        spec(src)
            .sql_expr("\"c\"", &ty(t), &PseudonymKeys::empty())
            .unwrap_or_else(|e| panic!("{src} on {t}: {e}"))
    }

    #[test]
    fn shapes() {
        assert_eq!(
            expr("mask = \"partial\"\nkeep_last = 4", "text"),
            "CASE WHEN (\"c\") IS NULL THEN NULL WHEN char_length((\"c\")) <= 4 THEN repeat('*', char_length((\"c\"))) ELSE repeat('*', char_length((\"c\")) - 4) || right((\"c\"), 4) END"
        );
        assert_eq!(
            expr("mask = \"null\"", "numeric(12,2)"),
            "NULL::numeric(12,2)"
        );
        assert_eq!(
            expr("mask = \"year\"", "date"),
            "date_trunc('year', (\"c\")::timestamp)::date"
        );
        assert_eq!(
            expr("mask = \"round\"\ndigits = -3", "integer"),
            "(round((\"c\")::numeric, -3))::integer"
        );
        assert!(expr("mask = \"citizen_id\"", "character(12)").ends_with(")::character(12)"));
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let keys = PseudonymKeys::empty();
        let text = ty("text");
        assert!(matches!(
            spec("mask = \"year\"").sql_expr("c", &text, &keys),
            Err(MaskError::TypeMismatch { .. })
        ));
        assert!(matches!(
            spec("mask = \"pseudonym\"\nkey = \"v1\"").sql_expr("c", &text, &keys),
            Err(MaskError::UnknownKey { .. })
        ));
        assert!(matches!(
            spec("mask = \"null\"").sql_expr("c; DROP TABLE x", &text, &keys),
            Err(MaskError::InvalidColumnRef { .. })
        ));
        let hostile = PgType {
            canonical: "text); DROP TABLE x; --".into(),
            ..text.clone()
        };
        assert!(matches!(
            spec("mask = \"null\"").sql_expr("c", &hostile, &keys),
            Err(MaskError::UnsafeTypeName { .. })
        ));
        let opaque = PgType {
            family: TypeFamily::Any,
            canonical: "jsonb".into(),
            ..text
        };
        assert_eq!(
            spec("mask = \"null\"")
                .sql_expr("c", &opaque, &keys)
                .unwrap(),
            "NULL::jsonb"
        );
        assert!(spec("mask = \"partial\"")
            .sql_expr("c", &opaque, &keys)
            .is_err());
    }

    #[test]
    fn constants_are_checked_against_the_type() {
        let fits = |v: &str, t: &str| check_constant(v, &ty(t)).is_ok();
        assert!(fits("hidden", "varchar(6)"));
        assert!(!fits("hidden!", "varchar(6)"));
        assert!(fits("ab   ", "char(2)"));
        assert!(fits("-32768", "smallint"));
        assert!(!fits("32768", "smallint"));
        assert!(!fits("x", "bigint"));
        assert!(fits("-12.50", "numeric(4,2)"));
        assert!(!fits("123.5", "numeric(4,2)"));
        assert!(!fits("1e3", "numeric"));
        assert!(fits("1e3", "double precision"));
        assert!(fits("1900-01-01", "date"));
        assert!(!fits("01/02/1900", "date"));
        assert!(!fits("1900-01-01 00:00", "date"));
        assert!(fits("1900-01-01 00:00:00+07", "timestamptz"));
        assert!(fits("anything", "money"));
        let constant = spec("mask = \"constant\"\nvalue = \"not a date\"");
        assert!(matches!(
            constant.check_type("date"),
            Err(MaskError::ConstantDoesNotFit { .. })
        ));
        constant.check_type("jsonb").unwrap();
    }
}
