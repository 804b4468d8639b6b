//! Query cancellation.
//!
//! Each client session gets a BackendKeyData of the proxy's own, so clients
//! never learn upstream process ids. A CancelRequest naming a live session is
//! forwarded to that session's upstream backend; anything else is ignored, as
//! PostgreSQL does, without a reply.

use std::collections::HashMap;
use std::sync::Mutex;

use rand::Rng;
use subtle::ConstantTimeEq;

use crate::upstream::CancelKey;

/// The cancel keys of live sessions: the proxy's key -> the upstream's key.
#[derive(Default)]
pub struct CancelRegistry {
    sessions: Mutex<HashMap<i32, Entry>>,
}

struct Entry {
    secret: i32,
    upstream: CancelKey,
}

impl CancelRegistry {
    /// Registers a session attached to `upstream` and returns the key the
    /// client gets. The key stays valid until the returned guard is dropped.
    pub fn register(&self, upstream: CancelKey) -> CancelGuard<'_> {
        let mut rng = rand::thread_rng();
        let mut sessions = self.sessions.lock().expect("cancel registry lock");
        let pid = loop {
            let pid = rng.gen_range(1..i32::MAX);
            if !sessions.contains_key(&pid) {
                break pid;
            }
        };
        let secret = rng.gen();
        sessions.insert(pid, Entry { secret, upstream });
        CancelGuard {
            registry: self,
            key: CancelKey { pid, secret },
        }
    }

    /// The upstream key for a client's CancelRequest, if it names a live session.
    pub fn lookup(&self, pid: i32, secret: i32) -> Option<CancelKey> {
        let sessions = self.sessions.lock().expect("cancel registry lock");
        let entry = sessions.get(&pid)?;
        bool::from(entry.secret.to_be_bytes().ct_eq(&secret.to_be_bytes()))
            .then_some(entry.upstream)
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().expect("cancel registry lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keeps a session's cancel key registered while it lives.
pub struct CancelGuard<'a> {
    registry: &'a CancelRegistry,
    key: CancelKey,
}

impl CancelGuard<'_> {
    /// The key to send to the client in BackendKeyData.
    pub fn client_key(&self) -> CancelKey {
        self.key
    }
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut sessions) = self.registry.sessions.lock() {
            sessions.remove(&self.key.pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: CancelKey = CancelKey {
        pid: 4242,
        secret: 7,
    };

    #[test]
    fn forwards_only_with_the_right_secret() {
        let registry = CancelRegistry::default();
        let guard = registry.register(UPSTREAM);
        let key = guard.client_key();
        assert_eq!(registry.lookup(key.pid, key.secret), Some(UPSTREAM));
        assert_eq!(registry.lookup(key.pid, key.secret.wrapping_add(1)), None);
        assert_eq!(registry.lookup(key.pid.wrapping_add(1), key.secret), None);
    }

    #[test]
    fn a_finished_session_cannot_be_cancelled() {
        let registry = CancelRegistry::default();
        let key = registry.register(UPSTREAM).client_key();
        assert_eq!(registry.lookup(key.pid, key.secret), None);
        assert!(registry.is_empty());
    }

    #[test]
    fn client_keys_never_expose_the_upstream_pid() {
        let registry = CancelRegistry::default();
        let guards: Vec<_> = (0..100).map(|_| registry.register(UPSTREAM)).collect();
        assert!(guards.iter().all(|g| g.client_key() != UPSTREAM));
        assert_eq!(registry.len(), 100);
    }
}
