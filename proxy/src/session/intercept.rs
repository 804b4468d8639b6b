//! The one place every message passes on its way through a session.
//!
//! [`Intercept::client_message`] sees each client message before it goes
//! upstream; [`Intercept::server_message`] sees each server message before it
//! reaches the client. Either may forward the message as it is, or write a
//! replacement into the scratch buffer it is given.
//!
//! What an account's rules do with each message is in [`SessionRules`]; this module
//! keeps the protocol bookkeeping every session needs (sync points, transaction
//! status, idleness) and checks the account itself on every statement.

use bytes::BytesMut;

use super::account_guard::AccountGuard;
use super::message_types::{invalid_type, is_skipped_till_sync};
use super::pipeline::resources::{self, Cap, Resources};
use super::pipeline::{Desync, Op, OpKind, Pipeline, RowVerdict, Step};
use super::rules::SessionRules;
use crate::config::SessionLimits;
use crate::error::{ClientError, SqlState};
use crate::metrics::Metrics;
use crate::observe::Refusal;
use crate::protocol::fields;
use crate::protocol::{backend_tag, frontend_tag};
use crate::upstream;

/// What to do with a client message.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientVerdict {
    Forward,
    /// Send the message written to the scratch buffer instead (nothing, if empty).
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
    /// Every message sent upstream and not yet answered, in PostgreSQL's order.
    pipeline: Pipeline,
    /// Extended-protocol messages were sent since the last Sync. The server
    /// may be running them (Flush asks for results without a Sync), so the
    /// session is not idle until the Sync's ReadyForQuery.
    unsynced: bool,
    /// Transaction status from the last ReadyForQuery.
    tx_status: u8,
    /// The server sent a FATAL error; it is about to close the connection.
    server_fatal: bool,
}

impl<'m> Intercept<'m> {
    pub fn new(
        metrics: &'m Metrics,
        account: Option<AccountGuard<'m>>,
        rules: Option<SessionRules<'m>>,
    ) -> Self {
        let mut pipeline = Pipeline::default();
        pipeline.hold = rules.as_ref().is_some_and(|r| r.holds_rows());
        pipeline.shadow = rules.as_ref().is_some_and(|r| r.is_shadow());
        Self {
            metrics,
            account,
            rules,
            pipeline,
            unsynced: false,
            tx_status: b'I',
            server_fatal: false,
        }
    }

    /// The same, with these caps on what the session holds upstream.
    pub fn with_limits(mut self, limits: SessionLimits) -> Self {
        self.pipeline.resources = Resources::new(limits);
        self
    }

    /// The most prepared statements the session held at once.
    pub fn prepared_high_water(&self) -> usize {
        self.pipeline.resources.high_water()
    }

    /// A Query, Parse or Bind that would take the session past a cap is refused
    /// as PostgreSQL refuses an exhausted resource.
    fn over_cap(&mut self, tag: u8, body: &[u8], out: &mut BytesMut) -> Option<ClientVerdict> {
        let held = &self.pipeline.resources;
        let mut f = fields::Fields::new(body, "message");
        let name = f.cstr().map(String::from_utf8_lossy).unwrap_or_default();
        let cap = match tag {
            frontend_tag::PARSE => {
                let text = f.cstr().map_or(0, <[u8]>::len);
                held.may_parse(&name, text).err()
            }
            frontend_tag::BIND => held.may_bind(&name).err(),
            frontend_tag::QUERY if resources::prepares(body) => {
                held.check_statements(body.len()).err()
            }
            _ => None,
        }?;
        self.metrics.guards().session_limit(cap.label());
        let error = held.error(cap);
        Some(match self.rules.as_mut() {
            Some(rules) => rules.refuse_over_cap(&mut self.pipeline, tag, body, error, out),
            None => ClientVerdict::Reject(error),
        })
    }

    /// A restricted Query or Parse too long to analyze, refused from its header
    /// alone: the client gets `error` in the statement's place and the session
    /// goes on (the relay drops the body as it arrives).
    pub fn refuse_unread(
        &mut self,
        tag: u8,
        error: ClientError,
        out: &mut BytesMut,
    ) -> ClientVerdict {
        // A disabled or suspended account's session ends here as at any statement.
        if let Err(e) = self.check_account() {
            self.metrics.session_ended_by_policy();
            return ClientVerdict::Reject(e);
        }
        if self.pipeline.client_skip && is_skipped_till_sync(tag) {
            return ClientVerdict::Replace;
        }
        if tag == frontend_tag::PARSE {
            self.unsynced = true;
        } else {
            self.metrics.statement();
        }
        match self.rules.as_mut() {
            Some(rules) => rules.refuse_message(
                &mut self.pipeline,
                (tag, &[]),
                (Refusal::Policy, error),
                out,
            ),
            None => ClientVerdict::Reject(error),
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
        if self.pipeline.client_skip && is_skipped_till_sync(tag) {
            // The proxy failed an extended-protocol statement: like PostgreSQL after
            // an error, nothing more is run before the client's Sync.
            return ClientVerdict::Replace;
        }
        let pipe = &mut self.pipeline;
        let metrics = self.metrics;
        match tag {
            frontend_tag::QUERY => {
                metrics.statement();
                if let Some(refused) = self.over_cap(tag, body, out) {
                    return refused;
                }
                let pipe = &mut self.pipeline;
                match self.rules.as_mut() {
                    Some(rules) => rules.query(pipe, body, out),
                    None => forward(
                        pipe,
                        OpKind::Query {
                            statements: None,
                            cap: None,
                        },
                    ),
                }
            }
            frontend_tag::SYNC => {
                self.unsynced = false;
                pipe.client_skip = false;
                match self.rules.as_mut() {
                    Some(rules) => rules.sync(pipe),
                    None => pipe.push(Op::new(OpKind::Sync)),
                }
                ClientVerdict::Forward
            }
            frontend_tag::EXECUTE => {
                self.unsynced = true;
                metrics.statement();
                match self.rules.as_mut() {
                    Some(rules) => rules.execute(pipe, body, out),
                    None => forward(
                        pipe,
                        OpKind::Execute {
                            portal: String::new(),
                            cap: None,
                            max_rows: 0,
                        },
                    ),
                }
            }
            frontend_tag::PARSE => {
                self.unsynced = true;
                if let Some(refused) = self.over_cap(tag, body, out) {
                    return refused;
                }
                let pipe = &mut self.pipeline;
                match self.rules.as_mut() {
                    Some(rules) => rules.parse(pipe, body, out),
                    None => forward(
                        pipe,
                        OpKind::Parse {
                            name: String::new(),
                            fetch_cursor: None,
                            prepared: None,
                        },
                    ),
                }
            }
            frontend_tag::BIND => {
                self.unsynced = true;
                if let Some(refused) = self.over_cap(tag, body, out) {
                    return refused;
                }
                let pipe = &mut self.pipeline;
                match self.rules.as_mut() {
                    Some(rules) => rules.bind(pipe, body, out),
                    None => forward(
                        pipe,
                        OpKind::Bind {
                            portal: String::new(),
                            statement: String::new(),
                        },
                    ),
                }
            }
            frontend_tag::DESCRIBE | frontend_tag::CLOSE => {
                self.unsynced = true;
                match self.rules.as_mut() {
                    Some(rules) => rules.describe_or_close(pipe, tag, body, out),
                    None if tag == frontend_tag::CLOSE => {
                        let mut f = fields::Fields::new(body, "Close");
                        let kind = f.u8().unwrap_or(b'S');
                        let name = f.cstr().map(String::from_utf8_lossy).unwrap_or_default();
                        let name = name.into_owned();
                        forward(pipe, OpKind::Close { kind, name })
                    }
                    None => forward(pipe, OpKind::Describe { statement: None }),
                }
            }
            frontend_tag::FLUSH => {
                self.unsynced = true;
                ClientVerdict::Forward
            }
            frontend_tag::COPY_DATA | frontend_tag::COPY_DONE | frontend_tag::COPY_FAIL => {
                match self.rules.as_mut() {
                    Some(rules) => rules.copy_message(pipe, tag, body, out),
                    None => forward(pipe, copy_kind(tag)),
                }
            }
            frontend_tag::TERMINATE => ClientVerdict::Terminate,
            frontend_tag::FUNCTION_CALL => ClientVerdict::Reject(ClientError::fatal(
                SqlState::FEATURE_NOT_SUPPORTED,
                "maskgate does not relay fast-path function calls (FunctionCall messages)",
            )),
            other => ClientVerdict::Reject(invalid_type(other)),
        }
    }

    /// Ends the session if the account may no longer be used, and follows a policy
    /// change to the account's new rules.
    fn check_account(&mut self) -> Result<(), ClientError> {
        let Some(guard) = self.account.as_mut() else {
            return Ok(());
        };
        guard.check()?;
        match self.rules.as_mut() {
            Some(rules) => rules.follow(guard.policy(), guard.login()),
            None => Ok(()),
        }
    }

    /// Called for each complete server message, in order, before it is forwarded.
    #[inline]
    pub fn server_message(&mut self, tag: u8, body: &[u8], out: &mut BytesMut) -> ServerVerdict {
        if tag == backend_tag::ERROR_RESPONSE {
            if let Some(state) = fields::sqlstate(body) {
                self.metrics.error(state);
            }
            if upstream::is_fatal(body) {
                // The server closes the connection after it; nothing more is answered.
                self.server_fatal = true;
                return match &self.rules {
                    Some(rules) => rules.fatal(body, out),
                    None => ServerVerdict::Forward,
                };
            }
        }
        let step = match self.pipeline.server(tag, body) {
            Ok(step) => step,
            Err(desync) => return ServerVerdict::Close(desync_error(desync)),
        };
        if tag == backend_tag::COMMAND_COMPLETE && self.pipeline.resources.over_cap() {
            // Several PREPAREs in one Query went past the cap: the session ends, and
            // its connection with the backend's memory.
            let mut fatal = self.pipeline.resources.error(Cap::Statements);
            fatal.severity = crate::error::Severity::Fatal;
            return ServerVerdict::Close(fatal);
        }
        if let Step::Ready { sent } = &step {
            self.tx_status = body.first().copied().unwrap_or(b'I');
            self.metrics.observe_statement(sent.elapsed());
        }
        match self.rules.as_mut() {
            Some(rules) => rules.server_message(&mut self.pipeline, step, (tag, body), out),
            None => match step {
                Step::Drop => ServerVerdict::Drop,
                Step::Row => match self.pipeline.count_row(|| Ok(())) {
                    RowVerdict::Forward | RowVerdict::Hold => ServerVerdict::Forward,
                    RowVerdict::Drop => ServerVerdict::Drop,
                },
                _ => ServerVerdict::Forward,
            },
        }
    }

    /// Between transactions with nothing in flight: the session may be ended or
    /// its upstream connection reused without losing anything.
    pub fn is_idle(&self) -> bool {
        self.pipeline.is_idle() && !self.unsynced && self.tx_status == b'I'
    }

    /// Every message sent upstream has been answered.
    pub fn answered(&self) -> bool {
        self.pipeline.is_idle()
    }

    /// Statements sent and not yet answered.
    pub fn in_flight(&self) -> bool {
        !self.pipeline.is_idle() || self.unsynced
    }

    pub fn server_sent_fatal(&self) -> bool {
        self.server_fatal
    }

    /// Strict audit mode: `Pending` while a statement's record is not yet durable;
    /// the server's answers are not read until it is.
    pub fn poll_durable(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), ClientError>> {
        match self.rules.as_mut() {
            Some(rules) => rules.poll_durable(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
}

/// However the session ends, its statements still unanswered get their records.
impl Drop for Intercept<'_> {
    fn drop(&mut self) {
        if let Some(rules) = self.rules.as_mut() {
            rules.interrupted(&mut self.pipeline);
        }
    }
}

fn forward(pipe: &mut Pipeline, kind: OpKind) -> ClientVerdict {
    pipe.push(Op::new(kind));
    ClientVerdict::Forward
}

fn copy_kind(tag: u8) -> OpKind {
    match tag {
        frontend_tag::COPY_DATA => OpKind::CopyData,
        frontend_tag::COPY_DONE => OpKind::CopyDone,
        _ => OpKind::CopyFail,
    }
}

/// The session cannot tell which statement the server is answering: it is closed
/// rather than let counts, checks or denials follow the wrong statement.
fn desync_error(desync: Desync) -> ClientError {
    tracing::error!(
        reason = desync.0,
        "lost track of the server's protocol state"
    );
    ClientError::fatal(
        SqlState::PROTOCOL_VIOLATION,
        format!(
            "maskgate lost track of the protocol state ({}); the session is closed",
            desync.0
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::enforcement::Enforcement;
    use crate::observe::{Events, SessionContext, SessionId};

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
        for tag in *b"12C" {
            assert_eq!(server(&mut i, tag, b""), ServerVerdict::Forward);
        }
        assert!(!i.is_idle(), "the Sync is not answered yet");
        server(&mut i, b'Z', b"I");
        assert!(i.is_idle());
        assert!(!i.in_flight());
        let ServerVerdict::Close(e) = server(&mut i, b'Z', b"I") else {
            panic!("a ReadyForQuery that answers nothing must close the session")
        };
        assert_eq!(e.sqlstate, SqlState::PROTOCOL_VIOLATION);
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
        events: &'m Events,
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
        let session = Arc::new(SessionContext {
            id: SessionId::next(),
            login: "clerk".into(),
            account_name: None,
            roles: Vec::new(),
            client: "127.0.0.1:5000".parse().unwrap(),
            tls: None,
            application_name: None,
            database: "register".into(),
            policy: policy.generation().clone(),
            restricted: true,
            started: std::time::Instant::now(),
            totals: Default::default(),
        });
        Intercept::new(
            events.metrics(),
            None,
            Some(SessionRules::new(enforcement, account, (events, session))),
        )
    }

    #[test]
    fn a_protected_column_arriving_as_stored_stops_the_statement() {
        let events = Events::inline(Arc::new(Metrics::new()));
        let metrics = events.metrics();
        let enforcement = Enforcement::new(Default::default());
        let policy = policy();
        let mut i = restricted_session(&events, &enforcement, &policy);
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
        let events = Events::inline(Arc::new(Metrics::new()));
        let enforcement = Enforcement::new(Default::default());
        let policy = policy();
        let mut i = restricted_session(&events, &enforcement, &policy);
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
        client(&mut i, b'Q', b"SELECT id FROM person\0");
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

    #[test]
    fn a_query_skipped_after_an_extended_error_shifts_no_denial_or_count() {
        let events = Events::inline(Arc::new(Metrics::new()));
        let enforcement = Enforcement::new(Default::default());
        let policy = policy();
        let mut i = restricted_session(&events, &enforcement, &policy);
        let token = enforcement.denial_token().to_owned();
        let syntax_error =
            format!("SERROR\0VERROR\0C42601\0Msyntax error at or near \"{token}\"\0\0");
        let mut out = BytesMut::new();
        // Parse (denied), Bind, Execute, Query (denied), Sync in one batch: the server
        // fails the Parse, skips the rest up to the Sync, and answers once.
        client(&mut i, b'P', b"\0SELECT pg_read_file('x')\0\0\0");
        client(&mut i, b'B', b"\0\0\0\0\0\0\0\0");
        client(&mut i, b'E', b"\0\0\0\0\0");
        client(&mut i, b'Q', b"SELECT pg_read_file('y')\0");
        client(&mut i, b'S', b"");
        assert_eq!(
            i.server_message(b'E', syntax_error.as_bytes(), &mut out),
            ServerVerdict::Replace
        );
        assert!(contains(&out, b"42501"));
        assert_eq!(server(&mut i, b'Z', b"I"), ServerVerdict::Forward);
        assert!(i.is_idle(), "nothing is owed for the skipped Query");

        // The next denial is the next statement's, and its rows are capped at 2.
        client(&mut i, b'Q', b"SELECT pg_read_file('z')\0");
        out.clear();
        assert_eq!(
            i.server_message(b'E', syntax_error.as_bytes(), &mut out),
            ServerVerdict::Replace
        );
        assert!(contains(&out, b"42501") && !contains(&out, token.as_bytes()));
        server(&mut i, b'Z', b"I");
        client(&mut i, b'Q', b"SELECT id FROM person\0");
        let allowed = row_description(&[("id", 16400, 1)]);
        assert_eq!(server(&mut i, b'T', &allowed), ServerVerdict::Forward);
        let row = b"\0\x01\0\0\0\x011";
        let verdicts: Vec<_> = (0..3).map(|_| server(&mut i, b'D', row)).collect();
        assert_eq!(
            verdicts,
            [
                ServerVerdict::Forward,
                ServerVerdict::Forward,
                ServerVerdict::Drop
            ]
        );
    }

    #[test]
    fn reserved_names_are_refused_in_every_extended_message() {
        let events = Events::inline(Arc::new(Metrics::new()));
        let enforcement = Enforcement::new(Default::default());
        let policy = policy();
        let mut i = restricted_session(&events, &enforcement, &policy);
        let token = enforcement.denial_token().to_owned();
        for (tag, body) in [
            (b'B', &b"_maskgate_p\0\0\0\0\0\0\0\0"[..]),
            (b'B', &b"\0_maskgate_0\0\0\0\0\0\0\0"[..]),
            (b'E', &b"_maskgate_p\0\0\0\0\0"[..]),
            (b'D', &b"S_maskgate_0\0"[..]),
            (b'D', &b"P_maskgate_p\0"[..]),
            (b'C', &b"S_maskgate_0\0"[..]),
        ] {
            let mut out = BytesMut::new();
            assert_eq!(
                i.client_message(tag, body, &mut out),
                ClientVerdict::Replace
            );
            assert_eq!(out[0], b'P', "a failing Parse goes in its place");
            assert!(contains(&out, token.as_bytes()));
        }
    }

    #[test]
    fn a_restricted_statement_never_goes_upstream_as_the_client_sent_it() {
        const WORDS: &[&str] = &[
            "SELECT",
            "*",
            "id",
            "citizen_id",
            "FROM",
            "person",
            "p",
            "WHERE",
            "=",
            "'x'",
            "$1",
            "(",
            ")",
            ",",
            ";",
            "UNION",
            "COPY",
            "STDIN",
            "--",
            "/*",
            "*/",
            "\"",
            "BEGIN",
            "SET",
            "ROLE",
            "pg_read_file",
            "OFFSET",
            "0",
            "DECLARE",
            "c",
            "CURSOR",
            "FOR",
        ];
        let events = Events::inline(Arc::new(Metrics::new()));
        let enforcement = Enforcement::new(Default::default());
        let policy = policy();
        let mut i = restricted_session(&events, &enforcement, &policy);
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut out = BytesMut::new();
        for _ in 0..2_000 {
            let mut sql = String::new();
            for _ in 0..(seed % 12) {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                sql.push_str(WORDS[(seed >> 33) as usize % WORDS.len()]);
                sql.push(' ');
            }
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let query = format!("{sql}\0");
            let parse = format!("s\0{sql}\0\0\0");
            for (tag, body) in [(b'Q', query.as_bytes()), (b'P', parse.as_bytes())] {
                out.clear();
                // Replace means maskgate's own serialization (or the denial token) goes
                // upstream in place of the message.
                let verdict = i.client_message(tag, body, &mut out);
                assert_eq!(verdict, ClientVerdict::Replace, "{sql}");
                assert!(!out.is_empty());
            }
        }
    }
}
