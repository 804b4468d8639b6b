//! Row caps per statement, and the rows held back under `over_cap = "refuse"`.
//!
//! A statement's cap comes with its decision (the tables it reads may set their own,
//! see [`maskgate_sql::EnforcedStatement::row_cap`]). The extended protocol runs a
//! statement at Execute, by portal, so the cap travels from Parse (statement name) to
//! Bind (portal) to Execute, in the order the client sent them. A name the session
//! cannot place (a SQL-level PREPARE, a cursor) gets the account's `max_rows`.

use std::collections::HashMap;

use bytes::BytesMut;

use crate::protocol;

/// The cap of each prepared statement and portal the client named.
#[derive(Debug, Default)]
pub(super) struct StatementCaps {
    prepared: HashMap<Vec<u8>, Option<u64>>,
    portals: HashMap<Vec<u8>, Option<u64>>,
}

impl StatementCaps {
    /// A Parse of `name` with this cap. A named statement that already exists makes
    /// PostgreSQL refuse the Parse; until it is closed the smaller cap applies.
    pub(super) fn parsed(&mut self, name: &[u8], cap: Option<u64>) {
        let cap = match self.prepared.get(name) {
            Some(old) if !name.is_empty() => smaller(*old, cap),
            _ => cap,
        };
        self.prepared.insert(name.to_vec(), cap);
    }

    /// A Bind of `portal` from `statement`.
    pub(super) fn bound(&mut self, portal: &[u8], statement: &[u8]) {
        match self.prepared.get(statement) {
            Some(cap) => {
                self.portals.insert(portal.to_vec(), *cap);
            }
            None => {
                self.portals.remove(portal);
            }
        }
    }

    /// A Close of a statement (`S`) or portal (`P`).
    pub(super) fn closed(&mut self, kind: u8, name: &[u8]) {
        match kind {
            b'S' => self.prepared.remove(name),
            _ => self.portals.remove(name),
        };
    }

    /// The cap of an Execute of `portal`; `fallback` when the portal is not known.
    pub(super) fn of_portal(&self, portal: &[u8], fallback: Option<u64>) -> Option<u64> {
        self.portals.get(portal).copied().unwrap_or(fallback)
    }

    /// Every statement and portal is gone (DISCARD ALL).
    pub(super) fn forget_all(&mut self) {
        self.prepared.clear();
        self.portals.clear();
    }
}

/// The smaller of two caps, `None` being no cap.
fn smaller(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// DataRows of the answering statement, kept until it ends within its cap; at most
/// cap rows are ever held (the row after the cap ends the statement).
#[derive(Debug, Default)]
pub(super) struct HeldRows {
    messages: BytesMut,
    /// The length on the wire of each held message.
    sizes: Vec<usize>,
}

impl HeldRows {
    pub(super) fn hold(&mut self, tag: u8, body: &[u8]) {
        let before = self.messages.len();
        protocol::write_message(&mut self.messages, tag, &[body]);
        self.sizes.push(self.messages.len() - before);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// Moves the held rows into `out`; returns the size of each.
    pub(super) fn release(&mut self, out: &mut BytesMut) -> Vec<usize> {
        out.extend_from_slice(&self.messages);
        self.messages.clear();
        std::mem::take(&mut self.sizes)
    }

    pub(super) fn discard(&mut self) {
        self.messages.clear();
        self.sizes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_parse_bind_execute() {
        let mut caps = StatementCaps::default();
        caps.parsed(b"", Some(63));
        caps.bound(b"", b"");
        assert_eq!(caps.of_portal(b"", Some(20)), Some(63));
        caps.parsed(b"s1", None);
        caps.parsed(b"s1", Some(20));
        caps.bound(b"p", b"s1");
        assert_eq!(
            caps.of_portal(b"p", None),
            Some(20),
            "the smaller of the two"
        );
        caps.closed(b'S', b"s1");
        caps.bound(b"p", b"s1");
        assert_eq!(
            caps.of_portal(b"p", Some(7)),
            Some(7),
            "unknown: the account's"
        );
        caps.parsed(b"", None);
        caps.bound(b"", b"");
        assert_eq!(caps.of_portal(b"", Some(20)), None);
    }

    #[test]
    fn held_rows_come_out_whole() {
        let mut held = HeldRows::default();
        assert!(held.is_empty());
        held.hold(b'D', b"\0\x01\0\0\0\x01x");
        held.hold(b'D', b"\0\x01\0\0\0\x01y");
        let mut out = BytesMut::new();
        assert_eq!(held.release(&mut out), [12, 12]);
        assert_eq!(out.len(), 24);
        assert!(held.is_empty());
    }
}
