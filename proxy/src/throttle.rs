//! Retries and log lines that a flood cannot multiply.

use std::time::{Duration, Instant};

/// How often a repeated condition is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);
const MIN_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Backs off after failed accepts (out of file descriptors and the like), doubling
/// the pause up to a second, and logs them once per ten seconds with the count in
/// between: a full descriptor table neither spins the loop nor floods the log.
pub struct AcceptBackoff {
    what: &'static str,
    delay: Duration,
    log: Throttled,
}

impl AcceptBackoff {
    pub fn new(what: &'static str) -> Self {
        AcceptBackoff {
            what,
            delay: MIN_DELAY,
            log: Throttled::default(),
        }
    }

    /// An accept succeeded: the next failure starts from the shortest pause.
    pub fn succeeded(&mut self) {
        self.delay = MIN_DELAY;
    }

    /// An accept failed: logs (at most once per interval) and pauses.
    pub async fn failed(&mut self, error: &std::io::Error) {
        if let Some(failures) = self.log.note() {
            tracing::error!(
                error = %error,
                failures,
                "{}: accept failed; pausing before the next accept",
                self.what
            );
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
    }
}

/// Counts occurrences of one condition and says when to log it.
#[derive(Debug, Default)]
pub struct Throttled {
    count: u64,
    last: Option<Instant>,
}

impl Throttled {
    /// Notes one occurrence; `Some(n)` when it should be logged, with the
    /// occurrences since the last line (this one included).
    pub fn note(&mut self) -> Option<u64> {
        self.count += 1;
        if self.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_then_counts_until_the_interval_is_over() {
        let mut t = Throttled::default();
        assert_eq!(t.note(), Some(1));
        for _ in 0..100 {
            assert_eq!(t.note(), None);
        }
        t.last = Some(Instant::now() - LOG_EVERY);
        assert_eq!(t.note(), Some(101));
    }
}
