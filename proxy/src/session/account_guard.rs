//! Ends a session at its next statement once its account may no longer be
//! used: disabled, expired or removed by a policy reload, or past its last
//! valid day.
//!
//! Checked on every Query, Parse and Execute, so it must be cheap: a pointer compare
//! against the policy in force and a clock read; the account is looked up
//! again only when the policy changed.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use maskgate_policy::{Account, Policy};

use crate::detection::Suspended;
use crate::error::{ClientError, SqlState};

pub struct AccountGuard<'a> {
    policy: &'a ArcSwap<Policy>,
    seen: Arc<Policy>,
    login: String,
    /// When the account's last valid day ends.
    expires_at: Option<SystemTime>,
    /// Detection's suspensions, and the generation of them last looked at.
    suspended: Option<(&'a Suspended, u64)>,
}

impl<'a> AccountGuard<'a> {
    pub fn new(policy: &'a ArcSwap<Policy>, seen: Arc<Policy>, login: &str) -> Self {
        let expires_at = seen.account(login).and_then(|a| expiry(&seen, a));
        Self {
            policy,
            seen,
            login: login.to_string(),
            expires_at,
            suspended: None,
        }
    }

    /// Also ends the session once detection suspends the account.
    pub fn with_suspensions(mut self, suspended: &'a Suspended) -> Self {
        // Generation 0 is never current after a change: the first check looks.
        self.suspended = Some((suspended, u64::MAX));
        self
    }

    /// The policy in force at the last check.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.seen
    }

    pub fn login(&self) -> &str {
        &self.login
    }

    /// `Err` with the error that ends the session when the account may no longer be used.
    #[inline]
    pub fn check(&mut self) -> Result<(), ClientError> {
        let current = self.policy.load();
        if !Arc::ptr_eq(&current, &self.seen) {
            self.seen = arc_swap::Guard::into_inner(current);
            let policy = &self.seen;
            let allowed = policy
                .account(&self.login)
                .filter(|a| a.is_active(policy.now().date()));
            match allowed {
                Some(account) => self.expires_at = expiry(policy, account),
                None => return Err(ended()),
            }
        }
        if self.expires_at.is_some_and(|t| SystemTime::now() >= t) {
            return Err(ended());
        }
        if let Some((suspended, seen)) = &mut self.suspended {
            let generation = suspended.generation();
            if generation != *seen {
                *seen = generation;
                if suspended.is_suspended(&self.login) {
                    return Err(self::suspended());
                }
            }
        }
        Ok(())
    }
}

fn expiry(policy: &Policy, account: &Account) -> Option<SystemTime> {
    let last_day = account.valid_until?;
    let end = last_day
        .next_day()?
        .midnight()
        .assume_offset(policy.settings().timezone);
    Some(end.into())
}

pub(super) fn ended() -> ClientError {
    ClientError::fatal(
        SqlState::INVALID_AUTHORIZATION,
        "this account may no longer be used: it was disabled, has expired or was removed",
    )
    .with_hint("ask your security officer if you still need access")
}

/// The error of a suspended account, at login and for its open sessions.
pub(super) fn suspended() -> ClientError {
    ClientError::fatal(
        SqlState::INVALID_AUTHORIZATION,
        "this account is suspended after a security alert",
    )
    .with_hint(
        "contact the security officer: only they can review the alert and unlock the account",
    )
}
