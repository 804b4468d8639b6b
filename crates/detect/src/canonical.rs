//! The canonical form of a lookup key: the one text every spelling of a value that
//! finds the same row comes down to, so that its fingerprint does not depend on how
//! a client typed or sent it.
//!
//! What counts as the same value is the key column's: PostgreSQL compares the
//! pinned value as the column's type. So a constant loses its SQL quoting and
//! escapes (`'…'`, `E'…'`, `U&'…'`, `$$…$$`), an integer or numeric key its leading
//! zeros, signs, underscores, `0x` spelling and zero decimals, a `char(n)` key its
//! trailing blanks (which `char` comparison ignores), a `uuid` its braces, hyphens
//! and case. Binary parameters are decoded by their type — the one the client
//! declared, or PostgreSQL described or inferred — never guessed from the bytes.
//!
//! A value that cannot be read (bytes that do not fit their type, a type not known
//! here) has no canonical form; the caller counts it as a key it could not
//! fingerprint rather than dropping it.

/// How a key column compares, from its declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `text`, `varchar`, and every type compared as its text.
    Text,
    /// `char(n)`: trailing blanks do not count.
    Char,
    /// `citext`: case does not count.
    CaseInsensitive,
    /// `smallint`, `integer`, `bigint`, `numeric`, `real`, `double precision`.
    Number,
    Uuid,
}

impl KeyKind {
    /// The kind of a column declared `pg_type` in the classification.
    pub fn of(pg_type: &str) -> KeyKind {
        let base = base_type(pg_type);
        match base.as_str() {
            "char" | "character" | "bpchar" | "nchar" | "national character" => KeyKind::Char,
            "citext" => KeyKind::CaseInsensitive,
            "uuid" => KeyKind::Uuid,
            _ if type_oid(pg_type).is_some_and(|oid| NUMBER_OIDS.contains(&oid)) => KeyKind::Number,
            _ => KeyKind::Text,
        }
    }
}

/// OIDs of the number types.
const NUMBER_OIDS: [u32; 7] = [INT2, INT4, INT8, OID, FLOAT4, FLOAT8, NUMERIC];

const BOOL: u32 = 16;
const CHAR: u32 = 18;
const NAME: u32 = 19;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const OID: u32 = 26;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const UNKNOWN: u32 = 705;
const BPCHAR: u32 = 1042;
const VARCHAR: u32 = 1043;
const NUMERIC: u32 = 1700;
const UUID: u32 = 2950;

/// A type name without its modifiers, lower case, single-spaced.
fn base_type(pg_type: &str) -> String {
    let name = pg_type.split('(').next().unwrap_or_default();
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    name.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The OID of a built-in type by its SQL name, for a parameter whose type the
/// server infers from the key column it is compared with.
pub fn type_oid(pg_type: &str) -> Option<u32> {
    Some(match base_type(pg_type).as_str() {
        "smallint" | "int2" | "smallserial" | "serial2" => INT2,
        "integer" | "int" | "int4" | "serial" | "serial4" => INT4,
        "bigint" | "int8" | "bigserial" | "serial8" => INT8,
        "oid" => OID,
        "real" | "float4" => FLOAT4,
        "double precision" | "float8" | "float" => FLOAT8,
        "numeric" | "decimal" => NUMERIC,
        "char" | "character" | "bpchar" | "nchar" | "national character" => BPCHAR,
        "varchar" | "character varying" | "national character varying" => VARCHAR,
        "text" => TEXT,
        "name" => NAME,
        "uuid" => UUID,
        "boolean" | "bool" => BOOL,
        _ => return None,
    })
}

/// A key value as the audit trail holds it.
#[derive(Debug, Clone, Copy)]
pub enum RawKey<'a> {
    /// A constant as typed in the statement, quotes, prefix and escapes included.
    Constant(&'a str),
    /// A text value: a parameter sent in text format, or a policy's honeytoken.
    Text(&'a str),
    /// A parameter sent in binary format, with its type's OID if known.
    Binary(&'a [u8], Option<u32>),
}

/// The canonical form of `raw` compared with a `kind` column; `None` when it
/// cannot be read.
pub fn canonical(raw: RawKey<'_>, kind: KeyKind) -> Option<String> {
    let text = match raw {
        RawKey::Constant(typed) => constant(typed)?,
        RawKey::Text(text) => text.to_owned(),
        RawKey::Binary(bytes, oid) => binary(bytes, oid?)?,
    };
    Some(match kind {
        KeyKind::Text => text,
        KeyKind::Char => text.trim_end_matches(' ').to_owned(),
        KeyKind::CaseInsensitive => text.to_lowercase(),
        KeyKind::Number => number(&text).unwrap_or(text),
        KeyKind::Uuid => uuid(&text).unwrap_or(text),
    })
}

/// The value of a SQL constant as PostgreSQL's lexer reads it (with
/// `standard_conforming_strings` on, which restricted accounts cannot change).
fn constant(typed: &str) -> Option<String> {
    let bytes = typed.as_bytes();
    match bytes.first()? {
        b'\'' => quoted(&typed[1..]),
        b'$' => {
            let tag_end = typed[1..].find('$')? + 2;
            let tag = &typed[..tag_end];
            typed[tag_end..].strip_suffix(tag).map(str::to_owned)
        }
        b'e' | b'E' if bytes.get(1) == Some(&b'\'') => escaped(&typed[2..]),
        b'n' | b'N' if bytes.get(1) == Some(&b'\'') => quoted(&typed[2..]),
        b'u' | b'U'
            if typed
                .get(..3)
                .is_some_and(|p| p.eq_ignore_ascii_case("u&'")) =>
        {
            unicode(&quoted(&typed[3..])?)
        }
        // Bit strings are not keys; kept as typed.
        b'b' | b'B' | b'x' | b'X' if bytes.get(1) == Some(&b'\'') => Some(typed.to_owned()),
        _ => Some(typed.to_owned()),
    }
}

/// The body of `'…'` (after the opening quote): `''` is one quote.
fn quoted(rest: &str) -> Option<String> {
    let body = rest.strip_suffix('\'')?;
    Some(body.replace("''", "'"))
}

/// The body of `E'…'`: backslash escapes and `''`.
fn escaped(rest: &str) -> Option<String> {
    let body = rest.strip_suffix('\'')?;
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                chars.next_if_eq(&'\'');
                out.push(b'\'');
            }
            '\\' => {
                let e = chars.next()?;
                match e {
                    'b' => out.push(8),
                    'f' => out.push(12),
                    'n' => out.push(b'\n'),
                    'r' => out.push(b'\r'),
                    't' => out.push(b'\t'),
                    '0'..='7' => {
                        let mut value = e.to_digit(8)?;
                        for _ in 0..2 {
                            match chars.peek().and_then(|d| d.to_digit(8)) {
                                Some(d) => {
                                    value = value * 8 + d;
                                    chars.next();
                                }
                                None => break,
                            }
                        }
                        out.push(value as u8);
                    }
                    'x' if chars.peek().is_some_and(char::is_ascii_hexdigit) => {
                        let mut value = 0u32;
                        for _ in 0..2 {
                            match chars.peek().and_then(|d| d.to_digit(16)) {
                                Some(d) => {
                                    value = value * 16 + d;
                                    chars.next();
                                }
                                None => break,
                            }
                        }
                        out.push(value as u8);
                    }
                    'u' | 'U' => {
                        let len = if e == 'u' { 4 } else { 8 };
                        let hex: String = (0..len).filter_map(|_| chars.next()).collect();
                        let point = u32::from_str_radix(&hex, 16).ok()?;
                        let mut buf = [0; 4];
                        out.extend(char::from_u32(point)?.encode_utf8(&mut buf).as_bytes());
                    }
                    other => {
                        let mut buf = [0; 4];
                        out.extend(other.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
            other => {
                let mut buf = [0; 4];
                out.extend(other.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The escapes of `U&'…'` with the default escape character.
fn unicode(body: &str) -> Option<String> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let rest = chars.as_str();
        if let Some(after) = rest.strip_prefix('\\') {
            out.push('\\');
            chars = after.chars();
            continue;
        }
        let (len, digits) = match rest.strip_prefix('+') {
            Some(plus) => (7, plus.get(..6)?),
            None => (4, rest.get(..4)?),
        };
        out.push(char::from_u32(u32::from_str_radix(digits, 16).ok()?)?);
        chars = rest[len..].chars();
    }
    Some(out)
}

/// A binary parameter as the text its type reads as.
fn binary(bytes: &[u8], oid: u32) -> Option<String> {
    let int = |n: usize| -> Option<i64> {
        let b = (bytes.len() == n).then_some(bytes)?;
        Some(match n {
            2 => i16::from_be_bytes([b[0], b[1]]) as i64,
            4 => i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64,
            _ => i64::from_be_bytes(b.try_into().ok()?),
        })
    };
    Some(match oid {
        INT2 => int(2)?.to_string(),
        INT4 => int(4)?.to_string(),
        INT8 => int(8)?.to_string(),
        OID => (int(4)? as u32).to_string(),
        FLOAT4 => float(f32::from_be_bytes(bytes.try_into().ok()?) as f64)?,
        FLOAT8 => float(f64::from_be_bytes(bytes.try_into().ok()?))?,
        NUMERIC => binary_numeric(bytes)?,
        UUID => {
            let b: [u8; 16] = bytes.try_into().ok()?;
            uuid(&hex::encode(b))?
        }
        TEXT | VARCHAR | BPCHAR | NAME | UNKNOWN | CHAR => std::str::from_utf8(bytes).ok()?.into(),
        _ => return None,
    })
}

fn float(v: f64) -> Option<String> {
    v.is_finite().then(|| v.to_string())
}

/// PostgreSQL's binary `numeric`: digit count, weight, sign, display scale, then
/// base-10000 digits.
fn binary_numeric(bytes: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<u16> {
        Some(u16::from_be_bytes([
            *bytes.get(2 * i)?,
            *bytes.get(2 * i + 1)?,
        ]))
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i16 as i64;
    let sign = word(2)?;
    if bytes.len() != 8 + 2 * ndigits || weight.abs() > 4096 || !matches!(sign, 0 | 0x4000) {
        return None;
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(4 + i)).collect::<Option<_>>()?;
    if digits.iter().any(|d| *d > 9999) {
        return None;
    }
    let mut text = String::from(if sign == 0x4000 { "-" } else { "" });
    let groups = |range: std::ops::Range<i64>, text: &mut String| {
        for i in range {
            let d = usize::try_from(i).ok().and_then(|i| digits.get(i)).copied();
            text.push_str(&format!("{:04}", d.unwrap_or(0)));
        }
    };
    if weight >= 0 {
        groups(0..weight + 1, &mut text);
    } else {
        text.push('0');
    }
    text.push('.');
    groups(weight + 1..(ndigits as i64).max(weight + 1), &mut text);
    number(&text)
}

/// A number in PostgreSQL's input syntax (white space, sign, `0x`/`0o`/`0b`,
/// underscores, decimals, exponent) as `-123.45`: no leading zeros, no trailing
/// decimal zeros, no `-0`. `None` if it is not one.
pub fn number(text: &str) -> Option<String> {
    let t = text.trim_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, t) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let radix = match t.get(..2).map(str::to_ascii_lowercase).as_deref() {
        Some("0x") => 16,
        Some("0o") => 8,
        Some("0b") => 2,
        _ => 10,
    };
    let (int, frac) = if radix == 10 {
        decimal(t)?
    } else {
        (radix_digits(&t[2..], radix)?, String::new())
    };
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let mut out = String::with_capacity(int.len() + frac.len() + 3);
    if negative && !(int.is_empty() && frac.is_empty()) {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    Some(out)
}

/// Digits with single underscores between them.
fn digits(t: &str, radix: u32) -> Option<String> {
    if t.is_empty() || t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return None;
    }
    t.chars()
        .filter(|c| *c != '_')
        .map(|c| c.is_digit(radix).then_some(c))
        .collect()
}

/// `12.5e3` as its integer and decimal digits, the exponent applied.
fn decimal(t: &str) -> Option<(String, String)> {
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(at) => (&t[..at], t[at + 1..].parse::<i64>().ok()?),
        None => (t, 0),
    };
    if exponent.abs() > 1000 {
        return None;
    }
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let int = if int.is_empty() {
        String::new()
    } else {
        digits(int, 10)?
    };
    let frac = if frac.is_empty() {
        String::new()
    } else {
        digits(frac, 10)?
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let all = format!("{int}{frac}");
    let point = int.len() as i64 + exponent;
    Some(if point <= 0 {
        (
            String::new(),
            format!("{}{all}", "0".repeat((-point) as usize)),
        )
    } else if point as usize >= all.len() {
        (
            format!("{all}{}", "0".repeat(point as usize - all.len())),
            String::new(),
        )
    } else {
        let (i, f) = all.split_at(point as usize);
        (i.to_owned(), f.to_owned())
    })
}

/// Digits of another radix as decimal digits (values up to 128 bits).
fn radix_digits(t: &str, radix: u32) -> Option<String> {
    let digits = digits(t, radix)?;
    u128::from_str_radix(&digits, radix)
        .ok()
        .map(|v| v.to_string())
}

/// A uuid in any spelling `uuid_in` takes, as `8-4-4-4-12` lower-case hex.
fn uuid(text: &str) -> Option<String> {
    let t = text.trim();
    let t = t
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(t);
    let hex: String = t.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) || t.starts_with('-') {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(raw: RawKey<'_>, pg_type: &str) -> Option<String> {
        canonical(raw, KeyKind::of(pg_type))
    }

    #[test]
    fn every_spelling_of_a_char_key_comes_down_to_one() {
        let padded = format!("'000000000500{}'", " ".repeat(250));
        for typed in [
            "'000000000500'",
            padded.as_str(),
            "E'0000000005\\x300'",
            "E'00000000050\\060'",
            "$$000000000500$$",
            "$k$000000000500$k$",
            "U&'00000000050\\0030'",
            "N'000000000500'",
        ] {
            assert_eq!(
                c(RawKey::Constant(typed), "char(12)").as_deref(),
                Some("000000000500"),
                "{typed}"
            );
        }
        assert_eq!(
            c(RawKey::Text("000000000500   "), "character(12)").as_deref(),
            Some("000000000500")
        );
        // Leading blanks count in char comparison; trailing ones count in text.
        assert_eq!(c(RawKey::Text(" 5 "), "char(3)").as_deref(), Some(" 5"));
        assert_eq!(c(RawKey::Text(" 5 "), "text").as_deref(), Some(" 5 "));
        assert_eq!(
            c(RawKey::Constant("'it''s'"), "varchar(20)").as_deref(),
            Some("it's")
        );
    }

    #[test]
    fn every_spelling_of_a_number_comes_down_to_one() {
        for typed in [
            "1094795585",
            "01094795585",
            &format!("{}1094795585", "0".repeat(260)),
            "1094795585.000",
            "1.094795585e9",
            "'  +1094795585 '",
            "'1_094_795_585'",
            "'0x4141_4141'",
            "'0o10120240501'",
        ] {
            assert_eq!(
                c(RawKey::Constant(typed), "bigint").as_deref(),
                Some("1094795585"),
                "{typed}"
            );
        }
        assert_eq!(number("-0.0").as_deref(), Some("0"));
        assert_eq!(number("-.50").as_deref(), Some("-0.5"));
        assert_eq!(number("12e-3").as_deref(), Some("0.012"));
        assert_eq!(number("abc"), None);
        assert_eq!(number("1__0"), None);
    }

    #[test]
    fn binary_parameters_are_read_by_their_type_never_by_their_bytes() {
        // 1094795585 is "AAAA": an int4 is a number whatever its bytes look like.
        let aaaa = 1094795585i32.to_be_bytes();
        assert_eq!(
            c(RawKey::Binary(&aaaa, Some(INT4)), "integer").as_deref(),
            Some("1094795585")
        );
        assert_eq!(
            c(RawKey::Binary(&aaaa, Some(TEXT)), "text").as_deref(),
            Some("AAAA")
        );
        assert_eq!(
            c(
                RawKey::Binary(&1094795585i64.to_be_bytes(), Some(INT8)),
                "integer"
            )
            .as_deref(),
            Some("1094795585")
        );
        assert_eq!(c(RawKey::Binary(&aaaa, Some(INT8)), "bigint"), None);
        assert_eq!(c(RawKey::Binary(&aaaa, None), "bigint"), None);
        assert_eq!(
            c(
                RawKey::Binary(&1094795585f64.to_be_bytes(), Some(FLOAT8)),
                "bigint"
            )
            .as_deref(),
            Some("1094795585")
        );
        // numeric 1094795585.00: 3 digits, weight 2, scale 2.
        let mut n = Vec::new();
        for w in [3u16, 2, 0, 2, 10, 9479, 5585] {
            n.extend(w.to_be_bytes());
        }
        assert_eq!(
            c(RawKey::Binary(&n, Some(NUMERIC)), "bigint").as_deref(),
            Some("1094795585")
        );
        // numeric -0.0012: 1 digit, weight -1.
        let mut n = Vec::new();
        for w in [1u16, 0xffff, 0x4000, 4, 12] {
            n.extend(w.to_be_bytes());
        }
        assert_eq!(binary_numeric(&n).as_deref(), Some("-0.0012"));
    }

    #[test]
    fn uuids_and_kinds() {
        let u = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        for typed in [
            "{A0EEBC99-9C0B4EF8-BB6D6BB9-BD380A11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
        ] {
            assert_eq!(
                c(RawKey::Text(typed), "uuid").as_deref(),
                Some(u),
                "{typed}"
            );
        }
        assert_eq!(KeyKind::of("CHARACTER (12)"), KeyKind::Char);
        assert_eq!(KeyKind::of("numeric(12,0)"), KeyKind::Number);
        assert_eq!(KeyKind::of("character varying(20)"), KeyKind::Text);
        assert_eq!(type_oid("double precision"), Some(FLOAT8));
        assert_eq!(type_oid("date"), None);
    }
}
