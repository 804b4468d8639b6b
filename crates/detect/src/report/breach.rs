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
pub struct DataSubjects {
    /// Distinct people looked up by key (counted from keyed fingerprints).
    pub looked_up: u64,
    /// Rows of statements that were not lookups by key: each may be another person.
    pub rows_not_by_key: u64,
    /// Upper bound: both added.
    pub at_most: u64,
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
    let mut r = BreachReport {
        account: account.to_owned(),
        name,
        roles: roles.unwrap_or_default(),
        from: rfc3339(from),
        to: rfc3339(to),
        generated: rfc3339(OffsetDateTime::now_utc()),
        verification: Verification {
            status: verified.status().to_string(),
            public_key: verified.public_key_fingerprint().to_owned(),
            records: verified.records(),
            unsealed: verified
                .unsealed()
                .iter()
                .map(|r| (r.first, r.last))
                .collect(),
        },
        ..BreachReport::default()
    };
    let mut sessions: HashSet<String> = HashSet::new();
    let mut lookups: HashSet<String> = HashSet::new();
    let mut keys: HashSet<u64> = HashSet::new();
    let mut machines: BTreeMap<String, MachineAcc> = BTreeMap::new();
    let mut tables: BTreeMap<String, (u64, BTreeMap<String, String>)> = BTreeMap::new();
    let mut hourly: BTreeMap<OffsetDateTime, u64> = BTreeMap::new();
    let mut first: Option<OffsetDateTime> = None;
    let mut last: Option<OffsetDateTime> = None;
    trail::read_since(dir, Some(from), |line| {
        let Some(o) = observe::parse(line) else {
            return;
        };
        if o.time < from {
            return;
        }
        // Actions taken: until now, not only until `to`.
        match &o.event {
            Observed::Alert(a) if a.account.as_deref() == Some(account) => {
                r.alerts.push(AlertRow {
                    id: a.id.clone(),
                    rule: a.rule.map(|x| x.as_str().to_owned()).unwrap_or_default(),
                    severity: a
                        .severity
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_default(),
                    account: a.account.clone(),
                    client: a.client.clone(),
                    at: rfc3339(a.at.unwrap_or(o.time)),
                    summary: a.summary.clone(),
                    suspended: a.suspended,
                });
            }
            Observed::Suspended { login, alert } if login == account => r.actions.push(Action {
                at: rfc3339(o.time),
                action: "account suspended".into(),
                detail: format!("by alert {}", alert.as_deref().unwrap_or("?")),
            }),
            Observed::Unlocked { login, reason, by } if login == account => {
                r.actions.push(Action {
                    at: rfc3339(o.time),
                    action: "account unlocked".into(),
                    detail: format!("by {by}: {reason}"),
                })
            }
            Observed::Lockout { user, .. } if user == account => r.actions.push(Action {
                at: rfc3339(o.time),
                action: "login name locked after failed logins".into(),
                detail: String::new(),
            }),
            Observed::SessionEnd(e) if e.user == account && e.end == "closed_by_maskgate" => {
                r.actions.push(Action {
                    at: rfc3339(o.time),
                    action: "session ended by maskgate".into(),
                    detail: e.session.clone(),
                })
            }
            _ => {}
        }
        if o.time > to {
            return;
        }
        match o.event {
            Observed::Login(l) if l.admitted && l.user.as_deref() == Some(account) => {
                if let Some(s) = l.session {
                    sessions.insert(s);
                }
                let m = machines
                    .entry(l.client.map(|c| c.to_string()).unwrap_or_default())
                    .or_default();
                m.sessions += 1;
                m.certificates.extend(l.certificate);
                m.applications.extend(l.application_name);
                m.first.get_or_insert(o.time);
                m.last = Some(o.time);
            }
            Observed::Statement(s) if s.user == account => {
                sessions.insert(s.session.clone());
                r.statements += 1;
                first.get_or_insert(o.time);
                last = Some(o.time);
                if r.statement_records.len() < 50 {
                    r.statement_records.push(o.seq);
                }
                if s.decision == "denied" {
                    r.denied_statements += 1;
                    return;
                }
                if let Some(m) = s.client.and_then(|c| machines.get_mut(&c.to_string())) {
                    m.last = Some(o.time);
                }
                if s.is_lookup() {
                    lookups.insert(format!("{}/{}", s.session, s.stmt));
                    keys.extend(s.keys.iter().map(|k| k.k));
                }
                for t in s.tables {
                    let entry = tables.entry(t.table.clone()).or_default();
                    entry.0 += 1;
                    for m in &t.masked {
                        let (column, mask) = m.split_once(':').unwrap_or((m, "?"));
                        entry
                            .1
                            .insert(column.to_owned(), format!("masked ({mask})"));
                    }
                    for d in &t.denied {
                        entry.1.entry(d.clone()).or_insert_with(|| "denied".into());
                    }
                }
            }
            Observed::StatementEnd(e) if sessions.contains(&e.session) => {
                r.records += e.rows;
                r.bytes += e.bytes;
                *hourly.entry(hour_of(o.time)).or_default() += e.rows;
                if !lookups.contains(&format!("{}/{}", e.session, e.stmt)) {
                    r.data_subjects.rows_not_by_key += e.rows;
                }
            }
            _ => {}
        }
    })?;
    r.first_activity = first.map(rfc3339);
    r.last_activity = last.map(rfc3339);
    r.data_subjects.looked_up = keys.len() as u64;
    r.data_subjects.at_most = r.data_subjects.looked_up + r.data_subjects.rows_not_by_key;
    r.machines = machines
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
    let mut categories: BTreeMap<String, (Vec<String>, bool)> = BTreeMap::new();
    for (table, (statements, seen)) in tables {
        let columns = classification
            .tables
            .get(&table)
            .cloned()
            .unwrap_or_default();
        let mut read = Vec::new();
        for (column, labels) in columns {
            let how = seen.get(&column).cloned().unwrap_or_else(|| "clear".into());
            for label in &labels {
                let c = categories
                    .entry(label.clone())
                    .or_insert((Vec::new(), true));
                c.0.push(format!("{table}.{column}"));
                c.1 &= how != "clear";
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
        .map(|(label, (columns, only_masked))| Category {
            description: classification
                .labels
                .get(&label)
                .cloned()
                .unwrap_or_default(),
            label,
            columns,
            only_masked,
        })
        .collect();
    r.rows_per_hour = hourly
        .into_iter()
        .map(|(h, rows)| (rfc3339(h), rows))
        .collect();
    Ok(r)
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
            if self.verification.unsealed.is_empty() {
                String::new()
            } else {
                format!(
                    " Records {:?} are not yet covered by a signed checkpoint.",
                    self.verification.unsealed
                )
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
                    "people looked up by key".into(),
                    self.data_subjects.looked_up.to_string(),
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
                        if c.only_masked {
                            "masked only".into()
                        } else {
                            "<b>in clear</b>".into()
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
        page("Personal data breach: facts for the notification", &b)
    }
}
