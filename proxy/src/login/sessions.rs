//! Open sessions per account, for `max_sessions`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Counts open sessions per login.
#[derive(Default)]
pub struct SessionCounts {
    counts: Mutex<HashMap<String, u32>>,
}

impl SessionCounts {
    /// Takes a session slot for `login` unless it already has `max` open sessions.
    /// The slot is released when the returned guard is dropped.
    pub fn try_acquire(self: &Arc<Self>, login: &str, max: Option<u32>) -> Option<SessionSlot> {
        let mut counts = self.counts.lock().expect("session count lock");
        let count = counts.entry(login.to_string()).or_insert(0);
        if max.is_some_and(|max| *count >= max) {
            return None;
        }
        *count += 1;
        Some(SessionSlot {
            counts: self.clone(),
            login: login.to_string(),
        })
    }

    pub fn open(&self, login: &str) -> u32 {
        self.counts
            .lock()
            .expect("session count lock")
            .get(login)
            .copied()
            .unwrap_or(0)
    }
}

/// One open session of an account.
pub struct SessionSlot {
    counts: Arc<SessionCounts>,
    login: String,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.counts.lock() {
            if let Some(c) = counts.get_mut(&self.login) {
                *c -= 1;
                if *c == 0 {
                    counts.remove(&self.login);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_open_sessions_and_releases_on_drop() {
        let counts = Arc::new(SessionCounts::default());
        let a = counts.try_acquire("alice", Some(2)).unwrap();
        let _b = counts.try_acquire("alice", Some(2)).unwrap();
        assert!(counts.try_acquire("alice", Some(2)).is_none());
        assert!(counts.try_acquire("bob", Some(2)).is_some());
        drop(a);
        assert_eq!(counts.open("alice"), 1);
        assert!(counts.try_acquire("alice", Some(2)).is_some());
        assert!(counts.try_acquire("carol", None).is_some());
    }
}
