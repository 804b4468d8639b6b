//! Reading segments fast: whole files, lines split with `memchr`, the envelope
//! read by position.
//!
//! The writer always lays a line out as
//! `{"seq":N,"time":"…","kind":"…","prev":"<64 hex>",<payload>}` (see
//! `maskgate_audit::record`), so the envelope is read without a JSON parser. A line
//! not in that layout, and the unfinished last line of a live segment, are skipped
//! and counted: in a trail that `maskgate audit verify` accepts every line is the
//! writer's, and the verifier is the tool that says what is wrong with one that is not.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Context as _;
use maskgate_audit::segment::parse_segment_name;

/// One segment file of the directory.
#[derive(Debug, Clone)]
pub struct Segment {
    pub index: u64,
    pub path: PathBuf,
}

/// The directory's segments by index. An empty directory is an error: a search of
/// a mistyped path must not look like a search that found nothing.
pub fn list_segments(dir: &Path) -> anyhow::Result<Vec<Segment>> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let Some(index) = entry.file_name().to_str().and_then(parse_segment_name) else {
            continue;
        };
        segments.push(Segment {
            index,
            path: entry.path(),
        });
    }
    if segments.is_empty() {
        anyhow::bail!("{} holds no audit segment", dir.display());
    }
    segments.sort_unstable_by_key(|s| s.index);
    Ok(segments)
}

/// A line's envelope, borrowed from the line.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub seq: u64,
    pub time: &'a [u8],
    pub kind: &'a [u8],
    /// Everything after `prev`: `,"key":value…}` (or just `}`).
    pub payload: &'a [u8],
}

/// Reads the envelope of a line in the writer's layout; `None` for anything else.
pub fn envelope(line: &[u8]) -> Option<Envelope<'_>> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().position(|b| !b.is_ascii_digit())?;
    if digits == 0 || digits > 20 {
        return None;
    }
    let seq = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(b",\"time\":\"")?;
    let end = memchr::memchr(b'"', rest)?;
    let time = &rest[..end];
    let rest = rest[end..].strip_prefix(b"\",\"kind\":\"")?;
    let end = memchr::memchr(b'"', rest)?;
    let kind = &rest[..end];
    if kind.contains(&b'\\') {
        return None;
    }
    let rest = rest[end..].strip_prefix(b"\",\"prev\":\"")?;
    if rest.len() < 65 || rest[64] != b'"' {
        return None;
    }
    Some(Envelope {
        seq,
        time,
        kind,
        payload: &rest[65..],
    })
}

/// A record time made comparable: the `YYYY-MM-DDTHH:MM:SS` part and nanoseconds.
/// Plain byte comparison of RFC 3339 strings is wrong within a second, because the
/// writer drops trailing zeros of the fraction (`02.5Z` sorts before `02Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeKey {
    seconds: [u8; 19],
    nanos: u32,
}

impl TimeKey {
    /// From a UTC RFC 3339 time as the writer writes it.
    pub fn parse(time: &[u8]) -> Option<TimeKey> {
        if time.len() < 20 || time[10] != b'T' || time.last() != Some(&b'Z') {
            return None;
        }
        let mut seconds = [0u8; 19];
        seconds.copy_from_slice(&time[..19]);
        let fraction = &time[19..time.len() - 1];
        let nanos = match fraction.strip_prefix(b".") {
            None if fraction.is_empty() => 0,
            None => return None,
            Some(digits) => {
                if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                let mut n: u32 = 0;
                for i in 0..9 {
                    n = n * 10 + digits.get(i).map_or(0, |d| u32::from(d - b'0'));
                }
                n
            }
        };
        Some(TimeKey { seconds, nanos })
    }

    pub fn from_datetime(t: time::OffsetDateTime) -> anyhow::Result<TimeKey> {
        let t = t.to_offset(time::UtcOffset::UTC);
        let text = t
            .format(&time::format_description::well_known::Rfc3339)
            .context("time cannot be written as RFC 3339")?;
        TimeKey::parse(text.as_bytes()).context("time out of the range of audit records")
    }
}

/// The lines of a buffer that end with a newline (a torn last line is not one).
pub fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut start = 0;
    memchr::memchr_iter(b'\n', buf).map(move |end| {
        let line = &buf[start..end];
        start = end + 1;
        line
    })
}

/// Reads a whole segment into `buf` (reused between segments).
pub fn read_segment(segment: &Segment, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    buf.clear();
    File::open(&segment.path)
        .and_then(|mut f| f.read_to_end(buf))
        .with_context(|| format!("cannot read {}", segment.path.display()))?;
    Ok(())
}

/// The seq of a segment's first record, read from its first line only.
pub fn first_seq(segment: &Segment) -> anyhow::Result<Option<u64>> {
    let file = File::open(&segment.path)
        .with_context(|| format!("cannot read {}", segment.path.display()))?;
    let mut line = Vec::new();
    BufReader::with_capacity(4096, file)
        .take(64 * 1024)
        .read_until(b'\n', &mut line)
        .with_context(|| format!("cannot read {}", segment.path.display()))?;
    Ok(envelope(&line).map(|e| e.seq))
}

/// Threads worth using for `jobs` pieces of work.
pub fn threads_for(jobs: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs)
        .max(1)
}

/// Runs `work` on every segment, in parallel, and returns the results in segment
/// order. Segments are handed out in order; before starting segment `i`, `enough`
/// is asked about the finished results of segments `0..i` (only once all of them
/// are finished) and a `true` skips `i` and every later segment (`None` results).
pub fn par_segments<R, W, E>(
    segments: &[Segment],
    work: W,
    enough: E,
) -> anyhow::Result<Vec<Option<R>>>
where
    R: Send,
    W: Fn(&Segment, &mut Vec<u8>) -> anyhow::Result<R> + Sync,
    E: Fn(&[Option<R>]) -> bool + Sync,
{
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..segments.len()).map(|_| None).collect());
    let finished: Mutex<Vec<bool>> = Mutex::new(vec![false; segments.len()]);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let lock_poisoned = || anyhow::anyhow!("a search thread panicked");
    std::thread::scope(|scope| {
        for _ in 0..threads_for(segments.len()) {
            scope.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= segments.len() {
                        return;
                    }
                    if i > 0 {
                        let done = finished.lock().map(|f| f[..i].iter().all(|d| *d));
                        if let Ok(true) = done {
                            let stop = results.lock().map(|r| enough(&r[..i]));
                            if let Ok(true) = stop {
                                // Later segments are skipped too: the counter only grows.
                                next.store(segments.len(), Ordering::Relaxed);
                                return;
                            }
                        }
                    }
                    match work(&segments[i], &mut buf) {
                        Ok(r) => {
                            if let Ok(mut results) = results.lock() {
                                results[i] = Some(r);
                            }
                            if let Ok(mut finished) = finished.lock() {
                                finished[i] = true;
                            }
                        }
                        Err(e) => {
                            if let Ok(mut failure) = failure.lock() {
                                failure.get_or_insert(e);
                            }
                            next.store(segments.len(), Ordering::Relaxed);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().map_err(|_| lock_poisoned())? {
        return Err(e);
    }
    results.into_inner().map_err(|_| lock_poisoned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_by_position() {
        let zeros = "0".repeat(64);
        let line = format!(
            r#"{{"seq":42,"time":"2025-01-31T08:15:02.5Z","kind":"statement","prev":"{zeros}","user":"a"}}"#
        );
        let e = envelope(line.as_bytes()).unwrap();
        assert_eq!(e.seq, 42);
        assert_eq!(e.time, b"2025-01-31T08:15:02.5Z");
        assert_eq!(e.kind, b"statement");
        assert_eq!(e.payload, br#","user":"a"}"#);
        assert!(envelope(line.replace("\"seq\":42,", "").as_bytes()).is_none());
        assert!(envelope(b"{\"seq\":1,\"time\":\"x\"").is_none());
    }

    #[test]
    fn times_compare_by_value() {
        let a = TimeKey::parse(b"2025-01-31T08:15:02Z").unwrap();
        let b = TimeKey::parse(b"2025-01-31T08:15:02.5Z").unwrap();
        let c = TimeKey::parse(b"2025-01-31T08:15:02.123456789Z").unwrap();
        assert!(a < c && c < b);
        assert!(TimeKey::parse(b"2025-01-31 08:15:02Z").is_none());
        assert!(TimeKey::parse(b"2025-01-31T08:15:02.Z").is_none());
        let t = time::macros::datetime!(2025-01-31 09:15:02.5 +01:00);
        assert_eq!(TimeKey::from_datetime(t).unwrap(), b);
    }

    #[test]
    fn only_complete_lines() {
        let v: Vec<&[u8]> = lines(b"a\n\nb\ntorn").collect();
        assert_eq!(v, vec![&b"a"[..], b"", b"b"]);
    }
}
