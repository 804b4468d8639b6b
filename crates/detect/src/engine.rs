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
use crate::observe::{self, AlertRecord, Observation, Observed};
use crate::state::AccountState;

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
    /// A lookup whose end says whether it found anyone.
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
    /// Per account and honeytoken: last alert, reads since, never alerted yet.
    canary_reads: HashMap<(String, u64), (OffsetDateTime, u64, bool)>,
    policy_accounts: Vec<AccountInfo>,
    known_logins: HashSet<String>,
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
            canary_reads: HashMap::new(),
            policy_accounts: Vec::new(),
            known_logins: HashSet::new(),
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
        self.known_logins = accounts.iter().map(|a| a.login.clone()).collect();
        self.policy_accounts = accounts;
    }

    pub fn set_timezone(&mut self, tz: UtcOffset) {
        self.tz = tz;
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The seq of the last record read.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
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
            Observed::Unlocked { login, .. } => self.unlocked(login),
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

    /// After an officer's review the account starts afresh: empty windows, and no
    /// cooldown holding back its next alert.
    fn unlocked(&mut self, login: &str) {
        if let Some(account) = self.accounts.get_mut(login) {
            account.reset_windows();
        }
        self.last_alert.retain(|(_, subject), _| subject != login);
        self.canary_reads.retain(|(account, _), _| account != login);
    }

    /// Whether `rule` alerted on `subject` within its cooldown: a new alert would be
    /// held back, so its evidence need not be gathered.
    fn cooling(&self, rule: Rule, subject: &str, o: &Observation) -> bool {
        let cooldown = self.cooldown(rule);
        !cooldown.is_zero()
            && self
                .last_alert
                .get(&(rule, subject.to_owned()))
                .is_some_and(|last| o.time - *last < cooldown)
    }

    fn cooldown(&self, rule: Rule) -> Duration {
        match rule {
            Rule::Canary => Duration::ZERO,
            Rule::StaleAccount => STALE_COOLDOWN,
            _ => self.settings.cooldown,
        }
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
        let cooldown = self.cooldown(rule);
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

#[path = "accounts_check.rs"]
mod accounts_check;
#[path = "engine_logins.rs"]
mod logins;
#[path = "engine_lookups.rs"]
mod lookups;
