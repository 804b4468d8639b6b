//! What a session holds upstream: its named prepared statements and portals.
//!
//! Each one costs memory in the PostgreSQL backend (100,000 prepared statements
//! grew one to 1.7 GB), and the backend keeps that memory after `DISCARD ALL`.
//! A session may hold at most `max_prepared_statements` and `max_portals`; the
//! counts follow the server's confirmations (ParseComplete, BindComplete,
//! CloseComplete, command tags), with the messages still unanswered counted too,
//! so pipelining cannot overshoot them. The most statements held at once is kept
//! for the pool, which closes a connection whose backend grew past its bound.
//!
//! Not counted: cursors (`DECLARE`, which live in their transaction unless WITH
//! HOLD). A statement deallocated by SQL name (`DEALLOCATE name`) that was prepared
//! through the protocol is still counted until the session ends or runs
//! `DEALLOCATE ALL` / `DISCARD ALL` (the command tag does not say which one went).

use std::collections::HashSet;

use crate::config::SessionLimits;
use crate::error::{ClientError, SqlState};

#[derive(Debug, Default)]
pub struct Resources {
    limits: SessionLimits,
    /// Protocol-level named statements the server confirmed.
    statements: HashSet<Box<str>>,
    /// Statements made by SQL `PREPARE` (their names are not tracked).
    sql_prepared: usize,
    portals: HashSet<Box<str>>,
    /// Held statements and portals a Close was sent for: free for the messages
    /// behind it, as the server closes them first.
    closing_statements: HashSet<Box<str>>,
    closing_portals: HashSet<Box<str>>,
    /// Named Parse and Bind messages sent and not answered yet.
    pending_statements: usize,
    pending_portals: usize,
    high_water: usize,
}

/// Which cap a message would go past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Statements,
    Portals,
}

impl Resources {
    pub fn new(limits: SessionLimits) -> Self {
        Resources {
            limits,
            ..Resources::default()
        }
    }

    fn statements_held(&self) -> usize {
        self.statements.len() + self.sql_prepared
    }

    /// Held, less those being closed.
    fn statements_kept(&self) -> usize {
        self.statements_held() - self.closing_statements.len()
    }

    /// Whether a Parse of `name` may be sent. A name already in use may: the server
    /// refuses it itself.
    pub fn may_parse(&self, name: &str) -> Result<(), Cap> {
        if name.is_empty() || self.statements.contains(name) {
            return Ok(());
        }
        self.check_statements()
    }

    /// Whether a statement may be prepared (a Parse of a new name, an SQL PREPARE).
    pub fn check_statements(&self) -> Result<(), Cap> {
        if self.statements_kept() + self.pending_statements >= self.limits.max_prepared_statements {
            return Err(Cap::Statements);
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

    /// A named Parse (`portal` false) or Bind (`portal` true) was sent.
    pub fn sent(&mut self, portal: bool) {
        if portal {
            self.pending_portals += 1;
        } else {
            self.pending_statements += 1;
        }
    }

    /// A named Parse or Bind was answered (`created` when it succeeded) or skipped.
    pub fn answered(&mut self, portal: bool, name: &str, created: bool) {
        if portal {
            self.pending_portals = self.pending_portals.saturating_sub(1);
            if created {
                self.portals.insert(name.into());
            }
        } else {
            self.pending_statements = self.pending_statements.saturating_sub(1);
            if created {
                self.statements.insert(name.into());
                self.high_water = self.high_water.max(self.statements_held());
            }
        }
    }

    /// A Close of a statement (`S`) or portal (`P`) was sent.
    pub fn closing(&mut self, kind: u8, name: &str) {
        match kind {
            b'S' if self.statements.contains(name) => {
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
            b'S' => {
                self.closing_statements.remove(name);
                if done {
                    self.statements.remove(name);
                }
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

    /// A command completed with `tag` (without its NUL).
    pub fn command(&mut self, tag: &[u8]) {
        match tag {
            b"PREPARE" => {
                self.sql_prepared += 1;
                self.high_water = self.high_water.max(self.statements_held());
            }
            b"DEALLOCATE" => self.sql_prepared = self.sql_prepared.saturating_sub(1),
            b"DEALLOCATE ALL" => {
                self.statements.clear();
                self.closing_statements.clear();
                self.sql_prepared = 0;
            }
            b"DISCARD ALL" => {
                self.statements.clear();
                self.closing_statements.clear();
                self.sql_prepared = 0;
                self.transaction_ended();
            }
            _ => {}
        }
    }

    /// The transaction ended: its portals are gone.
    pub fn transaction_ended(&mut self) {
        self.portals.clear();
        self.closing_portals.clear();
    }

    /// Statements held beyond the cap: a batch the proxy could not check ahead
    /// (several PREPAREs in one Query) went past it.
    pub fn over_cap(&self) -> bool {
        self.statements_held() > self.limits.max_prepared_statements
    }

    /// The most statements held at once.
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// The error for a message that would go past `cap`.
    pub fn error(&self, cap: Cap) -> ClientError {
        let (held, what, setting, free) = match cap {
            Cap::Statements => (
                self.limits.max_prepared_statements,
                "prepared statements",
                "max_prepared_statements",
                "deallocate statements the session no longer uses (Close, DEALLOCATE)",
            ),
            Cap::Portals => (
                self.limits.max_portals,
                "portals",
                "max_portals",
                "close portals the session no longer uses, or end the transaction",
            ),
        };
        ClientError::error(
            SqlState::OUT_OF_MEMORY,
            format!("this session holds its maximum of {held} {what}"),
        )
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

    #[test]
    fn statements_are_counted_as_confirmed_and_while_unanswered() {
        let mut r = limits(2);
        assert!(r.may_parse("a").is_ok());
        r.sent(false);
        assert!(r.may_parse("b").is_ok());
        r.sent(false);
        assert_eq!(r.may_parse("c"), Err(Cap::Statements));
        assert!(r.may_parse("").is_ok(), "the unnamed statement is free");
        r.answered(false, "a", true);
        r.answered(false, "b", false);
        assert!(r.may_parse("c").is_ok());
        assert!(
            r.may_parse("a").is_ok(),
            "a name in use: the server refuses it"
        );
        r.sent(false);
        r.answered(false, "c", true);
        assert_eq!(r.may_parse("d"), Err(Cap::Statements));
        // A Close sent frees its statement for the messages behind it, unless it
        // is skipped after an error.
        r.closing(b'S', "a");
        assert!(r.may_parse("d").is_ok());
        r.closed(b'S', "a", false);
        assert_eq!(r.may_parse("d"), Err(Cap::Statements));
        r.closing(b'S', "a");
        r.closed(b'S', "a", true);
        assert!(r.may_parse("d").is_ok());
        r.closing(b'S', "never-prepared");
        assert!(r.may_parse("e").is_ok());
        assert_eq!(r.high_water(), 2);
    }

    #[test]
    fn sql_prepare_and_discard_are_followed() {
        let mut r = limits(2);
        r.command(b"PREPARE");
        r.command(b"PREPARE");
        assert_eq!(r.check_statements(), Err(Cap::Statements));
        r.command(b"DEALLOCATE");
        assert!(r.check_statements().is_ok());
        r.command(b"PREPARE");
        r.command(b"PREPARE");
        assert!(r.over_cap());
        r.command(b"DISCARD ALL");
        assert!(!r.over_cap());
        assert_eq!(r.high_water(), 3);
    }

    #[test]
    fn portals_end_with_their_transaction() {
        let mut r = limits(1);
        r.sent(true);
        assert_eq!(r.may_bind("p2"), Err(Cap::Portals));
        r.answered(true, "p1", true);
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
