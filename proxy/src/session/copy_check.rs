//! Checks the rows a restricted account sends with `COPY … FROM STDIN` as they stream.
//!
//! Text format: one row per line, fields separated by tabs. The fields the account's
//! row filter compares with a literal must read exactly as that literal; anything
//! else (another value, the value written with other escapes, a wrong field count) is
//! refused, and the proxy fails the whole COPY before the row is complete upstream,
//! so PostgreSQL inserts none of it.

use maskgate_sql::CopyIn;

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
}
