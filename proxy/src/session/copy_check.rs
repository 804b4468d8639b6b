//! Checks the rows a restricted account sends with `COPY … FROM STDIN` as they stream.
//!
//! Text format: one row per line, fields separated by tabs. The fields the account's
//! row filter compares with a literal must read exactly as that literal; anything
//! else (another value, the value written with other escapes, a wrong field count) is
//! refused, and the proxy fails the whole COPY before the row is complete upstream,
//! so PostgreSQL inserts none of it.
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
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    line: u64,
    /// The end-of-data marker `\.` was seen; nothing may follow it.
    ended: bool,
}

impl CopyCheck {
    pub fn new(spec: CopyIn) -> Self {
        CopyCheck {
            spec,
            partial: Vec::new(),
            line: 0,
            ended: false,
        }
    }

    /// One CopyData message. `Err` with the reason at the first row that may not be sent.
    pub fn data(&mut self, mut data: &[u8]) -> Result<(), String> {
        while let Some(end) = data.iter().position(|b| *b == b'\n') {
            if self.partial.is_empty() {
                self.check_line(&data[..end])?;
            } else {
                self.partial.extend_from_slice(&data[..end]);
                let line = std::mem::take(&mut self.partial);
                self.check_line(&line)?;
            }
            data = &data[end + 1..];
        }
        if self.partial.len() + data.len() > MAX_LINE {
            return Err(format!(
                "row {} is longer than {MAX_LINE} bytes",
                self.line + 1
            ));
        }
        self.partial.extend_from_slice(data);
        Ok(())
    }

    /// CopyDone: the last line may lack its newline.
    pub fn done(&mut self) -> Result<(), String> {
        if self.partial.is_empty() {
            return Ok(());
        }
        let line = std::mem::take(&mut self.partial);
        self.check_line(&line)
    }

    fn check_line(&mut self, line: &[u8]) -> Result<(), String> {
        self.line += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.ended {
            return Err(format!("row {} follows the end-of-data marker", self.line));
        }
        if line == b"\\." {
            self.ended = true;
            return Ok(());
        }
        let fields: Vec<&[u8]> = line.split(|b| *b == b'\t').collect();
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
}
