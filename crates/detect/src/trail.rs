//! Reading the trail's segments back: the lines of a time range, oldest first.
//!
//! Segments are visited in index order and skipped whole when the next one starts
//! before the range does, so reading back the last four weeks of a year-long trail
//! touches only those weeks' files. Lines are handed over as bytes; callers parse
//! only the kinds they want ([`crate::observe::line_kind`]).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use maskgate_audit::segment::parse_segment_name;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The trail could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the audit trail at {}: {source}", path.display())]
pub struct TrailError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn error(path: &Path, source: io::Error) -> TrailError {
    TrailError {
        path: path.to_owned(),
        source,
    }
}

/// The segments of `dir`, by index.
pub fn segments(dir: &Path) -> Result<Vec<PathBuf>, TrailError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| error(dir, e))? {
        let entry = entry.map_err(|e| error(dir, e))?;
        if let Some(index) = entry.file_name().to_str().and_then(parse_segment_name) {
            found.push((index, entry.path()));
        }
    }
    found.sort_unstable();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// The seq of a line's envelope (its first field).
pub fn line_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..len]).ok()?.parse().ok()
}

/// The time of a line's envelope.
pub fn line_time(line: &[u8]) -> Option<OffsetDateTime> {
    const KEY: &[u8] = b"\"time\":\"";
    let at = memchr::memmem::find(line, KEY)? + KEY.len();
    let len = memchr::memchr(b'"', &line[at..])?;
    let text = std::str::from_utf8(&line[at..at + len]).ok()?;
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Opens a segment; `None` when it is gone: `[audit] retention` removes the
/// oldest segments while the proxy runs, and a segment removed after the
/// directory was listed is simply no longer part of the trail.
fn open_segment(path: &Path) -> Result<Option<File>, TrailError> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(error(path, e)),
    }
}

fn first_time(path: &Path) -> Result<Option<OffsetDateTime>, TrailError> {
    let mut line = Vec::new();
    let Some(file) = open_segment(path)? else {
        return Ok(None);
    };
    BufReader::new(file)
        .take(64 * 1024)
        .read_until(b'\n', &mut line)
        .map_err(|e| error(path, e))?;
    Ok(line_time(&line))
}

/// Calls `each` with every complete line of the segments that may hold records
/// from `since` on (all of them when `since` is `None`), oldest first. Lines
/// longer than the writer writes are skipped. Returns the number of lines.
pub fn read_since(
    dir: &Path,
    since: Option<OffsetDateTime>,
    mut each: impl FnMut(&[u8]),
) -> Result<u64, TrailError> {
    let all = segments(dir)?;
    let mut start = 0;
    if let Some(since) = since {
        // The last segment that starts at or before `since` may hold records
        // after it; everything before that one cannot.
        for (i, path) in all.iter().enumerate() {
            match first_time(path)? {
                Some(t) if t <= since => start = i,
                // Removed by retention meanwhile: older still than what follows.
                None if !path.exists() => {}
                _ => break,
            }
        }
    }
    let mut lines = 0;
    let mut buf = Vec::with_capacity(4096);
    for path in &all[start..] {
        let Some(file) = open_segment(path)? else {
            continue;
        };
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        loop {
            buf.clear();
            let n = (&mut reader)
                .take(maskgate_audit::MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut buf)
                .map_err(|e| error(path, e))?;
            if n == 0 {
                break;
            }
            if buf.last() != Some(&b'\n') {
                // A torn last line, or one too long to be a record.
                if n as u64 > maskgate_audit::MAX_LINE_BYTES as u64 {
                    skip_line(&mut reader).map_err(|e| error(path, e))?;
                }
                continue;
            }
            buf.pop();
            lines += 1;
            each(&buf);
        }
    }
    Ok(lines)
}

fn skip_line(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(());
        }
        match memchr::memchr(b'\n', available) {
            Some(pos) => {
                reader.consume(pos + 1);
                return Ok(());
            }
            None => {
                let len = available.len();
                reader.consume(len);
            }
        }
    }
}
