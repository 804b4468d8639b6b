//! Detection end to end: a live session that trips the enumeration rule is
//! suspended — its next statement ends it, its logins are refused, through a
//! policy reload and a restart — a real local webhook receiver gets the alert, a
//! honeytoken lookup raises its own, and `maskgate account unlock` (recorded in
//! the trail) lets the account in again. Then the reports are built from the trail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use maskgate_testkit::{audit_records, PgCluster, ProxyOptions, TestProxy};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery";
const CANARY: &str = "999000000001";

const POLICY: &str = r#"
[labels]
"pii.identifier" = "Citizen ID"
"pii.name" = "Full name"

[tables."public.person".columns]
id = { type = "bigint" }
citizen_id = { type = "char(12)", labels = ["pii.identifier"], canaries = ["999000000001"] }
full_name = { type = "text", labels = ["pii.name"] }

[roles.clerk]
description = "Looks up one person at a time by citizen ID"
statements = ["read"]
max_rows = 5

[roles.clerk.tables."public.person"]
lookup_keys = ["citizen_id"]
labels = { "pii.identifier" = { mask = "partial", keep_last = 4 } }
columns = { id = "allow", full_name = "allow" }
"#;

const SCHEMA: &str = "
CREATE TABLE person (id bigint PRIMARY KEY, citizen_id char(12) NOT NULL, full_name text NOT NULL);
INSERT INTO person SELECT g, lpad(g::text, 12, '0'), 'Person ' || g FROM generate_series(1, 300) g;
INSERT INTO person VALUES (1000000, '999000000001', 'Nobody Real');
";

/// A real HTTP receiver on the loopback: answers 200 to every POST and hands
/// over the bodies. Stops after `max` connections.
fn receiver(max: usize) -> (u16, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tell, told) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(stream) = stream else { continue };
            match serve_one(stream) {
                Ok(body) => {
                    let _ = tell.send(body);
                }
                Err(e) => eprintln!("webhook receiver: {e}"),
            }
        }
    });
    (port, told)
}

fn serve_one(mut stream: std::net::TcpStream) -> std::io::Result<Value> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
        if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().map_err(std::io::Error::other)?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")?;
    if !request_line.starts_with("POST /alerts ") {
        return Err(std::io::Error::other(format!(
            "unexpected request {request_line:?}"
        )));
    }
    serde_json::from_slice(&body).map_err(std::io::Error::other)
}

async fn wait_for(dir: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..400 {
        if let Some(found) = audit_records(dir).into_iter().find(&pred) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let kinds: Vec<String> = audit_records(dir)
        .iter()
        .rev()
        .take(15)
        .map(|r| format!("{} {} {}", r["kind"], r["login"], r["restored"]))
        .collect();
    panic!("no {what} record in the trail: {kinds:?}");
}

fn maskgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_maskgate"))
        .args(args)
        .output()
        .unwrap()
}

/// The next alert of `rule` the receiver got (others, such as the accounts'
/// missing assignment decisions, are skipped).
fn next_alert(alerts: &mpsc::Receiver<Value>, rule: &str) -> Value {
    for _ in 0..20 {
        let alert = alerts
            .recv_timeout(Duration::from_secs(20))
            .expect("the webhook got nothing");
        if alert["rule"] == rule {
            return alert;
        }
    }
    panic!("no {rule} alert");
}

fn assert_suspended(e: tokio_postgres::Error) {
    let message = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string());
    assert!(message.contains("suspended"), "{message}");
}

async fn lookup(client: &tokio_postgres::Client, key: &str) -> Result<(), tokio_postgres::Error> {
    client
        .query(
            "SELECT id, full_name FROM person WHERE citizen_id = $1",
            &[&key],
        )
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enumerating_session_is_suspended_alerted_and_unlocked() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    cluster.psql(SCHEMA).unwrap();
    let (port, alerts) = receiver(50);
    let options = ProxyOptions {
        users: vec![("clerk".into(), PASSWORD.into()), ("clerk2".into(), PASSWORD.into())],
        roles: vec!["clerk".into()],
        policy_files: vec![("register.toml".into(), POLICY.into())],
        extra_config: format!(
            "[detection]\nsuspend = [\"enumeration\"]\nwebhooks = [\"http://127.0.0.1:{port}/alerts\"]\n\
             [detection.thresholds]\nenumeration_keys = 50\n"
        ),
        ..ProxyOptions::default()
    };
    let mut proxy = TestProxy::start(&cluster, options).await.unwrap();
    let dir = proxy.audit_dir();
    let config = proxy.config_dir().join("maskgate.toml");
    let config = config.to_str().unwrap().to_owned();

    // A harvesting loop: distinct keys until maskgate ends the session.
    let client = proxy.connect("clerk", PASSWORD).await.unwrap();
    let mut ended = None;
    for i in 1..=600 {
        if let Err(e) = lookup(&client, &format!("{i:012}")).await {
            ended = Some((i, e));
            break;
        }
        if i > 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let (at, error) = ended.expect("the session was never ended");
    // Sequential keys trip the rule first: 20 distinct keys of one range.
    assert!(at > 20, "ended after {at} lookups: {error:?}");
    let db = error.as_db_error().expect("a PostgreSQL error");
    assert_eq!(db.code().code(), "28000");
    assert!(db.message().contains("suspended"), "{}", db.message());
    assert!(db.hint().unwrap_or("").contains("security officer"));

    // The webhook got the alert, without a looked-up value in it.
    let alert = next_alert(&alerts, "enumeration");
    assert_eq!(alert["rule"], "enumeration");
    assert_eq!(alert["account"], "clerk");
    assert_eq!(alert["suspended"], true);
    assert!(alert["evidence"]["count"].as_u64().unwrap() >= 20);
    assert!(!alert["evidence"]["records"].as_array().unwrap().is_empty());
    assert!(!alert.to_string().contains("000000000042"), "{alert}");

    // The trail holds the alert, the suspension and keyed fingerprints only.
    let recorded = wait_for(&dir, "alert", |r| {
        r["kind"] == "alert" && r["id"] == alert["id"]
    })
    .await;
    assert_eq!(recorded["severity"], "high");
    wait_for(&dir, "suspension", |r| {
        r["kind"] == "account_suspended" && r["login"] == "clerk"
    })
    .await;
    let statement = wait_for(&dir, "lookup", |r| {
        r["kind"] == "statement" && r["user"] == "clerk"
    })
    .await;
    assert_eq!(
        statement["keys"].as_array().unwrap().len(),
        1,
        "{statement}"
    );
    let text: String = audit_records(&dir).iter().map(Value::to_string).collect();
    assert!(
        !text.contains("000000000042"),
        "a looked-up value is in clear in the trail"
    );

    // Logins are refused, through a policy reload and a restart.
    assert_suspended(proxy.connect("clerk", PASSWORD).await.unwrap_err());
    proxy.handle().reload_policy().unwrap();
    assert!(proxy.connect("clerk", PASSWORD).await.is_err());
    proxy.restart().await.unwrap();
    assert_suspended(proxy.connect("clerk", PASSWORD).await.unwrap_err());

    // Deleting the suspensions file lifts nothing: a running proxy puts the
    // suspension back and records it, and one started without the file reads it
    // back from the trail before it serves a login.
    let state_file = proxy.config_dir().join("detection/suspensions.json");
    std::fs::remove_file(&state_file).unwrap();
    wait_for(&dir, "restored suspension", |r| {
        r["kind"] == "account_suspended" && r["login"] == "clerk" && r["restored"].is_string()
    })
    .await;
    assert_suspended(proxy.connect("clerk", PASSWORD).await.unwrap_err());
    assert!(state_file.exists());
    proxy.stop().await;
    std::fs::remove_file(&state_file).unwrap();
    proxy.restart().await.unwrap();
    assert_suspended(proxy.connect("clerk", PASSWORD).await.unwrap_err());

    // A honeytoken read raises its own alert at once.
    let other = proxy.connect("clerk2", PASSWORD).await.unwrap();
    lookup(&other, CANARY).await.unwrap();
    wait_for(&dir, "canary alert", |r| {
        r["kind"] == "alert" && r["rule"] == "canary"
    })
    .await;
    let canary = next_alert(&alerts, "canary");
    assert_eq!(
        (canary["rule"].as_str(), canary["account"].as_str()),
        (Some("canary"), Some("clerk2"))
    );
    assert_eq!(canary["severity"], "high");
    assert!(!canary.to_string().contains(CANARY));

    // The officer's view, then the unlock, recorded with its reason.
    let shown = maskgate(&[
        "account", "show", "clerk", "--config", &config, "--format", "json",
    ]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["status"], "suspended");
    assert!(!shown["open_alerts"].as_array().unwrap().is_empty());
    let short = maskgate(&[
        "account", "unlock", "clerk", "--reason", "ok", "--config", &config,
    ]);
    assert!(!short.status.success(), "a reason is required");
    // Who unlocked comes from the kernel, not from SUDO_USER, which anyone sets.
    let unlocked = Command::new(env!("CARGO_BIN_EXE_maskgate"))
        .args([
            "account",
            "unlock",
            "clerk",
            "--reason",
            "reviewed with the clerk's manager: a test run",
            "--config",
            &config,
        ])
        .env("SUDO_USER", "mallory")
        .output()
        .unwrap();
    assert!(
        unlocked.status.success(),
        "{}",
        String::from_utf8_lossy(&unlocked.stderr)
    );
    let record = wait_for(&dir, "unlock", |r| r["kind"] == "account_unlocked").await;
    assert_eq!(record["login"], "clerk");
    assert_eq!(
        record["reason"],
        "reviewed with the clerk's manager: a test run"
    );
    assert_eq!(record["alert"], alert["id"]);
    assert!(
        !record["by"].as_str().unwrap().contains("mallory"),
        "{record}"
    );
    let mut back = None;
    for _ in 0..100 {
        if let Ok(c) = proxy.connect("clerk", PASSWORD).await {
            back = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = back.expect("the account stays refused after its unlock");
    lookup(&back, "000000000001").await.unwrap();

    // Reports, from the trail.
    proxy.stop().await;
    let key = proxy.audit_public_key();
    let breach = maskgate(&[
        "report",
        "breach",
        "--config",
        &config,
        "--account",
        "clerk",
        "--from",
        "1h",
        "--public-key",
        key.to_str().unwrap(),
    ]);
    assert!(
        breach.status.success(),
        "{}",
        String::from_utf8_lossy(&breach.stderr)
    );
    let breach: Value = serde_json::from_slice(&breach.stdout).unwrap();
    assert_eq!(breach["verification"]["status"], "CLEAN");
    assert!(
        breach["data_subjects"]["looked_up"].as_u64().unwrap() >= 20,
        "{breach:#}"
    );
    assert!(breach["categories"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["label"] == "pii.identifier"));
    assert!(breach["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "account suspended"));
    assert!(breach["machines"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["client"] == "127.0.0.1"));
    let by_alert = maskgate(&[
        "report",
        "breach",
        "--config",
        &config,
        "--alert",
        alert["id"].as_str().unwrap(),
        "--public-key",
        key.to_str().unwrap(),
        "--format",
        "html",
    ]);
    assert!(
        by_alert.status.success(),
        "{}",
        String::from_utf8_lossy(&by_alert.stderr)
    );
    assert!(String::from_utf8_lossy(&by_alert.stdout).contains("pii.identifier"));
    let verified = maskgate(&[
        "report",
        "daily",
        "--config",
        &config,
        "--format",
        "json",
        "--public-key",
        key.to_str().unwrap(),
    ]);
    assert!(verified.status.success());
    let verified: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(verified["verification"]["status"], "CLEAN");
    let daily = maskgate(&["report", "daily", "--config", &config, "--format", "html"]);
    assert!(
        daily.status.success(),
        "{}",
        String::from_utf8_lossy(&daily.stderr)
    );
    let html = String::from_utf8_lossy(&daily.stdout);
    assert!(html.contains("<svg") && html.contains("enumeration") && !html.contains("src=\"http"));
    assert!(html.contains("NOT verified"));

    // A trail that does not verify gives no breach report.
    let segment = dir.join("audit-000001.jsonl");
    let text = std::fs::read_to_string(&segment).unwrap();
    std::fs::write(
        &segment,
        text.replacen("\"user\":\"clerk\"", "\"user\":\"clerX\"", 1),
    )
    .unwrap();
    let refused = maskgate(&[
        "report",
        "breach",
        "--config",
        &config,
        "--account",
        "clerk",
        "--from",
        "1h",
        "--public-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not verify"));
}
