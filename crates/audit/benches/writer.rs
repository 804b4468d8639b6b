//! Writer throughput for statement-sized records (about 400 bytes of payload):
//! append then commit, with one commit per record (the worst case) and one per
//! group of 64 records (what the group-commit loop does under load).
//!
//! Target: at least 100,000 records/s. A second group times the verifier.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use maskgate_audit::{SigningKey, Writer, WriterConfig};
use serde::Serialize;

/// Shaped like the statement records the proxy will write.
#[derive(Serialize)]
struct Statement<'a> {
    session: &'a str,
    account: &'a str,
    client: &'a str,
    application_name: &'a str,
    statement: &'a str,
    class: &'a str,
    relations: [&'a str; 2],
    masked: [&'a str; 1],
    decision: &'a str,
    rows: u64,
    bytes: u64,
    duration_us: u64,
}

fn statement(i: u64) -> Statement<'static> {
    Statement {
        session: "s-00000042",
        account: "clerk.berne",
        client: "10.1.2.3:51234",
        application_name: "benefits-ui",
        statement: "SELECT p.id, p.name, c.amount FROM participants p JOIN contributions c ON c.participant = p.id WHERE p.ahv = $1 AND c.year = $2",
        class: "select",
        relations: ["participants", "contributions"],
        masked: ["participants.name"],
        decision: "rewritten",
        rows: i % 13,
        bytes: 1024 + i,
        duration_us: 731,
    }
}

fn open(dir: &std::path::Path) -> Writer {
    let config = WriterConfig {
        max_segment_bytes: 64 * 1024 * 1024,
        max_segment_age: Duration::from_secs(3600),
        signing_key: SigningKey::generate(),
        keep_last_record: false,
    };
    Writer::open(dir, config).expect("open writer")
}

fn bench(c: &mut Criterion) {
    let payload_len = serde_json::to_vec(&statement(1))
        .map(|v| v.len())
        .unwrap_or(0);
    eprintln!("payload: {payload_len} bytes of JSON");

    let mut group = c.benchmark_group("writer");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));

    // A fresh directory per batch keeps the disk use of a run bounded.
    const PER_RECORD: u64 = 20_000;
    group.throughput(Throughput::Elements(PER_RECORD));
    group.bench_function("append+commit each", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let w = open(dir.path());
                (dir, w)
            },
            |(dir, mut w)| {
                for i in 0..PER_RECORD {
                    w.append("statement", &statement(i)).expect("append");
                    w.commit().expect("commit");
                }
                (dir, w)
            },
            BatchSize::PerIteration,
        );
    });

    const GROUP: u64 = 64;
    const GROUPS: u64 = 400;
    group.throughput(Throughput::Elements(GROUP * GROUPS));
    group.bench_function("append x64 + commit", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let w = open(dir.path());
                (dir, w)
            },
            |(dir, mut w)| {
                for g in 0..GROUPS {
                    for i in 0..GROUP {
                        w.append("statement", &statement(g * GROUP + i))
                            .expect("append");
                    }
                    w.commit().expect("commit");
                }
                (dir, w)
            },
            BatchSize::PerIteration,
        );
    });

    // The same through a serde_json map, as a caller building records dynamically would.
    let value = serde_json::to_value(statement(7)).expect("value");
    group.bench_function("append x64 + commit (json map)", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let w = open(dir.path());
                (dir, w)
            },
            |(dir, mut w)| {
                for _ in 0..GROUPS {
                    for _ in 0..GROUP {
                        w.append("statement", &value).expect("append");
                    }
                    w.commit().expect("commit");
                }
                (dir, w)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// The verifier over 100,000 statement records (about 56 MB, in 8 MiB segments
/// so that cross-segment checks are part of the figure).
fn bench_verify(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::generate();
    let public = key.public_key();
    let config = WriterConfig {
        max_segment_bytes: 8 * 1024 * 1024,
        max_segment_age: Duration::from_secs(3600),
        signing_key: key,
        keep_last_record: false,
    };
    let mut w = Writer::open(dir.path(), config).expect("open writer");
    const N: u64 = 100_000;
    for i in 0..N {
        w.append("statement", &statement(i)).expect("append");
        if i % 64 == 63 {
            w.commit().expect("commit");
        }
        if i % 10_000 == 9_999 {
            w.checkpoint().expect("checkpoint");
        }
    }
    w.close().expect("close");
    let mut group = c.benchmark_group("verify");
    group.sample_size(10);
    group.throughput(Throughput::Elements(N));
    group.bench_function("100k records", |b| {
        b.iter(|| {
            let report = maskgate_audit::verify(dir.path(), &public).expect("verify");
            assert_eq!(report.status(), maskgate_audit::Status::Clean);
        })
    });
    group.finish();
}

criterion_group!(benches, bench, bench_verify);
criterion_main!(benches);
