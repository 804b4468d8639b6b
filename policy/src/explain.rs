//! `maskgate policy explain --user U`: what an account may do, in plain text.

use std::fmt::Write;

use crate::account::{format_fingerprint, format_hours, DAY_NAMES};
use crate::model::{ColumnRule, OverCap, TableCap};
use crate::policy::Policy;

impl Policy {
    /// The account and its effective rules as text for a reviewer; `None` if there is no
    /// such account. Never includes the verifier.
    pub fn explain(&self, login: &str) -> Option<String> {
        let account = self.account(login)?;
        let rules = self.effective(login)?;
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(w, "account {} ({})", account.login, account.name);
        if account.disabled {
            let _ = writeln!(w, "  DISABLED: cannot log in");
        }
        let _ = writeln!(w, "  roles: {}", join_or(&account.roles, "none"));
        if !account.attributes.is_empty() {
            let attributes: Vec<String> = account
                .attributes
                .iter()
                .map(|(k, v)| format!("{k} = {v:?}"))
                .collect();
            let _ = writeln!(w, "  attributes: {}", attributes.join(", "));
        }
        let from = account
            .valid_from
            .map_or("(no start)".to_owned(), |d| d.to_string());
        let until = account
            .valid_until
            .map_or("(no end)".to_owned(), |d| d.to_string());
        let _ = writeln!(w, "  valid: {from} to {until} inclusive");
        match &account.assignment {
            Some(a) => {
                let _ = writeln!(
                    w,
                    "  assignment: {} of {}, by {}",
                    a.document, a.date, a.assigned_by
                );
            }
            None => {
                let _ = writeln!(w, "  assignment: (none recorded)");
            }
        }
        let networks: Vec<String> = account.networks.iter().map(|n| n.to_string()).collect();
        let _ = writeln!(w, "  connects from: {}", join_or(&networks, "any address"));
        if !account.cert_fingerprints.is_empty() {
            let _ = writeln!(w, "  client certificate required, one of:");
            for fp in &account.cert_fingerprints {
                let _ = writeln!(w, "    {}", format_fingerprint(fp));
            }
        }
        let hours = account
            .login_hours
            .map_or("any time".to_owned(), format_hours);
        let days = match account.login_days {
            None => "every day".to_owned(),
            Some(days) => DAY_NAMES
                .iter()
                .zip(days)
                .filter(|(_, on)| *on)
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(" "),
        };
        let _ = writeln!(w, "  login: {hours}, {days} ({})", self.settings().timezone);
        if let Some(max) = account.max_sessions {
            let _ = writeln!(w, "  max sessions: {max}");
        }

        if rules.unrestricted {
            let _ = writeln!(
                w,
                "unrestricted: statements pass without rewriting (still audited)"
            );
            return Some(out);
        }
        if rules.monitor {
            let _ = writeln!(
                w,
                "monitor mode: statements run as sent; what the rules below would do is recorded"
            );
        }
        let _ = writeln!(w, "statements: {}", rules.statements);
        let mut limits = Vec::new();
        if let Some(n) = rules.max_rows {
            limits.push(format!("{n} rows per statement"));
            if rules.over_cap == OverCap::Refuse {
                limits.push("a statement over its cap gets no row".to_owned());
            }
        }
        if let Some(n) = rules.max_rows_per_session {
            limits.push(format!("{n} rows per session"));
        }
        if let Some(n) = rules.rows_per_hour {
            limits.push(format!("{n} rows per hour"));
        }
        if let Some(n) = rules.statements_per_minute {
            limits.push(format!("{n} statements per minute"));
        }
        let _ = writeln!(w, "limits: {}", join_or(&limits, "none"));
        let _ = writeln!(w, "tables (any other table is denied):");
        if rules.tables.is_empty() {
            let _ = writeln!(w, "  (none)");
        }
        for (name, table) in &rules.tables {
            let _ = writeln!(w, "  {name}");
            if !table.lookup_keys.is_empty() {
                let _ = writeln!(
                    w,
                    "    lookup only: each query must pin one of {} by equality",
                    table.lookup_keys.join(", ")
                );
            }
            if let Some(filter) = &table.row_filter {
                let _ = writeln!(w, "    rows where {filter}");
            }
            match table.max_rows {
                Some(TableCap::Rows(n)) => {
                    let _ = writeln!(w, "    caps statements that read it at {n} rows");
                }
                Some(TableCap::Exempt) => {
                    let _ = writeln!(w, "    does not cap statements (no personal data)");
                }
                None => {}
            }
            let width = table
                .columns
                .keys()
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0);
            for (column, rule) in &table.columns {
                let rule = match rule {
                    ColumnRule::Deny => "deny".to_owned(),
                    other => other.to_string(),
                };
                let _ = writeln!(w, "    {column:<width$}  {rule}");
            }
        }
        Some(out)
    }
}

fn join_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_owned()
    } else {
        items.join(", ")
    }
}
