//! What a session holds upstream: its named prepared statements and portals.
//!
//! Each one costs memory in the PostgreSQL backend (100,000 prepared statements
//! grew one to 1.7 GB; 600 copies of one 500 KB statement grew one to 927 MB), and
//! the backend keeps that memory after `DISCARD ALL`. A session may hold at most
//! `max_prepared_statements` statements, `max_prepared_statement_bytes` bytes of
//! their texts, and `max_portals` portals; the counts follow the server's
//! confirmations (ParseComplete, BindComplete, CloseComplete, command tags), with
//! the messages still unanswered counted too, so pipelining cannot overshoot them.
//! SQL `PREPARE` and `DEALLOCATE` are followed by name (see [`super::sql_names`]),
//! so a driver that evicts its statements with SQL `DEALLOCATE` frees them. The
//! most statements held at once is kept for the pool, which closes a connection
//! whose backend grew past its bound.
//!
//! Not counted: cursors (`DECLARE`, which live in their transaction unless WITH
//! HOLD).

use std::collections::{HashMap, HashSet};

use super::sql_names::SqlNameOp;
use crate::config::SessionLimits;
use crate::error::{ClientError, SqlState};

#[derive(Debug, Default)]
pub struct Resources {
    limits: SessionLimits,
    /// Named statements the server confirmed (protocol-level, or SQL `PREPARE`d
    /// under a name read from its text), with the bytes of their text.
    statements: HashMap<Box<str>, usize>,
    /// Statements made by SQL `PREPARE` whose name could not be read.
    sql_unnamed: usize,
    /// Bytes of the texts of `statements`.
    bytes: usize,
    portals: HashSet<Box<str>>,
    /// Held statements and portals a Close was sent for: free for the messages
    /// behind it, as the server closes them first.
    closing_statements: HashSet<Box<str>>,
    closing_portals: HashSet<Box<str>>,
    /// Named Parse and Bind messages sent and not answered yet, and the bytes of
    /// the statements' texts.
    pending_statements: usize,
    pending_bytes: usize,
    pending_portals: usize,
    high_water: usize,
    /// Statements the server dropped since [`Resources::take_dropped`].
    dropped: Vec<Dropped>,
}

/// A statement the server dropped, for the copies the session keeps of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    Name(Box<str>),
    All,
    /// By a `DEALLOCATE` whose name could not be read.
    Unknown,
}

/// Which cap a message would go past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Statements,
    StatementBytes,
    Portals,
}

impl Cap {
    /// The `limit` label of `maskgate_session_limit_reached_total`.
    pub fn label(self) -> &'static str {
        match self {
            Cap::Statements => "prepared_statements",
            Cap::StatementBytes => "prepared_statement_bytes",
            Cap::Portals => "portals",
        }
    }
}

impl Resources {
    pub fn new(limits: SessionLimits) -> Self {
        Resources {
            limits,
            ..Resources::default()
        }
    }

    fn statements_held(&self) -> usize {
        self.statements.len() + self.sql_unnamed
    }

    /// Held, less those being closed; and their bytes.
    fn kept(&self) -> (usize, usize) {
        let closing: usize = self
            .closing_statements
            .iter()
            .filter_map(|name| self.statements.get(name))
            .sum();
        (
            self.statements_held() - self.closing_statements.len(),
            self.bytes - closing,
        )
    }

    /// Whether a Parse of `name` with a text `bytes` long may be sent. A name
    /// already in use may: the server refuses it itself.
    pub fn may_parse(&self, name: &str, bytes: usize) -> Result<(), Cap> {
        if name.is_empty() || self.statements.contains_key(name) {
            return Ok(());
        }
        self.check_statements(bytes)
    }

    /// Whether a statement `bytes` long may be prepared (a Parse of a new name, an
    /// SQL PREPARE).
    pub fn check_statements(&self, bytes: usize) -> Result<(), Cap> {
        let (count, held) = self.kept();
        if count + self.pending_statements >= self.limits.max_prepared_statements {
            return Err(Cap::Statements);
        }
        if held + self.pending_bytes + bytes > self.limits.max_prepared_bytes {
            return Err(Cap::StatementBytes);
        }
        Ok(())
    }

    /// Whether a Bind to portal `name` may be sent.
    pub fn may_bind(&self, name: &str) -> Result<(), Cap> {
        if name.is_empty() || self.portals.contains(name) {
            return Ok(());
        }
        if self.portals.len() - self.closing_portals.len() + self.pending_portals
            >= self.limits.max_portals
        {
            return Err(Cap::Portals);
        }
        Ok(())
    }

    /// A named Parse of a text `bytes` long was sent.
    pub fn sent_statement(&mut self, bytes: usize) {
        self.pending_statements += 1;
        self.pending_bytes += bytes;
    }

    /// A named Bind was sent.
    pub fn sent_portal(&mut self) {
        self.pending_portals += 1;
    }

    /// A named Parse was answered (`created` when it succeeded) or skipped.
    pub fn answered_statement(&mut self, name: &str, bytes: usize, created: bool) {
        self.pending_statements = self.pending_statements.saturating_sub(1);
        self.pending_bytes = self.pending_bytes.saturating_sub(bytes);
        if created {
            self.hold(name.into(), bytes);
        }
    }

    /// A named Bind was answered (`created` when it succeeded) or skipped.
    pub fn answered_portal(&mut self, name: &str, created: bool) {
        self.pending_portals = self.pending_portals.saturating_sub(1);
        if created {
            self.portals.insert(name.into());
        }
    }

    fn hold(&mut self, name: Box<str>, bytes: usize) {
        if let Some(old) = self.statements.insert(name, bytes) {
            self.bytes -= old;
        }
        self.bytes += bytes;
        self.high_water = self.high_water.max(self.statements_held());
    }

    fn drop_statement(&mut self, name: &str) -> bool {
        self.closing_statements.remove(name);
        match self.statements.remove(name) {
            Some(bytes) => {
                self.bytes -= bytes;
                self.dropped.push(Dropped::Name(name.into()));
                true
            }
            None => false,
        }
    }

    fn drop_all_statements(&mut self) {
        self.statements.clear();
        self.closing_statements.clear();
        self.sql_unnamed = 0;
        self.bytes = 0;
        self.dropped.push(Dropped::All);
    }

    /// A Close of a statement (`S`) or portal (`P`) was sent.
    pub fn closing(&mut self, kind: u8, name: &str) {
        match kind {
            b'S' if self.statements.contains_key(name) => {
                self.closing_statements.insert(name.into());
            }
            b'P' if self.portals.contains(name) => {
                self.closing_portals.insert(name.into());
            }
            _ => {}
        }
    }

    /// A Close completed (`done`), or was skipped after an error.
    pub fn closed(&mut self, kind: u8, name: &str, done: bool) {
        match kind {
            b'S' if done => {
                self.drop_statement(name);
            }
            b'S' => {
                self.closing_statements.remove(name);
            }
            b'P' => {
                self.closing_portals.remove(name);
                if done {
                    self.portals.remove(name);
                }
            }
            _ => {}
        }
    }

    /// A command completed with `tag` (without its NUL); `op` is what its text
    /// said it would do to the prepared statements, when it was read.
    pub fn command(&mut self, tag: &[u8], op: Option<SqlNameOp>) {
        match (tag, op) {
            (b"PREPARE", Some(SqlNameOp::Prepare { name, bytes })) => self.hold(name.into(), bytes),
            (b"PREPARE", _) => {
                self.sql_unnamed += 1;
                self.high_water = self.high_water.max(self.statements_held());
            }
            (b"DEALLOCATE", Some(SqlNameOp::Deallocate(name))) if !self.drop_statement(&name) => {
                // Not one it knew by name (maskgate's own, or one whose PREPARE
                // could not be read).
                self.sql_unnamed = self.sql_unnamed.saturating_sub(1);
                self.dropped.push(Dropped::Name(name.into()));
            }
            (b"DEALLOCATE", Some(SqlNameOp::Deallocate(_))) => {}
            (b"DEALLOCATE", _) => {
                self.sql_unnamed = self.sql_unnamed.saturating_sub(1);
                self.dropped.push(Dropped::Unknown);
            }
            (b"DEALLOCATE ALL", _) => self.drop_all_statements(),
            (b"DISCARD ALL", _) => {
                self.drop_all_statements();
                self.transaction_ended();
            }
            _ => {}
        }
    }

    /// Statements the server dropped since the last call, for the copies the
    /// session keeps of them.
    pub fn take_dropped(&mut self) -> Vec<Dropped> {
        std::mem::take(&mut self.dropped)
    }

    /// Whether [`Resources::take_dropped`] has anything.
    pub fn has_dropped(&self) -> bool {
        !self.dropped.is_empty()
    }

    /// The transaction ended: its portals are gone.
    pub fn transaction_ended(&mut self) {
        self.portals.clear();
        self.closing_portals.clear();
    }

    /// Statements held beyond the cap: a batch the proxy could not check ahead
    /// (several PREPAREs in one Query) went past it. (Their bytes may go a little
    /// past theirs, as a rewrite is longer than the text checked: the next
    /// statements are refused.)
    pub fn over_cap(&self) -> bool {
        self.statements_held() > self.limits.max_prepared_statements
    }

    /// The most statements held at once.
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// The error for a message that would go past `cap`.
    pub fn error(&self, cap: Cap) -> ClientError {
        let free = "deallocate statements the session no longer uses (Close, DEALLOCATE)";
        let (message, free, setting) = match cap {
            Cap::Statements => (
                format!(
                    "this session holds its maximum of {} prepared statements",
                    self.limits.max_prepared_statements
                ),
                free,
                "max_prepared_statements",
            ),
            Cap::StatementBytes => (
                format!(
                    "this session's prepared statements would hold more than their maximum of \
                     {} bytes of statement text",
                    self.limits.max_prepared_bytes
                ),
                free,
                "max_prepared_statement_bytes",
            ),
            Cap::Portals => (
                format!(
                    "this session holds its maximum of {} portals",
                    self.limits.max_portals
                ),
                "close portals the session no longer uses, or end the transaction",
                "max_portals",
            ),
        };
        ClientError::error(SqlState::OUT_OF_MEMORY, message)
            .with_hint(format!("{free}, or raise [server] {setting}"))
    }
}

/// Whether a simple Query's text prepares a statement (`PREPARE name AS …`).
pub fn prepares(sql: &[u8]) -> bool {
    let start = sql
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(sql.len());
    sql[start..].get(..8).is_some_and(|head| {
        head[..7].eq_ignore_ascii_case(b"PREPARE")
            && !head[7].is_ascii_alphanumeric()
            && head[7] != b'_'
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(n: usize) -> Resources {
        Resources::new(SessionLimits {
            max_prepared_statements: n,
            max_portals: n,
            ..SessionLimits::default()
        })
    }

    fn prepare(name: &str, bytes: usize) -> Option<SqlNameOp> {
        Some(SqlNameOp::Prepare {
            name: name.into(),
            bytes,
        })
    }

    #[test]
    fn statements_are_counted_as_confirmed_and_while_unanswered() {
        let mut r = limits(2);
        assert!(r.may_parse("a", 10).is_ok());
        r.sent_statement(10);
        assert!(r.may_parse("b", 10).is_ok());
        r.sent_statement(10);
        assert_eq!(r.may_parse("c", 10), Err(Cap::Statements));
        assert!(r.may_parse("", 10).is_ok(), "the unnamed statement is free");
        r.answered_statement("a", 10, true);
        r.answered_statement("b", 10, false);
        assert!(r.may_parse("c", 10).is_ok());
        assert!(
            r.may_parse("a", 10).is_ok(),
            "a name in use: the server refuses it"
        );
        r.sent_statement(10);
        r.answered_statement("c", 10, true);
        assert_eq!(r.may_parse("d", 10), Err(Cap::Statements));
        // A Close sent frees its statement for the messages behind it, unless it
        // is skipped after an error.
        r.closing(b'S', "a");
        assert!(r.may_parse("d", 10).is_ok());
        r.closed(b'S', "a", false);
        assert_eq!(r.may_parse("d", 10), Err(Cap::Statements));
        r.closing(b'S', "a");
        r.closed(b'S', "a", true);
        assert!(r.may_parse("d", 10).is_ok());
        r.closing(b'S', "never-prepared");
        assert!(r.may_parse("e", 10).is_ok());
        assert_eq!(r.high_water(), 2);
        assert_eq!(r.take_dropped(), [Dropped::Name("a".into())]);
    }

    #[test]
    fn sql_prepare_and_deallocate_are_followed_by_name() {
        let mut r = limits(2);
        r.command(b"PREPARE", prepare("p", 10));
        r.sent_statement(10);
        r.answered_statement("a1", 10, true);
        assert_eq!(r.check_statements(10), Err(Cap::Statements));
        // psycopg and ActiveRecord evict protocol-level statements with SQL DEALLOCATE.
        r.command(b"DEALLOCATE", Some(SqlNameOp::Deallocate("a1".into())));
        assert!(r.check_statements(10).is_ok());
        r.command(b"DEALLOCATE", Some(SqlNameOp::Deallocate("p".into())));
        assert_eq!(r.statements_held(), 0);
        // A PREPARE whose name was not read is counted, and freed by a DEALLOCATE
        // of a name the session does not know.
        r.command(b"PREPARE", None);
        r.command(b"PREPARE", prepare("q", 10));
        r.command(b"PREPARE", None);
        assert!(r.over_cap());
        r.command(b"DEALLOCATE", Some(SqlNameOp::Deallocate("other".into())));
        assert!(!r.over_cap());
        r.command(b"DISCARD ALL", None);
        assert_eq!(r.statements_held(), 0);
        assert_eq!(r.high_water(), 3);
        let dropped = r.take_dropped();
        assert_eq!(dropped.last(), Some(&Dropped::All));
    }

    #[test]
    fn statement_texts_are_bounded_in_bytes() {
        let mut r = Resources::new(SessionLimits {
            max_prepared_bytes: 1000,
            ..SessionLimits::default()
        });
        r.sent_statement(400);
        r.answered_statement("a", 400, true);
        r.sent_statement(400);
        assert_eq!(r.may_parse("c", 300), Err(Cap::StatementBytes));
        assert!(r.may_parse("c", 200).is_ok());
        r.answered_statement("b", 400, true);
        r.closing(b'S', "a");
        assert!(
            r.may_parse("c", 500).is_ok(),
            "a statement being closed is free"
        );
        r.closed(b'S', "a", true);
        r.command(b"PREPARE", prepare("big", 700));
        assert_eq!(r.check_statements(1), Err(Cap::StatementBytes));
        assert!(r.error(Cap::StatementBytes).message.contains("1000 bytes"));
    }

    #[test]
    fn portals_end_with_their_transaction() {
        let mut r = limits(1);
        r.sent_portal();
        assert_eq!(r.may_bind("p2"), Err(Cap::Portals));
        r.answered_portal("p1", true);
        assert_eq!(r.may_bind("p2"), Err(Cap::Portals));
        r.transaction_ended();
        assert!(r.may_bind("p2").is_ok());
        assert_eq!(r.error(Cap::Portals).sqlstate, SqlState::OUT_OF_MEMORY);
    }

    #[test]
    fn prepare_statements_are_recognized() {
        assert!(prepares(b"  prepare q AS SELECT 1"));
        assert!(prepares(b"PREPARE\tq(int) AS SELECT $1"));
        assert!(!prepares(b"PREPARED"));
        assert!(!prepares(b"SELECT 'PREPARE x'"));
        assert!(!prepares(b"PREPAR"));
    }
}
