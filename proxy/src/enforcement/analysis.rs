//! Cold analyses run off the async workers, a bounded number at a time, in two lanes.
//!
//! A decision from the cache costs well under a microsecond and stays on the
//! session's worker. A cold one (parse, rewrite, print, PostgreSQL's parser check)
//! costs tens of microseconds for ordinary statements and up to the analysis time
//! budget for hostile ones, so it must not hold a worker that other sessions'
//! statements wait for: the worker hands its other sessions to another thread while
//! this one analyzes (`block_in_place`).
//!
//! What an analysis can cost grows with the statement's text, so statements are
//! gated by size: short ones (what applications send) have a lane of their own, and
//! long ones share fewer slots than there are cores, so relaying always keeps a core.
//! A flood of long hostile statements then only queues behind itself, and no wait is
//! unbounded: whoever cannot start within the analysis time budget is answered
//! `53000` and may retry.
//!
//! Between accounts, analyses are shared fairly: within a lane one account holds
//! at most half the slots (at least one), a freed slot goes to the waiting account
//! that holds the fewest, and each account has a budget of analysis time per
//! minute ([`TimeBudget`]). A few accounts sending costly statements in a loop then
//! spend only their own budget, and other accounts' first-seen statements wait at
//! most for one analysis in progress.

mod budget;
mod gate;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use budget::TimeBudget;
use gate::Gate;

use maskgate_sql::{sqlstate, Denial};
use tokio::runtime::{Handle, RuntimeFlavor};

/// Statements up to this many bytes take the short lane. Generous for statements
/// written by hand or by an ORM; what a short statement can cost is then bounded
/// by the size (a few milliseconds even when it names a hundred tables).
pub const SHORT_STATEMENT_BYTES: usize = 8 << 10;

/// Two gates for concurrent analyses, and the accounts' analysis time.
pub struct Slots {
    short: Gate,
    long: Gate,
    /// How long a statement may wait for a slot.
    wait: Duration,
    budget: TimeBudget,
}

impl Slots {
    /// `short` and `long` slots (at least one each); waits of at most `wait`.
    pub fn new(short: usize, long: usize, wait: Duration) -> Slots {
        Slots {
            short: Gate::new(short),
            long: Gate::new(long),
            wait,
            budget: TimeBudget::default(),
        }
    }

    /// With `budget` instead of the default analysis time per account.
    pub fn with_budget(mut self, budget: TimeBudget) -> Slots {
        self.budget = budget;
        self
    }

    /// One short slot per core, and one long slot per core but one.
    pub fn for_this_machine(wait: Duration) -> Slots {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Slots::new(cores, cores.saturating_sub(1), wait)
    }

    /// Runs the analysis of `account`'s statement of `bytes` off the async workers
    /// once a slot of its lane is free for that account, or refuses it if none frees
    /// in time.
    pub fn run<R>(
        &self,
        account: &Arc<str>,
        bytes: usize,
        analyze: impl FnOnce() -> R,
    ) -> Result<R, Denial> {
        let gate = if bytes <= SHORT_STATEMENT_BYTES {
            &self.short
        } else {
            &self.long
        };
        let in_multi_thread_runtime = Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread);
        let run = || {
            self.budget.check(account)?;
            let _slot = gate
                .enter(account, self.wait)
                .ok_or_else(|| busy(bytes, self.wait))?;
            let started = Instant::now();
            let result = analyze();
            self.budget.charge(account, started.elapsed());
            Ok(result)
        };
        if in_multi_thread_runtime {
            tokio::task::block_in_place(run)
        } else {
            run()
        }
    }
}

fn busy(bytes: usize, wait: Duration) -> Denial {
    Denial {
        sqlstate: sqlstate::INSUFFICIENT_RESOURCES,
        message: format!(
            "maskgate is busy analyzing other {} statements and could not start this one \
             within {} ms; try again",
            if bytes <= SHORT_STATEMENT_BYTES {
                "short"
            } else {
                "long"
            },
            wait.as_millis()
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};

    use super::*;

    const LONG: usize = SHORT_STATEMENT_BYTES + 1;

    fn account(name: &str) -> Arc<str> {
        name.into()
    }

    #[test]
    fn no_more_than_the_slots_run_at_once() {
        let slots = Arc::new(Slots::new(1, 2, Duration::from_secs(60)));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (slots, running, most) = (slots.clone(), running.clone(), most.clone());
                std::thread::spawn(move || {
                    slots
                        .run(&account(&format!("a{i}")), LONG, || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                        .unwrap()
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn short_statements_do_not_wait_behind_long_ones() {
        let slots = Arc::new(Slots::new(1, 1, Duration::from_secs(60)));
        let (started, release) = (Arc::new(Mutex::new(false)), Arc::new(Condvar::new()));
        let long = {
            let (slots, started, release) = (slots.clone(), started.clone(), release.clone());
            std::thread::spawn(move || {
                slots
                    .run(&account("a"), LONG, || {
                        let mut go = started.lock().unwrap();
                        *go = true;
                        release.notify_all();
                        while *go {
                            go = release.wait(go).unwrap();
                        }
                    })
                    .unwrap()
            })
        };
        let mut go = started.lock().unwrap();
        while !*go {
            go = release.wait(go).unwrap();
        }
        drop(go);
        // The long lane is held; the short one is not.
        assert_eq!(slots.run(&account("a"), 10, || 7).unwrap(), 7);
        *started.lock().unwrap() = false;
        release.notify_all();
        long.join().unwrap();
    }

    #[test]
    fn a_wait_past_the_limit_is_refused_and_the_slot_comes_back() {
        let slots = Slots::new(1, 1, Duration::from_millis(30));
        let inner = slots
            .run(&account("a"), LONG, || {
                slots.run(&account("b"), LONG, || ()).unwrap_err()
            })
            .unwrap();
        assert_eq!(inner.sqlstate, "53000", "{inner}");
        assert!(inner.is_transient());
        assert!(slots.run(&account("b"), LONG, || ()).is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_inside_a_multi_thread_runtime() {
        let slots = Slots::new(1, 1, Duration::from_secs(1));
        assert_eq!(slots.run(&account("a"), 1, || 7).unwrap(), 7);
    }

    #[test]
    fn one_account_never_holds_a_whole_lane() {
        let slots = Slots::new(2, 1, Duration::from_millis(50));
        let (a, b) = (account("a"), account("b"));
        let (second_a, first_b) = slots
            .run(&a, 10, || {
                (
                    slots.run(&a, 10, || ()).map_err(|d| d.sqlstate),
                    slots.run(&b, 10, || 7),
                )
            })
            .unwrap();
        assert_eq!(second_a, Err("53000"), "a second slot for the same account");
        assert_eq!(first_b.unwrap(), 7, "another account is not held up");
    }
}
