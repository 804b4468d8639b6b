//! Segment files: naming, listing and reading lines.
//!
//! # Layout of an audit directory
//!
//! * `audit-000001.jsonl`, `audit-000002.jsonl`, … — the segments, numbered from 1
//!   without gaps. The index is zero-padded to six digits (wider once it passes
//!   999999) so that a plain `ls` lists them in order; only this exact spelling is
//!   a segment, so `audit-1.jsonl` or `audit-000002.jsonl.bak` is reported as an
//!   unexpected file rather than silently read or skipped.
//! * `audit.lock` — held with `flock` by the one writer of the directory.
//!
//! Every segment begins with a `segment_start` record:
//!
//! ```text
//! {"seq":..,"time":..,"kind":"segment_start","prev":"<hex>","format":1,"segment":"audit-000002.jsonl",
//!  "index":2,"prev_segment":"audit-000001.jsonl","prev_hash":"<hex>"}
//! ```
//!
//! It names the file it was written into (so a renamed file is caught), the
//! previous segment (so a missing one is caught) and repeats the chain head it
//! continues from (`prev_hash`, equal to its own `prev`). `prev_segment` is `null`
//! in the first segment.
//!
//! Other files in the directory are not looked at, except names starting with
//! `audit-`, which the verifier reports: that is what a renamed segment looks like.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Prefix of segment file names.
pub const SEGMENT_PREFIX: &str = "audit-";
/// Suffix of segment file names.
pub const SEGMENT_SUFFIX: &str = ".jsonl";
/// The writer's lock file.
pub const LOCK_FILE: &str = "audit.lock";

/// The canonical file name of segment `index` (from 1).
pub fn segment_name(index: u64) -> String {
    format!("{SEGMENT_PREFIX}{index:06}{SEGMENT_SUFFIX}")
}

/// The index of a canonical segment file name, `None` for anything else.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: u64 = digits.parse().ok()?;
    // Only one spelling per index: `audit-01.jsonl` and `audit-0000001.jsonl` are
    // not segment 1.
    (index >= 1 && segment_name(index) == name).then_some(index)
}

/// The payload of a `segment_start` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentStart {
    pub format: u64,
    pub segment: String,
    pub index: u64,
    pub prev_segment: Option<String>,
    pub prev_hash: String,
}

/// A `segment_start` record read back, envelope included. Unknown keys are
/// refused: the writer writes exactly these, so anything else is an edit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the envelope fields are there to be allowed, not read
pub(crate) struct SegmentStartRecord {
    pub seq: u64,
    pub time: String,
    pub kind: String,
    pub prev: String,
    pub format: u64,
    pub segment: String,
    pub index: u64,
    pub prev_segment: Option<String>,
    pub prev_hash: String,
}

/// What a directory holds.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Segments by ascending index.
    pub segments: Vec<(u64, String)>,
    /// Entries named like segments that are not (renamed or foreign files).
    pub unexpected: Vec<String>,
}

impl Listing {
    pub fn read(dir: &Path) -> io::Result<Listing> {
        let mut listing = Listing::default();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                let lossy = name.to_string_lossy().into_owned();
                if lossy.starts_with(SEGMENT_PREFIX) {
                    listing.unexpected.push(lossy);
                }
                continue;
            };
            if name == LOCK_FILE {
                continue;
            }
            match parse_segment_name(name) {
                Some(index) if entry.file_type()?.is_file() => {
                    listing.segments.push((index, name.to_owned()));
                }
                _ if name.starts_with(SEGMENT_PREFIX) => listing.unexpected.push(name.to_owned()),
                _ => {}
            }
        }
        listing.segments.sort_unstable();
        listing.unexpected.sort_unstable();
        Ok(listing)
    }
}

/// One item read from a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item<'a> {
    /// A complete line, without its newline.
    Line(&'a [u8]),
    /// A line longer than [`crate::MAX_LINE_BYTES`]; its bytes were skipped.
    TooLong(u64),
    /// Bytes after the last newline of the file: a torn write or a truncation.
    Torn(u64),
}

/// Reads a segment line by line with one reused buffer and a bound on line length.
pub(crate) struct LineReader<R = File> {
    reader: BufReader<R>,
    buf: Vec<u8>,
    done: bool,
}

impl LineReader {
    pub fn open(path: &Path) -> io::Result<LineReader> {
        Ok(LineReader::new(File::open(path)?))
    }
}

impl<R: Read> LineReader<R> {
    pub fn new(reader: R) -> LineReader<R> {
        LineReader {
            reader: BufReader::with_capacity(256 * 1024, reader),
            buf: Vec::new(),
            done: false,
        }
    }

    /// The underlying reader; everything has been read from it once `next_item`
    /// returned `None`.
    pub fn into_inner(self) -> R {
        self.reader.into_inner()
    }

    /// The next item, `None` at the end of the file.
    pub fn next_item(&mut self) -> io::Result<Option<Item<'_>>> {
        if self.done {
            return Ok(None);
        }
        self.buf.clear();
        let limit = crate::MAX_LINE_BYTES as u64 + 1;
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            self.done = true;
            return Ok(None);
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            return Ok(Some(Item::Line(&self.buf)));
        }
        if (n as u64) < limit {
            // Short of the limit and no newline: the end of the file.
            self.done = true;
            return Ok(Some(Item::Torn(n as u64)));
        }
        // Over-long: skip to the next newline (or the end) and report the length.
        let mut skipped = n as u64;
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                // It never ended: this is also the file's torn tail.
                self.done = true;
                return Ok(Some(Item::Torn(skipped)));
            }
            match available.iter().position(|b| *b == b'\n') {
                Some(pos) => {
                    self.reader.consume(pos + 1);
                    skipped += pos as u64;
                    return Ok(Some(Item::TooLong(skipped)));
                }
                None => {
                    let len = available.len();
                    self.reader.consume(len);
                    skipped += len as u64;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn names() {
        assert_eq!(segment_name(1), "audit-000001.jsonl");
        assert_eq!(segment_name(1_234_567), "audit-1234567.jsonl");
        assert_eq!(parse_segment_name("audit-000001.jsonl"), Some(1));
        assert_eq!(parse_segment_name("audit-1234567.jsonl"), Some(1_234_567));
        for bad in [
            "audit-000000.jsonl",
            "audit-1.jsonl",
            "audit-0000001.jsonl",
            "audit-00000a.jsonl",
            "audit-000001.jsonl.bak",
            "audit-.jsonl",
            "audit-+00001.jsonl",
            "x-000001.jsonl",
            "audit-99999999999999999999999.jsonl",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn lines_torn_tail_and_long_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"one\n\ntwo\npartial").unwrap();
        drop(f);
        let mut r = LineReader::open(&path).unwrap();
        assert_eq!(r.next_item().unwrap(), Some(Item::Line(b"one")));
        assert_eq!(r.next_item().unwrap(), Some(Item::Line(b"")));
        assert_eq!(r.next_item().unwrap(), Some(Item::Line(b"two")));
        assert_eq!(r.next_item().unwrap(), Some(Item::Torn(7)));
        assert_eq!(r.next_item().unwrap(), None);

        let mut f = File::create(&path).unwrap();
        let long = vec![b'x'; crate::MAX_LINE_BYTES + 10];
        f.write_all(&long).unwrap();
        f.write_all(b"\nafter\n").unwrap();
        f.write_all(&long).unwrap();
        drop(f);
        let mut r = LineReader::open(&path).unwrap();
        assert_eq!(
            r.next_item().unwrap(),
            Some(Item::TooLong(long.len() as u64))
        );
        assert_eq!(r.next_item().unwrap(), Some(Item::Line(b"after")));
        assert_eq!(r.next_item().unwrap(), Some(Item::Torn(long.len() as u64)));
        assert_eq!(r.next_item().unwrap(), None);
    }

    #[test]
    fn listing() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "audit-000002.jsonl",
            "audit-000001.jsonl",
            "audit-2.jsonl",
            "audit.lock",
            "notes.txt",
        ] {
            File::create(dir.path().join(name)).unwrap();
        }
        fs::create_dir(dir.path().join("audit-000003.jsonl")).unwrap();
        let l = Listing::read(dir.path()).unwrap();
        assert_eq!(
            l.segments,
            vec![
                (1, "audit-000001.jsonl".to_owned()),
                (2, "audit-000002.jsonl".to_owned())
            ]
        );
        assert_eq!(
            l.unexpected,
            vec!["audit-000003.jsonl".to_owned(), "audit-2.jsonl".to_owned()]
        );
    }
}
