//! Named login refusals under a flood: every one is counted, the first few of each
//! client address and reason in a window are reported one by one, and the rest are
//! summed up in one summary per address and reason at the end of the window (their
//! count, first and last time, some of the names used). A client that sends a name
//! and hangs up thousands of times a second costs a few lines a minute, not a line
//! each, and nothing is lost.
//!
//! Failed passwords (`auth_failed`) are not summed up: detection reads each one,
//! and they are bounded anyway by `max_failed_logins_per_address`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::admission::address_key;
use crate::metrics::RejectReason;

/// How long a window lasts.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Refusals of one address and reason reported one by one in a window.
pub const PER_ADDRESS: u64 = 10;
/// Refusals reported one by one in a window, all addresses together.
pub const IN_ALL: u64 = 1000;
/// Addresses and reasons summed up apart in a window; the others share one summary.
pub const MAX_SUMMARIES: usize = 1000;
/// Names kept per summary, as examples.
const NAMES: usize = 8;

/// One address's (or, past [`MAX_SUMMARIES`], every other address's) refusals
/// for one reason that were not reported one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `None` for the addresses beyond [`MAX_SUMMARIES`].
    pub client: Option<IpAddr>,
    pub reason: RejectReason,
    /// Refusals summed up here (those reported one by one are not included).
    pub count: u64,
    pub first: SystemTime,
    pub last: SystemTime,
    /// Up to eight distinct login names among them.
    pub users: Vec<String>,
}

/// The refusals of the current window.
#[derive(Default)]
pub struct RefusalSummaries {
    window: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    /// Reported one by one, all addresses together.
    reported: u64,
    /// Per (address, reason): reported one by one, and what was summed up.
    seen: HashMap<(u128, RejectReason), (u64, Option<Summary>)>,
    /// Addresses beyond [`MAX_SUMMARIES`], per reason.
    others: HashMap<RejectReason, Summary>,
}

impl RefusalSummaries {
    /// Notes a refusal of `login` from `client`; whether to report it on its own.
    /// `always_summed` refusals are never reported on their own.
    pub fn note(
        &self,
        client: IpAddr,
        reason: RejectReason,
        login: Option<&str>,
        always_summed: bool,
    ) -> bool {
        let now = SystemTime::now();
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let key = (address_key(client), reason);
        let full = window.seen.len() >= MAX_SUMMARIES && !window.seen.contains_key(&key);
        if !full {
            let in_all = window.reported;
            let (reported, _) = window.seen.entry(key).or_default();
            if !always_summed && *reported < PER_ADDRESS && in_all < IN_ALL {
                *reported += 1;
                window.reported += 1;
                return true;
            }
        }
        let summary = if full {
            window
                .others
                .entry(reason)
                .or_insert_with(|| Summary::new(None, reason, now))
        } else {
            let (_, summary) = window.seen.get_mut(&key).expect("inserted above");
            summary.get_or_insert_with(|| Summary::new(Some(client.to_canonical()), reason, now))
        };
        summary.add(login, now);
        false
    }

    /// Ends the window: the summaries of what was not reported one by one.
    pub fn take(&self) -> Vec<Summary> {
        let window = std::mem::take(&mut *self.window.lock().unwrap_or_else(|e| e.into_inner()));
        let mut summaries: Vec<Summary> = window
            .seen
            .into_values()
            .filter_map(|(_, summary)| summary)
            .chain(window.others.into_values())
            .collect();
        summaries.sort_by_key(|s| s.first);
        summaries
    }
}

impl Summary {
    fn new(client: Option<IpAddr>, reason: RejectReason, now: SystemTime) -> Summary {
        Summary {
            client,
            reason,
            count: 0,
            first: now,
            last: now,
            users: Vec::new(),
        }
    }

    fn add(&mut self, login: Option<&str>, now: SystemTime) {
        self.count += 1;
        self.last = now;
        if let Some(login) = login {
            if self.users.len() < NAMES && !self.users.iter().any(|u| u == login) {
                self.users.push(login.to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_threshold_refusals_are_summed_up_per_address_and_reason() {
        let summaries = RefusalSummaries::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let reported = (0..100)
            .filter(|n| {
                summaries.note(
                    a,
                    RejectReason::Protocol,
                    Some(&format!("u{}", n % 20)),
                    false,
                )
            })
            .count();
        assert_eq!(reported as u64, PER_ADDRESS);
        assert!(summaries.note(a, RejectReason::LockedOut, Some("x"), false));
        assert!(summaries.note(b, RejectReason::Protocol, Some("x"), false));
        assert!(!summaries.note(b, RejectReason::AddressLimited, None, true));
        let taken = summaries.take();
        assert_eq!(taken.len(), 2, "{taken:?}");
        let flood = taken.iter().find(|s| s.client == Some(a)).unwrap();
        assert_eq!(flood.count, 100 - PER_ADDRESS);
        assert_eq!(flood.reason, RejectReason::Protocol);
        assert_eq!(flood.users.len(), NAMES);
        assert!(flood.first <= flood.last);
        let limited = taken.iter().find(|s| s.client == Some(b)).unwrap();
        assert_eq!(
            (limited.reason, limited.count),
            (RejectReason::AddressLimited, 1)
        );
        // A new window reports one by one again.
        assert!(summaries.take().is_empty());
        assert!(summaries.note(a, RejectReason::Protocol, None, false));
    }

    #[test]
    fn memory_is_bounded_whatever_the_number_of_addresses() {
        let summaries = RefusalSummaries::default();
        let mut reported = 0;
        for n in 0..(MAX_SUMMARIES as u32 + 500) {
            let client = IpAddr::from((0x0a00_0000u32 + n).to_be_bytes());
            for _ in 0..2 {
                reported += u64::from(summaries.note(client, RejectReason::Protocol, None, false));
            }
        }
        assert_eq!(reported, IN_ALL);
        let taken = summaries.take();
        assert!(taken.len() <= MAX_SUMMARIES + 1, "{}", taken.len());
        let others = taken.iter().find(|s| s.client.is_none()).unwrap();
        assert_eq!(others.count, 1000);
        let total: u64 = taken.iter().map(|s| s.count).sum::<u64>() + reported;
        assert_eq!(total, 2 * (MAX_SUMMARIES as u64 + 500));
    }
}
