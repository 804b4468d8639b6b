//! `maskgate demo` starts a working proxy in front of a sample register, under the
//! example policy, and what it suggests to try works as described.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_postgres::SimpleQueryMessage;

/// What the demo prints: the (connection string, statement to try) pairs, in
/// order, and the directory holding its keys and audit trail.
async fn read_personas(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> (Vec<(String, String)>, PathBuf) {
    let mut personas = Vec::new();
    let mut conn = None;
    let mut dir = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("audit:") {
            let audit = rest.split_whitespace().nth(3).expect("the audit directory");
            dir = Path::new(audit).parent().map(Path::to_path_buf);
        } else if let Some(rest) = line.strip_prefix("connect:") {
            conn = Some(
                rest.trim()
                    .trim_start_matches("psql ")
                    .trim_matches('"')
                    .to_string(),
            );
        } else if let Some(sql) = line.strip_prefix("try:") {
            personas.push((
                conn.take().expect("connect before try"),
                sql.trim().to_string(),
            ));
        } else if line.starts_with("The data is synthetic") {
            return (personas, dir.expect("the demo names its audit directory"));
        }
    }
    panic!("the demo ended before it was ready");
}

async fn rows(conn: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_logins_and_statements_that_work() {
    let mut demo = Command::new(env!("CARGO_BIN_EXE_maskgate"))
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let (personas, dir) = tokio::time::timeout(Duration::from_secs(90), read_personas(&mut lines))
        .await
        .expect("the demo starts within 90 seconds");
    assert!(dir.join("audit-signing.pem").exists(), "{}", dir.display());
    let [(clerk, clerk_sql), (analyst, analyst_sql), (auditor, auditor_sql), ..] =
        personas.as_slice()
    else {
        panic!("at least three personas expected, got {}", personas.len())
    };

    // The clerk finds the person by the raw citizen ID and sees it masked.
    let found = rows(clerk, clerk_sql).await;
    assert_eq!(found.len(), 1);
    let masked = found[0][1].as_deref().unwrap();
    assert!(
        masked.starts_with("********"),
        "citizen_id is masked: {masked}"
    );

    // The analyst sees initials.
    let stats = rows(analyst, analyst_sql).await;
    assert_eq!(stats.len(), 5);
    for row in &stats {
        let name = row[0].as_deref().unwrap();
        assert!(
            name.split(' ')
                .all(|word| word.chars().count() == 2 && word.ends_with('.')),
            "initials only: {name}"
        );
    }

    // The auditor sees the register as stored, and may count all of it.
    assert_eq!(rows(auditor, auditor_sql).await.len(), 5);
    let n = rows(auditor, "SELECT count(*) FROM participant").await;
    assert_eq!(n[0][0].as_deref(), Some("3000"));

    stop(&mut demo, "INT", &dir).await;
}

/// Sends `signal` and waits for the demo to exit cleanly, its directory (keys,
/// audit trail) removed.
async fn stop(demo: &mut tokio::process::Child, signal: &str, dir: &Path) {
    let pid = demo.id().unwrap().to_string();
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(30), demo.wait())
        .await
        .expect("the demo stops on the signal")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !dir.exists(),
        "the demo left {} behind with its keys",
        dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_demo_cleans_up_on_sigterm() {
    let mut demo = Command::new(env!("CARGO_BIN_EXE_maskgate"))
        .args(["demo", "--seconds", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let (_, dir) = tokio::time::timeout(Duration::from_secs(90), read_personas(&mut lines))
        .await
        .expect("the demo starts within 90 seconds");
    assert!(dir.join("audit-seal.keys").exists(), "{}", dir.display());
    stop(&mut demo, "TERM", &dir).await;
}
