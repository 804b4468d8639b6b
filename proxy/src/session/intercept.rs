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

use std::collections::VecDeque;
use std::time::Instant;

use bytes::BytesMut;

use super::account_guard::AccountGuard;
use super::rules::SessionRules;
use crate::error::{ClientError, SqlState};
use crate::metrics::Metrics;
use crate::protocol::fields;
use crate::protocol::{backend_tag, frontend_tag};
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
                match self.rules.as_mut() {
                    Some(rules) => {
                        let verdict = rules.query(self.metrics, body, out);
                        rules.sync_point();
                        verdict
                    }
                    None => ClientVerdict::Forward,
                }
            }
            frontend_tag::SYNC => {
                self.unsynced = false;
                self.sync_points.push_back(Instant::now());
                if let Some(rules) = self.rules.as_mut() {
                    rules.sync_point();
                }
                ClientVerdict::Forward
            }
            frontend_tag::EXECUTE => {
                self.unsynced = true;
                self.metrics.statement();
                match self.rules.as_mut() {
                    Some(rules) => rules.execute(self.metrics, body, out),
                    None => ClientVerdict::Forward,
                }
            }
            frontend_tag::PARSE => {
                self.unsynced = true;
                match self.rules.as_mut() {
                    Some(rules) => rules.parse(self.metrics, body, out),
                    None => ClientVerdict::Forward,
                }
            }
            frontend_tag::BIND => {
                self.unsynced = true;
                match self.rules.as_mut() {
                    Some(rules) => rules.bind(body, out),
                    None => ClientVerdict::Forward,
                }
            }
            frontend_tag::DESCRIBE => {
                self.unsynced = true;
                match &self.rules {
                    Some(rules) => rules.describe(body, out),
                    None => ClientVerdict::Forward,
                }
            }
            frontend_tag::CLOSE => {
                self.unsynced = true;
                if let Some(rules) = self.rules.as_mut() {
                    rules.close(body);
                }
                ClientVerdict::Forward
            }
            frontend_tag::FLUSH => {
                self.unsynced = true;
                ClientVerdict::Forward
            }
            frontend_tag::COPY_DATA | frontend_tag::COPY_DONE | frontend_tag::COPY_FAIL => {
                match self.rules.as_mut() {
                    Some(rules) => rules.copy_message(self.metrics, tag, body, out),
                    None => ClientVerdict::Forward,
                }
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
        match self.rules.as_mut() {
            Some(rules) => rules.follow(guard.policy(), guard.login()),
            None => Ok(()),
        }
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

fn describe_tag(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", tag as char)
    } else {
        format!("{tag:#04x}")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::enforcement::Enforcement;

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
        let metrics = Metrics::new();
        let enforcement = Enforcement::new(Default::default());
        let policy = policy();
        let mut i = restricted_session(&metrics, &enforcement, &policy);
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
