//! A trail that cannot be written, through the real binary: when a write fails
//! (here the process's file-size limit is cut to one byte with `prlimit`, which
//! fails writes with EFBIG as a full disk fails them with ENOSPC), statements and
//! new logins are refused with 53000, `/health` answers 503 and the metrics say
//! the trail is not writable; once the disk can be written again the trail is
//! opened again by itself, statements run, and the trail verifies without any
//! finding of tampering.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use maskgate_testkit::{free_port, http_get, metric, PgCluster, ProxyOptions, TestProxy};
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio_postgres::error::SqlState;
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

/// The binary logs to a file in `log_dir`, which the file-size limit reaches too:
/// a log that cannot be written must not end sessions either.
fn spawn(config: &Path, log_dir: &Path) -> Child {
    let log = std::fs::File::create(log_dir.join("maskgate.log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_maskgate"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn connect(conn: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Sets the maskgate process's file-size limit (`unlimited` or bytes).
fn set_file_size_limit(pid: u32, limit: &str) {
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        // The soft limit only: raising a hard limit again needs CAP_SYS_RESOURCE.
        .arg(format!("--fsize={limit}:"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit failed");
}

async fn health(admin: std::net::SocketAddr) -> u16 {
    http_get(admin, "/health").await.0
}

async fn writable(admin: std::net::SocketAddr) -> f64 {
    metric(
        &http_get(admin, "/metrics").await.1,
        "maskgate_audit_writable",
    )
}

/// Runs the clerk's lookup until `done` says the answer is the awaited one.
async fn until<F>(client: &tokio_postgres::Client, what: &str, done: F) -> Result<(), String>
where
    F: Fn(&Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error>) -> bool,
{
    for i in 0..100 {
        let result = client
            .simple_query(&format!(
                "SELECT id FROM person WHERE id = {}",
                2 * (i % 10) + 2
            ))
            .await;
        if done(&result) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("gave up waiting for {what}"))
}

fn refused_for_audit(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::INSUFFICIENT_RESOURCES)
        && e.as_db_error()
            .is_some_and(|db| db.message().contains("audit trail"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_that_cannot_be_written_refuses_statements_and_logins_until_it_can() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    cluster
        .psql(
            "CREATE TABLE person (id bigint PRIMARY KEY, province_code char(2) NOT NULL);
             INSERT INTO person SELECT g, CASE WHEN g % 2 = 0 THEN '01' ELSE '79' END FROM generate_series(1, 40) g;",
        )
        .unwrap();
    let options = ProxyOptions {
        users: vec![("clerk".into(), PASSWORD.into())],
        roles: vec!["reader".into()],
        account_settings: vec![("clerk".into(), "attributes = { province = \"01\" }".into())],
        policy_files: vec![("register.toml".into(), POLICY.into())],
        audit_settings: "commit_interval = \"5ms\"\ncheckpoint_interval = \"200ms\"".into(),
        ..ProxyOptions::default()
    };
    // The harness writes the configuration and keys; the binary runs a copy with
    // its own ports and audit directory.
    let template = TestProxy::start(&cluster, options).await.unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let config = std::fs::read_to_string(template.config_dir().join("maskgate.toml"))
        .unwrap()
        .replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
            1,
        )
        .replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{admin_port}\""),
            1,
        )
        .replacen("dir = \"audit\"", "dir = \"audit-binary\"", 1);
    let config_path = template.config_dir().join("binary.toml");
    std::fs::write(&config_path, config).unwrap();
    let dir = template.config_dir().join("audit-binary");
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let conn =
        format!("host=127.0.0.1 port={port} user=clerk password='{PASSWORD}' dbname=postgres");

    let mut child = spawn(&config_path, template.config_dir());
    let pid = child.id().unwrap();
    let mut client = None;
    for _ in 0..400 {
        if let Ok(c) = connect(&conn).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = client.expect("maskgate came up");
    until(&client, "a first answer", |r| r.is_ok())
        .await
        .unwrap();
    assert_eq!(health(admin).await, 200);

    // The disk "fills": every write of the trail fails from now on.
    set_file_size_limit(pid, "1");
    let outcome = until(
        &client,
        "a refusal",
        |r| matches!(r, Err(e) if refused_for_audit(e)),
    )
    .await;
    let failed_health = health(admin).await;
    let failed_writable = writable(admin).await;
    let login = connect(&conn).await;
    set_file_size_limit(pid, "unlimited");
    outcome.unwrap();
    assert_eq!(
        failed_health, 503,
        "/health while the trail cannot be written"
    );
    assert_eq!(failed_writable, 0.0);
    match login {
        Ok(_) => panic!("a login was admitted while its record could not be written"),
        Err(e) => assert!(refused_for_audit(&e), "{e:?}"),
    }

    // The disk is writable again: the trail reopens by itself.
    until(&client, "statements to run again", |r| r.is_ok())
        .await
        .unwrap();
    assert_eq!(health(admin).await, 200);
    assert_eq!(writable(admin).await, 1.0);
    let again = connect(&conn).await.expect("logins are admitted again");
    again.simple_query("SELECT 1").await.unwrap();
    drop(again);
    drop(client);

    // A clean stop; the trail verifies: the failed segment's end is declared by
    // the segment that followed it, nothing reads as tampered.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("maskgate stopped")
        .unwrap();
    let public = maskgate_audit::keys::load_public_key(&template.audit_public_key()).unwrap();
    let report = maskgate_audit::verify(&dir, &public).unwrap();
    assert_ne!(
        report.status(),
        maskgate_audit::Status::Tampered,
        "{report:?}"
    );
    let recovery = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .collect::<Vec<_>>()
        })
        .any(|r| r["kind"] == "recovery");
    assert!(recovery, "the reopened trail declares the failed segment");
}
