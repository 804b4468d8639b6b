//! Whether a restricted account's statement may be analyzed and run: the decision
//! cache first, then the account's quotas (statements per minute, rows per hour),
//! charged where the statement is admitted.

use crate::enforcement::Decision;
use crate::error::{ClientError, SqlState};
use crate::observe::Refusal;
use crate::session::pipeline::Limit;
use crate::session::rule_errors::{hourly_error, session_budget_error};

use super::SessionRules;

impl SessionRules<'_> {
    /// Takes one row from the session's budget and the account's hourly quota, if
    /// they have one; the limit that refuses it otherwise.
    pub(in crate::session) fn take_row(&mut self) -> Result<(), Limit> {
        if let Some(budget) = self.account.max_rows_per_session {
            if self.session_rows >= budget && !self.account.is_monitored() {
                return Err(Limit::Session(budget));
            }
        }
        if let Some(per_hour) = self.account.rows_per_hour {
            if !self.usage.try_take_rows(1, per_hour) {
                return Err(Limit::Hourly);
            }
        }
        self.session_rows += 1;
        Ok(())
    }

    /// The decision for `sql`: from the cache, or analyzed if the account's
    /// statement quota has room. A statement the analysis refuses is charged to the
    /// quota too, so refused statements cannot be used to spend analysis time
    /// without limit.
    pub(super) fn decide(&mut self, sql: &str) -> Result<Decision, (Refusal, ClientError)> {
        let decision = match self.account.cached(sql, &self.search_path) {
            Some(decision) => decision,
            None => self.analyze(sql)?,
        };
        // The session follows the search_path changes its statements make.
        if let Ok(rewritten) = decision.as_ref() {
            for change in rewritten
                .statements
                .iter()
                .filter_map(|s| s.search_path.as_ref())
            {
                self.search_path.apply(change);
            }
        }
        Ok(decision)
    }

    fn analyze(&self, sql: &str) -> Result<Decision, (Refusal, ClientError)> {
        // Monitor mode applies no statement quota (the analysis budget still holds).
        let quota = self
            .account
            .statements_per_minute
            .filter(|_| !self.account.is_monitored());
        let Some(per_minute) = quota else {
            return Ok(self.account.analyze(sql, &self.search_path));
        };
        if !is_transaction_control(sql) && !self.usage.has_statements_left(per_minute) {
            return Err((Refusal::StatementQuota, statement_quota_error(per_minute)));
        }
        let decision = self.account.analyze(sql, &self.search_path);
        if decision.is_err() {
            // Best effort: a quota that is full already refuses the next one.
            let _ = self.usage.try_statements(1, per_minute);
        }
        Ok(decision)
    }

    /// Charges `statements` to the per-minute quota; refuses when a quota is used up.
    /// Transaction control is always let through, so a session can still end its
    /// transaction.
    pub(super) fn admit(
        &self,
        statements: u64,
        transaction_only: bool,
    ) -> Result<(), (Refusal, ClientError)> {
        if transaction_only || self.account.is_monitored() {
            return Ok(());
        }
        if let Some(budget) = self.account.max_rows_per_session {
            if self.session_rows >= budget {
                return Err((Refusal::SessionBudget, session_budget_error(budget)));
            }
        }
        if let Some(per_minute) = self.account.statements_per_minute {
            if !self.usage.try_statements(statements, per_minute) {
                return Err((Refusal::StatementQuota, statement_quota_error(per_minute)));
            }
        }
        if let Some(per_hour) = self.account.rows_per_hour {
            if self.usage.rows_left(per_hour) == 0 {
                return Err((Refusal::RowQuota, hourly_error(per_hour)));
            }
        }
        Ok(())
    }
}

fn statement_quota_error(per_minute: u64) -> ClientError {
    ClientError::error(
        SqlState::CONFIGURATION_LIMIT_EXCEEDED,
        format!("this account has used its quota of {per_minute} statements per minute"),
    )
    .with_hint("wait a minute before the next statement")
}

/// Whether `sql` starts like a transaction control statement, which the quota
/// always lets through (a session must be able to end its transaction).
fn is_transaction_control(sql: &str) -> bool {
    let word = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    [
        "begin",
        "start",
        "commit",
        "end",
        "rollback",
        "abort",
        "savepoint",
        "release",
    ]
    .iter()
    .any(|keyword| word.eq_ignore_ascii_case(keyword))
}

#[cfg(test)]
mod tests {
    use super::is_transaction_control;

    #[test]
    fn transaction_control_is_told_by_its_first_word() {
        for sql in [
            "COMMIT",
            " rollback;",
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            "end",
        ] {
            assert!(is_transaction_control(sql), "{sql}");
        }
        for sql in ["SELECT 1", "beginning", "", "COMMITTED"] {
            assert!(!is_transaction_control(sql), "{sql}");
        }
    }
}
