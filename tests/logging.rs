//! Logs are JSON on request and never carry statement literals.

use std::process::Stdio;
use std::time::Duration;

use maskgate_testkit::{free_port, PgCluster, ProxyOptions, TestProxy};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_fingerprints_not_literals() {
    // The harness writes a complete configuration; the binary runs a copy of it.
    let template = TestProxy::start(PgCluster::shared(), ProxyOptions::default())
        .await
        .unwrap();
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
    let config_path = template.config_dir().join("binary.toml");
    std::fs::write(&config_path, config).unwrap();

    let mut proxy = Command::new(env!("CARGO_BIN_EXE_maskgate"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "info,maskgate_proxy=debug")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Read the log while the proxy runs, so a full pipe never blocks it.
    let mut stderr = proxy.stderr.take().unwrap();
    let log_reader = tokio::spawn(async move {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text)
            .await
            .unwrap();
        text
    });

    let conn = template
        .conn_string("alice", "correct horse battery")
        .replace(
            &format!("port={}", template.port()),
            &format!("port={port}"),
        );
    let mut attempts = 0;
    let client = loop {
        match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                break client;
            }
            Err(e) if attempts < 200 => {
                attempts += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                proxy.start_kill().unwrap();
                panic!(
                    "maskgate did not come up: {e}\n{}",
                    log_reader.await.unwrap()
                );
            }
        }
    };
    client
        .simple_query("SELECT 'Nguyễn Văn An' AS name, '001203004567' AS citizen_id")
        .await
        .unwrap();
    client
        .query("SELECT $1::text", &[&"0912345678"])
        .await
        .unwrap();
    drop(client);

    let pid = proxy.id().unwrap().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), proxy.wait())
        .await
        .expect("maskgate stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    let logs = log_reader.await.unwrap();

    assert!(logs.contains("session started"), "{logs}");
    assert!(logs.contains("SELECT ? AS name, ? AS citizen_id"), "{logs}");
    for line in logs.lines() {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not a JSON line: {line}"
        );
    }
    for secret in ["Nguyễn", "001203004567", "0912345678"] {
        assert!(!logs.contains(secret), "{secret} leaked into the log");
    }
}
