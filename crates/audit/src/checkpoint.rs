//! Signed checkpoints.
//!
//! # Format
//!
//! A checkpoint is a record like any other (it has a `seq` and is chained), with
//! these payload keys, in this order, the signature last:
//!
//! ```text
//! {"seq":120,"time":..,"kind":"checkpoint","prev":"<hex>",
//!  "segment":"audit-000003.jsonl","index":3,"first":101,"last":119,"last_hash":"<hex>",
//!  "end":null,"signer":"<16 hex>","signature":"<128 hex>"}
//! ```
//!
//! * `segment`, `index` — the file it vouches for. A checkpoint copied into another
//!   segment no longer matches the file it sits in.
//! * `first`, `last` — the sequence range covered: always from the segment's first
//!   record (its `segment_start`) to the record just before the checkpoint.
//!   Checkpoints are cumulative, so the last valid one seals the whole segment up
//!   to itself, and an older checkpoint put in place of a newer one claims a range
//!   that no longer ends where it stands.
//! * `last_hash` — the hash of record `last` (equal to the checkpoint's `prev`).
//!   Through the chain it vouches for every byte of every covered record: an old
//!   checkpoint cannot vouch for rewritten records.
//! * `end` — `null` for a periodic checkpoint, `"rotate"` for the last record of a
//!   segment followed by another, `"close"` for a clean shutdown. A `"rotate"` at
//!   the end of the trail promises a next segment, so a deleted last segment is seen.
//! * `signer` — fingerprint of the signing key ([`crate::PublicKey::fingerprint`]),
//!   only to make reports readable; the verifier trusts the key it is given.
//! * `signature` — Ed25519 over `"maskgate-audit checkpoint v1\n"` followed by every
//!   byte of the line before `,"signature":"`. Signing the bytes themselves (not
//!   values re-encoded) binds the envelope too (`seq`, `time`, `prev`), leaves no
//!   room for two encodings of one value, and needs no canonical JSON.

use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::chain::{parse_lower_hex, Digest};
use crate::keys::{PublicKey, SigningKey};
use crate::record::{self, KeyCheck, RecordError, KIND_CHECKPOINT};

/// Domain label in front of the signed bytes, so a checkpoint signature can never
/// be valid for anything else signed with the same key, nor the reverse.
pub const CHECKPOINT_DOMAIN: &[u8] = b"maskgate-audit checkpoint v1\n";

const SIGNATURE_MARKER: &[u8] = b",\"signature\":\"";
const SIGNATURE_HEX_LEN: usize = 128;

/// Why a segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentEnd {
    /// The size or age limit was reached; the next segment follows.
    Rotate,
    /// Clean shutdown.
    Close,
}

#[derive(Serialize)]
struct Body<'a> {
    segment: &'a str,
    index: u64,
    first: u64,
    last: u64,
    last_hash: &'a str,
    end: Option<SegmentEnd>,
    signer: &'a str,
}

/// What a checkpoint covers, as the writer knows it.
pub(crate) struct Cover<'a> {
    pub segment: &'a str,
    pub index: u64,
    pub first: u64,
    pub last: u64,
    pub end: Option<SegmentEnd>,
}

/// Appends a signed checkpoint line with sequence number `seq`, chained to
/// `last_hash` (the hash of record `cover.last`).
pub(crate) fn encode(
    buf: &mut Vec<u8>,
    seq: u64,
    time: OffsetDateTime,
    last_hash: &Digest,
    cover: &Cover<'_>,
    key: &SigningKey,
    signer: &str,
) -> Result<Digest, RecordError> {
    let start = buf.len();
    let result = encode_inner(buf, start, seq, time, last_hash, cover, key, signer);
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn encode_inner(
    buf: &mut Vec<u8>,
    start: usize,
    seq: u64,
    time: OffsetDateTime,
    last_hash: &Digest,
    cover: &Cover<'_>,
    key: &SigningKey,
    signer: &str,
) -> Result<Digest, RecordError> {
    record::begin(buf, seq, time, KIND_CHECKPOINT, last_hash)?;
    let hash_hex = last_hash.to_hex();
    let body = Body {
        segment: cover.segment,
        index: cover.index,
        first: cover.first,
        last: cover.last,
        last_hash: &hash_hex,
        end: cover.end,
        signer,
    };
    record::push_payload(buf, &body, KeyCheck::Trusted)?;
    let mut message = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + buf.len() - start);
    message.extend_from_slice(CHECKPOINT_DOMAIN);
    message.extend_from_slice(&buf[start..]);
    let signature = key.sign(&message).to_bytes();
    buf.extend_from_slice(SIGNATURE_MARKER);
    let mut hex = [0u8; SIGNATURE_HEX_LEN];
    // Lengths match: cannot fail.
    let _ = hex::encode_to_slice(signature, &mut hex);
    buf.extend_from_slice(&hex);
    buf.push(b'"');
    record::finish(buf, start)
}

/// A checkpoint record read back, refusing unknown keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // time and kind are there to be allowed, not read
struct CheckpointRecord {
    seq: u64,
    time: String,
    kind: String,
    prev: String,
    segment: String,
    index: u64,
    first: u64,
    last: u64,
    last_hash: String,
    end: Option<SegmentEnd>,
    signer: String,
    signature: Option<String>,
}

/// Where a checkpoint stands: what it must claim to be valid there.
pub(crate) struct Expect<'a> {
    /// The file it is in.
    pub segment: &'a str,
    pub index: u64,
    /// Seq of the segment's first line, if that line parsed.
    pub first_seq: Option<u64>,
    /// The line just before it in the same file: its seq (if it parsed) and hash.
    pub prev: Option<(Option<u64>, Digest)>,
}

/// A checkpoint that holds where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Valid {
    pub seq: u64,
    pub end: Option<SegmentEnd>,
}

/// Why a checkpoint does not hold, in the order they are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    Malformed(&'static str),
    MissingSignature,
    /// `signer` is the fingerprint the line claims, when it is well-formed.
    BadSignature {
        signer: Option<String>,
    },
    WrongSegment {
        claims_segment: String,
        claims_index: u64,
    },
    WrongRange {
        claims_first: u64,
        claims_last: u64,
        expected_first: Option<u64>,
        expected_last: Option<u64>,
    },
    WrongHash,
}

/// Checks one checkpoint line: its signature under `key`, then that it is bound
/// to this segment, this range and the hash of the record before it.
pub(crate) fn check(line: &[u8], expect: &Expect<'_>, key: &PublicKey) -> Result<Valid, Fault> {
    let rec: CheckpointRecord = serde_json::from_slice(line)
        .map_err(|_| Fault::Malformed("checkpoint fields missing, unknown or of the wrong type"))?;
    let Some(claimed) = rec.signature.as_deref() else {
        return Err(Fault::MissingSignature);
    };
    let n = line.len();
    let tail = SIGNATURE_MARKER.len() + SIGNATURE_HEX_LEN + 2;
    if n < tail
        || &line[n - 2..] != b"\"}"
        || &line[n - tail..n - tail + SIGNATURE_MARKER.len()] != SIGNATURE_MARKER
    {
        return Err(Fault::Malformed("signature is not the last field"));
    }
    let sig_hex = &line[n - 2 - SIGNATURE_HEX_LEN..n - 2];
    if sig_hex != claimed.as_bytes() {
        return Err(Fault::Malformed("signature is not the last field"));
    }
    let sig_bytes = parse_lower_hex::<64>(claimed).ok_or(Fault::Malformed(
        "signature is not 128 lowercase hex digits",
    ))?;
    let mut message = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + n - tail);
    message.extend_from_slice(CHECKPOINT_DOMAIN);
    message.extend_from_slice(&line[..n - tail]);
    if !key.verify(&message, &Signature::from_bytes(&sig_bytes)) {
        let signer = parse_lower_hex::<8>(&rec.signer).map(|_| rec.signer.clone());
        return Err(Fault::BadSignature { signer });
    }
    // Signed by our key: from here on the fields are the writer's own, and the
    // question is only whether they fit where the line now stands.
    if rec.segment != expect.segment || rec.index != expect.index {
        return Err(Fault::WrongSegment {
            claims_segment: rec.segment,
            claims_index: rec.index,
        });
    }
    let expected_last = expect.prev.and_then(|(seq, _)| seq);
    if Some(rec.first) != expect.first_seq
        || Some(rec.last) != expected_last
        || rec.last.checked_add(1) != Some(rec.seq)
    {
        return Err(Fault::WrongRange {
            claims_first: rec.first,
            claims_last: rec.last,
            expected_first: expect.first_seq,
            expected_last,
        });
    }
    let prev_hash = expect.prev.map(|(_, d)| d);
    if Digest::parse_hex(&rec.last_hash) != prev_hash || rec.prev != rec.last_hash {
        return Err(Fault::WrongHash);
    }
    Ok(Valid {
        seq: rec.seq,
        end: rec.end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn one(end: Option<SegmentEnd>) -> (Vec<u8>, SigningKey, Digest) {
        let key = SigningKey::generate();
        let last_hash = Digest::of_line(b"previous line");
        let mut buf = Vec::new();
        let cover = Cover {
            segment: "audit-000002.jsonl",
            index: 2,
            first: 10,
            last: 19,
            end,
        };
        let fp = key.public_key().fingerprint();
        encode(
            &mut buf,
            20,
            datetime!(2025-01-01 0:00 UTC),
            &last_hash,
            &cover,
            &key,
            &fp,
        )
        .unwrap();
        assert_eq!(buf.pop(), Some(b'\n'));
        (buf, key, last_hash)
    }

    fn expect(prev: Digest) -> Expect<'static> {
        Expect {
            segment: "audit-000002.jsonl",
            index: 2,
            first_seq: Some(10),
            prev: Some((Some(19), prev)),
        }
    }

    #[test]
    fn valid_where_it_was_written() {
        let (line, key, h) = one(Some(SegmentEnd::Rotate));
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(text.contains(r#""end":"rotate","signer":""#), "{text}");
        assert_eq!(
            check(&line, &expect(h), &key.public_key()),
            Ok(Valid {
                seq: 20,
                end: Some(SegmentEnd::Rotate)
            })
        );
    }

    #[test]
    fn faults() {
        let (line, key, h) = one(None);
        let pk = key.public_key();
        let other = SigningKey::generate().public_key();
        assert!(matches!(
            check(&line, &expect(h), &other),
            Err(Fault::BadSignature { signer: Some(_) })
        ));

        let mut e = expect(h);
        e.segment = "audit-000003.jsonl";
        assert!(matches!(
            check(&line, &e, &pk),
            Err(Fault::WrongSegment {
                claims_index: 2,
                ..
            })
        ));
        let mut e = expect(h);
        e.prev = Some((Some(25), h));
        assert!(matches!(
            check(&line, &e, &pk),
            Err(Fault::WrongRange {
                claims_last: 19,
                ..
            })
        ));
        let mut e = expect(h);
        e.first_seq = Some(1);
        assert!(matches!(
            check(&line, &e, &pk),
            Err(Fault::WrongRange { .. })
        ));
        assert_eq!(
            check(&line, &expect(Digest::ZERO), &pk),
            Err(Fault::WrongHash)
        );

        let text = String::from_utf8(line).unwrap();
        let cut = text.rsplit_once(",\"signature\"").unwrap().0.to_owned() + "}";
        assert_eq!(
            check(cut.as_bytes(), &expect(h), &pk),
            Err(Fault::MissingSignature)
        );
        let moved = text
            .replace(",\"end\":null", "")
            .replace("\"}", "\",\"end\":null}");
        assert!(matches!(
            check(moved.as_bytes(), &expect(h), &pk),
            Err(Fault::Malformed(_))
        ));
        let n = text.len();
        let sig = &text[n - 130..n - 2];
        let upper = text.replace(sig, &sig.to_uppercase());
        assert!(matches!(
            check(upper.as_bytes(), &expect(h), &pk),
            Err(Fault::Malformed(_))
        ));
        let extra = text.replacen("\"segment\"", "\"x\":1,\"segment\"", 1);
        assert!(matches!(
            check(extra.as_bytes(), &expect(h), &pk),
            Err(Fault::Malformed(_))
        ));
        let edited = text.replacen("\"time\":\"2025", "\"time\":\"2026", 1);
        assert!(matches!(
            check(edited.as_bytes(), &expect(h), &pk),
            Err(Fault::BadSignature { .. })
        ));
    }
}
