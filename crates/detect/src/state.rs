//! What detection remembers about one account: its machines, when it works, its
//! sliding windows and its hourly volume history.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use time::{Date, OffsetDateTime, UtcOffset};

use crate::fingerprint::KeyPrint;

/// Hours of volume history kept per account (four weeks of working hours).
const HOURLY_HISTORY: usize = 24 * 28;
/// Hours of history an account needs before its own baseline is used.
pub const BASELINE_HOURS: usize = 8;
/// Days with activity at an hour (or on a weekday) the account's history does not
/// have before that hour becomes usual: one night of harvesting does not make
/// nights normal, and each of those days is judged (and may alert) first.
pub const LEARN_DAYS: u32 = 3;

#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    pub time: OffsetDateTime,
    pub seq: u64,
    pub key: KeyPrint,
}

/// A window of (time, seq) events.
#[derive(Debug, Default)]
pub struct Window(pub VecDeque<(OffsetDateTime, u64)>);

impl Window {
    /// Adds an event and forgets those older than `span`; returns the count.
    pub fn push(&mut self, time: OffsetDateTime, seq: u64, span: Duration) -> u64 {
        self.0.push_back((time, seq));
        while self.0.front().is_some_and(|(t, _)| time - *t > span) {
            self.0.pop_front();
        }
        self.0.len() as u64
    }

    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().map(|(_, s)| *s)
    }

    pub fn start(&self) -> Option<OffsetDateTime> {
        self.0.front().map(|(t, _)| *t)
    }
}

/// Distinct lookup keys in a sliding window, and distinct keys per neighbourhood.
#[derive(Debug, Default)]
pub struct Lookups {
    pub entries: VecDeque<Lookup>,
    keys: HashMap<u64, u32>,
    near: HashMap<u64, HashMap<u64, u32>>,
}

impl Lookups {
    /// Adds a key; returns (distinct keys, distinct keys in its neighbourhood).
    pub fn push(&mut self, lookup: Lookup, span: Duration) -> (u64, u64) {
        while self
            .entries
            .front()
            .is_some_and(|old| lookup.time - old.time > span)
        {
            let old = self.entries.pop_front().expect("checked");
            self.forget(old.key);
        }
        self.entries.push_back(lookup);
        *self.keys.entry(lookup.key.k).or_default() += 1;
        let near = match lookup.key.n {
            Some(n) => {
                let keys = self.near.entry(n).or_default();
                *keys.entry(lookup.key.k).or_default() += 1;
                keys.len() as u64
            }
            None => 0,
        };
        (self.keys.len() as u64, near)
    }

    fn forget(&mut self, key: KeyPrint) {
        if let Some(c) = self.keys.get_mut(&key.k) {
            *c -= 1;
            if *c == 0 {
                self.keys.remove(&key.k);
            }
        }
        if let Some(n) = key.n {
            if let Some(keys) = self.near.get_mut(&n) {
                if let Some(c) = keys.get_mut(&key.k) {
                    *c -= 1;
                    if *c == 0 {
                        keys.remove(&key.k);
                    }
                }
                if keys.is_empty() {
                    self.near.remove(&n);
                }
            }
        }
    }

    /// Seqs of the first lookup of each distinct key in the window.
    pub fn first_seqs(&self, n: Option<u64>) -> Vec<u64> {
        let mut seen = HashSet::new();
        self.entries
            .iter()
            .filter(|l| n.is_none() || l.key.n == n)
            .filter(|l| seen.insert(l.key.k))
            .map(|l| l.seq)
            .take(crate::alert::MAX_EVIDENCE_RECORDS)
            .collect()
    }

    pub fn clear(&mut self) {
        *self = Lookups::default();
    }
}

#[derive(Debug)]
pub struct LiveSession {
    pub client: Option<IpAddr>,
    pub certificate: Option<String>,
    pub login_seq: u64,
}

#[derive(Debug, Default)]
pub struct AccountState {
    pub roles: Vec<String>,
    pub clients: HashMap<IpAddr, OffsetDateTime>,
    pub certificates: HashSet<String>,
    pub live: HashMap<String, LiveSession>,
    /// The last admitted login: time, address, seq.
    pub last_login: Option<(OffsetDateTime, Option<IpAddr>, u64)>,
    /// Days with any activity, and per hour of the day and day of the week how
    /// many of those days had activity then.
    pub active_days: u64,
    pub hour_days: [u32; 24],
    pub weekday_days: [u32; 7],
    /// Days with activity at an unusual hour or weekday, not yet learned.
    unusual_hours: [u32; 24],
    unusual_weekdays: [u32; 7],
    last_day: Option<Date>,
    last_hour: Option<(Date, u8)>,
    pub lookups: Lookups,
    pub empty_lookups: Window,
    pub probes: Window,
    /// The hour being counted and its rows and statement-end seqs.
    pub hour_start: Option<OffsetDateTime>,
    pub hour_rows: u64,
    pub hour_seqs: Vec<u64>,
    /// Rows of past hours with activity, oldest first.
    pub hourly: VecDeque<u64>,
    /// Hours ever added to `hourly`, and the 90th percentile at that count.
    hours_added: u64,
    p90: Option<(u64, u64)>,
}

impl AccountState {
    /// Whether `time` (local) starts an hour in which the account was not active yet.
    pub fn new_hour(&self, time: OffsetDateTime, tz: UtcOffset) -> bool {
        let local = time.to_offset(tz);
        self.last_hour != Some((local.date(), local.hour()))
    }

    /// Whether the account was active within an hour of `hour` on some day.
    pub fn usual_hour(&self, hour: usize) -> bool {
        self.hour_days[(hour + 23) % 24] + self.hour_days[hour] + self.hour_days[(hour + 1) % 24]
            > 0
    }

    /// Marks the account active at `time` (local hour and day). Once its history is
    /// used (`judged`), an unusual hour or weekday is learned only after
    /// [`LEARN_DAYS`] days with activity then.
    pub fn touch(&mut self, time: OffsetDateTime, tz: UtcOffset, judged: bool) {
        let local = time.to_offset(tz);
        let (date, hour) = (local.date(), local.hour());
        if self.last_day != Some(date) {
            self.last_day = Some(date);
            self.active_days += 1;
            let day = date.weekday().number_days_from_monday() as usize;
            let unusual = judged && self.weekday_days[day] == 0;
            learn(
                &mut self.weekday_days[day],
                &mut self.unusual_weekdays[day],
                unusual,
            );
        }
        if self.last_hour != Some((date, hour)) {
            self.last_hour = Some((date, hour));
            let usual = !judged || self.usual_hour(hour as usize);
            learn(
                &mut self.hour_days[hour as usize],
                &mut self.unusual_hours[hour as usize],
                !usual,
            );
        }
    }

    /// Adds a statement's rows to its hour; closes the previous hour first.
    pub fn add_rows(&mut self, time: OffsetDateTime, seq: u64, rows: u64) {
        let hour = time
            .replace_minute(0)
            .and_then(|t| t.replace_second(0))
            .and_then(|t| t.replace_nanosecond(0))
            .unwrap_or(time);
        if self.hour_start != Some(hour) {
            if self.hour_start.is_some() && self.hour_rows > 0 {
                self.hourly.push_back(self.hour_rows);
                self.hours_added += 1;
                if self.hourly.len() > HOURLY_HISTORY {
                    self.hourly.pop_front();
                }
            }
            self.hour_start = Some(hour);
            self.hour_rows = 0;
            self.hour_seqs.clear();
        }
        self.hour_rows += rows;
        if rows > 0 && self.hour_seqs.len() < crate::alert::MAX_EVIDENCE_RECORDS {
            self.hour_seqs.push(seq);
        }
    }

    /// The 90th percentile of the account's past hours, once it has enough of them.
    pub fn baseline(&mut self) -> Option<u64> {
        if self.hourly.len() < BASELINE_HOURS {
            return None;
        }
        if let Some((added, value)) = self.p90 {
            if added == self.hours_added {
                return Some(value);
            }
        }
        let mut sorted: Vec<u64> = self.hourly.iter().copied().collect();
        sorted.sort_unstable();
        let value = sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)];
        self.p90 = Some((self.hours_added, value));
        Some(value)
    }

    /// Forgets the windows, as after an officer's review.
    pub fn reset_windows(&mut self) {
        self.lookups.clear();
        self.empty_lookups = Window::default();
        self.probes = Window::default();
        self.hour_rows = 0;
        self.hour_seqs.clear();
    }
}

/// Counts a day of activity at an hour or weekday: into the usual days, or, when it
/// is `unusual`, into the days waiting to be learned.
fn learn(usual: &mut u32, waiting: &mut u32, unusual: bool) {
    if unusual && *waiting + 1 < LEARN_DAYS {
        *waiting += 1;
    } else {
        *usual += 1 + std::mem::take(waiting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_follows_the_history_once_it_is_full() {
        let mut a = AccountState::default();
        let start = time::macros::datetime!(2026-01-01 00:00 UTC);
        let hour = |h: usize| start + time::Duration::hours(h as i64);
        for h in 0..=HOURLY_HISTORY + 1 {
            a.add_rows(hour(h), h as u64, 10);
        }
        assert_eq!(a.hourly.len(), HOURLY_HISTORY);
        assert_eq!(a.baseline(), Some(10));
        // A full history of busier hours: the baseline moves with it.
        for h in HOURLY_HISTORY + 2..2 * HOURLY_HISTORY + 3 {
            a.add_rows(hour(h), h as u64, 1000);
        }
        assert_eq!(a.hourly.len(), HOURLY_HISTORY);
        assert_eq!(a.baseline(), Some(1000));
    }
}
