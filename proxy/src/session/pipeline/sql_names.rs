//! The prepared statements a text makes or drops by SQL (`PREPARE name …`,
//! `DEALLOCATE [PREPARE] name | ALL`), by name, so the session's counts follow
//! them: drivers such as psycopg 3 and ActiveRecord evict their statements with SQL
//! `DEALLOCATE`, and a command tag does not say which statement went.
//!
//! Statements are split on `;` outside quotes, dollar quotes and comments, and
//! names are read as PostgreSQL reads identifiers: folded to lower case unless
//! quoted, cut to 63 bytes.

use std::collections::VecDeque;

/// What one statement does to the session's prepared statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlNameOp {
    /// `PREPARE name …`, a statement `bytes` long.
    Prepare { name: String, bytes: usize },
    /// `DEALLOCATE [PREPARE] name`.
    Deallocate(String),
    /// `DEALLOCATE [PREPARE] ALL`.
    DeallocateAll,
}

/// PostgreSQL's NAMEDATALEN - 1.
const MAX_NAME: usize = 63;

/// The `PREPARE`s and `DEALLOCATE`s of `sql`, in order.
pub fn sql_name_ops(sql: &[u8]) -> VecDeque<SqlNameOp> {
    let mut ops = VecDeque::new();
    let mut start = 0;
    while start < sql.len() {
        let end = statement_end(sql, start);
        if let Some(op) = statement_op(&sql[start..end]) {
            ops.push_back(op);
        }
        start = end + 1;
    }
    ops
}

/// The index of the `;` that ends the statement starting at `i` (or the length).
fn statement_end(sql: &[u8], mut i: usize) -> usize {
    while i < sql.len() {
        i = match sql[i] {
            b';' => return i,
            b'\'' => closing_quote(sql, i + 1, b'\'', escapes_before(sql, i)),
            b'"' => closing_quote(sql, i + 1, b'"', false),
            b'-' if sql.get(i + 1) == Some(&b'-') => line_end(sql, i),
            b'/' if sql.get(i + 1) == Some(&b'*') => comment_end(sql, i),
            b'$' => dollar_quote_end(sql, i).unwrap_or(i + 1),
            _ => i + 1,
        };
    }
    sql.len()
}

/// Whether the quote at `i` opens an `E'…'` string, where backslash escapes.
fn escapes_before(sql: &[u8], i: usize) -> bool {
    i > 0
        && matches!(sql[i - 1], b'e' | b'E')
        && (i < 2 || !(sql[i - 2].is_ascii_alphanumeric() || sql[i - 2] == b'_'))
}

/// Just past the quote that closes the string or identifier begun before `i`;
/// a doubled quote stands for one.
fn closing_quote(sql: &[u8], mut i: usize, quote: u8, backslash: bool) -> usize {
    while i < sql.len() {
        match sql[i] {
            b'\\' if backslash => i += 2,
            c if c == quote && sql.get(i + 1) == Some(&quote) => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    sql.len()
}

fn line_end(sql: &[u8], i: usize) -> usize {
    sql[i..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(sql.len(), |n| i + n + 1)
}

/// Just past the end of the (nested) block comment at `i`.
fn comment_end(sql: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i + 1 < sql.len() {
        match (sql[i], sql[i + 1]) {
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
    sql.len()
}

/// Just past the `$tag$…$tag$` string at `i`, if a dollar quote opens there (not
/// a parameter such as `$1`).
fn dollar_quote_end(sql: &[u8], i: usize) -> Option<usize> {
    let rest = &sql[i + 1..];
    let tag_len = rest
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80))?;
    if rest[tag_len] != b'$' || rest.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let tag = &sql[i..i + tag_len + 2];
    let body = i + tag.len();
    let close = sql[body..].windows(tag.len()).position(|w| w == tag)?;
    Some(body + close + tag.len())
}

/// Words of a statement, comments and whitespace skipped.
struct Words<'a> {
    sql: &'a [u8],
    i: usize,
}

/// One word: an identifier or keyword, with whether it was quoted.
struct Word {
    text: String,
    quoted: bool,
}

impl Words<'_> {
    fn skip_blank(&mut self) {
        loop {
            let rest = &self.sql[self.i..];
            if rest.first().is_some_and(u8::is_ascii_whitespace) {
                self.i += 1;
            } else if rest.starts_with(b"--") {
                self.i = line_end(self.sql, self.i);
            } else if rest.starts_with(b"/*") {
                self.i = comment_end(self.sql, self.i);
            } else {
                return;
            }
        }
    }

    fn next_word(&mut self) -> Option<Word> {
        self.skip_blank();
        let rest = &self.sql[self.i..];
        if rest.first() == Some(&b'"') {
            let end = closing_quote(self.sql, self.i + 1, b'"', false);
            let inner = &self.sql[self.i + 1..end.saturating_sub(1).max(self.i + 1)];
            self.i = end;
            let text = String::from_utf8_lossy(inner).replace("\"\"", "\"");
            return Some(Word {
                text: cut(text),
                quoted: true,
            });
        }
        let len = rest
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80))
            .unwrap_or(rest.len());
        if len == 0 {
            return None;
        }
        self.i += len;
        let text = String::from_utf8_lossy(&rest[..len]).to_ascii_lowercase();
        Some(Word {
            text: cut(text),
            quoted: false,
        })
    }
}

/// An identifier cut to 63 bytes, on a character boundary.
fn cut(mut text: String) -> String {
    if text.len() > MAX_NAME {
        let mut end = MAX_NAME;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn statement_op(statement: &[u8]) -> Option<SqlNameOp> {
    let mut words = Words {
        sql: statement,
        i: 0,
    };
    let keyword = |w: &Word, k: &str| !w.quoted && w.text == k;
    let first = words.next_word()?;
    if keyword(&first, "prepare") {
        let name = words.next_word()?;
        return Some(SqlNameOp::Prepare {
            name: name.text,
            bytes: statement.len(),
        });
    }
    if !keyword(&first, "deallocate") {
        return None;
    }
    let mut name = words.next_word()?;
    if keyword(&name, "prepare") {
        if let Some(next) = words.next_word() {
            name = next;
        }
    }
    Some(if keyword(&name, "all") {
        SqlNameOp::DeallocateAll
    } else {
        SqlNameOp::Deallocate(name.text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(sql: &str) -> Vec<SqlNameOp> {
        sql_name_ops(sql.as_bytes()).into_iter().collect()
    }

    fn dealloc(name: &str) -> SqlNameOp {
        SqlNameOp::Deallocate(name.into())
    }

    #[test]
    fn deallocations_are_read_by_name_as_postgresql_reads_them() {
        assert_eq!(ops("DEALLOCATE a1"), [dealloc("a1")]);
        assert_eq!(
            ops("  deallocate PREPARE \"Mixed\"\"Q\" ;"),
            [dealloc("Mixed\"Q")]
        );
        assert_eq!(ops("DEALLOCATE _pg3_12"), [dealloc("_pg3_12")]);
        assert_eq!(ops("DEALLOCATE Upper"), [dealloc("upper")]);
        assert_eq!(ops("DEALLOCATE prepare"), [dealloc("prepare")]);
        assert_eq!(ops("DEALLOCATE ALL"), [SqlNameOp::DeallocateAll]);
        assert_eq!(ops("deallocate prepare all"), [SqlNameOp::DeallocateAll]);
        assert_eq!(ops("DEALLOCATE \"all\""), [dealloc("all")]);
        assert_eq!(
            ops(&format!("DEALLOCATE {}", "x".repeat(80))),
            [dealloc(&"x".repeat(63))]
        );
        assert_eq!(ops("/* c */ -- d\n DEALLOCATE q"), [dealloc("q")]);
    }

    #[test]
    fn statements_are_split_outside_quotes_and_comments() {
        let sql = "SELECT 'a;DEALLOCATE x'; PREPARE p AS SELECT $1::int; \
                   SELECT $$;DEALLOCATE y;$$, E'\\';DEALLOCATE z', \"q;\" /* ; DEALLOCATE w */; \
                   DEALLOCATE p; DEALLOCATE ALL";
        let found = ops(sql);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            matches!(&found[0], SqlNameOp::Prepare { name, bytes } if name == "p" && *bytes > 20)
        );
        assert_eq!(found[1], dealloc("p"));
        assert_eq!(found[2], SqlNameOp::DeallocateAll);
        assert!(ops("SELECT 1; EXECUTE p; DISCARD ALL").is_empty());
        assert!(ops("").is_empty() && ops(";;").is_empty());
    }
}
