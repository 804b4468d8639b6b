//! Each account's analysis time: a budget per minute, refilled continuously.
//!
//! Ordinary statements cost well under a millisecond of analysis and are cached
//! after, so an account never comes near the budget by working; an account that
//! sends costly statements in a loop (each new, each seconds of analysis, most of
//! them refused in the end) spends its own budget and then waits, instead of
//! holding the analysis slots that every account's first-seen statements need.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use maskgate_sql::{sqlstate, Denial};

/// Analysis time each account may spend per minute, by default.
pub const DEFAULT_PER_MINUTE: Duration = Duration::from_secs(15);

pub struct TimeBudget {
    per_minute: Duration,
    accounts: Mutex<HashMap<Arc<str>, Bucket>>,
}

/// Seconds left (negative after an analysis that overran what was left), as of `at`.
struct Bucket {
    left: f64,
    at: Instant,
}

impl Default for TimeBudget {
    fn default() -> Self {
        TimeBudget::per_minute(DEFAULT_PER_MINUTE)
    }
}

impl TimeBudget {
    pub fn per_minute(per_minute: Duration) -> TimeBudget {
        TimeBudget {
            per_minute,
            accounts: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses `account`'s next analysis while it owes time.
    pub fn check(&self, account: &Arc<str>) -> Result<(), Denial> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let Some(bucket) = accounts.get_mut(account) else {
            return Ok(());
        };
        let capacity = self.per_minute.as_secs_f64();
        let now = Instant::now();
        bucket.left = (bucket.left + now.duration_since(bucket.at).as_secs_f64() * capacity / 60.0)
            .min(capacity);
        bucket.at = now;
        if bucket.left >= capacity {
            // Full again: forget it, so the map holds only accounts that owe time.
            accounts.remove(account);
            return Ok(());
        }
        if bucket.left > 0.0 {
            return Ok(());
        }
        Err(Denial {
            sqlstate: sqlstate::INSUFFICIENT_RESOURCES,
            message: format!(
                "this account has used its {} s of statement analysis per minute; statements \
                 already seen still run, new ones can be analyzed again in a few seconds",
                self.per_minute.as_secs()
            ),
        })
    }

    /// Charges `spent` to `account`.
    pub fn charge(&self, account: &Arc<str>, spent: Duration) {
        let capacity = self.per_minute.as_secs_f64();
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let bucket = accounts.entry(account.clone()).or_insert(Bucket {
            left: capacity,
            at: now,
        });
        bucket.left = (bucket.left + now.duration_since(bucket.at).as_secs_f64() * capacity / 60.0)
            .min(capacity)
            - spent.as_secs_f64();
        bucket.at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_that_spent_its_time_waits_and_others_do_not() {
        let budget = TimeBudget::per_minute(Duration::from_secs(6));
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        budget.check(&a).unwrap();
        budget.charge(&a, Duration::from_secs(7));
        let denial = budget.check(&a).unwrap_err();
        assert_eq!(denial.sqlstate, "53000");
        assert!(denial.is_transient(), "not cached: {denial}");
        budget.check(&b).unwrap();
        // 6 s a minute refill a tenth of a second per second: one second owed
        // takes ten seconds to repay.
        budget.charge(&a, Duration::ZERO);
        assert!(budget.check(&a).is_err());
    }
}
