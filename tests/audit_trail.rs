//! The audit trail, end to end: what a session's logins and statements leave in the
//! trail, field by field; constants only sealed; back-pressure refusing statements
//! the trail cannot take; strict mode; and the trail verifying after a clean stop.

use std::time::Duration;

use maskgate_testkit::{audit_records, wait_for_record, PgCluster, ProxyOptions, TestProxy};
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

const PASSWORD: &str = "correct horse battery";

const POLICY: &str = r#"
[labels]
"pii.identifier" = "Citizen ID"

[tables."public.person".columns]
id = { type = "bigint" }
citizen_id = { type = "char(12)", labels = ["pii.identifier"] }
province_code = { type = "char(2)" }
note = { type = "text" }

[roles.reader]
description = "Reads its province, identifiers masked"
statements = ["read"]
max_rows = 5

[roles.reader.tables."public.person"]
row_filter = "province_code = :province"
labels = { "pii.identifier" = { mask = "partial", keep_last = 4 } }
columns = { id = "allow", province_code = "allow" }

[roles.loader]
description = "Loads rows of its province"
statements = ["read", "insert"]
max_rows = 5

[roles.loader.tables."public.person"]
row_filter = "province_code = :province"
columns = { id = "allow", citizen_id = "allow", province_code = "allow", note = "allow" }
"#;

const SCHEMA: &str = "
CREATE TABLE person (id bigint PRIMARY KEY, citizen_id char(12) NOT NULL, province_code char(2) NOT NULL, note text);
INSERT INTO person SELECT g, lpad(g::text, 12, '0'), CASE WHEN g % 2 = 0 THEN '01' ELSE '79' END, 'n' || g FROM generate_series(1, 40) g;
";

/// A constant typed by the client that must never be in the trail in clear.
const TYPED_SECRET: &str = "079188004321";

async fn start(audit_settings: &str) -> (PgCluster, TestProxy) {
    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    cluster.psql(SCHEMA).unwrap();
    let options = ProxyOptions {
        users: ["clerk", "loader", "auditor"]
            .map(|u| (u.into(), PASSWORD.into()))
            .into(),
        roles: vec!["reader".into()],
        user_roles: vec![
            ("loader".into(), vec!["loader".into()]),
            ("auditor".into(), vec!["relay".into()]),
        ],
        account_settings: ["clerk", "loader"]
            .map(|u| (u.into(), "attributes = { province = \"01\" }".into()))
            .into(),
        policy_files: vec![("register.toml".into(), POLICY.into())],
        audit_settings: audit_settings.into(),
        ..ProxyOptions::default()
    };
    let proxy = TestProxy::start(&cluster, options).await.unwrap();
    (cluster, proxy)
}

async fn connect(proxy: &TestProxy) -> tokio_postgres::Client {
    connect_as(proxy, "clerk").await
}

async fn connect_as(proxy: &TestProxy, user: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&proxy.conn_string(user, PASSWORD), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

fn statement_like(text: &str) -> impl Fn(&Value) -> bool + '_ {
    move |r| r["kind"] == "statement" && r["statement"].as_str() == Some(text)
}

fn end_of(statement: &Value) -> impl Fn(&Value) -> bool + '_ {
    move |r| {
        r["kind"] == "statement_end"
            && r["session"] == statement["session"]
            && r["stmt"] == statement["stmt"]
    }
}

fn open_sealed(proxy: &TestProxy, record: &Value) -> Value {
    let sealer = maskgate_audit::Sealer::load(&proxy.audit_seal_key()).unwrap();
    let sealed: maskgate_audit::Sealed = serde_json::from_value(record["sealed"].clone()).unwrap();
    let seq = record["seq"].as_u64().unwrap().to_string();
    let plain = sealer.open(&sealed, seq.as_bytes()).unwrap();
    serde_json::from_slice(&plain).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_session_is_recorded_field_by_field() {
    let (_cluster, mut proxy) = start("").await;
    let dir = proxy.audit_dir();
    let client = connect(&proxy).await;

    // A lookup in the simple protocol.
    let lookup = format!(
        "SELECT id, citizen_id FROM person WHERE id = 2 AND citizen_id <> '{TYPED_SECRET}'"
    );
    client.simple_query(&lookup).await.unwrap();
    let record = wait_for_record(
        &dir,
        statement_like("SELECT id, citizen_id FROM person WHERE id = $L1 AND citizen_id <> $L2"),
    )
    .await;
    assert_eq!(record["user"], "clerk");
    assert_eq!(record["protocol"], "simple");
    assert_eq!(record["class"], "read");
    assert_eq!(record["decision"], "rewritten");
    assert_eq!(record["sealed_values"], 2);
    let table = &record["tables"][0];
    assert_eq!(table["table"], "public.person");
    assert_eq!(table["masked"][0], "citizen_id:partial");
    assert_eq!(table["denied"][0], "note");
    assert_eq!(table["filtered_by"][0], "reader");
    assert_eq!(table["roles"][0], "reader");
    let end = wait_for_record(&dir, end_of(&record)).await;
    assert_eq!(end["outcome"], "completed");
    assert_eq!(end["rows"], 1);
    assert!(end["bytes"].as_u64().unwrap() > 5, "{end}");
    assert!(end.get("sqlstate").is_none(), "{end}");
    let secret = open_sealed(&proxy, &record);
    assert_eq!(secret["literals"][0], "2");
    assert_eq!(secret["literals"][1], format!("'{TYPED_SECRET}'"));

    // The extended protocol: the parameter is sealed with the statement.
    let rows = client
        .query("SELECT id FROM person WHERE id = $1", &[&4i64])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let record = wait_for_record(&dir, |r| {
        r["kind"] == "statement" && r["protocol"] == "extended" && r["sealed_values"] == 1
    })
    .await;
    assert_eq!(record["statement"], "SELECT id FROM person WHERE id = $1");
    assert_eq!(
        open_sealed(&proxy, &record)["params"][0],
        "\\x0000000000000004"
    );
    let end = wait_for_record(&dir, end_of(&record)).await;
    assert_eq!(end["rows"], 1);

    // A denial: recorded once, with its SQLSTATE and reason, never run.
    let denied = client
        .simple_query("SELECT note FROM person WHERE id = 2")
        .await;
    assert_eq!(
        denied.unwrap_err().code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE)
    );
    let record = wait_for_record(&dir, |r| {
        r["kind"] == "statement" && r["decision"] == "denied"
    })
    .await;
    assert_eq!(record["sqlstate"], "42501");
    assert_eq!(record["reason"], "policy");
    assert_eq!(
        record["statement"],
        "SELECT note FROM person WHERE id = $L1"
    );

    // A statement stopped at the row cap: rows up to the cap, then 54000.
    let capped = client.simple_query("SELECT id FROM person").await;
    assert_eq!(
        capped.unwrap_err().code(),
        Some(&SqlState::PROGRAM_LIMIT_EXCEEDED)
    );
    let record = wait_for_record(&dir, statement_like("SELECT id FROM person")).await;
    let end = wait_for_record(&dir, end_of(&record)).await;
    assert_eq!(end["outcome"], "stopped");
    assert_eq!(end["stopped_by"], "row_cap");
    assert_eq!(end["sqlstate"], "54000");
    assert_eq!(end["rows"], 5);

    // A refused login, with its reason.
    let wrong = tokio_postgres::connect(&proxy.conn_string("clerk", "wrong password"), NoTls).await;
    assert!(wrong.is_err());
    let login = wait_for_record(&dir, |r| r["kind"] == "login" && r["outcome"] == "refused").await;
    assert_eq!(login["reason"], "auth_failed");
    assert_eq!(login["user"], "clerk");
    let admitted =
        wait_for_record(&dir, |r| r["kind"] == "login" && r["outcome"] == "admitted").await;
    assert_eq!(admitted["restricted"], true);
    assert_eq!(admitted["roles"][0], "reader");

    drop(client);
    let ended = wait_for_record(&dir, |r| r["kind"] == "session_end").await;
    assert_eq!(ended["session"], admitted["session"]);
    assert!(ended["statements"].as_u64().unwrap() >= 3, "{ended}");

    proxy.stop().await;
    // Constants appear only sealed.
    for segment in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(segment.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(TYPED_SECRET),
            "a typed constant is in the trail in clear"
        );
    }
    let public = maskgate_audit::keys::load_public_key(&proxy.audit_public_key()).unwrap();
    let report = maskgate_audit::verify(&dir, &public).unwrap();
    assert_eq!(report.status(), maskgate_audit::Status::Clean, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_the_trail_cannot_take_are_refused() {
    // The writer drains its queue once a second, so a burst fills 16 places.
    let (_cluster, proxy) = start("queue = 16\ncommit_interval = \"1s\"").await;
    let client = connect(&proxy).await;
    let mut refused = 0;
    let mut ran = 0;
    let burst: Vec<_> = (0..64)
        .map(|i| {
            let client = &client;
            async move {
                client
                    .simple_query(&format!("SELECT id FROM person WHERE id = {i}"))
                    .await
            }
        })
        .collect();
    for result in futures_util::future::join_all(burst).await {
        match result {
            Ok(_) => ran += 1,
            Err(e) => {
                assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_RESOURCES), "{e:?}");
                assert!(
                    e.as_db_error().unwrap().message().contains("audit"),
                    "{e:?}"
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "no statement was refused");
    let admin = proxy.admin_addr().unwrap();
    let (_, text) = maskgate_testkit::http_get(admin, "/metrics").await;
    assert!(
        maskgate_testkit::metric(&text, "maskgate_audit_records_refused_total") >= refused as f64,
        "{text}"
    );
    assert!(ran > 0, "no statement ran");
    // Every statement that ran has its record.
    let dir = proxy.audit_dir();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let recorded = audit_records(&dir)
        .iter()
        .filter(|r| r["kind"] == "statement" && r["decision"] == "rewritten")
        .count();
    assert_eq!(recorded, ran);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_strict_mode_results_arrive_only_after_their_record_is_on_disk() {
    let (_cluster, proxy) = start("strict = true\ncommit_interval = \"50ms\"").await;
    let client = connect(&proxy).await;
    for (done, id) in [2, 4, 6].into_iter().enumerate() {
        let rows = client
            .query("SELECT id FROM person WHERE id = $1", &[&(id as i64)])
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        // Read at once, without waiting for a group commit.
        let found = audit_records(&proxy.audit_dir())
            .iter()
            .filter(|r| r["kind"] == "statement" && r["protocol"] == "extended")
            .count();
        assert!(
            found > done,
            "a result arrived before its record was written"
        );
    }
    let recorded = audit_records(&proxy.audit_dir())
        .iter()
        .filter(|r| r["kind"] == "statement" && r["protocol"] == "extended")
        .count();
    assert_eq!(recorded, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_are_recorded_with_their_rows_and_bytes() {
    let (_cluster, proxy) = start("").await;
    let dir = proxy.audit_dir();

    // COPY FROM STDIN of a restricted account (psql sends it in the simple
    // protocol): a write of its table; rows counted are those sent to the client.
    let rows = "101\t000000000101\t01\tloaded\n102\t000000000102\t01\tloaded\n";
    let mut psql = std::process::Command::new("psql")
        .arg(proxy.conn_string("loader", PASSWORD))
        .args(["-v", "ON_ERROR_STOP=1", "-c"])
        .arg("COPY person (id, citizen_id, province_code, note) FROM STDIN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    psql.stdin
        .take()
        .unwrap()
        .write_all(rows.as_bytes())
        .unwrap();
    let out = psql.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = wait_for_record(
        &dir,
        statement_like("COPY person (id, citizen_id, province_code, note) FROM STDIN"),
    )
    .await;
    assert_eq!(record["user"], "loader");
    assert_eq!(record["class"], "write");
    assert_eq!(record["decision"], "rewritten");
    assert_eq!(record["written"][0], "public.person");
    let end = wait_for_record(&dir, end_of(&record)).await;
    assert_eq!(end["outcome"], "completed");
    assert_eq!(end["rows"], 0, "nothing was sent to the client");

    // COPY TO STDOUT of an unrestricted account: every row and byte on the wire.
    let auditor = connect_as(&proxy, "auditor").await;
    let copied = auditor
        .copy_out("COPY person (id, province_code) TO STDOUT")
        .await
        .unwrap();
    use futures_util::TryStreamExt;
    let chunks: Vec<bytes::Bytes> = copied.try_collect().await.unwrap();
    let sent: usize = chunks.iter().map(|c| c.len()).sum();
    let record = wait_for_record(&dir, |r| {
        r["kind"] == "statement"
            && r["user"] == "auditor"
            && r["statement"]
                .as_str()
                .is_some_and(|s| s.starts_with("COPY person"))
    })
    .await;
    assert_eq!(record["decision"], "allowed");
    assert_eq!(record["class"], "unanalyzed");
    let end = wait_for_record(&dir, end_of(&record)).await;
    assert_eq!(end["outcome"], "completed");
    assert_eq!(end["rows"], 42, "40 rows and the 2 loaded");
    // Each CopyData message adds its 5-byte header to the data it carries.
    assert_eq!(end["bytes"], sent as u64 + 5 * 42, "{end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reloads_name_the_files_that_changed() {
    let (_cluster, proxy) = start("").await;
    let dir = proxy.audit_dir();
    let policy_dir = proxy.handle().policy_dir().to_owned();
    let register = policy_dir.join("register.toml");
    let text = std::fs::read_to_string(&register).unwrap();
    std::fs::write(&register, format!("# reviewed\n{text}")).unwrap();
    std::fs::write(
        policy_dir.join("labels.toml"),
        "[labels]\n\"pii.contact\" = \"Contact\"\n",
    )
    .unwrap();
    proxy.handle().reload_policy().unwrap();
    let accepted = wait_for_record(&dir, |r| {
        r["kind"] == "policy_reload" && r["outcome"] == "accepted"
    })
    .await;
    assert_ne!(accepted["before"], accepted["after"]);
    assert_eq!(
        accepted["files"],
        serde_json::json!([
            { "file": "labels.toml", "change": "added" },
            { "file": "register.toml", "change": "modified" },
        ])
    );

    std::fs::remove_file(policy_dir.join("labels.toml")).unwrap();
    std::fs::write(policy_dir.join("broken.toml"), "[roles.x\n").unwrap();
    assert!(proxy.handle().reload_policy().is_err());
    let refused = wait_for_record(&dir, |r| {
        r["kind"] == "policy_reload" && r["outcome"] == "refused"
    })
    .await;
    assert_eq!(refused["before"], accepted["after"]);
    assert!(refused.get("after").is_none(), "{refused}");
    assert_eq!(
        refused["files"],
        serde_json::json!([
            { "file": "broken.toml", "change": "added" },
            { "file": "labels.toml", "change": "removed" },
        ])
    );
    assert!(
        refused["error"].as_str().unwrap().contains("broken.toml:1"),
        "{refused}"
    );
}
