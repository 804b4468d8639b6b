//! Which connections the admin endpoint serves. At most `max_connections` at once
//! and `max_connections_per_address` from one client address; when a new one finds
//! no room, the oldest connection that is not being answered (still sending its
//! request, or idle between requests) gives up its place, so connections that send
//! a byte now and then cannot keep `/health` from its probes.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::admission::address_key;

/// The connections being served.
pub(super) struct Connections {
    max: usize,
    max_per_address: usize,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Oldest first.
    open: BTreeMap<u64, Open>,
    per_address: HashMap<u128, usize>,
}

struct Open {
    key: u128,
    /// Requests being answered now.
    busy: Arc<AtomicUsize>,
    evict: CancellationToken,
}

/// A connection's place; gives it up when dropped.
pub(super) struct Place {
    state: Arc<Mutex<State>>,
    id: u64,
    /// Requests being answered now; a connection with none may be evicted.
    pub(super) busy: Arc<AtomicUsize>,
    /// Cancelled when the place was given to a newer connection.
    pub(super) evicted: CancellationToken,
}

impl Connections {
    pub(super) fn new(max: usize, max_per_address: usize) -> Self {
        Connections {
            max: max.max(1),
            max_per_address: max_per_address.clamp(1, max.max(1)),
            state: Arc::default(),
        }
    }

    /// A place for a connection from `peer`, making room if needed; `None` when
    /// every connection in the way is being answered.
    pub(super) fn admit(&self, peer: IpAddr) -> Option<Place> {
        let key = address_key(peer);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.per_address.get(&key).copied().unwrap_or(0) >= self.max_per_address {
            state.evict_oldest_idle(Some(key))?;
        }
        if state.open.len() >= self.max {
            state.evict_oldest_idle(None)?;
        }
        let id = state.next;
        state.next += 1;
        let busy = Arc::new(AtomicUsize::new(0));
        let evicted = CancellationToken::new();
        state.open.insert(
            id,
            Open {
                key,
                busy: busy.clone(),
                evict: evicted.clone(),
            },
        );
        *state.per_address.entry(key).or_default() += 1;
        Some(Place {
            state: self.state.clone(),
            id,
            busy,
            evicted,
        })
    }
}

impl State {
    /// Evicts the oldest connection (from `key`, if given) that is not being answered.
    fn evict_oldest_idle(&mut self, key: Option<u128>) -> Option<()> {
        let victim = self
            .open
            .iter()
            .find(|(_, o)| key.is_none_or(|k| o.key == k) && o.busy.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id)?;
        self.remove(victim);
        Some(())
    }

    fn remove(&mut self, id: u64) {
        let Some(open) = self.open.remove(&id) else {
            return;
        };
        open.evict.cancel();
        if let Some(n) = self.per_address.get_mut(&open.key) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&open.key);
            }
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.remove(self.id);
    }
}

/// A hyper service that counts the requests of its connection being answered.
pub(super) struct Tracked<S> {
    pub(super) inner: S,
    pub(super) busy: Arc<AtomicUsize>,
}

struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, R> hyper::service::Service<R> for Tracked<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, request: R) -> Self::Future {
        self.busy.fetch_add(1, Ordering::AcqRel);
        let busy = Busy(self.busy.clone());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let _busy = busy;
            answer.await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_make_room_oldest_first_and_per_address() {
        let conns = Connections::new(3, 2);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let a1 = conns.admit(ip(1)).unwrap();
        let a2 = conns.admit(ip(1)).unwrap();
        // Its address is at its cap: its own oldest idle connection makes room.
        let a3 = conns.admit(ip(1)).unwrap();
        assert!(a1.evicted.is_cancelled() && !a2.evicted.is_cancelled());
        let b1 = conns.admit(ip(2)).unwrap();
        // Full: the oldest idle connection goes, wherever it is from.
        a2.busy.fetch_add(1, Ordering::AcqRel);
        let c1 = conns.admit(ip(3)).unwrap();
        assert!(!a2.evicted.is_cancelled(), "being answered");
        assert!(a3.evicted.is_cancelled());
        // Every connection in the way is busy: no room.
        b1.busy.fetch_add(1, Ordering::AcqRel);
        c1.busy.fetch_add(1, Ordering::AcqRel);
        assert!(conns.admit(ip(4)).is_none());
        drop(b1);
        assert!(conns.admit(ip(4)).is_some());
    }
}
