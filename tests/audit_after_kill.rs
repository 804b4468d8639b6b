//! kill -9 of the real binary under load, in strict mode: after a restart the trail
//! verifies without tampering, the crash's tail is reported as unsealed, and every
//! statement whose results a client received is in the trail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use maskgate_testkit::{free_port, PgCluster, ProxyOptions, TestProxy};
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio_postgres::NoTls;

const PASSWORD: &str = "correct horse battery";

const POLICY: &str = r#"
[tables."public.person".columns]
id = { type = "bigint" }
province_code = { type = "char(2)" }

[roles.reader]
description = "Reads its province"
statements = ["read"]
max_rows = 5

[roles.reader.tables."public.person"]
row_filter = "province_code = :province"
columns = { id = "allow", province_code = "allow" }
"#;

fn spawn(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_maskgate"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn connect(conn: &str) -> tokio_postgres::Client {
    for _ in 0..400 {
        if let Ok((client, connection)) = tokio_postgres::connect(conn, NoTls).await {
            tokio::spawn(connection);
            return client;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("maskgate did not come up");
}

/// The constants of every statement record in the trail, opened with the seal key.
fn recorded_constants(dir: &Path, seal_key: &Path) -> BTreeSet<String> {
    let sealer = maskgate_audit::Sealer::load(seal_key).unwrap();
    let mut found = BTreeSet::new();
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    segments.sort();
    for segment in segments {
        for line in std::fs::read_to_string(segment).unwrap().lines() {
            // A torn last line of the killed process is not a record.
            let Ok(record) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if record["kind"] != "statement" || record.get("sealed").is_none() {
                continue;
            }
            let sealed = serde_json::from_value(record["sealed"].clone()).unwrap();
            let seq = record["seq"].as_u64().unwrap().to_string();
            let plain = sealer.open(&sealed, seq.as_bytes()).unwrap();
            let secret: Value = serde_json::from_slice(&plain).unwrap();
            for literal in secret["literals"].as_array().into_iter().flatten() {
                found.insert(literal.as_str().unwrap().to_owned());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_the_trail_verifies_and_holds_every_answered_statement() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    cluster
        .psql(
            "CREATE TABLE person (id bigint PRIMARY KEY, province_code char(2) NOT NULL);
             INSERT INTO person SELECT g, CASE WHEN g % 2 = 0 THEN '01' ELSE '79' END FROM generate_series(1, 1000) g;",
        )
        .unwrap();
    let options = ProxyOptions {
        users: vec![("clerk".into(), PASSWORD.into())],
        roles: vec!["reader".into()],
        account_settings: vec![("clerk".into(), "attributes = { province = \"01\" }".into())],
        policy_files: vec![("register.toml".into(), POLICY.into())],
        audit_settings: "strict = true\ncheckpoint_interval = \"200ms\"".into(),
        admin: false,
        ..ProxyOptions::default()
    };
    // The harness writes the configuration and keys; the binary runs a copy with
    // its own audit directory.
    let template = TestProxy::start(&cluster, options).await.unwrap();
    let port = free_port();
    let config = std::fs::read_to_string(template.config_dir().join("maskgate.toml"))
        .unwrap()
        .replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
            1,
        )
        .replacen("dir = \"audit\"", "dir = \"audit-binary\"", 1);
    let config_path = template.config_dir().join("binary.toml");
    std::fs::write(&config_path, config).unwrap();
    let dir = template.config_dir().join("audit-binary");
    let conn = template.conn_string("clerk", PASSWORD).replace(
        &format!("port={}", template.port()),
        &format!("port={port}"),
    );

    let mut proxy = spawn(&config_path);
    let answered = Arc::new(Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for worker in 0..4u64 {
        let client = connect(&conn).await;
        let answered = answered.clone();
        load.push(tokio::spawn(async move {
            for n in 0.. {
                let id = 1 + worker + 4 * n;
                let sql = format!("SELECT id FROM person WHERE id = {id}");
                if client.simple_query(&sql).await.is_err() {
                    return;
                }
                answered.lock().unwrap().push(id.to_string());
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.start_kill().unwrap();
    proxy.wait().await.unwrap();
    for worker in load {
        worker.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() > 20, "too little load: {}", answered.len());

    // Restart on the same trail, run one statement, stop cleanly.
    let mut proxy = spawn(&config_path);
    let client = connect(&conn).await;
    client
        .simple_query("SELECT id FROM person WHERE id = 2")
        .await
        .unwrap();
    drop(client);
    let pid = proxy.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), proxy.wait())
        .await
        .unwrap()
        .unwrap();

    let public = maskgate_audit::keys::load_public_key(&template.audit_public_key()).unwrap();
    let report = maskgate_audit::verify(&dir, &public).unwrap();
    assert_eq!(
        report.status(),
        maskgate_audit::Status::UnsealedTail,
        "the crash's tail is unsealed, nothing is tampered: {report:?}"
    );
    let recorded = recorded_constants(&dir, &template.audit_seal_key());
    let missing: Vec<_> = answered
        .iter()
        .filter(|id| !recorded.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered statements are not in the trail: {missing:?}",
        missing.len(),
        answered.len()
    );
}
