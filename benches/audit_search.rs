//! `maskgate audit search` over a trail of 1,000,000 records, timed as a process
//! (start-up included), release build.
//!
//! ```text
//! cargo bench --bench audit_search
//! AUDIT_BENCH_RECORDS=200000 cargo bench --bench audit_search   # smaller
//! AUDIT_BENCH_DIR=/tmp/trail cargo bench --bench audit_search   # keep and reuse the trail
//! ```
//!
//! The trail is written with `maskgate_audit::Writer` and the proxy's own record
//! structs, as the proxy writes it: sessions of a login, 20 statements each with
//! its sealed constants and its statement_end, and a session_end; 200 accounts,
//! 50 tables, 2% of statements denied. Target: every search under 2 s on a 2-core
//! machine. The trail is freshly written, so it is in the page cache: the numbers
//! are for a warm cache (a cold read of ~0.5 GB adds the disk's time).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use maskgate_audit::{Sealed, Sealer, SigningKey, Writer, WriterConfig};
use maskgate_proxy::audit::{
    kind, Login, Payload, Secret, SessionEnd, SessionFacts, Statement, StatementEnd, TableFacts,
};
use serde::Serialize;

#[derive(Serialize)]
struct WithSeal<'a> {
    #[serde(flatten)]
    payload: &'a Payload,
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed: Option<Sealed>,
}

fn append(w: &mut Writer, sealer: &Sealer, kind: &str, payload: Payload, secret: Option<Secret>) {
    w.append_with(kind, |seq| {
        let sealed = match &secret {
            Some(s) => {
                Some(sealer.seal(&serde_json::to_vec(s).unwrap(), seq.to_string().as_bytes())?)
            }
            None => None,
        };
        Ok(WithSeal {
            payload: &payload,
            sealed,
        })
    })
    .expect("append");
}

/// Writes about `records` records; returns how many and the time of the middle one.
fn generate(dir: &Path, records: u64) -> (u64, String) {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let seal = keys.join("seal.keys");
    maskgate_audit::keys::generate_seal_key_file(&seal, "k1").unwrap();
    let sealer = Sealer::load(&seal).unwrap();
    let trail = dir.join("trail");
    let mut w = Writer::open(&trail, WriterConfig::new(SigningKey::generate())).unwrap();
    let tables: Vec<Arc<TableFacts>> = (0..50)
        .map(|t| {
            Arc::new(TableFacts {
                table: format!("public.table_{t}"),
                masked: vec![format!("ssn_{t}:hash"), "name:initials".to_owned()],
                denied: vec![],
                filtered_by: vec!["clerk".to_owned()],
                pinned_by: vec![],
                roles: vec!["clerk".to_owned(), "auditor".to_owned()],
            })
        })
        .collect();
    let mut n = 0u64;
    let mut session_no = 0u64;
    let mut middle = String::new();
    while n < records {
        session_no += 1;
        let session = format!("0badcafe-{session_no}");
        let user = format!("user-{}", session_no % 200);
        let client = format!(
            "10.{}.{}.{}:{}",
            session_no % 7,
            session_no % 251,
            session_no % 13,
            40000 + session_no % 20000
        );
        append(
            &mut w,
            &sealer,
            kind::LOGIN,
            Payload::Login(Login {
                outcome: "admitted",
                session: Some(session.clone()),
                client: client.clone(),
                user: Some(user.clone()),
                reason: None,
                detail: None,
                facts: Some(SessionFacts {
                    login: user.clone(),
                    account_name: None,
                    roles: vec!["clerk".to_owned()],
                    restricted: true,
                    database: "register".to_owned(),
                    application_name: Some("benefits-ui".to_owned()),
                    tls: Some("TLSv1.3".to_owned()),
                    client_certificate: None,
                    policy: "sha256:0123456789abcdef".to_owned(),
                }),
            }),
            None,
        );
        n += 1;
        for stmt in 1..=20u64 {
            let i = session_no * 20 + stmt;
            let denied = i % 50 == 0;
            let t = (i * 7) % 50;
            append(&mut w, &sealer, kind::STATEMENT, Payload::Statement(Statement {
                session: session.clone(),
                stmt,
                user: user.clone(),
                client: client.clone(),
                application_name: Some("benefits-ui".to_owned()),
                protocol: "extended",
                statement: format!("SELECT p.id, p.name, c.amount FROM public.table_{t} p JOIN public.table_{} c ON c.participant = p.id WHERE p.ahv = $1 AND c.year = $L1", (t + 1) % 50),
                cut: false,
                class: "read".to_owned(),
                tables: vec![tables[t as usize].clone(), tables[((t + 1) % 50) as usize].clone()],
                written: vec![],
                decision: if denied { "denied" } else if i % 13 == 0 { "allowed" } else { "rewritten" },
                would: None,
                would_sqlstate: None,
                would_message: None,
                reason: denied.then_some("policy"),
                sqlstate: denied.then(|| "42501".to_owned()),
                message: denied.then(|| "maskgate: column ssn may not be read".to_owned()),
                sealed_values: 2,
                keys: Vec::new(),
            }), Some(Secret {
                literals: vec!["2024".to_owned()],
                params: vec![Some(format!("756.{:04}.{:04}.{:02}", i % 9999, i % 7777, i % 97))],
            }));
            append(
                &mut w,
                &sealer,
                kind::STATEMENT_END,
                Payload::StatementEnd(StatementEnd {
                    session: session.clone(),
                    stmt,
                    outcome: if denied { "failed" } else { "completed" },
                    sqlstate: denied.then(|| "42501".to_owned()),
                    stopped_by: None,
                    would_stop: None,
                    rows: i % 17,
                    bytes: (i % 17) * 120,
                    duration_us: 500 + i % 1000,
                }),
                None,
            );
            n += 2;
            if n % 64 < 2 {
                w.commit().unwrap();
            }
            if middle.is_empty() && n >= records / 2 {
                w.commit().unwrap();
                std::thread::sleep(Duration::from_millis(5));
                middle = time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        append(
            &mut w,
            &sealer,
            kind::SESSION_END,
            Payload::SessionEnd(SessionEnd {
                session,
                user,
                client,
                end: "client",
                detail: None,
                duration_ms: 1234,
                statements: 20,
                rows: 100,
                bytes: 12000,
            }),
            None,
        );
        n += 1;
        if n % 2000 < 45 {
            w.checkpoint().unwrap();
        }
    }
    w.close().unwrap();
    (n, middle)
}

fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs with no flag: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let records: u64 = std::env::var("AUDIT_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let temp;
    let base: PathBuf = match std::env::var_os("AUDIT_BENCH_DIR") {
        Some(d) => d.into(),
        None => {
            temp = tempfile::tempdir().unwrap();
            temp.path().to_owned()
        }
    };
    let trail = base.join("trail");
    let middle_file = base.join("middle");
    let middle = if trail.exists() && middle_file.exists() {
        eprintln!("reusing {}", trail.display());
        std::fs::read_to_string(&middle_file).unwrap()
    } else {
        let started = Instant::now();
        let (n, middle) = generate(&base, records);
        std::fs::write(&middle_file, &middle).unwrap();
        eprintln!(
            "wrote {n} records ({:.0} MB) in {:.1} s",
            du(&trail) as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        middle
    };
    let tool_log = base.join("tool-uses.jsonl");
    let tool_log = tool_log.to_str().unwrap();
    let searches: Vec<(&str, Vec<&str>)> = vec![
        (
            "account + table (selective)",
            vec!["--account", "user-17", "--table", "public.table_3"],
        ),
        ("no match (pure scan)", vec!["--account", "nobody"]),
        (
            "denied, no limit, json",
            vec!["--decision", "denied", "--limit", "0", "--format", "json"],
        ),
        (
            "client CIDR, no limit",
            vec!["--client", "10.3.17.0/24", "--limit", "0"],
        ),
        (
            "since middle, statements, limit 100",
            vec!["--since", &middle, "--kind", "statement", "--limit", "100"],
        ),
        ("masked column, limit 1000", vec!["--column", "ssn_42"]),
    ];
    for (name, args) in &searches {
        let mut times = Vec::new();
        let mut lines = 0;
        for _ in 0..3 {
            let started = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_maskgate"))
                .args(["audit", "search"])
                .arg(&trail)
                .args(args)
                .args(["--tool-log", tool_log])
                .stderr(Stdio::inherit())
                .output()
                .expect("run maskgate");
            times.push(started.elapsed());
            assert!(out.status.success(), "{name} failed");
            lines = out.stdout.iter().filter(|b| **b == b'\n').count();
        }
        times.sort();
        println!(
            "{name:<40} min {:>6.3} s  median {:>6.3} s  ({lines} output lines)",
            times[0].as_secs_f64(),
            times[1].as_secs_f64()
        );
    }
}
