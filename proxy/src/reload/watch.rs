//! Watching the policy directory, and finding it again when it is swapped.
//!
//! A watch follows an inode: after `mv policy policy.old; mv policy.new policy`, or
//! a `current -> releases/N` symlink switched to another release, it would go on
//! watching the old directory and miss every later edit. So the directory's parent
//! is watched too, and a rename, removal or creation of the directory's own name
//! watches it again and reloads. A symlink switched higher up the path escapes
//! both, so every `check_interval` the directory is resolved again (watched anew
//! when it now resolves elsewhere) and the files are compared with the policy in
//! force by their generation digest: when they differ, and did not change since the
//! previous check, the policy is reloaded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::server::Shared;

/// Quiet time after the last change before the policy is reloaded.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// What an event means for the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// A policy file was closed after writing, renamed, removed, or linked.
    Changed,
    /// The directory itself was renamed, removed or (re)created: watch it anew.
    Replaced,
}

/// The watches on the directory and its parent.
struct Watch {
    _watcher: Option<RecommendedWatcher>,
    /// The directory the watch is on, symlinks resolved.
    target: Option<PathBuf>,
}

impl Watch {
    fn start(dir: &Path, tx: &mpsc::UnboundedSender<Signal>) -> Watch {
        let target = std::fs::canonicalize(dir).ok();
        let events = {
            let (dir, tx) = (dir.to_path_buf(), tx.clone());
            move |event: notify::Result<notify::Event>| {
                if let Some(signal) = event.ok().and_then(|e| classify(&dir, &e)) {
                    let _ = tx.send(signal);
                }
            }
        };
        let mut watcher = match notify::recommended_watcher(events) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the policy directory; it is \
                               compared every check_interval, and SIGHUP reloads it");
                return Watch {
                    _watcher: None,
                    target,
                };
            }
        };
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the policy directory");
        }
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive) {
                tracing::debug!(error = %e, "cannot watch the policy directory's parent");
            }
        }
        Watch {
            _watcher: Some(watcher),
            target,
        }
    }
}

/// What `event` means for the policy in `dir`, if anything. Writes are not
/// changes until the file is closed: a file still open for writing is not read.
fn classify(dir: &Path, event: &notify::Event) -> Option<Signal> {
    if event.paths.iter().any(|p| p == dir) {
        return match event.kind {
            EventKind::Create(_)
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_)) => Some(Signal::Replaced),
            _ => None,
        };
    }
    if !event.paths.iter().any(|p| p.parent() == Some(dir)) {
        return None;
    }
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(_))
        | EventKind::Remove(_) => Some(Signal::Changed),
        // A symlink is complete when it is made; a file is not.
        EventKind::Create(_) if event.paths.iter().any(|p| p.is_symlink()) => Some(Signal::Changed),
        _ => None,
    }
}

/// Watches the policy directory until `stop` (see the module comment).
pub fn watch_policy_dir(shared: Arc<Shared>, stop: CancellationToken) -> JoinHandle<()> {
    // Without a trailing slash, so that event paths compare equal.
    let dir: PathBuf = shared.config.policy.dir.components().collect();
    let every = shared.config.policy.check_interval;
    tokio::spawn(async move {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut watch = Watch::start(&dir, &tx);
        let mut checks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut check = Check::default();
        loop {
            let signal = tokio::select! {
                _ = stop.cancelled() => return,
                signal = rx.recv() => signal,
                _ = checks.tick() => {
                    if std::fs::canonicalize(&dir).ok() != watch.target {
                        tracing::info!(dir = %dir.display(), "the policy directory was replaced; watching it again");
                        watch = Watch::start(&dir, &tx);
                    }
                    check.run(&shared).await;
                    continue;
                }
            };
            let mut replaced = signal == Some(Signal::Replaced);
            // Wait for the burst of events to end.
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    event = tokio::time::timeout(DEBOUNCE, rx.recv()) => match event {
                        Ok(signal) => replaced |= signal == Some(Signal::Replaced),
                        Err(_) => break,
                    },
                }
            }
            if replaced {
                tracing::info!(dir = %dir.display(), "the policy directory was replaced; watching it again");
                watch = Watch::start(&dir, &tx);
            }
            let _ = super::reload_settled(&shared).await;
        }
    })
}

/// The periodic comparison of the files with the policy in force.
#[derive(Default)]
struct Check {
    /// The files' generation at the previous check.
    previous: Option<String>,
    /// The last generation this check tried to put in force.
    tried: Option<String>,
}

impl Check {
    async fn run(&mut self, shared: &Shared) {
        let config = &shared.config.policy;
        let on_disk = match maskgate_policy::Policy::check_dir(&config.dir, config.settings.clone())
        {
            Ok(loaded) => loaded.policy.generation().as_str().to_owned(),
            Err(rejected) => rejected.generation.as_str().to_owned(),
        };
        let in_force = shared.policy.load().generation().as_str().to_owned();
        let stable = self.previous.as_deref() == Some(on_disk.as_str());
        self.previous = Some(on_disk.clone());
        if on_disk == in_force || !stable || self.tried.as_deref() == Some(on_disk.as_str()) {
            return;
        }
        tracing::info!("the policy files differ from the policy in force; reloading them");
        self.tried = Some(on_disk);
        let _ = super::reload_settled(shared).await;
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, RemoveKind, RenameMode};

    use super::*;

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn writes_count_once_closed_and_the_directory_itself_is_watched_anew() {
        let dir = Path::new("/etc/maskgate/policy");
        let file = "/etc/maskgate/policy/accounts.toml";
        let data = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert_eq!(classify(dir, &event(data, file)), None);
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert_eq!(classify(dir, &event(closed, file)), Some(Signal::Changed));
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert_eq!(classify(dir, &event(renamed, file)), Some(Signal::Changed));
        let created = EventKind::Create(CreateKind::File);
        assert_eq!(classify(dir, &event(created, file)), None);
        // The directory renamed away, or another moved into its name.
        let moved = EventKind::Modify(ModifyKind::Name(RenameMode::From));
        assert_eq!(
            classify(dir, &event(moved, "/etc/maskgate/policy")),
            Some(Signal::Replaced)
        );
        let removed = EventKind::Remove(RemoveKind::Folder);
        assert_eq!(
            classify(dir, &event(removed, "/etc/maskgate/policy")),
            Some(Signal::Replaced)
        );
        // Its siblings are none of its business.
        assert_eq!(classify(dir, &event(renamed, "/etc/maskgate/other")), None);
    }
}
