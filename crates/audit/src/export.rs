//! Exporting finished segments to an archive, with one receipt per segment.
//!
//! A segment is finished once nothing will be appended to it: it ended with a
//! final checkpoint, or another segment follows it (the writer stopped in it and
//! the next one declares that end). [`plan_export`] and [`ExportPlan::run`] copy
//! every finished segment that has no receipt yet:
//!
//! 1. the whole trail is verified first; a tampered trail is not exported at all;
//! 2. each segment is copied to a temporary name in the archive, synced, renamed
//!    to its own name, and the archive directory synced. An existing copy is never
//!    overwritten: an identical one is accepted (an earlier export stopped before
//!    its receipt), a different one stops the export;
//! 3. the copy is read back: its SHA-256 must equal the source's as read while
//!    copying, and it must verify on its own (start record, chain, checkpoints);
//! 4. a receipt is appended to `export-receipts.jsonl` in the audit directory
//!    ([`Receipt`], one `write(2)` and a sync per line).
//!
//! The receipts file is locked (`flock`) for the whole export, so two exports of
//! one directory do not interleave. Retention removes a segment only if its
//! receipt's SHA-256 is still the file's ([`crate::retention`]).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use std::collections::HashMap;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::keys::PublicKey;
use crate::report::{Report, Status};
use crate::retention::check_segment;
use crate::segment::{Item, LineReader};
use crate::verify::{verify, VerifyError};

/// The export receipts, in the audit directory. The name does not start with
/// `audit-`, so the verifier does not take it for a renamed segment.
pub const RECEIPTS_FILE: &str = "export-receipts.jsonl";

/// One line of `export-receipts.jsonl`: a segment copied to an archive and checked there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub segment: String,
    pub index: u64,
    /// SHA-256 of the whole file (lowercase hex).
    pub sha256: String,
    /// The copy's path.
    pub to: String,
    /// When it was exported (RFC 3339, UTC).
    pub at: String,
    /// The OS user who exported it.
    pub by: String,
}

/// The receipts of a directory by segment index. Lines that do not parse (a line
/// being appended right now, a damaged file) are ignored: a segment without a
/// readable receipt is simply not removed.
pub(crate) fn read_receipts(dir: &Path) -> io::Result<HashMap<u64, Vec<Receipt>>> {
    let mut out: HashMap<u64, Vec<Receipt>> = HashMap::new();
    let mut reader = match File::open(dir.join(RECEIPTS_FILE)) {
        Ok(f) => LineReader::new(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    while let Some(item) = reader.next_item()? {
        if let Item::Line(line) = item {
            if let Ok(r) = serde_json::from_slice::<Receipt>(line) {
                out.entry(r.index).or_default().push(r);
            }
        }
    }
    Ok(out)
}

/// Opens (creating it 0600) the receipts file for appending.
pub(crate) fn open_receipts(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(dir.join(RECEIPTS_FILE))
}

/// Appends one receipt with one `write(2)` and syncs it.
pub(crate) fn append_receipt(file: &mut File, receipt: &Receipt) -> io::Result<()> {
    let mut line = serde_json::to_vec(receipt).map_err(io::Error::other)?;
    line.push(b'\n');
    file.write_all(&line)?;
    file.sync_data()
}

/// Why an export stopped. Receipts appended before the error stay valid.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("another export of this audit directory is running")]
    Busy,
    #[error("the archive is the audit directory itself")]
    SameDirectory,
    #[error("the trail does not verify ({} error(s)): nothing was exported", .0.errors().count())]
    Tampered(Box<Report>),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} already exists with other content; an archived segment is never overwritten", path.display())]
    Conflict { path: PathBuf },
    #[error("the copy of {segment} does not hold: {reason}")]
    BadCopy {
        segment: String,
        reason: &'static str,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ExportError {
    let path = path.to_owned();
    move |source| ExportError::Io { op, path, source }
}

/// A verified trail and the segments to copy, with the receipts file locked.
pub struct ExportPlan {
    dir: PathBuf,
    archive: PathBuf,
    key: PublicKey,
    report: Report,
    segments: Vec<(u64, String)>,
    receipts: Flock<File>,
}

/// Locks the receipts of `dir`, verifies the trail with `key` and lists the
/// finished segments without a receipt. Refuses a tampered trail
/// ([`ExportError::Tampered`] holds the report).
pub fn plan_export(dir: &Path, archive: &Path, key: &PublicKey) -> Result<ExportPlan, ExportError> {
    if let (Ok(a), Ok(b)) = (fs::canonicalize(dir), fs::canonicalize(archive)) {
        if a == b {
            return Err(ExportError::SameDirectory);
        }
    }
    let path = dir.join(RECEIPTS_FILE);
    let file = open_receipts(dir).map_err(io_err("open", &path))?;
    let receipts = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, Errno::EWOULDBLOCK)) => return Err(ExportError::Busy),
        Err((_, errno)) => return Err(io_err("lock", &path)(io::Error::from(errno))),
    };
    let report = verify(dir, key)?;
    if report.status() == Status::Tampered {
        return Err(ExportError::Tampered(Box::new(report)));
    }
    let done = read_receipts(dir).map_err(io_err("read", &path))?;
    let n = report.segments().len();
    let segments = report
        .segments()
        .iter()
        .enumerate()
        .filter(|(i, s)| i + 1 < n || s.end.is_some())
        .filter(|(_, s)| {
            !done
                .get(&s.index)
                .is_some_and(|v| v.iter().any(|r| r.segment == s.name))
        })
        .map(|(_, s)| (s.index, s.name.clone()))
        .collect();
    Ok(ExportPlan {
        dir: dir.to_owned(),
        archive: archive.to_owned(),
        key: key.clone(),
        report,
        segments,
        receipts,
    })
}

impl ExportPlan {
    /// The segments to copy, oldest first: `(index, name)`.
    pub fn segments(&self) -> &[(u64, String)] {
        &self.segments
    }

    /// The verification of the trail (clean, or an unsealed tail).
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Copies every planned segment and appends its receipt; `by` names the OS
    /// user in the receipts. Returns the receipts written.
    pub fn run(mut self, by: &str) -> Result<Vec<Receipt>, ExportError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&self.archive)
            .map_err(io_err("create", &self.archive))?;
        let mut out = Vec::with_capacity(self.segments.len());
        for (index, name) in std::mem::take(&mut self.segments) {
            let receipt = self.copy(index, &name, by)?;
            append_receipt(&mut self.receipts, &receipt)
                .map_err(io_err("append to", &self.dir.join(RECEIPTS_FILE)))?;
            out.push(receipt);
        }
        Ok(out)
    }

    fn copy(&self, index: u64, name: &str, by: &str) -> Result<Receipt, ExportError> {
        let src = self.dir.join(name);
        let dst = self.archive.join(name);
        let tmp = self
            .archive
            .join(format!(".{name}.{}.partial", std::process::id()));
        let sha = copy_synced(&src, &tmp)?;
        if fs::symlink_metadata(&dst).is_ok() {
            let _ = fs::remove_file(&tmp);
            if sha256_of(&dst)? != sha {
                return Err(ExportError::Conflict { path: dst });
            }
        } else {
            fs::rename(&tmp, &dst).map_err(io_err("rename", &tmp))?;
            File::open(&self.archive)
                .and_then(|d| d.sync_all())
                .map_err(io_err("sync", &self.archive))?;
        }
        let bad = |reason| ExportError::BadCopy {
            segment: name.to_owned(),
            reason,
        };
        match check_segment(&dst, name, index, &self.key).map_err(io_err("read", &dst))? {
            Err(reason) => return Err(bad(reason)),
            Ok(check) if check.sha256 != sha => {
                return Err(bad("read back, it differs from the segment"))
            }
            Ok(_) => {}
        }
        Ok(Receipt {
            segment: name.to_owned(),
            index,
            sha256: hex::encode(sha),
            to: fs::canonicalize(&dst).unwrap_or(dst).display().to_string(),
            at: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            by: by.to_owned(),
        })
    }
}

/// Copies `src` to a new file `tmp` (0640), syncs it, and returns the SHA-256 of
/// the bytes copied. `tmp` is removed if anything fails.
fn copy_synced(src: &Path, tmp: &Path) -> Result<[u8; 32], ExportError> {
    let mut from = File::open(src).map_err(io_err("open", src))?;
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(tmp)
        .map_err(io_err("create", tmp))?;
    let copied = (|| {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = from.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            to.write_all(&buf[..n])?;
        }
        to.sync_all()?;
        Ok::<_, io::Error>(hasher.finalize().into())
    })();
    copied.map_err(|e| {
        let _ = fs::remove_file(tmp);
        io_err("copy to", tmp)(e)
    })
}

fn sha256_of(path: &Path) -> Result<[u8; 32], ExportError> {
    let mut f = File::open(path).map_err(io_err("open", path))?;
    let mut hasher = Sha256::new();
    io::copy(&mut f, &mut hasher).map_err(io_err("read", path))?;
    Ok(hasher.finalize().into())
}
