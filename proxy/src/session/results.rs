//! Which statement each result message answers, and how many rows it has sent.
//!
//! The server answers in order: every statement of a simple Query and every
//! Execute ends with exactly one CommandComplete, EmptyQueryResponse,
//! PortalSuspended or ErrorResponse, unless an earlier error made the server skip
//! to the next Sync. So the session keeps a queue of what it is owed, with sync
//! points between batches, and pairs DataRows with the statement at its front.
//!
//! Rows are counted against the cap where the client can page: per portal across
//! Executes with a row limit (until the portal is bound again) and per cursor across
//! FETCHes (until it is declared again).

use std::collections::{HashMap, VecDeque};

/// The limit a statement runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The roles' max_rows per statement (counted across the portal or cursor).
    PerStatement(u64),
    /// What is left of the hourly row quota when the statement started.
    Hourly(u64),
}

/// Where a statement's rows add up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountKey {
    /// Only this statement's rows.
    Statement,
    Portal(String),
    Cursor(String),
}

#[derive(Debug)]
struct Expected {
    key: CountKey,
    rows: u64,
    cap: Option<u64>,
    hourly: Option<u64>,
    exceeded: Option<Limit>,
    /// An unparsed simple Query of an unrestricted account: several result sets,
    /// each counted alone, and it ends only at its sync point.
    whole_query: bool,
}

#[derive(Debug)]
enum Entry {
    Statement(Expected),
    Sync,
}

/// What to do with a DataRow.
#[derive(Debug, PartialEq, Eq)]
pub enum RowVerdict {
    Forward,
    /// Over the limit: never forwarded.
    Drop,
}

/// How a statement ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Completion {
    /// Rows forwarded, to charge to the hourly quota.
    Done { rows: u64 },
    /// The limit was reached and rows were held back; `more_pending` tells whether
    /// statements after it were sent before the next sync point (they ran).
    Exceeded {
        limit: Limit,
        rows: u64,
        more_pending: bool,
    },
}

#[derive(Debug, Default)]
pub struct Results {
    queue: VecDeque<Entry>,
    portal_rows: HashMap<String, u64>,
    cursor_rows: HashMap<String, u64>,
    /// What each bound portal counts against.
    portal_keys: HashMap<String, CountKey>,
    /// Prepared statements that FETCH from a cursor, by statement name.
    fetches: HashMap<String, String>,
}

impl Results {
    /// A statement whose result comes next (after those already queued).
    pub fn expect(
        &mut self,
        key: CountKey,
        cap: Option<u64>,
        hourly: Option<u64>,
        whole_query: bool,
    ) {
        self.queue.push_back(Entry::Statement(Expected {
            key,
            rows: 0,
            cap,
            hourly,
            exceeded: None,
            whole_query,
        }));
    }

    /// A Sync, or the end of a simple Query: answered by ReadyForQuery.
    pub fn sync_point(&mut self) {
        self.queue.push_back(Entry::Sync);
    }

    /// A DECLARE starts the cursor's count again.
    pub fn declare_cursor(&mut self, name: &str) {
        self.cursor_rows.remove(name);
    }

    /// A prepared statement (Parse) that FETCHes from `cursor`, or `None` for any other.
    pub fn prepared(&mut self, statement: &[u8], cursor: Option<&str>) {
        let name = String::from_utf8_lossy(statement);
        match cursor {
            Some(cursor) => {
                self.fetches.insert(name.into_owned(), cursor.to_owned());
            }
            None => {
                self.fetches.remove(name.as_ref());
            }
        }
    }

    /// A Bind: the portal's count starts again.
    pub fn bound(&mut self, portal: &[u8], statement: &[u8]) {
        let portal = String::from_utf8_lossy(portal).into_owned();
        let statement = String::from_utf8_lossy(statement);
        let key = match self.fetches.get(statement.as_ref()) {
            Some(cursor) => CountKey::Cursor(cursor.clone()),
            None => CountKey::Portal(portal.clone()),
        };
        self.portal_rows.remove(&portal);
        self.portal_keys.insert(portal, key);
    }

    /// What an Execute of `portal` counts against.
    pub fn portal_key(&self, portal: &[u8]) -> CountKey {
        let portal = String::from_utf8_lossy(portal);
        self.portal_keys
            .get(portal.as_ref())
            .cloned()
            .unwrap_or_else(|| CountKey::Portal(portal.into_owned()))
    }

    fn current(&mut self) -> Option<&mut Expected> {
        match self.queue.front_mut() {
            Some(Entry::Statement(expected)) => Some(expected),
            _ => None,
        }
    }

    /// A RowDescription: a new result set of an unparsed query.
    pub fn row_description(&mut self) {
        if let Some(expected) = self.current().filter(|e| e.whole_query) {
            expected.rows = 0;
            expected.exceeded = None;
        }
    }

    pub fn data_row(&mut self) -> RowVerdict {
        let (portal_rows, cursor_rows) = (&self.portal_rows, &self.cursor_rows);
        let Some(Entry::Statement(expected)) = self.queue.front_mut() else {
            return RowVerdict::Forward;
        };
        if expected.exceeded.is_some() {
            return RowVerdict::Drop;
        }
        let before = match &expected.key {
            CountKey::Statement => 0,
            CountKey::Portal(p) => portal_rows.get(p).copied().unwrap_or(0),
            CountKey::Cursor(c) => cursor_rows.get(c).copied().unwrap_or(0),
        };
        if expected
            .cap
            .is_some_and(|cap| before + expected.rows >= cap)
        {
            expected.exceeded = expected.cap.map(Limit::PerStatement);
            return RowVerdict::Drop;
        }
        if expected.hourly.is_some_and(|left| expected.rows >= left) {
            expected.exceeded = expected.hourly.map(Limit::Hourly);
            return RowVerdict::Drop;
        }
        expected.rows += 1;
        RowVerdict::Forward
    }

    /// CommandComplete (with its tag), EmptyQueryResponse or PortalSuspended (empty tag).
    pub fn complete(&mut self, command_tag: &[u8]) -> Completion {
        let Some(Entry::Statement(expected)) = self.queue.front_mut() else {
            return Completion::Done { rows: 0 };
        };
        let (rows, exceeded, whole_query) =
            (expected.rows, expected.exceeded, expected.whole_query);
        let key = if whole_query {
            expected.rows = 0;
            expected.exceeded = None;
            CountKey::Statement
        } else {
            let Some(Entry::Statement(done)) = self.queue.pop_front() else {
                unreachable!("the front entry is a statement")
            };
            done.key
        };
        match key {
            CountKey::Statement => {}
            CountKey::Portal(p) => *self.portal_rows.entry(p).or_default() += rows,
            // MOVE passes over rows without sending them; they count all the same, or
            // the row after the cap could be reached by moving up to it.
            CountKey::Cursor(c) => {
                *self.cursor_rows.entry(c).or_default() += rows + moved_rows(command_tag)
            }
        }
        match exceeded {
            None => Completion::Done { rows },
            Some(limit) => Completion::Exceeded {
                limit,
                rows,
                // An unparsed query's later statements are unknown; their results are
                // dropped with the rest of the batch.
                more_pending: !whole_query && self.more_pending(),
            },
        }
    }

    /// Statements queued before the next sync point.
    pub fn more_pending(&self) -> bool {
        matches!(self.queue.front(), Some(Entry::Statement(_)))
    }

    /// Statements queued behind the current one before the next sync point.
    pub fn more_after_current(&self) -> bool {
        matches!(self.queue.get(1), Some(Entry::Statement(_)))
            && matches!(self.queue.front(), Some(Entry::Statement(_)))
    }

    /// An ErrorResponse: the server skips to the next sync point, so nothing before
    /// it is answered. Returns the rows the failed statement had sent.
    pub fn error(&mut self) -> u64 {
        let mut rows = 0;
        while let Some(Entry::Statement(expected)) = self.queue.front() {
            rows += expected.rows;
            self.queue.pop_front();
        }
        rows
    }

    /// A ReadyForQuery answers the oldest sync point.
    pub fn ready(&mut self) {
        while let Some(entry) = self.queue.pop_front() {
            if matches!(entry, Entry::Sync) {
                break;
            }
        }
    }
}

/// The row count of a `MOVE n` command tag; 0 for any other tag.
fn moved_rows(command_tag: &[u8]) -> u64 {
    command_tag
        .strip_prefix(b"MOVE ")
        .map(|n| n.strip_suffix(b"\0").unwrap_or(n))
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(results: &mut Results, n: usize) -> usize {
        (0..n)
            .filter(|_| results.data_row() == RowVerdict::Forward)
            .count()
    }

    #[test]
    fn the_row_after_the_cap_is_never_forwarded() {
        let mut r = Results::default();
        r.expect(CountKey::Statement, Some(3), None, false);
        r.sync_point();
        assert_eq!(rows(&mut r, 4), 3);
        assert_eq!(
            r.complete(b""),
            Completion::Exceeded {
                limit: Limit::PerStatement(3),
                rows: 3,
                more_pending: false
            }
        );
        r.ready();
        assert!(r.queue.is_empty());
    }

    #[test]
    fn portal_suspension_counts_across_executes_until_the_portal_is_bound_again() {
        let mut r = Results::default();
        r.bound(b"", b"s1");
        for _ in 0..2 {
            r.expect(r.portal_key(b""), Some(5), None, false);
        }
        r.sync_point();
        assert_eq!(rows(&mut r, 2), 2);
        assert_eq!(r.complete(b""), Completion::Done { rows: 2 });
        assert_eq!(rows(&mut r, 4), 3, "two more would pass the cap of five");
        assert!(matches!(r.complete(b""), Completion::Exceeded { .. }));
        r.ready();
        r.bound(b"", b"s1");
        r.expect(r.portal_key(b""), Some(5), None, false);
        assert_eq!(rows(&mut r, 5), 5);
    }

    #[test]
    fn cursor_fetches_add_up_until_it_is_declared_again() {
        let mut r = Results::default();
        for _ in 0..3 {
            r.expect(CountKey::Cursor("c".into()), Some(4), None, false);
            r.sync_point();
            let forwarded = rows(&mut r, 2);
            r.complete(b"");
            r.ready();
            assert!(forwarded <= 2);
        }
        assert_eq!(r.cursor_rows["c"], 4);
        r.expect(CountKey::Cursor("c".into()), Some(4), None, false);
        r.complete(b"MOVE 3\0");
        assert_eq!(r.cursor_rows["c"], 7, "moved rows count");
        r.declare_cursor("c");
        // A prepared FETCH counts against the cursor too.
        r.prepared(b"f", Some("c"));
        r.bound(b"p", b"f");
        assert_eq!(r.portal_key(b"p"), CountKey::Cursor("c".into()));
    }

    #[test]
    fn an_error_skips_to_the_sync_point() {
        let mut r = Results::default();
        r.expect(CountKey::Statement, Some(10), None, false);
        r.expect(CountKey::Statement, Some(10), None, false);
        r.sync_point();
        r.expect(CountKey::Statement, Some(1), None, false);
        r.sync_point();
        rows(&mut r, 2);
        assert_eq!(r.error(), 2);
        r.ready();
        assert_eq!(rows(&mut r, 2), 1, "the next batch has its own limit");
    }

    #[test]
    fn the_hourly_quota_limits_one_statement_to_what_is_left() {
        let mut r = Results::default();
        r.expect(CountKey::Statement, Some(100), Some(2), false);
        assert_eq!(rows(&mut r, 5), 2);
        assert!(matches!(
            r.complete(b""),
            Completion::Exceeded {
                limit: Limit::Hourly(2),
                ..
            }
        ));
    }

    #[test]
    fn an_unparsed_query_counts_each_result_set() {
        let mut r = Results::default();
        r.expect(CountKey::Statement, Some(2), None, true);
        r.sync_point();
        r.row_description();
        assert_eq!(rows(&mut r, 2), 2);
        assert_eq!(r.complete(b""), Completion::Done { rows: 2 });
        r.row_description();
        assert_eq!(rows(&mut r, 3), 2);
        assert!(matches!(r.complete(b""), Completion::Exceeded { .. }));
        r.ready();
        assert!(r.queue.is_empty());
    }
}
