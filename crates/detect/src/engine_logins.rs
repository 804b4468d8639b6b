//! Logins: lent or shared accounts, new machines, unusual hours, failed-login
//! bursts; and the unusual-hours check of activity inside a session.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use time::UtcOffset;

use super::{addresses, differs, Detector, Finding, SessionInfo, MAX_ADDRESSES};
use crate::alert::{Alert, Evidence};
use crate::config::{Rule, Severity};
use crate::observe::{Login, Observation};
use crate::state::{AccountState, LiveSession};

impl Detector {
    pub(super) fn admitted(&mut self, o: &Observation, login: &Login, out: &mut Vec<Alert>) {
        let Some(user) = login.user.clone() else {
            return;
        };
        let session = login.session.clone().unwrap_or_default();
        self.sessions.insert(
            session.clone(),
            SessionInfo {
                user: user.clone(),
                client: login.client,
                open: HashMap::new(),
            },
        );
        let t = &self.settings.thresholds;
        let (history_days, switch) = (t.history_days, t.address_switch);
        let tz = self.tz;
        let account = self.account(&user);
        if !login.roles.is_empty() {
            account.roles = login.roles.clone();
        }
        let mut found: Vec<Finding> = sharing(account, o, login, &session, switch)
            .into_iter()
            .collect();
        let judged = account.active_days >= history_days;
        if judged {
            found.extend(new_client(account, o, login));
            found.extend(unusual_time(account, o, tz, "login"));
        }
        if let Some(ip) = login.client {
            account.clients.insert(ip, o.time);
        }
        if let Some(cert) = &login.certificate {
            account.certificates.insert(cert.clone());
        }
        account.live.insert(
            session,
            LiveSession {
                client: login.client,
                certificate: login.certificate.clone(),
                login_seq: o.seq,
            },
        );
        account.last_login = Some((o.time, login.client, o.seq));
        account.touch(o.time, tz, judged);
        for (rule, severity, summary, evidence) in found {
            self.raise(
                out,
                rule,
                severity,
                (Some(&user), login.client),
                o,
                summary,
                evidence,
            );
        }
    }

    pub(super) fn refused(&mut self, o: &Observation, login: &Login, out: &mut Vec<Alert>) {
        if login.reason.as_deref() != Some("auth_failed") {
            return;
        }
        let Some(ip) = login.client else {
            return;
        };
        let t = &self.settings.thresholds;
        let (span, failures, names_needed) =
            (t.probe_window, t.login_burst_failures, t.login_burst_names);
        if self.failures.len() > MAX_ADDRESSES {
            self.failures
                .retain(|_, w| w.back().is_some_and(|(t, _, _)| o.time - *t <= span));
        }
        let window = self.failures.entry(ip).or_default();
        window.push_back((o.time, o.seq, login.user.clone().unwrap_or_default()));
        while window.front().is_some_and(|(t, _, _)| o.time - *t > span) {
            window.pop_front();
        }
        let mut names: Vec<&str> = window.iter().map(|(_, _, u)| u.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        if (window.len() as u64) < failures || (names.len() as u64) < names_needed {
            return;
        }
        // Names typed at a login prompt may be passwords or citizen IDs: an alert
        // names only the policy's accounts and counts the others.
        let known: Vec<String> = names
            .iter()
            .filter(|n| self.known_logins.contains(**n))
            .map(|n| n.to_string())
            .collect();
        let others = names.len() - known.len();
        let start = window.front().map(|(t, _, _)| *t).unwrap_or(o.time);
        let mut evidence =
            Evidence::records(window.iter().map(|(_, s, _)| *s), window.len() as u64)
                .threshold(failures)
                .window(start, o.time);
        evidence.addresses = vec![ip.to_string()];
        let summary = format!(
            "{} failed logins from {ip} across {} account names ({others} of them not accounts of the policy) in {} minutes",
            window.len(),
            names.len(),
            span.as_secs() / 60
        );
        evidence.accounts = known;
        evidence.unknown_names = Some(others as u64);
        self.raise(
            out,
            Rule::LoginBurst,
            Severity::High,
            (None, Some(ip)),
            o,
            summary,
            evidence,
        );
    }

    /// The first activity of a session in an hour: judged like a login, so a
    /// session opened by day and used at night is seen.
    pub(super) fn activity_hour(
        &mut self,
        o: &Observation,
        user: &str,
        client: Option<IpAddr>,
        out: &mut Vec<Alert>,
    ) {
        let (tz, history_days) = (self.tz, self.settings.thresholds.history_days);
        let account = self.account(user);
        let judged = account.active_days >= history_days;
        let found = (judged && account.new_hour(o.time, tz))
            .then(|| unusual_time(account, o, tz, "activity"))
            .flatten();
        account.touch(o.time, tz, judged);
        if let Some((rule, severity, summary, evidence)) = found {
            self.raise(
                out,
                rule,
                severity,
                (Some(user), client),
                o,
                summary,
                evidence,
            );
        }
    }
}

/// Another live session from another machine, or a login from another address
/// moments ago.
fn sharing(
    account: &AccountState,
    o: &Observation,
    login: &Login,
    session: &str,
    switch: Duration,
) -> Option<Finding> {
    let other = account.live.iter().find(|(_, s)| {
        differs(s.client, login.client)
            || differs(s.certificate.as_deref(), login.certificate.as_deref())
    });
    if let Some((other_session, s)) = other {
        let mut evidence = Evidence::records([s.login_seq, o.seq], 2);
        evidence.sessions = vec![other_session.clone(), session.to_owned()];
        evidence.addresses = addresses([s.client, login.client]);
        let summary = format!(
            "concurrent sessions of one account from {}",
            evidence.addresses.join(" and ")
        );
        return Some((Rule::AccountSharing, Severity::Medium, summary, evidence));
    }
    let (when, ip, seq) = account.last_login?;
    if !differs(ip, login.client) || o.time - when >= switch {
        return None;
    }
    let mut evidence = Evidence::records([seq, o.seq], 2).window(when, o.time);
    evidence.addresses = addresses([ip, login.client]);
    let summary = format!(
        "logins from {} {} minutes apart",
        evidence.addresses.join(" and "),
        (o.time - when).whole_minutes()
    );
    Some((Rule::AccountSharing, Severity::Medium, summary, evidence))
}

/// A client address or certificate never seen for the account.
fn new_client(account: &AccountState, o: &Observation, login: &Login) -> Option<Finding> {
    let known_client = login
        .client
        .is_none_or(|ip| account.clients.contains_key(&ip));
    let known_cert = login
        .certificate
        .as_ref()
        .is_none_or(|c| account.certificates.contains(c));
    if known_client && known_cert {
        return None;
    }
    let mut evidence = Evidence::records([o.seq], 1);
    evidence.addresses = addresses([login.client]);
    evidence.certificates = login.certificate.iter().cloned().collect();
    let what = if known_client {
        "certificate"
    } else {
        "address"
    };
    let summary = format!(
        "login from a client {what} never seen for the account in {} active days",
        account.active_days
    );
    Some((Rule::NewClient, Severity::Low, summary, evidence))
}

/// An hour, or a day of the week, the account's history does not have.
fn unusual_time(
    account: &AccountState,
    o: &Observation,
    tz: UtcOffset,
    what: &str,
) -> Option<Finding> {
    let local = o.time.to_offset(tz);
    let hour = local.hour() as usize;
    let weekday = local.weekday();
    let days = account.active_days;
    let summary = if !account.usual_hour(hour) {
        format!(
            "{what} at {:02}:{:02} local time; in {days} active days the account was never active between {:02}:00 and {:02}:00",
            local.hour(),
            local.minute(),
            (hour + 23) % 24,
            (hour + 2) % 24
        )
    } else if account.weekday_days[weekday.number_days_from_monday() as usize] == 0 {
        format!("{what} on a {weekday}; in {days} active days the account was never active on a {weekday}")
    } else {
        return None;
    };
    let evidence = Evidence::records([o.seq], 1);
    Some((Rule::OffHours, Severity::Medium, summary, evidence))
}
