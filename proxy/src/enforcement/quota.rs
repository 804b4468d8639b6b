//! Rolling per-account quotas: statements per minute and rows per hour.
//!
//! Each account has one [`Usage`], shared by all its sessions, with sliding windows
//! of one-second (statements) and one-minute (rows) buckets. Sessions keep the
//! account's `Arc` and charge it as statements start and row by row as rows stream:
//! each row is taken from the shared count before it is forwarded, so pipelined or
//! parallel statements of one account can never together pass what is left.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Buckets per window: 60 seconds for a minute, 60 minutes for an hour.
const BUCKETS: usize = 60;

/// Usage of every account that has sent a statement since the proxy started.
pub struct Quotas {
    accounts: moka::sync::Cache<String, Arc<Mutex<Usage>>>,
    epoch: Instant,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            // Bounded only by the number of accounts: entries must not be evicted while
            // a session holds them, or two sessions would count apart.
            accounts: moka::sync::Cache::new(1 << 20),
            epoch: Instant::now(),
        }
    }
}

impl Quotas {
    /// The account's usage, shared by all of its sessions.
    pub fn usage(&self, login: &str) -> AccountUsage {
        let usage = self
            .accounts
            .get_with_by_ref(login, || Arc::new(Mutex::new(Usage::default())));
        AccountUsage {
            usage,
            epoch: self.epoch,
        }
    }
}

/// One account's usage, as a session holds it.
#[derive(Clone)]
pub struct AccountUsage {
    usage: Arc<Mutex<Usage>>,
    epoch: Instant,
}

impl AccountUsage {
    /// Charges `count` statements unless that would exceed `per_minute`.
    pub fn try_statements(&self, count: u64, per_minute: u64) -> bool {
        let second = self.epoch.elapsed().as_secs();
        let mut usage = self.lock();
        usage.statements.advance(second);
        if usage.statements.total() + count > per_minute {
            return false;
        }
        usage.statements.add(count);
        true
    }

    /// Whether one more statement fits in `per_minute` (nothing is charged).
    pub fn has_statements_left(&self, per_minute: u64) -> bool {
        let second = self.epoch.elapsed().as_secs();
        let mut usage = self.lock();
        usage.statements.advance(second);
        usage.statements.total() < per_minute
    }

    /// Rows still allowed in the current hour.
    pub fn rows_left(&self, per_hour: u64) -> u64 {
        let minute = self.epoch.elapsed().as_secs() / 60;
        let mut usage = self.lock();
        usage.rows.advance(minute);
        per_hour.saturating_sub(usage.rows.total())
    }

    /// Takes `rows` from what is left of `per_hour`, all or none: `false` when fewer
    /// are left. Check and charge are one step, so concurrent callers cannot both
    /// spend the same remainder.
    pub fn try_take_rows(&self, rows: u64, per_hour: u64) -> bool {
        let minute = self.epoch.elapsed().as_secs() / 60;
        let mut usage = self.lock();
        usage.rows.advance(minute);
        if usage.rows.total() + rows > per_hour {
            return false;
        }
        usage.rows.add(rows);
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Usage> {
        // Counters stay meaningful even if a holder panicked mid-update.
        self.usage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Default)]
struct Usage {
    statements: Window,
    rows: Window,
}

/// A sliding window of [`BUCKETS`] buckets; `newest` is the absolute index of the
/// bucket being filled.
struct Window {
    buckets: [u64; BUCKETS],
    newest: u64,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            buckets: [0; BUCKETS],
            newest: 0,
        }
    }
}

impl Window {
    fn advance(&mut self, now: u64) {
        if now <= self.newest {
            return;
        }
        let gap = (now - self.newest).min(BUCKETS as u64);
        for step in 1..=gap {
            self.buckets[((self.newest + step) % BUCKETS as u64) as usize] = 0;
        }
        self.newest = now;
    }

    fn add(&mut self, n: u64) {
        self.buckets[(self.newest % BUCKETS as u64) as usize] += n;
    }

    fn total(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_forgets_what_is_older_than_its_span() {
        let mut w = Window::default();
        w.advance(0);
        w.add(5);
        w.advance(30);
        w.add(2);
        assert_eq!(w.total(), 7);
        w.advance(60);
        assert_eq!(w.total(), 2, "the bucket of second 0 has left the window");
        w.advance(1_000);
        assert_eq!(w.total(), 0);
    }

    #[test]
    fn statements_are_refused_once_the_minute_is_full() {
        let quotas = Quotas::default();
        let usage = quotas.usage("clerk");
        assert!(usage.try_statements(2, 3));
        assert!(usage.try_statements(1, 3));
        assert!(!usage.try_statements(1, 3));
        // Another session of the same account shares the count.
        assert!(!quotas.usage("clerk").try_statements(1, 3));
        assert!(quotas.usage("other").try_statements(1, 3));
    }

    #[test]
    fn rows_left_counts_down_within_the_hour() {
        let quotas = Quotas::default();
        let usage = quotas.usage("analyst");
        assert_eq!(usage.rows_left(100), 100);
        assert!(usage.try_take_rows(60, 100));
        assert_eq!(usage.rows_left(100), 40);
        assert!(!usage.try_take_rows(41, 100), "all or none");
        assert_eq!(usage.rows_left(100), 40);
        assert!(usage.try_take_rows(40, 100));
        assert!(!usage.try_take_rows(1, 100));
        assert_eq!(usage.rows_left(100), 0);
    }

    #[test]
    fn parallel_takers_never_spend_more_than_is_left() {
        let quotas = Quotas::default();
        let taken = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let usage = quotas.usage("analyst");
                let taken = &taken;
                s.spawn(move || {
                    for _ in 0..1_000 {
                        if usage.try_take_rows(1, 1_500) {
                            taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(taken.into_inner(), 1_500);
    }
}
