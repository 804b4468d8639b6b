//! One record: one JSON object on one line.
//!
//! # Format
//!
//! ```text
//! {"seq":42,"time":"2025-01-31T08:15:02.123456789Z","kind":"statement","prev":"<64 hex>",<payload keys>}
//! ```
//!
//! * `seq` — a `u64`, global and contiguous across segments, starting at 1.
//! * `time` — when the writer appended the record, RFC 3339 in UTC.
//! * `kind` — what the record is. The caller's kinds (`statement`, `login`, …) are
//!   1–64 characters of `a-z 0-9 _ - .` starting with a letter; `segment_start`,
//!   `recovery` and `checkpoint` are written by the writer alone.
//! * `prev` — the lowercase hex SHA-256 of the previous record's line ([`crate::chain`]).
//! * then the caller's payload object, merged in. A payload key equal to one of
//!   the four envelope keys, or a payload with the same key twice, is refused:
//!   a reader must never have to guess which `seq` is meant.
//!
//! The envelope always comes first and in that order, so tools like `grep` or a
//! SIEM's line parser can pick it up without a JSON parser, but the verifier
//! does not depend on the order: it hashes bytes and parses JSON.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::chain::Digest;

/// Kind of the signed checkpoint records ([`crate::checkpoint`]).
pub const KIND_CHECKPOINT: &str = "checkpoint";
/// Kind of the first record of every segment ([`crate::segment`]).
pub const KIND_SEGMENT_START: &str = "segment_start";
/// Kind of the record that declares an unclean stop ([`crate::recovery`]).
pub const KIND_RECOVERY: &str = "recovery";
/// Kind of the record that authorizes removing the oldest segments ([`crate::retention`]).
pub const KIND_RETENTION: &str = "retention";

/// Kinds only the writer may write: the verifier gives them meaning, so a caller
/// record of one of these kinds would be misread.
pub const WRITER_KINDS: [&str; 4] = [
    KIND_CHECKPOINT,
    KIND_SEGMENT_START,
    KIND_RECOVERY,
    KIND_RETENTION,
];

/// The envelope keys a payload may not use.
pub const ENVELOPE_KEYS: [&str; 4] = ["seq", "time", "kind", "prev"];

/// Why a record was refused. Nothing here quotes payload values: records carry
/// data about people, errors travel to logs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record kind must be 1 to 64 characters of a-z, 0-9, '_', '-' or '.', starting with a letter")]
    InvalidKind,
    #[error("record kind {0:?} is written by the audit writer itself")]
    ReservedKind(&'static str),
    #[error("payload key {0:?} clashes with the record envelope")]
    ReservedKey(&'static str),
    #[error("payload has the same key twice")]
    DuplicateKey,
    #[error("payload must serialize to a JSON object")]
    NotAnObject,
    #[error("payload could not be serialized to JSON")]
    Serialize,
    #[error("record time cannot be written as RFC 3339")]
    Time,
    #[error("record is {bytes} bytes long, more than the {max} allowed")]
    TooLarge { bytes: usize, max: usize },
}

/// Checks a caller-supplied kind: the alphabet keeps kinds printable and free of
/// JSON escapes, and the writer's own kinds are refused.
pub fn validate_kind(kind: &str) -> Result<(), RecordError> {
    let bytes = kind.as_bytes();
    let well_formed = !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        });
    if !well_formed {
        return Err(RecordError::InvalidKind);
    }
    match WRITER_KINDS.iter().find(|k| **k == kind) {
        Some(reserved) => Err(RecordError::ReservedKind(reserved)),
        None => Ok(()),
    }
}

/// Whether payload keys are checked against the envelope. The writer's own
/// payloads are fixed structs that cannot clash, so they skip the extra parse.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyCheck {
    Check,
    Trusted,
}

/// Writes `{"seq":..,"time":"..","kind":"..","prev":".."` at the end of `buf`.
/// `kind` must already be valid (no escaping is done).
pub(crate) fn begin(
    buf: &mut Vec<u8>,
    seq: u64,
    time: OffsetDateTime,
    kind: &str,
    prev: &Digest,
) -> Result<(), RecordError> {
    // Writes into a Vec cannot fail; only the time formatting can.
    let _ = write!(buf, "{{\"seq\":{seq},\"time\":\"");
    time.format_into(buf, &Rfc3339)
        .map_err(|_| RecordError::Time)?;
    buf.extend_from_slice(b"\",\"kind\":\"");
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(b"\",\"prev\":\"");
    let mut hex = [0u8; 64];
    prev.write_hex(&mut hex);
    buf.extend_from_slice(&hex);
    buf.push(b'"');
    Ok(())
}

/// Appends the payload's members as `,"key":value...` (no closing brace).
///
/// The payload is serialized straight into the buffer, then its top-level keys
/// are scanned in place: one pass, no intermediate `Value` tree.
pub(crate) fn push_payload<P: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    payload: &P,
    check: KeyCheck,
) -> Result<(), RecordError> {
    let at = buf.len();
    serde_json::to_writer(&mut *buf, payload).map_err(|_| RecordError::Serialize)?;
    let object = &buf[at..];
    if object.first() != Some(&b'{') || object.last() != Some(&b'}') {
        return Err(RecordError::NotAnObject);
    }
    if check == KeyCheck::Check {
        check_keys(object)?;
    }
    if object.len() == 2 {
        // `{}`: nothing to merge.
        buf.truncate(at);
    } else {
        // `{"a":1}` becomes `,"a":1`: the opening brace turns into the separator
        // after the envelope and the closing one is dropped.
        buf[at] = b',';
        buf.pop();
    }
    Ok(())
}

/// Closes the object, hashes the line and appends the newline.
pub(crate) fn finish(buf: &mut Vec<u8>, start: usize) -> Result<Digest, RecordError> {
    buf.push(b'}');
    let line = &buf[start..];
    if line.len() > crate::MAX_LINE_BYTES {
        return Err(RecordError::TooLarge {
            bytes: line.len(),
            max: crate::MAX_LINE_BYTES,
        });
    }
    let digest = Digest::of_line(line);
    buf.push(b'\n');
    Ok(digest)
}

/// Writes one complete line (with its newline) at the end of `buf` and returns
/// its hash. On error `buf` is left exactly as it was.
pub(crate) fn encode<P: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    seq: u64,
    time: OffsetDateTime,
    kind: &str,
    prev: &Digest,
    payload: &P,
    check: KeyCheck,
) -> Result<Digest, RecordError> {
    let start = buf.len();
    let result = begin(buf, seq, time, kind, prev)
        .and_then(|()| push_payload(buf, payload, check))
        .and_then(|()| finish(buf, start));
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

fn check_keys(object: &[u8]) -> Result<(), RecordError> {
    let mut de = serde_json::Deserializer::from_slice(object);
    let outcome = KeyScan
        .deserialize(&mut de)
        .map_err(|_| RecordError::NotAnObject)?;
    match outcome {
        KeyScanOutcome::Fine => Ok(()),
        KeyScanOutcome::Reserved(key) => Err(RecordError::ReservedKey(key)),
        KeyScanOutcome::Duplicate => Err(RecordError::DuplicateKey),
    }
}

enum KeyScanOutcome {
    Fine,
    Reserved(&'static str),
    Duplicate,
}

/// Visits the top-level keys of an object, skipping values without building them.
struct KeyScan;

impl<'de> DeserializeSeed<'de> for KeyScan {
    type Value = KeyScanOutcome;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(KeyScanVisitor)
    }
}

struct KeyScanVisitor;

impl<'de> Visitor<'de> for KeyScanVisitor {
    type Value = KeyScanOutcome;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys: Vec<Key<'de>> = Vec::new();
        let mut outcome = KeyScanOutcome::Fine;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            map.next_value::<IgnoredAny>()?;
            if let (KeyScanOutcome::Fine, Some(reserved)) =
                (&outcome, ENVELOPE_KEYS.iter().find(|k| **k == key.as_str()))
            {
                outcome = KeyScanOutcome::Reserved(reserved);
            }
            keys.push(key);
        }
        if matches!(outcome, KeyScanOutcome::Fine) {
            keys.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
            if keys.windows(2).any(|w| w[0].as_str() == w[1].as_str()) {
                outcome = KeyScanOutcome::Duplicate;
            }
        }
        Ok(outcome)
    }
}

/// A key borrowed from the input when it has no escapes, owned otherwise.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key::Owned(v))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The envelope of a line as read back. Payload keys are ignored here; the
/// writer's own kinds are parsed again with their full, strict structure.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub time: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub prev: Cow<'a, str>,
}

/// A parsed envelope with its link and time decoded.
#[derive(Debug)]
pub(crate) struct ParsedEnvelope<'a> {
    pub seq: u64,
    pub time: OffsetDateTime,
    pub kind: Cow<'a, str>,
    pub prev: Digest,
}

/// Reads and checks a line's envelope. The error is a fixed description: a
/// verifier report must be safe to paste into a ticket.
pub(crate) fn parse_envelope(line: &[u8]) -> Result<ParsedEnvelope<'_>, &'static str> {
    let env: Envelope<'_> = serde_json::from_slice(line)
        .map_err(|_| "not a JSON object with seq, time, kind and prev")?;
    if env.seq == 0 {
        return Err("seq 0: sequence numbers start at 1");
    }
    let prev = Digest::parse_hex(&env.prev).ok_or("prev is not 64 lowercase hex digits")?;
    let time = match OffsetDateTime::parse(&env.time, &Rfc3339) {
        Ok(t) if t.offset().is_utc() => t,
        _ => return Err("time is not an RFC 3339 UTC timestamp"),
    };
    if env.kind.is_empty() {
        return Err("empty kind");
    }
    Ok(ParsedEnvelope {
        seq: env.seq,
        time,
        kind: env.kind,
        prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const T: OffsetDateTime = datetime!(2025-01-31 08:15:02.5 UTC);

    fn line(payload: &serde_json::Value) -> Result<(String, Digest), RecordError> {
        let mut buf = b"junk-before".to_vec();
        let digest = encode(
            &mut buf,
            7,
            T,
            "statement",
            &Digest::ZERO,
            payload,
            KeyCheck::Check,
        )?;
        let text = String::from_utf8(buf).unwrap();
        Ok((text["junk-before".len()..].to_owned(), digest))
    }

    #[test]
    fn envelope_then_payload_then_newline() {
        let (text, digest) = line(&json!({"account": "alice", "rows": 3})).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"seq\":7,\"time\":\"2025-01-31T08:15:02.5Z\",\"kind\":\"statement\",\"prev\":\"{}\",\"account\":\"alice\",\"rows\":3}}\n",
                "0".repeat(64)
            )
        );
        assert_eq!(
            digest,
            Digest::of_line(text.trim_end_matches('\n').as_bytes())
        );
        let env = parse_envelope(text.trim_end().as_bytes()).unwrap();
        assert_eq!(env.seq, 7);
        assert_eq!(env.kind, "statement");
        assert_eq!(env.prev, Digest::ZERO);
    }

    #[test]
    fn empty_payload() {
        let (text, _) = line(&json!({})).unwrap();
        assert!(text.ends_with(&format!("\"prev\":\"{}\"}}\n", "0".repeat(64))));
    }

    #[test]
    fn refuses_clashing_duplicate_and_non_objects_and_leaves_buffer_alone() {
        for key in ENVELOPE_KEYS {
            let mut map = serde_json::Map::new();
            map.insert(key.to_owned(), json!(1));
            assert_eq!(
                line(&serde_json::Value::Object(map)).unwrap_err(),
                RecordError::ReservedKey(key)
            );
        }
        assert_eq!(line(&json!([1, 2])).unwrap_err(), RecordError::NotAnObject);
        assert_eq!(line(&json!("x")).unwrap_err(), RecordError::NotAnObject);

        // A struct flattening a map can produce the same key twice.
        #[derive(Serialize)]
        struct Twice {
            a: u8,
            #[serde(flatten)]
            rest: std::collections::BTreeMap<String, u8>,
        }
        let twice = Twice {
            a: 1,
            rest: [("a".to_owned(), 2)].into_iter().collect(),
        };
        let mut buf = b"keep".to_vec();
        let err = encode(
            &mut buf,
            1,
            T,
            "statement",
            &Digest::ZERO,
            &twice,
            KeyCheck::Check,
        )
        .unwrap_err();
        assert_eq!(err, RecordError::DuplicateKey);
        assert_eq!(buf, b"keep");
    }

    #[test]
    fn escaped_keys_are_compared_by_value() {
        // A key with a quote is written escaped, so the scan sees an owned key.
        #[derive(Serialize)]
        struct Escaped {
            #[serde(rename = "a\"b")]
            a: u8,
            #[serde(flatten)]
            rest: std::collections::BTreeMap<String, u8>,
        }
        let twice = Escaped {
            a: 1,
            rest: [("a\"b".to_owned(), 2)].into_iter().collect(),
        };
        let mut buf = Vec::new();
        let err = encode(
            &mut buf,
            1,
            T,
            "statement",
            &Digest::ZERO,
            &twice,
            KeyCheck::Check,
        )
        .unwrap_err();
        assert_eq!(err, RecordError::DuplicateKey);
        let once = Escaped {
            a: 1,
            rest: Default::default(),
        };
        encode(
            &mut buf,
            1,
            T,
            "statement",
            &Digest::ZERO,
            &once,
            KeyCheck::Check,
        )
        .unwrap();
        assert!(String::from_utf8(buf).unwrap().contains(r#","a\"b":1}"#));
    }

    #[test]
    fn kinds() {
        for good in ["statement", "login", "a", "policy.reload", "x-1_2"] {
            assert_eq!(validate_kind(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Statement",
            "1abc",
            "with space",
            "quote\"",
            &"a".repeat(65),
            "é",
        ] {
            assert_eq!(validate_kind(bad), Err(RecordError::InvalidKind), "{bad}");
        }
        assert_eq!(
            validate_kind("checkpoint"),
            Err(RecordError::ReservedKind("checkpoint"))
        );
        assert_eq!(
            validate_kind("recovery"),
            Err(RecordError::ReservedKind("recovery"))
        );
        assert_eq!(
            validate_kind("retention"),
            Err(RecordError::ReservedKind("retention"))
        );
    }

    #[test]
    fn envelope_parsing_is_strict() {
        let zeros = "0".repeat(64);
        let ok =
            format!(r#"{{"seq":1,"time":"2025-01-01T00:00:00Z","kind":"x","prev":"{zeros}"}}"#);
        assert!(parse_envelope(ok.as_bytes()).is_ok());
        for bad in [
            ok.replace("\"seq\":1", "\"seq\":0"),
            ok.replace("\"seq\":1", "\"seq\":-1"),
            ok.replace(&zeros, &"A".repeat(64)),
            ok.replace("00:00:00Z", "00:00:00+01:00"),
            ok.replace("2025-01-01T00:00:00Z", "yesterday"),
            ok.replace("\"kind\":\"x\"", "\"kind\":\"\""),
            ok.replace("{\"seq\":1,", "{\"seq\":1,\"seq\":1,"),
            ok.replace('}', ""),
        ] {
            assert!(parse_envelope(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn too_large_is_refused() {
        let big = "x".repeat(crate::MAX_LINE_BYTES);
        let mut buf = Vec::new();
        let err = encode(
            &mut buf,
            1,
            T,
            "statement",
            &Digest::ZERO,
            &json!({"v": big}),
            KeyCheck::Check,
        )
        .unwrap_err();
        assert!(matches!(err, RecordError::TooLarge { .. }));
        assert!(buf.is_empty());
    }
}
