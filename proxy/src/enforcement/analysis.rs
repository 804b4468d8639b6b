//! Cold analyses run off the async workers, a bounded number at a time.
//!
//! A decision from the cache costs well under a microsecond and stays on the
//! session's worker. A cold one (parse, rewrite, print, PostgreSQL's parser check)
//! costs tens of microseconds for ordinary statements and up to the analysis time
//! budget for hostile ones, so it must not hold a worker that other sessions'
//! statements wait for: the worker hands its other sessions to another thread while
//! this one analyzes (`block_in_place`), and at most [`Slots::new`]'s number of
//! analyses run at once, so they cannot take every core from sessions that are only
//! relaying.

use std::sync::{Condvar, Mutex};

use tokio::runtime::{Handle, RuntimeFlavor};

/// A counting gate for concurrent analyses.
pub struct Slots {
    free: Mutex<usize>,
    released: Condvar,
}

impl Slots {
    /// At most `slots` analyses at once (at least one).
    pub fn new(slots: usize) -> Slots {
        Slots {
            free: Mutex::new(slots.max(1)),
            released: Condvar::new(),
        }
    }

    /// One slot per core but one, so relaying always keeps a core.
    pub fn for_this_machine() -> Slots {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Slots::new(cores.saturating_sub(1))
    }

    /// Runs `analyze` off the async workers once a slot is free.
    pub fn run<R>(&self, analyze: impl FnOnce() -> R) -> R {
        let in_multi_thread_runtime = Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread);
        if in_multi_thread_runtime {
            tokio::task::block_in_place(|| self.with_slot(analyze))
        } else {
            self.with_slot(analyze)
        }
    }

    fn with_slot<R>(&self, analyze: impl FnOnce() -> R) -> R {
        {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            while *free == 0 {
                free = self.released.wait(free).unwrap_or_else(|e| e.into_inner());
            }
            *free -= 1;
        }
        // Released even if the analysis panics, so a slot is never lost.
        struct Release<'a>(&'a Slots);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                self.0.released.notify_one();
            }
        }
        let _release = Release(self);
        analyze()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn no_more_than_the_slots_run_at_once() {
        let slots = Arc::new(Slots::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (slots, running, most) = (slots.clone(), running.clone(), most.clone());
                std::thread::spawn(move || {
                    slots.run(|| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_inside_a_multi_thread_runtime() {
        assert_eq!(Slots::new(1).run(|| 7), 7);
    }
}
