//! The detector: records in, alerts out.
//!
//! One [`Detector`] per proxy, driven from one thread. It is fed the trail's
//! records in order — first those of the last `history` read back from the
//! segments ([`Detector::begin_replay`] … [`Detector::end_replay`]), then each
//! record as the writer appends it — so its windows and baselines after a restart
//! are what they were before. Alerts already in the trail are not raised again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use time::{Date, OffsetDateTime, UtcOffset};

use crate::alert::{Alert, Evidence};
use crate::config::{Rule, Settings, Severity};
use crate::observe::{self, AlertRecord, Login, Observation, Observed, Statement, StatementEnd};
use crate::state::{AccountState, LiveSession, Lookup};

/// Alerts raised while reading history are kept only when this recent.
const REPLAY_HORIZON: Duration = Duration::from_secs(86400);
/// Stale-account findings repeat at most this often.
const STALE_COOLDOWN: Duration = Duration::from_secs(7 * 86400);
/// How often account-level checks (stale, expiring) run.
const ACCOUNT_CHECK_EVERY: Duration = Duration::from_secs(3600);
/// Failed-login windows tracked before idle ones are pruned.
const MAX_ADDRESSES: usize = 10_000;

/// An account as the policy describes it, for the stale-access checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    pub login: String,
    pub roles: Vec<String>,
    pub valid_until: Option<Date>,
    pub disabled: bool,
    /// The assignment decision's document reference.
    pub assignment: Option<String>,
}

/// A statement waiting for its end record.
#[derive(Debug)]
struct Open {
    seq: u64,
    lookup: bool,
}

#[derive(Debug)]
struct SessionInfo {
    user: String,
    client: Option<IpAddr>,
    open: HashMap<u64, Open>,
}

pub struct Detector {
    settings: Settings,
    tz: UtcOffset,
    canaries: HashSet<u64>,
    policy_accounts: Vec<AccountInfo>,
    accounts: HashMap<String, AccountState>,
    sessions: HashMap<String, SessionInfo>,
    failures: HashMap<IpAddr, VecDeque<(OffsetDateTime, u64, String)>>,
    last_alert: HashMap<(Rule, String), OffsetDateTime>,
    recorded: HashSet<String>,
    first_time: Option<OffsetDateTime>,
    now: Option<OffsetDateTime>,
    replay: Option<Vec<Alert>>,
    last_account_check: Option<OffsetDateTime>,
    records: u64,
    /// The last seq read: a record handed over twice (read back from a segment,
    /// then from the live feed) is read once.
    last_seq: u64,
}

impl Detector {
    /// A detector with `settings`, reading local hours in `tz` (the policy's).
    pub fn new(settings: Settings, tz: UtcOffset) -> Detector {
        Detector {
            settings,
            tz,
            canaries: HashSet::new(),
            policy_accounts: Vec::new(),
            accounts: HashMap::new(),
            sessions: HashMap::new(),
            failures: HashMap::new(),
            last_alert: HashMap::new(),
            recorded: HashSet::new(),
            first_time: None,
            now: None,
            replay: None,
            last_account_check: None,
            records: 0,
            last_seq: 0,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The fingerprints of the policy's honeytoken keys.
    pub fn set_canaries(&mut self, prints: impl IntoIterator<Item = u64>) {
        self.canaries = prints.into_iter().collect();
    }

    /// The policy's accounts, for the stale-access checks.
    pub fn set_accounts(&mut self, accounts: Vec<AccountInfo>) {
        self.policy_accounts = accounts;
    }

    pub fn set_timezone(&mut self, tz: UtcOffset) {
        self.tz = tz;
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The time of the newest record read.
    pub fn last_time(&self) -> Option<OffsetDateTime> {
        self.now
    }

    /// From now until [`Detector::end_replay`], records are history: alerts are
    /// held back, and dropped if the trail already holds them.
    pub fn begin_replay(&mut self) {
        self.replay = Some(Vec::new());
    }

    /// Ends the replay; returns the alerts history raised that the trail does not
    /// hold and that are recent (a crash between a record and its alert).
    pub fn end_replay(&mut self) -> Vec<Alert> {
        let pending = self.replay.take().unwrap_or_default();
        let Some(now) = self.now else {
            return Vec::new();
        };
        pending
            .into_iter()
            .filter(|a| !self.recorded.contains(&a.id) && now - a.at <= REPLAY_HORIZON)
            .collect()
    }

    /// Parses one line of the trail and reads it.
    pub fn ingest_line(&mut self, line: &[u8]) -> Vec<Alert> {
        match observe::parse(line) {
            Some(o) => self.ingest(&o),
            None => Vec::new(),
        }
    }

    /// Reads one record; returns the alerts it raises.
    pub fn ingest(&mut self, o: &Observation) -> Vec<Alert> {
        if o.seq <= self.last_seq {
            return Vec::new();
        }
        self.last_seq = o.seq;
        self.records += 1;
        self.first_time.get_or_insert(o.time);
        if self.now.is_none_or(|n| o.time > n) {
            self.now = Some(o.time);
        }
        let mut out = Vec::new();
        match &o.event {
            Observed::ProxyStart => {
                // The sessions of an earlier process are gone.
                self.sessions.clear();
                for account in self.accounts.values_mut() {
                    account.live.clear();
                }
            }
            Observed::Login(login) if login.admitted => self.admitted(o, login, &mut out),
            Observed::Login(login) => self.refused(o, login, &mut out),
            Observed::SessionEnd(end) => {
                self.sessions.remove(&end.session);
                if let Some(account) = self.accounts.get_mut(&end.user) {
                    account.live.remove(&end.session);
                }
            }
            Observed::Statement(s) => self.statement(o, s, &mut out),
            Observed::StatementEnd(end) => self.statement_end(o, end, &mut out),
            Observed::Alert(alert) => self.recorded_alert(alert),
            Observed::Unlocked { login, .. } => {
                if let Some(account) = self.accounts.get_mut(login) {
                    account.reset_windows();
                }
            }
            _ => {}
        }
        self.finish(out)
    }

    /// Time-driven checks (stale accounts); call every few seconds with the clock.
    pub fn tick(&mut self, now: OffsetDateTime) -> Vec<Alert> {
        if self.replay.is_some()
            || self
                .last_account_check
                .is_some_and(|t| now - t < ACCOUNT_CHECK_EVERY)
        {
            return Vec::new();
        }
        self.last_account_check = Some(now);
        let mut out = Vec::new();
        self.check_accounts(now, &mut out);
        self.finish(out)
    }

    fn finish(&mut self, out: Vec<Alert>) -> Vec<Alert> {
        match &mut self.replay {
            Some(pending) => {
                pending.extend(out);
                Vec::new()
            }
            None => out,
        }
    }

    fn account(&mut self, login: &str) -> &mut AccountState {
        if !self.accounts.contains_key(login) {
            self.accounts
                .insert(login.to_owned(), AccountState::default());
        }
        self.accounts.get_mut(login).expect("inserted")
    }

    /// Builds an alert unless the same rule alerted on the same subject within the
    /// cooldown.
    #[allow(clippy::too_many_arguments)]
    fn raise(
        &mut self,
        out: &mut Vec<Alert>,
        rule: Rule,
        severity: Severity,
        (account, client): (Option<&str>, Option<IpAddr>),
        o: &Observation,
        summary: String,
        evidence: Evidence,
    ) {
        let subject = account
            .map(str::to_owned)
            .or_else(|| client.map(|c| c.to_string()))
            .unwrap_or_default();
        let cooldown = match rule {
            Rule::Canary => Duration::ZERO,
            Rule::StaleAccount => STALE_COOLDOWN,
            _ => self.settings.cooldown,
        };
        let key = (rule, subject);
        if let Some(last) = self.last_alert.get(&key) {
            if !cooldown.is_zero() && o.time - *last < cooldown {
                return;
            }
        }
        self.last_alert.insert(key, o.time);
        let suspended = account.is_some() && self.settings.suspend.contains(&rule);
        out.push(Alert {
            id: format!("{}-{}", rule.as_str(), o.seq),
            rule,
            severity,
            account: account.map(str::to_owned),
            client: client.map(|c| c.to_string()),
            at: o.time,
            summary,
            evidence,
            suspended,
        });
    }

    fn recorded_alert(&mut self, alert: &AlertRecord) {
        self.recorded.insert(alert.id.clone());
        let (Some(rule), Some(at)) = (alert.rule, alert.at) else {
            return;
        };
        let subject = alert
            .account
            .clone()
            .or_else(|| alert.client.clone())
            .unwrap_or_default();
        let cooldown = self.settings.cooldown;
        if let Some(pending) = &mut self.replay {
            pending.retain(|p| {
                let same = p.rule == rule
                    && p.account.as_ref().or(p.client.as_ref()) == Some(&subject)
                    && (p.at - at).abs() < cooldown;
                p.id != alert.id && !same
            });
        }
        let last = self.last_alert.entry((rule, subject)).or_insert(at);
        if at > *last {
            *last = at;
        }
    }

    fn admitted(&mut self, o: &Observation, login: &Login, out: &mut Vec<Alert>) {
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
        if account.active_days >= history_days {
            found.extend(new_client(account, o, login));
            found.extend(unusual_time(account, o, tz));
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
        account.touch(o.time, tz);
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

    fn refused(&mut self, o: &Observation, login: &Login, out: &mut Vec<Alert>) {
        if login.reason.as_deref() != Some("auth_failed") {
            return;
        }
        let Some(ip) = login.client else {
            return;
        };
        let t = &self.settings.thresholds;
        let (span, failures, names) = (t.probe_window, t.login_burst_failures, t.login_burst_names);
        if self.failures.len() > MAX_ADDRESSES {
            self.failures
                .retain(|_, w| w.back().is_some_and(|(t, _, _)| o.time - *t <= span));
        }
        let window = self.failures.entry(ip).or_default();
        window.push_back((o.time, o.seq, login.user.clone().unwrap_or_default()));
        while window.front().is_some_and(|(t, _, _)| o.time - *t > span) {
            window.pop_front();
        }
        let mut accounts: Vec<String> = window.iter().map(|(_, _, u)| u.clone()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        if (window.len() as u64) < failures || (accounts.len() as u64) < names {
            return;
        }
        let start = window.front().map(|(t, _, _)| *t).unwrap_or(o.time);
        let mut evidence =
            Evidence::records(window.iter().map(|(_, s, _)| *s), window.len() as u64)
                .threshold(failures)
                .window(start, o.time);
        evidence.addresses = vec![ip.to_string()];
        let summary = format!(
            "{} failed logins from {ip} across {} account names in {} minutes",
            window.len(),
            accounts.len(),
            span.as_secs() / 60
        );
        evidence.accounts = accounts;
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

    fn statement(&mut self, o: &Observation, s: &Statement, out: &mut Vec<Alert>) {
        let tz = self.tz;
        let session = self
            .sessions
            .entry(s.session.clone())
            .or_insert_with(|| SessionInfo {
                user: s.user.clone(),
                client: s.client,
                open: HashMap::new(),
            });
        let lookup = s.is_lookup() && !s.keys.is_empty();
        if s.decision != "denied" {
            session.open.insert(s.stmt, Open { seq: o.seq, lookup });
        }
        self.account(&s.user).touch(o.time, tz);
        if s.decision == "denied" {
            self.probe(o, &s.user, s.client, out);
        }
        if !lookup {
            return;
        }
        for key in &s.keys {
            if self.canaries.contains(&key.k) {
                let mut evidence = Evidence::records([o.seq], 1);
                evidence.sessions = vec![s.session.clone()];
                evidence.addresses = addresses([s.client]);
                self.raise(
                    out,
                    Rule::Canary,
                    Severity::High,
                    (Some(&s.user), s.client),
                    o,
                    "a honeytoken record marked in the policy was looked up".into(),
                    evidence,
                );
            }
        }
        let t = &self.settings.thresholds;
        let (span, max_keys, max_near) =
            (t.enumeration_window, t.enumeration_keys, t.sequential_keys);
        let account = self.account(&s.user);
        let mut found = None;
        for key in &s.keys {
            let (distinct, near) = account.lookups.push(
                Lookup {
                    time: o.time,
                    seq: o.seq,
                    key: *key,
                },
                span,
            );
            let start = account.lookups.entries.front().map_or(o.time, |l| l.time);
            if distinct >= max_keys {
                let evidence = Evidence::records(account.lookups.first_seqs(None), distinct)
                    .threshold(max_keys)
                    .window(start, o.time);
                found = Some((
                    format!(
                        "{distinct} distinct lookup keys in {} minutes",
                        span.as_secs() / 60
                    ),
                    evidence,
                ));
            } else if near >= max_near {
                let evidence = Evidence::records(account.lookups.first_seqs(key.n), near)
                    .threshold(max_near)
                    .window(start, o.time);
                found = Some((
                    format!(
                        "{near} distinct sequential lookup keys (one key range) in {} minutes",
                        span.as_secs() / 60
                    ),
                    evidence,
                ));
            }
        }
        if let Some((summary, mut evidence)) = found {
            evidence.addresses = addresses([s.client]);
            self.raise(
                out,
                Rule::Enumeration,
                Severity::High,
                (Some(&s.user), s.client),
                o,
                summary,
                evidence,
            );
        }
    }

    fn statement_end(&mut self, o: &Observation, end: &StatementEnd, out: &mut Vec<Alert>) {
        let Some(session) = self.sessions.get_mut(&end.session) else {
            return;
        };
        let Some(open) = session.open.remove(&end.stmt) else {
            return;
        };
        let (user, client) = (session.user.clone(), session.client);
        let probe = end
            .stopped_by
            .as_deref()
            .is_some_and(|s| s != "protected_column")
            || (end.outcome == "failed"
                && end.sqlstate.as_deref().is_some_and(|s| s.starts_with("42")));
        if probe {
            self.probe(o, &user, client, out);
        }
        let t = &self.settings.thresholds;
        let (span, max_empty) = (t.enumeration_window, t.empty_lookups);
        let account = self.account(&user);
        if open.lookup && end.outcome == "completed" && end.rows == 0 {
            let count = account.empty_lookups.push(o.time, open.seq, span);
            if count >= max_empty {
                let start = account.empty_lookups.start().unwrap_or(o.time);
                let evidence = Evidence::records(account.empty_lookups.seqs(), count)
                    .threshold(max_empty)
                    .window(start, o.time);
                self.raise(
                    out,
                    Rule::Enumeration,
                    Severity::High,
                    (Some(&user), client),
                    o,
                    format!(
                        "{count} lookups found nothing in {} minutes",
                        span.as_secs() / 60
                    ),
                    evidence,
                );
            }
        }
        self.volume(o, &user, client, open.seq, end.rows, out);
    }

    fn probe(&mut self, o: &Observation, user: &str, client: Option<IpAddr>, out: &mut Vec<Alert>) {
        let t = &self.settings.thresholds;
        let (span, max) = (t.probe_window, t.probe_events);
        let window = &mut self.account(user).probes;
        let count = window.push(o.time, o.seq, span);
        if count < max {
            return;
        }
        let start = window.start().unwrap_or(o.time);
        let mut evidence = Evidence::records(window.seqs(), count)
            .threshold(max)
            .window(start, o.time);
        evidence.addresses = addresses([client]);
        self.raise(
            out,
            Rule::Probing,
            Severity::Medium,
            (Some(user), client),
            o,
            format!(
                "{count} denials, failed statements or limit hits in {} minutes",
                span.as_secs() / 60
            ),
            evidence,
        );
    }

    fn volume(
        &mut self,
        o: &Observation,
        user: &str,
        client: Option<IpAddr>,
        seq: u64,
        rows: u64,
        out: &mut Vec<Alert>,
    ) {
        let t = &self.settings.thresholds;
        let (factor, min_rows) = (t.volume_factor, t.volume_min_rows);
        let account = self.account(user);
        account.add_rows(o.time, seq, rows);
        let hour_rows = account.hour_rows;
        if hour_rows < min_rows || rows == 0 {
            return;
        }
        let own = account.baseline();
        if own.is_some_and(|b| hour_rows as f64 <= factor * b as f64) {
            return;
        }
        let roles = account.roles.clone();
        let peers = self.peer_baseline(user, &roles);
        if peers.is_some_and(|b| hour_rows as f64 <= factor * b as f64) {
            return;
        }
        let baseline = own.max(peers).unwrap_or(0);
        let threshold = ((factor * baseline as f64) as u64).max(min_rows);
        let account = self.account(user);
        let mut evidence = Evidence::records(account.hour_seqs.clone(), hour_rows)
            .threshold(threshold)
            .window(account.hour_start.unwrap_or(o.time), o.time);
        evidence.baseline = Some(baseline);
        evidence.addresses = addresses([client]);
        self.raise(
            out,
            Rule::VolumeSpike,
            Severity::Medium,
            (Some(user), client),
            o,
            format!(
                "{hour_rows} rows read this hour; own baseline {}, role peers {}",
                own.map_or_else(|| "none yet".into(), |b| b.to_string()),
                peers.map_or_else(|| "none".into(), |b| b.to_string())
            ),
            evidence,
        );
    }

    /// The median baseline of the other accounts sharing one of `roles`.
    fn peer_baseline(&mut self, user: &str, roles: &[String]) -> Option<u64> {
        let mut baselines: Vec<u64> = self
            .accounts
            .iter_mut()
            .filter(|(login, a)| {
                login.as_str() != user && a.roles.iter().any(|r| roles.contains(r))
            })
            .filter_map(|(_, a)| a.baseline())
            .collect();
        if baselines.is_empty() {
            return None;
        }
        baselines.sort_unstable();
        Some(baselines[baselines.len() / 2])
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

/// Both known and different.
fn differs<T: PartialEq>(a: Option<T>, b: Option<T>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a != b)
}

fn addresses<const N: usize>(ips: [Option<IpAddr>; N]) -> Vec<String> {
    let mut out: Vec<String> = ips.iter().flatten().map(|ip| ip.to_string()).collect();
    out.dedup();
    out
}

type Finding = (Rule, Severity, String, Evidence);

/// An hour, or a day of the week, the account's history does not have.
fn unusual_time(account: &AccountState, o: &Observation, tz: UtcOffset) -> Option<Finding> {
    let local = o.time.to_offset(tz);
    let hour = local.hour() as usize;
    let weekday = local.weekday();
    let days = account.active_days;
    let near = account.hour_days[(hour + 23) % 24]
        + account.hour_days[hour]
        + account.hour_days[(hour + 1) % 24];
    let summary = if near == 0 {
        format!(
            "login at {:02}:{:02} local time; in {days} active days the account was never active between {:02}:00 and {:02}:00",
            local.hour(),
            local.minute(),
            (hour + 23) % 24,
            (hour + 2) % 24
        )
    } else if account.weekday_days[weekday.number_days_from_monday() as usize] == 0 {
        format!("login on a {weekday}; in {days} active days the account was never active on a {weekday}")
    } else {
        return None;
    };
    let evidence = Evidence::records([o.seq], 1);
    Some((Rule::OffHours, Severity::Medium, summary, evidence))
}

#[path = "accounts_check.rs"]
mod accounts_check;
