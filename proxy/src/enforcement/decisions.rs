//! One cache of the analyzer's decisions for all accounts, bounded in bytes.
//!
//! Per-account caches added up (ten thousand accounts each holding its own budget);
//! one cache holds every account's decisions under one byte budget instead. So that
//! one account cannot push every other account's decisions out with a flood of
//! distinct statements, an account may hold at most a share of the budget: beyond
//! it, its new decisions are answered but not kept.
//!
//! Entries are keyed by a 64-bit hash of (account rules, statement text) and keep
//! the text, which a hit compares: a hash collision is a miss, never someone
//! else's decision.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{Decision, Rewritten};

/// The share of the budget one account's rules may hold: 1/SHARE_DIVISOR.
const SHARE_DIVISOR: u64 = 8;
/// Decisions not used for this long are dropped even when there is room.
const TIME_TO_IDLE: Duration = Duration::from_secs(30 * 60);
/// What an entry costs beyond its strings: the cache's node and the key, the
/// `Arc`s, the `Rewritten`, each statement's struct and the allocator's share.
/// Calibrated on the process's resident memory: 10,800 one-statement entries of
/// about 60 characters each took 13.0 MB, 1,200 bytes each (docs/operations.md).
const ENTRY_OVERHEAD: usize = 512;
const STATEMENT_OVERHEAD: usize = 448;
const TABLE_NAME_OVERHEAD: usize = 64;

/// The bytes one account's rules hold in the cache.
#[derive(Debug, Default)]
pub struct Share {
    bytes: AtomicU64,
}

struct Entry {
    text: Box<str>,
    decision: Decision,
    weight: u32,
    share: Arc<Share>,
}

/// The cache shared by every account.
pub struct Decisions {
    cache: moka::sync::Cache<u64, Arc<Entry>>,
    hasher: RandomState,
    share_limit: u64,
}

impl Decisions {
    pub fn new(max_bytes: u64) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_, entry: &Arc<Entry>| entry.weight)
            .time_to_idle(TIME_TO_IDLE)
            .eviction_listener(|_, entry: Arc<Entry>, _| {
                entry
                    .share
                    .bytes
                    .fetch_sub(u64::from(entry.weight), Ordering::Relaxed);
            })
            .build();
        Decisions {
            cache,
            hasher: RandomState::new(),
            share_limit: (max_bytes / SHARE_DIVISOR).max(1),
        }
    }

    fn key(&self, rules: u64, text: &str) -> u64 {
        self.hasher.hash_one((rules, text))
    }

    /// The decision kept for `text` under the rules numbered `rules`.
    pub fn get(&self, rules: u64, text: &str) -> Option<Decision> {
        let entry = self.cache.get(&self.key(rules, text))?;
        (*entry.text == *text).then(|| entry.decision.clone())
    }

    /// Keeps a decision unless its account already holds its share.
    pub fn insert(&self, (rules, share): (u64, &Arc<Share>), text: &str, decision: Decision) {
        let weight = u32::try_from(weigh(text, &decision)).unwrap_or(u32::MAX);
        let held = share.bytes.load(Ordering::Relaxed);
        if held + u64::from(weight) > self.share_limit {
            return;
        }
        share.bytes.fetch_add(u64::from(weight), Ordering::Relaxed);
        let entry = Arc::new(Entry {
            text: text.into(),
            decision,
            weight,
            share: share.clone(),
        });
        self.cache.insert(self.key(rules, text), entry);
    }

    /// Bytes held now, by the weigher's estimate (for the metrics).
    pub fn weighted_bytes(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}

impl Share {
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// What an entry costs in memory, estimated from its strings and parts.
fn weigh(text: &str, decision: &Decision) -> usize {
    let rewritten = match decision.as_ref() {
        Ok(Rewritten { statements, text }) => {
            text.len()
                + statements
                    .iter()
                    .map(|s| {
                        STATEMENT_OVERHEAD
                            + s.sql.len()
                            + (s.tables.read.len() + 1) * TABLE_NAME_OVERHEAD
                    })
                    .sum::<usize>()
        }
        Err(denial) => denial.message.len(),
    };
    ENTRY_OVERHEAD + text.len() + rewritten
}

#[cfg(test)]
mod tests {
    use super::*;
    use maskgate_sql::Denial;

    fn denial(text: &str) -> Decision {
        Arc::new(Err(Denial {
            sqlstate: "42501",
            message: text.to_owned(),
        }))
    }

    #[test]
    fn hits_compare_the_text_and_the_rules() {
        let cache = Decisions::new(1 << 20);
        let share = Arc::new(Share::default());
        cache.insert((1, &share), "SELECT 1", denial("one"));
        assert!(cache.get(1, "SELECT 1").is_some());
        assert!(cache.get(2, "SELECT 1").is_none());
        assert!(cache.get(1, "SELECT 2").is_none());
    }

    #[test]
    fn the_budget_holds_across_accounts_and_one_account_gets_a_share() {
        let budget = 1 << 20;
        let cache = Decisions::new(budget);
        let shares: Vec<_> = (0..20).map(|_| Arc::new(Share::default())).collect();
        // Account 0 uses its statements often.
        for i in 0..100 {
            cache.insert(
                (0, &shares[0]),
                &format!("SELECT {i} FROM t0"),
                denial("no"),
            );
        }
        for _ in 0..3 {
            for i in 0..100 {
                assert!(cache.get(0, &format!("SELECT {i} FROM t0")).is_some());
            }
        }
        // The others flood it with statements used once.
        for (account, share) in shares.iter().enumerate().skip(1) {
            for i in 0..2000 {
                cache.insert(
                    (account as u64, share),
                    &format!("SELECT {i} FROM t{account}"),
                    denial("denied"),
                );
            }
            assert!(share.bytes() <= budget / SHARE_DIVISOR, "{}", share.bytes());
        }
        assert!(
            cache.weighted_bytes() <= budget,
            "{}",
            cache.weighted_bytes()
        );
        let kept = (0..100)
            .filter(|i| cache.get(0, &format!("SELECT {i} FROM t0")).is_some())
            .count();
        assert!(
            kept >= 90,
            "only {kept} of account 0's decisions survived the flood"
        );
    }
}
