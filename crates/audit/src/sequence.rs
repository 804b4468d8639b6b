//! Sequence numbers and hash links across the whole trail.
//!
//! Tracked by seq rather than only by position: a record's link is checked
//! against the hash of record `seq - 1` wherever that record stood, so a swap of
//! two records reads as one reordering instead of a cascade of broken links, and
//! a deletion as one gap. Hashes are kept for a window of recent records, which
//! bounds memory on trails of any length; a link whose predecessor is out of the
//! window only occurs next to a disorder that is reported on its own.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::chain::Digest;
use crate::report::Problem;

/// Recent records whose hashes are kept for out-of-order link checks.
const WINDOW: usize = 4096;

/// Where a gap was first seen.
pub(crate) type Location = Option<(String, u64)>;

/// Sequence numbers and links across the whole trail.
#[derive(Default)]
pub(crate) struct SeqTrack {
    /// Highest seq seen.
    max: u64,
    /// Seqs skipped so far: start -> (end, where the gap was seen).
    missing: BTreeMap<u64, (u64, Location)>,
    /// Hashes of recent records by seq, for links that are not positional.
    recent: HashMap<u64, Digest>,
    order: VecDeque<u64>,
    /// seq -> (hash its successor expects, that successor's seq), for records
    /// whose successor came first.
    awaiting: HashMap<u64, (Digest, u64)>,
    /// The previous line anywhere in the trail: its seq (if it parsed) and hash.
    pos_prev: Option<(Option<u64>, Digest)>,
    /// The previous line was damaged (it may have been the next record).
    after_damage: bool,
}

impl SeqTrack {
    /// The highest seq seen, if any.
    pub fn max_seen(&self) -> Option<u64> {
        (self.max > 0).then_some(self.max)
    }

    /// Continues a trail after record `seq`, whose hash is `digest`, as if it had
    /// been seen: for a trail whose oldest segments were removed by retention
    /// (the caller checks that a retention record vouches for that end).
    pub fn start_after(&mut self, seq: u64, digest: Digest) {
        self.max = seq;
        self.pos_prev = Some((Some(seq), digest));
        self.recent.insert(seq, digest);
        self.order.push_back(seq);
    }

    /// Notes a line that did not parse: it may have been the next record.
    pub fn damaged(&mut self, digest: Digest) {
        self.pos_prev = Some((None, digest));
        self.after_damage = true;
    }

    /// Takes the next record in file order: its seq, its link and its own hash.
    /// Problems go to `out`; `at` is where it stands, for gap reports.
    pub fn observe(
        &mut self,
        s: u64,
        prev: Digest,
        digest: Digest,
        at: Option<(&str, u64)>,
        out: &mut Vec<Problem>,
    ) {
        let mut skip_link = false;
        let next = self.max.saturating_add(1);
        if s == next {
            self.max = s;
        } else if s > next {
            if self.after_damage && s == next.saturating_add(1) {
                // The damaged line stood where record `next` belongs: its damage is
                // already reported, and a link into it is necessarily broken.
                self.max = s;
                skip_link = true;
            } else {
                let loc = at.map(|(n, l)| (n.to_owned(), l));
                self.missing.insert(next, (s - 1, loc));
                self.max = s;
            }
        } else if self.take_missing(s) {
            out.push(Problem::OutOfOrder {
                seq: s,
                after: self.pos_prev.and_then(|(p, _)| p),
            });
        } else {
            out.push(Problem::Duplicate { seq: s });
        }

        if !skip_link {
            let expected = if s == 1 {
                Some(Digest::ZERO)
            } else {
                match self.pos_prev {
                    Some((Some(p), d)) if p == s - 1 => Some(d),
                    _ => self.recent.get(&(s - 1)).copied(),
                }
            };
            match expected {
                Some(d) if d != prev => out.push(Problem::BrokenLink { seq: s }),
                Some(_) => {}
                None if self.is_missing(s - 1) && self.awaiting.len() < WINDOW => {
                    self.awaiting.insert(s - 1, (prev, s));
                }
                // The predecessor is out of reach: this only happens next to a
                // disorder or damage that is reported on its own.
                None => {}
            }
        }
        if let Some((want, from)) = self.awaiting.remove(&s) {
            if want != digest {
                out.push(Problem::BrokenLink { seq: from });
            }
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.recent.entry(s) {
            e.insert(digest);
            self.order.push_back(s);
            if self.order.len() > WINDOW {
                if let Some(old) = self.order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
        self.pos_prev = Some((Some(s), digest));
        self.after_damage = false;
    }

    fn is_missing(&self, s: u64) -> bool {
        self.missing
            .range(..=s)
            .next_back()
            .is_some_and(|(_, (end, _))| *end >= s)
    }

    /// Removes `s` from the missing set; whether it was there.
    fn take_missing(&mut self, s: u64) -> bool {
        let Some((&start, (end, loc))) = self.missing.range(..=s).next_back() else {
            return false;
        };
        let (end, loc) = (*end, loc.clone());
        if end < s {
            return false;
        }
        self.missing.remove(&start);
        if start < s {
            self.missing.insert(start, (s - 1, loc.clone()));
        }
        if s < end {
            self.missing.insert(s + 1, (end, loc));
        }
        true
    }

    /// The seqs still missing at the end: deleted records, with where each gap was seen.
    pub fn deleted(&mut self) -> Vec<(u64, u64, Location)> {
        std::mem::take(&mut self.missing)
            .into_iter()
            .map(|(start, (end, loc))| (start, end, loc))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds records given as (seq, index of the predecessor whose hash is its
    /// link); each record's own hash is derived from its position.
    fn run(records: &[(u64, Option<usize>)]) -> (Vec<Problem>, Vec<(u64, u64)>) {
        let hash = |i: usize| Digest::of_line(format!("line {i}").as_bytes());
        let mut t = SeqTrack::default();
        let mut out = Vec::new();
        for (i, (seq, link)) in records.iter().enumerate() {
            let prev = link.map_or(Digest::ZERO, hash);
            t.observe(*seq, prev, hash(i), None, &mut out);
        }
        let deleted = t.deleted().into_iter().map(|(a, b, _)| (a, b)).collect();
        (out, deleted)
    }

    #[test]
    fn in_order() {
        assert_eq!(
            run(&[(1, None), (2, Some(0)), (3, Some(1))]),
            (vec![], vec![])
        );
    }

    #[test]
    fn first_link_must_be_zero() {
        let (p, _) = run(&[(1, Some(5)), (2, Some(0))]);
        assert_eq!(p, vec![Problem::BrokenLink { seq: 1 }]);
    }

    #[test]
    fn gap_is_one_deletion() {
        // Record 2 (position 1 originally) is gone; 3 links to it.
        let hash_of_missing = Some(9);
        let (p, d) = run(&[(1, None), (3, hash_of_missing), (4, Some(1))]);
        assert_eq!(p, vec![]);
        assert_eq!(d, vec![(2, 2)]);
    }

    #[test]
    fn swap_is_one_reordering() {
        // Original order 1,2,3,4 stored as 1,3,2,4; links are to the originals.
        let (p, d) = run(&[(1, None), (3, Some(2)), (2, Some(0)), (4, Some(1))]);
        assert_eq!(
            p,
            vec![Problem::OutOfOrder {
                seq: 2,
                after: Some(3)
            }]
        );
        assert_eq!(d, vec![]);
    }

    #[test]
    fn modified_record_breaks_the_next_link() {
        let (p, _) = run(&[(1, None), (2, Some(0)), (3, Some(7))]);
        assert_eq!(p, vec![Problem::BrokenLink { seq: 3 }]);
    }

    #[test]
    fn duplicate_seq() {
        let (p, _) = run(&[(1, None), (2, Some(0)), (2, Some(0)), (3, Some(2))]);
        assert_eq!(p, vec![Problem::Duplicate { seq: 2 }]);
    }

    #[test]
    fn a_damaged_line_stands_for_the_next_record() {
        let mut t = SeqTrack::default();
        let mut out = Vec::new();
        t.observe(1, Digest::ZERO, Digest::of_line(b"a"), None, &mut out);
        t.damaged(Digest::of_line(b"garbage"));
        t.observe(
            3,
            Digest::of_line(b"original 2"),
            Digest::of_line(b"c"),
            None,
            &mut out,
        );
        assert_eq!(out, vec![]);
        assert!(t.deleted().is_empty());
    }
}
