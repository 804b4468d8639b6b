//! Reloading the policy when its files change.
//!
//! Editors write files in several steps (temporary file, rename, chmod), so
//! change events are debounced: the policy is reloaded once the directory has
//! been quiet for [`DEBOUNCE`]. SIGHUP reloads at once (see the binary).

use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::server::ServerHandle;

/// Quiet time after the last change before the policy is reloaded.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Watches the policy directory until `stop`. If the directory cannot be
/// watched, changes are picked up by SIGHUP only, and the reason is logged.
pub fn watch_policy_dir(handle: ServerHandle, stop: CancellationToken) -> JoinHandle<()> {
    let dir = handle.policy_dir().to_path_buf();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })
    .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the policy directory; reload with SIGHUP");
            None
        }
    };
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                event = rx.recv() => if event.is_none() { return },
            }
            // Wait for the burst of events to end.
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    event = tokio::time::timeout(DEBOUNCE, rx.recv()) => match event {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    },
                }
            }
            let _ = handle.reload_policy();
        }
    })
}
