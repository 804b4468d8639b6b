//! How many people statements may have read, as a true upper bound.
//!
//! A lookup by key reads the rows of the keys it pinned: the same keys read again
//! read the same people, so per set of keys the most rows one such lookup
//! returned bounds its people. A lookup with a key that could not be read, and
//! every statement that was not a lookup, may have read another person per row.
//! Rows are never inspected, so nothing tighter is known.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::observe::{Statement, StatementEnd};

/// What a report says about the people read.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DataSubjects {
    /// Distinct people looked up by key and found (keyed fingerprints of lookups
    /// that returned rows).
    pub looked_up: u64,
    /// Upper bound of the people those lookups read: per set of keys, the most
    /// rows one lookup of it returned.
    pub lookup_rows: u64,
    /// Rows of lookups with a key that could not be read (each may be another
    /// person).
    pub unkeyed_rows: u64,
    /// Rows of statements that were not lookups by key.
    pub rows_not_by_key: u64,
    /// Upper bound: the last three added.
    pub at_most: u64,
    /// Statements whose end the trail does not hold (a cut trail): their rows are
    /// not known, so not counted.
    pub unended: u64,
}

/// A statement waiting for its end.
enum Open {
    Keys(Vec<u64>),
    Unkeyed,
    Other,
}

/// Collects statements and their ends.
#[derive(Default)]
pub struct Subjects {
    open: HashMap<(String, u64), Open>,
    most_rows: HashMap<Vec<u64>, u64>,
    unkeyed_rows: u64,
    other_rows: u64,
}

impl Subjects {
    /// An allowed statement (denied ones read nothing).
    pub fn statement(&mut self, s: &Statement) {
        let open = if !s.is_lookup() {
            Open::Other
        } else if s.unkeyed > 0 {
            Open::Unkeyed
        } else {
            let mut keys: Vec<u64> = s.keys.iter().map(|k| k.k).collect();
            keys.sort_unstable();
            keys.dedup();
            Open::Keys(keys)
        };
        self.open.insert((s.session.clone(), s.stmt), open);
    }

    /// A statement's end. The end of a statement not seen (begun before the
    /// period) counts as not by key.
    pub fn end(&mut self, end: &StatementEnd) {
        match self.open.remove(&(end.session.clone(), end.stmt)) {
            Some(Open::Keys(keys)) => {
                let most = self.most_rows.entry(keys).or_default();
                *most = (*most).max(end.rows);
            }
            Some(Open::Unkeyed) => self.unkeyed_rows += end.rows,
            Some(Open::Other) | None => self.other_rows += end.rows,
        }
    }

    /// The end of a statement begun in the period, read after it.
    pub fn late_end(&mut self, end: &StatementEnd) {
        if self.open.contains_key(&(end.session.clone(), end.stmt)) {
            self.end(end);
        }
    }

    pub fn finish(&self) -> DataSubjects {
        let lookup_rows: u64 = self.most_rows.values().sum();
        let found: HashSet<u64> = self
            .most_rows
            .iter()
            .filter(|(_, rows)| **rows > 0)
            .flat_map(|(keys, _)| keys.iter().copied())
            .collect();
        DataSubjects {
            looked_up: found.len() as u64,
            lookup_rows,
            unkeyed_rows: self.unkeyed_rows,
            rows_not_by_key: self.other_rows,
            at_most: lookup_rows + self.unkeyed_rows + self.other_rows,
            unended: self.open.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::KeyPrint;
    use crate::observe::TableTouch;

    fn lookup(stmt: u64, keys: &[u64], unkeyed: u64) -> Statement {
        Statement {
            session: "s".into(),
            stmt,
            user: "u".into(),
            client: None,
            decision: "rewritten".into(),
            reason: None,
            class: "read".into(),
            tables: vec![TableTouch {
                table: "public.person".into(),
                masked: Vec::new(),
                denied: Vec::new(),
                pinned: true,
            }],
            written: Vec::new(),
            keys: keys.iter().map(|k| KeyPrint { k: *k, n: None }).collect(),
            unkeyed,
            seal_key: None,
        }
    }

    fn end(stmt: u64, rows: u64) -> StatementEnd {
        StatementEnd {
            session: "s".into(),
            stmt,
            outcome: "completed".into(),
            sqlstate: None,
            stopped_by: None,
            rows,
            bytes: 0,
        }
    }

    #[test]
    fn the_bound_counts_each_key_once_and_every_row_it_cannot_attribute() {
        let mut s = Subjects::default();
        // One person looked up 25 times: one person.
        for i in 0..25 {
            s.statement(&lookup(i, &[7], 0));
            s.end(&end(i, 1));
        }
        // A lookup that found nobody, one with a key that could not be read
        // returning 3 rows, a join of one key returning 4 rows, a scan of 10 rows.
        s.statement(&lookup(100, &[8], 0));
        s.end(&end(100, 0));
        s.statement(&lookup(101, &[], 1));
        s.end(&end(101, 3));
        s.statement(&lookup(102, &[9], 0));
        s.end(&end(102, 4));
        let mut scan = lookup(103, &[], 0);
        scan.tables[0].pinned = false;
        s.statement(&scan);
        s.end(&end(103, 10));
        // A lookup whose end is not in the trail.
        s.statement(&lookup(104, &[10], 0));
        let d = s.finish();
        assert_eq!(d.looked_up, 2);
        assert_eq!(d.lookup_rows, 1 + 4);
        assert_eq!(d.unkeyed_rows, 3);
        assert_eq!(d.rows_not_by_key, 10);
        assert_eq!(d.at_most, 18);
        assert_eq!(d.unended, 1);
    }
}
