//! The SQL cursors a session declared: the rows each has sent, and where it stands.
//!
//! A cursor's cap holds whatever its positioning: every row sent counts against it
//! (rows fetched again included), and a row is sent only where
//! [`CursorPosition`] proves it is not the row past the cap that the cursor's LIMIT
//! keeps to tell that the result was cut. MOVE sends nothing and counts nothing; the
//! position it leaves is followed all the same.

use maskgate_sql::{CursorPosition, Motion};

/// One declared cursor.
#[derive(Debug)]
pub(in crate::session) struct Cursor {
    /// Rows sent to the client since it was declared.
    pub(super) sent: u64,
    /// The cap of its DECLARE (the tables it reads may set one); `None` for none.
    pub(super) cap: Option<u64>,
    /// Where it stands, when capped.
    position: Option<CursorPosition>,
}

impl Cursor {
    /// A cursor just declared with a statement capped at `cap` (its query LIMITed to
    /// cap + 1 rows).
    pub(super) fn declared(cap: Option<u64>) -> Cursor {
        Cursor {
            sent: 0,
            cap,
            position: cap.map(CursorPosition::new),
        }
    }

    /// Whether the `index`-th row (from 1) a command returns may be sent: `motion` is
    /// what the command does to the cursor, `None` when the proxy cannot place its
    /// rows (a prepared FETCH executed a few rows at a time).
    pub(super) fn row_allowed(&self, motion: Option<Motion>, index: u64) -> bool {
        match (&self.position, motion) {
            (None, _) => true,
            (Some(position), Some(motion)) => position.row_allowed(motion, index),
            (Some(_), None) => false,
        }
    }

    /// A command on the cursor ended with `command_tag`, after `rows` DataRows came
    /// from the server (sent or not).
    pub(super) fn ran(&mut self, motion: Option<Motion>, command_tag: &[u8], rows: u64) {
        let Some(position) = self.position.as_mut() else {
            return;
        };
        // FETCH and MOVE tell how many rows they returned (or would have); an
        // Execute of the cursor's portal, only by its rows.
        let returned = tag_count(command_tag).unwrap_or(rows);
        match motion {
            Some(motion) => position.observe(motion, returned),
            // Rows the proxy could not place moved the cursor somewhere: no row is
            // sent from it again. (CLOSE returns none and needs no place.)
            None if returned > 0 => position.lose(),
            None => {}
        }
    }
}

/// The row count of a `FETCH n` or `MOVE n` command tag.
fn tag_count(command_tag: &[u8]) -> Option<u64> {
    let tag = command_tag.strip_suffix(b"\0").unwrap_or(command_tag);
    let count = tag
        .strip_prefix(b"FETCH ")
        .or_else(|| tag.strip_prefix(b"MOVE "))?;
    std::str::from_utf8(count).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_lost_cursors() {
        assert_eq!(tag_count(b"MOVE 12\0"), Some(12));
        assert_eq!(tag_count(b"FETCH 0"), Some(0));
        assert_eq!(tag_count(b"SELECT 3"), None);
        let mut cursor = Cursor::declared(Some(10));
        let next = Some(Motion::Step {
            forward: true,
            count: Some(1),
        });
        assert!(cursor.row_allowed(next, 1));
        assert!(!cursor.row_allowed(None, 1));
        cursor.ran(None, b"SELECT 2", 2);
        assert!(!cursor.row_allowed(next, 1));
        assert!(Cursor::declared(None).row_allowed(None, 1));
    }
}
