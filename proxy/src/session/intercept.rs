//! The one place every message passes on its way through a session.
//!
//! [`Intercept::client_message`] sees each client message before it goes
//! upstream; [`Intercept::server_message`] sees each server message before it
//! reaches the client. Either may forward the message as it is, or write a
//! replacement into the scratch buffer it is given.
//!
//! For a restricted account, every Query and Parse is decided by the account's
//! enforcer and replaced by its rewrite; result rows are counted against the caps
//! and quotas; upstream errors lose every field that can quote data; and every
//! RowDescription is checked for protected columns that arrive as stored.
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
use std::time::Instant;

use bytes::BytesMut;
use maskgate_sql::{Denial, EnforcedStatement, StatementClass};

use super::account_guard::AccountGuard;
use super::auto_prepare::{self, AutoPrepare};
use super::results::{Completion, CountKey, Limit, Results, RowVerdict};
use crate::enforcement::{AccountRules, AccountUsage, Enforcement};
use crate::error::{ClientError, SqlState};
use crate::metrics::Metrics;
use crate::protocol::fields::{self, Fields};
use crate::protocol::{self, backend_tag, frontend_tag};
use crate::upstream;

/// What to do with a client message.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientVerdict {
    Forward,
    /// Send the message written to the scratch buffer instead.
    Replace,
    /// The client said goodbye; nothing more is read from it.
    Terminate,
    /// The message is refused and the connection closed with this error.
    Reject(ClientError),
}

/// What to do with a server message.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerVerdict {
    Forward,
    /// Not for the client's eyes (rows past a limit, results of a stopped statement).
    Drop,
    /// Send the message written to the scratch buffer instead.
    Replace,
    /// End the session with this error.
    Close(ClientError),
}

/// Per-session protocol state tracked from the messages that pass.
pub struct Intercept<'m> {
    metrics: &'m Metrics,
    /// `None` in unit tests of the protocol bookkeeping.
    account: Option<AccountGuard<'m>>,
    /// `None` in unit tests of the protocol bookkeeping.
    rules: Option<SessionRules<'m>>,
    /// When each Query or Sync still waiting for its ReadyForQuery was sent.
    sync_points: VecDeque<Instant>,
    /// Extended-protocol messages were sent since the last Sync. The server
    /// may be running them (Flush asks for results without a Sync), so the
    /// session is not idle until the Sync's ReadyForQuery.
    unsynced: bool,
    /// Transaction status from the last ReadyForQuery.
    tx_status: u8,
    /// The server sent a FATAL error; it is about to close the connection.
    server_fatal: bool,
}

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

impl<'m> Intercept<'m> {
    pub fn new(
        metrics: &'m Metrics,
        account: Option<AccountGuard<'m>>,
        rules: Option<SessionRules<'m>>,
    ) -> Self {
        Self {
            metrics,
            account,
            rules,
            sync_points: VecDeque::new(),
            unsynced: false,
            tx_status: b'I',
            server_fatal: false,
        }
    }

    /// Called for each complete client message, in order, before it is forwarded.
    #[inline]
    pub fn client_message(&mut self, tag: u8, body: &[u8], out: &mut BytesMut) -> ClientVerdict {
        // Execute too: a driver that prepared its statements before the account
        // was disabled would otherwise go on running them.
        if matches!(
            tag,
            frontend_tag::QUERY | frontend_tag::PARSE | frontend_tag::EXECUTE
        ) {
            if let Err(e) = self.check_account() {
                self.metrics.session_ended_by_policy();
                return ClientVerdict::Reject(e);
            }
        }
        match tag {
            frontend_tag::QUERY => {
                self.metrics.statement();
                self.sync_points.push_back(Instant::now());
                let verdict = self.query(body, out);
                if let Some(rules) = self.rules.as_mut() {
                    rules.results.sync_point();
                    rules.syncs_sent += 1;
                }
                verdict
            }
            frontend_tag::SYNC => {
                self.unsynced = false;
                self.sync_points.push_back(Instant::now());
                if let Some(rules) = self.rules.as_mut() {
                    rules.results.sync_point();
                    rules.syncs_sent += 1;
                }
                ClientVerdict::Forward
            }
            frontend_tag::EXECUTE => {
                self.unsynced = true;
                self.metrics.statement();
                self.execute(body, out)
            }
            frontend_tag::PARSE => {
                self.unsynced = true;
                self.parse(body, out)
            }
            frontend_tag::BIND => {
                self.unsynced = true;
                if let Some(rules) = self.rules.as_mut() {
                    let mut f = Fields::new(body, "Bind");
                    match (f.cstr(), f.cstr()) {
                        (Ok(portal), Ok(statement)) => rules.results.bound(portal, statement),
                        _ => return ClientVerdict::Reject(malformed("Bind")),
                    }
                    if rules.auto_prepare.bind(body, out) {
                        return ClientVerdict::Replace;
                    }
                }
                ClientVerdict::Forward
            }
            frontend_tag::DESCRIBE => {
                self.unsynced = true;
                match &self.rules {
                    Some(rules) if rules.auto_prepare.describe(body, out) => ClientVerdict::Replace,
                    _ => ClientVerdict::Forward,
                }
            }
            frontend_tag::CLOSE => {
                self.unsynced = true;
                if let Some(rules) = self.rules.as_mut() {
                    rules.auto_prepare.close(body);
                }
                ClientVerdict::Forward
            }
            frontend_tag::FLUSH => {
                self.unsynced = true;
                ClientVerdict::Forward
            }
            frontend_tag::COPY_DATA | frontend_tag::COPY_DONE | frontend_tag::COPY_FAIL => {
                ClientVerdict::Forward
            }
            frontend_tag::TERMINATE => ClientVerdict::Terminate,
            frontend_tag::FUNCTION_CALL => ClientVerdict::Reject(ClientError::fatal(
                SqlState::FEATURE_NOT_SUPPORTED,
                "maskgate does not relay fast-path function calls (FunctionCall messages)",
            )),
            other => ClientVerdict::Reject(ClientError::fatal(
                SqlState::PROTOCOL_VIOLATION,
                format!("invalid frontend message type {}", describe_tag(other)),
            )),
        }
    }

    /// Ends the session if the account may no longer be used, and follows a policy
    /// change to the account's new rules.
    fn check_account(&mut self) -> Result<(), ClientError> {
        let Some(guard) = self.account.as_mut() else {
            return Ok(());
        };
        guard.check()?;
        if let Some(rules) = self.rules.as_mut() {
            if !Arc::ptr_eq(rules.account.policy(), guard.policy()) {
                let account = rules
                    .enforcement
                    .account(guard.policy(), guard.login())
                    .ok_or_else(super::account_guard::ended)?;
                // Prepared statements, portals and cursors of this session were
                // rewritten under the old rules; none may outlive a change.
                if !account.same_rules(&rules.account) {
                    return Err(ClientError::fatal(
                        SqlState::ADMIN_SHUTDOWN,
                        "terminating connection because this account's rules changed",
                    )
                    .with_hint("reconnect to continue under the new rules"));
                }
                rules.account = account;
            }
        }
        Ok(())
    }

    fn query(&mut self, body: &[u8], out: &mut BytesMut) -> ClientVerdict {
        let restricted = self.rules.as_ref().is_some_and(|r| r.restricted());
        if !restricted && tracing::enabled!(tracing::Level::DEBUG) {
            if let Ok(sql) = Fields::new(body, "Query").str() {
                tracing::debug!(statement = %maskgate_sql::fingerprint(sql), "query");
            }
        }
        let Some(rules) = self.rules.as_mut() else {
            return ClientVerdict::Forward;
        };
        if !restricted {
            if let Err(e) = rules.admit(1, false) {
                return rules.deny(self.metrics, Replaced::Query, e, "", out);
            }
            let (cap, hourly) = rules.limits();
            rules.results.expect(CountKey::Statement, cap, hourly, true);
            return ClientVerdict::Forward;
        }
        let Ok(sql) = Fields::new(body, "Query").str() else {
            return ClientVerdict::Reject(malformed("Query"));
        };
        let decision = rules.account.decide(sql);
        let rewritten = match decision.as_ref() {
            Ok(rewritten) => rewritten,
            Err(denial) => {
                return rules.deny(
                    self.metrics,
                    Replaced::Query,
                    (Refusal::Policy, denial_error(denial)),
                    sql,
                    out,
                )
            }
        };
        let counted = rewritten
            .statements
            .iter()
            .filter(|s| s.kind != StatementClass::Transaction)
            .count();
        if let Err(e) = rules.admit(counted as u64, counted == 0) {
            return rules.deny(self.metrics, Replaced::Query, e, sql, out);
        }
        let (cap, hourly) = rules.limits();
        for statement in &rewritten.statements {
            if drops_prepared(&statement.sql) {
                rules.auto_prepare.forget_all();
            }
            let key = count_key(statement, &mut rules.results);
            rules.results.expect(key, cap, hourly, false);
        }
        tracing::debug!(statement = %maskgate_sql::fingerprint(sql), "query rewritten");
        protocol::write_query(out, &rewritten.text);
        ClientVerdict::Replace
    }

    fn parse(&mut self, body: &[u8], out: &mut BytesMut) -> ClientVerdict {
        let restricted = self.rules.as_ref().filter(|r| r.restricted());
        if restricted.is_none() && !tracing::enabled!(tracing::Level::DEBUG) {
            return ClientVerdict::Forward;
        }
        let mut f = Fields::new(body, "Parse");
        let (Ok(name), Ok(sql)) = (f.cstr(), f.str()) else {
            return ClientVerdict::Reject(malformed("Parse"));
        };
        let param_types = f.rest();
        let Some(rules) = self.rules.as_mut().filter(|r| r.restricted()) else {
            tracing::debug!(statement = %maskgate_sql::fingerprint(sql), "parse");
            return ClientVerdict::Forward;
        };
        if name.starts_with(auto_prepare::PREFIX) {
            let e = ClientError::error(
                SqlState::INSUFFICIENT_PRIVILEGE,
                "prepared statement names starting with _maskgate_ are reserved",
            );
            return rules.deny(
                self.metrics,
                Replaced::Parse { name: b"" },
                (Refusal::Policy, e),
                sql,
                out,
            );
        }
        let decision = rules.account.decide(sql);
        if name.is_empty() {
            rules.auto_prepare.unnamed_replaced();
        }
        let statement = match decision.as_ref() {
            Ok(rewritten) if rewritten.statements.len() > 1 => {
                let e = ClientError::error(
                    SqlState::SYNTAX_ERROR,
                    "cannot insert multiple commands into a prepared statement",
                );
                return rules.deny(
                    self.metrics,
                    Replaced::Parse { name },
                    (Refusal::Policy, e),
                    sql,
                    out,
                );
            }
            Ok(rewritten) => {
                let first = rewritten.statements.first();
                let fetch = first.and_then(fetch_cursor);
                rules.results.prepared(name, fetch);
                if drops_prepared(&rewritten.text) {
                    rules.auto_prepare.forget_all();
                }
                let plannable = first.is_some_and(|s| {
                    matches!(s.kind, StatementClass::Read | StatementClass::Write)
                        && s.cursor.is_none()
                });
                if name.is_empty()
                    && plannable
                    && rules
                        .auto_prepare
                        .parse_unnamed(&rewritten.text, param_types, out)
                {
                    return ClientVerdict::Replace;
                }
                &rewritten.text
            }
            Err(denial) => {
                let e = denial_error(denial);
                return rules.deny(
                    self.metrics,
                    Replaced::Parse { name },
                    (Refusal::Policy, e),
                    sql,
                    out,
                );
            }
        };
        tracing::debug!(statement = %maskgate_sql::fingerprint(sql), "parse rewritten");
        protocol::write_parse(out, name, statement, param_types);
        ClientVerdict::Replace
    }

    fn execute(&mut self, body: &[u8], out: &mut BytesMut) -> ClientVerdict {
        let Some(rules) = self.rules.as_mut() else {
            return ClientVerdict::Forward;
        };
        let Ok(portal) = Fields::new(body, "Execute").cstr() else {
            return ClientVerdict::Reject(malformed("Execute"));
        };
        if let Err(e) = rules.admit(1, false) {
            return rules.deny(self.metrics, Replaced::Execute, e, "", out);
        }
        let (cap, hourly) = rules.limits();
        let key = rules.results.portal_key(portal);
        rules.results.expect(key, cap, hourly, false);
        ClientVerdict::Forward
    }

    /// Called for each complete server message, in order, before it is forwarded.
    #[inline]
    pub fn server_message(&mut self, tag: u8, body: &[u8], out: &mut BytesMut) -> ServerVerdict {
        match tag {
            backend_tag::READY_FOR_QUERY => {
                self.tx_status = body.first().copied().unwrap_or(b'I');
                if let Some(sent) = self.sync_points.pop_front() {
                    self.metrics.observe_statement(sent.elapsed());
                }
            }
            backend_tag::ERROR_RESPONSE => {
                if let Some(state) = fields::sqlstate(body) {
                    self.metrics.error(state);
                }
                self.server_fatal |= upstream::is_fatal(body);
            }
            _ => {}
        }
        match self.rules.as_mut() {
            Some(rules) => rules.server_message(self.metrics, tag, body, out),
            None => ServerVerdict::Forward,
        }
    }

    /// Between transactions with nothing in flight: the session may be ended or
    /// its upstream connection reused without losing anything.
    pub fn is_idle(&self) -> bool {
        self.sync_points.is_empty() && !self.unsynced && self.tx_status == b'I'
    }

    /// Statements sent and not yet answered.
    pub fn in_flight(&self) -> bool {
        !self.sync_points.is_empty() || self.unsynced
    }

    pub fn server_sent_fatal(&self) -> bool {
        self.server_fatal
    }
}

impl SessionRules<'_> {
    /// The cap and the hourly rows left for a statement starting now.
    fn limits(&self) -> (Option<u64>, Option<u64>) {
        let hourly = self
            .account
            .rows_per_hour
            .map(|per_hour| self.usage.rows_left(per_hour));
        (self.account.max_rows, hourly)
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

    fn server_message(
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
                self.usage.add_rows(rows);
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
                self.usage.add_rows(rows);
                ServerVerdict::Forward
            }
            Completion::Exceeded {
                limit,
                rows,
                more_pending,
            } => {
                self.usage.add_rows(rows);
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

fn malformed(what: &str) -> ClientError {
    ClientError::fatal(
        SqlState::PROTOCOL_VIOLATION,
        format!("malformed {what} message"),
    )
}

fn describe_tag(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", tag as char)
    } else {
        format!("{tag:#04x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(i: &mut Intercept<'_>, tag: u8, body: &[u8]) -> ClientVerdict {
        i.client_message(tag, body, &mut BytesMut::new())
    }

    fn server(i: &mut Intercept<'_>, tag: u8, body: &[u8]) -> ServerVerdict {
        i.server_message(tag, body, &mut BytesMut::new())
    }

    #[test]
    fn relays_the_protocol_and_refuses_the_rest() {
        let metrics = Metrics::new();
        let mut i = Intercept::new(&metrics, None, None);
        for tag in *b"QPBDECHSdcf" {
            assert_eq!(client(&mut i, tag, b"x\0"), ClientVerdict::Forward, "{tag}");
        }
        assert_eq!(client(&mut i, b'X', b""), ClientVerdict::Terminate);
        let ClientVerdict::Reject(e) = client(&mut i, b'F', b"") else {
            panic!("FunctionCall must be refused")
        };
        assert_eq!(e.sqlstate, SqlState::FEATURE_NOT_SUPPORTED);
        let ClientVerdict::Reject(e) = client(&mut i, 0x01, b"") else {
            panic!("unknown messages must be refused")
        };
        assert_eq!(e.sqlstate, SqlState::PROTOCOL_VIOLATION);
        assert!(e.message.contains("0x01"));
    }

    #[test]
    fn tracks_sync_points_and_transaction_status() {
        let metrics = Metrics::new();
        let mut i = Intercept::new(&metrics, None, None);
        assert!(i.is_idle());
        client(&mut i, b'Q', b"BEGIN\0");
        assert!(!i.is_idle());
        server(&mut i, b'Z', b"T");
        assert!(!i.is_idle(), "inside a transaction block");
        client(&mut i, b'S', b"");
        server(&mut i, b'Z', b"I");
        assert!(i.is_idle());
    }

    #[test]
    fn extended_messages_are_in_flight_until_the_sync_is_answered() {
        let metrics = Metrics::new();
        let mut i = Intercept::new(&metrics, None, None);
        for tag in *b"PBEH" {
            client(&mut i, tag, b"\0\0\0\0");
        }
        assert!(!i.is_idle(), "Execute + Flush may still be running");
        assert!(i.in_flight());
        client(&mut i, b'S', b"");
        assert!(!i.is_idle());
        server(&mut i, b'Z', b"I");
        assert!(i.is_idle());
        assert!(!i.in_flight());
    }

    #[test]
    fn notices_fatal_errors() {
        let metrics = Metrics::new();
        let mut i = Intercept::new(&metrics, None, None);
        server(&mut i, b'E', b"SERROR\0VERROR\0C42P01\0Mx\0\0");
        assert!(!i.server_sent_fatal());
        server(&mut i, b'E', b"SFATAL\0VFATAL\0C57P01\0Mx\0\0");
        assert!(i.server_sent_fatal());
    }

    const POLICY: &str = r#"
[labels]
"pii.identifier" = "Citizen ID"

[tables."public.person".columns]
id = { type = "bigint" }
citizen_id = { type = "char(12)", labels = ["pii.identifier"] }

[roles.reader]
statements = ["read"]
max_rows = 2

[roles.reader.tables."public.person"]
labels = { "pii.identifier" = { mask = "partial", keep_last = 4 } }
columns = { id = "allow" }

[accounts.clerk]
name = "Test"
verifier = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$Pt1yiDEkdgImZ0AmBgbiXKQxb/nzJvAzQRqgCb8ydDk=:4Nk6Be+31Y5qxyH0uF4KXvhYdvPZfX9rDG7lqW4Hc9U="
roles = ["reader"]
"#;

    fn policy() -> Arc<maskgate_policy::Policy> {
        let today = time::Date::from_calendar_date(2026, time::Month::March, 2).unwrap();
        maskgate_policy::Policy::from_texts(
            vec![("policy.toml".into(), POLICY.into())],
            maskgate_policy::PolicySettings::default(),
            today,
        )
        .unwrap_or_else(|rejected| panic!("{}", rejected.errors))
        .policy
        .into()
    }

    /// A RowDescription with one field per (name, table OID, column number).
    fn row_description(fields: &[(&str, u32, i16)]) -> Vec<u8> {
        let mut body = (fields.len() as i16).to_be_bytes().to_vec();
        for (name, table, column) in fields {
            body.extend_from_slice(name.as_bytes());
            body.push(0);
            body.extend_from_slice(&table.to_be_bytes());
            body.extend_from_slice(&column.to_be_bytes());
            body.extend_from_slice(&25u32.to_be_bytes());
            body.extend_from_slice(&(-1i16).to_be_bytes());
            body.extend_from_slice(&(-1i32).to_be_bytes());
            body.extend_from_slice(&0i16.to_be_bytes());
        }
        body
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn restricted_session<'m>(
        metrics: &'m Metrics,
        enforcement: &'m Enforcement,
        policy: &Arc<maskgate_policy::Policy>,
    ) -> Intercept<'m> {
        use maskgate_policy::QualifiedName;
        let person = || QualifiedName::new("public", "person");
        enforcement.set_columns(
            policy,
            crate::enforcement::ColumnOids::from_entries(vec![
                ((16400, 1), person(), "id".into()),
                ((16400, 2), person(), "citizen_id".into()),
            ]),
        );
        let account = enforcement.account(policy, "clerk").unwrap();
        Intercept::new(
            metrics,
            None,
            Some(SessionRules::new(enforcement, account, "clerk")),
        )
    }

    #[test]
    fn a_protected_column_arriving_as_stored_stops_the_statement() {
        let metrics = Metrics::new();
        let enforcement = Enforcement::new(Default::default());
        let policy = policy();
        let mut i = restricted_session(&metrics, &enforcement, &policy);
        let mut out = BytesMut::new();
        assert_eq!(
            i.client_message(b'Q', b"SELECT id, citizen_id FROM person\0", &mut out),
            ClientVerdict::Replace
        );
        let allowed = row_description(&[("id", 16400, 1), ("citizen_id", 0, 0)]);
        assert_eq!(server(&mut i, b'T', &allowed), ServerVerdict::Forward);

        let raw = row_description(&[("id", 16400, 1), ("citizen_id", 16400, 2)]);
        out.clear();
        assert_eq!(
            i.server_message(b'T', &raw, &mut out),
            ServerVerdict::Replace
        );
        assert!(contains(&out, b"XX000"), "an internal error replaces it");
        assert_eq!(
            server(&mut i, b'D', b"\0\x01\0\0\0\x01x"),
            ServerVerdict::Drop
        );
        assert_eq!(server(&mut i, b'C', b"SELECT 1\0"), ServerVerdict::Drop);
        assert_eq!(server(&mut i, b'Z', b"I"), ServerVerdict::Forward);
        assert!(metrics
            .encode_text()
            .contains("maskgate_result_column_violations_total 1"));
    }

    #[test]
    fn a_denied_statement_is_replaced_by_the_token_and_its_error_by_the_denial() {
        let metrics = Metrics::new();
        let enforcement = Enforcement::new(Default::default());
        let policy = policy();
        let mut i = restricted_session(&metrics, &enforcement, &policy);
        let mut out = BytesMut::new();
        assert_eq!(
            i.client_message(b'Q', b"SELECT pg_read_file('x')\0", &mut out),
            ClientVerdict::Replace
        );
        let token = enforcement.denial_token().to_owned();
        assert!(contains(&out, token.as_bytes()), "the token goes upstream");
        assert!(!contains(&out, b"pg_read_file"), "the statement does not");

        let server_error =
            format!("SERROR\0VERROR\0C42601\0Msyntax error at or near \"{token}\"\0P1\0\0");
        out.clear();
        assert_eq!(
            i.server_message(b'E', server_error.as_bytes(), &mut out),
            ServerVerdict::Replace
        );
        assert!(contains(&out, b"42501"));
        assert!(!contains(&out, token.as_bytes()));
        assert_eq!(server(&mut i, b'Z', b"I"), ServerVerdict::Forward);

        // An error of the statement's own making keeps severity, code and message only.
        out.clear();
        assert_eq!(
            i.server_message(
                b'E',
                b"SERROR\0VERROR\0C23505\0Mduplicate key\0DFailing row contains (x)\0\0",
                &mut out
            ),
            ServerVerdict::Replace
        );
        assert!(contains(&out, b"duplicate key"));
        assert!(!contains(&out, b"Failing row"));
    }
}
