//! The facts a personal-data breach notification needs (Decree 13/2023): which
//! categories of personal data, how many people and records, which tables and
//! columns, when, from which machines, by which account, and what was done.
//!
//! Built only from a trail that verifies with the public key: a tampered trail is
//! refused with the verifier's findings. Records after the last checkpoint (a
//! running proxy's tail) are used but the report says they are unsealed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use maskgate_audit::{PublicKey, Status};
use serde::Serialize;
use time::OffsetDateTime;

use super::daily::{alerts_table, AlertRow};
use super::html::{bars, esc, page, table};
use super::subjects::{DataSubjects, Subjects};
use super::{hour_of, rfc3339, Classification};
use crate::observe::{self, Observed};
use crate::trail::{self, TrailError};

#[derive(Debug, thiserror::Error)]
pub enum BreachError {
    #[error("the audit trail does not verify, so no report is built from it:\n{0}")]
    Tampered(String),
    #[error("cannot verify the audit trail: {0}")]
    Verify(#[from] maskgate_audit::VerifyError),
    #[error(transparent)]
    Trail(#[from] TrailError),
}

#[derive(Debug, Default, Serialize)]
pub struct BreachReport {
    pub account: String,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub from: String,
    pub to: String,
    pub generated: String,
    pub verification: Verification,
    pub first_activity: Option<String>,
    pub last_activity: Option<String>,
    pub machines: Vec<Machine>,
    pub statements: u64,
    pub denied_statements: u64,
    /// Rows sent to the account's clients.
    pub records: u64,
    pub bytes: u64,
    pub data_subjects: DataSubjects,
    pub tables: Vec<TableRead>,
    pub categories: Vec<Category>,
    pub actions: Vec<Action>,
    pub alerts: Vec<AlertRow>,
    /// Seqs of the first statements, to cite.
    pub statement_records: Vec<u64>,
    /// Rows sent per hour (UTC), for the timeline.
    pub rows_per_hour: Vec<(String, u64)>,
}

#[derive(Debug, Default, Serialize)]
pub struct Verification {
    pub status: String,
    pub public_key: String,
    pub records: u64,
    /// Seq ranges no checkpoint covers yet.
    pub unsealed: Vec<(u64, u64)>,
    /// The last seq a signed checkpoint covers, and the last seq in the trail.
    pub sealed_through: Option<u64>,
    pub last_seq: Option<u64>,
    /// The trail does not end with a signed final checkpoint: records after
    /// `sealed_through` may be missing (a cut copy) or not sealed yet (a running
    /// proxy); what the report counts may be short by them.
    pub tail_may_be_cut: bool,
    /// The same, for people.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub warning: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub client: String,
    pub certificates: Vec<String>,
    pub applications: Vec<String>,
    pub sessions: u64,
    pub first: String,
    pub last: String,
}

#[derive(Debug, Default, Serialize)]
pub struct TableRead {
    pub table: String,
    pub statements: u64,
    pub columns: Vec<ColumnRead>,
}

#[derive(Debug, Default, Serialize)]
pub struct ColumnRead {
    pub column: String,
    pub labels: Vec<String>,
    /// How it reached the account: `masked (partial)`, `denied` or `clear`.
    pub seen: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Category {
    pub label: String,
    pub description: String,
    pub columns: Vec<String>,
    /// Whether every column of this category reached the account masked or not at all.
    pub only_masked: bool,
    /// `in clear`, `masked only`, or `not at all` (every column denied).
    pub reached: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Action {
    pub at: String,
    pub action: String,
    pub detail: String,
}

#[derive(Default)]
struct MachineAcc {
    certificates: BTreeSet<String>,
    applications: BTreeSet<String>,
    sessions: u64,
    first: Option<OffsetDateTime>,
    last: Option<OffsetDateTime>,
}

/// Builds the report of `account` over `[from, to]`.
pub fn build(
    dir: &Path,
    public_key: &PublicKey,
    account: &str,
    (from, to): (OffsetDateTime, OffsetDateTime),
    classification: &Classification,
) -> Result<BreachReport, BreachError> {
    let verified = maskgate_audit::verify(dir, public_key)?;
    if verified.status() == Status::Tampered {
        return Err(BreachError::Tampered(verified.to_string()));
    }
    let (name, roles) = classification.accounts.get(account).cloned().unzip();
    let report = BreachReport {
        account: account.to_owned(),
        name,
        roles: roles.unwrap_or_default(),
        from: rfc3339(from),
        to: rfc3339(to),
        generated: rfc3339(OffsetDateTime::now_utc()),
        verification: verification(&verified),
        ..BreachReport::default()
    };
    let mut scan = Scan {
        account,
        r: report,
        sessions: HashSet::new(),
        counted: HashSet::new(),
        subjects: Subjects::default(),
        machines: BTreeMap::new(),
        tables: BTreeMap::new(),
        hourly: BTreeMap::new(),
        first: None,
        last: None,
        seal_key: None,
    };
    trail::read_since(dir, Some(from), |line| {
        let Some(o) = observe::parse(line) else {
            return;
        };
        scan.seal_key(&o, from);
        if o.time < from {
            return;
        }
        // Actions taken: until now, not only until `to`.
        scan.action(&o);
        if o.time <= to {
            scan.activity(o);
        } else if let Observed::StatementEnd(e) = &o.event {
            scan.subjects.late_end(e);
        }
    })?;
    Ok(scan.finish(classification))
}

/// What the verifier found, and what it means for the report when the trail does
/// not end with a signed final checkpoint.
pub fn verification(verified: &maskgate_audit::Report) -> Verification {
    let sealed_through = verified
        .segments()
        .iter()
        .filter_map(|s| s.sealed_through)
        .max();
    let unsealed: Vec<(u64, u64)> = verified
        .unsealed()
        .iter()
        .map(|r| (r.first, r.last))
        .collect();
    let tail_may_be_cut = verified.status() == Status::UnsealedTail;
    let warning = if tail_may_be_cut {
        format!(
            "The trail does not end with a signed final checkpoint: maskgate is still running, \
             stopped without closing it, or this copy was cut. Signed checkpoints cover records \
             up to seq {}; {}. Records after the last one may be missing from this copy, and \
             then from every count in this report.",
            sealed_through.map_or_else(|| "none".into(), |s| s.to_string()),
            if unsealed.is_empty() {
                "no record after it is in this copy".to_owned()
            } else {
                format!("records {unsealed:?} are in this copy but not covered by a signature")
            }
        )
    } else {
        String::new()
    };
    Verification {
        status: verified.status().to_string(),
        public_key: verified.public_key_fingerprint().to_owned(),
        records: verified.records(),
        unsealed,
        sealed_through,
        last_seq: verified.last_seq(),
        tail_may_be_cut,
        warning,
    }
}

struct Scan<'a> {
    account: &'a str,
    r: BreachReport,
    sessions: HashSet<String>,
    /// Sessions counted on a machine.
    counted: HashSet<String>,
    subjects: Subjects,
    machines: BTreeMap<String, MachineAcc>,
    /// Table -> statements, and column -> how it was seen.
    tables: BTreeMap<String, (u64, BTreeMap<String, String>)>,
    hourly: BTreeMap<OffsetDateTime, u64>,
    first: Option<OffsetDateTime>,
    last: Option<OffsetDateTime>,
    /// The seal key of the last statement read.
    seal_key: Option<String>,
}

impl Scan<'_> {
    /// A new seal key in use from the period on is a key rotation.
    fn seal_key(&mut self, o: &observe::Observation, from: OffsetDateTime) {
        let Observed::Statement(s) = &o.event else {
            return;
        };
        let Some(key) = &s.seal_key else {
            return;
        };
        if self.seal_key.as_ref().is_some_and(|k| k != key) && o.time >= from {
            self.r.actions.push(Action {
                at: rfc3339(o.time),
                action: "audit seal key rotated".into(),
                detail: format!("values sealed under key {key:?} from here on"),
            });
        }
        self.seal_key = Some(key.clone());
    }

    fn action(&mut self, o: &observe::Observation) {
        let at = rfc3339(o.time);
        let account = self.account;
        let action = |action: &str, detail: String| Action {
            at: at.clone(),
            action: action.into(),
            detail,
        };
        match &o.event {
            Observed::Alert(a) if a.account.as_deref() == Some(account) => {
                self.r.alerts.push(AlertRow::from_record(a.clone(), o.time));
            }
            Observed::Suspended { login, alert } if login == account => {
                self.r.actions.push(action(
                    "account suspended",
                    format!("by alert {}", alert.as_deref().unwrap_or("?")),
                ))
            }
            Observed::Unlocked { login, reason, by } if login == account => self
                .r
                .actions
                .push(action("account unlocked", format!("by {by}: {reason}"))),
            Observed::Lockout { user, .. } if user == account => self.r.actions.push(action(
                "login name locked after failed logins",
                String::new(),
            )),
            Observed::PolicyReload {
                accepted: true,
                before,
                after,
            } => self.r.actions.push(action(
                "policy reloaded (passwords, roles, validity or rules may have changed)",
                format!("{before} -> {}", after.as_deref().unwrap_or("?")),
            )),
            Observed::SessionEnd(e) if e.user == account && e.end == "closed_by_maskgate" => self
                .r
                .actions
                .push(action("session ended by maskgate", e.session.clone())),
            _ => {}
        }
    }

    fn activity(&mut self, o: observe::Observation) {
        match o.event {
            Observed::Login(l) if l.admitted && l.user.as_deref() == Some(self.account) => {
                self.sessions.extend(l.session.clone());
                let m = self
                    .machines
                    .entry(l.client.map(|c| c.to_string()).unwrap_or_default())
                    .or_default();
                if l.session.is_some_and(|s| self.counted.insert(s)) {
                    m.sessions += 1;
                }
                m.certificates.extend(l.certificate);
                m.applications.extend(l.application_name);
                m.first.get_or_insert(o.time);
                m.last = Some(o.time);
            }
            Observed::Statement(s) if s.user == self.account => self.statement(o.seq, o.time, s),
            Observed::StatementEnd(e) if self.sessions.contains(&e.session) => {
                self.r.records += e.rows;
                self.r.bytes += e.bytes;
                *self.hourly.entry(hour_of(o.time)).or_default() += e.rows;
                self.subjects.end(&e);
            }
            _ => {}
        }
    }

    fn statement(&mut self, seq: u64, time: OffsetDateTime, s: observe::Statement) {
        self.sessions.insert(s.session.clone());
        self.r.statements += 1;
        self.first.get_or_insert(time);
        self.last = Some(time);
        if self.r.statement_records.len() < 50 {
            self.r.statement_records.push(seq);
        }
        if s.decision == "denied" {
            self.r.denied_statements += 1;
            return;
        }
        // A session whose login came before the period is known by its statements.
        if let Some(client) = s.client {
            let m = self.machines.entry(client.to_string()).or_default();
            if self.counted.insert(s.session.clone()) {
                m.sessions += 1;
            }
            m.first.get_or_insert(time);
            m.last = Some(time);
        }
        self.subjects.statement(&s);
        // A monitored statement ran as typed: the columns enforcing would have
        // masked or denied reached the account in clear, whatever other statements
        // of the period did.
        let in_clear = s.decision == "monitored";
        for t in s.tables {
            let entry = self.tables.entry(t.table.clone()).or_default();
            entry.0 += 1;
            for m in &t.masked {
                let (column, mask) = m.split_once(':').unwrap_or((m, "?"));
                let how = entry.1.entry(column.to_owned()).or_default();
                if in_clear {
                    *how = "clear".into();
                } else if how != "clear" {
                    *how = format!("masked ({mask})");
                }
            }
            for d in &t.denied {
                let how = entry.1.entry(d.clone()).or_insert_with(|| "denied".into());
                if in_clear {
                    *how = "clear".into();
                }
            }
        }
    }

    fn finish(self, classification: &Classification) -> BreachReport {
        let mut r = self.r;
        r.first_activity = self.first.map(rfc3339);
        r.last_activity = self.last.map(rfc3339);
        r.data_subjects = self.subjects.finish();
        r.machines = self
            .machines
            .into_iter()
            .map(|(client, m)| Machine {
                client,
                certificates: m.certificates.into_iter().collect(),
                applications: m.applications.into_iter().collect(),
                sessions: m.sessions,
                first: m.first.map(rfc3339).unwrap_or_default(),
                last: m.last.map(rfc3339).unwrap_or_default(),
            })
            .collect();
        // Per label: its columns, and whether any reached the account in clear,
        // masked.
        let mut categories: BTreeMap<String, (Vec<String>, bool, bool)> = BTreeMap::new();
        for (table, (statements, seen)) in self.tables {
            let columns = classification
                .tables
                .get(&table)
                .cloned()
                .unwrap_or_default();
            let mut read = Vec::new();
            for (column, labels) in columns {
                let how = seen.get(&column).cloned().unwrap_or_else(|| "clear".into());
                for label in &labels {
                    let c = categories.entry(label.clone()).or_default();
                    c.0.push(format!("{table}.{column}"));
                    c.1 |= how == "clear";
                    c.2 |= how.starts_with("masked");
                }
                read.push(ColumnRead {
                    column,
                    labels,
                    seen: how,
                });
            }
            r.tables.push(TableRead {
                table,
                statements,
                columns: read,
            });
        }
        r.categories = categories
            .into_iter()
            .map(|(label, (columns, clear, masked))| Category {
                description: classification
                    .labels
                    .get(&label)
                    .cloned()
                    .unwrap_or_default(),
                label,
                columns,
                only_masked: !clear,
                reached: match (clear, masked) {
                    (true, _) => "in clear",
                    (false, true) => "masked only",
                    (false, false) => "not at all",
                }
                .into(),
            })
            .collect();
        r.rows_per_hour = self
            .hourly
            .into_iter()
            .map(|(h, rows)| (rfc3339(h), rows))
            .collect();
        r
    }
}

impl BreachReport {
    pub fn to_html(&self) -> String {
        let mut b = String::new();
        let _ = write!(
            b,
            "<p>Account <b>{}</b> ({}), roles {}; period {} to {}; generated {}.</p>",
            esc(&self.account),
            esc(self.name.as_deref().unwrap_or("?")),
            esc(&self.roles.join(", ")),
            esc(&self.from),
            esc(&self.to),
            esc(&self.generated)
        );
        let _ = write!(
            b,
            "<p>Audit trail verified with public key {}: <b>{}</b> ({} records).{}</p>",
            esc(&self.verification.public_key),
            esc(&self.verification.status),
            self.verification.records,
            if self.verification.warning.is_empty() {
                String::new()
            } else {
                format!(" <b>{}</b>", esc(&self.verification.warning))
            }
        );
        b.push_str("<h2>Summary</h2>");
        b.push_str(&table(
            &["fact", "value"],
            &[
                vec![
                    "first activity".into(),
                    esc(self.first_activity.as_deref().unwrap_or("-")),
                ],
                vec![
                    "last activity".into(),
                    esc(self.last_activity.as_deref().unwrap_or("-")),
                ],
                vec!["statements".into(), self.statements.to_string()],
                vec![
                    "denied statements".into(),
                    self.denied_statements.to_string(),
                ],
                vec!["records (rows) sent".into(), self.records.to_string()],
                vec!["bytes sent".into(), self.bytes.to_string()],
                vec![
                    "people looked up by key and found".into(),
                    self.data_subjects.looked_up.to_string(),
                ],
                vec![
                    "rows of lookups by key, each set of keys once".into(),
                    self.data_subjects.lookup_rows.to_string(),
                ],
                vec![
                    "rows of lookups whose key could not be read".into(),
                    self.data_subjects.unkeyed_rows.to_string(),
                ],
                vec![
                    "rows not read by key".into(),
                    self.data_subjects.rows_not_by_key.to_string(),
                ],
                vec![
                    "data subjects, at most".into(),
                    self.data_subjects.at_most.to_string(),
                ],
            ],
        ));
        self.html_data(&mut b);
        page("Personal data breach: facts for the notification", &b)
    }

    fn html_data(&self, b: &mut String) {
        b.push_str("<h2>Categories of personal data</h2>");
        b.push_str(&table(
            &["category", "description", "columns", "reached the account"],
            &self
                .categories
                .iter()
                .map(|c| {
                    vec![
                        esc(&c.label),
                        esc(&c.description),
                        esc(&c.columns.join(", ")),
                        if c.reached == "in clear" {
                            "<b>in clear</b>".into()
                        } else {
                            esc(&c.reached)
                        },
                    ]
                })
                .collect::<Vec<_>>(),
        ));
        b.push_str("<h2>Tables and columns</h2>");
        for t in &self.tables {
            let _ = write!(
                b,
                "<p><b>{}</b>: {} statements</p>",
                esc(&t.table),
                t.statements
            );
            b.push_str(&table(
                &["column", "labels", "seen as"],
                &t.columns
                    .iter()
                    .map(|c| vec![esc(&c.column), esc(&c.labels.join(", ")), esc(&c.seen)])
                    .collect::<Vec<_>>(),
            ));
        }
        b.push_str("<h2>Machines</h2>");
        b.push_str(&table(
            &[
                "client",
                "sessions",
                "first",
                "last",
                "certificates",
                "applications",
            ],
            &self
                .machines
                .iter()
                .map(|m| {
                    vec![
                        esc(&m.client),
                        m.sessions.to_string(),
                        esc(&m.first),
                        esc(&m.last),
                        esc(&m.certificates.join(", ")),
                        esc(&m.applications.join(", ")),
                    ]
                })
                .collect::<Vec<_>>(),
        ));
        b.push_str("<h2>Alerts</h2>");
        b.push_str(&alerts_table(&self.alerts));
        b.push_str("<h2>Actions taken</h2>");
        b.push_str(&table(
            &["at", "action", "detail"],
            &self
                .actions
                .iter()
                .map(|a| vec![esc(&a.at), esc(&a.action), esc(&a.detail)])
                .collect::<Vec<_>>(),
        ));
        let timeline: Vec<(String, u64)> = self
            .rows_per_hour
            .iter()
            .map(|(h, rows)| (h.get(5..13).unwrap_or(h).replace('T', " "), *rows))
            .collect();
        b.push_str(&bars("rows sent per hour (UTC)", &timeline));
        let _ = write!(
            b,
            "<h2>Records cited</h2><p class=\"muted\">statement records (seq): {}</p>",
            esc(&self
                .statement_records
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "))
        );
    }
}
