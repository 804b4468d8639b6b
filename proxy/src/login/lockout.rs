//! Locking login names after repeated failed logins, and limiting failed logins
//! per client address.
//!
//! Failures are counted per login name, whether or not the account exists, so a
//! lockout does not reveal which names are real. Memory is bounded whatever clients
//! send: a name is kept as a 64-bit keyed hash with a 24-byte entry, never as its
//! text; names that are not accounts of the policy live in a table of fixed capacity
//! that forgets its oldest entries first, while accounts of the policy (a number the
//! policy bounds) are never forgotten before their lock and window are over, so
//! a flood of invented names cannot unlock a real account early.
//!
//! An attempt is counted *before* its proof is checked ([`Lockouts::begin`]), under
//! the same lock that decides whether it may be checked at all: clients that open
//! many exchanges in parallel get no more proofs checked than the threshold allows,
//! and a success never clears a lock that is in force.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Thresholds for locking names and limiting addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failed logins within `window` that lock the name; 0 disables lockouts.
    pub max_failures: u32,
    pub window: Duration,
    /// How long a locked name stays locked.
    pub duration: Duration,
    /// Failed logins from one client address (an IPv6 /64) within `window` after
    /// which the address is refused until its window is over; 0 disables the limit.
    pub max_failures_per_address: u32,
    /// Names that are not accounts of the policy, tracked at most.
    pub max_tracked_names: usize,
    /// Client addresses tracked at most.
    pub max_tracked_addresses: usize,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            duration: Duration::from_secs(15 * 60),
            max_failures_per_address: 50,
            max_tracked_names: 100_000,
            max_tracked_addresses: 100_000,
        }
    }
}

/// Why a login may not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The name is locked for this long still.
    Locked(Duration),
    /// The client address failed too often; refused for this long still.
    Address(Duration),
}

/// Failed-login state, shared by all sessions.
pub struct Lockouts {
    policy: LockoutPolicy,
    /// Keys names and addresses; random per process, so no one can aim collisions.
    hasher: RandomState,
    /// Times are kept as milliseconds since this instant (8 bytes instead of 16).
    epoch: Instant,
    tables: Mutex<Tables>,
}

/// One name's failures. Times in milliseconds since the epoch; `locked_until` 0
/// means not locked.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    failures: u32,
    /// Proofs being checked right now: they may still become failures.
    in_flight: u32,
    window_start: u64,
    locked_until: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct AddressEntry {
    failures: u32,
    window_start: u64,
}

struct Tables {
    /// Names that are accounts of the policy: pruned only once stale.
    accounts: HashMap<u64, Entry>,
    /// Size of `accounts` after its last pruning; the next one runs at twice that.
    accounts_pruned_at: usize,
    /// Other names, bounded.
    others: Fifo<Entry>,
    addresses: Fifo<AddressEntry>,
}

/// The least `accounts` grows to before it is pruned.
const PRUNE_ACCOUNTS_ABOVE: usize = 1024;

/// An attempt counted before its proof is checked. Dropped without an outcome,
/// it counts as a failure (fail closed).
pub struct Attempt<'a> {
    lockouts: &'a Lockouts,
    name: Option<u64>,
    address: Option<u64>,
    done: bool,
}

impl Lockouts {
    pub fn new(policy: LockoutPolicy) -> Self {
        Self {
            policy,
            hasher: RandomState::new(),
            epoch: Instant::now(),
            tables: Mutex::new(Tables {
                accounts: HashMap::new(),
                accounts_pruned_at: 0,
                others: Fifo::new(policy.max_tracked_names.max(1)),
                addresses: Fifo::new(policy.max_tracked_addresses.max(1)),
            }),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn name_key(&self, login: &str) -> u64 {
        self.hasher.hash_one(login)
    }

    fn address_key(&self, addr: IpAddr) -> u64 {
        self.hasher.hash_one(crate::admission::address_key(addr))
    }

    /// Refuses a login before any authentication work when its name is locked or
    /// its address failed too often. [`Lockouts::begin`] decides again at the proof.
    pub fn check(&self, login: &str, addr: IpAddr, now: Instant) -> Result<(), Refusal> {
        let now = self.ms(now);
        let tables = self.tables.lock().expect("lockout lock");
        self.address_refusal(&tables, self.address_key(addr), now)?;
        let key = self.name_key(login);
        match tables
            .accounts
            .get(&key)
            .or_else(|| tables.others.get(&key))
        {
            Some(entry) if entry.locked_until > now => Err(Refusal::Locked(Duration::from_millis(
                entry.locked_until - now,
            ))),
            _ => Ok(()),
        }
    }

    fn address_refusal(&self, tables: &Tables, key: u64, now: u64) -> Result<(), Refusal> {
        let max = self.policy.max_failures_per_address;
        if max == 0 {
            return Ok(());
        }
        let window = self.policy.window.as_millis() as u64;
        match tables.addresses.get(&key) {
            Some(a) if a.failures >= max && now < a.window_start + window => Err(Refusal::Address(
                Duration::from_millis(a.window_start + window - now),
            )),
            _ => Ok(()),
        }
    }

    /// Counts a login attempt whose proof is about to be checked. Refused when the
    /// name is locked, when the failures and the proofs being checked already reach
    /// the threshold, or when the address is limited. `known` tells whether the
    /// name is an account of the policy in force.
    pub fn begin(
        &self,
        login: &str,
        known: bool,
        addr: IpAddr,
        now: Instant,
    ) -> Result<Attempt<'_>, Refusal> {
        let now = self.ms(now);
        let mut tables = self.tables.lock().expect("lockout lock");
        let address = (self.policy.max_failures_per_address > 0).then(|| self.address_key(addr));
        if let Some(key) = address {
            self.address_refusal(&tables, key, now)?;
        }
        let name = if self.policy.max_failures > 0 {
            let key = self.name_key(login);
            let (window, max) = (
                self.policy.window.as_millis() as u64,
                self.policy.max_failures,
            );
            let entry = tables.entry(key, known, now, self);
            if entry.locked_until > now {
                return Err(Refusal::Locked(Duration::from_millis(
                    entry.locked_until - now,
                )));
            }
            if now.saturating_sub(entry.window_start) >= window {
                entry.failures = 0;
                entry.window_start = now;
            }
            if entry.failures + entry.in_flight >= max {
                // Parallel proofs that could all fail: this one waits for their outcome.
                return Err(Refusal::Locked(Duration::from_secs(1)));
            }
            entry.in_flight += 1;
            Some(key)
        } else {
            None
        };
        Ok(Attempt {
            lockouts: self,
            name,
            address,
            done: false,
        })
    }

    /// An admitted login clears its name's failures, unless the name is locked.
    pub fn record_success(&self, login: &str, now: Instant) {
        let now = self.ms(now);
        let key = self.name_key(login);
        let mut tables = self.tables.lock().expect("lockout lock");
        let Tables {
            accounts, others, ..
        } = &mut *tables;
        if let Some(entry) = accounts.get_mut(&key).or_else(|| others.get_mut(&key)) {
            if entry.locked_until <= now {
                entry.failures = 0;
            }
        }
    }

    /// Records the outcome of a counted attempt.
    fn finish(&self, attempt: &Attempt<'_>, failed: bool, now: Instant) -> Failed {
        let now = self.ms(now);
        let mut tables = self.tables.lock().expect("lockout lock");
        let mut outcome = Failed::default();
        if let Some(key) = attempt.name {
            let (max, duration) = (
                self.policy.max_failures,
                self.policy.duration.as_millis() as u64,
            );
            let Tables {
                accounts, others, ..
            } = &mut *tables;
            // The entry may have been forgotten meanwhile (an invented name under a flood).
            if let Some(entry) = accounts.get_mut(&key).or_else(|| others.get_mut(&key)) {
                entry.in_flight = entry.in_flight.saturating_sub(1);
                if failed {
                    entry.failures += 1;
                    if entry.failures >= max && entry.locked_until <= now && duration > 0 {
                        entry.locked_until = now + duration;
                        entry.failures = 0;
                        entry.window_start = now;
                        outcome.locked = true;
                    }
                }
            }
        }
        if let (Some(key), true) = (attempt.address, failed) {
            let window = self.policy.window.as_millis() as u64;
            let entry = tables
                .addresses
                .get_or_insert(key, |a| now.saturating_sub(a.window_start) >= window);
            if now.saturating_sub(entry.window_start) >= window {
                *entry = AddressEntry {
                    failures: 0,
                    window_start: now,
                };
            }
            entry.failures += 1;
            outcome.address_limited = entry.failures == self.policy.max_failures_per_address;
        }
        outcome
    }

    /// Names and addresses tracked now (for the metrics).
    pub fn tracked(&self) -> (usize, usize) {
        let tables = self.tables.lock().expect("lockout lock");
        (
            tables.accounts.len() + tables.others.map.len(),
            tables.addresses.map.len(),
        )
    }

    /// Names currently locked.
    pub fn locked_count(&self, now: Instant) -> usize {
        let now = self.ms(now);
        let tables = self.tables.lock().expect("lockout lock");
        tables
            .accounts
            .values()
            .chain(tables.others.map.values())
            .filter(|e| e.locked_until > now)
            .count()
    }

    fn stale(&self, entry: &Entry, now: u64) -> bool {
        entry.in_flight == 0
            && entry.locked_until <= now
            && now.saturating_sub(entry.window_start) >= self.policy.window.as_millis() as u64
    }
}

impl Tables {
    /// The entry of a name, made if there is none; an account's entry is moved out
    /// of the bounded table, where it could be forgotten.
    fn entry(&mut self, key: u64, known: bool, now: u64, lockouts: &Lockouts) -> &mut Entry {
        if !self.accounts.contains_key(&key) && known {
            let moved = self.others.remove(&key).unwrap_or(Entry {
                window_start: now,
                ..Entry::default()
            });
            if self.accounts.len() >= (2 * self.accounts_pruned_at).max(PRUNE_ACCOUNTS_ABOVE) {
                self.accounts.retain(|_, e| !lockouts.stale(e, now));
                self.accounts_pruned_at = self.accounts.len();
            }
            self.accounts.insert(key, moved);
        }
        if self.accounts.contains_key(&key) {
            return self.accounts.get_mut(&key).expect("just checked");
        }
        let fresh = !self.others.map.contains_key(&key);
        let entry = self.others.get_or_insert(key, |e| lockouts.stale(e, now));
        if fresh {
            entry.window_start = now;
        }
        entry
    }
}

/// A map of fixed capacity that forgets its oldest keys first.
struct Fifo<V> {
    map: HashMap<u64, V>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl<V: Default> Fifo<V> {
    fn new(capacity: usize) -> Self {
        Fifo {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn get(&self, key: &u64) -> Option<&V> {
        self.map.get(key)
    }

    fn get_mut(&mut self, key: &u64) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    fn remove(&mut self, key: &u64) -> Option<V> {
        self.map.remove(key)
    }

    /// The value of `key`, inserted (as default) if missing. Room is made by
    /// dropping stale values at the front and, at capacity, the oldest value.
    fn get_or_insert(&mut self, key: u64, stale: impl Fn(&V) -> bool) -> &mut V {
        if !self.map.contains_key(&key) {
            while let Some(front) = self.order.front().copied() {
                let drop_it = match self.map.get(&front) {
                    None => true,
                    Some(v) => self.map.len() >= self.capacity || stale(v),
                };
                if !drop_it {
                    break;
                }
                self.order.pop_front();
                self.map.remove(&front);
            }
            if self.order.len() > 2 * self.capacity {
                // Keys removed out of order linger in the queue; keep it bounded.
                let map = &self.map;
                self.order.retain(|k| map.contains_key(k));
            }
            self.order.push_back(key);
        }
        self.map.entry(key).or_default()
    }
}

/// What a failed attempt set off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failed {
    /// This failure locked the name.
    pub locked: bool,
    /// This failure brought its client address to the limit.
    pub address_limited: bool,
}

impl Attempt<'_> {
    /// The proof did not verify.
    pub fn failed(mut self, now: Instant) -> Failed {
        self.done = true;
        self.lockouts.finish(&self, true, now)
    }

    /// The proof verified. The failures are cleared only once the login is
    /// admitted ([`Lockouts::record_success`]).
    pub fn passed(mut self) {
        self.done = true;
        self.lockouts.finish(&self, false, Instant::now());
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.lockouts.finish(self, true, Instant::now());
        }
    }
}

#[cfg(test)]
#[path = "lockout_tests.rs"]
mod tests;
