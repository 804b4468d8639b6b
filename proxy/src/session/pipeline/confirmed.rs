//! Counts and names the server has confirmed, kept across statements.

use std::collections::HashMap;

use super::CountKey;

/// Counts and names the server has confirmed, for the statements still to come.
#[derive(Debug, Default)]
pub(super) struct Confirmed {
    pub(super) portal_rows: HashMap<String, u64>,
    pub(super) cursor_rows: HashMap<String, u64>,
    pub(super) portal_keys: HashMap<String, CountKey>,
    /// Prepared statements that FETCH from a cursor, by statement name.
    pub(super) fetches: HashMap<String, String>,
}

impl Confirmed {
    pub(super) fn before(&self, key: &CountKey) -> u64 {
        match key {
            CountKey::Statement => 0,
            CountKey::Portal(p) => self.portal_rows.get(p).copied().unwrap_or(0),
            CountKey::Cursor(c) => self.cursor_rows.get(c).copied().unwrap_or(0),
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

    /// The transaction ended, and with it every protocol portal: their counts go.
    /// (Cursors declared WITH HOLD outlive it; their counts stay.)
    pub(super) fn transaction_ended(&mut self) {
        self.portal_rows.clear();
        self.portal_keys.clear();
    }
}
