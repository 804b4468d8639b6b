//! The wire path of enforcement for a restricted account: statements are replaced
//! by their rewrite, denials arrive where PostgreSQL would put an error, rows are
//! capped on the wire and upstream errors lose the fields that can quote data.

use maskgate_testkit::{PgCluster, ProxyOptions, TestProxy};
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

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
description = "Loads new people of its province"
statements = ["insert"]

[roles.loader.tables."public.person"]
row_filter = "province_code = :province"
columns = { id = "allow", citizen_id = "allow", province_code = "allow", note = "allow" }
"#;

const SCHEMA: &str = "
CREATE TABLE person (id bigint PRIMARY KEY, citizen_id char(12) NOT NULL, province_code char(2) NOT NULL, note text);
INSERT INTO person SELECT g, lpad(g::text, 12, '0'), CASE WHEN g % 2 = 0 THEN '01' ELSE '79' END, 'n' || g FROM generate_series(1, 40) g;
";

async fn start() -> (PgCluster, TestProxy) {
    start_as("clerk", "reader").await
}

/// A fresh cluster with the person table, and maskgate with one account `login` of
/// `role` in province 01.
async fn start_as(login: &str, role: &str) -> (PgCluster, TestProxy) {
    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    cluster.psql(SCHEMA).unwrap();
    let options = ProxyOptions {
        users: vec![(login.into(), PASSWORD.into())],
        roles: vec![role.into()],
        account_settings: vec![(login.into(), "attributes = { province = \"01\" }".into())],
        policy_files: vec![("register.toml".into(), POLICY.into())],
        ..ProxyOptions::default()
    };
    let proxy = TestProxy::start(&cluster, options).await.unwrap();
    (cluster, proxy)
}

fn rows(messages: &[SimpleQueryMessage]) -> Vec<&tokio_postgres::SimpleQueryRow> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_are_masked_and_filtered_in_both_protocols() {
    let (_cluster, proxy) = start().await;
    let client = proxy.connect("clerk", PASSWORD).await.unwrap();

    let messages = client
        .simple_query("SELECT id, citizen_id, province_code FROM person WHERE id = 2")
        .await
        .unwrap();
    let found = rows(&messages);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get(1), Some("********0002"));

    let out_of_province = client
        .query("SELECT id FROM person WHERE id = $1", &[&3i64])
        .await
        .unwrap();
    assert!(out_of_province.is_empty(), "row 3 is in province 79");

    let row = client
        .query_one("SELECT id, citizen_id FROM person WHERE id = $1", &[&4i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 4);
    assert_eq!(row.get::<_, String>(1), "********0004");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_statement_fails_like_a_postgresql_error() {
    let (_cluster, proxy) = start().await;
    let client = proxy.connect("clerk", PASSWORD).await.unwrap();

    let err = client
        .simple_query("SELECT note FROM person")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    let db = err.as_db_error().unwrap();
    assert!(db.message().contains("note"), "{}", db.message());

    let err = client
        .query("SELECT note FROM person", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    // The connection goes on.
    let n = client
        .query("SELECT count(*) FROM person", &[])
        .await
        .unwrap();
    assert_eq!(n[0].get::<_, i64>(0), 20);

    // Inside a transaction block the denial fails the transaction, as an error would.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .query("SELECT note FROM person", &[])
        .await
        .unwrap_err();
    let err = client.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "{err}"
    );
    client.batch_execute("ROLLBACK").await.unwrap();

    // One denied statement in a string: none of it runs.
    let err = client
        .simple_query("SET application_name = 'changed'; SELECT note FROM person")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let name = client.simple_query("SHOW application_name").await.unwrap();
    assert_ne!(rows(&name)[0].get(0), Some("changed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_row_after_the_cap_never_reaches_the_client() {
    let (_cluster, proxy) = start().await;
    let client = proxy.connect("clerk", PASSWORD).await.unwrap();
    let err = client
        .query("SELECT id FROM person", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::PROGRAM_LIMIT_EXCEEDED), "{err}");
    assert!(err.as_db_error().unwrap().message().contains('5'));

    let err = client
        .simple_query("SELECT id FROM person ORDER BY id")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::PROGRAM_LIMIT_EXCEEDED), "{err}");
    let ok = client
        .query("SELECT id FROM person ORDER BY id LIMIT 5", &[])
        .await
        .unwrap();
    assert_eq!(ok.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_lose_their_detail_for_restricted_accounts() {
    let (_cluster, proxy) = start().await;
    let client = proxy.connect("clerk", PASSWORD).await.unwrap();
    let err = client
        .query("SELECT citizen_id::int FROM person WHERE id = 2", &[])
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code(), &SqlState::INVALID_TEXT_REPRESENTATION);
    assert!(
        db.position().is_none()
            && db.detail().is_none()
            && db.hint().is_none()
            && db.where_().is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_the_accounts_rules_ends_its_sessions_and_other_changes_do_not() {
    let (_cluster, proxy) = start().await;
    let client = proxy.connect("clerk", PASSWORD).await.unwrap();
    let statement = client
        .prepare("SELECT id, citizen_id FROM person WHERE id = $1")
        .await
        .unwrap();
    client.query(&statement, &[&2i64]).await.unwrap();

    // A change that does not touch the account's rules: the session goes on.
    let path = proxy.config_dir().join("policy/register.toml");
    let unchanged = format!("{POLICY}\n[roles.unused]\ndescription = \"not held by anyone\"\n");
    std::fs::write(&path, unchanged).unwrap();
    proxy.handle().reload_policy().unwrap();
    client.query(&statement, &[&2i64]).await.unwrap();

    // The prepared statement was rewritten under the old rules: it must not run
    // under the new ones.
    let stricter = POLICY.replace("keep_last = 4", "keep_last = 2");
    std::fs::write(&path, stricter).unwrap();
    proxy.handle().reload_policy().unwrap();
    let err = client.query(&statement, &[&2i64]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{err}");

    let client = proxy.connect("clerk", PASSWORD).await.unwrap();
    let row = client
        .query_one("SELECT citizen_id FROM person WHERE id = $1", &[&2i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "**********02");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_accounts_keep_client_encoding_utf8() {
    let (_cluster, proxy) = start().await;
    let latin1 = format!(
        "{} options='-c client_encoding=LATIN1'",
        proxy.conn_string("clerk", PASSWORD)
    );
    let err = tokio_postgres::connect(&latin1, tokio_postgres::NoTls)
        .await
        .err()
        .expect("a restricted login with another encoding is refused");
    assert_eq!(err.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED), "{err}");

    let client = proxy.connect("clerk", PASSWORD).await.unwrap();
    for set in [
        "SET client_encoding = 'SJIS'",
        "SET NAMES 'LATIN1'",
        "SET client_encoding TO big5",
    ] {
        let err = client.batch_execute(set).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{set}: {err}"
        );
    }
    client
        .batch_execute("SET client_encoding = 'UTF8'")
        .await
        .unwrap();
    let encoding = client.simple_query("SHOW client_encoding").await.unwrap();
    assert_eq!(rows(&encoding)[0].get(0), Some("UTF8"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_statements_are_prepared_upstream_once_and_stay_correct() {
    use tokio_postgres::types::Type;
    let (_cluster, proxy) = start().await;
    let client = proxy.connect("clerk", PASSWORD).await.unwrap();
    let lookup = "SELECT id, citizen_id FROM person WHERE id = $1";
    // query_typed sends Parse of the unnamed statement, Bind, Execute, Sync each time.
    for id in [2i64, 4, 6, 2, 3, 8] {
        let rows = client
            .query_typed(lookup, &[(&id, Type::INT8)])
            .await
            .unwrap();
        if id % 2 == 1 {
            assert!(rows.is_empty(), "row {id} is outside the province");
            continue;
        }
        assert_eq!(rows[0].get::<_, i64>(0), id);
        assert_eq!(rows[0].get::<_, String>(1), format!("********{id:04}"));
    }
    // A denial and a DISCARD ALL in between change nothing for the next lookups.
    client
        .query_typed("SELECT note FROM person", &[])
        .await
        .unwrap_err();
    client.batch_execute("DISCARD ALL").await.unwrap();
    let rows = client
        .query_typed(lookup, &[(&10i64, Type::INT8)])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(1), "********0010");
    let other = client
        .query_typed(
            "SELECT count(*) FROM person WHERE id < $1",
            &[(&11i64, Type::INT8)],
        )
        .await
        .unwrap();
    assert_eq!(other[0].get::<_, i64>(0), 5);
}

/// psql through the proxy as `login`, with `stdin` for COPY: (success, stderr).
async fn psql_copy(
    cluster: &PgCluster,
    proxy: &TestProxy,
    login: &str,
    sql: &str,
    stdin: &str,
) -> (bool, String) {
    use tokio::io::AsyncWriteExt;
    let psql = cluster.bin_dir().expect("a local cluster").join("psql");
    let mut child = tokio::process::Command::new(psql)
        .arg(proxy.conn_string(login, PASSWORD))
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_stdin_takes_only_rows_in_the_accounts_scope() {
    let (cluster, proxy) = start_as("loader", "loader").await;
    let copy = "COPY person (id, citizen_id, province_code, note) FROM STDIN";
    let count = |ids: &str| {
        cluster
            .psql(&format!("SELECT count(*) FROM person WHERE id IN ({ids})"))
            .unwrap()
            .trim()
            .to_string()
    };

    let (ok, err) = psql_copy(
        &cluster,
        &proxy,
        "loader",
        copy,
        "101\t000000000101\t01\tnew\n102\t000000000102\t01\t\\N\n",
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(count("101, 102"), "2");

    // One row of another province fails the whole COPY: none of it is inserted.
    let (ok, err) = psql_copy(
        &cluster,
        &proxy,
        "loader",
        copy,
        "103\t000000000103\t01\tnew\n104\t000000000104\t79\tnew\n",
    )
    .await;
    assert!(!ok);
    assert!(err.contains("maskgate refused the copied rows"), "{err}");
    assert!(
        !err.contains("maskgate_denied"),
        "the token stays inside: {err}"
    );
    assert_eq!(count("103, 104"), "0");

    // Rows split where PostgreSQL splits them: an escaped tab or newline is data.
    // Read naively (a row per newline, a field per tab), these bytes are two rows
    // with 01 in the province column; PostgreSQL reads one row of province 79:
    // note "\t01", citizen_id "c\n0000000\t01", id "108\t" (bigint skips the tab).
    let (ok, err) = psql_copy(
        &cluster,
        &proxy,
        "loader",
        "COPY person (note, province_code, citizen_id, id) FROM STDIN",
        "\\\t01\t79\tc\\\n0000000\\\t01\t108\\\t\n",
    )
    .await;
    assert!(!ok, "{err}");
    assert!(err.contains("maskgate refused the copied rows"), "{err}");
    assert_eq!(count("108"), "0");

    // The filter's column must be listed; other forms of COPY are refused.
    for refused in [
        "COPY person (id, citizen_id, note) FROM STDIN",
        "COPY person (id, citizen_id, province_code, note) FROM STDIN WITH (FORMAT csv)",
        "COPY person (id) FROM '/etc/hostname'",
    ] {
        let (ok, err) = psql_copy(&cluster, &proxy, "loader", refused, "").await;
        assert!(!ok && err.contains("ERROR"), "{refused}: {err}");
    }
}
