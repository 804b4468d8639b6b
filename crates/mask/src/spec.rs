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
    /// `partial` around separators: keeps a prefix of variable length, up to and
    /// including the first `keep_before`, and/or a suffix from the last `keep_after`
    /// on; where a separator is not given, `keep_first`/`keep_last` apply. A
    /// separator that is not in the value keeps nothing on its side.
    PartialAround {
        keep_before: Option<String>,
        keep_after: Option<String>,
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
    /// Keep only the domain: `an.nguyen@gmail.com` → `***@gmail.com`, so not even
    /// the length of the local part shows.
    EmailDomain,
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
        params: &[
            "keep_first",
            "keep_last",
            "keep_before",
            "keep_after",
            "mask_char",
            "keep_length",
        ],
        allowed: "keep_first, keep_last, keep_before, keep_after, mask_char, keep_length",
    },
    no_params("citizen_id"),
    no_params("social_insurance_code"),
    no_params("health_card"),
    no_params("phone"),
    no_params("email"),
    no_params("email_domain"),
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
email, email_domain, initials, year, month, age_band, round, bucket, null, constant, pseudonym, pseudonym_digits";

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
            MaskKind::Partial { .. } | MaskKind::PartialAround { .. } => "partial",
            MaskKind::CitizenId => "citizen_id",
            MaskKind::SocialInsuranceCode => "social_insurance_code",
            MaskKind::HealthCard => "health_card",
            MaskKind::Phone => "phone",
            MaskKind::Email => "email",
            MaskKind::EmailDomain => "email_domain",
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
            "partial" => {
                let keep_before = p.optional_string("keep_before", SEPARATOR)?;
                let keep_after = p.optional_string("keep_after", SEPARATOR)?;
                let (keep_first, keep_last) = (p.count("keep_first")?, p.count("keep_last")?);
                let (mask_char, keep_length) =
                    (p.mask_char("mask_char")?, p.boolean("keep_length", true)?);
                if keep_before.is_none() && keep_after.is_none() {
                    MaskKind::Partial {
                        keep_first,
                        keep_last,
                        mask_char,
                        keep_length,
                    }
                } else {
                    MaskKind::PartialAround {
                        keep_before,
                        keep_after,
                        keep_first,
                        keep_last,
                        mask_char,
                        keep_length,
                    }
                }
            }
            "citizen_id" => MaskKind::CitizenId,
            "social_insurance_code" => MaskKind::SocialInsuranceCode,
            "health_card" => MaskKind::HealthCard,
            "phone" => MaskKind::Phone,
            "email" => MaskKind::Email,
            "email_domain" => MaskKind::EmailDomain,
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
            MaskKind::PartialAround {
                keep_before,
                keep_after,
                keep_first,
                keep_last,
                mask_char,
                ..
            } => {
                check_mask_char(*mask_char)?;
                for (name, separator, fixed, fixed_name) in [
                    ("keep_before", keep_before, keep_first, "keep_first"),
                    ("keep_after", keep_after, keep_last, "keep_last"),
                ] {
                    if let Some(separator) = separator {
                        check_separator(name, separator)?;
                        if *fixed > 0 {
                            return Err(MaskError::Conflict {
                                kind,
                                first: name,
                                second: fixed_name,
                            });
                        }
                    }
                }
                Ok(())
            }
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
            | MaskKind::PartialAround { .. }
            | MaskKind::EmailDomain
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
            MaskKind::PartialAround {
                keep_before,
                keep_after,
                keep_first,
                keep_last,
                mask_char,
                keep_length,
            } => {
                f.write_str(name)?;
                f.write_str("(")?;
                match keep_before {
                    Some(s) => write!(f, "keep_before={s:?}")?,
                    None => write!(f, "keep_first={keep_first}")?,
                }
                match keep_after {
                    Some(s) => write!(f, ", keep_after={s:?}")?,
                    None => write!(f, ", keep_last={keep_last}")?,
                }
                write!(f, ", mask_char={mask_char:?}")?;
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

    fn optional_string(
        &self,
        param: &'static str,
        expected: &'static str,
    ) -> Result<Option<String>, MaskError> {
        match self.table.get(param) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.type_error(param, expected)),
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

/// What `keep_before` and `keep_after` expect.
const SEPARATOR: &str = "a separator of 1 to 16 visible characters, such as \"@\" or \" \"";

/// A separator ends up inside a SQL string literal; like a mask character it must
/// be visible, but a space is a fine separator (between words).
fn check_separator(param: &'static str, separator: &str) -> Result<(), MaskError> {
    let count = separator.chars().count();
    let reason = if !(1..=16).contains(&count) {
        Some("it must be 1 to 16 characters")
    } else if separator
        .chars()
        .any(|c| c.is_control() || is_invisible(c) || c == '\\')
    {
        Some("control, invisible and backslash characters are not allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(MaskError::InvalidSeparator {
            param,
            value: separator.to_string(),
            reason,
        }),
        None => Ok(()),
    }
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
#[path = "spec_tests.rs"]
mod tests;
