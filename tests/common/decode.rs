//! PostgreSQL's text form of binary result values, for the types the
//! enforcement tests meet.

use tokio_postgres::types::{Kind, Type};

fn be<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes
        .get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; N])
}

/// PostgreSQL's text form of a binary value, for the types tests meet;
/// anything else is shown as (lossy) UTF-8, which keeps embedded text visible
/// to the leak scanner.
pub fn decode(ty: &Type, bytes: &[u8]) -> String {
    match *ty {
        Type::BOOL => if bytes.first() == Some(&0) { "f" } else { "t" }.to_string(),
        Type::INT2 => i16::from_be_bytes(be(bytes, 0)).to_string(),
        Type::INT4 => i32::from_be_bytes(be(bytes, 0)).to_string(),
        Type::INT8 => i64::from_be_bytes(be(bytes, 0)).to_string(),
        Type::OID | Type::XID | Type::CID | Type::REGPROC | Type::REGCLASS | Type::REGTYPE => {
            u32::from_be_bytes(be(bytes, 0)).to_string()
        }
        Type::FLOAT4 => f32::from_be_bytes(be(bytes, 0)).to_string(),
        Type::FLOAT8 => f64::from_be_bytes(be(bytes, 0)).to_string(),
        Type::NUMERIC => numeric(bytes),
        Type::DATE => date(i64::from(i32::from_be_bytes(be(bytes, 0)))),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => timestamp(i64::from_be_bytes(be(bytes, 0))),
        Type::JSONB => String::from_utf8_lossy(bytes.get(1..).unwrap_or_default()).into_owned(),
        Type::BYTEA => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("\\x{hex}")
        }
        Type::RECORD => record(bytes),
        _ => match ty.kind() {
            Kind::Array(_) => array(bytes),
            Kind::Composite(_) => record(bytes),
            _ => String::from_utf8_lossy(bytes).into_owned(),
        },
    }
}

fn by_oid(oid: u32, bytes: &[u8]) -> String {
    match Type::from_oid(oid) {
        Some(ty) => decode(&ty, bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// `(a,b,…)`; fields unquoted.
fn record(bytes: &[u8]) -> String {
    let count = i32::from_be_bytes(be(bytes, 0)).max(0) as usize;
    let mut at = 4;
    let mut fields = Vec::with_capacity(count);
    for _ in 0..count {
        let oid = u32::from_be_bytes(be(bytes, at));
        let len = i32::from_be_bytes(be(bytes, at + 4));
        at += 8;
        if len < 0 {
            fields.push(String::new());
        } else {
            let end = (at + len as usize).min(bytes.len());
            fields.push(by_oid(oid, &bytes[at.min(end)..end]));
            at = end;
        }
    }
    format!("({})", fields.join(","))
}

/// `{a,b,…}`, flattened over all dimensions.
fn array(bytes: &[u8]) -> String {
    let dims = i32::from_be_bytes(be(bytes, 0)).max(0) as usize;
    let oid = u32::from_be_bytes(be(bytes, 8));
    let mut count = if dims == 0 { 0 } else { 1 };
    for d in 0..dims {
        count *= i32::from_be_bytes(be(bytes, 12 + d * 8)).max(0) as usize;
    }
    let mut at = 12 + dims * 8;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let len = i32::from_be_bytes(be(bytes, at));
        at += 4;
        if len < 0 {
            items.push("NULL".to_string());
        } else {
            let end = (at + len as usize).min(bytes.len());
            items.push(by_oid(oid, &bytes[at.min(end)..end]));
            at = end;
        }
    }
    format!("{{{}}}", items.join(","))
}

fn numeric(bytes: &[u8]) -> String {
    let ndigits = i16::from_be_bytes(be(bytes, 0)).max(0) as usize;
    let weight = i16::from_be_bytes(be(bytes, 2)) as i64;
    let sign = u16::from_be_bytes(be(bytes, 4));
    let dscale = i16::from_be_bytes(be(bytes, 6)).max(0) as usize;
    match sign {
        0xC000 => return "NaN".to_string(),
        0xD000 => return "Infinity".to_string(),
        0xF000 => return "-Infinity".to_string(),
        _ => {}
    }
    let digits: Vec<i64> = (0..ndigits)
        .map(|i| i64::from(i16::from_be_bytes(be(bytes, 8 + i * 2))))
        .collect();
    let digit = |k: i64| -> i64 {
        if k < 0 {
            0
        } else {
            digits.get(k as usize).copied().unwrap_or(0)
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                s.push_str(&digit(k).to_string());
            } else {
                s.push_str(&format!("{:04}", digit(k)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut k = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(k)));
            k += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    s
}

/// Days since 2000-01-01 as `YYYY-MM-DD` (proleptic Gregorian).
fn date(days: i64) -> String {
    if days == i64::from(i32::MAX) {
        return "infinity".to_string();
    }
    if days == i64::from(i32::MIN) {
        return "-infinity".to_string();
    }
    let (y, m, d) = civil(days + 10_957);
    format!("{y:04}-{m:02}-{d:02}")
}

fn timestamp(micros: i64) -> String {
    let day = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let (h, min) = (rest / 3_600_000_000, rest / 60_000_000 % 60);
    let (sec, frac) = (rest / 1_000_000 % 60, rest % 1_000_000);
    let mut s = format!("{} {h:02}:{min:02}:{sec:02}", date(day));
    if frac != 0 {
        s.push_str(format!(".{frac:06}").trim_end_matches('0'));
    }
    s
}

/// Civil date from days since 1970-01-01.
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    #[test]
    fn dates_and_numerics_decode_like_postgres_prints_them() {
        assert_eq!(date(0), "2000-01-01");
        assert_eq!(date(-1), "1999-12-31");
        assert_eq!(date(8_842), "2024-03-17");
        // 1234567.89: weight 1, digits [123, 4567, 8900], dscale 2
        let mut b = Vec::new();
        for v in [3i16, 1, 0, 2, 123, 4567, 8900] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(numeric(&b), "1234567.89");
        // 0.05: weight -1, digits [500], dscale 2
        let mut b = Vec::new();
        for v in [1i16, -1, 0, 2, 500] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(numeric(&b), "0.05");
    }
}
