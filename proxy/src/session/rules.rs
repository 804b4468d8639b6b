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

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use maskgate_policy::Policy;
use maskgate_sql::{Denial, EnforcedStatement, StatementClass};

use super::auto_prepare::{self, AutoPrepare};
use super::copy_check::CopyCheck;
use super::intercept::{ClientVerdict, ServerVerdict};
use super::results::{Completion, CountKey, Limit, Results, RowVerdict};
use crate::enforcement::{AccountRules, AccountUsage, Enforcement};
use crate::error::{ClientError, SqlState};
use crate::metrics::Metrics;
use crate::protocol::fields::Fields;
use crate::protocol::{self, backend_tag, frontend_tag};
use crate::upstream;

/// The account's rules as one session applies them.
pub struct SessionRules<'m> {
    enforcement: &'m Enforcement,
    account: Arc<AccountRules>,
    usage: AccountUsage,
    results: Results,
    /// Denials waiting for the server's error at their token, with the number of the
    /// sync point they belong to.
    denials: VecDeque<(u64, ClientError)>,
    syncs_sent: u64,
    syncs_answered: u64,
    /// A statement was stopped: its remaining results are dropped until ReadyForQuery.
    discarding: bool,
    auto_prepare: AutoPrepare,
    /// The rows of a `COPY … FROM STDIN` in progress are checked as they stream.
    copy: Option<CopyCheck>,
}

impl<'m> SessionRules<'m> {
    pub fn new(enforcement: &'m Enforcement, account: Arc<AccountRules>, login: &str) -> Self {
        SessionRules {
            enforcement,
            usage: enforcement.quotas.usage(login),
            account,
            results: Results::default(),
            denials: VecDeque::new(),
            syncs_sent: 0,
            syncs_answered: 0,
            discarding: false,
            auto_prepare: AutoPrepare::default(),
            copy: None,
        }
    }

    fn restricted(&self) -> bool {
        self.account.is_restricted()
    }
}

/// Why a statement is refused, for the metrics.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Policy,
    StatementQuota,
    RowQuota,
}

/// How a denied statement is replaced upstream.
enum Replaced<'a> {
    Query,
    Parse { name: &'a [u8] },
    Execute,
}

impl SessionRules<'_> {
    /// A simple Query: replaced by its rewrite (restricted accounts), charged to the
    /// quotas, and its results expected.
    pub fn query(&mut self, metrics: &Metrics, body: &[u8], out: &mut BytesMut) -> ClientVerdict {
        if !self.restricted() {
            log_statement(body, "Query", "query");
            if let Err(refusal) = self.admit(1, false) {
                return self.deny(metrics, Replaced::Query, refusal, "", out);
            }
            let (cap, hourly) = self.limits();
            self.results.expect(CountKey::Statement, cap, hourly, true);
            return ClientVerdict::Forward;
        }
        let Ok(sql) = Fields::new(body, "Query").str() else {
            return ClientVerdict::Reject(malformed("Query"));
        };
        let decision = self.account.decide(sql);
        let rewritten = match decision.as_ref() {
            Ok(rewritten) => rewritten,
            Err(denial) => {
                let refusal = (Refusal::Policy, denial_error(denial));
                return self.deny(metrics, Replaced::Query, refusal, sql, out);
            }
        };
        let counted = rewritten
            .statements
            .iter()
            .filter(|s| s.kind != StatementClass::Transaction)
            .count();
        if let Err(refusal) = self.admit(counted as u64, counted == 0) {
            return self.deny(metrics, Replaced::Query, refusal, sql, out);
        }
        if let Some(copy_in) = rewritten.statements.iter().find_map(|s| s.copy_in.as_ref()) {
            self.copy = Some(CopyCheck::new(copy_in.clone()));
        }
        let (cap, hourly) = self.limits();
        for statement in &rewritten.statements {
            if drops_prepared(&statement.sql) {
                self.auto_prepare.forget_all();
            }
            let key = count_key(statement, &mut self.results);
            self.results.expect(key, cap, hourly, false);
        }
        tracing::debug!(statement = %maskgate_sql::fingerprint(sql), "query rewritten");
        protocol::write_query(out, &rewritten.text);
        ClientVerdict::Replace
    }

    /// A Parse: replaced by its rewrite (restricted accounts); an unnamed statement is
    /// prepared upstream once per text.
    pub fn parse(&mut self, metrics: &Metrics, body: &[u8], out: &mut BytesMut) -> ClientVerdict {
        if !self.restricted() {
            log_statement(body, "Parse", "parse");
            return ClientVerdict::Forward;
        }
        let mut f = Fields::new(body, "Parse");
        let (Ok(name), Ok(sql)) = (f.cstr(), f.str()) else {
            return ClientVerdict::Reject(malformed("Parse"));
        };
        let param_types = f.rest();
        if name.starts_with(auto_prepare::PREFIX) {
            let e = ClientError::error(
                SqlState::INSUFFICIENT_PRIVILEGE,
                "prepared statement names starting with _maskgate_ are reserved",
            );
            let replaced = Replaced::Parse { name: b"" };
            return self.deny(metrics, replaced, (Refusal::Policy, e), sql, out);
        }
        if name.is_empty() {
            self.auto_prepare.unnamed_replaced();
        }
        let decision = self.account.decide(sql);
        let rewritten = match decision.as_ref() {
            Ok(rewritten) if rewritten.statements.len() > 1 => {
                let e = ClientError::error(
                    SqlState::SYNTAX_ERROR,
                    "cannot insert multiple commands into a prepared statement",
                );
                let replaced = Replaced::Parse { name };
                return self.deny(metrics, replaced, (Refusal::Policy, e), sql, out);
            }
            Ok(rewritten) if rewritten.statements.iter().any(|s| s.copy_in.is_some()) => {
                let e = ClientError::error(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    "COPY … FROM STDIN is accepted from restricted accounts in a simple query only",
                );
                let replaced = Replaced::Parse { name };
                return self.deny(metrics, replaced, (Refusal::Policy, e), sql, out);
            }
            Ok(rewritten) => rewritten,
            Err(denial) => {
                let refusal = (Refusal::Policy, denial_error(denial));
                return self.deny(metrics, Replaced::Parse { name }, refusal, sql, out);
            }
        };
        let first = rewritten.statements.first();
        self.results.prepared(name, first.and_then(fetch_cursor));
        if drops_prepared(&rewritten.text) {
            self.auto_prepare.forget_all();
        }
        tracing::debug!(statement = %maskgate_sql::fingerprint(sql), "parse rewritten");
        let plannable = first.is_some_and(|s| {
            matches!(s.kind, StatementClass::Read | StatementClass::Write) && s.cursor.is_none()
        });
        if name.is_empty()
            && plannable
            && self
                .auto_prepare
                .parse_unnamed(&rewritten.text, param_types, out)
        {
            return ClientVerdict::Replace;
        }
        protocol::write_parse(out, name, &rewritten.text, param_types);
        ClientVerdict::Replace
    }

    /// An Execute: charged to the quotas, its rows expected against the portal's count.
    pub fn execute(&mut self, metrics: &Metrics, body: &[u8], out: &mut BytesMut) -> ClientVerdict {
        let Ok(portal) = Fields::new(body, "Execute").cstr() else {
            return ClientVerdict::Reject(malformed("Execute"));
        };
        if let Err(refusal) = self.admit(1, false) {
            return self.deny(metrics, Replaced::Execute, refusal, "", out);
        }
        let (cap, hourly) = self.limits();
        let key = self.results.portal_key(portal);
        self.results.expect(key, cap, hourly, false);
        ClientVerdict::Forward
    }

    /// A Bind: the portal's row count starts again; the unnamed statement may stand
    /// for one the proxy prepared.
    pub fn bind(&mut self, body: &[u8], out: &mut BytesMut) -> ClientVerdict {
        let mut f = Fields::new(body, "Bind");
        let (Ok(portal), Ok(statement)) = (f.cstr(), f.cstr()) else {
            return ClientVerdict::Reject(malformed("Bind"));
        };
        self.results.bound(portal, statement);
        if self.auto_prepare.bind(body, out) {
            ClientVerdict::Replace
        } else {
            ClientVerdict::Forward
        }
    }

    pub fn describe(&self, body: &[u8], out: &mut BytesMut) -> ClientVerdict {
        if self.auto_prepare.describe(body, out) {
            ClientVerdict::Replace
        } else {
            ClientVerdict::Forward
        }
    }

    pub fn close(&mut self, body: &[u8]) {
        self.auto_prepare.close(body);
    }

    /// CopyData, CopyDone or CopyFail. A row the account may not send fails the COPY
    /// before it is complete upstream: the message is replaced by a CopyFail carrying
    /// the denial token, and PostgreSQL's error for it by the denial.
    pub fn copy_message(
        &mut self,
        metrics: &Metrics,
        tag: u8,
        body: &[u8],
        out: &mut BytesMut,
    ) -> ClientVerdict {
        let Some(check) = self.copy.as_mut() else {
            return ClientVerdict::Forward;
        };
        let checked = match tag {
            frontend_tag::COPY_DATA => check.data(body),
            frontend_tag::COPY_DONE => check.done(),
            _ => Ok(()),
        };
        if tag != frontend_tag::COPY_DATA {
            self.copy = None;
        }
        let Err(reason) = checked else {
            return ClientVerdict::Forward;
        };
        self.copy = None;
        metrics.statement_denied();
        tracing::info!(reason = %reason, "COPY rows refused");
        let token = self.enforcement.denial_token();
        protocol::write_message(out, frontend_tag::COPY_FAIL, &[token.as_bytes(), b"\0"]);
        let error = ClientError::error(
            SqlState::INSUFFICIENT_PRIVILEGE,
            format!("maskgate refused the copied rows: {reason}"),
        );
        self.denials
            .push_back((self.syncs_sent.saturating_sub(1), error));
        ClientVerdict::Replace
    }

    /// A Sync or the end of a simple Query: a ReadyForQuery will answer it.
    pub fn sync_point(&mut self) {
        self.results.sync_point();
        self.syncs_sent += 1;
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

    /// The cap and the hourly rows left for a statement starting now.
    fn limits(&self) -> (Option<u64>, Option<u64>) {
        let hourly = self
            .account
            .rows_per_hour
            .map(|per_hour| self.usage.rows_left(per_hour));
        (self.account.max_rows, hourly)
    }

    /// Charges rows sent to the client to the hourly quota, if the account has one.
    fn charge_rows(&self, rows: u64) {
        if self.account.rows_per_hour.is_some() {
            self.usage.add_rows(rows);
        }
    }

    /// Charges `statements` to the per-minute quota; refuses when a quota is used up.
    /// Transaction control is always let through, so a session can still end its
    /// transaction.
    fn admit(&self, statements: u64, transaction_only: bool) -> Result<(), (Refusal, ClientError)> {
        if transaction_only {
            return Ok(());
        }
        if let Some(per_minute) = self.account.statements_per_minute {
            if !self.usage.try_statements(statements, per_minute) {
                let error = ClientError::error(
                    SqlState::CONFIGURATION_LIMIT_EXCEEDED,
                    format!(
                        "this account has used its quota of {per_minute} statements per minute"
                    ),
                )
                .with_hint("wait a minute before the next statement");
                return Err((Refusal::StatementQuota, error));
            }
        }
        if let Some(per_hour) = self.account.rows_per_hour {
            if self.usage.rows_left(per_hour) == 0 {
                return Err((Refusal::RowQuota, hourly_error(per_hour)));
            }
        }
        Ok(())
    }

    /// Replaces a refused statement by the denial token (see the module docs).
    fn deny(
        &mut self,
        metrics: &Metrics,
        replaced: Replaced<'_>,
        (refusal, error): (Refusal, ClientError),
        sql: &str,
        out: &mut BytesMut,
    ) -> ClientVerdict {
        match refusal {
            Refusal::Policy => metrics.statement_denied(),
            Refusal::StatementQuota => metrics.quota_exceeded(false),
            Refusal::RowQuota => metrics.quota_exceeded(true),
        }
        tracing::info!(
            sqlstate = %error.sqlstate,
            reason = %error.message,
            statement = %maskgate_sql::fingerprint(sql),
            "statement denied"
        );
        let token = self.enforcement.denial_token();
        match replaced {
            Replaced::Query => protocol::write_query(out, token),
            Replaced::Parse { name } => protocol::write_parse(out, name, token, &[0, 0]),
            // The unnamed statement is replaced; drivers parse it again for each use.
            Replaced::Execute => protocol::write_parse(out, b"", token, &[0, 0]),
        }
        self.denials.push_back((self.syncs_sent, error));
        ClientVerdict::Replace
    }

    /// Called by the intercept for each server message, in order.
    pub fn server_message(
        &mut self,
        metrics: &Metrics,
        tag: u8,
        body: &[u8],
        out: &mut BytesMut,
    ) -> ServerVerdict {
        if self.discarding {
            if tag == backend_tag::READY_FOR_QUERY {
                self.discarding = false;
            } else if !(tag == backend_tag::ERROR_RESPONSE && upstream::is_fatal(body)) {
                return ServerVerdict::Drop;
            }
        }
        match tag {
            backend_tag::DATA_ROW => match self.results.data_row() {
                RowVerdict::Forward => ServerVerdict::Forward,
                RowVerdict::Drop => ServerVerdict::Drop,
            },
            backend_tag::COMMAND_COMPLETE
            | backend_tag::EMPTY_QUERY_RESPONSE
            | backend_tag::PORTAL_SUSPENDED => {
                if drops_prepared_tag(body) {
                    self.auto_prepare.forget_all();
                }
                self.complete(metrics, body, out)
            }
            backend_tag::ROW_DESCRIPTION => {
                if self.restricted() {
                    if let Some(column) = self.hidden_column(body) {
                        metrics.result_column_violation();
                        tracing::error!(
                            column = %self.account.describe_column(column),
                            "a protected column reached a result as stored: the statement is stopped; this is a maskgate rewrite bug, please report it"
                        );
                        let error = ClientError::error(
                            SqlState::INTERNAL_ERROR,
                            "maskgate stopped this statement: its result would have shown a protected column as stored",
                        );
                        let more = self.results.more_after_current();
                        return self.stop(error, more, out);
                    }
                }
                self.results.row_description();
                ServerVerdict::Forward
            }
            backend_tag::ERROR_RESPONSE => {
                let rows = self.results.error();
                self.charge_rows(rows);
                self.auto_prepare.error();
                if let Some(denial) = self.take_denial(body) {
                    denial.encode(out);
                    return ServerVerdict::Replace;
                }
                self.without_detail(tag, body, out)
            }
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
            backend_tag::READY_FOR_QUERY => {
                self.copy = None;
                self.results.ready();
                self.auto_prepare.ready();
                self.syncs_answered += 1;
                while self
                    .denials
                    .front()
                    .is_some_and(|(sync, _)| *sync < self.syncs_answered)
                {
                    self.denials.pop_front();
                }
                ServerVerdict::Forward
            }
            _ => ServerVerdict::Forward,
        }
    }

    /// CommandComplete, EmptyQueryResponse or PortalSuspended: the statement at the
    /// front is done; if it went past a limit, its end becomes the error.
    fn complete(&mut self, metrics: &Metrics, body: &[u8], out: &mut BytesMut) -> ServerVerdict {
        match self.results.complete(body) {
            Completion::Done { rows } => {
                self.charge_rows(rows);
                ServerVerdict::Forward
            }
            Completion::Exceeded {
                limit,
                rows,
                more_pending,
            } => {
                self.charge_rows(rows);
                let error = match limit {
                    Limit::PerStatement(cap) => {
                        metrics.row_cap_exceeded();
                        cap_error(cap)
                    }
                    Limit::Hourly(_) => {
                        metrics.quota_exceeded(true);
                        hourly_error(self.account.rows_per_hour.unwrap_or(0))
                    }
                };
                self.stop(error, more_pending, out)
            }
        }
    }

    /// Ends the current statement with `error` in place of its next message. If more
    /// statements were sent behind it before the next Sync, they have run although
    /// the client will believe they were skipped after the error, so the session is
    /// closed instead.
    fn stop(
        &mut self,
        error: ClientError,
        more_pending: bool,
        out: &mut BytesMut,
    ) -> ServerVerdict {
        if more_pending {
            let mut fatal = error;
            fatal.severity = crate::error::Severity::Fatal;
            fatal.hint = Some(
                "statements sent after it in the same batch had already run; the session is closed so that none of their results is misread".into(),
            );
            return ServerVerdict::Close(fatal);
        }
        self.discarding = true;
        error.encode(out);
        ServerVerdict::Replace
    }

    /// The denial whose token this error carries, if it belongs to the current batch.
    fn take_denial(&mut self, body: &[u8]) -> Option<ClientError> {
        let (sync, _) = self.denials.front()?;
        if *sync != self.syncs_answered {
            return None;
        }
        let token = self.enforcement.denial_token().as_bytes();
        if !body.windows(token.len()).any(|w| w == token) {
            return None;
        }
        self.denials.pop_front().map(|(_, error)| error)
    }

    /// Errors and notices reach restricted accounts with severity, SQLSTATE and
    /// message only.
    fn without_detail(&self, tag: u8, body: &[u8], out: &mut BytesMut) -> ServerVerdict {
        if !self.restricted() {
            return ServerVerdict::Forward;
        }
        match protocol::write_without_detail(out, tag, body) {
            Ok(()) => ServerVerdict::Replace,
            Err(_) => ServerVerdict::Close(ClientError::fatal(
                SqlState::PROTOCOL_VIOLATION,
                "invalid message from the database server",
            )),
        }
    }

    /// The first field of a RowDescription that shows a hidden column as stored.
    fn hidden_column(&self, body: &[u8]) -> Option<crate::enforcement::ColumnId> {
        let mut f = Fields::new(body, "RowDescription");
        let count = f.i16().ok()?;
        for _ in 0..count {
            f.cstr().ok()?;
            let table = f.i32().ok()? as u32;
            let column = f.i16().ok()?;
            f.bytes(4 + 2 + 4 + 2).ok()?;
            if table != 0 && self.account.is_hidden((table, column)) {
                return Some((table, column));
            }
        }
        None
    }
}

/// Whether a statement (as sent upstream) can drop the session's prepared statements.
fn drops_prepared(sql: &str) -> bool {
    let head = sql.trim_start().as_bytes();
    let starts =
        |word: &[u8]| head.len() >= word.len() && head[..word.len()].eq_ignore_ascii_case(word);
    starts(b"DISCARD") || starts(b"DEALLOCATE")
}

/// The same, from a CommandComplete tag (a prepared DEALLOCATE runs at Execute).
fn drops_prepared_tag(tag: &[u8]) -> bool {
    tag.starts_with(b"DISCARD ALL") || tag.starts_with(b"DEALLOCATE")
}

/// Where a statement's rows are counted.
fn count_key(statement: &EnforcedStatement, results: &mut Results) -> CountKey {
    match &statement.cursor {
        Some(cursor) if cursor.declare => {
            results.declare_cursor(&cursor.name);
            CountKey::Statement
        }
        Some(cursor) => CountKey::Cursor(cursor.name.clone()),
        None => CountKey::Statement,
    }
}

/// The cursor a prepared FETCH reads.
fn fetch_cursor(statement: &EnforcedStatement) -> Option<&str> {
    statement
        .cursor
        .as_ref()
        .filter(|c| !c.declare)
        .map(|c| c.name.as_str())
}

fn denial_error(denial: &Denial) -> ClientError {
    ClientError::error(
        SqlState::from_bytes(denial.sqlstate.as_bytes())
            .unwrap_or(SqlState::INSUFFICIENT_PRIVILEGE),
        denial.message.clone(),
    )
}

/// Statements are analyzed as UTF-8; PostgreSQL must read them the same way, or a
/// multi-byte encoding could hide a quote from the analyzer.
pub(super) fn is_utf8(encoding: &str) -> bool {
    matches!(
        encoding.to_ascii_lowercase().as_str(),
        "utf8" | "utf-8" | "unicode"
    )
}

pub(super) fn encoding_error() -> ClientError {
    ClientError::fatal(
        SqlState::FEATURE_NOT_SUPPORTED,
        "restricted accounts must use client_encoding UTF8",
    )
    .with_hint("connect with client_encoding=UTF8; maskgate analyzes statements as UTF-8")
}

fn cap_error(cap: u64) -> ClientError {
    ClientError::error(
        SqlState::PROGRAM_LIMIT_EXCEEDED,
        format!("the result has more than {cap} rows, the most this account's roles allow per statement"),
    )
    .with_hint("narrow the query: a more selective WHERE clause returns fewer rows")
}

fn hourly_error(per_hour: u64) -> ClientError {
    ClientError::error(
        SqlState::CONFIGURATION_LIMIT_EXCEEDED,
        format!("this account has used its quota of {per_hour} rows per hour"),
    )
    .with_hint("wait before reading more rows, or ask your security officer")
}

/// Logs an unrestricted account's statement as its fingerprint, at debug level.
fn log_statement(body: &[u8], message: &'static str, what: &'static str) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let mut f = Fields::new(body, message);
        if message == "Parse" {
            let _ = f.cstr();
        }
        if let Ok(sql) = f.str() {
            tracing::debug!(statement = %maskgate_sql::fingerprint(sql), "{what}");
        }
    }
}

pub(super) fn malformed(what: &str) -> ClientError {
    ClientError::fatal(
        SqlState::PROTOCOL_VIOLATION,
        format!("malformed {what} message"),
    )
}
