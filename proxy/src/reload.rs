//! Reloading the policy when its files change, and the guards against a slip.
//!
//! Editors write files in several steps (temporary file, rename, chmod), so
//! change events are debounced (see [`watch`]): a reload starts once the directory
//! has been quiet for [`DEBOUNCE`], on a file closed after writing, renamed or
//! removed (not on each write, so a file still open for writing is not read).
//! SIGHUP reloads too (see the binary).
//!
//! A file still being written is not put in force: a reload waits until every
//! policy file was last modified at least [`SETTLE`] ago, and the files are
//! compared (size, modification time) before and after they are read, and read
//! again after a pause when they changed. A policy that would remove every
//! account, or `max_account_removal_share` of them or more, is refused unless
//! `confirm_account_removal` is set: the last good policy stays in force and
//! `/health`, the metrics and the log say why. A reload that widens access is put
//! in force with a warning naming each widening, in the log and in the trail.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use maskgate_policy::{Policy, PolicyErrors};

use crate::config::RemovalGuard;
use crate::observe::{Event, PolicyReload};
use crate::server::{load_policy, Shared};

mod watch;
mod widening;

pub use watch::{watch_policy_dir, DEBOUNCE};
pub use widening::widenings;

/// A policy file modified less than this long ago may still be being written.
pub const SETTLE: Duration = Duration::from_secs(1);

/// The `/health` component policy problems are reported under.
pub const COMPONENT: &str = "policy";

/// What `/health` says while the policy in force has no accounts.
pub const NO_ACCOUNTS: &str = "the policy in force has no accounts: no one can log in";

/// Waits for files still being written, at most, before a reload gives up.
const SETTLE_TRIES: usize = 12;

/// Why a reload left the policy in force unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the policy is not valid:\n{0}")]
    Invalid(PolicyErrors),
    /// The new policy would remove too many accounts.
    #[error("{0}")]
    Guarded(String),
    #[error("the policy files changed while they were read")]
    Unsettled,
}

/// Reads the policy directory and puts the policy in force if it may be.
pub(crate) fn reload(shared: &Shared) -> Result<(), ReloadError> {
    let before = shared.policy.load_full();
    let files = snapshot(&shared.config.policy.dir);
    let loaded = load_policy(&shared.config);
    if files != snapshot(&shared.config.policy.dir) {
        tracing::info!("the policy files changed while they were read; reading them again");
        return Err(ReloadError::Unsettled);
    }
    let generation = before.generation().clone();
    // The files that changed, of the policy put in force or of the one refused.
    let mut files = Vec::new();
    let outcome = loaded
        .map_err(|rejected| {
            files = rejected.generation.changes_since(&generation);
            ReloadError::Invalid(rejected.errors)
        })
        .and_then(|policy| {
            files = policy.generation().changes_since(&generation);
            match removal_refusal(&before, &policy, shared.config.policy.removal_guard) {
                Some(reason) => Err(ReloadError::Guarded(reason)),
                None => Ok(policy),
            }
        });
    match outcome {
        Ok(policy) => {
            let after = policy.generation().clone();
            let widened = widenings(&before, &policy);
            if !widened.is_empty() {
                tracing::warn!(
                    before = %generation, after = %after,
                    "the reloaded policy WIDENS ACCESS: {}; if this is not meant, fix the \
                     policy files now",
                    widened.join("; ")
                );
            }
            let empty = policy.accounts().next().is_none();
            shared.policy.store(Arc::new(policy));
            if empty {
                tracing::warn!("{NO_ACCOUNTS}");
                shared.health.set(COMPONENT, NO_ACCOUNTS);
            } else {
                shared.health.clear(COMPONENT);
            }
            shared.events.emit(Event::PolicyReload(PolicyReload {
                before: generation,
                files,
                widened,
                outcome: Ok(after),
            }));
            Ok(())
        }
        Err(e) => {
            let summary =
                match &e {
                    ReloadError::Invalid(errors) => {
                        format!(
                    "policy reload refused ({} errors; the previous policy stays in force): {}",
                    errors.0.len(),
                    errors.0.first().map(ToString::to_string).unwrap_or_default()
                )
                    }
                    other => format!(
                        "policy reload refused (the previous policy stays in force): {other}"
                    ),
                };
            shared.health.set(COMPONENT, summary);
            let detail = match &e {
                ReloadError::Invalid(errors) => errors.to_string(),
                other => other.to_string(),
            };
            shared.events.emit(Event::PolicyReload(PolicyReload {
                before: generation,
                files,
                widened: Vec::new(),
                outcome: Err(detail),
            }));
            Err(e)
        }
    }
}

/// [`reload`] once every policy file was last modified at least [`SETTLE`] ago,
/// and again after a pause while the files are still being written. Files that do
/// not settle (written on and on, or dated in the future) are not read.
pub(crate) async fn reload_settled(shared: &Shared) -> Result<(), ReloadError> {
    for _ in 0..SETTLE_TRIES {
        if let Some(wait) = unsettled_for(&shared.config.policy.dir, SystemTime::now()) {
            tokio::time::sleep(wait).await;
            continue;
        }
        match reload(shared) {
            Err(ReloadError::Unsettled) => tokio::time::sleep(DEBOUNCE).await,
            done => return done,
        }
    }
    tracing::warn!(
        "the policy files are still being written (or dated in the future): not reloaded; \
         send SIGHUP once they are complete"
    );
    Err(ReloadError::Unsettled)
}

/// How long until the newest policy file is [`SETTLE`] old, if it is younger.
fn unsettled_for(dir: &Path, now: SystemTime) -> Option<Duration> {
    let newest = snapshot(dir).into_iter().filter_map(|f| f.2).max()?;
    let age = now.duration_since(newest).unwrap_or(Duration::ZERO);
    (age < SETTLE).then(|| SETTLE - age + Duration::from_millis(20))
}

/// Why `after` may not replace `before`, if it may not: it removes every account,
/// or the guard's share of them or more, and the operator did not confirm it. At
/// the share itself, not only past it: a file cut in half removes exactly half.
pub fn removal_refusal(before: &Policy, after: &Policy, guard: RemovalGuard) -> Option<String> {
    if guard.confirmed {
        return None;
    }
    let total = before.accounts().count();
    if total == 0 {
        return None;
    }
    let removed = before
        .accounts()
        .filter(|a| after.account(&a.login).is_none())
        .count();
    let confirm = "if this is meant, set [policy] confirm_account_removal = true, or \
                   restart maskgate to load it";
    if removed == total {
        return Some(format!(
            "the new policy removes every account ({total}); {confirm}"
        ));
    }
    if removed > 0 && removed as f64 >= guard.max_share * total as f64 {
        return Some(format!(
            "the new policy removes {removed} of {total} accounts, as many as \
             max_account_removal_share ({}) refuses or more; {confirm}",
            guard.max_share
        ));
    }
    None
}

/// Each policy file's name, size and modification time, to tell whether the
/// directory changed while it was read.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (path, len, modified)
        })
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(accounts: &[&str]) -> Policy {
        let mut text =
            String::from("[roles.relay]\ndescription = \"relays\"\nunrestricted = true\n");
        let verifier = maskgate_policy::ScramVerifier::generate("pw", 4096);
        for login in accounts {
            text.push_str(&format!(
                "[accounts.{login}]\nname = \"x\"\nverifier = \"{verifier}\"\nroles = [\"relay\"]\n"
            ));
        }
        Policy::from_texts(
            vec![(PathBuf::from("p.toml"), text)],
            Default::default(),
            time::macros::date!(2026 - 01 - 01),
        )
        .expect("a valid policy")
        .policy
    }

    #[test]
    fn removing_every_account_or_too_many_is_refused_unless_confirmed() {
        let guard = RemovalGuard::default();
        let four = policy(&["a", "b", "c", "d"]);
        let none = policy(&[]);
        let why = removal_refusal(&four, &none, guard).expect("refused");
        assert!(why.contains("removes every account (4)"), "{why}");
        let one = policy(&["a"]);
        let why = removal_refusal(&four, &one, guard).expect("refused");
        assert!(why.contains("removes 3 of 4"), "{why}");
        // Half is refused too: a file cut after half its accounts removes half.
        let why = removal_refusal(&four, &policy(&["a", "b"]), guard).expect("refused");
        assert!(why.contains("removes 2 of 4"), "{why}");
        assert!(removal_refusal(&four, &policy(&["a", "b", "c"]), guard).is_none());
        let none_removable = RemovalGuard {
            max_share: 0.0,
            ..guard
        };
        assert!(removal_refusal(&four, &four, none_removable).is_none());
        assert!(removal_refusal(&four, &policy(&["a", "b", "c"]), none_removable).is_some());
        assert!(removal_refusal(&four, &policy(&["a", "b", "c", "d", "e"]), guard).is_none());
        assert!(removal_refusal(&none, &none, guard).is_none());
        let confirmed = RemovalGuard {
            confirmed: true,
            ..guard
        };
        assert!(removal_refusal(&four, &none, confirmed).is_none());
    }

    #[test]
    fn a_reload_waits_until_the_newest_file_is_settled() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unsettled_for(dir.path(), SystemTime::now()), None);
        std::fs::write(dir.path().join("a.toml"), "x = 1\n").unwrap();
        let now = SystemTime::now();
        let wait = unsettled_for(dir.path(), now).expect("just written");
        assert!(wait <= SETTLE + Duration::from_millis(20), "{wait:?}");
        assert_eq!(unsettled_for(dir.path(), now + SETTLE), None);
    }

    #[test]
    fn a_changed_file_changes_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "x = 1\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let before = snapshot(dir.path());
        assert_eq!(before.len(), 1);
        std::fs::write(dir.path().join("notes.txt"), "still ignored").unwrap();
        assert_eq!(snapshot(dir.path()), before);
        std::fs::write(dir.path().join("a.toml"), "x = 12\n").unwrap();
        assert_ne!(snapshot(dir.path()), before);
    }
}
