//! What a session enforces for its account, message by message.
//!
//! For a restricted account, every Query and Parse is decided by the account's
//! enforcer and replaced by its rewrite; result rows are counted against the caps
//! and quotas; upstream errors lose every field that can quote data; and every
//! RowDescription is checked for protected columns that arrive as stored. For every
//! account, caps and quotas are counted.
//!
//! A denied statement is not answered by the proxy directly: that would put the
//! error before the answers to messages still in flight, and leave the server's
//! transaction intact where the client believes it failed. Instead the statement is
//! replaced by a fixed text that does not parse, carrying this process's denial
//! token. PostgreSQL fails it at exactly that point (skipping to the next Sync and
//! failing an open transaction block, as for any error), and its ErrorResponse is
//! replaced by the denial on the way back.

use std::sync::Arc;

use bytes::BytesMut;
use maskgate_policy::Policy;
use maskgate_sql::StatementClass;

use super::audit::{Params, StatementAudit, Text};
use super::auto_prepare::{self, AutoPrepare, Unnamed};
use super::copy_check::CopyChecks;
use super::intercept::{ClientVerdict, ServerVerdict};
use super::pipeline::resources::Dropped;
use super::pipeline::sql_names::sql_name_ops;
use super::pipeline::{
    Completion, FetchOf, Limit, Op, OpKind, Pipeline, RowVerdict, StatementPlan, Step,
};
use super::rule_errors::{
    cap_error, denial_error, hourly_error, reserved_error, session_budget_error,
};
pub(super) use super::rule_errors::{encoding_error, is_utf8, malformed};
use super::rule_errors::{invalid_encoding, statement_text};
use super::statements::{drops_prepared, fetch_cursor, log_statement, plan};
use crate::enforcement::{AccountRules, AccountUsage, Enforcement};
use crate::error::{ClientError, SqlState};
use crate::observe::{
    Event, Events, Refusal, SessionContext, StatementRefused, StatementStopped, StopLimit,
};
use crate::protocol::fields::Fields;
use crate::protocol::{self, backend_tag, frontend_tag};

mod answers;
mod caps;
mod guard_errors;
mod monitor;

use caps::{HeldRows, StatementCaps};

/// The statement name of the Parse that stands upstream for a refused Bind, Describe,
/// Close or Execute: a named Parse that fails leaves the unnamed statement alone.
const DENIED_NAME: &[u8] = b"_maskgate_denied";

/// The account's rules as one session applies them. Everything that belongs to one
/// statement travels with its message in the [`Pipeline`]; what is kept here spans
/// statements.
mod admission;

pub struct SessionRules<'m> {
    enforcement: &'m Enforcement,
    events: &'m Events,
    /// Who the session is, for the events it reports.
    session: Arc<SessionContext>,
    account: Arc<AccountRules>,
    usage: AccountUsage,
    auto_prepare: AutoPrepare,
    /// The rows of `COPY … FROM STDIN` statements are checked as the client sends them.
    copy: CopyChecks,
    /// The session's statement records.
    audit: StatementAudit,
    /// The session's search_path, which a restricted account's names resolve through.
    search_path: maskgate_sql::SearchPath,
    /// The cap of each statement and portal the client prepared.
    caps: StatementCaps,
    /// Rows of the answering statement held back (`over_cap = "refuse"`).
    held: HeldRows,
    /// Rows sent to the client in this session, against `max_rows_per_session`.
    session_rows: u64,
}

impl<'m> SessionRules<'m> {
    pub fn new(
        enforcement: &'m Enforcement,
        account: Arc<AccountRules>,
        (events, session): (&'m Events, Arc<SessionContext>),
    ) -> Self {
        SessionRules {
            enforcement,
            events,
            usage: enforcement.quotas.usage(&session.login),
            audit: StatementAudit::new(events.audit().cloned(), session.clone()),
            session,
            account,
            auto_prepare: AutoPrepare::default(),
            copy: CopyChecks::default(),
            search_path: maskgate_sql::SearchPath::starting_at(Vec::new()),
            caps: StatementCaps::default(),
            held: HeldRows::default(),
            session_rows: 0,
        }
        .with_startup_search_path(None)
    }

    /// The session's search_path starts (and resets) at the one of its startup packet,
    /// or else the policy's.
    pub fn with_startup_search_path(mut self, path: Option<Vec<String>>) -> Self {
        let default = path.unwrap_or_else(|| self.account.policy_search_path().to_vec());
        self.search_path = maskgate_sql::SearchPath::starting_at(default);
        self
    }

    fn restricted(&self) -> bool {
        self.account.is_restricted()
    }

    /// Rows are held back until their statement ends within its cap.
    pub fn holds_rows(&self) -> bool {
        self.restricted() && self.account.refuse_over_cap
    }

    /// Shadow mode: caps are counted and reported, not enforced.
    pub fn is_shadow(&self) -> bool {
        self.account.is_monitored()
    }
}

/// How a denied message is replaced upstream.
enum Replaced<'a> {
    Query,
    /// The client's Parse of `name`: it fails as PostgreSQL would fail it.
    Parse {
        name: &'a [u8],
    },
    /// Any other extended-protocol message: a Parse that fails without side effects.
    Message,
}

impl SessionRules<'_> {
    /// A simple Query: replaced by its rewrite (restricted accounts), charged to the
    /// quotas, and its results expected statement by statement.
    pub fn query(&mut self, pipe: &mut Pipeline, body: &[u8], out: &mut BytesMut) -> ClientVerdict {
        self.copy.other_message();
        let cap = self.account.max_rows;
        if !self.restricted() {
            log_statement(body, "Query", "query");
            // Sent as typed, in whatever client_encoding the session uses: its
            // record keeps a lossy UTF-8 reading of the text.
            let sql = String::from_utf8_lossy(body.strip_suffix(b"\0").unwrap_or(body));
            if self.account.is_monitored() {
                return self.monitored_query(pipe, &sql, out);
            }
            if let Err(refusal) = self.admit(1, false) {
                return self.deny(pipe, Replaced::Query, refusal, &sql, out);
            }
            let stmt = match self.begin_unanalyzed("simple", &sql) {
                Ok(stmt) => stmt,
                Err(e) => {
                    return self.deny(pipe, Replaced::Query, (Refusal::Unrecorded, e), &sql, out)
                }
            };
            let op = Op::new(OpKind::Query {
                statements: None,
                cap,
            })
            .with_text(0, sql_name_ops(body));
            pipe.push(op.audited(stmt));
            return ClientVerdict::Forward;
        }
        let sql = match statement_text(body) {
            Ok(sql) => sql,
            Err(error) => {
                // Answered as PostgreSQL answers it, and the session goes on.
                let lossy = String::from_utf8_lossy(body);
                return self.deny(pipe, Replaced::Query, (Refusal::Policy, error), &lossy, out);
            }
        };
        let decision = match self.decide(sql) {
            Ok(decision) => decision,
            Err(refusal) => return self.deny(pipe, Replaced::Query, refusal, sql, out),
        };
        let rewritten = match decision.as_ref() {
            Ok(rewritten) => rewritten,
            Err(denial) => {
                let refusal = (Refusal::Policy, denial_error(denial));
                return self.deny(pipe, Replaced::Query, refusal, sql, out);
            }
        };
        let counted = rewritten
            .statements
            .iter()
            .filter(|s| s.kind != StatementClass::Transaction)
            .count();
        if let Err(refusal) = self.admit(counted as u64, counted == 0) {
            return self.deny(pipe, Replaced::Query, refusal, sql, out);
        }
        let stmt = if self.audit.is_on() {
            self.audit.note_sql_prepared(rewritten, &self.account);
            let text = Text::rewritten(sql, rewritten, &self.account);
            match self
                .audit
                .begin("simple", &text, Vec::new(), &Params::default())
            {
                Ok(stmt) => stmt,
                Err(e) => {
                    return self.deny(pipe, Replaced::Query, (Refusal::Unrecorded, e), sql, out)
                }
            }
        } else {
            None
        };
        let mut plans = std::collections::VecDeque::new();
        for statement in &rewritten.statements {
            if drops_prepared(&statement.sql) {
                self.auto_prepare.forget_all();
                self.caps.forget_all();
            }
            if let Some(copy_in) = &statement.copy_in {
                self.copy.expect(copy_in.clone());
            }
            plans.push_back(plan(statement));
        }
        let op = Op::new(OpKind::Query {
            statements: Some(plans),
            cap,
        })
        .with_text(0, sql_name_ops(rewritten.text.as_bytes()));
        pipe.push(op.audited(stmt));
        tracing::debug!(statement = ?maskgate_sql::fingerprint(sql), "query rewritten");
        protocol::write_query(out, &rewritten.text);
        ClientVerdict::Replace
    }

    /// A Parse: replaced by its rewrite (restricted accounts); an unnamed statement is
    /// prepared upstream once per text.
    pub fn parse(&mut self, pipe: &mut Pipeline, body: &[u8], out: &mut BytesMut) -> ClientVerdict {
        self.copy.other_message();
        let mut f = Fields::new(body, "Parse");
        let (Ok(name), Ok(text)) = (f.cstr(), f.cstr()) else {
            return ClientVerdict::Reject(malformed("Parse"));
        };
        let sql: std::borrow::Cow<'_, str> = match std::str::from_utf8(text) {
            Ok(sql) => sql.into(),
            Err(e) if self.restricted() => {
                let refusal = (Refusal::Policy, invalid_encoding(text, e));
                let lossy = String::from_utf8_lossy(text);
                return self.deny(pipe, Replaced::Parse { name }, refusal, &lossy, out);
            }
            // Unrestricted statements go as sent, in the session's client_encoding.
            Err(_) => String::from_utf8_lossy(text),
        };
        let sql = &*sql;
        if self.account.is_monitored() {
            log_statement(body, "Parse", "parse");
            self.monitored_parse(name, sql, f.rest());
            pipe.push(Op::new(parse_op(name, None, None)));
            return ClientVerdict::Forward;
        }
        if !self.restricted() {
            log_statement(body, "Parse", "parse");
            if self.audit.is_on() {
                self.audit.parsed(name, Text::unanalyzed(sql), &[]);
            }
            let op = Op::new(parse_op(name, None, None));
            pipe.push(op.with_text(text.len(), sql_name_ops(text)));
            return ClientVerdict::Forward;
        }
        let param_types = f.rest();
        if auto_prepare::is_reserved(name) {
            let refusal = (Refusal::Policy, reserved_error("prepared statement"));
            return self.deny(pipe, Replaced::Message, refusal, sql, out);
        }
        if name.is_empty() {
            self.auto_prepare.unnamed_replaced();
        }
        let decision = match self.decide(sql) {
            Ok(decision) => decision,
            Err(refusal) => return self.deny(pipe, Replaced::Message, refusal, sql, out),
        };
        let refused = |e| Err((Refusal::Policy, e));
        let rewritten = match decision.as_ref() {
            Ok(rewritten) if rewritten.statements.len() > 1 => refused(ClientError::error(
                SqlState::SYNTAX_ERROR,
                "cannot insert multiple commands into a prepared statement",
            )),
            Ok(rewritten)
                if rewritten
                    .statements
                    .iter()
                    .any(|s| s.copy_in.is_some() || s.copy_out.is_some()) =>
            {
                refused(ClientError::error(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    "COPY is accepted from restricted accounts in a simple query only",
                ))
            }
            Ok(rewritten) => Ok(rewritten),
            Err(denial) => refused(denial_error(denial)),
        };
        let rewritten = match rewritten {
            Ok(rewritten) => rewritten,
            Err(refusal) => return self.deny(pipe, Replaced::Parse { name }, refusal, sql, out),
        };
        if self.audit.is_on() {
            self.audit.note_sql_prepared(rewritten, &self.account);
            let text = Text::rewritten(sql, rewritten, &self.account);
            self.audit.parsed(name, text, param_types);
        }
        let first = rewritten.statements.first();
        self.caps
            .parsed(name, first.map_or(self.account.max_rows, |s| s.row_cap));
        let fetch = first.and_then(fetch_cursor);
        if drops_prepared(&rewritten.text) {
            self.auto_prepare.forget_all();
        }
        tracing::debug!(statement = ?maskgate_sql::fingerprint(sql), "parse rewritten");
        let plannable = first.is_some_and(|s| {
            matches!(s.kind, StatementClass::Read | StatementClass::Write) && s.cursor.is_none()
        });
        let unnamed = if name.is_empty() && plannable {
            self.auto_prepare
                .parse_unnamed(&rewritten.text, param_types, out)
        } else {
            Unnamed::AsSent
        };
        let prepared = match unnamed {
            Unnamed::Created(n) => Some(n),
            Unnamed::Reused | Unnamed::AsSent => None,
        };
        // Counted by the client's text, as the cap was checked (see `over_cap`).
        let names = sql_name_ops(rewritten.text.as_bytes());
        pipe.push(Op::new(parse_op(name, fetch, prepared)).with_text(text.len(), names));
        if unnamed == Unnamed::AsSent {
            protocol::write_parse(out, name, &rewritten.text, param_types);
        }
        ClientVerdict::Replace
    }

    /// An Execute: charged to the quotas; its rows count against its portal.
    pub fn execute(
        &mut self,
        pipe: &mut Pipeline,
        body: &[u8],
        out: &mut BytesMut,
    ) -> ClientVerdict {
        self.copy.other_message();
        let mut fields = Fields::new(body, "Execute");
        let (Ok(portal), Ok(max_rows)) = (fields.cstr(), fields.i32()) else {
            return ClientVerdict::Reject(malformed("Execute"));
        };
        if self.restricted() && auto_prepare::is_reserved(portal) {
            let refusal = (Refusal::Policy, reserved_error("portal"));
            return self.deny(pipe, Replaced::Message, refusal, "", out);
        }
        if let Err(refusal) = self.admit(1, false) {
            return self.deny(pipe, Replaced::Message, refusal, "", out);
        }
        let stmt = match self.audit.execute(portal) {
            Ok(stmt) => stmt,
            Err(e) => return self.deny(pipe, Replaced::Message, (Refusal::Unrecorded, e), "", out),
        };
        let op = Op::new(OpKind::Execute {
            portal: String::from_utf8_lossy(portal).into_owned(),
            cap: self.caps.of_portal(portal, self.account.max_rows),
            // PostgreSQL reads a limit of 0 or less as no limit.
            max_rows: u32::try_from(max_rows).unwrap_or(0),
        });
        pipe.push(op.audited(stmt));
        ClientVerdict::Forward
    }

    /// A Bind: the portal's row count starts again once bound; the unnamed statement
    /// may stand for one the proxy prepared.
    pub fn bind(&mut self, pipe: &mut Pipeline, body: &[u8], out: &mut BytesMut) -> ClientVerdict {
        self.copy.other_message();
        let mut f = Fields::new(body, "Bind");
        let (Ok(portal), Ok(statement)) = (f.cstr(), f.cstr()) else {
            return ClientVerdict::Reject(malformed("Bind"));
        };
        if self.restricted() {
            let reserved = if auto_prepare::is_reserved(portal) {
                Some("portal")
            } else if auto_prepare::is_reserved(statement) {
                Some("prepared statement")
            } else {
                None
            };
            if let Some(what) = reserved {
                let refusal = (Refusal::Policy, reserved_error(what));
                return self.deny(pipe, Replaced::Message, refusal, "", out);
            }
        }
        self.audit.bound(portal, statement, body);
        self.caps.bound(portal, statement);
        pipe.push(Op::new(OpKind::Bind {
            portal: String::from_utf8_lossy(portal).into_owned(),
            statement: String::from_utf8_lossy(statement).into_owned(),
        }));
        if self.auto_prepare.bind(body, out) {
            ClientVerdict::Replace
        } else {
            ClientVerdict::Forward
        }
    }

    /// A Describe or Close (`tag`) of a statement or portal.
    pub fn describe_or_close(
        &mut self,
        pipe: &mut Pipeline,
        tag: u8,
        body: &[u8],
        out: &mut BytesMut,
    ) -> ClientVerdict {
        self.copy.other_message();
        let mut f = Fields::new(body, "Describe");
        let (Ok(kind), Ok(name)) = (f.u8(), f.cstr()) else {
            return ClientVerdict::Reject(malformed(if tag == frontend_tag::CLOSE {
                "Close"
            } else {
                "Describe"
            }));
        };
        if self.restricted() && auto_prepare::is_reserved(name) {
            let what = if kind == b'P' {
                "portal"
            } else {
                "prepared statement"
            };
            let refusal = (Refusal::Policy, reserved_error(what));
            return self.deny(pipe, Replaced::Message, refusal, "", out);
        }
        if tag == frontend_tag::CLOSE {
            self.audit.closed(kind, name);
            self.caps.closed(kind, name);
            pipe.push(Op::new(OpKind::Close {
                kind,
                name: String::from_utf8_lossy(name).into_owned(),
            }));
            self.auto_prepare.close(body);
            return ClientVerdict::Forward;
        }
        let statement = (kind == b'S').then(|| name.to_vec());
        pipe.push(Op::new(OpKind::Describe { statement }));
        if self.auto_prepare.describe(body, out) {
            ClientVerdict::Replace
        } else {
            ClientVerdict::Forward
        }
    }

    /// CopyData, CopyDone or CopyFail. A row the account may not send fails the COPY
    /// before it is complete upstream: the message is replaced by a CopyFail carrying
    /// the denial token, and PostgreSQL's error for it by the denial.
    pub fn copy_message(
        &mut self,
        pipe: &mut Pipeline,
        tag: u8,
        body: &[u8],
        out: &mut BytesMut,
    ) -> ClientVerdict {
        let kind = match tag {
            frontend_tag::COPY_DATA => OpKind::CopyData,
            frontend_tag::COPY_DONE => OpKind::CopyDone,
            _ => OpKind::CopyFail,
        };
        let Err(reason) = self.copy.message(tag, body) else {
            pipe.push(Op::new(kind));
            return ClientVerdict::Forward;
        };
        self.events.emit(Event::StatementRefused(StatementRefused {
            session: self.session.clone(),
            refusal: Refusal::CopyRow,
            sqlstate: SqlState::INSUFFICIENT_PRIVILEGE,
            reason: reason.to_string(),
            statement: String::new(),
        }));
        let token = self.enforcement.denial_token();
        protocol::write_message(out, frontend_tag::COPY_FAIL, &[token.as_bytes(), b"\0"]);
        let error = ClientError::error(
            SqlState::INSUFFICIENT_PRIVILEGE,
            format!("maskgate refused the copied rows: {reason}"),
        );
        pipe.push(Op::denied(OpKind::CopyFail, error));
        ClientVerdict::Replace
    }

    /// A Sync: one ReadyForQuery will answer it.
    pub fn sync(&mut self, pipe: &mut Pipeline) {
        pipe.push(Op::new(OpKind::Sync));
    }

    /// Follows a policy change to the account's new rules; ends the session when they
    /// differ (prepared statements, portals and cursors of this session were
    /// rewritten under the old ones and must not outlive them).
    pub fn follow(&mut self, policy: &Arc<Policy>, login: &str) -> Result<(), ClientError> {
        if Arc::ptr_eq(self.account.policy(), policy) {
            return Ok(());
        }
        let account = self
            .enforcement
            .account(policy, login)
            .ok_or_else(super::account_guard::ended)?;
        if !account.same_rules(&self.account) {
            return Err(ClientError::fatal(
                SqlState::ADMIN_SHUTDOWN,
                "terminating connection because this account's rules changed",
            )
            .with_hint("reconnect to continue under the new rules"));
        }
        self.account = account;
        Ok(())
    }

    /// Refuses a Query, Parse or Bind that would take the session past one of its
    /// caps, as PostgreSQL answers an exhausted resource: an error, after which the
    /// session goes on.
    pub fn refuse_over_cap(
        &mut self,
        pipe: &mut Pipeline,
        tag: u8,
        body: &[u8],
        error: ClientError,
        out: &mut BytesMut,
    ) -> ClientVerdict {
        self.refuse_message(pipe, (tag, body), (Refusal::SessionLimit, error), out)
    }

    /// Refuses a Query, Parse or other message in its place in the pipeline: the
    /// client gets `error` where PostgreSQL would have answered it.
    pub fn refuse_message(
        &mut self,
        pipe: &mut Pipeline,
        (tag, body): (u8, &[u8]),
        (refusal, error): (Refusal, ClientError),
        out: &mut BytesMut,
    ) -> ClientVerdict {
        let (replaced, sql) = match tag {
            frontend_tag::QUERY => (Replaced::Query, String::from_utf8_lossy(body)),
            frontend_tag::PARSE => {
                let mut f = Fields::new(body, "Parse");
                let name = f.cstr().unwrap_or_default();
                let text = f.cstr().unwrap_or_default();
                (Replaced::Parse { name }, String::from_utf8_lossy(text))
            }
            _ => (Replaced::Message, Default::default()),
        };
        self.deny(pipe, replaced, (refusal, error), &sql, out)
    }

    /// Begins the record of an unrestricted account's statement.
    fn begin_unanalyzed(
        &mut self,
        protocol: &'static str,
        sql: &str,
    ) -> Result<Option<u64>, ClientError> {
        if !self.audit.is_on() {
            return Ok(None);
        }
        self.audit.begin(
            protocol,
            &Text::unanalyzed(sql),
            Vec::new(),
            &Params::default(),
        )
    }

    /// The session ends: statements still unanswered are recorded as interrupted.
    pub fn interrupted(&mut self, pipe: &mut Pipeline) {
        for finished in pipe.interrupt() {
            self.audit.ended(finished);
        }
    }

    /// Strict mode: whether the results of every recorded statement may be read.
    pub fn poll_durable(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), ClientError>> {
        self.audit.poll_durable(cx)
    }

    /// Replaces a refused message by the denial token (see the module docs); the
    /// denial travels with the replacement in the pipeline.
    fn deny(
        &mut self,
        pipe: &mut Pipeline,
        replaced: Replaced<'_>,
        (refusal, error): (Refusal, ClientError),
        sql: &str,
        out: &mut BytesMut,
    ) -> ClientVerdict {
        self.events.emit(Event::StatementRefused(StatementRefused {
            session: self.session.clone(),
            refusal,
            sqlstate: error.sqlstate,
            reason: error.message.clone(),
            statement: maskgate_sql::fingerprint(sql),
        }));
        if refusal != Refusal::Unrecorded {
            let protocol = match replaced {
                Replaced::Query => "simple",
                _ => "extended",
            };
            self.audit.denied(protocol, sql, refusal, &error);
        }
        let token = self.enforcement.denial_token();
        let kind = match replaced {
            Replaced::Query => {
                protocol::write_query(out, token);
                OpKind::Query {
                    statements: Some(Default::default()),
                    cap: self.account.max_rows,
                }
            }
            Replaced::Parse { name } => {
                protocol::write_parse(out, name, token, &[0, 0]);
                parse_op(name, None, None)
            }
            Replaced::Message => {
                protocol::write_parse(out, DENIED_NAME, token, &[0, 0]);
                parse_op(DENIED_NAME, None, None)
            }
        };
        pipe.push(Op::denied(kind, error));
        ClientVerdict::Replace
    }

    /// Called by the intercept for each server message but FATAL errors, with where
    /// the pipeline placed it.
    pub fn server_message(
        &mut self,
        pipe: &mut Pipeline,
        step: Step,
        (tag, body): (u8, &[u8]),
        out: &mut BytesMut,
    ) -> ServerVerdict {
        for lost in pipe.take_lost() {
            self.auto_prepare.lost(lost);
        }
        if pipe.resources.has_dropped() {
            for dropped in pipe.resources.take_dropped() {
                match dropped {
                    Dropped::All => {
                        self.auto_prepare.forget_all();
                        self.audit.forget_statements();
                        self.caps.forget_all();
                    }
                    Dropped::Unknown => {
                        self.auto_prepare.forget_all();
                        self.caps.forget_all();
                    }
                    Dropped::Name(name) => {
                        self.auto_prepare.dropped(name.as_bytes());
                        self.audit.closed(b'S', name.as_bytes());
                        self.caps.closed(b'S', name.as_bytes());
                    }
                }
            }
        }
        if tag == backend_tag::PARAMETER_DESCRIPTION {
            if let Some(statement) = pipe.describing() {
                self.audit.described(statement, body);
            }
        }
        let verdict = self.answer(pipe, step, (tag, body), out);
        if pipe.has_finished() {
            for finished in pipe.take_finished() {
                self.audit.ended(finished);
            }
        }
        verdict
    }

    fn answer(
        &mut self,
        pipe: &mut Pipeline,
        step: Step,
        (tag, body): (u8, &[u8]),
        out: &mut BytesMut,
    ) -> ServerVerdict {
        match step {
            Step::Drop => ServerVerdict::Drop,
            Step::Row => match pipe.count_row(|| self.take_row()) {
                RowVerdict::Forward => {
                    pipe.note_sent(protocol::frame::HEADER_LEN + body.len());
                    ServerVerdict::Forward
                }
                RowVerdict::Hold => {
                    self.held.hold(tag, body);
                    ServerVerdict::Drop
                }
                RowVerdict::Drop => ServerVerdict::Drop,
            },
            Step::Complete(completion) => self.complete(pipe, completion, (tag, body), out),
            Step::Description => self.description(pipe, body, out),
            Step::Error(denial) => {
                self.held.discard();
                if let Some(denial) = denial.filter(|_| self.carries_token(body)) {
                    denial.encode(out);
                    return ServerVerdict::Replace;
                }
                if self.restricted() {
                    if let Some(error) = self.guard_error(pipe, body) {
                        error.encode(out);
                        return ServerVerdict::Replace;
                    }
                }
                self.without_detail(tag, body, out)
            }
            Step::Ready { .. } => ServerVerdict::Forward,
            Step::Pass if tag == backend_tag::COPY_DATA => {
                pipe.note_sent(protocol::frame::HEADER_LEN + body.len());
                ServerVerdict::Forward
            }
            Step::Pass => self.pass(tag, body, out),
        }
    }

    /// A FATAL error: the server ends the session; it reaches the client without detail.
    pub fn fatal(&self, body: &[u8], out: &mut BytesMut) -> ServerVerdict {
        self.without_detail(backend_tag::ERROR_RESPONSE, body, out)
    }

    /// Messages not tied to a statement's results.
    fn pass(&self, tag: u8, body: &[u8], out: &mut BytesMut) -> ServerVerdict {
        match tag {
            backend_tag::NOTICE_RESPONSE => self.without_detail(tag, body, out),
            backend_tag::PARAMETER_STATUS if self.restricted() => {
                let mut f = Fields::new(body, "ParameterStatus");
                match (f.str(), f.str()) {
                    (Ok("client_encoding"), Ok(encoding)) if !is_utf8(encoding) => {
                        ServerVerdict::Close(encoding_error())
                    }
                    _ => ServerVerdict::Forward,
                }
            }
            _ => ServerVerdict::Forward,
        }
    }
}

fn parse_op(name: &[u8], fetch_cursor: Option<FetchOf>, prepared: Option<u32>) -> OpKind {
    OpKind::Parse {
        name: String::from_utf8_lossy(name).into_owned(),
        fetch_cursor,
        prepared,
    }
}
