//! The writer's life: rotation, clean close, restart, crash and recovery, and the
//! verifier's verdict at each step.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::thread::sleep;
use std::time::Duration;

use common::*;
use maskgate_audit::{
    Problem, RecordError, SegmentEnd, SeqRange, Severity, Status, WriteError, Writer, WriterConfig,
};
use serde_json::json;

#[test]
fn clean_after_close() {
    let t = closed_trail(10, 1 << 20);
    let r = t.verify();
    assert_eq!(r.status(), Status::Clean, "{r}");
    assert!(r.findings().is_empty());
    assert_eq!(r.segments().len(), 1);
    assert_eq!(r.segments()[0].end, Some(SegmentEnd::Close));
    assert_eq!(r.first_seq(), Some(1));
    // segment_start, 10 statements, 2 periodic checkpoints, the final one.
    assert_eq!(r.last_seq(), Some(14));
    assert_eq!(r.records(), 14);
}

#[test]
fn records_are_what_the_format_says() {
    let t = closed_trail(3, 1 << 20);
    let lines = read_lines(&t.segment(1));
    let start = parse(&lines[0]);
    assert_eq!(start["kind"], "segment_start");
    assert_eq!(start["seq"], 1);
    assert_eq!(start["prev"], "0".repeat(64));
    assert_eq!(start["segment"], "audit-000001.jsonl");
    assert_eq!(start["prev_segment"], serde_json::Value::Null);
    assert!(lines[0].starts_with("{\"seq\":1,\"time\":\""));
    for pair in lines.windows(2) {
        assert_eq!(parse(&pair[1])["prev"], hash_hex(&pair[0]));
        assert_eq!(seq(&pair[1]), seq(&pair[0]) + 1);
    }
    let stmt = parse(&lines[1]);
    assert_eq!(stmt["kind"], "statement");
    assert_eq!(stmt["account"], "clerk.berne");
    assert!(time::OffsetDateTime::parse(
        stmt["time"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());
    let last = parse(lines.last().unwrap());
    assert_eq!(last["kind"], "checkpoint");
    assert_eq!(last["end"], "close");
    assert_eq!(last["first"], 1);
    assert_eq!(last["last"], seq(&lines[lines.len() - 2]));
    assert_eq!(last["last_hash"], hash_hex(&lines[lines.len() - 2]));
    assert_eq!(last["signer"], t.public.fingerprint());
}

#[test]
fn rotation_by_size_stays_clean_and_chains_across_segments() {
    let t = closed_trail(60, 4096);
    let r = t.verify();
    assert_eq!(r.status(), Status::Clean, "{r}");
    let segs = r.segments();
    assert!(segs.len() >= 5, "{r}");
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s.index, i as u64 + 1);
        assert_eq!(s.name, format!("audit-{:06}.jsonl", i + 1));
        let want = if i + 1 == segs.len() {
            SegmentEnd::Close
        } else {
            SegmentEnd::Rotate
        };
        assert_eq!(s.end, Some(want));
        if i > 0 {
            assert_eq!(s.first_seq, segs[i - 1].last_seq.map(|l| l + 1));
        }
        // Size is checked before each append: one record and the final checkpoint past it.
        assert!(fs::metadata(t.segment(s.index)).unwrap().len() < 4096 + 2048);
    }
    let second = read_lines(&t.segment(2));
    let start = parse(&second[0]);
    assert_eq!(start["prev_segment"], "audit-000001.jsonl");
    let first = read_lines(&t.segment(1));
    assert_eq!(start["prev_hash"], hash_hex(first.last().unwrap()));
}

#[test]
fn rotation_by_age() {
    let t = Trail::new();
    let mut config = t.config(1 << 20);
    config.max_segment_age = Duration::from_millis(50);
    let mut w = Writer::open(t.path(), config).unwrap();
    w.append("statement", &statement(1)).unwrap();
    w.commit().unwrap();
    sleep(Duration::from_millis(80));
    assert_eq!(w.segment_name(), "audit-000001.jsonl");
    w.append("statement", &statement(2)).unwrap();
    assert_eq!(w.segment_name(), "audit-000002.jsonl");
    // A checkpoint also rotates an old segment that holds records…
    sleep(Duration::from_millis(80));
    w.checkpoint().unwrap();
    assert_eq!(w.segment_name(), "audit-000003.jsonl");
    // …but an idle one is not rotated for age alone.
    sleep(Duration::from_millis(80));
    assert_eq!(w.checkpoint().unwrap(), Some(w.next_seq() - 1));
    assert_eq!(w.checkpoint().unwrap(), None);
    assert_eq!(w.segment_name(), "audit-000003.jsonl");
    w.close().unwrap();
    assert_eq!(t.verify().status(), Status::Clean);
}

#[test]
fn a_running_writer_is_never_reported_clean() {
    let t = Trail::new();
    let mut w = t.open(1 << 20);
    for i in 0..5 {
        w.append("statement", &statement(i)).unwrap();
    }
    let cp = w.checkpoint().unwrap().unwrap();
    assert_eq!(cp, 7);
    // Idle: no new checkpoint.
    assert_eq!(w.checkpoint().unwrap(), None);
    let r = t.verify();
    assert_eq!(r.status(), Status::UnsealedTail, "{r}");
    assert!(r.unsealed().is_empty());
    assert_eq!(problems(&r), vec![Problem::OpenSegment]);

    w.append("statement", &statement(9)).unwrap();
    w.append("statement", &statement(10)).unwrap();
    w.commit().unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::UnsealedTail, "{r}");
    assert_eq!(r.unsealed(), &[SeqRange { first: 8, last: 9 }]);
    w.close().unwrap();
    assert_eq!(t.verify().status(), Status::Clean);
}

#[test]
fn restart_after_clean_close_continues_the_chain() {
    let t = closed_trail(7, 1 << 20);
    let last = t.verify().last_seq().unwrap();
    let mut w = t.open(1 << 20);
    assert!(w.recovery().is_none());
    assert_eq!(w.segment_name(), "audit-000002.jsonl");
    assert_eq!(w.next_seq(), last + 2);
    w.append("login", &json!({"account": "a", "admitted": true}))
        .unwrap();
    w.close().unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::Clean, "{r}");
    assert_eq!(r.segments().len(), 2);
    let lines = read_lines(&t.segment(2));
    assert_eq!(lines.len(), 3, "no recovery record after a clean close");
}

/// Simulates kill -9: records committed, some not yet covered by a checkpoint,
/// then the writer vanishes without a final checkpoint and a half-written line
/// is left at the end of the file.
fn crashed_trail(torn: &[u8]) -> (Trail, u64, u64) {
    let t = Trail::new();
    let mut w = t.open(1 << 20);
    for i in 0..4 {
        w.append("statement", &statement(i)).unwrap();
    }
    let sealed = w.checkpoint().unwrap().unwrap();
    for i in 0..3 {
        w.append("statement", &statement(i)).unwrap();
    }
    let last = w.next_seq() - 1;
    drop(w); // commits the buffer, signs nothing
    let mut f = OpenOptions::new().append(true).open(t.segment(1)).unwrap();
    f.write_all(torn).unwrap();
    (t, sealed, last)
}

#[test]
fn crash_before_restart_reports_the_unsealed_tail() {
    let (t, sealed, last) = crashed_trail(b"{\"seq\":99,\"time\":\"20");
    let r = t.verify();
    assert_eq!(r.status(), Status::UnsealedTail, "{r}");
    assert_eq!(
        r.unsealed(),
        &[SeqRange {
            first: sealed + 1,
            last
        }]
    );
    assert!(
        has(&r, |p| *p
            == Problem::TornTail {
                bytes: 20,
                declared: false
            }),
        "{r}"
    );
    assert!(has(&r, |p| *p == Problem::OpenSegment));
}

#[test]
fn crash_then_recovery_declares_exactly_and_never_seals_old_records() {
    let torn = b"{\"seq\":99,\"time\":\"20";
    let (t, sealed, last) = crashed_trail(torn);
    let before = fs::read(t.segment(1)).unwrap();

    let mut w = t.open(1 << 20);
    let rec = w.recovery().unwrap().clone();
    assert_eq!(rec.last_checkpoint_seq, Some(sealed));
    assert_eq!(
        (rec.unsealed_first, rec.unsealed_last),
        (Some(sealed + 1), Some(last))
    );
    assert_eq!(rec.torn_bytes, torn.len() as u64);
    assert_eq!(rec.segments.len(), 1);
    assert_eq!(rec.segments[0].segment, "audit-000001.jsonl");
    assert!(!rec.segments[0].closed);
    assert_eq!(w.segment_name(), "audit-000002.jsonl");
    assert_eq!(
        w.next_seq(),
        last + 3,
        "segment_start and recovery follow the last complete record"
    );
    w.append("statement", &statement(100)).unwrap();
    w.checkpoint().unwrap();
    w.close().unwrap();

    // The old segment, torn tail included, is untouched.
    assert_eq!(fs::read(t.segment(1)).unwrap(), before);
    let new = read_lines(&t.segment(2));
    assert_eq!(kind(&new[0]), "segment_start");
    assert_eq!(kind(&new[1]), "recovery");
    // Checkpoints after the restart cover only the new segment.
    for line in new.iter().filter(|l| kind(l) == "checkpoint") {
        assert_eq!(parse(line)["first"], last + 1);
    }

    let r = t.verify();
    assert_eq!(r.status(), Status::UnsealedTail, "{r}");
    assert_eq!(r.errors().count(), 0, "{r}");
    assert_eq!(
        r.unsealed(),
        &[SeqRange {
            first: sealed + 1,
            last
        }]
    );
    assert!(has(&r, |p| *p == Problem::Crashed));
    assert!(has(&r, |p| *p
        == Problem::TornTail {
            bytes: torn.len() as u64,
            declared: true
        }));
    assert!(r
        .findings()
        .iter()
        .all(|f| f.segment.as_deref() == Some("audit-000001.jsonl")));
}

#[test]
fn editing_a_crashed_segment_after_recovery_is_tampering() {
    let (t, _, _) = crashed_trail(b"");
    t.open(1 << 20).close().unwrap();
    // Remove the last unsealed record of the crashed segment.
    let mut lines = read_lines(&t.segment(1));
    lines.pop();
    write_lines(&t.segment(1), &lines);
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert!(
        has(&r, |p| matches!(p, Problem::RecoveryMismatch { .. })),
        "{r}"
    );
    assert!(has(&r, |p| matches!(p, Problem::Deleted { .. })), "{r}");
}

#[test]
fn a_forged_recovery_declaration_is_caught() {
    let (t, _, _) = crashed_trail(b"xx");
    t.open(1 << 20).close().unwrap();
    let mut lines = read_lines(&t.segment(2));
    let mut m = parse(&lines[1]);
    m.insert("torn_bytes".into(), json!(0));
    lines[1] = serde_json::to_string(&m).unwrap();
    write_lines(&t.segment(2), &lines);
    relink(&t, None);
    let r = t.verify();
    assert_eq!(r.status(), Status::Tampered, "{r}");
    assert!(
        has(&r, |p| *p
            == Problem::RecoveryMismatch {
                field: "torn_bytes"
            }),
        "{r}"
    );
}

#[test]
fn crash_right_after_rotation_leaves_an_empty_segment_that_is_declared() {
    let (t, _, _) = crashed_trail(b"");
    // The next file was created but nothing reached it.
    fs::File::create(t.segment(2)).unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::UnsealedTail, "{r}");
    assert!(has(&r, |p| *p == Problem::EmptySegment { declared: false }));

    let w = t.open(1 << 20);
    let rec = w.recovery().unwrap();
    assert_eq!(rec.segments.len(), 2);
    assert_eq!(rec.segments[1].lines, 0);
    assert_eq!(w.segment_name(), "audit-000003.jsonl");
    w.close().unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::UnsealedTail, "{r}");
    assert_eq!(r.errors().count(), 0, "{r}");
    assert!(has(&r, |p| *p == Problem::EmptySegment { declared: true }));
}

#[test]
fn two_crashes_in_a_row() {
    let (t, _, _) = crashed_trail(b"torn");
    let mut w = t.open(1 << 20);
    w.append("statement", &statement(1)).unwrap();
    drop(w);
    let mut w = t.open(1 << 20);
    w.append("statement", &statement(2)).unwrap();
    w.close().unwrap();
    let r = t.verify();
    assert_eq!(r.status(), Status::UnsealedTail, "{r}");
    assert_eq!(r.errors().count(), 0, "{r}");
    assert_eq!(r.unsealed().len(), 2, "{r}");
}

#[test]
fn an_unreadable_last_line_stops_the_writer_and_is_left_alone() {
    let t = closed_trail(2, 1 << 20);
    let mut f = OpenOptions::new().append(true).open(t.segment(1)).unwrap();
    f.write_all(b"garbage\n").unwrap();
    let before = fs::read(t.segment(1)).unwrap();
    match Writer::open(t.path(), t.config(1 << 20)) {
        Err(WriteError::Recovery { segment, .. }) => assert_eq!(segment, "audit-000001.jsonl"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("opened"),
    }
    assert_eq!(fs::read(t.segment(1)).unwrap(), before);
    assert_eq!(t.segments().len(), 1);
}

#[test]
fn one_writer_per_directory() {
    let t = Trail::new();
    let w = t.open(1 << 20);
    match Writer::open(t.path(), t.config(1 << 20)) {
        Err(WriteError::Locked { .. }) => {}
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a second writer opened the directory"),
    }
    w.close().unwrap();
    t.open(1 << 20).close().unwrap();
}

#[test]
fn refused_records_change_nothing() {
    let t = Trail::new();
    let mut w = t.open(1 << 20);
    let next = w.next_seq();
    assert!(matches!(
        w.append("checkpoint", &json!({})),
        Err(WriteError::Record(RecordError::ReservedKind("checkpoint")))
    ));
    assert!(matches!(
        w.append("statement", &json!({"seq": 1})),
        Err(WriteError::Record(RecordError::ReservedKey("seq")))
    ));
    assert!(matches!(
        w.append("statement", &json!([1])),
        Err(WriteError::Record(RecordError::NotAnObject))
    ));
    assert!(matches!(
        w.append("Bad Kind", &json!({})),
        Err(WriteError::Record(RecordError::InvalidKind))
    ));
    assert_eq!(w.next_seq(), next);
    assert_eq!(w.buffered_bytes(), 0);
    assert_eq!(w.append("statement", &json!({})).unwrap(), next);
    w.close().unwrap();
    assert_eq!(t.verify().status(), Status::Clean);
}

#[test]
fn bad_configuration_is_refused() {
    let t = Trail::new();
    let mut c = t.config(100);
    assert!(matches!(
        Writer::open(t.path(), c),
        Err(WriteError::Config(_))
    ));
    c = t.config(1 << 20);
    c.max_segment_age = Duration::ZERO;
    assert!(matches!(
        Writer::open(t.path(), c),
        Err(WriteError::Config(_))
    ));
    let _ = WriterConfig::new(t.key());
}

#[test]
fn sync_makes_records_visible_and_durable() {
    let t = Trail::new();
    let mut w = t.open(1 << 20);
    w.append("statement", &statement(1)).unwrap();
    assert!(w.buffered_bytes() > 300);
    w.sync().unwrap();
    assert_eq!(w.buffered_bytes(), 0);
    assert_eq!(read_lines(&t.segment(1)).len(), 2);
    w.close().unwrap();
}

#[test]
fn the_report_serializes_and_prints() {
    let (t, sealed, last) = crashed_trail(b"torn");
    let r = t.verify();
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["status"], "unsealed_tail");
    assert_eq!(v["unsealed"][0]["first"], sealed + 1);
    assert_eq!(v["unsealed"][0]["last"], last);
    let kinds: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["problem"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"torn_tail")
            && kinds.contains(&"open_segment")
            && kinds.contains(&"unsealed")
    );
    assert!(v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["severity"] == "unsealed"));
    let text = r.to_string();
    assert!(text.starts_with("audit trail: UNSEALED TAIL"), "{text}");
    assert!(
        text.contains(&format!("unsealed: records {} to {last}", sealed + 1)),
        "{text}"
    );
    assert!(r
        .findings()
        .iter()
        .all(|f| f.severity == Severity::Unsealed));
}

#[test]
fn append_with_sees_the_seq_after_a_rotation() {
    let t = Trail::new();
    let mut w = t.open(4096);
    let mut seen = Vec::new();
    for i in 0..30 {
        let before = w.next_seq();
        let seq = w
            .append_with("statement", |seq| {
                seen.push(seq);
                Ok(statement(i))
            })
            .unwrap();
        assert_eq!(seen.last(), Some(&seq));
        assert!(seq >= before);
    }
    assert!(
        w.segment_name() != "audit-000001.jsonl",
        "rotated at least once"
    );
    // A failing builder appends nothing.
    let next = w.next_seq();
    let err = w.append_with("statement", |_| {
        Err::<serde_json::Value, _>(maskgate_audit::SealError::Encrypt)
    });
    assert!(matches!(err, Err(WriteError::Seal(_))));
    assert_eq!(w.next_seq(), next);
    w.close().unwrap();
    assert_eq!(t.verify().status(), Status::Clean);
}
