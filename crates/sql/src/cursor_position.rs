//! Where a capped cursor stands, followed from its FETCH and MOVE commands, so that
//! no row past the cap is ever sent whatever the positioning.
//!
//! A cursor's query is LIMITed to cap + 1 rows: the extra row only tells that the
//! result was cut, and must never reach the client. Scrollable cursors reach rows by
//! position (`ABSOLUTE`, `RELATIVE`, `LAST`, backward steps), so the proxy must know
//! the position of every row it forwards. It follows PostgreSQL's definitions of
//! FETCH and MOVE (each command ends on the row it returned last, or before the
//! first or after the last row) and learns from each command's row count. The
//! number of rows `n` is often unknown (a jump past the end does not tell where the
//! end is), so it is kept as bounds, and positions counted from the end stay
//! relative to it. A row whose position cannot be proved within the cap is not sent;
//! a count the model did not expect loses the cursor, and then no row is sent.

use sqlparser::ast::{FetchDirection, Value};

use crate::denial::Denial;

/// What one FETCH or MOVE does, by PostgreSQL's definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Motion {
    /// `FORWARD n`/`BACKWARD n` (also NEXT, PRIOR, a bare or negative count, ALL):
    /// `None` is ALL; 0 fetches the current row again.
    Step { forward: bool, count: Option<u64> },
    /// `ABSOLUTE n`: row n, counted from the end when negative (FIRST is 1, LAST -1).
    Absolute(i64),
    /// `RELATIVE n`, n not 0 (`RELATIVE 0` is a step of 0).
    Relative(i64),
}

impl Motion {
    /// The motion of a parsed direction (negative counts reverse a step).
    pub fn of(direction: &FetchDirection) -> Result<Motion, Denial> {
        let step = |n: i64, forward: bool| Motion::Step {
            forward: forward == (n >= 0),
            count: Some(n.unsigned_abs()),
        };
        Ok(match direction {
            FetchDirection::Next => step(1, true),
            FetchDirection::Prior => step(1, false),
            FetchDirection::First => Motion::Absolute(1),
            FetchDirection::Last => Motion::Absolute(-1),
            FetchDirection::All | FetchDirection::ForwardAll => Motion::Step {
                forward: true,
                count: None,
            },
            FetchDirection::BackwardAll => Motion::Step {
                forward: false,
                count: None,
            },
            FetchDirection::Count { limit } => step(count(limit)?, true),
            FetchDirection::Forward { limit: Some(limit) } => step(count(limit)?, true),
            FetchDirection::Backward { limit: Some(limit) } => step(count(limit)?, false),
            FetchDirection::Forward { limit: None } => step(1, true),
            FetchDirection::Backward { limit: None } => step(1, false),
            FetchDirection::Absolute { limit } => Motion::Absolute(count(limit)?),
            FetchDirection::Relative { limit } => match count(limit)? {
                0 => step(0, true),
                n => Motion::Relative(n),
            },
        })
    }

    /// How many rows the command can return at most.
    fn most_rows(self) -> Option<u64> {
        match self {
            Motion::Step { count: Some(0), .. } => Some(1),
            Motion::Step { count, .. } => count,
            Motion::Absolute(0) => Some(0),
            Motion::Absolute(_) | Motion::Relative(_) => Some(1),
        }
    }
}

/// A FETCH count: a plain integer that PostgreSQL reads as a `long`.
fn count(value: &Value) -> Result<i64, Denial> {
    match value {
        Value::Number(n, false) => n
            .parse()
            .map_err(|_| Denial::unsupported("this FETCH or MOVE count")),
        _ => Err(Denial::unsupported(
            "a FETCH or MOVE count other than a number",
        )),
    }
}

/// A position: counted from the start (0 is before the first row; otherwise a row,
/// at most n) or from the end (0 is after the last row, 1 the last row: row
/// n + 1 - d).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Start(u64),
    End(u64),
}

/// A cursor whose rows past `cap` must not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorPosition {
    cap: u64,
    at: At,
    /// Bounds of the cursor's number of rows (at most cap + 1, its query's LIMIT).
    lo: u64,
    hi: u64,
    /// A count contradicted the model: nothing is known, no row may be sent.
    lost: bool,
}

impl CursorPosition {
    /// A cursor just declared with a query LIMITed to `cap + 1` rows.
    pub fn new(cap: u64) -> CursorPosition {
        CursorPosition {
            cap,
            at: At::Start(0),
            lo: 0,
            hi: cap.saturating_add(1),
            lost: false,
        }
    }

    /// The cap the cursor was declared with.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Whether the `index`-th row (from 1) that `motion` returns from here is
    /// provably within the cap. A row of a position the model cannot place is not.
    pub fn row_allowed(&self, motion: Motion, index: u64) -> bool {
        if self.lost || index == 0 || motion.most_rows().is_some_and(|most| index > most) {
            return false;
        }
        let highest = match (motion, self.at) {
            (Motion::Step { count: Some(0), .. }, At::Start(p)) => Some(p),
            (Motion::Step { count: Some(0), .. }, At::End(d)) => self.highest_from_end(d),
            (Motion::Step { forward: true, .. }, At::Start(p)) => p.checked_add(index),
            (Motion::Step { forward: true, .. }, At::End(d)) => {
                d.checked_sub(index).and_then(|d| self.highest_from_end(d))
            }
            (Motion::Step { forward: false, .. }, At::Start(p)) => p.checked_sub(index),
            (Motion::Step { forward: false, .. }, At::End(d)) => {
                d.checked_add(index).and_then(|d| self.highest_from_end(d))
            }
            (Motion::Absolute(m), _) if m > 0 => Some(m.unsigned_abs()),
            (Motion::Absolute(m), _) => self.highest_from_end(m.unsigned_abs()),
            (Motion::Relative(k), At::Start(p)) if k > 0 => p.checked_add(k.unsigned_abs()),
            (Motion::Relative(k), At::Start(p)) => p.checked_sub(k.unsigned_abs()),
            (Motion::Relative(k), At::End(d)) if k > 0 => d
                .checked_sub(k.unsigned_abs())
                .and_then(|d| self.highest_from_end(d)),
            (Motion::Relative(k), At::End(d)) => d
                .checked_add(k.unsigned_abs())
                .and_then(|d| self.highest_from_end(d)),
        };
        highest.is_some_and(|row| row >= 1 && row <= self.cap && row <= self.hi)
    }

    /// The highest position row n + 1 - d can have (`None`: no such row).
    fn highest_from_end(&self, d: u64) -> Option<u64> {
        if d == 0 {
            return None;
        }
        (self.hi + 1).checked_sub(d)
    }

    /// Forgets where the cursor stands: no row of it is sent again.
    pub fn lose(&mut self) {
        self.lost = true;
    }

    /// The command ran and returned (or, for MOVE, would have returned) `rows` rows.
    pub fn observe(&mut self, motion: Motion, rows: u64) {
        if self.lost {
            return;
        }
        if motion.most_rows().is_some_and(|most| rows > most) || !self.apply(motion, rows) {
            self.lost = true;
            return;
        }
        if self.lo > self.hi {
            self.lost = true;
        } else if self.lo == self.hi {
            // Once n is known, a row counted from the end has a place from the start.
            if let At::End(d @ 1..) = self.at {
                match (self.hi + 1).checked_sub(d) {
                    Some(p) => self.at = At::Start(p),
                    None => self.lost = true,
                }
            }
        }
    }

    /// Moves as PostgreSQL does; false where `rows` contradicts the model.
    fn apply(&mut self, motion: Motion, rows: u64) -> bool {
        match motion {
            Motion::Step { count: Some(0), .. } => self.refetch(rows),
            Motion::Step { forward, count } => {
                let full = count.is_some_and(|k| rows == k);
                match (forward, self.at) {
                    (true, At::Start(p)) if full => self.on_row_from_start(p + rows),
                    (true, At::Start(p)) => self.known(p + rows) && self.to(At::End(0)),
                    (true, At::End(d)) if full => rows < d && self.to(At::End(d - rows)),
                    (true, At::End(d)) => rows == d.saturating_sub(1) && self.to(At::End(0)),
                    (false, At::Start(p)) if full => rows < p && self.to(At::Start(p - rows)),
                    (false, At::Start(p)) => rows == p.saturating_sub(1) && self.to(At::Start(0)),
                    (false, At::End(d)) if full => {
                        self.at_least(d + rows) && self.to(At::End(d + rows))
                    }
                    (false, At::End(d)) => self.known(rows + d) && self.to(At::Start(0)),
                }
            }
            Motion::Absolute(0) => rows == 0 && self.to(At::Start(0)),
            Motion::Absolute(m) if m > 0 => self.single(rows, At::Start(m.unsigned_abs())),
            Motion::Absolute(m) => self.single(rows, At::End(m.unsigned_abs())),
            Motion::Relative(k) => {
                let target = match (self.at, k > 0) {
                    (At::Start(p), true) => At::Start(p + k.unsigned_abs()),
                    (At::Start(p), false) => match p.checked_sub(k.unsigned_abs()) {
                        Some(p) if p >= 1 => At::Start(p),
                        _ => return rows == 0 && self.to(At::Start(0)),
                    },
                    (At::End(d), true) => match d.checked_sub(k.unsigned_abs()) {
                        Some(d) if d >= 1 => At::End(d),
                        _ => return rows == 0 && self.to(At::End(0)),
                    },
                    (At::End(d), false) => At::End(d + k.unsigned_abs()),
                };
                self.single(rows, target)
            }
        }
    }

    /// A one-row command aimed at `target`: on it if a row came, else off the end
    /// it points past.
    fn single(&mut self, rows: u64, target: At) -> bool {
        match (target, rows) {
            (At::Start(p), 1) => self.on_row_from_start(p),
            (At::Start(p), _) => self.at_most(p.saturating_sub(1)) && self.to(At::End(0)),
            (At::End(d), 1) => self.at_least(d) && self.to(At::End(d)),
            (At::End(d), _) => self.at_most(d.saturating_sub(1)) && self.to(At::Start(0)),
        }
    }

    /// FETCH 0 / RELATIVE 0: the current row again, if the cursor is on one.
    fn refetch(&mut self, rows: u64) -> bool {
        match (self.at, rows) {
            (At::Start(p), 1) => p >= 1 && self.at_least(p),
            (At::Start(p), _) => p == 0,
            (At::End(d), 1) => d >= 1 && self.at_least(d),
            (At::End(0), _) => true,
            (At::End(d), _) => self.known(d - 1),
        }
    }

    fn on_row_from_start(&mut self, p: u64) -> bool {
        self.at_least(p) && self.to(At::Start(p))
    }

    fn to(&mut self, at: At) -> bool {
        self.at = at;
        true
    }

    fn at_least(&mut self, n: u64) -> bool {
        self.lo = self.lo.max(n);
        true
    }

    fn at_most(&mut self, n: u64) -> bool {
        self.hi = self.hi.min(n);
        true
    }

    fn known(&mut self, n: u64) -> bool {
        self.at_least(n) && self.at_most(n)
    }
}

#[cfg(test)]
#[path = "cursor_position_tests.rs"]
mod tests;
