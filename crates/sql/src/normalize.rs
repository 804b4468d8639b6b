//! A statement as the audit trail keeps it: its text with every constant replaced
//! by a numbered placeholder, and the constants apart, to be sealed.
//!
//! Written by hand rather than on sqlparser's tokenizer because it runs on every
//! statement of every account, the unrestricted ones included, on the session's
//! task: one pass over the bytes, two allocations, no token vector. It is not a
//! parser and decides nothing; it only has to find where PostgreSQL's lexer sees
//! constants and comments (`scan.l`): quoted strings in all their prefixed forms
//! (`E'…'`, `B'…'`, `X'…'`, `N'…'`, `U&'…'`), dollar-quoted strings, numbers, and
//! `--` and nested `/* */` comments, which may quote data and are dropped. Quoted
//! identifiers are names and stay, as in `pg_stat_statements`.
//!
//! Whatever it cannot place (an unterminated string or comment) is treated as a
//! constant to the end of the text, so nothing typed after it reaches the clear text.

use std::fmt::Write as _;

/// Longest normalized text kept; a longer one ends in `…`.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;

/// Longest total of constants kept; the rest is cut and [`Normalized::cut`] says so.
pub const MAX_LITERAL_BYTES: usize = 1024 * 1024;

/// A statement split into its shape and its constants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Normalized {
    /// The statement with constants as `$L1`, `$L2`, … (bind parameters stay `$1`).
    pub text: String,
    /// The constants as typed, quotes and prefixes included, in order.
    pub literals: Vec<String>,
    /// Constants were left out past [`MAX_LITERAL_BYTES`], or text past [`MAX_TEXT_BYTES`].
    pub cut: bool,
}

/// Splits `sql` into its normalized text and its constants.
pub fn normalize(sql: &str) -> Normalized {
    let mut scan = Scan::new(sql, false);
    scan.run();
    scan.out
}

/// Where each constant [`normalize`] keeps starts and ends in `sql` (byte offsets,
/// end exclusive), in the order of [`Normalized::literals`]: how the analyzer names
/// the constant a lookup pinned.
pub(crate) fn literal_spans(sql: &str) -> Vec<(usize, usize)> {
    let mut scan = Scan::new(sql, true);
    scan.run();
    scan.spans
}

struct Scan<'a> {
    src: &'a [u8],
    pos: usize,
    out: Normalized,
    literal_bytes: usize,
    /// Whitespace or a comment was passed since the last piece.
    space: bool,
    /// The text was cut: constants are still collected, the text is not extended.
    text_full: bool,
    /// Collect [`literal_spans`] rather than the text.
    want_spans: bool,
    spans: Vec<(usize, usize)>,
}

impl<'a> Scan<'a> {
    fn new(sql: &'a str, want_spans: bool) -> Scan<'a> {
        let capacity = if want_spans {
            0
        } else {
            sql.len().min(MAX_TEXT_BYTES)
        };
        Scan {
            src: sql.as_bytes(),
            pos: 0,
            out: Normalized {
                text: String::with_capacity(capacity),
                ..Normalized::default()
            },
            literal_bytes: 0,
            space: false,
            text_full: want_spans,
            want_spans,
            spans: Vec::new(),
        }
    }

    fn run(&mut self) {
        while self.pos < self.src.len() {
            let start = self.pos;
            let b = self.src[start];
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
                    self.pos += 1;
                    self.space = true;
                }
                b'-' if self.peek(1) == Some(b'-') => {
                    self.pos = find(self.src, start, b'\n').unwrap_or(self.src.len());
                    self.space = true;
                }
                b'/' if self.peek(1) == Some(b'*') => {
                    self.pos = block_comment_end(self.src, start);
                    self.space = true;
                }
                b'\'' => {
                    self.pos = quoted_end(self.src, start + 1, false);
                    self.literal(start);
                }
                b'"' => {
                    self.pos = find_quote_end(self.src, start + 1, b'"');
                    self.piece(start);
                }
                b'$' => self.dollar(start),
                b'0'..=b'9' => self.number(start),
                b'.' if self.peek(1).is_some_and(|c| c.is_ascii_digit()) => self.number(start),
                _ if is_ident_start(b) => self.word(start),
                _ => {
                    // One character, however many bytes it has.
                    let len = utf8_len(b).min(self.src.len() - start);
                    self.pos = start + len;
                    self.piece(start);
                }
            }
            if !self.text_full && self.out.text.len() > MAX_TEXT_BYTES {
                // The constants after the cut are still kept (sealed): the trail
                // then holds every value a lookup pinned.
                self.cut_text();
                self.text_full = true;
            }
        }
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.src.get(self.pos + ahead).copied()
    }

    /// A keyword or name, or the prefix of a string constant.
    fn word(&mut self, start: usize) {
        let mut end = start + 1;
        while end < self.src.len() && is_ident_char(self.src[end]) {
            end += 1;
        }
        let word = &self.src[start..end];
        let next = self.src.get(end).copied();
        if word.len() == 1 && next == Some(b'\'') {
            let escapes = matches!(word[0], b'e' | b'E');
            if matches!(
                word[0],
                b'e' | b'E' | b'b' | b'B' | b'x' | b'X' | b'n' | b'N'
            ) {
                self.pos = quoted_end(self.src, end + 1, escapes);
                self.literal(start);
                return;
            }
        }
        if word.eq_ignore_ascii_case(b"u") && next == Some(b'&') {
            match self.src.get(end + 1) {
                Some(b'\'') => {
                    self.pos = quoted_end(self.src, end + 2, false);
                    self.literal(start);
                    return;
                }
                Some(b'"') => {
                    self.pos = find_quote_end(self.src, end + 2, b'"');
                    self.piece(start);
                    return;
                }
                _ => {}
            }
        }
        self.pos = end;
        self.piece(start);
    }

    /// `$1` (a parameter, kept), `$tag$…$tag$` (a constant), or a lone `$`.
    fn dollar(&mut self, start: usize) {
        let mut end = start + 1;
        if self.src.get(end).is_some_and(u8::is_ascii_digit) {
            while end < self.src.len() && self.src[end].is_ascii_digit() {
                end += 1;
            }
            self.pos = end;
            self.piece(start);
            return;
        }
        while end < self.src.len() && is_ident_char(self.src[end]) && self.src[end] != b'$' {
            end += 1;
        }
        if self.src.get(end) != Some(&b'$') {
            self.pos = start + 1;
            self.piece(start);
            return;
        }
        let tag = &self.src[start..=end];
        let body = end + 1;
        self.pos = self.src[body..]
            .windows(tag.len())
            .position(|w| w == tag)
            .map_or(self.src.len(), |at| body + at + tag.len());
        self.literal(start);
    }

    /// A numeric constant, with whatever junk PostgreSQL would read into it.
    fn number(&mut self, start: usize) {
        let mut end = start;
        while end < self.src.len() {
            let c = self.src[end];
            let exponent_sign = matches!(c, b'+' | b'-')
                && matches!(self.src[end - 1], b'e' | b'E')
                && self.src[start..end - 1]
                    .iter()
                    .all(|d| d.is_ascii_digit() || *d == b'.' || *d == b'_');
            if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || exponent_sign {
                // `1..5` is two numbers around `..`; stop before a second dot pair.
                if c == b'.' && self.src.get(end + 1) == Some(&b'.') {
                    break;
                }
                end += 1;
            } else {
                break;
            }
        }
        self.pos = end;
        self.literal(start);
    }

    fn literal(&mut self, start: usize) {
        let value = &self.src[start..self.pos];
        if self.literal_bytes + value.len() <= MAX_LITERAL_BYTES {
            self.literal_bytes += value.len();
            if self.want_spans {
                self.spans.push((start, self.pos));
            } else {
                self.out
                    .literals
                    .push(String::from_utf8_lossy(value).into_owned());
            }
        } else {
            self.out.cut = true;
        }
        if self.text_full {
            return;
        }
        let n = self.out.literals.len() + usize::from(self.out.cut);
        self.separate();
        // Writing into a String cannot fail.
        let _ = write!(self.out.text, "$L{n}");
    }

    fn piece(&mut self, start: usize) {
        if self.text_full {
            return;
        }
        self.separate();
        self.out
            .text
            .push_str(&String::from_utf8_lossy(&self.src[start..self.pos]));
    }

    fn separate(&mut self) {
        if self.space && !self.out.text.is_empty() {
            self.out.text.push(' ');
        }
        self.space = false;
    }

    fn cut_text(&mut self) {
        let mut cut = MAX_TEXT_BYTES;
        while !self.out.text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.out.text.truncate(cut);
        self.out.text.push('…');
        self.out.cut = true;
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn utf8_len(b: u8) -> usize {
    match b {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

fn find(src: &[u8], from: usize, byte: u8) -> Option<usize> {
    src[from..]
        .iter()
        .position(|b| *b == byte)
        .map(|at| from + at)
}

/// End of a `'…'` body starting at `from` (after the opening quote): a doubled quote
/// stays inside, and with `escapes` (`E'…'`) so does a backslashed one. Strings
/// continued over a line break (`'a'\n'b'`) are one constant in PostgreSQL; here
/// they are two, which hides the same bytes.
fn quoted_end(src: &[u8], from: usize, escapes: bool) -> usize {
    let mut i = from;
    while i < src.len() {
        match src[i] {
            b'\\' if escapes => i += 2,
            b'\'' if src.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    src.len()
}

/// End of a `"…"` identifier (doubled quotes stay inside).
fn find_quote_end(src: &[u8], from: usize, quote: u8) -> usize {
    let mut i = from;
    while i < src.len() {
        if src[i] == quote {
            if src.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    src.len()
}

/// End of a `/* */` comment at `start`; they nest in PostgreSQL.
fn block_comment_end(src: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < src.len() {
        match (src[i], src[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    src.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalizes_to(sql: &str, text: &str, literals: &[&str]) {
        let n = normalize(sql);
        assert_eq!(n.text, text, "{sql}");
        assert_eq!(n.literals, literals, "{sql}");
    }

    #[test]
    fn constants_become_numbered_placeholders() {
        normalizes_to(
            "SELECT full_name FROM participant WHERE citizen_id = '001203004567' AND age > 42",
            "SELECT full_name FROM participant WHERE citizen_id = $L1 AND age > $L2",
            &["'001203004567'", "42"],
        );
    }

    #[test]
    fn parameters_and_quoted_names_stay() {
        normalizes_to(
            r#"SELECT "Full Name" FROM t WHERE id = $1 AND x = U&"d\0061t""#,
            r#"SELECT "Full Name" FROM t WHERE id = $1 AND x = U&"d\0061t""#,
            &[],
        );
    }

    #[test]
    fn every_string_form_is_a_constant() {
        for (sql, literal) in [
            ("SELECT E'it\\'s'", "E'it\\'s'"),
            ("SELECT 'it''s'", "'it''s'"),
            ("SELECT $$a'b$$", "$$a'b$$"),
            ("SELECT $tag$x$y$tag$", "$tag$x$y$tag$"),
            ("SELECT U&'d\\0061t'", "U&'d\\0061t'"),
            ("SELECT X'DEAD'", "X'DEAD'"),
            ("SELECT b'0101'", "b'0101'"),
            ("SELECT N'tên'", "N'tên'"),
            ("SELECT 1.5e-3", "1.5e-3"),
            ("SELECT .5", ".5"),
            ("SELECT 0x1F", "0x1F"),
            ("SELECT 1_000", "1_000"),
        ] {
            normalizes_to(sql, "SELECT $L1", &[literal]);
        }
    }

    #[test]
    fn comments_are_dropped() {
        normalizes_to(
            "select 1 -- Nguyễn Văn An\n, /* 0912 /* nested */ 345678 */ 2",
            "select $L1 , $L2",
            &["1", "2"],
        );
    }

    #[test]
    fn names_with_digits_are_not_numbers() {
        normalizes_to(
            "SELECT col1, t2.x FROM t2",
            "SELECT col1, t2.x FROM t2",
            &[],
        );
    }

    #[test]
    fn an_unterminated_constant_hides_the_rest() {
        let n = normalize("SELECT 'unterminated secret AND more");
        assert_eq!(n.text, "SELECT $L1");
        let n = normalize("SELECT $q$ secret");
        assert_eq!(n.text, "SELECT $L1");
        let n = normalize("SELECT 1 /* secret");
        assert_eq!(n.text, "SELECT $L1");
    }

    #[test]
    fn the_text_is_bounded_and_says_so() {
        let long = format!("SELECT {}", "abc, ".repeat(5000));
        let n = normalize(&long);
        assert!(n.text.len() <= MAX_TEXT_BYTES + '…'.len_utf8());
        assert!(n.cut);
    }

    #[test]
    fn constants_after_the_cut_are_still_kept() {
        let long = format!(
            "SELECT {} FROM person WHERE citizen_id = '000000000500'",
            "abc, ".repeat(5000)
        );
        let n = normalize(&long);
        assert!(n.cut && !n.text.contains("citizen_id"));
        assert_eq!(n.literals, ["'000000000500'"]);
        let spans = literal_spans(&long);
        assert_eq!(spans.len(), 1);
        assert_eq!(&long[spans[0].0..spans[0].1], "'000000000500'");
    }

    #[test]
    fn spans_name_the_constants_in_order() {
        let sql = "SELECT 'a', E'b\\\\' , 42 /* 'no' */ FROM t WHERE x = $$c$$";
        let spans: Vec<&str> = literal_spans(sql)
            .into_iter()
            .map(|(s, e)| &sql[s..e])
            .collect();
        assert_eq!(spans, normalize(sql).literals);
    }

    #[test]
    fn multibyte_text_survives() {
        normalizes_to(
            "SELECT họ_tên FROM người WHERE tỉnh = 'Hà Nội'",
            "SELECT họ_tên FROM người WHERE tỉnh = $L1",
            &["'Hà Nội'"],
        );
    }

    proptest::proptest! {
        /// Whatever the text, no byte of a quoted constant reaches the clear text.
        #[test]
        fn no_quoted_constant_leaks(prefix in "[a-z =(),]{0,20}", secret in "[A-Z]{8}") {
            for quoted in [format!("'{secret}'"), format!("E'{secret}'"), format!("$${secret}$$")] {
                // A name running into `$$` takes it in (`a$$` is one name, as in PostgreSQL).
                let n = normalize(&format!("{prefix} {quoted} x"));
                proptest::prop_assert!(!n.text.contains(&secret), "{}", n.text);
            }
        }
    }
}
