//! The one place every message passes on its way through a session.
//!
//! [`Intercept::client_message`] sees each client message before it goes
//! upstream; [`Intercept::server_message`] sees each server message before it
//! reaches the client. Statement accounting lives here today; policy
//! enforcement and audit plug in at the same two calls.

use std::collections::VecDeque;
use std::time::Instant;

use super::account_guard::AccountGuard;
use crate::error::{ClientError, SqlState};
use crate::metrics::Metrics;
use crate::protocol::fields::{self, Fields};
use crate::protocol::{backend_tag, frontend_tag};
use crate::upstream;

/// What to do with a client message.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientVerdict {
    Forward,
    /// The client said goodbye; nothing more is read from it.
    Terminate,
    /// The message is refused and the connection closed with this error.
    Reject(ClientError),
}

/// Per-session protocol state tracked from the messages that pass.
pub struct Intercept<'m> {
    metrics: &'m Metrics,
    /// `None` in unit tests of the protocol bookkeeping.
    account: Option<AccountGuard<'m>>,
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
    pub fn new(metrics: &'m Metrics, account: Option<AccountGuard<'m>>) -> Self {
        Self {
            metrics,
            account,
            sync_points: VecDeque::new(),
            unsynced: false,
            tx_status: b'I',
            server_fatal: false,
        }
    }

    /// Called for each complete client message, in order, before it is forwarded.
    #[inline]
    pub fn client_message(&mut self, tag: u8, body: &[u8]) -> ClientVerdict {
        // Execute too: a driver that prepared its statements before the account
        // was disabled would otherwise go on running them.
        if matches!(
            tag,
            frontend_tag::QUERY | frontend_tag::PARSE | frontend_tag::EXECUTE
        ) {
            if let Some(Err(e)) = self.account.as_mut().map(AccountGuard::check) {
                self.metrics.session_ended_by_policy();
                return ClientVerdict::Reject(e);
            }
        }
        match tag {
            frontend_tag::QUERY => {
                self.metrics.statement();
                self.sync_points.push_back(Instant::now());
                if tracing::enabled!(tracing::Level::DEBUG) {
                    if let Ok(sql) = Fields::new(body, "Query").str() {
                        tracing::debug!(statement = %maskgate_sql::fingerprint(sql), "query");
                    }
                }
                ClientVerdict::Forward
            }
            frontend_tag::SYNC => {
                self.unsynced = false;
                self.sync_points.push_back(Instant::now());
                ClientVerdict::Forward
            }
            frontend_tag::EXECUTE => {
                self.unsynced = true;
                self.metrics.statement();
                ClientVerdict::Forward
            }
            frontend_tag::PARSE => {
                self.unsynced = true;
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let mut f = Fields::new(body, "Parse");
                    if let (Ok(_), Ok(sql)) = (f.cstr(), f.str()) {
                        tracing::debug!(statement = %maskgate_sql::fingerprint(sql), "parse");
                    }
                }
                ClientVerdict::Forward
            }
            frontend_tag::BIND
            | frontend_tag::DESCRIBE
            | frontend_tag::CLOSE
            | frontend_tag::FLUSH => {
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

    /// Called for each complete server message, in order, before it is forwarded.
    #[inline]
    pub fn server_message(&mut self, tag: u8, body: &[u8]) {
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
    use super::*;

    #[test]
    fn relays_the_protocol_and_refuses_the_rest() {
        let metrics = Metrics::new();
        let mut i = Intercept::new(&metrics, None);
        for tag in *b"QPBDECHSdcf" {
            assert_eq!(
                i.client_message(tag, b"x\0"),
                ClientVerdict::Forward,
                "{tag}"
            );
        }
        assert_eq!(i.client_message(b'X', b""), ClientVerdict::Terminate);
        let ClientVerdict::Reject(e) = i.client_message(b'F', b"") else {
            panic!("FunctionCall must be refused")
        };
        assert_eq!(e.sqlstate, SqlState::FEATURE_NOT_SUPPORTED);
        let ClientVerdict::Reject(e) = i.client_message(0x01, b"") else {
            panic!("unknown messages must be refused")
        };
        assert_eq!(e.sqlstate, SqlState::PROTOCOL_VIOLATION);
        assert!(e.message.contains("0x01"));
    }

    #[test]
    fn tracks_sync_points_and_transaction_status() {
        let metrics = Metrics::new();
        let mut i = Intercept::new(&metrics, None);
        assert!(i.is_idle());
        i.client_message(b'Q', b"BEGIN\0");
        assert!(!i.is_idle());
        i.server_message(b'Z', b"T");
        assert!(!i.is_idle(), "inside a transaction block");
        i.client_message(b'S', b"");
        i.server_message(b'Z', b"I");
        assert!(i.is_idle());
    }

    #[test]
    fn extended_messages_are_in_flight_until_the_sync_is_answered() {
        let metrics = Metrics::new();
        let mut i = Intercept::new(&metrics, None);
        for tag in *b"PBEH" {
            i.client_message(tag, b"\0\0\0\0");
        }
        assert!(!i.is_idle(), "Execute + Flush may still be running");
        assert!(i.in_flight());
        i.client_message(b'S', b"");
        assert!(!i.is_idle());
        i.server_message(b'Z', b"I");
        assert!(i.is_idle());
        assert!(!i.in_flight());
    }

    #[test]
    fn notices_fatal_errors() {
        let metrics = Metrics::new();
        let mut i = Intercept::new(&metrics, None);
        i.server_message(b'E', b"SERROR\0VERROR\0C42P01\0Mx\0\0");
        assert!(!i.server_sent_fatal());
        i.server_message(b'E', b"SFATAL\0VFATAL\0C57P01\0Mx\0\0");
        assert!(i.server_sent_fatal());
    }
}
