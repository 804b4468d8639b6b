use std::fmt;

/// A strictly positive decimal number kept as text.
///
/// Stored as a string so a width like `0.1` reaches PostgreSQL exactly as
/// written (no binary float rounding), and so the only characters that can
/// ever reach SQL are ASCII digits and at most one dot. The text is canonical
/// (no leading zeros, no trailing fractional zeros) so equal widths compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NumericLiteral(String);

/// Longest literal accepted; far beyond any useful bucket width.
const MAX_LEN: usize = 64;

impl NumericLiteral {
    /// Parses `digits[.digits]`: no sign, exponent, spaces or separators; must be above zero.
    pub fn parse_positive(s: &str) -> Option<Self> {
        if s.is_empty() || s.len() > MAX_LEN {
            return None;
        }
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (s, None),
        };
        let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.unwrap_or("").trim_end_matches('0');
        if int.is_empty() && frac.bytes().all(|b| b == b'0') {
            return None;
        }
        let int = if int.is_empty() { "0" } else { int };
        Some(NumericLiteral(if frac.is_empty() {
            int.to_string()
        } else {
            format!("{int}.{frac}")
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Number of digits after the decimal point.
    pub fn scale(&self) -> u32 {
        self.0
            .split_once('.')
            .map_or(0, |(_, f)| u32::try_from(f.len()).unwrap_or(u32::MAX))
    }

    /// Whether the value is at most `10^exp`; decides if a bucket is no coarser
    /// than the column's own resolution.
    pub fn le_pow10(&self, exp: i32) -> bool {
        let (int, frac) = self.0.split_once('.').unwrap_or((&self.0, ""));
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        let k = i64::from(exp) + frac.len() as i64;
        if k < 0 {
            return false;
        }
        let len = digits.len() as i64;
        len < k + 1
            || (len == k + 1 && digits[1..].bytes().all(|b| b == b'0') && digits.starts_with('1'))
    }
}

impl fmt::Display for NumericLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> NumericLiteral {
        NumericLiteral::parse_positive(s).unwrap_or_else(|| panic!("{s:?} should parse"))
    }

    #[test]
    fn parses_and_canonicalizes() {
        assert_eq!(lit("1000").as_str(), "1000");
        assert_eq!(lit("007").as_str(), "7");
        assert_eq!(lit("0.50").as_str(), "0.5");
        assert_eq!(lit("10.000").as_str(), "10");
        assert_eq!(lit("0.001").scale(), 3);
        assert_eq!(lit("250").scale(), 0);
    }

    #[test]
    fn rejects_everything_else() {
        for s in [
            "",
            "0",
            "0.000",
            "-5",
            "+5",
            "1e3",
            "1.",
            ".5",
            "1.2.3",
            " 1",
            "1 ",
            "1_000",
            "1,5",
            "NaN",
            "inf",
            "١٢",
            "5'; DROP TABLE x; --",
            "1\0",
        ] {
            assert_eq!(NumericLiteral::parse_positive(s), None, "{s:?}");
        }
        assert_eq!(NumericLiteral::parse_positive(&"9".repeat(65)), None);
    }

    #[test]
    fn compares_with_powers_of_ten() {
        assert!(lit("1").le_pow10(0));
        assert!(!lit("2").le_pow10(0));
        assert!(lit("0.01").le_pow10(-2));
        assert!(!lit("0.02").le_pow10(-2));
        assert!(!lit("0.01").le_pow10(-3));
        assert!(lit("0.001").le_pow10(-2));
        assert!(lit("100").le_pow10(2));
        assert!(lit("99.5").le_pow10(2));
        assert!(!lit("100.5").le_pow10(2));
        assert!(!lit("1000").le_pow10(2));
    }
}
