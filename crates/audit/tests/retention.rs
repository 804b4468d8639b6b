//! Retention and export: finished segments copied with receipts, the oldest ones
//! removed behind a sealed `retention` record, and the verifier accepting exactly
//! that removed prefix and nothing else.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use maskgate_audit::retention::RECEIPTS_FILE;
use maskgate_audit::{
    plan_export, plan_retention, ExportError, Problem, RemovedPrefix, RetentionPlan, Status, Writer,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// Everything is past a cutoff an hour from now.
fn future() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::from_secs(3600)
}

/// A closed trail of several small segments.
fn segmented() -> Trail {
    let t = closed_trail(60, 4096);
    assert!(t.segments().len() >= 5, "{}", t.segments().len());
    t
}

fn export(t: &Trail, archive: &Path) -> Vec<maskgate_audit::Receipt> {
    plan_export(t.path(), archive, &t.public)
        .unwrap()
        .run("tester")
        .unwrap()
}

fn plan(t: &Trail, w: &Writer, max: usize) -> RetentionPlan {
    plan_retention(t.path(), w.segment_name(), &t.public, future(), max).unwrap()
}

/// Exports everything, opens a writer and removes at most `max` old segments.
/// Returns the open writer, the archive and the record's seq.
fn export_and_remove(t: &Trail, max: usize) -> (Writer, tempfile::TempDir, u64) {
    let archive = tempfile::tempdir().unwrap();
    export(t, archive.path());
    let mut w = t.open(4096);
    let p = plan(t, &w, max);
    assert!(!p.body.removed.is_empty(), "{p:?}");
    let removal = w.remove_segments(&p.body).unwrap();
    assert!(removal.error.is_none(), "{removal:?}");
    assert_eq!(removal.deleted, p.body.removed.len());
    (w, archive, removal.record)
}

fn retention_records(t: &Trail) -> Vec<Value> {
    t.segments()
        .iter()
        .flat_map(|p| read_lines(p))
        .filter(|l| kind(l) == "retention")
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect()
}

#[test]
fn export_copies_finished_segments_once_with_receipts() {
    let t = segmented();
    let archive = tempfile::tempdir().unwrap();
    let receipts = export(&t, archive.path());
    assert_eq!(receipts.len(), t.segments().len());
    for (r, path) in receipts.iter().zip(t.segments()) {
        let copy = archive.path().join(&r.segment);
        assert_eq!(fs::read(&copy).unwrap(), fs::read(&path).unwrap());
        assert_eq!(r.sha256, hash_hex_bytes(&fs::read(&path).unwrap()));
        assert_eq!(r.by, "tester");
        assert!(r.to.ends_with(&r.segment), "{}", r.to);
    }
    let file = t.path().join(RECEIPTS_FILE);
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(read_lines(&file).len(), receipts.len());
    // Nothing new: nothing copied, no receipt added; the trail still verifies.
    assert!(export(&t, archive.path()).is_empty());
    assert_eq!(read_lines(&file).len(), receipts.len());
    assert_eq!(t.verify().status(), Status::Clean);

    // The segment being written is not finished: it waits for its end.
    let mut w = t.open(1 << 20);
    w.append("statement", &statement(1)).unwrap();
    w.checkpoint().unwrap();
    assert!(export(&t, archive.path()).is_empty());
    w.close().unwrap();
    let more = export(&t, archive.path());
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].index, receipts.len() as u64 + 1);
}

fn hash_hex_bytes(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn export_refuses_a_tampered_trail_and_never_overwrites() {
    let t = segmented();
    let archive = tempfile::tempdir().unwrap();
    let mut lines = read_lines(&t.segment(2));
    let i = find_kind(&lines, "statement", 0);
    let original = lines[i].clone();
    lines[i] = lines[i].replacen("\"rows\":", "\"rows\":1", 1);
    write_lines(&t.segment(2), &lines);
    match plan_export(t.path(), archive.path(), &t.public) {
        Err(ExportError::Tampered(report)) => assert_eq!(report.status(), Status::Tampered),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a tampered trail was exported"),
    }
    assert_eq!(fs::read_dir(archive.path()).unwrap().count(), 0);
    lines[i] = original;
    write_lines(&t.segment(2), &lines);

    // A different file under a segment's name in the archive stops the export.
    fs::write(archive.path().join("audit-000002.jsonl"), "other\n").unwrap();
    let err = plan_export(t.path(), archive.path(), &t.public)
        .unwrap()
        .run("tester")
        .unwrap_err();
    assert!(matches!(err, ExportError::Conflict { .. }), "{err}");
    assert_eq!(
        fs::read(archive.path().join("audit-000002.jsonl")).unwrap(),
        b"other\n"
    );
    // Segment 1 was exported before the conflict; an identical copy is accepted.
    fs::copy(t.segment(2), archive.path().join("audit-000002.jsonl")).unwrap();
    let rest = export(&t, archive.path());
    assert_eq!(rest.first().map(|r| r.index), Some(2));
    assert_eq!(rest.len(), t.segments().len() - 1);
    let leftovers = fs::read_dir(archive.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("partial")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn exported_prefix_is_removed_behind_a_sealed_record_and_verifies_clean() {
    let t = segmented();
    let old = t.segments().len() as u64;
    let (w, _archive, record) = export_and_remove(&t, 1000);
    w.close().unwrap();
    assert_eq!(
        t.segments().len(),
        1,
        "only the segment written after remains"
    );

    let r = t.verify();
    assert_eq!(r.status(), Status::Clean, "{r}");
    let removed = r.removed_by_retention().unwrap();
    assert_eq!(removed.last_index, old);
    assert_eq!(removed.authorized_by, record);
    assert_eq!(r.first_seq(), Some(removed.last_seq + 1));
    assert!(r.to_string().contains("removed by retention"), "{r}");

    let recs = retention_records(&t);
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!(rec["removed_before"], Value::Null);
    let list = rec["removed"].as_array().unwrap();
    assert_eq!(list.len() as u64, old);
    assert_eq!(list[0]["segment"], "audit-000001.jsonl");
    assert_eq!(list[0]["first_seq"], 1);
    let receipts = read_lines(&t.path().join(RECEIPTS_FILE));
    for (entry, receipt) in list.iter().zip(&receipts) {
        assert_eq!(entry["sha256"], parse(receipt)["sha256"]);
    }
    // Exactly the envelope and the two documented fields.
    assert_eq!(rec.as_object().unwrap().len(), 6, "{rec}");
}

#[test]
fn a_second_run_names_what_earlier_runs_removed() {
    let t = segmented();
    let (mut w, archive, _) = export_and_remove(&t, 2);
    for i in 0..40 {
        w.append("statement", &statement(i)).unwrap();
        w.commit().unwrap();
    }
    w.close().unwrap();
    export(&t, archive.path());
    let mut w = t.open(4096);
    let p = plan(&t, &w, 1000);
    let before = p.body.removed_before.clone().unwrap();
    assert_eq!(before.segment, "audit-000002.jsonl");
    assert_eq!(before.index, 2);
    assert_eq!(p.body.removed[0].index, 3);
    let removal = w.remove_segments(&p.body).unwrap();
    w.close().unwrap();
    assert_eq!(t.segments().len(), 1);
    // The first run's record went with its segment: the second one vouches alone.
    assert_eq!(retention_records(&t).len(), 1);
    let r = t.verify();
    assert_eq!(r.status(), Status::Clean, "{r}");
    assert_eq!(
        r.removed_by_retention().unwrap().authorized_by,
        removal.record
    );
}

#[test]
fn a_crash_between_the_record_and_the_deletion_verifies_clean() {
    let t = segmented();
    let (w, archive, record) = export_and_remove(&t, 1000);
    w.close().unwrap();
    let removed: Vec<_> = fs::read_dir(archive.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut removed: Vec<String> = removed
        .into_iter()
        .map(|n| n.into_string().unwrap())
        .filter(|n| !t.path().join(n).exists())
        .collect();
    removed.sort();
    // Deletion goes oldest first: a crash leaves the newest of them.
    for name in removed.iter().rev().take(2) {
        fs::copy(archive.path().join(name), t.path().join(name)).unwrap();
    }
    let r = t.verify();
    assert_eq!(r.status(), Status::Clean, "{r}");
    assert_eq!(r.removed_by_retention().unwrap().authorized_by, record);
    // Or before any was deleted.
    for name in &removed {
        fs::copy(archive.path().join(name), t.path().join(name)).unwrap();
    }
    let r = t.verify();
    assert_eq!(r.status(), Status::Clean, "{r}");
    assert_eq!(r.removed_by_retention(), None);
}

#[test]
fn removing_one_more_segment_than_recorded_is_tampering() {
    let t = segmented();
    let (w, _archive, _) = export_and_remove(&t, 2);
    w.close().unwrap();
    assert_eq!(t.verify().status(), Status::Clean);
    let last = read_lines(&t.segment(3)).pop().unwrap();
    fs::remove_file(t.segment(3)).unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert_eq!(r.removed_by_retention(), None);
    let errs = errors(&r);
    assert!(errs.contains(&Problem::MissingSegments {
        first_index: 1,
        last_index: 3
    }));
    assert!(errs.contains(&Problem::Deleted {
        first: 1,
        last: seq(&last)
    }));
}

#[test]
fn removing_a_middle_segment_is_tampering() {
    let t = segmented();
    let (w, _archive, _) = export_and_remove(&t, 2);
    w.close().unwrap();
    fs::remove_file(t.segment(4)).unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert!(errors(&r).contains(&Problem::MissingSegments {
        first_index: 4,
        last_index: 4
    }));
    // The removed prefix itself is still accounted for.
    assert!(r.removed_by_retention().is_some());
}

#[test]
fn editing_the_retention_record_is_tampering() {
    let t = segmented();
    let (w, _archive, _) = export_and_remove(&t, 2);
    w.close().unwrap();
    let path = t
        .segments()
        .into_iter()
        .find(|p| read_lines(p).iter().any(|l| kind(l) == "retention"));
    let path = path.unwrap();
    let mut lines = read_lines(&path);
    let i = find_kind(&lines, "retention", 0);
    let mut rec = parse(&lines[i]);
    rec["removed"][1]["index"] = json!(3);
    rec["removed"][1]["segment"] = json!("audit-000003.jsonl");
    lines[i] = serde_json::to_string(&rec).unwrap();
    write_lines(&path, &lines);
    fs::remove_file(t.segment(3)).unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert!(has(&r, |p| matches!(p, Problem::BrokenLink { .. })), "{r}");
}

#[test]
fn a_retention_record_that_does_not_match_the_prefix_is_tampering() {
    // Even re-signed with the trail's own key (a writer bug, or whoever holds the
    // key): a record that names another end than the first segment chains from
    // authorizes nothing.
    let t = segmented();
    let archive = tempfile::tempdir().unwrap();
    export(&t, archive.path());
    let mut w = t.open(4096);
    let p = plan(&t, &w, 2);
    w.remove_segments(&p.body).unwrap();
    w.close().unwrap();
    // Put the removed segments back, edit the record, relink and re-sign it all.
    for n in 1..=2 {
        let name = format!("audit-{n:06}.jsonl");
        fs::copy(archive.path().join(&name), t.path().join(&name)).unwrap();
    }
    let path = t.segments().pop().unwrap();
    let mut lines = read_lines(&path);
    let i = find_kind(&lines, "retention", 0);
    let mut rec = parse(&lines[i]);
    rec["removed"][1]["last_seq"] = json!(rec["removed"][1]["last_seq"].as_u64().unwrap() - 1);
    lines[i] = serde_json::to_string(&rec).unwrap();
    write_lines(&path, &lines);
    let key = {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        ed25519_dalek::SigningKey::from_pkcs8_pem(&t.pem).unwrap()
    };
    relink(&t, Some(&key));
    assert_eq!(t.verify().status(), Status::Clean);
    fs::remove_file(t.segment(1)).unwrap();
    fs::remove_file(t.segment(2)).unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert!(errors(&r).contains(&Problem::MissingSegments {
        first_index: 1,
        last_index: 2
    }));
}

#[test]
fn an_unsealed_retention_record_authorizes_nothing() {
    // Anyone can append chained records after the last checkpoint; such a record
    // must not turn a deletion into an unsealed tail.
    let t = segmented();
    let archive = tempfile::tempdir().unwrap();
    export(&t, archive.path());
    let mut w = t.open(1 << 20);
    let p = plan(&t, &w, 2);
    w.append("statement", &statement(1)).unwrap();
    w.commit().unwrap();
    drop(w);
    let path = t.segments().pop().unwrap();
    let mut lines = read_lines(&path);
    let last = lines.last().unwrap().clone();
    let forged = format!(
        "{{\"seq\":{},\"time\":\"2025-01-01T00:00:00Z\",\"kind\":\"retention\",\"prev\":\"{}\",{}",
        seq(&last) + 1,
        hash_hex(&last),
        &serde_json::to_string(&p.body).unwrap()[1..]
    );
    lines.push(forged);
    write_lines(&path, &lines);
    fs::remove_file(t.segment(1)).unwrap();
    fs::remove_file(t.segment(2)).unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert!(errors(&r).contains(&Problem::MissingSegments {
        first_index: 1,
        last_index: 2
    }));
}

#[test]
fn segments_without_a_matching_receipt_are_kept_and_overdue() {
    let t = segmented();
    let archive = tempfile::tempdir().unwrap();
    export(&t, archive.path());
    let file = t.path().join(RECEIPTS_FILE);
    let mut receipts = read_lines(&file);
    receipts.retain(|l| parse(l)["index"] != 3);
    let mut four = parse(&receipts[2]);
    four["sha256"] = json!("0".repeat(64));
    receipts[2] = serde_json::to_string(&four).unwrap();
    write_lines(&file, &receipts);
    let w = t.open(4096);
    let p = plan(&t, &w, 1000);
    let removed: Vec<u64> = p.body.removed.iter().map(|r| r.index).collect();
    assert_eq!(removed, vec![1, 2]);
    let old = t.segments().len() as u64 - 1;
    assert_eq!(p.overdue.len() as u64, old - 2);
    assert_eq!(p.overdue[0].index, 3);
    assert!(p.overdue[0].reason.contains("no receipt"), "{p:?}");
    assert!(p.overdue[1].reason.contains("older segment"), "{p:?}");

    // Restore segment 3's receipt: now segment 4's mismatching one stops it.
    export(&t, archive.path());
    let p = plan(&t, &w, 1000);
    assert_eq!(p.body.removed.len(), 3);
    assert_eq!(p.overdue[0].index, 4);
    assert!(p.overdue[0].reason.contains("SHA-256"), "{p:?}");

    // Young segments are neither removed nor overdue.
    let p = plan_retention(
        t.path(),
        w.segment_name(),
        &t.public,
        OffsetDateTime::now_utc() - Duration::from_secs(3600),
        1000,
    )
    .unwrap();
    assert!(p.body.removed.is_empty() && p.overdue.is_empty(), "{p:?}");
    drop(w);
}

#[test]
fn a_segment_the_writer_crashed_in_goes_only_with_the_next_one() {
    let t = Trail::new();
    let mut w = t.open(4096);
    for i in 0..3 {
        w.append("statement", &statement(i)).unwrap();
    }
    w.commit().unwrap();
    drop(w); // no final checkpoint: segment 1 ends with a crash
    let mut w = t.open(4096);
    assert!(w.recovery().is_some());
    for i in 0..30 {
        w.append("statement", &statement(i)).unwrap();
        w.commit().unwrap();
    }
    w.close().unwrap();
    assert_eq!(t.verify().status(), Status::UnsealedTail);
    let archive = tempfile::tempdir().unwrap();
    export(&t, archive.path());
    let mut w = t.open(4096);
    let p = plan(&t, &w, 1);
    assert!(p.body.removed.is_empty() && p.more, "{p:?}");
    let p = plan(&t, &w, 2);
    let removed: Vec<u64> = p.body.removed.iter().map(|r| r.index).collect();
    assert_eq!(removed, vec![1, 2]);
    w.remove_segments(&p.body).unwrap();
    w.close().unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::Clean, "{r}");
    assert_eq!(
        r.removed_by_retention()
            .map(|p: RemovedPrefix| p.last_index),
        Some(2)
    );
}

#[test]
fn a_stale_plan_writes_nothing() {
    let t = segmented();
    let archive = tempfile::tempdir().unwrap();
    export(&t, archive.path());
    let mut w = t.open(4096);
    let p = plan(&t, &w, 2);
    fs::remove_file(t.segment(1)).unwrap();
    let before = fs::read(t.path().join(w.segment_name())).unwrap();
    let err = w.remove_segments(&p.body).unwrap_err();
    assert!(
        matches!(err, maskgate_audit::WriteError::StalePlan(_)),
        "{err}"
    );
    w.commit().unwrap();
    assert_eq!(fs::read(t.path().join(w.segment_name())).unwrap(), before);
    assert!(t.segment(2).exists());
    w.close().unwrap();
}

#[test]
fn deleting_the_oldest_segment_without_a_record_is_tampering() {
    let t = segmented();
    let last = read_lines(&t.segment(1)).pop().unwrap();
    fs::remove_file(t.segment(1)).unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert_eq!(
        errors(&r),
        vec![
            Problem::MissingSegments {
                first_index: 1,
                last_index: 1
            },
            Problem::Deleted {
                first: 1,
                last: seq(&last)
            }
        ],
        "{r}"
    );
}

#[test]
fn an_archive_verifies_up_to_its_last_rotation() {
    let t = segmented();
    let mut w = t.open(4096);
    for i in 0..20 {
        w.append("statement", &statement(i)).unwrap();
        w.commit().unwrap();
    }
    let archive = tempfile::tempdir().unwrap();
    let receipts = export(&t, archive.path());
    let last = receipts.last().unwrap().segment.clone();
    assert_ne!(last, w.segment_name());
    let r = maskgate_audit::verify_archive(archive.path(), &t.public).unwrap();
    assert_eq!(r.status(), Status::Clean, "{r}");
    assert_eq!(r.continues_after(), Some(last.as_str()));
    assert!(r.to_string().contains("archive: ends with"), "{r}");
    // As a whole trail, it lacks the segment after its last rotation.
    let r = maskgate_audit::verify(archive.path(), &t.public).unwrap();
    assert_eq!(errors(&r), vec![Problem::MissingNextSegment], "{r}");
    drop(w);
}
