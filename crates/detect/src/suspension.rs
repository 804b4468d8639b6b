//! Suspended accounts, kept in a file of the detection state directory so that a
//! suspension survives restarts and policy reloads until an officer lifts it.
//!
//! `suspensions.json` holds the suspended logins and the unlocks not yet written
//! into the audit trail. The proxy and `maskgate account unlock` both change it:
//! every change takes an exclusive `flock` on `suspensions.lock`, reads the file,
//! changes it and replaces it atomically (write, fsync, rename, fsync the
//! directory). The proxy notices a change by the file's modification time, writes
//! an `account_unlocked` record for each unlock it finds, and forgets it.

use std::collections::BTreeMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

const FILE: &str = "suspensions.json";
const LOCK: &str = "suspensions.lock";
const DEAD_LETTER: &str = "webhook-dead-letter.jsonl";

/// Why the state directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a valid suspensions file: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
}

fn io_error<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> StateError + 'p {
    move |source| StateError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// One suspended account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// The rule whose alert suspended it.
    pub rule: String,
    /// The alert's id.
    pub alert: String,
    pub summary: String,
}

/// An unlock by an officer, waiting to be written into the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlock {
    pub login: String,
    pub reason: String,
    /// The OS user who ran `maskgate account unlock`.
    pub by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The alert that had suspended the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suspensions {
    #[serde(default)]
    pub suspended: BTreeMap<String, Suspension>,
    #[serde(default)]
    pub unlocks: Vec<Unlock>,
}

/// The detection state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens `dir`, creating it (0700) if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<StateDir, StateError> {
        let dir = dir.as_ref().to_owned();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_error("create", &dir))?;
        Ok(StateDir { dir })
    }

    /// A state directory that must already exist (for the command line).
    pub fn existing(dir: impl AsRef<Path>) -> Result<StateDir, StateError> {
        let dir = dir.as_ref().to_owned();
        std::fs::metadata(&dir).map_err(io_error("open", &dir))?;
        Ok(StateDir { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where undeliverable alerts are appended.
    pub fn dead_letter(&self) -> PathBuf {
        self.dir.join(DEAD_LETTER)
    }

    /// When the suspensions file last changed (`None` if there is none).
    pub fn modified(&self) -> Option<SystemTime> {
        std::fs::metadata(self.dir.join(FILE))
            .and_then(|m| m.modified())
            .ok()
    }

    /// The suspensions as they are on disk (empty when there is no file yet).
    pub fn read(&self) -> Result<Suspensions, StateError> {
        let path = self.dir.join(FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Suspensions::default()),
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        serde_json::from_slice(&text).map_err(|e| StateError::Format {
            path,
            reason: e.to_string(),
        })
    }

    /// Reads, changes and writes back the suspensions under the lock. The change
    /// is written only when `change` returns `Ok`.
    pub fn update<R, E: From<StateError>>(
        &self,
        change: impl FnOnce(&mut Suspensions) -> Result<R, E>,
    ) -> Result<R, E> {
        let _lock = self.lock()?;
        let mut state = self.read()?;
        let before = state.clone();
        let result = change(&mut state)?;
        if state != before {
            self.write(&state)?;
        }
        Ok(result)
    }

    fn lock(&self) -> Result<Flock<File>, StateError> {
        let path = self.dir.join(LOCK);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_error("open", &path))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| io_error("lock", &path)(io::Error::from(errno)))
    }

    fn write(&self, state: &Suspensions) -> Result<(), StateError> {
        let path = self.dir.join(FILE);
        let tmp = self.dir.join(".suspensions.json.tmp");
        let mut text = serde_json::to_vec_pretty(state).unwrap_or_default();
        text.push(b'\n');
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_error("create", &tmp))?;
        file.write_all(&text).map_err(io_error("write", &tmp))?;
        file.sync_all().map_err(io_error("sync", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_error("rename", &tmp))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("sync", &self.dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspend_and_unlock_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().join("d")).unwrap();
        assert_eq!(state.read().unwrap(), Suspensions::default());
        let now = OffsetDateTime::now_utc();
        state
            .update(|s| {
                s.suspended.insert(
                    "clerk".into(),
                    Suspension {
                        since: now,
                        rule: "enumeration".into(),
                        alert: "enumeration-7".into(),
                        summary: "x".into(),
                    },
                );
                Ok::<_, StateError>(())
            })
            .unwrap();
        let again = StateDir::existing(dir.path().join("d")).unwrap();
        assert!(again.read().unwrap().suspended.contains_key("clerk"));
        std::fs::write(dir.path().join("d").join(FILE), "{").unwrap();
        assert!(matches!(again.read(), Err(StateError::Format { .. })));
    }
}
