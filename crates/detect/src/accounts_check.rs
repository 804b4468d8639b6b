//! Account-level findings that no record sets off: unused accounts, accounts past
//! or near their `valid_until`, without an assignment decision, or sharing one
//! assignment document with other people.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::Detector;
use crate::alert::{Alert, Evidence};
use crate::config::{Rule, Severity};
use crate::observe::{Observation, Observed};

impl Detector {
    pub(super) fn check_accounts(&mut self, now: OffsetDateTime, out: &mut Vec<Alert>) {
        let t = &self.settings.thresholds;
        let stale_after = time::Duration::days(t.stale_days as i64);
        let warn = time::Duration::days(t.expiry_warning_days as i64);
        let today = now.to_offset(self.tz).date();
        let history_covers = self.first_time.is_some_and(|f| now - f >= stale_after);
        let mut by_document: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for a in self.policy_accounts.iter().filter(|a| !a.disabled) {
            if let Some(doc) = &a.assignment {
                by_document.entry(doc).or_default().push(&a.login);
            }
        }
        let mut findings = Vec::new();
        for a in self.policy_accounts.iter().filter(|a| !a.disabled) {
            let mut reasons = Vec::new();
            let mut severity = Severity::Low;
            let last = self.accounts.get(&a.login).and_then(|s| s.last_login);
            if history_covers && last.is_none_or(|(t, _, _)| now - t >= stale_after) {
                reasons.push(format!("no login in {} days", t.stale_days));
            }
            match a.valid_until {
                Some(until) if until < today => {
                    reasons.push(format!("still enabled after its valid_until {until}"))
                }
                Some(until) if until - today <= warn => {
                    reasons.push(format!("valid_until {until} is near"))
                }
                _ => {}
            }
            if a.assignment.is_none() {
                reasons.push("no assignment decision on record".into());
            }
            let mut shared = Vec::new();
            if let Some(doc) = &a.assignment {
                let holders = &by_document[doc.as_str()];
                if holders.len() > 1 {
                    severity = Severity::Medium;
                    reasons.push(format!(
                        "its assignment document is also used by {} other account(s)",
                        holders.len() - 1
                    ));
                    shared = holders.iter().map(|s| s.to_string()).collect();
                }
            }
            if reasons.is_empty() {
                continue;
            }
            let mut evidence = Evidence::records(last.map(|(_, _, seq)| seq), 0);
            evidence.accounts = shared;
            findings.push((a.login.clone(), severity, reasons.join("; "), evidence));
        }
        // The alert's time and id are the check's, not a record's.
        let stamp = Observation {
            seq: 0,
            time: now,
            event: Observed::ProxyStart,
        };
        for (login, severity, summary, evidence) in findings {
            let before = out.len();
            self.raise(
                out,
                Rule::StaleAccount,
                severity,
                (Some(&login), None),
                &stamp,
                summary,
                evidence,
            );
            if let Some(alert) = out.get_mut(before) {
                alert.id = format!("stale_account-{login}-{}", now.date());
            }
        }
    }
}
