//! The bytes of large client messages buffered at once, all sessions together.
//!
//! A message is handed on only once it is whole, so a client that announces a
//! large message and sends all of it but the last byte holds its length in memory.
//! Each session's own bound (`max_message_size`) does not stop a few sessions from
//! doing that together; this budget does. Messages up to [`SMALL_MESSAGE`] are not
//! counted: every session holds that much anyway.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Messages at most this long (header included) are buffered without the budget.
pub const SMALL_MESSAGE: usize = 64 * 1024;

/// The bytes large client messages may take, in all sessions together.
#[derive(Debug)]
pub struct MessageBudget {
    limit: usize,
    used: AtomicUsize,
}

/// A message's place in the budget, given back when dropped.
#[derive(Debug)]
pub struct MessageHold<'a> {
    budget: &'a MessageBudget,
    bytes: usize,
}

impl MessageBudget {
    pub fn new(limit: usize) -> Self {
        MessageBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// A place for a message of `bytes`, if the budget has room for it.
    pub fn try_hold(&self, bytes: usize) -> Option<MessageHold<'_>> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .ok()?;
        Some(MessageHold {
            budget: self,
            bytes,
        })
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for MessageHold<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_are_refused_past_the_limit_and_given_back_when_dropped() {
        let budget = MessageBudget::new(100);
        let a = budget.try_hold(60).expect("room");
        assert!(budget.try_hold(50).is_none());
        let b = budget.try_hold(40).expect("room");
        assert_eq!(budget.used(), 100);
        drop(a);
        assert!(budget.try_hold(60).is_some());
        drop(b);
        assert_eq!(budget.used(), 0);
        assert!(budget.try_hold(usize::MAX).is_none());
    }
}
