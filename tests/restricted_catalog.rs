//! The catalog, session state and EXPLAIN as a restricted account sees them, probed
//! as a hostile client would: OID sweeps through the catalog functions, error
//! oracles on catalog rows, settings read through bind parameters, estimates.
//! Uses the driver matrix's database (tests/drivers/).

use maskgate_testkit::{PgCluster, ProxyOptions, TestProxy};
use tokio_postgres::{Client, SimpleQueryMessage};

const PASSWORD: &str = "correct horse battery";

/// What must never reach the clerk: the denied column, its index, constraint and
/// comment, the expression index, and the table outside the policy.
const NEVER: &[&str] = &[
    "phone",
    "hidden_payroll",
    "hidden-comment",
    "salary",
    "lower(full_name)",
    "person_lower_name_idx",
    "tax_code",
];

async fn start() -> (PgCluster, TestProxy) {
    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    cluster.psql(include_str!("drivers/schema.sql")).unwrap();
    let options = ProxyOptions {
        users: vec![("clerk".into(), PASSWORD.into())],
        roles: vec!["clerk".into()],
        account_settings: vec![("clerk".into(), "attributes = { province = \"01\" }".into())],
        policy_files: vec![(
            "register.toml".into(),
            include_str!("drivers/policy.toml").into(),
        )],
        ..ProxyOptions::default()
    };
    let proxy = TestProxy::start(&cluster, options).await.unwrap();
    (cluster, proxy)
}

/// Every value of every row, joined, for scanning.
async fn text_of(client: &Client, sql: &str) -> String {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut text = String::new();
    for message in messages {
        if let SimpleQueryMessage::Row(row) = message {
            for i in 0..row.len() {
                text.push_str(row.get(i).unwrap_or("NULL"));
                text.push('|');
            }
            text.push('\n');
        }
    }
    text
}

fn assert_clean(sql: &str, text: &str) {
    for never in NEVER {
        assert!(!text.contains(never), "{sql} showed {never:?}:\n{text}");
    }
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_functions_answer_only_for_what_the_account_sees() {
    let (_cluster, proxy) = start().await;
    let clerk = proxy.connect("clerk", PASSWORD).await.unwrap();
    // Every OID a user object can have in this fresh database, through every
    // guarded function.
    let sweep = "FROM generate_series(16384, 17500) AS o(n)";
    for sql in [
        format!("SELECT string_agg(pg_get_indexdef(n::oid), ';') {sweep}"),
        format!("SELECT string_agg(pg_get_constraintdef(n::oid), ';') {sweep}"),
        format!("SELECT string_agg(format_type(n::oid, NULL), ';') {sweep}"),
        format!("SELECT string_agg(obj_description(n::oid), ';') {sweep}"),
        format!("SELECT string_agg(col_description(n::oid, 4), ';') {sweep}"),
        format!("SELECT count(pg_table_is_visible(n::oid)) {sweep}"),
        "SELECT a.attrelid, a.attname FROM pg_attribute a WHERE a.attrelid >= 16384".to_owned(),
        "SELECT relname FROM pg_class WHERE oid >= 16384".to_owned(),
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint".to_owned(),
        "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef".to_owned(),
        "SELECT description FROM pg_description WHERE objoid >= 16384".to_owned(),
        "SELECT typname FROM pg_type WHERE oid >= 16384".to_owned(),
        "SELECT table_name, column_name FROM information_schema.columns".to_owned(),
    ] {
        let text = text_of(&clerk, &sql).await;
        assert_clean(&sql, &text);
    }
    // The sweep still finds what the account may see.
    let indexes = text_of(
        &clerk,
        &format!("SELECT string_agg(pg_get_indexdef(n::oid), ';') {sweep}"),
    )
    .await;
    assert!(indexes.contains("person_citizen_key"), "{indexes}");
    let comments = text_of(
        &clerk,
        "SELECT description FROM pg_description WHERE objsubid > 0",
    )
    .await;
    assert!(comments.contains("Name as on the card"), "{comments}");

    // No row count estimates of the whole table.
    let estimate = text_of(
        &clerk,
        "SELECT reltuples, relpages FROM pg_class WHERE relname = 'person'",
    )
    .await;
    assert_eq!(estimate, "-1|0|\n");

    // The client's conditions never run on the rows left out: no division-by-zero
    // oracle on the name of a hidden table.
    text_of(
        &clerk,
        "SELECT relname FROM pg_class WHERE 1 / (CASE WHEN relname = 'hidden_payroll' THEN 0 ELSE 1 END) = 1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relation_outside_the_policy_answers_as_one_that_does_not_exist() {
    let (_cluster, proxy) = start().await;
    let clerk = proxy.connect("clerk", PASSWORD).await.unwrap();
    let hidden = clerk
        .simple_query("SELECT * FROM hidden_payroll")
        .await
        .unwrap_err();
    let missing = clerk
        .simple_query("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert_eq!(code(&hidden), "42P01");
    assert_eq!(code(&missing), "42P01");
    let message = |e: &tokio_postgres::Error, name: &str| {
        e.as_db_error()
            .map(|d| d.message().replace(name, "<name>"))
            .unwrap_or_default()
    };
    assert_eq!(
        message(&hidden, "hidden_payroll"),
        message(&missing, "no_such_table")
    );
    let stats = clerk
        .simple_query("SELECT * FROM pg_stats")
        .await
        .unwrap_err();
    assert_eq!(code(&stats), "42501");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_read_only_what_show_may_and_sleep_is_bounded() {
    let (_cluster, proxy) = start().await;
    let clerk = proxy.connect("clerk", PASSWORD).await.unwrap();
    let name: String = clerk
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(name.parse::<u32>().is_ok());
    let e = clerk
        .simple_query("SELECT current_setting('maskgate.pk_6b_i')")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501");
    // A name bound at run time: anything but a readable setting reads as NULL.
    for (setting, readable) in [
        ("application_name", true),
        ("maskgate.pk_6b_i", false),
        ("shared_preload_libraries", false),
        ("DateStyle", true),
    ] {
        let value: Option<String> = clerk
            .query_one("SELECT current_setting($1::text)", &[&setting])
            .await
            .unwrap()
            .get(0);
        assert_eq!(value.is_some(), readable, "{setting}");
    }
    clerk.simple_query("SELECT pg_sleep(1.5)").await.unwrap();
    let e = clerk.simple_query("SELECT pg_sleep(61)").await.unwrap_err();
    assert_eq!(code(&e), "42501");
    clerk
        .batch_execute("SET statement_timeout = '100ms'")
        .await
        .unwrap();
    let e = clerk.simple_query("SELECT pg_sleep(5)").await.unwrap_err();
    assert_eq!(code(&e), "57014", "statement_timeout ends the sleep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_path_is_followed_and_reset() {
    let (cluster, proxy) = start().await;
    cluster
        .psql("CREATE SCHEMA other; CREATE TABLE other.person (id int);")
        .unwrap();
    let clerk = proxy.connect("clerk", PASSWORD).await.unwrap();
    clerk
        .batch_execute("SET search_path = other")
        .await
        .unwrap();
    let e = clerk
        .simple_query("SELECT id FROM person")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P01", "other.person is not a policy table");
    // Upstream, only the schemas of the account's tables: none here.
    let shown = text_of(&clerk, "SHOW search_path").await;
    assert_eq!(shown, "\"\"|\n", "{shown}");
    clerk
        .batch_execute("SET search_path = other, public")
        .await
        .unwrap();
    assert_eq!(text_of(&clerk, "SHOW search_path").await, "public|\n");
    clerk.batch_execute("RESET search_path").await.unwrap();
    let rows = text_of(&clerk, "SELECT citizen_id FROM person WHERE id = 2").await;
    assert_eq!(rows, "********4002|\n");
    // In one string, a SET applies to the statements after it.
    let e = clerk
        .simple_query("SET search_path = other; SELECT id FROM person")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P01");
    clerk.batch_execute("RESET ALL").await.unwrap();
    text_of(&clerk, "SELECT id FROM person WHERE id = 2").await;
    let e = clerk
        .simple_query("SET search_path = public, pg_catalog")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "0A000");

    // From the startup packet.
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "{} options='-c search_path=other'",
            proxy.conn_string("clerk", PASSWORD)
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let e = client
        .simple_query("SELECT id FROM person")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P01");
    client
        .simple_query("SELECT id FROM public.person WHERE id = 2")
        .await
        .unwrap();
    // Upstream, only the schemas of the account's tables (none of these).
    let shown = text_of(&client, "SHOW search_path").await;
    assert!(!shown.contains("other"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_rewritten_plan_without_estimates() {
    let (_cluster, proxy) = start().await;
    let clerk = proxy.connect("clerk", PASSWORD).await.unwrap();
    let plan = text_of(&clerk, "EXPLAIN SELECT * FROM person WHERE id = 2").await;
    assert!(plan.contains("person"), "{plan}");
    assert!(
        plan.contains("'01'"),
        "the row filter is part of the plan: {plan}"
    );
    assert!(!plan.contains("rows=") && !plan.contains("cost="), "{plan}");
    let json = text_of(
        &clerk,
        "EXPLAIN (FORMAT JSON, COSTS OFF) SELECT full_name FROM person",
    )
    .await;
    assert!(
        json.contains("\"Node Type\"") && !json.contains("Plan Rows"),
        "{json}"
    );
    for refused in [
        "EXPLAIN ANALYZE SELECT * FROM person",
        "EXPLAIN (ANALYZE) SELECT * FROM person",
        "EXPLAIN (COSTS ON) SELECT * FROM person",
        "EXPLAIN VERBOSE SELECT * FROM person",
        "EXPLAIN SELECT phone FROM person",
        "EXPLAIN SELECT * FROM hidden_payroll",
    ] {
        let e = clerk.simple_query(refused).await.unwrap_err();
        assert!(
            ["42501", "42P01"].contains(&code(&e).as_str()),
            "{refused}: {e}"
        );
    }
}

/// Runs `\\copy … to stdout` through psql (a simple query, as COPY must be for a
/// restricted account); returns its output lines and its error, if any.
fn psql_copy(cluster: &PgCluster, proxy: &TestProxy, copy: &str) -> (usize, String) {
    let psql = cluster
        .bin_dir()
        .map(|dir| dir.join("psql"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "psql".into());
    let output = std::process::Command::new(psql)
        .args([
            "-X",
            "-d",
            &proxy.conn_string("clerk", PASSWORD),
            "-c",
            copy,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    (
        stdout.lines().count(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_is_capped_on_the_wire() {
    let (cluster, proxy) = start().await;
    // Under the cap: every row, a CSV header not counted as one.
    let (lines, error) = psql_copy(
        &cluster,
        &proxy,
        "\\copy (SELECT g FROM generate_series(1, 500) g) to stdout with csv header",
    );
    assert_eq!(
        (lines, error.as_str()),
        (501, ""),
        "500 rows and the header"
    );
    // Over it: at most the cap arrives, then 54000.
    let (lines, error) = psql_copy(
        &cluster,
        &proxy,
        "\\copy (SELECT g FROM generate_series(1, 600) g) to stdout",
    );
    assert!(lines <= 500, "{lines} rows");
    assert!(error.contains("more than 500 rows"), "{error}");
    // The extended protocol cannot carry a restricted account's COPY.
    let clerk = proxy.connect("clerk", PASSWORD).await.unwrap();
    let e = clerk
        .copy_out("COPY (SELECT 1) TO STDOUT")
        .await
        .err()
        .expect("refused");
    assert_eq!(code(&e), "0A000");
}
