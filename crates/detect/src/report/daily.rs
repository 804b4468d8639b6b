//! The daily review: what a security reviewer must look at for a period — alerts,
//! suspensions, the top readers of personal data by rows and by people looked up,
//! denials and probing, refused logins, logins from new machines, off-hours use,
//! unused accounts and policy changes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::breach::Verification;
use super::html::{bars, esc, page, table};
use super::subjects::Subjects;
use super::{hour_of, rfc3339, Classification};
use crate::config::Rule;
use crate::observe::{self, Observed};
use crate::trail::{self, TrailError};

/// How far before the period logins are read to tell a new machine.
const LOOKBACK: Duration = Duration::days(28);
const TOP: usize = 10;

#[derive(Debug, Default, Serialize)]
pub struct DailyReport {
    pub from: String,
    pub to: String,
    pub generated: String,
    /// The trail's verification, when a public key was given; `None`: the report
    /// was built from the trail as it is, not verified.
    pub verification: Option<Verification>,
    pub totals: Totals,
    pub alerts: Vec<AlertRow>,
    pub suspensions: Vec<SuspensionRow>,
    pub top_by_rows: Vec<Reader>,
    pub top_by_people: Vec<Reader>,
    pub denials: Vec<Denials>,
    pub refused_logins: Vec<RefusedFrom>,
    pub new_machines: Vec<NewMachine>,
    pub off_hours: Vec<AlertRow>,
    /// Policy accounts without a login in the period and the 28 days before.
    pub unused_accounts: Vec<String>,
    pub policy_changes: Vec<PolicyChange>,
    /// Statements and rows per hour, for the chart.
    pub hourly: Vec<Hourly>,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub statements: u64,
    pub rows: u64,
    pub logins: u64,
    pub refused_logins: u64,
    pub denied: u64,
    pub alerts: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    pub id: String,
    pub rule: String,
    pub severity: String,
    pub account: Option<String>,
    pub client: Option<String>,
    pub at: String,
    pub summary: String,
    pub suspended: bool,
}

#[derive(Debug, Serialize)]
pub struct SuspensionRow {
    pub login: String,
    pub since: String,
    pub alert: String,
    pub summary: String,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Reader {
    pub account: String,
    pub statements: u64,
    pub rows: u64,
    /// Distinct people looked up by key and found.
    pub people: u64,
    /// Upper bound of the people its statements read (see the breach report).
    pub people_at_most: u64,
}

#[derive(Debug, Serialize)]
pub struct Denials {
    pub account: String,
    pub count: u64,
    pub reasons: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct RefusedFrom {
    pub client: String,
    pub count: u64,
    /// Login names tried that are accounts of the policy.
    pub accounts: Vec<String>,
    /// Other login names tried (counted, never listed: they may be passwords).
    pub other_names: u64,
    pub reasons: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct NewMachine {
    pub account: String,
    pub client: String,
    pub first_login: String,
}

#[derive(Debug, Serialize)]
pub struct PolicyChange {
    pub at: String,
    pub accepted: bool,
    pub before: String,
    pub after: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Hourly {
    pub hour: String,
    pub statements: u64,
    pub rows: u64,
}

#[derive(Default)]
struct Reading {
    statements: u64,
    rows: u64,
    subjects: Subjects,
}

/// Refused logins from one address: count, login names, reasons.
#[derive(Default)]
struct Refusals {
    count: u64,
    accounts: HashSet<String>,
    reasons: BTreeMap<String, u64>,
}

/// What the pass over the trail collects.
#[derive(Default)]
struct Scan {
    report: DailyReport,
    sessions: HashMap<String, String>,
    readers: HashMap<String, Reading>,
    denials: HashMap<String, (u64, BTreeMap<String, u64>)>,
    refused: HashMap<String, Refusals>,
    /// (account, client) pairs seen logging in.
    known: HashSet<(String, String)>,
    logged_in: HashSet<String>,
    hourly: BTreeMap<OffsetDateTime, (u64, u64)>,
}

/// Builds the report for `[from, to)` from the trail in `dir`.
pub fn build(
    dir: &Path,
    from: OffsetDateTime,
    to: OffsetDateTime,
    classification: &Classification,
    suspensions: &crate::Suspensions,
) -> Result<DailyReport, TrailError> {
    let mut scan = Scan::default();
    trail::read_since(dir, Some(from - LOOKBACK), |line| {
        let Some(kind) = observe::line_kind(line) else {
            return;
        };
        if !observe::KINDS.contains(&kind) {
            return;
        }
        if let Some(o) = observe::parse(line).filter(|o| o.time < to) {
            let within = o.time >= from;
            scan.observe(o, within);
        }
    })?;
    let mut r = scan.finish(classification, suspensions);
    r.from = rfc3339(from);
    r.to = rfc3339(to);
    r.generated = rfc3339(OffsetDateTime::now_utc());
    Ok(r)
}

impl Scan {
    fn observe(&mut self, o: observe::Observation, within: bool) {
        match o.event {
            Observed::Login(l) => self.login(o.time, l, within),
            _ if !within => {}
            Observed::Statement(s) => {
                let r = &mut self.report;
                self.sessions
                    .entry(s.session.clone())
                    .or_insert_with(|| s.user.clone());
                r.totals.statements += 1;
                self.hourly.entry(hour_of(o.time)).or_default().0 += 1;
                if s.decision == "denied" {
                    r.totals.denied += 1;
                    let e = self.denials.entry(s.user.clone()).or_default();
                    e.0 += 1;
                    *e.1.entry(s.reason.unwrap_or_default()).or_default() += 1;
                    return;
                }
                let reading = self.readers.entry(s.user.clone()).or_default();
                reading.statements += 1;
                reading.subjects.statement(&s);
            }
            Observed::StatementEnd(end) => {
                self.report.totals.rows += end.rows;
                self.hourly.entry(hour_of(o.time)).or_default().1 += end.rows;
                if let Some(user) = self.sessions.get(&end.session) {
                    let reading = self.readers.entry(user.clone()).or_default();
                    reading.rows += end.rows;
                    reading.subjects.end(&end);
                }
            }
            Observed::Alert(a) => {
                self.report.totals.alerts += 1;
                let row = AlertRow::from_record(a, o.time);
                if row.rule == Rule::OffHours.as_str() {
                    self.report.off_hours.push(row.clone());
                }
                self.report.alerts.push(row);
            }
            Observed::PolicyReload {
                accepted,
                before,
                after,
            } => self.report.policy_changes.push(PolicyChange {
                at: rfc3339(o.time),
                accepted,
                before,
                after,
            }),
            _ => {}
        }
    }

    fn login(&mut self, time: OffsetDateTime, l: observe::Login, within: bool) {
        let Some(user) = l.user.clone() else {
            return;
        };
        let client = l.client.map(|c| c.to_string()).unwrap_or_default();
        if !l.admitted {
            if within {
                self.report.totals.refused_logins += 1;
                let e = self.refused.entry(client).or_default();
                e.count += 1;
                e.accounts.insert(user);
                *e.reasons.entry(l.reason.unwrap_or_default()).or_default() += 1;
            }
            return;
        }
        self.logged_in.insert(user.clone());
        if let Some(s) = &l.session {
            self.sessions.insert(s.clone(), user.clone());
        }
        let seen_account = self.known.iter().any(|(u, _)| *u == user);
        if self.known.insert((user.clone(), client.clone())) && within && seen_account {
            self.report.new_machines.push(NewMachine {
                account: user,
                client,
                first_login: rfc3339(time),
            });
        }
        if within {
            self.report.totals.logins += 1;
        }
    }

    fn finish(
        self,
        classification: &Classification,
        suspensions: &crate::Suspensions,
    ) -> DailyReport {
        let mut r = self.report;
        let mut readers: Vec<Reader> = self
            .readers
            .into_iter()
            .map(|(account, x)| {
                let subjects = x.subjects.finish();
                Reader {
                    account,
                    statements: x.statements,
                    rows: x.rows,
                    people: subjects.looked_up,
                    people_at_most: subjects.at_most,
                }
            })
            .collect();
        readers.sort_by(|a, b| b.rows.cmp(&a.rows).then(a.account.cmp(&b.account)));
        r.top_by_rows = readers.iter().take(TOP).cloned().collect();
        readers.sort_by(|a, b| {
            (b.people_at_most, b.people)
                .cmp(&(a.people_at_most, a.people))
                .then(a.account.cmp(&b.account))
        });
        r.top_by_people = readers
            .into_iter()
            .filter(|x| x.people_at_most > 0)
            .take(TOP)
            .collect();
        r.denials = self
            .denials
            .into_iter()
            .map(|(account, (count, reasons))| Denials {
                account,
                count,
                reasons,
            })
            .collect();
        r.denials
            .sort_by(|a, b| b.count.cmp(&a.count).then(a.account.cmp(&b.account)));
        r.refused_logins = self
            .refused
            .into_iter()
            .map(|(client, x)| {
                let tried = x.accounts.len();
                let mut accounts: Vec<String> = x
                    .accounts
                    .into_iter()
                    .filter(|a| classification.accounts.contains_key(a))
                    .collect();
                accounts.sort();
                RefusedFrom {
                    client,
                    count: x.count,
                    other_names: (tried - accounts.len()) as u64,
                    accounts,
                    reasons: x.reasons,
                }
            })
            .collect();
        r.refused_logins
            .sort_by(|a, b| b.count.cmp(&a.count).then(a.client.cmp(&b.client)));
        r.unused_accounts = classification
            .accounts
            .keys()
            .filter(|login| !self.logged_in.contains(*login))
            .cloned()
            .collect();
        r.suspensions = suspensions
            .suspended
            .iter()
            .map(|(login, s)| SuspensionRow {
                login: login.clone(),
                since: rfc3339(s.since),
                alert: s.alert.clone(),
                summary: s.summary.clone(),
            })
            .collect();
        r.hourly = self
            .hourly
            .into_iter()
            .map(|(hour, (statements, rows))| Hourly {
                hour: rfc3339(hour),
                statements,
                rows,
            })
            .collect();
        r
    }
}

impl AlertRow {
    pub(super) fn from_record(a: observe::AlertRecord, time: OffsetDateTime) -> AlertRow {
        AlertRow {
            id: a.id,
            rule: a.rule.map(|r| r.as_str().to_owned()).unwrap_or_default(),
            severity: a
                .severity
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            account: a.account,
            client: a.client,
            at: rfc3339(a.at.unwrap_or(time)),
            summary: a.summary,
            suspended: a.suspended,
        }
    }
}

impl DailyReport {
    /// Whether, and how, the trail was verified.
    pub fn verification_line(&self) -> String {
        match &self.verification {
            None => "the audit trail was NOT verified (no --public-key): a changed trail \
                     would give a changed report"
                .into(),
            Some(v) if v.warning.is_empty() => {
                format!(
                    "audit trail verified with public key {}: {}",
                    v.public_key, v.status
                )
            }
            Some(v) => format!(
                "audit trail verified with public key {}: {}. {}",
                v.public_key, v.status, v.warning
            ),
        }
    }

    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let t = &self.totals;
        let _ = writeln!(o, "maskgate daily review, {} to {}", self.from, self.to);
        let _ = writeln!(o, "  {}", self.verification_line());
        let _ = writeln!(
            o,
            "  {} statements, {} rows sent, {} logins ({} refused), {} denied statements, {} alerts",
            t.statements, t.rows, t.logins, t.refused_logins, t.denied, t.alerts
        );
        let _ = writeln!(o, "\nALERTS");
        for a in &self.alerts {
            let _ = writeln!(
                o,
                "  {} [{}] {} {} {}{}",
                a.at,
                a.severity,
                a.id,
                a.account.as_deref().or(a.client.as_deref()).unwrap_or("-"),
                a.summary,
                if a.suspended { " (suspended)" } else { "" }
            );
        }
        let _ = writeln!(o, "\nSUSPENDED ACCOUNTS");
        for s in &self.suspensions {
            let _ = writeln!(
                o,
                "  {} since {} by {}: {}",
                s.login, s.since, s.alert, s.summary
            );
        }
        let _ = writeln!(o, "\nTOP READERS BY ROWS");
        for x in &self.top_by_rows {
            let _ = writeln!(
                o,
                "  {:<20} {:>10} rows {:>8} statements {:>8} people",
                x.account, x.rows, x.statements, x.people
            );
        }
        let _ = writeln!(o, "\nTOP READERS BY PEOPLE (AT MOST)");
        for x in &self.top_by_people {
            let _ = writeln!(
                o,
                "  {:<20} {:>8} people at most {:>8} looked up by key {:>10} rows",
                x.account, x.people_at_most, x.people, x.rows
            );
        }
        self.text_access(&mut o);
        o
    }

    fn text_access(&self, o: &mut String) {
        let _ = writeln!(o, "\nDENIALS");
        for d in &self.denials {
            let _ = writeln!(o, "  {:<20} {:>6} {:?}", d.account, d.count, d.reasons);
        }
        let _ = writeln!(o, "\nREFUSED LOGINS BY ADDRESS");
        for x in &self.refused_logins {
            let _ = writeln!(
                o,
                "  {:<40} {:>6} accounts: {} (and {} other names)",
                x.client,
                x.count,
                x.accounts.join(", "),
                x.other_names
            );
        }
        let _ = writeln!(o, "\nLOGINS FROM NEW MACHINES");
        for m in &self.new_machines {
            let _ = writeln!(o, "  {} {} {}", m.first_login, m.account, m.client);
        }
        let _ = writeln!(o, "\nOFF-HOURS USE");
        for a in &self.off_hours {
            let _ = writeln!(
                o,
                "  {} {} {}",
                a.at,
                a.account.as_deref().unwrap_or("-"),
                a.summary
            );
        }
        let _ = writeln!(o, "\nACCOUNTS WITHOUT A LOGIN IN 28 DAYS");
        let _ = writeln!(o, "  {}", self.unused_accounts.join(", "));
        let _ = writeln!(o, "\nPOLICY CHANGES");
        for p in &self.policy_changes {
            let outcome = if p.accepted { "accepted" } else { "refused" };
            let _ = writeln!(
                o,
                "  {} {} {} -> {}",
                p.at,
                outcome,
                p.before,
                p.after.as_deref().unwrap_or("-")
            );
        }
    }

    pub fn to_html(&self) -> String {
        let t = &self.totals;
        let mut b = format!(
            "<p>{} to {} &middot; generated {}</p><p><b>{}</b></p><p>{} statements, {} rows sent, {} logins ({} refused), {} denied statements, <b>{} alerts</b></p>",
            esc(&self.from), esc(&self.to), esc(&self.generated), esc(&self.verification_line()), t.statements, t.rows, t.logins, t.refused_logins, t.denied, t.alerts
        );
        let hours: Vec<(String, u64)> = self
            .hourly
            .iter()
            .map(|h| (h.hour[11..13].to_owned(), h.statements))
            .collect();
        b.push_str(&bars("statements per hour (UTC)", &hours));
        let rows: Vec<(String, u64)> = self
            .hourly
            .iter()
            .map(|h| (h.hour[11..13].to_owned(), h.rows))
            .collect();
        b.push_str(&bars("rows sent per hour (UTC)", &rows));
        b.push_str("<h2>Alerts</h2>");
        b.push_str(&alerts_table(&self.alerts));
        b.push_str("<h2>Suspended accounts</h2>");
        b.push_str(&table(
            &["account", "since", "alert", "why"],
            &self
                .suspensions
                .iter()
                .map(|s| vec![esc(&s.login), esc(&s.since), esc(&s.alert), esc(&s.summary)])
                .collect::<Vec<_>>(),
        ));
        b.push_str("<h2>Top readers of personal data</h2>");
        let top: Vec<(String, u64)> = self
            .top_by_rows
            .iter()
            .map(|x| (x.account.clone(), x.rows))
            .collect();
        b.push_str(&bars("rows read, by account", &top));
        b.push_str(&table(
            &["account", "rows", "statements", "people looked up"],
            &self
                .top_by_rows
                .iter()
                .map(|x| {
                    vec![
                        esc(&x.account),
                        x.rows.to_string(),
                        x.statements.to_string(),
                        x.people.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        ));
        b.push_str(&table(
            &[
                "account (by people read)",
                "people, at most",
                "looked up by key",
                "rows",
            ],
            &self
                .top_by_people
                .iter()
                .map(|x| {
                    vec![
                        esc(&x.account),
                        x.people_at_most.to_string(),
                        x.people.to_string(),
                        x.rows.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        ));
        self.html_access(&mut b);
        page("maskgate daily review", &b)
    }

    fn html_access(&self, b: &mut String) {
        b.push_str("<h2>Denials and probing</h2>");
        b.push_str(&table(
            &["account", "denied", "reasons"],
            &self
                .denials
                .iter()
                .map(|d| {
                    vec![
                        esc(&d.account),
                        d.count.to_string(),
                        esc(&format!("{:?}", d.reasons)),
                    ]
                })
                .collect::<Vec<_>>(),
        ));
        b.push_str(&table(
            &[
                "refused logins from",
                "count",
                "accounts (and other names)",
                "reasons",
            ],
            &self
                .refused_logins
                .iter()
                .map(|x| {
                    vec![
                        esc(&x.client),
                        x.count.to_string(),
                        esc(&format!(
                            "{} (+{} other)",
                            x.accounts.join(", "),
                            x.other_names
                        )),
                        esc(&format!("{:?}", x.reasons)),
                    ]
                })
                .collect::<Vec<_>>(),
        ));
        b.push_str("<h2>Logins from new machines</h2>");
        b.push_str(&table(
            &["first login", "account", "client"],
            &self
                .new_machines
                .iter()
                .map(|m| vec![esc(&m.first_login), esc(&m.account), esc(&m.client)])
                .collect::<Vec<_>>(),
        ));
        b.push_str("<h2>Off-hours use</h2>");
        b.push_str(&alerts_table(&self.off_hours));
        b.push_str("<h2>Accounts without a login in 28 days</h2><p>");
        b.push_str(&esc(&self.unused_accounts.join(", ")));
        b.push_str("</p><h2>Policy changes</h2>");
        b.push_str(&table(
            &["at", "outcome", "before", "after"],
            &self
                .policy_changes
                .iter()
                .map(|p| {
                    vec![
                        esc(&p.at),
                        if p.accepted {
                            "accepted".into()
                        } else {
                            "refused".into()
                        },
                        esc(&p.before),
                        esc(p.after.as_deref().unwrap_or("-")),
                    ]
                })
                .collect::<Vec<_>>(),
        ));
    }
}

pub(super) fn alerts_table(alerts: &[AlertRow]) -> String {
    table(
        &[
            "at",
            "severity",
            "alert",
            "account / address",
            "what",
            "suspended",
        ],
        &alerts
            .iter()
            .map(|a| {
                vec![
                    esc(&a.at),
                    format!("<span class=\"{0}\">{0}</span>", esc(&a.severity)),
                    esc(&a.id),
                    esc(a.account.as_deref().or(a.client.as_deref()).unwrap_or("-")),
                    esc(&a.summary),
                    if a.suspended {
                        "yes".into()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect::<Vec<_>>(),
    )
}
