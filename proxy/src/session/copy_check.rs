//! Checks the rows a restricted account sends with `COPY … FROM STDIN` as they stream.
//!
//! Text format, read as PostgreSQL reads it: a backslash escapes the byte after it
//! (so an escaped newline or tab is data, not a row or field end), rows end at an
//! unescaped newline (`\r\n` too; any other carriage return is refused), fields are
//! separated by unescaped tabs. The fields the account's row filter compares with a
//! literal must read exactly as that literal, with no escape at all; anything else
//! (another value, the value written with escapes, a wrong field count) is refused,
//! and the proxy fails the whole COPY before the row is complete upstream, so
//! PostgreSQL inserts none of it.
//!
//! Which COPY a CopyData belongs to is decided in the order the client sends, the
//! order PostgreSQL reads: each `COPY … FROM STDIN` of a Query takes the copy
//! messages that follow it up to a CopyDone or CopyFail, and any other message
//! (Flush and Sync aside, which a COPY swallows) ends every COPY sent before it, since
//! PostgreSQL reads it either after those COPYs or as the error that aborts them.
//! Server answers play no part, so no ReadyForQuery of another statement can end a
//! check early.

use std::collections::VecDeque;

use maskgate_sql::CopyIn;

use crate::protocol::frontend_tag;

/// A line longer than this is refused rather than buffered.
const MAX_LINE: usize = 1 << 20;

#[derive(Debug)]
pub struct CopyCheck {
    spec: CopyIn,
    /// The row read so far (escapes kept as sent).
    row: Vec<u8>,
    /// The last byte read was an unescaped backslash: the next one is data.
    escaping: bool,
    /// The last byte read was an unescaped carriage return: only a newline may follow.
    carriage_return: bool,
    line: u64,
    /// The end-of-data marker `\.` was seen; nothing may follow it.
    ended: bool,
}

impl CopyCheck {
    pub fn new(spec: CopyIn) -> Self {
        CopyCheck {
            spec,
            row: Vec::new(),
            escaping: false,
            carriage_return: false,
            line: 0,
            ended: false,
        }
    }

    /// One CopyData message. `Err` with the reason at the first row that may not be sent.
    pub fn data(&mut self, data: &[u8]) -> Result<(), String> {
        let mut start = 0;
        for (at, &byte) in data.iter().enumerate() {
            if self.carriage_return && byte != b'\n' {
                return Err(format!(
                    "row {} holds a carriage return that does not end it",
                    self.line + 1
                ));
            }
            if self.escaping {
                self.escaping = false;
                continue;
            }
            match byte {
                b'\\' => self.escaping = true,
                b'\r' => self.carriage_return = true,
                b'\n' => {
                    self.extend(&data[start..at])?;
                    start = at + 1;
                    if std::mem::take(&mut self.carriage_return) {
                        self.row.pop();
                    }
                    let row = std::mem::take(&mut self.row);
                    self.check_row(&row)?;
                    self.row = row;
                    self.row.clear();
                }
                _ => {}
            }
        }
        self.extend(&data[start..])
    }

    fn extend(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.row.len() + bytes.len() > MAX_LINE {
            return Err(format!(
                "row {} is longer than {MAX_LINE} bytes",
                self.line + 1
            ));
        }
        self.row.extend_from_slice(bytes);
        Ok(())
    }

    /// CopyDone: the last row may lack its newline.
    pub fn done(&mut self) -> Result<(), String> {
        if self.escaping || self.carriage_return {
            return Err(format!("row {} ends inside an escape", self.line + 1));
        }
        if self.row.is_empty() {
            return Ok(());
        }
        let row = std::mem::take(&mut self.row);
        self.check_row(&row)
    }

    fn check_row(&mut self, row: &[u8]) -> Result<(), String> {
        self.line += 1;
        if self.ended {
            return Err(format!("row {} follows the end-of-data marker", self.line));
        }
        if row == b"\\." {
            self.ended = true;
            return Ok(());
        }
        let fields = fields(row);
        if fields.len() != self.spec.columns {
            return Err(format!(
                "row {} has {} fields where {} columns were listed",
                self.line,
                fields.len(),
                self.spec.columns
            ));
        }
        for (position, expected) in &self.spec.required {
            if fields[*position] != expected.as_bytes() {
                return Err(format!(
                    "row {} is outside this account's rows: column {} must be exactly the value its row filter requires",
                    self.line,
                    position + 1
                ));
            }
        }
        Ok(())
    }
}

/// A row's fields as sent: split at tabs that no backslash escapes.
fn fields(row: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let (mut start, mut escaping) = (0, false);
    for (at, &byte) in row.iter().enumerate() {
        if escaping {
            escaping = false;
        } else if byte == b'\\' {
            escaping = true;
        } else if byte == b'\t' {
            fields.push(&row[start..at]);
            start = at + 1;
        }
    }
    fields.push(&row[start..]);
    fields
}

/// The checks of the COPY statements the client's copy messages go to, in order.
#[derive(Debug, Default)]
pub struct CopyChecks {
    pending: VecDeque<CopyCheck>,
    /// The front COPY was failed by the proxy: PostgreSQL ignores the rest of its data.
    failed: bool,
}

impl CopyChecks {
    /// A `COPY … FROM STDIN` in the Query being sent.
    pub fn expect(&mut self, spec: CopyIn) {
        self.pending.push_back(CopyCheck::new(spec));
    }

    /// A message other than a copy message, Flush or Sync.
    pub fn other_message(&mut self) {
        self.pending.clear();
        self.failed = false;
    }

    /// A copy message (`tag`). `Err` with the reason when it must fail the COPY.
    pub fn message(&mut self, tag: u8, body: &[u8]) -> Result<(), String> {
        let Some(check) = self.pending.front_mut() else {
            return Ok(());
        };
        let checked = match tag {
            _ if self.failed => Ok(()),
            frontend_tag::COPY_DATA => check.data(body),
            frontend_tag::COPY_DONE => check.done(),
            _ => Ok(()),
        };
        if tag != frontend_tag::COPY_DATA {
            self.pending.pop_front();
            self.failed = false;
        } else if checked.is_err() {
            self.failed = true;
        }
        checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> CopyCheck {
        CopyCheck::new(CopyIn {
            columns: 3,
            required: vec![(2, "79".into())],
        })
    }

    #[test]
    fn rows_in_scope_pass_even_when_split_across_messages() {
        let mut c = check();
        c.data(b"1\tAn\t79\n2\tB").unwrap();
        c.data(b"inh\t7").unwrap();
        c.data(b"9\n3\t\\N\t79").unwrap();
        c.done().unwrap();
    }

    #[test]
    fn a_row_outside_scope_or_of_another_shape_is_refused() {
        assert!(check().data(b"1\tAn\t01\n").is_err());
        assert!(
            check().data(b"1\tAn\t\\0679\n").is_err(),
            "other escapes are refused"
        );
        assert!(check().data(b"1\tAn\n").is_err());
        let mut c = check();
        c.data(b"1\tAn\t7").unwrap();
        assert!(c.data(b"8\n").is_err(), "checked once the line is whole");
        let mut c = check();
        c.data(b"1\tAn\t79\n\\.\n").unwrap();
        assert!(c.data(b"2\tB\t01\n").is_err());
    }

    fn spec(required: &str) -> CopyIn {
        CopyIn {
            columns: 3,
            required: vec![(2, required.into())],
        }
    }

    #[test]
    fn each_copy_takes_the_data_up_to_its_copy_done() {
        let mut c = CopyChecks::default();
        c.expect(spec("79"));
        c.expect(spec("01"));
        assert!(c.message(b'd', b"1\tAn\t79\n").is_ok());
        assert!(c.message(b'c', b"").is_ok());
        assert!(
            c.message(b'd', b"1\tAn\t79\n").is_err(),
            "the second COPY's rule"
        );
        assert!(
            c.message(b'd', b"1\tAn\t79\n").is_ok(),
            "ignored after the failure"
        );
        assert!(c.message(b'c', b"").is_ok());
        assert!(c.message(b'd', b"anything").is_ok(), "no COPY left");
    }

    #[test]
    fn another_message_ends_every_copy_sent_before_it() {
        let mut c = CopyChecks::default();
        c.expect(spec("79"));
        c.other_message();
        c.expect(spec("01"));
        assert!(
            c.message(b'd', b"1\tAn\t79\n").is_err(),
            "data after the next COPY is that COPY's"
        );
    }

    #[test]
    fn escaped_tabs_and_newlines_are_data_as_postgresql_reads_them() {
        // PostgreSQL reads one row here: `K\t48 | 01 | S\tx | 5\t\n…`; a reader that
        // split at every tab and newline would see two rows with 48 in place.
        let spec = CopyIn {
            columns: 3,
            required: vec![(1, "48".into())],
        };
        let mut c = CopyCheck::new(spec);
        assert!(c.data(b"K\\\t48\t01\tx\\\n\t48\t1\n").is_err());
        let mut c = check();
        c.data(b"1\tA\\\tn\t79\n").unwrap();
        c.data(b"2\tline\\").unwrap();
        c.data(b"\nbreak\t79\n").unwrap();
        c.data(b"3\tB\\\\\t79\r\n").unwrap();
        c.done().unwrap();
        assert_eq!(c.line, 3);
    }

    #[test]
    fn carriage_returns_end_rows_only_before_a_newline() {
        let mut c = check();
        assert!(c.data(b"1\tA\r2\t79\n").is_err());
        let mut c = check();
        c.data(b"1\tA\t79\r").unwrap();
        c.data(b"\n").unwrap();
        c.done().unwrap();
    }
}
