//! A counting gate with bounded waits, shared fairly between accounts.
//!
//! One account holds at most `per_account` slots, and when a slot frees it goes to
//! the waiting account that holds the fewest (the earliest waiter among equals), so
//! an account that keeps resubmitting costly statements cannot take every slot that
//! frees while another account's statement waits.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub(super) struct Gate {
    state: Mutex<State>,
    /// How many of the slots one account may hold at once.
    per_account: usize,
    released: Condvar,
}

struct State {
    free: usize,
    /// Slots held, by account.
    held: HashMap<Arc<str>, usize>,
    /// Waiting analyses, in arrival order: (ticket, account).
    waiting: Vec<(u64, Arc<str>)>,
    next_ticket: u64,
}

impl State {
    fn held(&self, account: &str) -> usize {
        self.held.get(account).copied().unwrap_or(0)
    }

    /// Whether the waiter `ticket` of `account` is the one the next free slot is for:
    /// among waiters whose account may take one more slot, the one whose account
    /// holds the fewest, the earliest among equals.
    fn is_next(&self, ticket: u64, per_account: usize) -> bool {
        self.waiting
            .iter()
            .filter(|(_, account)| self.held(account) < per_account)
            .min_by_key(|(t, account)| (self.held(account), *t))
            .is_some_and(|(t, _)| *t == ticket)
    }
}

/// A held slot, released when dropped (also when the analysis panics).
pub(super) struct Slot<'g> {
    gate: &'g Gate,
    account: Arc<str>,
}

impl Gate {
    pub(super) fn new(slots: usize) -> Gate {
        let slots = slots.max(1);
        Gate {
            state: Mutex::new(State {
                free: slots,
                held: HashMap::new(),
                waiting: Vec::new(),
                next_ticket: 0,
            }),
            per_account: slots.div_ceil(2),
            released: Condvar::new(),
        }
    }

    /// A slot for `account`, or `None` when none came its way within `wait`.
    pub(super) fn enter(&self, account: &Arc<str>, wait: Duration) -> Option<Slot<'_>> {
        let deadline = Instant::now() + wait;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push((ticket, account.clone()));
        let entered = loop {
            if state.free > 0 && state.is_next(ticket, self.per_account) {
                break true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break false;
            };
            state = self
                .released
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        state.waiting.retain(|(t, _)| *t != ticket);
        if !entered {
            drop(state);
            // Another waiter may have been behind this one.
            self.released.notify_all();
            return None;
        }
        state.free -= 1;
        *state.held.entry(account.clone()).or_default() += 1;
        drop(state);
        // A slot may still be free for the next waiter.
        self.released.notify_all();
        Some(Slot {
            gate: self,
            account: account.clone(),
        })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.state.lock().unwrap_or_else(|e| e.into_inner());
        state.free += 1;
        if let Some(held) = state.held.get_mut(&self.account) {
            *held -= 1;
            if *held == 0 {
                state.held.remove(&self.account);
            }
        }
        drop(state);
        // Waiters wait for different things (a slot, their turn, their account's
        // share): wake them all to look.
        self.gate.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_slot_goes_to_the_account_holding_the_fewest() {
        let gate = Arc::new(Gate::new(2));
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let first = gate.enter(&a, Duration::from_secs(1)).unwrap();
        let held = gate.enter(&b, Duration::from_secs(1)).unwrap();
        // `a` waits first for a second slot, then `c` (holding none) arrives.
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiter = |name: &'static str| {
            let (gate, order) = (gate.clone(), order.clone());
            std::thread::spawn(move || {
                let account: Arc<str> = name.into();
                let slot = gate.enter(&account, Duration::from_secs(5)).unwrap();
                order.lock().unwrap().push(name);
                std::thread::sleep(Duration::from_millis(20));
                drop(slot);
            })
        };
        let again_a = waiter("a");
        std::thread::sleep(Duration::from_millis(50));
        let c = waiter("c");
        std::thread::sleep(Duration::from_millis(50));
        // `a` may not take a second slot while it holds one: the freed slot is c's.
        drop(held);
        std::thread::sleep(Duration::from_millis(10));
        drop(first);
        again_a.join().unwrap();
        c.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["c", "a"]);
    }
}
