//! Counts and names the server has confirmed, kept across statements.

use std::collections::HashMap;

use maskgate_sql::Motion;

use super::cursors::Cursor;
use super::sql_names::SqlNameOp;
use super::{CountKey, FetchOf};

/// Counts and names the server has confirmed, for the statements still to come.
#[derive(Debug, Default)]
pub(super) struct Confirmed {
    pub(super) portal_rows: HashMap<String, u64>,
    pub(super) cursors: HashMap<String, Cursor>,
    pub(super) portal_keys: HashMap<String, CountKey>,
    /// Prepared statements that declare or read a cursor, by name.
    pub(super) fetches: HashMap<String, FetchOf>,
    /// Portals bound to such a statement: what the statement does to the cursor.
    pub(super) portal_motions: HashMap<String, Option<Motion>>,
    /// Portals bound to a prepared DECLARE: the cursor it declares.
    pub(super) portal_declares: HashMap<String, String>,
    /// Prepared statements (by name) and portals whose text prepares or drops a
    /// statement by SQL, and what it does.
    statement_names: HashMap<String, SqlNameOp>,
    portal_names: HashMap<String, SqlNameOp>,
}

impl Confirmed {
    pub(super) fn before(&self, key: &CountKey) -> u64 {
        match key {
            CountKey::Statement => 0,
            CountKey::Portal(p) => self.portal_rows.get(p).copied().unwrap_or(0),
            CountKey::Cursor(c) => self.cursors.get(c).map_or(0, |c| c.sent),
        }
    }

    /// What an Execute of `portal` counts against. A named portal this session never
    /// bound can only be a SQL cursor: PostgreSQL keeps cursors and protocol portals
    /// in one namespace, so Execute reads a `DECLARE`d cursor directly, and its rows
    /// count with the cursor's FETCHes.
    pub(super) fn portal_key(&self, portal: &str) -> CountKey {
        match self.portal_keys.get(portal) {
            Some(key) => key.clone(),
            None if portal.is_empty() => CountKey::Portal(String::new()),
            None => CountKey::Cursor(portal.to_owned()),
        }
    }

    /// What an Execute of `portal` for `max_rows` rows (0: all) does to the cursor
    /// it reads: a bound FETCH's motion, run whole (a FETCH executed a few rows at a
    /// time cannot be placed: `None`), or the cursor itself read forward.
    pub(super) fn execute_motion(&self, portal: &str, max_rows: u32) -> Option<Motion> {
        match self.portal_motions.get(portal) {
            Some(motion) => motion.filter(|_| max_rows == 0),
            None => Some(Motion::Step {
                forward: true,
                count: (max_rows > 0).then_some(u64::from(max_rows)),
            }),
        }
    }

    /// The transaction ended, and with it every protocol portal: their counts go.
    /// (Cursors declared WITH HOLD outlive it; their counts stay.)
    pub(super) fn transaction_ended(&mut self) {
        self.portal_rows.clear();
        self.portal_keys.clear();
        self.portal_names.clear();
        self.portal_motions.clear();
        self.portal_declares.clear();
    }

    /// The server confirmed a Parse of statement `name`.
    pub(super) fn prepared(
        &mut self,
        name: &str,
        fetch_cursor: Option<FetchOf>,
        names: Option<SqlNameOp>,
    ) {
        match fetch_cursor {
            Some(fetch) => self.fetches.insert(name.to_owned(), fetch),
            None => self.fetches.remove(name),
        };
        match names {
            Some(op) => self.statement_names.insert(name.to_owned(), op),
            None => self.statement_names.remove(name),
        };
    }

    /// The server confirmed a Bind of `portal` to `statement`.
    pub(super) fn bound(&mut self, portal: String, statement: &str) {
        self.portal_motions.remove(&portal);
        self.portal_declares.remove(&portal);
        let key = match self.fetches.get(statement).cloned() {
            Some(fetch) if fetch.declares => {
                self.portal_declares.insert(portal.clone(), fetch.cursor);
                CountKey::Portal(portal.clone())
            }
            Some(fetch) => {
                self.portal_motions.insert(portal.clone(), fetch.motion);
                CountKey::Cursor(fetch.cursor)
            }
            None => CountKey::Portal(portal.clone()),
        };
        match self.statement_names.get(statement) {
            Some(op) => self.portal_names.insert(portal.clone(), op.clone()),
            None => self.portal_names.remove(&portal),
        };
        self.portal_rows.remove(&portal);
        self.portal_keys.insert(portal, key);
    }

    /// What an Execute of `portal` does to the prepared statements by SQL.
    pub(super) fn names_of(&self, portal: &str) -> Option<SqlNameOp> {
        self.portal_names.get(portal).cloned()
    }
}
