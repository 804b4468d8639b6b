//! Counts and names the server has confirmed, kept across statements.

use std::collections::HashMap;

use maskgate_sql::Motion;

use super::cursors::Cursor;
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
        self.portal_motions.clear();
        self.portal_declares.clear();
    }
}
