//! Shadow mode: an account whose roles are all in `mode = "monitor"` runs its
//! statements as sent, as an unrestricted account does, while each is decided as its
//! rules would enforce it. The decision (denied with which error, or rewritten) goes
//! into the statement's audit record and the metrics; rows are counted against the cap
//! the statement would have had, and passing it is recorded, never enforced.

use super::*;
use crate::observe::{Monitored, Would};

impl SessionRules<'_> {
    /// Decides `sql` for the record: what enforcing it would have done, and how its
    /// result sets would have been capped (`None` for a denial).
    pub(super) fn shadow_decision(
        &mut self,
        sql: &str,
    ) -> (Arc<Text>, Option<std::collections::VecDeque<StatementPlan>>) {
        let decision = self.account.decide(sql, &self.search_path);
        let (would, denial, plans) = match decision.as_ref() {
            Err(denial) => (
                Would::Deny,
                Some((denial.sqlstate.to_owned(), denial.message.clone())),
                None,
            ),
            Ok(rewritten) => (
                Would::Rewrite,
                None,
                Some(rewritten.statements.iter().map(plan).collect()),
            ),
        };
        self.events.emit(Event::Monitored(Monitored {
            session: self.session.clone(),
            would,
            statement: maskgate_sql::fingerprint(sql),
        }));
        let rewritten = decision.as_ref().as_ref().ok();
        (
            Text::monitored(sql, (would.as_str(), denial), (rewritten, &self.account)),
            plans,
        )
    }

    /// A monitored account's Query: recorded with its shadow decision, sent as typed.
    pub(super) fn monitored_query(
        &mut self,
        pipe: &mut Pipeline,
        sql: &str,
        out: &mut BytesMut,
    ) -> ClientVerdict {
        let (text, plans) = self.shadow_decision(sql);
        let stmt = match self
            .audit
            .begin("simple", &text, Vec::new(), &Params::default())
        {
            Ok(stmt) => stmt,
            Err(e) => return self.deny(pipe, Replaced::Query, (Refusal::Unrecorded, e), sql, out),
        };
        let op = Op::new(OpKind::Query {
            statements: plans,
            cap: self.account.max_rows,
        });
        pipe.push(op.audited(stmt));
        ClientVerdict::Forward
    }

    /// A monitored account's Parse: its Executes are recorded with its shadow
    /// decision and counted against the cap it would have had.
    pub(super) fn monitored_parse(&mut self, name: &[u8], sql: &str, param_types: &[u8]) {
        let (text, plans) = self.shadow_decision(sql);
        let cap = plans
            .and_then(|mut plans| plans.pop_front())
            .map_or(self.account.max_rows, |plan| plan.cap);
        self.caps.parsed(name, cap);
        if self.audit.is_on() {
            self.audit.parsed(name, text, param_types);
        }
    }

    /// A statement ran past the cap enforcement would have stopped it at.
    pub(super) fn shadow_cap(&self) {
        self.events.emit(Event::Monitored(Monitored {
            session: self.session.clone(),
            would: Would::Cap,
            statement: String::new(),
        }));
    }
}
