use std::fmt;

use toml::{Table, Value};

use crate::error::MaskError;
use crate::expr::check_constant;
use crate::literal::NumericLiteral;
use crate::types::{parse_pg_type, TypeFamily};

/// One mask as a policy rule names it: `{ mask = "partial", keep_last = 4 }`.
///
/// Every value of this type that came from [`MaskSpec::from_toml`] or
/// [`MaskSpec::new`] has passed [`MaskSpec::validate`], so its parameters can
/// be embedded in SQL without being able to change the statement's structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskSpec {
    pub kind: MaskKind,
}

/// The mask kinds and their parameters.
///
/// The fixed-format shortcuts (`CitizenId` … `Phone`) take no parameters so a
/// policy cannot weaken them by accident; they mask with `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskKind {
    /// Keep the first and last characters (characters, not bytes), replace the
    /// rest with `mask_char`; with `keep_length = false` the hidden run has a
    /// fixed width so the length does not leak.
    Partial {
        keep_first: u32,
        keep_last: u32,
        mask_char: char,
        keep_length: bool,
    },
    /// 12-digit citizen ID (CCCD): keep the last 4 digits.
    CitizenId,
    /// 10-digit social-insurance code (mã số BHXH): keep the last 4 digits,
    /// like the citizen ID, so clerks can confirm a number read to them.
    SocialInsuranceCode,
    /// 15-character health-insurance card number (mã thẻ BHYT). Layout read as:
    /// chars 1-2 object code (letters, e.g. `DN`), char 3 benefit level (digit),
    /// chars 4-5 province code, chars 6-15 the person's 10-digit social-insurance
    /// code. Keeps chars 1-2 and 4-5, masks char 3 and 6-15:
    /// `DN4010123456789` → `DN*01**********`.
    HealthCard,
    /// 10-digit phone number: keep the last 3 digits.
    Phone,
    /// Keep the first character of the local part and the whole domain.
    Email,
    /// Initial of each word followed by a dot: `Nguyễn Văn An` → `N. V. A.`.
    Initials,
    /// First day of the value's year, in the column's own type.
    Year,
    /// First day of the value's month, in the column's own type.
    Month,
    /// Age on the current date as a text band `width` years wide, e.g. `30-39`.
    AgeBand { width: u32 },
    /// `round(value, digits)`; negative digits round to tens, hundreds…
    Round { digits: i32 },
    /// Floor to a multiple of `width`.
    Bucket { width: NumericLiteral },
    /// Always NULL.
    Null,
    /// A fixed value, cast to the column's type; [`MaskSpec::check_type`]
    /// checks it against the type where that is possible without a server.
    Constant { value: String },
    /// Keyed deterministic token; `key` is a key id in the key file, and part
    /// of the token so keys can rotate.
    Pseudonym { key: String },
    /// Keyed deterministic digits of the same length, for applications that
    /// validate identifier formats.
    PseudonymDigits { key: String },
}

/// Kind name, its parameters, and the same list as prose for error messages.
struct KindInfo {
    name: &'static str,
    params: &'static [&'static str],
    allowed: &'static str,
}

const KINDS: &[KindInfo] = &[
    KindInfo {
        name: "partial",
        params: &["keep_first", "keep_last", "mask_char", "keep_length"],
        allowed: "keep_first, keep_last, mask_char, keep_length",
    },
    no_params("citizen_id"),
    no_params("social_insurance_code"),
    no_params("health_card"),
    no_params("phone"),
    no_params("email"),
    no_params("initials"),
    no_params("year"),
    no_params("month"),
    KindInfo {
        name: "age_band",
        params: &["width"],
        allowed: "width",
    },
    KindInfo {
        name: "round",
        params: &["digits"],
        allowed: "digits",
    },
    KindInfo {
        name: "bucket",
        params: &["width"],
        allowed: "width",
    },
    no_params("null"),
    KindInfo {
        name: "constant",
        params: &["value"],
        allowed: "value",
    },
    KindInfo {
        name: "pseudonym",
        params: &["key"],
        allowed: "key",
    },
    KindInfo {
        name: "pseudonym_digits",
        params: &["key"],
        allowed: "key",
    },
];

const fn no_params(name: &'static str) -> KindInfo {
    KindInfo {
        name,
        params: &[],
        allowed: "none (this kind takes no parameters)",
    }
}

/// All kind names, for error messages.
pub const KIND_NAMES: &str = "partial, citizen_id, social_insurance_code, health_card, phone, \
email, initials, year, month, age_band, round, bucket, null, constant, pseudonym, pseudonym_digits";

const TEXT: &[TypeFamily] = &[TypeFamily::Text];
const DATES: &[TypeFamily] = &[TypeFamily::Date, TypeFamily::Timestamp];
const NUMBERS: &[TypeFamily] = &[TypeFamily::Integer, TypeFamily::Numeric, TypeFamily::Float];
const ANY: &[TypeFamily] = &[TypeFamily::Any];

/// Default `age_band` width: the decade bands statistics usually publish.
pub const DEFAULT_AGE_BAND_WIDTH: u32 = 10;
pub const AGE_BAND_WIDTH_RANGE: (i64, i64) = (1, 100);
pub const ROUND_DIGITS_RANGE: (i64, i64) = (-12, 12);

impl MaskKind {
    /// The name used for this kind in policy files.
    pub fn name(&self) -> &'static str {
        match self {
            MaskKind::Partial { .. } => "partial",
            MaskKind::CitizenId => "citizen_id",
            MaskKind::SocialInsuranceCode => "social_insurance_code",
            MaskKind::HealthCard => "health_card",
            MaskKind::Phone => "phone",
            MaskKind::Email => "email",
            MaskKind::Initials => "initials",
            MaskKind::Year => "year",
            MaskKind::Month => "month",
            MaskKind::AgeBand { .. } => "age_band",
            MaskKind::Round { .. } => "round",
            MaskKind::Bucket { .. } => "bucket",
            MaskKind::Null => "null",
            MaskKind::Constant { .. } => "constant",
            MaskKind::Pseudonym { .. } => "pseudonym",
            MaskKind::PseudonymDigits { .. } => "pseudonym_digits",
        }
    }

    /// Length in characters of the fixed-format identifiers.
    pub fn fixed_length(&self) -> Option<u32> {
        match self {
            MaskKind::CitizenId => Some(12),
            MaskKind::SocialInsuranceCode | MaskKind::Phone => Some(10),
            MaskKind::HealthCard => Some(15),
            _ => None,
        }
    }
}

impl MaskSpec {
    /// Wraps a kind after checking its parameters.
    pub fn new(kind: MaskKind) -> Result<MaskSpec, MaskError> {
        let spec = MaskSpec { kind };
        spec.validate()?;
        Ok(spec)
    }

    /// Reads an inline policy table `{ mask = "<kind>", <params>… }`.
    pub fn from_toml(table: &Table) -> Result<MaskSpec, MaskError> {
        let name = match table.get("mask") {
            None => {
                return Err(MaskError::MissingKind {
                    allowed: KIND_NAMES,
                })
            }
            Some(Value::String(s)) => s.as_str(),
            Some(_) => {
                return Err(MaskError::KindNotString {
                    allowed: KIND_NAMES,
                })
            }
        };
        let info = KINDS
            .iter()
            .find(|k| k.name == name)
            .ok_or_else(|| MaskError::UnknownKind {
                kind: name.to_string(),
                allowed: KIND_NAMES,
            })?;
        if let Some(param) = table
            .keys()
            .find(|k| *k != "mask" && !info.params.contains(&k.as_str()))
        {
            return Err(MaskError::UnknownParam {
                kind: info.name,
                param: param.clone(),
                allowed: info.allowed,
            });
        }
        let p = Params {
            kind: info.name,
            table,
        };
        let kind = match info.name {
            "partial" => MaskKind::Partial {
                keep_first: p.count("keep_first")?,
                keep_last: p.count("keep_last")?,
                mask_char: p.mask_char("mask_char")?,
                keep_length: p.boolean("keep_length", true)?,
            },
            "citizen_id" => MaskKind::CitizenId,
            "social_insurance_code" => MaskKind::SocialInsuranceCode,
            "health_card" => MaskKind::HealthCard,
            "phone" => MaskKind::Phone,
            "email" => MaskKind::Email,
            "initials" => MaskKind::Initials,
            "year" => MaskKind::Year,
            "month" => MaskKind::Month,
            "age_band" => MaskKind::AgeBand {
                width: p.ranged(
                    "width",
                    Some(DEFAULT_AGE_BAND_WIDTH.into()),
                    AGE_BAND_WIDTH_RANGE,
                )? as u32,
            },
            "round" => MaskKind::Round {
                digits: p.ranged("digits", None, ROUND_DIGITS_RANGE)? as i32,
            },
            "bucket" => MaskKind::Bucket {
                width: p.decimal("width")?,
            },
            "null" => MaskKind::Null,
            "constant" => MaskKind::Constant {
                value: p.constant("value")?,
            },
            "pseudonym" => MaskKind::Pseudonym {
                key: p.string("key", "a key id from the key file")?.to_string(),
            },
            "pseudonym_digits" => MaskKind::PseudonymDigits {
                key: p.string("key", "a key id from the key file")?.to_string(),
            },
            _ => unreachable!("every entry of KINDS is matched"),
        };
        MaskSpec::new(kind)
    }

    /// Checks the parameters; the only gate between policy text and SQL, so it
    /// is also worth re-running on specs built in code.
    pub fn validate(&self) -> Result<(), MaskError> {
        let kind = self.kind.name();
        match &self.kind {
            MaskKind::Partial { mask_char, .. } => check_mask_char(*mask_char),
            MaskKind::AgeBand { width } => {
                in_range(kind, "width", (*width).into(), AGE_BAND_WIDTH_RANGE)
            }
            MaskKind::Round { digits } => {
                in_range(kind, "digits", (*digits).into(), ROUND_DIGITS_RANGE)
            }
            MaskKind::Constant { value } if value.contains('\0') => Err(MaskError::ConstantNul),
            MaskKind::Pseudonym { key } | MaskKind::PseudonymDigits { key } => check_key_id(key),
            _ => Ok(()),
        }
    }

    /// The type families this kind can mask while keeping queries valid.
    pub fn accepted_types(&self) -> &'static [TypeFamily] {
        match self.kind {
            MaskKind::Partial { .. }
            | MaskKind::CitizenId
            | MaskKind::SocialInsuranceCode
            | MaskKind::HealthCard
            | MaskKind::Phone
            | MaskKind::Email
            | MaskKind::Initials
            | MaskKind::Pseudonym { .. }
            | MaskKind::PseudonymDigits { .. } => TEXT,
            MaskKind::Year | MaskKind::Month | MaskKind::AgeBand { .. } => DATES,
            MaskKind::Round { .. } | MaskKind::Bucket { .. } => NUMBERS,
            MaskKind::Null | MaskKind::Constant { .. } => ANY,
        }
    }

    /// Decides whether this mask fits a column of `pg_type` (policy spelling or
    /// `format_type()` output), and whether on that type it would hide anything.
    pub fn check_type(&self, pg_type: &str) -> Result<(), MaskError> {
        let accepted = self.accepted_types();
        if accepted.contains(&TypeFamily::Any) {
            if let (MaskKind::Constant { value }, Some(ty)) = (&self.kind, parse_pg_type(pg_type)) {
                check_constant(value, &ty)?;
            }
            return Ok(());
        }
        let kind = self.kind.name();
        let ty = parse_pg_type(pg_type).ok_or_else(|| MaskError::UnsupportedType {
            pg_type: pg_type.to_string(),
        })?;
        if !accepted.contains(&ty.family) {
            return Err(MaskError::TypeMismatch {
                kind,
                pg_type: pg_type.to_string(),
                allowed: accepted
                    .iter()
                    .map(|f| f.describe())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let hides_nothing = |reason: String| MaskError::HidesNothing {
            kind,
            pg_type: pg_type.to_string(),
            reason,
        };
        match &self.kind {
            MaskKind::Partial {
                keep_first,
                keep_last,
                ..
            } => {
                let kept = u64::from(*keep_first) + u64::from(*keep_last);
                if let Some(length) = ty.length.filter(|&n| kept >= u64::from(n)) {
                    return Err(hides_nothing(format!(
                        "keep_first + keep_last = {kept} keeps all of the at most {length} characters; keep fewer than {length}"
                    )));
                }
            }
            MaskKind::Round { digits } => {
                if let Some(scale) = ty.scale.filter(|s| digits >= s) {
                    return Err(hides_nothing(format!(
                        "the column keeps {scale} decimal places, so rounding to {digits} changes nothing; use digits below {scale} (negative rounds to tens, hundreds…)"
                    )));
                }
            }
            MaskKind::Bucket { width } => {
                if let Some(scale) = ty.scale {
                    let max_fraction = scale.max(0).unsigned_abs();
                    if width.scale() > max_fraction {
                        return Err(MaskError::FinerThanColumn {
                            width: width.to_string(),
                            pg_type: pg_type.to_string(),
                            max_fraction,
                        });
                    }
                    if width.le_pow10(-scale) {
                        return Err(hides_nothing(format!(
                            "width {width} is not coarser than the column's own precision; use a larger width"
                        )));
                    }
                }
            }
            other => {
                if let (Some(needed), Some(length)) = (other.fixed_length(), ty.length) {
                    if length < needed {
                        return Err(MaskError::TooShort {
                            kind,
                            pg_type: pg_type.to_string(),
                            needed,
                            length,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for MaskSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.kind.name();
        match &self.kind {
            MaskKind::Partial {
                keep_first,
                keep_last,
                mask_char,
                keep_length,
            } => {
                write!(
                    f,
                    "{name}(keep_first={keep_first}, keep_last={keep_last}, mask_char={mask_char:?}"
                )?;
                if !keep_length {
                    f.write_str(", keep_length=false")?;
                }
                f.write_str(")")
            }
            MaskKind::AgeBand { width } => write!(f, "{name}(width={width})"),
            MaskKind::Round { digits } => write!(f, "{name}(digits={digits})"),
            MaskKind::Bucket { width } => write!(f, "{name}(width={width})"),
            MaskKind::Constant { value } => write!(f, "{name}(value={value:?})"),
            MaskKind::Pseudonym { key } | MaskKind::PseudonymDigits { key } => {
                write!(f, "{name}(key={key})")
            }
            _ => f.write_str(name),
        }
    }
}

impl fmt::Display for MaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Typed access to the parameters of one kind, producing errors that name it.
struct Params<'a> {
    kind: &'static str,
    table: &'a Table,
}

impl Params<'_> {
    fn type_error(&self, param: &'static str, expected: &'static str) -> MaskError {
        MaskError::ParamType {
            kind: self.kind,
            param,
            expected,
        }
    }

    fn count(&self, param: &'static str) -> Result<u32, MaskError> {
        self.ranged(param, Some(0), (0, u32::MAX.into()))
            .map(|v| v as u32)
    }

    fn ranged(
        &self,
        param: &'static str,
        default: Option<i64>,
        range: (i64, i64),
    ) -> Result<i64, MaskError> {
        let expected = "an integer";
        let value = match (self.table.get(param), default) {
            (Some(Value::Integer(v)), _) => *v,
            (Some(_), _) => return Err(self.type_error(param, expected)),
            (None, Some(d)) => d,
            (None, None) => {
                return Err(MaskError::MissingParam {
                    kind: self.kind,
                    param,
                    expected,
                })
            }
        };
        in_range(self.kind, param, value, range)?;
        Ok(value)
    }

    fn boolean(&self, param: &'static str, default: bool) -> Result<bool, MaskError> {
        match self.table.get(param) {
            None => Ok(default),
            Some(Value::Boolean(b)) => Ok(*b),
            Some(_) => Err(self.type_error(param, "true or false")),
        }
    }

    fn string(&self, param: &'static str, expected: &'static str) -> Result<&str, MaskError> {
        match self.table.get(param) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(self.type_error(param, expected)),
            None => Err(MaskError::MissingParam {
                kind: self.kind,
                param,
                expected,
            }),
        }
    }

    fn mask_char(&self, param: &'static str) -> Result<char, MaskError> {
        let Some(value) = self.table.get(param) else {
            return Ok('*');
        };
        let Value::String(s) = value else {
            return Err(self.type_error(param, "a one-character string"));
        };
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(MaskError::InvalidMaskChar {
                value: s.clone(),
                reason: "it must be exactly one character",
            }),
        }
    }

    fn decimal(&self, param: &'static str) -> Result<NumericLiteral, MaskError> {
        let expected = "a positive number such as 1000 or \"0.5\"";
        let text = match self.table.get(param) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Integer(i)) => i.to_string(),
            // Rust prints the shortest text that reads back as the same f64,
            // never in exponent form, which is what was written in almost all cases.
            Some(Value::Float(x)) if x.is_finite() => x.to_string(),
            Some(_) => return Err(self.type_error(param, expected)),
            None => {
                return Err(MaskError::MissingParam {
                    kind: self.kind,
                    param,
                    expected,
                })
            }
        };
        NumericLiteral::parse_positive(&text)
            .ok_or(MaskError::InvalidDecimal { param, value: text })
    }

    fn constant(&self, param: &'static str) -> Result<String, MaskError> {
        let expected = "a string, number, boolean or date";
        match self.table.get(param) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Integer(i)) => Ok(i.to_string()),
            Some(Value::Float(x)) if x.is_finite() => Ok(x.to_string()),
            Some(Value::Boolean(b)) => Ok(b.to_string()),
            Some(Value::Datetime(d)) => Ok(d.to_string()),
            Some(_) => Err(self.type_error(param, expected)),
            None => Err(MaskError::MissingParam {
                kind: self.kind,
                param,
                expected,
            }),
        }
    }
}

fn in_range(
    kind: &'static str,
    param: &'static str,
    value: i64,
    (min, max): (i64, i64),
) -> Result<(), MaskError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(MaskError::OutOfRange {
            kind,
            param,
            value,
            min,
            max,
        })
    }
}

/// A mask character ends up inside a SQL string literal and in every masked
/// value, so it must neither end the literal nor be invisible.
fn check_mask_char(c: char) -> Result<(), MaskError> {
    let reason = match c {
        '\'' | '"' | '`' => "quotes are not allowed",
        '\\' => "backslash is not allowed",
        _ if c.is_control() => "control characters are not allowed",
        _ if c.is_whitespace() => "whitespace is not allowed",
        _ if is_invisible(c) => "invisible and combining characters are not allowed",
        _ => return Ok(()),
    };
    Err(MaskError::InvalidMaskChar {
        value: c.to_string(),
        reason,
    })
}

/// Format characters, combining marks and non-characters that would render as
/// nothing or merge with a neighbour.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{034F}'
        | '\u{0300}'..='\u{036F}'
        | '\u{061C}'
        | '\u{115F}'..='\u{1160}'
        | '\u{180B}'..='\u{180F}'
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{FE20}'..='\u{FE2F}'
        | '\u{FEFF}'
        | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFFF}'
        | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Key ids appear in tokens and in SQL, so they are plain identifiers.
pub(crate) fn check_key_id(key: &str) -> Result<(), MaskError> {
    let ok = (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(MaskError::InvalidKeyId {
            value: key.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<MaskSpec, MaskError> {
        let table: Table = toml::from_str(src).expect("test TOML is valid");
        MaskSpec::from_toml(&table)
    }

    fn ok(src: &str) -> MaskSpec {
        parse(src).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn err(src: &str) -> MaskError {
        match parse(src) {
            Ok(spec) => panic!("{src} should be rejected, got {spec}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_every_kind() {
        let cases = [
            (
                r#"mask = "partial""#,
                MaskKind::Partial {
                    keep_first: 0,
                    keep_last: 0,
                    mask_char: '*',
                    keep_length: true,
                },
            ),
            (
                r#"mask = "partial"
                keep_first = 1
                keep_last = 4
                mask_char = "•"
                keep_length = false"#,
                MaskKind::Partial {
                    keep_first: 1,
                    keep_last: 4,
                    mask_char: '•',
                    keep_length: false,
                },
            ),
            (r#"mask = "citizen_id""#, MaskKind::CitizenId),
            (
                r#"mask = "social_insurance_code""#,
                MaskKind::SocialInsuranceCode,
            ),
            (r#"mask = "health_card""#, MaskKind::HealthCard),
            (r#"mask = "phone""#, MaskKind::Phone),
            (r#"mask = "email""#, MaskKind::Email),
            (r#"mask = "initials""#, MaskKind::Initials),
            (r#"mask = "year""#, MaskKind::Year),
            (r#"mask = "month""#, MaskKind::Month),
            (r#"mask = "age_band""#, MaskKind::AgeBand { width: 10 }),
            (
                r#"mask = "age_band"
                width = 5"#,
                MaskKind::AgeBand { width: 5 },
            ),
            (
                r#"mask = "round"
                digits = -3"#,
                MaskKind::Round { digits: -3 },
            ),
            (
                r#"mask = "bucket"
                width = 1000"#,
                MaskKind::Bucket {
                    width: NumericLiteral::parse_positive("1000").unwrap(),
                },
            ),
            (
                r#"mask = "bucket"
                width = "0.50""#,
                MaskKind::Bucket {
                    width: NumericLiteral::parse_positive("0.5").unwrap(),
                },
            ),
            (
                r#"mask = "bucket"
                width = 0.25"#,
                MaskKind::Bucket {
                    width: NumericLiteral::parse_positive("0.25").unwrap(),
                },
            ),
            (r#"mask = "null""#, MaskKind::Null),
            (
                r#"mask = "constant"
                value = "Ẩn danh""#,
                MaskKind::Constant {
                    value: "Ẩn danh".into(),
                },
            ),
            (
                r#"mask = "constant"
                value = 0"#,
                MaskKind::Constant { value: "0".into() },
            ),
            (
                r#"mask = "constant"
                value = 1900-01-01"#,
                MaskKind::Constant {
                    value: "1900-01-01".into(),
                },
            ),
            (
                r#"mask = "pseudonym"
                key = "k2026-01""#,
                MaskKind::Pseudonym {
                    key: "k2026-01".into(),
                },
            ),
            (
                r#"mask = "pseudonym_digits"
                key = "main_key""#,
                MaskKind::PseudonymDigits {
                    key: "main_key".into(),
                },
            ),
        ];
        for (src, kind) in cases {
            assert_eq!(ok(src).kind, kind, "{src}");
        }
        let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        assert_eq!(names.join(", "), KIND_NAMES);
    }

    #[test]
    fn display_is_compact_and_escaped() {
        let show = |src: &str| ok(src).to_string();
        assert_eq!(
            show("mask = \"partial\"\nkeep_last = 4"),
            "partial(keep_first=0, keep_last=4, mask_char='*')"
        );
        assert_eq!(
            show("mask = \"partial\"\nkeep_first = 2\nmask_char = \"x\"\nkeep_length = false"),
            "partial(keep_first=2, keep_last=0, mask_char='x', keep_length=false)"
        );
        assert_eq!(show("mask = \"citizen_id\""), "citizen_id");
        assert_eq!(show("mask = \"age_band\""), "age_band(width=10)");
        assert_eq!(show("mask = \"round\"\ndigits = -3"), "round(digits=-3)");
        assert_eq!(
            show("mask = \"bucket\"\nwidth = \"0.5\""),
            "bucket(width=0.5)"
        );
        assert_eq!(
            show("mask = \"pseudonym\"\nkey = \"k1\""),
            "pseudonym(key=k1)"
        );
        assert_eq!(
            show("mask = \"constant\"\nvalue = \"a\\nb\\\"\""),
            "constant(value=\"a\\nb\\\"\")"
        );
    }

    #[test]
    fn kind_errors() {
        assert!(matches!(
            err("keep_last = 4"),
            MaskError::MissingKind { .. }
        ));
        assert!(matches!(err("mask = 4"), MaskError::KindNotString { .. }));
        let e = err(r#"mask = "Partial""#);
        assert!(matches!(e, MaskError::UnknownKind { .. }));
        assert!(e.to_string().contains("partial, citizen_id"), "{e}");
    }

    #[test]
    fn unknown_params_name_the_allowed_ones() {
        let e = err("mask = \"partial\"\nkeep_end = 4");
        assert_eq!(
            e.to_string(),
            "unknown parameter \"keep_end\" for mask `partial`; allowed: keep_first, keep_last, mask_char, keep_length"
        );
        let e = err("mask = \"citizen_id\"\nkeep_last = 2");
        assert!(e.to_string().contains("takes no parameters"), "{e}");
        let e = err("mask = \"round\"\nwidth = 2");
        assert!(e.to_string().ends_with("allowed: digits"), "{e}");
    }

    #[test]
    fn parameter_errors() {
        let type_err = |src: &str, param: &str| match err(src) {
            MaskError::ParamType { param: p, .. } => assert_eq!(p, param, "{src}"),
            other => panic!("{src}: {other}"),
        };
        type_err("mask = \"partial\"\nkeep_last = \"4\"", "keep_last");
        type_err("mask = \"partial\"\nkeep_first = 1.0", "keep_first");
        type_err("mask = \"partial\"\nkeep_length = 1", "keep_length");
        type_err("mask = \"partial\"\nmask_char = 42", "mask_char");
        type_err("mask = \"age_band\"\nwidth = \"10\"", "width");
        type_err("mask = \"round\"\ndigits = true", "digits");
        type_err("mask = \"bucket\"\nwidth = true", "width");
        type_err("mask = \"constant\"\nvalue = [1]", "value");
        type_err("mask = \"pseudonym\"\nkey = 1", "key");

        let missing = |src: &str, param: &str| match err(src) {
            MaskError::MissingParam { param: p, .. } => assert_eq!(p, param, "{src}"),
            other => panic!("{src}: {other}"),
        };
        missing("mask = \"round\"", "digits");
        missing("mask = \"bucket\"", "width");
        missing("mask = \"constant\"", "value");
        missing("mask = \"pseudonym\"", "key");
        missing("mask = \"pseudonym_digits\"", "key");

        let range = |src: &str| match err(src) {
            e @ MaskError::OutOfRange { .. } => e.to_string(),
            other => panic!("{src}: {other}"),
        };
        assert!(range("mask = \"partial\"\nkeep_last = -1").contains("0..="));
        range("mask = \"partial\"\nkeep_first = 4294967296");
        assert!(range("mask = \"age_band\"\nwidth = 0").contains("1..=100"));
        range("mask = \"age_band\"\nwidth = 101");
        assert!(range("mask = \"round\"\ndigits = 13").contains("-12..=12"));
        range("mask = \"round\"\ndigits = -13");

        for width in [
            "0",
            "-5",
            "\"0.0\"",
            "\"1e3\"",
            "\"1,000\"",
            "\" 5\"",
            "nan",
            "inf",
            "-0.5",
        ] {
            let src = format!("mask = \"bucket\"\nwidth = {width}");
            assert!(
                matches!(
                    err(&src),
                    MaskError::InvalidDecimal { .. } | MaskError::ParamType { .. }
                ),
                "{src}"
            );
        }
    }

    #[test]
    fn mask_char_rules() {
        for good in ["*", "x", "X", "#", "•", "×", "█", "0"] {
            ok(&format!("mask = \"partial\"\nmask_char = \"{good}\""));
        }
        for bad in [
            "", "**", "'", "\\\"", "\\\\", "`", " ", "\\t", "\\n", "\\r", "\\u0000", "\\u0007",
            "\\u00a0", "\\u200b", "\\u202e", "\\ufeff", "\\u0301", "\\u0085", "'--",
        ] {
            let src = format!("mask = \"partial\"\nmask_char = \"{bad}\"");
            assert!(
                matches!(err(&src), MaskError::InvalidMaskChar { .. }),
                "{src}"
            );
        }
        let e = err("mask = \"partial\"\nmask_char = \"'\"");
        assert!(e.to_string().contains("quotes"), "{e}");
        assert!(MaskSpec::new(MaskKind::Partial {
            keep_first: 0,
            keep_last: 0,
            mask_char: '\\',
            keep_length: true
        })
        .is_err());
    }

    #[test]
    fn key_ids() {
        ok("mask = \"pseudonym\"\nkey = \"A-z_09\"");
        ok(&format!(
            "mask = \"pseudonym\"\nkey = \"{}\"",
            "k".repeat(64)
        ));
        for bad in [
            String::new(),
            "k".repeat(65),
            "k 1".into(),
            "k.1".into(),
            "k'1".into(),
            "k\\\\1".into(),
            "khóa".into(),
            "k\\u0000".into(),
            "'; DROP TABLE x; --".into(),
        ] {
            for kind in ["pseudonym", "pseudonym_digits"] {
                let src = format!("mask = \"{kind}\"\nkey = \"{bad}\"");
                assert!(matches!(err(&src), MaskError::InvalidKeyId { .. }), "{src}");
            }
        }
    }

    #[test]
    fn constants_accept_anything_but_nul() {
        for value in [
            "'; DROP TABLE x; --",
            "a\\\\b",
            "O''Brien",
            "Nguyễn Văn An",
            "",
            "$$",
        ] {
            ok(&format!("mask = \"constant\"\nvalue = \"{value}\""));
        }
        assert_eq!(
            err("mask = \"constant\"\nvalue = \"a\\u0000b\""),
            MaskError::ConstantNul
        );
        assert!(MaskSpec::new(MaskKind::Constant { value: "\0".into() }).is_err());
    }

    #[test]
    fn hostile_values_never_survive_into_a_spec() {
        let hostile = [
            "'; DROP TABLE x; --",
            "'",
            "\\'",
            "\\",
            "\0",
            "$$; SELECT 1; $$",
            "1; SELECT pg_sleep(10)",
            "1.5'",
            "Nguyễn",
            "\u{202e}*",
        ];
        let table = |pairs: &[(&str, Value)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<Table>()
        };
        let s = |v: &str| Value::String(v.to_string());
        for h in hostile {
            for t in [
                table(&[("mask", s(h))]),
                table(&[("mask", s("partial")), ("mask_char", s(h))]),
                table(&[("mask", s("bucket")), ("width", s(h))]),
                table(&[("mask", s("pseudonym")), ("key", s(h))]),
                table(&[("mask", s("pseudonym_digits")), ("key", s(h))]),
                table(&[("mask", s("partial")), (h, Value::Integer(1))]),
            ] {
                let e = MaskSpec::from_toml(&t).expect_err(h);
                let msg = e.to_string();
                assert!(!msg.contains(['\0', '\n', '\r']), "{msg}");
            }
            // Constants may hold anything but NUL; they stay inert data here.
            let constant = MaskSpec::from_toml(&table(&[("mask", s("constant")), ("value", s(h))]));
            assert_eq!(constant.is_ok(), !h.contains('\0'), "{h:?}");
        }
    }

    #[test]
    fn type_acceptance() {
        let accepts = |src: &str, types: &[&str]| {
            let spec = ok(src);
            for t in types {
                spec.check_type(t)
                    .unwrap_or_else(|e| panic!("{spec} on {t}: {e}"));
            }
        };
        let text = [
            "text",
            "varchar",
            "character varying(50)",
            "char(15)",
            "bpchar",
        ];
        let dates = [
            "date",
            "timestamp",
            "timestamptz",
            "timestamp(3) with time zone",
        ];
        let numbers = [
            "integer",
            "int4",
            "bigint",
            "smallint",
            "numeric",
            "numeric(12,2)",
            "money",
            "real",
            "double precision",
        ];
        for kind in [
            "partial",
            "citizen_id",
            "social_insurance_code",
            "health_card",
            "phone",
            "email",
            "initials",
        ] {
            accepts(&format!("mask = \"{kind}\""), &text);
        }
        accepts("mask = \"pseudonym\"\nkey = \"k1\"", &text);
        accepts("mask = \"pseudonym_digits\"\nkey = \"k1\"", &text);
        for kind in ["year", "month", "age_band"] {
            accepts(&format!("mask = \"{kind}\""), &dates);
        }
        accepts("mask = \"round\"\ndigits = -3", &numbers);
        accepts("mask = \"bucket\"\nwidth = 1000", &numbers);
        let anything = [
            &text[..],
            &dates,
            &numbers,
            &["uuid", "jsonb", "text[]", "whatever"],
        ]
        .concat();
        accepts("mask = \"null\"", &anything);
        let unknown = ["uuid", "jsonb", "text[]", "whatever"];
        accepts(
            "mask = \"constant\"\nvalue = \"x\"",
            &[&text[..], &unknown].concat(),
        );
        accepts(
            "mask = \"constant\"\nvalue = 0",
            &[&numbers[..], &unknown].concat(),
        );
        accepts("mask = \"constant\"\nvalue = 1900-01-01", &dates);
    }

    #[test]
    fn type_rejection() {
        let rejects = |src: &str, t: &str| match ok(src).check_type(t) {
            Err(e @ MaskError::TypeMismatch { .. }) => e.to_string(),
            other => panic!("{src} on {t}: {other:?}"),
        };
        let e = rejects("mask = \"initials\"", "date");
        assert!(e.contains("accepts text types"), "{e}");
        let e = rejects("mask = \"year\"", "text");
        assert!(e.contains("date, timestamp"), "{e}");
        rejects("mask = \"month\"", "integer");
        rejects("mask = \"age_band\"", "varchar(10)");
        rejects("mask = \"round\"\ndigits = -2", "text");
        rejects("mask = \"bucket\"\nwidth = 10", "date");
        rejects("mask = \"partial\"\nkeep_last = 4", "integer");
        rejects("mask = \"citizen_id\"", "bigint");
        rejects("mask = \"email\"", "timestamptz");
        rejects("mask = \"pseudonym\"\nkey = \"k\"", "bigint");
        let e = ok("mask = \"partial\"").check_type("uuid").unwrap_err();
        assert!(matches!(e, MaskError::UnsupportedType { .. }), "{e}");
    }

    #[test]
    fn masks_that_would_hide_nothing_are_rejected() {
        let hides_nothing = |src: &str, t: &str| {
            assert!(
                matches!(ok(src).check_type(t), Err(MaskError::HidesNothing { .. })),
                "{src} on {t}"
            )
        };
        let fine = |src: &str, t: &str| {
            ok(src)
                .check_type(t)
                .unwrap_or_else(|e| panic!("{src} on {t}: {e}"))
        };
        let partial = "mask = \"partial\"\nkeep_first = 4\nkeep_last = 8";
        hides_nothing(partial, "char(12)");
        hides_nothing(partial, "varchar(10)");
        fine(partial, "char(13)");
        fine(partial, "text");
        hides_nothing("mask = \"partial\"\nkeep_last = 1", "char");
        fine("mask = \"partial\"", "char");
        hides_nothing(
            "mask = \"partial\"\nkeep_first = 4294967295\nkeep_last = 4294967295",
            "varchar(10485760)",
        );

        hides_nothing("mask = \"round\"\ndigits = 0", "integer");
        hides_nothing("mask = \"round\"\ndigits = 2", "numeric(12,2)");
        fine("mask = \"round\"\ndigits = 1", "numeric(12,2)");
        fine("mask = \"round\"\ndigits = 2", "numeric");
        fine("mask = \"round\"\ndigits = 2", "double precision");
        fine("mask = \"round\"\ndigits = -1", "bigint");

        hides_nothing("mask = \"bucket\"\nwidth = 1", "integer");
        hides_nothing("mask = \"bucket\"\nwidth = \"0.01\"", "numeric(12,2)");
        fine("mask = \"bucket\"\nwidth = \"0.05\"", "numeric(12,2)");
        fine("mask = \"bucket\"\nwidth = 2", "smallint");
        fine("mask = \"bucket\"\nwidth = \"0.5\"", "real");
        hides_nothing("mask = \"bucket\"\nwidth = 100", "numeric(10,-2)");
        fine("mask = \"bucket\"\nwidth = 1000", "numeric(10,-2)");
        assert!(matches!(
            ok("mask = \"bucket\"\nwidth = \"0.5\"").check_type("integer"),
            Err(MaskError::FinerThanColumn {
                max_fraction: 0,
                ..
            })
        ));
        assert!(matches!(
            ok("mask = \"bucket\"\nwidth = \"0.005\"").check_type("numeric(12,2)"),
            Err(MaskError::FinerThanColumn {
                max_fraction: 2,
                ..
            })
        ));
    }

    #[test]
    fn identifier_shortcuts_need_room_for_the_identifier() {
        for (kind, needed) in [
            ("citizen_id", 12),
            ("social_insurance_code", 10),
            ("health_card", 15),
            ("phone", 10),
        ] {
            let spec = ok(&format!("mask = \"{kind}\""));
            assert_eq!(spec.kind.fixed_length(), Some(needed));
            spec.check_type(&format!("char({needed})")).unwrap();
            spec.check_type(&format!("varchar({})", needed + 5))
                .unwrap();
            match spec.check_type(&format!("char({})", needed - 1)) {
                Err(MaskError::TooShort {
                    needed: n, length, ..
                }) => {
                    assert_eq!((n, length), (needed, needed - 1))
                }
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn specs_built_in_code_are_validated_too() {
        assert!(MaskSpec::new(MaskKind::AgeBand { width: 0 }).is_err());
        assert!(MaskSpec::new(MaskKind::Round { digits: 40 }).is_err());
        assert!(MaskSpec::new(MaskKind::Pseudonym { key: "a b".into() }).is_err());
        assert!(MaskSpec::new(MaskKind::Email).is_ok());
    }
}
