//! Upstream prepared statements for a restricted session's unnamed statements.
//!
//! Drivers using the extended protocol without naming statements send a Parse of
//! the unnamed statement before every execution, so PostgreSQL would parse and plan
//! the masking subqueries of the rewrite each time: several times the cost of the
//! client's own statement. Instead, each rewritten text is prepared once per session
//! under a name of the proxy's, and the client's Binds and Describes of the unnamed
//! statement are pointed at it. The client's Parse must still be answered in its
//! place, so it becomes a Parse of an empty statement: PostgreSQL answers it with
//! ParseComplete for next to nothing.

use std::collections::HashMap;

use bytes::BytesMut;

use crate::protocol::{self, fields::Fields};

/// Names of the proxy's statements start with this; clients may not use it.
pub const PREFIX: &[u8] = b"_maskgate_";
/// Statements kept prepared per session; beyond this, unnamed Parses go through as sent.
const MAX_PREPARED: usize = 256;
/// Bytes of their texts, likewise: the backend keeps each, and so does this map.
const MAX_BYTES: usize = 4 << 20;

/// What became of a Parse of the unnamed statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unnamed {
    /// Goes upstream as rewritten; nothing was written.
    AsSent,
    /// Stands for a statement the proxy prepared before; an empty Parse was written.
    Reused,
    /// Prepares the proxy's statement `n`; it exists once the server confirms the Parse.
    Created(u32),
}

#[derive(Debug, Default)]
pub struct AutoPrepare {
    /// Rewritten text → (parameter types as sent, statement number).
    prepared: HashMap<String, Vec<(Vec<u8>, u32)>>,
    count: usize,
    /// Bytes of the texts prepared (until they are all forgotten).
    bytes: usize,
    next: u32,
    /// The proxy's statement that the client's unnamed statement stands for.
    unnamed: Option<u32>,
}

impl AutoPrepare {
    /// The client's Parse of the unnamed statement, allowed and rewritten to `text`.
    /// Writes its replacement to `out` unless it goes upstream as rewritten.
    pub fn parse_unnamed(&mut self, text: &str, param_types: &[u8], out: &mut BytesMut) -> Unnamed {
        let known = self
            .prepared
            .get(text)
            .and_then(|entries| entries.iter().find(|(types, _)| types == param_types))
            .map(|(_, number)| *number);
        match known {
            Some(number) => {
                protocol::write_parse(out, b"", "", &[0, 0]);
                self.unnamed = Some(number);
                Unnamed::Reused
            }
            None if self.count < MAX_PREPARED && self.bytes + text.len() <= MAX_BYTES => {
                let number = self.next;
                self.next += 1;
                self.count += 1;
                self.bytes += text.len();
                protocol::write_parse(out, &name(number), text, param_types);
                self.prepared
                    .entry(text.to_owned())
                    .or_default()
                    .push((param_types.to_vec(), number));
                self.unnamed = Some(number);
                Unnamed::Created(number)
            }
            None => {
                self.unnamed = None;
                Unnamed::AsSent
            }
        }
    }

    /// Any other Parse of the unnamed statement (denied, or not prepared by the proxy).
    pub fn unnamed_replaced(&mut self) {
        self.unnamed = None;
    }

    /// A Bind: when it names the unnamed statement, writes it for the proxy's statement.
    pub fn bind(&self, body: &[u8], out: &mut BytesMut) -> bool {
        let Some(number) = self.unnamed else {
            return false;
        };
        let mut f = Fields::new(body, "Bind");
        let (Ok(portal), Ok(b"")) = (f.cstr(), f.cstr()) else {
            return false;
        };
        protocol::write_message(out, b'B', &[portal, b"\0", &name(number), b"\0", f.rest()]);
        true
    }

    /// A Describe of the unnamed statement: writes it for the proxy's statement.
    pub fn describe(&self, body: &[u8], out: &mut BytesMut) -> bool {
        match (self.unnamed, body) {
            (Some(number), [b'S', 0]) => {
                protocol::write_message(out, b'D', &[b"S", &name(number), b"\0"]);
                true
            }
            _ => false,
        }
    }

    /// A Close of the unnamed statement.
    pub fn close(&mut self, body: &[u8]) {
        if body == [b'S', 0] {
            self.unnamed = None;
        }
    }

    /// The Parse that was to create statement `number` failed or was skipped by the
    /// server: it does not exist, and the client's unnamed statement does not either.
    pub fn lost(&mut self, number: u32) {
        for entries in self.prepared.values_mut() {
            entries.retain(|(_, n)| *n != number);
        }
        self.prepared.retain(|_, entries| !entries.is_empty());
        if self.unnamed == Some(number) {
            self.unnamed = None;
        }
    }

    /// The server dropped the statement `name` (by SQL `DEALLOCATE`): if it was one
    /// of the proxy's, it is prepared anew when next needed.
    pub fn dropped(&mut self, name: &[u8]) {
        let number = name
            .strip_prefix(PREFIX)
            .and_then(|n| std::str::from_utf8(n).ok())
            .and_then(|n| n.parse().ok());
        if let Some(number) = number {
            self.lost(number);
        }
    }

    /// DISCARD or DEALLOCATE may have dropped the proxy's statements: prepare anew.
    pub fn forget_all(&mut self) {
        self.prepared.clear();
        self.count = 0;
        self.bytes = 0;
        self.unnamed = None;
    }
}

/// Whether a client-chosen statement or portal name is one of the proxy's.
pub fn is_reserved(name: &[u8]) -> bool {
    name.starts_with(PREFIX)
}

fn name(number: u32) -> Vec<u8> {
    let mut name = PREFIX.to_vec();
    name.extend_from_slice(number.to_string().as_bytes());
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_prepared_once_and_reused() {
        let mut auto = AutoPrepare::default();
        let mut out = BytesMut::new();
        assert_eq!(
            auto.parse_unnamed("SELECT 1", &[0, 0], &mut out),
            Unnamed::Created(0)
        );
        assert!(
            out.windows(10).any(|w| w == PREFIX),
            "prepared under the proxy's name"
        );
        out.clear();
        assert!(auto.bind(b"\0\0\0\0\0\0\0\0", &mut out));
        assert!(out.windows(PREFIX.len()).any(|w| w == PREFIX));

        out.clear();
        assert_eq!(
            auto.parse_unnamed("SELECT 1", &[0, 0], &mut out),
            Unnamed::Reused
        );
        assert!(
            !out.windows(8).any(|w| w == b"SELECT 1"),
            "an empty Parse stands in"
        );
        assert_eq!(auto.count, 1);
    }

    #[test]
    fn a_lost_parse_forgets_only_its_own_statement() {
        let mut auto = AutoPrepare::default();
        let mut out = BytesMut::new();
        auto.parse_unnamed("SELECT 1", &[0, 0], &mut out);
        auto.parse_unnamed("SELECT 2", &[0, 0], &mut out);
        auto.lost(0);
        assert!(
            auto.bind(b"\0\0\0\0\0\0\0\0", &mut out),
            "2 is still mapped"
        );
        auto.lost(1);
        assert!(
            !auto.bind(b"\0\0\0\0\0\0\0\0", &mut out),
            "no longer mapped"
        );
        out.clear();
        assert_eq!(
            auto.parse_unnamed("SELECT 1", &[0, 0], &mut out),
            Unnamed::Created(2),
            "prepared again"
        );
        assert!(is_reserved(b"_maskgate_7") && !is_reserved(b"maskgate_7"));
    }
}
