//! Locking accounts after repeated failed logins.
//!
//! Failures are counted per login name, whether or not the account exists,
//! so a lockout does not reveal which names are real. Entries whose window has
//! passed are pruned, so a flood of invented names cannot grow the table
//! without bound.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Thresholds for locking an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failed logins within `window` that lock the account; 0 disables lockouts.
    pub max_failures: u32,
    pub window: Duration,
    /// How long a locked account stays locked.
    pub duration: Duration,
}

/// Failed-login counters, shared by all sessions.
pub struct Lockouts {
    policy: LockoutPolicy,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

/// Above this many tracked names, stale entries are pruned on insert.
const PRUNE_ABOVE: usize = 10_000;

impl Lockouts {
    pub fn new(policy: LockoutPolicy) -> Self {
        Self {
            policy,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(remaining)` while `login` is locked.
    pub fn check(&self, login: &str, now: Instant) -> Result<(), Duration> {
        let entries = self.entries.lock().expect("lockout lock");
        match entries.get(login).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed login; returns true when this failure locked the account.
    pub fn record_failure(&self, login: &str, now: Instant) -> bool {
        if self.policy.max_failures == 0 {
            return false;
        }
        let mut entries = self.entries.lock().expect("lockout lock");
        if entries.len() > PRUNE_ABOVE {
            let window = self.policy.window;
            entries.retain(|_, e| {
                e.locked_until.is_some_and(|u| u > now) || now - e.window_start < window
            });
        }
        let entry = entries.entry(login.to_string()).or_insert(Entry {
            failures: 0,
            window_start: now,
            locked_until: None,
        });
        if now - entry.window_start >= self.policy.window {
            entry.failures = 0;
            entry.window_start = now;
        }
        entry.failures += 1;
        if entry.failures >= self.policy.max_failures && entry.locked_until.is_none_or(|u| u <= now)
        {
            entry.locked_until = Some(now + self.policy.duration);
            entry.failures = 0;
            entry.window_start = now;
            return true;
        }
        false
    }

    /// A successful login clears the failure count.
    pub fn record_success(&self, login: &str) {
        self.entries.lock().expect("lockout lock").remove(login);
    }

    /// Names currently locked (for the metrics gauge).
    pub fn locked_count(&self, now: Instant) -> usize {
        self.entries
            .lock()
            .expect("lockout lock")
            .values()
            .filter(|e| e.locked_until.is_some_and(|u| u > now))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockouts(max_failures: u32) -> Lockouts {
        Lockouts::new(LockoutPolicy {
            max_failures,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(300),
        })
    }

    #[test]
    fn locks_after_the_threshold_and_unlocks_after_the_duration() {
        let l = lockouts(3);
        let t0 = Instant::now();
        assert!(!l.record_failure("alice", t0));
        assert!(!l.record_failure("alice", t0));
        assert!(l.check("alice", t0).is_ok());
        assert!(l.record_failure("alice", t0));
        assert_eq!(l.check("alice", t0), Err(Duration::from_secs(300)));
        assert!(l.check("bob", t0).is_ok());
        assert_eq!(l.locked_count(t0), 1);
        assert!(l.check("alice", t0 + Duration::from_secs(301)).is_ok());
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let l = lockouts(2);
        let t0 = Instant::now();
        assert!(!l.record_failure("alice", t0));
        assert!(!l.record_failure("alice", t0 + Duration::from_secs(61)));
        assert!(l.check("alice", t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn success_resets_the_count_and_zero_disables() {
        let l = lockouts(2);
        let t0 = Instant::now();
        l.record_failure("alice", t0);
        l.record_success("alice");
        assert!(!l.record_failure("alice", t0));
        let off = lockouts(0);
        for _ in 0..100 {
            assert!(!off.record_failure("alice", t0));
        }
        assert!(off.check("alice", t0).is_ok());
    }

    #[test]
    fn invented_names_do_not_grow_the_table_forever() {
        let l = lockouts(5);
        let t0 = Instant::now();
        for i in 0..(PRUNE_ABOVE + 10) {
            l.record_failure(&format!("nobody{i}"), t0);
        }
        let later = t0 + Duration::from_secs(120);
        l.record_failure("late", later);
        assert!(l.entries.lock().unwrap().len() < 10);
    }
}
