//! The analyzer cannot be crashed or monopolized (issue 9): left-deep chains
//! at ten times the sizes that overflowed maskgate's stack are answered with
//! a PostgreSQL error, in both protocols, while the process stays up and
//! another session's `SELECT 1` completes; and legitimate depth (nested
//! parentheses and subqueries, long IN lists and OR filters) still runs for a
//! restricted account.
//!
//! These run the real `maskgate` binary, so a stack overflow ends a child
//! process instead of the test. Latencies are printed for the report, never
//! asserted.

#[path = "common/enforcement.rs"]
mod enforcement;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enforcement::*;
use maskgate_testkit::{free_port, register, TestProxy};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio_postgres::{Client, NoTls};

/// A bound on how long anything may take before the test calls it a hang;
/// not a performance requirement.
const HANG: Duration = Duration::from_secs(300);

/// The hostile account and the account of the other session.
const HOSTILE: &str = ANALYST;
const BYSTANDER: &str = CLERK_79;

/// The `maskgate` binary serving the register with the example policy (no
/// rolling quotas), restarted when it dies.
struct Binary {
    template: TestProxy,
    config: std::path::PathBuf,
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Binary {
    async fn start() -> Binary {
        let mut options = register::proxy_options(
            &register::accounts(),
            register::without_quotas(register::example_policy_files().unwrap()),
        );
        // The production default, so the analyzer (not the framing) meets these statements.
        options.max_message_size = 64 << 20;
        let template = TestProxy::start(cluster(), options)
            .await
            .expect("the template proxy starts");
        let config = template.config_dir().join("binary.toml");
        let (child, port, log) = spawn(&template, &config).await;
        Binary {
            template,
            config,
            child,
            port,
            log,
        }
    }

    fn conn_string(&self, user: &str) -> String {
        self.template.conn_string(user, PASSWORD).replace(
            &format!("port={}", self.template.port()),
            &format!("port={}", self.port),
        )
    }

    async fn connect(&self, user: &str) -> Result<Client, String> {
        let (client, connection) = tokio_postgres::connect(&self.conn_string(user), NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Whether the process still runs; if not, what it last logged.
    fn died(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => {
                let log = self.log.lock().unwrap();
                let tail: String = log.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                Some(format!(
                    "maskgate exited ({status}); last log lines: {tail}"
                ))
            }
            Err(e) => Some(format!("cannot tell whether maskgate runs: {e}")),
        }
    }

    /// After a lost connection: waits a little for a dying process to exit,
    /// then tells whether it died (and restarts it if so).
    async fn settle(&mut self) -> Option<String> {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let death = self.died();
        if death.is_some() {
            self.restart().await;
        }
        death
    }

    /// [`Binary::settle`] when a connection was lost, else whether the process died.
    async fn settle_if(&mut self, lost: bool) -> Option<String> {
        if lost {
            return self.settle().await;
        }
        let death = self.died();
        if death.is_some() {
            self.restart().await;
        }
        death
    }

    /// A session of `user`, restarting a dead process first.
    async fn session(&mut self, user: &str) -> Result<Client, String> {
        if self.died().is_some() {
            self.restart().await;
        }
        match self.connect(user).await {
            Ok(client) => Ok(client),
            Err(_) => {
                self.settle().await;
                self.connect(user).await
            }
        }
    }

    async fn restart(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let (child, port, log) = spawn(&self.template, &self.config).await;
        self.child = child;
        self.port = port;
        self.log = log;
    }
}

async fn spawn(
    template: &TestProxy,
    config_path: &std::path::Path,
) -> (Child, u16, Arc<Mutex<String>>) {
    let port = free_port();
    let config = std::fs::read_to_string(template.config_dir().join("maskgate.toml"))
        .unwrap()
        .replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
            1,
        )
        // Its own audit directory: the in-process proxy holds a lock on the other.
        .replacen("dir = \"audit\"", &format!("dir = \"audit-{port}\""), 1);
    std::fs::write(config_path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_maskgate"))
        .args(["serve", "--config"])
        .arg(config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Keep reading the log, so a full pipe never blocks the proxy.
    let log = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    tokio::spawn(async move {
        let mut chunk = vec![0u8; 8192];
        while let Ok(n) = stderr.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            let mut log = sink.lock().unwrap();
            log.push_str(&String::from_utf8_lossy(&chunk[..n]));
            if log.len() > 1 << 20 {
                let cut = log.len() - (1 << 19);
                let cut = (cut..log.len()).find(|i| log.is_char_boundary(*i)).unwrap();
                log.drain(..cut);
            }
        }
    });
    let conn = template.conn_string(BYSTANDER, PASSWORD).replace(
        &format!("port={}", template.port()),
        &format!("port={port}"),
    );
    for attempt in 0.. {
        match tokio_postgres::connect(&conn, NoTls).await {
            Ok(_) => break,
            Err(e) if attempt < 400 => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("maskgate did not come up: {e}\n{}", log.lock().unwrap()),
        }
    }
    (child, port, log)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Protocol {
    Simple,
    Extended,
}

/// Runs `sql` and returns its SQLSTATE, `Ok` with the first value of the
/// first row, or a description of a lost connection.
async fn run(client: &Client, protocol: Protocol, sql: &str) -> Result<Option<String>, String> {
    let result = match protocol {
        Protocol::Simple => client.simple_query(sql).await.map(|messages| {
            messages.into_iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
        }),
        Protocol::Extended => client.query(sql, &[]).await.map(|rows| {
            rows.first()
                .map(|row| enforcement::decode(row.columns()[0].type_(), raw(row)))
        }),
    };
    result.map_err(|e| match e.as_db_error() {
        Some(db) => format!("SQLSTATE {}: {}", db.code().code(), db.message()),
        None => format!("connection: {e}"),
    })
}

/// The first value of a binary row as bytes.
fn raw(row: &tokio_postgres::Row) -> &[u8] {
    struct Bytes<'a>(&'a [u8]);
    impl<'a> tokio_postgres::types::FromSql<'a> for Bytes<'a> {
        fn from_sql(
            _: &tokio_postgres::types::Type,
            raw: &'a [u8],
        ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
            Ok(Bytes(raw))
        }
        fn accepts(_: &tokio_postgres::types::Type) -> bool {
            true
        }
    }
    row.try_get::<_, Option<Bytes>>(0)
        .ok()
        .flatten()
        .map(|b| b.0)
        .unwrap_or_default()
}

/// `SELECT 1` on the bystander's session, with its latency.
async fn probe(client: &Client) -> Result<Duration, String> {
    let started = Instant::now();
    match tokio::time::timeout(HANG, client.simple_query("SELECT 1")).await {
        Ok(Ok(_)) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(format!("SELECT 1 failed: {e}")),
        Err(_) => Err("SELECT 1 did not complete (a hang)".into()),
    }
}

/// Left-deep chains at ten times the sizes that crashed maskgate, and the
/// longest that fit in 1 MiB.
fn chains() -> Vec<(&'static str, String)> {
    let repeat = |head: &str, item: &str, n: usize| {
        let mut s = String::with_capacity(head.len() + item.len() * n);
        s.push_str(head);
        for _ in 0..n {
            s.push_str(item);
        }
        s
    };
    vec![
        ("275,000 + terms", repeat("SELECT 1", "+1", 274_999)),
        ("400,000 casts", repeat("SELECT 1", "::int", 400_000)),
        (
            "95,000 UNION ALL arms",
            repeat("SELECT 1", " UNION ALL SELECT 1", 94_999),
        ),
        (
            "1,000,000 OR terms",
            repeat("SELECT 1 WHERE true", " OR true", 999_999),
        ),
        (
            "1,000,000 AND terms",
            repeat("SELECT 1 WHERE true", " AND true", 999_999),
        ),
        (
            "1,000,000 || terms",
            repeat("SELECT 'a'", " || 'a'", 999_999),
        ),
        // Past the crash sizes yet under a 1 MiB statement limit, so that the
        // depth bounds (not only the size limit) answer.
        ("200,000 casts, 1 MB", repeat("SELECT 1", "::int", 199_999)),
        (
            "50,000 UNION ALL arms, 1 MB",
            repeat("SELECT 1", " UNION ALL SELECT 1", 49_999),
        ),
        (
            "125,000 OR terms, 1 MB",
            repeat("SELECT 1 WHERE true", " OR true", 124_999),
        ),
        (
            "110,000 AND terms, 1 MB",
            repeat("SELECT 1 WHERE true", " AND true", 109_999),
        ),
        (
            "140,000 || terms, 1 MB",
            repeat("SELECT 'a'", " || 'a'", 139_999),
        ),
    ]
}

/// PostgreSQL's answers for a statement beyond the analyzer's bounds.
const REFUSALS: [&str; 3] = ["54001", "54000", "42501"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_chains_are_refused_while_the_process_and_other_sessions_carry_on() {
    let mut binary = Binary::start().await;
    let mut failures = Vec::new();
    for (what, sql) in chains() {
        let sql = Arc::new(sql);
        for protocol in [Protocol::Simple, Protocol::Extended] {
            let tag = format!("{what} [{protocol:?}, {} bytes]", sql.len());
            let (hostile, bystander) = match (
                binary.session(HOSTILE).await,
                binary.session(BYSTANDER).await,
            ) {
                (Ok(h), Ok(b)) => (h, b),
                (h, b) => {
                    failures.push(format!("{tag}: cannot log in: {:?} {:?}", h.err(), b.err()));
                    binary.restart().await;
                    continue;
                }
            };
            let started = Instant::now();
            let statement = {
                let sql = sql.clone();
                tokio::spawn(async move {
                    let result = tokio::time::timeout(HANG, run(&hostile, protocol, &sql)).await;
                    (result, started.elapsed())
                })
            };
            // The other session's statement while the chain is being analyzed.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let during = probe(&bystander).await;
            let (result, took) = statement.await.unwrap();
            let after = probe(&bystander).await;
            let answer = match &result {
                Ok(Ok(_)) => "ran".to_string(),
                Ok(Err(e)) => e.clone(),
                Err(_) => "no answer (a hang)".to_string(),
            };
            eprintln!(
                "{tag}: answered in {took:?}: {}; other session's SELECT 1 during: {during:?}, after: {after:?}",
                answer.chars().take(120).collect::<String>()
            );
            match &result {
                Ok(Err(e))
                    if REFUSALS
                        .iter()
                        .any(|c| e.starts_with(&format!("SQLSTATE {c}"))) => {}
                _ => failures.push(format!(
                    "{tag}: expected an error {REFUSALS:?}, got: {}",
                    answer.chars().take(200).collect::<String>()
                )),
            }
            if let Err(e) = &during {
                failures.push(format!("{tag}: the other session, during: {e}"));
            }
            if let Err(e) = &after {
                failures.push(format!("{tag}: the other session, after: {e}"));
            }
            if let Some(death) = binary
                .settle_if(after.is_err() || answer.starts_with("connection"))
                .await
            {
                failures.push(format!("{tag}: {death}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_depth_runs_for_a_restricted_account() {
    let su = superuser(cluster()).await;
    let truth = |sql: &'static str| {
        let su = &su;
        async move { column(su, sql).await.remove(0) }
    };
    let mut nested_from = "SELECT id, province_code FROM participant".to_string();
    for i in 0..100 {
        nested_from = format!("SELECT * FROM ({nested_from}) t{i}");
    }
    let ids = |n: usize, sep: &str| {
        (1..=n)
            .map(|i| format!("id = {i}"))
            .collect::<Vec<_>>()
            .join(sep)
    };
    let in_list = (1..=10_000)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let count_79 = truth("SELECT count(*)::text FROM participant WHERE province_code = '79'").await;
    let cases: Vec<(&str, String, Option<String>)> = vec![
        (
            "500 nested parentheses",
            format!("SELECT {}1{}", "(".repeat(500), ")".repeat(500)),
            Some("1".into()),
        ),
        (
            "100 nested scalar subqueries",
            format!("SELECT {}1{}", "(SELECT ".repeat(100), ")".repeat(100)),
            Some("1".into()),
        ),
        (
            "100 nested derived tables over a protected table",
            format!("SELECT count(*) FROM ({nested_from}) t"),
            count_79.clone(),
        ),
        (
            "an IN list of 10,000 items",
            format!("SELECT count(*) FROM participant WHERE id IN ({in_list})"),
            count_79.clone(),
        ),
        (
            "an OR filter of 2,000 terms",
            format!(
                "SELECT count(*) FROM participant WHERE {}",
                ids(2_000, " OR ")
            ),
            truth(
                "SELECT count(*)::text FROM participant WHERE id <= 2000 AND province_code = '79'",
            )
            .await,
        ),
    ];
    let mut binary = Binary::start().await;
    let mut failures = Vec::new();
    for (what, sql, expected) in &cases {
        for protocol in [Protocol::Simple, Protocol::Extended] {
            let tag = format!("{what} [{protocol:?}]");
            let client = match binary.session(HOSTILE).await {
                Ok(client) => client,
                Err(e) => {
                    failures.push(format!("{tag}: cannot log in: {e}"));
                    binary.restart().await;
                    continue;
                }
            };
            let started = Instant::now();
            let result = tokio::time::timeout(HANG, run(&client, protocol, sql)).await;
            eprintln!("{tag}: {:?} in {:?}", result, started.elapsed());
            let lost = matches!(&result, Ok(Err(e)) if e.starts_with("connection"));
            match result {
                Ok(Ok(value)) if value == *expected => {}
                Ok(Ok(value)) => {
                    failures.push(format!("{tag}: returned {value:?}, expected {expected:?}"))
                }
                Ok(Err(e)) => failures.push(format!("{tag}: refused: {e}")),
                Err(_) => failures.push(format!("{tag}: no answer (a hang)")),
            }
            if let Some(death) = binary.settle_if(lost).await {
                failures.push(format!("{tag}: {death}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Answers a flood of costly statements may get: refused by a bound, by the
/// time budget, or for want of an analysis slot.
const FLOOD_ANSWERS: [&str; 4] = ["54000", "54001", "57014", "53000"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_costly_statements_does_not_stall_other_sessions_short_ones() {
    let mut binary = Binary::start().await;
    let mut attackers = Vec::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::<String>::new()));
    for attacker in 0..8 {
        let client = binary.session(HOSTILE).await.expect("the attacker logs in");
        let (stop, answers) = (stop.clone(), answers.clone());
        attackers.push(tokio::spawn(async move {
            let mut round = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Each text new, so none is answered from the cache: 1,000
                // references to a protected table, each a masking subquery.
                let items = (0..1_000)
                    .map(|i| format!("participant a{attacker}_{round}_{i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                round += 1;
                let answer =
                    match run(&client, Protocol::Simple, &format!("SELECT 1 FROM {items}")).await {
                        Ok(_) => "ran".to_string(),
                        Err(e) => e,
                    };
                answers.lock().unwrap().push(answer);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bystander = binary
        .session(BYSTANDER)
        .await
        .expect("the bystander logs in");
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    for i in 0..20 {
        // New texts too: each is analyzed cold.
        let sql = format!("SELECT count(*) FROM participant WHERE citizen_id = '0790000{i:05}'");
        let started = Instant::now();
        match tokio::time::timeout(HANG, run(&bystander, Protocol::Simple, &sql)).await {
            Ok(Ok(_)) => latencies.push(started.elapsed()),
            Ok(Err(e)) => failures.push(format!("short statement {i}: {e}")),
            Err(_) => failures.push(format!("short statement {i}: no answer (a hang)")),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for attacker in attackers {
        let _ = tokio::time::timeout(HANG, attacker).await;
    }
    latencies.sort();
    let answers = answers.lock().unwrap();
    eprintln!(
        "20 cold short statements beside 8 flooding sessions (each 1,000 tables): median {:?}, slowest {:?}; \
         the flood got {} answers: {:?}",
        latencies.get(latencies.len() / 2),
        latencies.last(),
        answers.len(),
        answers
            .iter()
            .map(|a| a.chars().take(60).collect::<String>())
            .collect::<std::collections::BTreeSet<_>>()
    );
    for answer in answers.iter() {
        let expected = answer == "ran"
            || FLOOD_ANSWERS
                .iter()
                .any(|c| answer.starts_with(&format!("SQLSTATE {c}")));
        if !expected {
            failures.push(format!("flood statement answered: {answer}"));
        }
    }
    if let Some(death) = binary.died() {
        failures.push(death);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
