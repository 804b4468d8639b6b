//! Detection's speed: records read per second (it must keep up with at least
//! 20,000 statements a second), and the reports over a month of records for
//! 1,000 accounts.
//!
//! `cargo bench -p maskgate-detect --bench detect`. The report part writes a real
//! trail (about 0.9 million records) into a temporary directory once and times one
//! build of each report; set `MASKGATE_BENCH_REPORT=0` to skip it.

use std::time::{Duration as StdDuration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use maskgate_audit::{SigningKey, Writer, WriterConfig};
use maskgate_detect::report::{breach, daily, Classification};
use maskgate_detect::{Detector, Fingerprinter, Settings};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::{Duration, OffsetDateTime, UtcOffset};

const STATEMENTS: u64 = 20_000;

/// One hour of 200 clerks' lookups: 20,000 statements and their ends.
fn hour_of_lookups() -> Vec<Vec<u8>> {
    let prints = Fingerprinter::new(&[3; 32]);
    let start = datetime!(2026-11-03 09:00 UTC);
    let mut lines = Vec::new();
    for i in 0..STATEMENTS {
        let user = format!("clerk{:03}", i % 200);
        let session = format!("s-{}", i % 200);
        let t = start + Duration::milliseconds((i * 180) as i64);
        let time = t.format(&Rfc3339).unwrap();
        let key = serde_json::to_string(&[
            prints.print(format!("0791{:08}", i * 7919 % 99_999_999).as_str())
        ])
        .unwrap();
        lines.push(format!(
            r#"{{"seq":{},"time":"{time}","kind":"statement","prev":"{z}","session":"{session}","stmt":{i},"user":"{user}","client":"10.0.{}.{}:5000","protocol":"extended","statement":"SELECT full_name FROM participant WHERE citizen_id = $1","class":"read","tables":[{{"table":"public.participant","masked":["citizen_id:partial"],"pinned_by":["citizen_id"],"roles":["clerk"]}}],"decision":"rewritten","sealed_values":1,"sealed":{{"key_id":"k1","nonce":"AAAAAAAAAAAAAAAA","ciphertext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},"keys":{key}}}"#,
            2 * i + 1,
            i % 200 / 250,
            i % 200,
            z = "0".repeat(64)
        ).into_bytes());
        lines.push(format!(
            r#"{{"seq":{},"time":"{time}","kind":"statement_end","prev":"{z}","session":"{session}","stmt":{i},"outcome":"completed","rows":1,"bytes":90,"duration_us":800}}"#,
            2 * i + 2,
            z = "0".repeat(64)
        ).into_bytes());
    }
    lines
}

fn ingest(c: &mut Criterion) {
    let lines = hour_of_lookups();
    let mut group = c.benchmark_group("detection");
    group.throughput(Throughput::Elements(STATEMENTS));
    group.sample_size(20);
    group.bench_function("20k lookups and their ends", |b| {
        b.iter(|| {
            let mut d = Detector::new(Settings::default(), UtcOffset::UTC);
            let mut alerts = 0;
            for line in &lines {
                alerts += d.ingest_line(line).len();
            }
            alerts
        })
    });
    group.throughput(Throughput::Elements(1));
    let prints = Fingerprinter::new(&[3; 32]);
    group.bench_function("fingerprint of one lookup key (audit writer)", |b| {
        b.iter(|| {
            prints.key(
                maskgate_detect::RawKey::Constant("'079188004321'"),
                maskgate_detect::KeyKind::Char,
            )
        })
    });
    group.finish();
}

/// A month (22 working days) of 1,000 accounts, 20 lookups a day each. The
/// writer stamps every record with the clock, so the days are in the session
/// ids, not in the times.
fn write_month(dir: &std::path::Path, key: SigningKey) -> u64 {
    let mut config = WriterConfig::new(key);
    config.max_segment_bytes = 256 << 20;
    let mut w = Writer::open(dir, config).unwrap();
    let prints = Fingerprinter::new(&[3; 32]);
    let mut records = 0;
    let start = datetime!(2026-11-02 00:00 UTC);
    let mut day = 0;
    let mut worked = 0;
    while worked < 22 {
        let date = start + Duration::days(day);
        day += 1;
        if date.weekday().number_days_from_monday() >= 5 {
            continue;
        }
        worked += 1;
        for account in 0..1000u64 {
            let user = format!("clerk{account:04}");
            let session = format!("d{day}-{account}");
            let client = format!("10.{}.{}.{}:5000", account / 250, account % 250, 7);
            w.append("login", &json!({"outcome":"admitted","session":session,"client":client,"user":user,"login":user,"roles":["clerk"],"restricted":true,"database":"register","policy":"p"})).unwrap();
            for stmt in 0..20u64 {
                let key = format!(
                    "0791{:08}",
                    (account * 1_000_003 + day as u64 * 101 + stmt * 7) % 99_999_999
                );
                let keys: Value = serde_json::to_value([prints.print(key.as_str())]).unwrap();
                w.append("statement", &json!({"session":session,"stmt":stmt,"user":user,"client":client,"protocol":"extended","statement":"SELECT full_name FROM participant WHERE citizen_id = $1","class":"read","tables":[{"table":"public.participant","masked":["citizen_id:partial"],"pinned_by":["citizen_id"],"roles":["clerk"]}],"decision":"rewritten","sealed_values":1,"keys":keys})).unwrap();
                w.append("statement_end", &json!({"session":session,"stmt":stmt,"outcome":"completed","rows":1,"bytes":90,"duration_us":800})).unwrap();
                records += 2;
            }
            w.append("session_end", &json!({"session":session,"user":user,"client":client,"end":"client","duration_ms":1,"statements":20,"rows":20,"bytes":1800})).unwrap();
            records += 2;
        }
        w.checkpoint().unwrap();
    }
    w.close().unwrap();
    records
}

fn reports(_: &mut Criterion) {
    if std::env::var("MASKGATE_BENCH_REPORT").is_ok_and(|v| v == "0") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let public = key.public_key();
    let t = Instant::now();
    let records = write_month(dir.path(), key);
    let bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "report bench: wrote {records} records ({} MB) in {:.1} s",
        bytes >> 20,
        t.elapsed().as_secs_f64()
    );
    let mut classification = Classification::default();
    classification.tables.insert(
        "public.participant".into(),
        vec![("citizen_id".into(), vec!["pii.identifier".into()])],
    );
    for a in 0..1000 {
        classification.accounts.insert(
            format!("clerk{a:04}"),
            (format!("Clerk {a}"), vec!["clerk".into()]),
        );
    }
    // The writer stamps records with the clock: the month's records all carry
    // today's time, so the period is "the last 31 days".
    let to = OffsetDateTime::now_utc() + Duration::minutes(1);
    let from = to - Duration::days(31);
    let t = Instant::now();
    let report = daily::build(dir.path(), from, to, &classification, &Default::default()).unwrap();
    let html = report.to_html();
    println!(
        "report bench: daily report over the whole month: {:.2} s ({} statements, {} bytes of HTML)",
        t.elapsed().as_secs_f64(),
        report.totals.statements,
        html.len()
    );
    let t = Instant::now();
    let b = breach::build(
        dir.path(),
        &public,
        "clerk0042",
        (from, to),
        &classification,
    )
    .unwrap();
    println!(
        "report bench: breach report for one account over the month (verifying the whole trail first): {:.2} s ({} statements, {} people)",
        t.elapsed().as_secs_f64(),
        b.statements,
        b.data_subjects.looked_up
    );
    let t = Instant::now();
    let mut d = Detector::new(Settings::default(), UtcOffset::UTC);
    d.begin_replay();
    maskgate_detect::trail::read_since(
        dir.path(),
        Some(OffsetDateTime::now_utc() - StdDuration::from_secs(400 * 86400)),
        |line| {
            d.ingest_line(line);
        },
    )
    .unwrap();
    let pending = d.end_replay();
    println!(
        "report bench: detection rebuilding its state from the month at start: {:.2} s ({} records, {} alerts held back)",
        t.elapsed().as_secs_f64(),
        d.records(),
        pending.len()
    );
}

criterion_group!(benches, ingest, reports);
criterion_main!(benches);
