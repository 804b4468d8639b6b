//! The tamper matrix: one test per kind of change to a closed trail, each
//! asserting the verdict and the precise finding.

mod common;

use std::fs;

use common::*;
use maskgate_audit::{Problem, SeqRange, Status};

/// A closed trail of several segments (4 KiB each).
fn trail() -> Trail {
    let t = closed_trail(30, 4096);
    assert!(t.segments().len() >= 4, "want several segments");
    let r = t.verify();
    assert_eq!(r.status(), Status::Clean, "{r}");
    t
}

/// A statement line in the middle of segment 2: (its index in the file, its seq).
fn middle_statement(t: &Trail) -> (usize, u64) {
    let lines = read_lines(&t.segment(2));
    let i = find_kind(&lines, "statement", 2);
    (i, seq(&lines[i]))
}

#[test]
fn modify_a_byte_in_a_record() {
    let t = trail();
    let (i, s) = middle_statement(&t);
    let mut lines = read_lines(&t.segment(2));
    lines[i] = lines[i].replacen("clerk.berne", "clerk.bernf", 1);
    write_lines(&t.segment(2), &lines);
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert_eq!(errors(&r), vec![Problem::BrokenLink { seq: s + 1 }], "{r}");
    assert_eq!(
        r.findings()[0].segment.as_deref(),
        Some("audit-000002.jsonl")
    );
    assert_eq!(r.findings()[0].line, Some(i as u64 + 2));
}

#[test]
fn delete_a_record() {
    let t = trail();
    let (i, s) = middle_statement(&t);
    let mut lines = read_lines(&t.segment(2));
    lines.remove(i);
    write_lines(&t.segment(2), &lines);
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    // The checkpoint after it still covers the right range and hash: only the gap shows.
    assert_eq!(
        errors(&r),
        vec![Problem::Deleted { first: s, last: s }],
        "{r}"
    );
}

#[test]
fn insert_a_forged_record_with_a_recomputed_chain_fails_on_signatures() {
    let t = trail();
    let (i, _) = middle_statement(&t);
    let mut lines = read_lines(&t.segment(2));
    let forged = lines[i].replacen("clerk.berne", "nobody", 1);
    lines.insert(i, forged);
    write_lines(&t.segment(2), &lines);
    relink(&t, None);
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    let errs = errors(&r);
    // Every link and seq is consistent again; only the signatures give it away.
    assert!(
        errs.iter()
            .all(|p| matches!(p, Problem::BadSignature { .. })),
        "{r}"
    );
    assert!(errs.len() >= 3, "every later checkpoint fails: {r}");
    // The first segment was not touched and still verifies.
    assert!(r
        .findings()
        .iter()
        .all(|f| f.segment.as_deref() != Some("audit-000001.jsonl")));
}

#[test]
fn reorder_two_records() {
    let t = trail();
    let mut lines = read_lines(&t.segment(2));
    // Two statements followed by a third, so no checkpoint sits right after them.
    let i = (1..lines.len() - 2)
        .find(|i| (0..3).all(|k| kind(&lines[i + k]) == "statement"))
        .expect("three statements in a row");
    let s = seq(&lines[i]);
    lines.swap(i, i + 1);
    write_lines(&t.segment(2), &lines);
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert_eq!(
        errors(&r),
        vec![Problem::OutOfOrder {
            seq: s,
            after: Some(s + 1)
        }],
        "{r}"
    );
}

#[test]
fn cut_the_tail_of_a_middle_segment() {
    let t = trail();
    let mut lines = read_lines(&t.segment(2));
    let last = seq(lines.last().unwrap());
    lines.truncate(lines.len() - 2);
    write_lines(&t.segment(2), &lines);
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    let errs = errors(&r);
    assert!(errs.contains(&Problem::CutTail), "{r}");
    assert!(
        errs.contains(&Problem::Deleted {
            first: last - 1,
            last
        }),
        "{r}"
    );
}

#[test]
fn cut_the_tail_of_the_last_segment_is_never_clean() {
    let t = trail();
    let path = t.segments().pop().unwrap();
    let mut lines = read_lines(&path);
    // Drop the close checkpoint: what is left ends after a periodic checkpoint
    // or after records, as if the writer were still running.
    lines.pop();
    let last = seq(lines.last().unwrap());
    write_lines(&path, &lines);
    let r = t.verify();
    assert_eq!(r.status(), Status::UnsealedTail, "{r}");
    assert!(has(&r, |p| *p == Problem::OpenSegment), "{r}");
    if let Some(range) = r.unsealed().first() {
        assert_eq!(range.last, last);
    }
}

#[test]
fn delete_the_last_segment() {
    let t = trail();
    fs::remove_file(t.segments().pop().unwrap()).unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert_eq!(errors(&r), vec![Problem::MissingNextSegment], "{r}");
}

#[test]
fn delete_a_middle_segment() {
    let t = trail();
    let lines = read_lines(&t.segment(2));
    let (first, last) = (seq(&lines[0]), seq(lines.last().unwrap()));
    fs::remove_file(t.segment(2)).unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert_eq!(
        errors(&r),
        vec![
            Problem::MissingSegments {
                first_index: 2,
                last_index: 2
            },
            Problem::Deleted { first, last }
        ],
        "{r}"
    );
}

#[test]
fn rename_a_segment() {
    let t = trail();
    let n = t.segments().len() as u64;
    fs::rename(t.segment(2), t.segment(n + 3)).unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    let errs = errors(&r);
    assert!(errs.contains(&Problem::MissingSegments {
        first_index: 2,
        last_index: 2
    }));
    assert!(errs.contains(&Problem::SegmentRenamed {
        claims_segment: "audit-000002.jsonl".into(),
        claims_index: 2
    }));
}

#[test]
fn rename_a_segment_to_another_name() {
    let t = trail();
    fs::rename(t.segment(2), t.path().join("audit-000002.jsonl.bak")).unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert!(has(&r, |p| *p
        == Problem::UnexpectedFile {
            name: "audit-000002.jsonl.bak".into()
        }));
}

#[test]
fn swap_two_segment_names() {
    let t = trail();
    let tmp = t.path().join("tmp");
    fs::rename(t.segment(2), &tmp).unwrap();
    fs::rename(t.segment(3), t.segment(2)).unwrap();
    fs::rename(&tmp, t.segment(3)).unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert!(has(&r, |p| matches!(
        p,
        Problem::SegmentRenamed {
            claims_index: 3,
            ..
        }
    )));
    assert!(has(&r, |p| matches!(
        p,
        Problem::SegmentRenamed {
            claims_index: 2,
            ..
        }
    )));
    assert!(has(&r, |p| matches!(p, Problem::OutOfOrder { .. })));
}

#[test]
fn truncate_a_middle_segment_mid_line() {
    let t = trail();
    let path = t.segment(2);
    let len = fs::metadata(&path).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 100).unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    let text = fs::read(&path).unwrap();
    let torn = (text.len() - 1 - text.iter().rposition(|b| *b == b'\n').unwrap()) as u64;
    let errs = errors(&r);
    assert!(
        errs.contains(&Problem::TornTail {
            bytes: torn,
            declared: false
        }),
        "{r}"
    );
    assert!(errs.contains(&Problem::CutTail), "{r}");
}

#[test]
fn truncate_the_last_segment_mid_line() {
    let t = trail();
    let path = t.segments().pop().unwrap();
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let r = t.verify();
    // Indistinguishable from a crash before restart: not clean, not proof either.
    assert_eq!(r.status(), Status::UnsealedTail, "{r}");
    assert!(
        has(&r, |p| matches!(
            p,
            Problem::TornTail {
                declared: false,
                ..
            }
        )),
        "{r}"
    );
    assert!(has(&r, |p| *p == Problem::OpenSegment));
}

#[test]
fn replace_a_checkpoint_with_an_older_one() {
    let t = trail();
    let mut w_lines = Vec::new();
    // Find a segment with two checkpoints.
    let mut found = None;
    for (n, path) in t.segments().iter().enumerate() {
        let lines = read_lines(path);
        let cps: Vec<usize> = (0..lines.len())
            .filter(|i| kind(&lines[*i]) == "checkpoint")
            .collect();
        if cps.len() >= 2 {
            found = Some((n as u64 + 1, cps[0], cps[1]));
            w_lines = lines;
            break;
        }
    }
    let (index, old, newer) = found.expect("a segment with two checkpoints");
    let (claims_first, claims_last) = {
        let m = parse(&w_lines[old]);
        (m["first"].as_u64().unwrap(), m["last"].as_u64().unwrap())
    };
    w_lines[newer] = w_lines[old].clone();
    write_lines(&t.segment(index), &w_lines);
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert!(
        has(
            &r,
            |p| matches!(p, Problem::CheckpointWrongRange { claims_first: f, claims_last: l, .. } if *f == claims_first && *l == claims_last)
        ),
        "{r}"
    );
}

#[test]
fn move_a_checkpoint_to_another_segment() {
    let t = trail();
    let from = read_lines(&t.segment(2));
    let cp = from[find_kind(&from, "checkpoint", 1)].clone();
    let mut to = read_lines(&t.segment(3));
    let i = find_kind(&to, "checkpoint", 1);
    to[i] = cp;
    write_lines(&t.segment(3), &to);
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert!(
        has(&r, |p| *p
            == Problem::CheckpointWrongSegment {
                claims_segment: "audit-000002.jsonl".into(),
                claims_index: 2
            }),
        "{r}"
    );
}

#[test]
fn forge_with_a_different_signing_key() {
    let t = trail();
    let (i, _) = middle_statement(&t);
    let mut lines = read_lines(&t.segment(2));
    lines[i] = lines[i].replacen("\"rows\":", "\"rows\":1", 1);
    write_lines(&t.segment(2), &lines);
    let forger = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    relink(&t, Some(&forger));
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    let errs = errors(&r);
    assert!(!errs.is_empty());
    for p in &errs {
        match p {
            Problem::BadSignature {
                claimed_signer,
                expected_signer,
            } => {
                assert_eq!(
                    claimed_signer.as_deref(),
                    Some(fingerprint(&forger.verifying_key()).as_str())
                );
                assert_eq!(expected_signer, &t.public.fingerprint());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The forgery is internally consistent: the right public key is what matters.
    let forger_public = maskgate_audit::PublicKey::from_pem(&{
        use ed25519_dalek::pkcs8::EncodePublicKey;
        forger
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap()
    })
    .unwrap();
    let r = maskgate_audit::verify(t.path(), &forger_public).unwrap();
    assert_eq!(r.status(), Status::Clean, "{r}");
}

#[test]
fn strip_a_signature() {
    let t = trail();
    let mut lines = read_lines(&t.segment(2));
    let i = find_kind(&lines, "checkpoint", 1);
    let (head, _) = lines[i].rsplit_once(",\"signature\"").unwrap();
    lines[i] = format!("{head}}}");
    write_lines(&t.segment(2), &lines);
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert!(has(&r, |p| *p == Problem::MissingSignature), "{r}");
}

#[test]
fn an_unsigned_record_after_the_final_checkpoint() {
    let t = trail();
    let path = t.segments().pop().unwrap();
    let mut lines = read_lines(&path);
    let last = lines.last().unwrap().clone();
    let mut m = parse(&lines[1]);
    m.insert("seq".into(), serde_json::json!(seq(&last) + 1));
    m.insert("prev".into(), serde_json::json!(hash_hex(&last)));
    lines.push(serde_json::to_string(&m).unwrap());
    write_lines(&path, &lines);
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert!(
        has(&r, |p| matches!(p, Problem::RecordsAfterFinal { .. })),
        "{r}"
    );
    assert_eq!(
        r.unsealed(),
        &[SeqRange {
            first: seq(&last) + 1,
            last: seq(&last) + 1
        }]
    );
}

#[test]
fn a_record_with_a_broken_first_link() {
    let t = trail();
    let mut lines = read_lines(&t.segment(1));
    let mut m = parse(&lines[0]);
    m.insert("prev".into(), serde_json::json!("1".repeat(64)));
    m.insert("prev_hash".into(), serde_json::json!("1".repeat(64)));
    lines[0] = serde_json::to_string(&m).unwrap();
    write_lines(&t.segment(1), &lines);
    relink_from_second(&t);
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert!(has(&r, |p| *p == Problem::BrokenLink { seq: 1 }), "{r}");
}

/// Fixes only the link of line 2 of segment 1 (to hide the edit of line 1).
fn relink_from_second(t: &Trail) {
    let mut lines = read_lines(&t.segment(1));
    let mut m = parse(&lines[1]);
    m.insert("prev".into(), serde_json::json!(hash_hex(&lines[0])));
    lines[1] = serde_json::to_string(&m).unwrap();
    write_lines(&t.segment(1), &lines);
}

#[test]
fn an_empty_directory_is_not_clean() {
    let t = Trail::new();
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered);
    assert_eq!(errors(&r), vec![Problem::NoSegments]);
}
