//! End to end: client TLS modes with the real `psql`, startup parameters, and
//! that nothing of one session reaches the next through the upstream pool.

use std::process::Output;
use std::time::Duration;

use maskgate_testkit::{PgBinaries, PgCluster, ProxyOptions, TestProxy};
use tokio_postgres::NoTls;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";

async fn proxy(tls: &'static str) -> TestProxy {
    TestProxy::start(
        PgCluster::shared(),
        ProxyOptions {
            tls,
            ..Default::default()
        },
    )
    .await
    .expect("proxy starts")
}

/// Runs `psql -X -At -d <conninfo> -c <sql>` as alice, without blocking the runtime the proxy runs on.
async fn psql(conninfo: &str, sql: &str) -> Output {
    let psql = PgBinaries::find().expect("PostgreSQL binaries").psql();
    let run = tokio::process::Command::new(psql)
        .args(["-X", "-At", "-d", conninfo, "-c", sql])
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("LC_ALL", "C")
        .env_remove("PGSSLMODE")
        .env_remove("PGSERVICE")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("psql finishes")
        .expect("psql runs")
}

fn conninfo(proxy: &TestProxy, host: &str, extra: &str) -> String {
    format!(
        "host={host} port={} user={USER} dbname={} gssencmode=disable {extra}",
        proxy.port(),
        proxy.database()
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "psql failed: {}\nstdout: {}",
        stderr(out),
        stdout(out)
    );
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

async fn connect_config(config: &tokio_postgres::Config) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await.map(drop)
}

fn base_config(proxy: &TestProxy) -> tokio_postgres::Config {
    proxy
        .conn_string(USER, PASSWORD)
        .parse()
        .expect("the test proxy's connection string parses")
}

async fn show(client: &tokio_postgres::Client, setting: &str) -> String {
    client
        .query_one(&format!("SHOW {setting}"), &[])
        .await
        .expect("SHOW works")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_require_accepts_verified_tls_and_refuses_plain_connections() {
    let proxy = proxy("require").await;
    let ca = proxy.ca_cert_path();

    let verified = conninfo(
        &proxy,
        "localhost",
        &format!("sslmode=verify-full sslrootcert={}", ca.display()),
    );
    let out = psql(&verified, "SELECT 40 + 2").await;
    assert_ok(&out);
    assert_eq!(stdout(&out), "42");
    let out = psql(&verified, "\\conninfo").await;
    assert_ok(&out);
    assert!(stdout(&out).contains("SSL connection"), "{}", stdout(&out));

    let out = psql(
        &conninfo(&proxy, "127.0.0.1", "sslmode=disable"),
        "SELECT 1",
    )
    .await;
    assert!(!out.status.success(), "a plain connection was accepted");
    let err = stderr(&out);
    assert!(
        err.contains("maskgate accepts only encrypted connections"),
        "{err}"
    );
    assert!(
        err.contains("sslmode=require"),
        "the hint is missing: {err}"
    );

    let e = connect_config(&base_config(&proxy))
        .await
        .expect_err("tokio-postgres without TLS is refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_prefer_accepts_tls_and_plain_connections() {
    let proxy = proxy("prefer").await;
    let ca = proxy.ca_cert_path();

    let verified = conninfo(
        &proxy,
        "localhost",
        &format!("sslmode=verify-full sslrootcert={}", ca.display()),
    );
    let out = psql(&verified, "\\conninfo").await;
    assert_ok(&out);
    assert!(stdout(&out).contains("SSL connection"), "{}", stdout(&out));
    let out = psql(&verified, "SELECT 'over tls'").await;
    assert_ok(&out);
    assert_eq!(stdout(&out), "over tls");

    let plain = conninfo(&proxy, "127.0.0.1", "sslmode=disable");
    let out = psql(&plain, "\\conninfo").await;
    assert_ok(&out);
    assert!(!stdout(&out).contains("SSL connection"), "{}", stdout(&out));
    let out = psql(&plain, "SELECT 'plain'").await;
    assert_ok(&out);
    assert_eq!(stdout(&out), "plain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_disable_refuses_sslmode_require_and_serves_plain() {
    let proxy = proxy("disable").await;

    let out = psql(
        &conninfo(&proxy, "127.0.0.1", "sslmode=require"),
        "SELECT 1",
    )
    .await;
    assert!(!out.status.success(), "sslmode=require succeeded");
    assert!(
        stderr(&out).contains("server does not support SSL"),
        "{}",
        stderr(&out)
    );

    let out = psql(
        &conninfo(&proxy, "127.0.0.1", "sslmode=disable"),
        "SELECT 7",
    )
    .await;
    assert_ok(&out);
    assert_eq!(stdout(&out), "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_name_and_options_settings_are_applied() {
    let proxy = proxy("disable").await;

    let out = psql(
        &conninfo(
            &proxy,
            "127.0.0.1",
            "sslmode=disable application_name=ledger-export",
        ),
        "SHOW application_name",
    )
    .await;
    assert_ok(&out);
    assert_eq!(stdout(&out), "ledger-export");

    let out = psql(
        &conninfo(
            &proxy,
            "127.0.0.1",
            "sslmode=disable options='-c statement_timeout=1234 -c DateStyle=SQL,DMY'",
        ),
        "SHOW statement_timeout; SHOW DateStyle",
    )
    .await;
    assert_ok(&out);
    assert_eq!(stdout(&out), "1234ms\nSQL, DMY");

    let mut config = base_config(&proxy);
    config
        .application_name("payroll")
        .options("-c statement_timeout=4321 -c DateStyle=German");
    let (client, connection) = config.connect(NoTls).await.expect("connects");
    tokio::spawn(connection);
    assert_eq!(show(&client, "application_name").await, "payroll");
    assert_eq!(show(&client, "statement_timeout").await, "4321ms");
    assert_eq!(show(&client, "DateStyle").await, "German, DMY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_startup_parameters_are_named_in_the_error() {
    let proxy = proxy("disable").await;

    for (options, name) in [
        ("-c role=postgres", "role"),
        ("-c session_authorization=postgres", "session_authorization"),
    ] {
        let mut config = base_config(&proxy);
        config.options(options);
        let e = connect_config(&config)
            .await
            .expect_err("a refused parameter is refused");
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{options}: {e}");
        let message = e.as_db_error().expect("a server error").message();
        assert!(message.contains(name), "{options}: {message}");
    }

    let out = psql(
        &conninfo(
            &proxy,
            "127.0.0.1",
            "sslmode=disable options='-c role=postgres'",
        ),
        "SELECT 1",
    )
    .await;
    assert!(!out.status.success(), "role was accepted");
    assert!(stderr(&out).contains("role"), "{}", stderr(&out));

    // search_path passes through for an unrestricted account (a restricted one's
    // is followed by maskgate's own name resolution: tests/restricted_catalog.rs).
    let mut config = base_config(&proxy);
    config.options("-c search_path=sales,public");
    let (client, connection) = config.connect(NoTls).await.expect("connects");
    tokio::spawn(connection);
    assert_eq!(show(&client, "search_path").await, "sales,public");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_database_is_refused_with_3d000() {
    let proxy = proxy("disable").await;
    let mut config = base_config(&proxy);
    config.dbname("template1");
    let e = connect_config(&config)
        .await
        .expect_err("another database is refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("3D000"), "{e}");
    let message = e.as_db_error().expect("a server error").message();
    assert!(message.contains("template1"), "{message}");
}

/// Waits until the pool holds `n` idle upstream connections: a session's
/// connection is reset and returned only after the client has gone.
async fn wait_for_idle_upstreams(proxy: &TestProxy, n: usize) {
    let series = format!("maskgate_upstream_connections_idle {n}");
    for _ in 0..200 {
        let text = proxy.handle().metrics().encode_text();
        if text.lines().any(|l| l == series) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the pool never held {n} idle upstream connection(s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_upstream_connections_carry_no_session_state() {
    let proxy = TestProxy::start(
        PgCluster::shared(),
        ProxyOptions {
            pool_size: 1,
            ..Default::default()
        },
    )
    .await
    .expect("proxy starts");

    let mut config = base_config(&proxy);
    config.application_name("first");
    let (client, connection) = config.connect(NoTls).await.expect("connects");
    let driver = tokio::spawn(connection);
    let default_work_mem = show(&client, "work_mem").await;
    assert_ne!(default_work_mem, "77MB");
    client
        .batch_execute(
            "SET work_mem = '77MB'; CREATE TEMP TABLE t(x int); INSERT INTO t VALUES (1)",
        )
        .await
        .expect("session 1 sets state");
    assert_eq!(show(&client, "work_mem").await, "77MB");
    assert_eq!(show(&client, "application_name").await, "first");
    let pid1: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    drop(client);
    driver.await.unwrap().expect("session 1 ends cleanly");
    wait_for_idle_upstreams(&proxy, 1).await;

    let mut config = base_config(&proxy);
    config.application_name("second");
    let (client, connection) = config.connect(NoTls).await.expect("connects");
    let driver = tokio::spawn(connection);
    let pid2: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pid1, pid2, "session 2 did not reuse the pooled connection");
    assert_eq!(show(&client, "work_mem").await, default_work_mem);
    assert_eq!(show(&client, "application_name").await, "second");
    let temp: Option<String> = client
        .query_one("SELECT to_regclass('t')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(temp, None, "session 1's temporary table is visible");
    drop(client);
    driver.await.unwrap().expect("session 2 ends cleanly");
    wait_for_idle_upstreams(&proxy, 1).await;

    // A session that names no application must not inherit the previous one's.
    let client = proxy.connect(USER, PASSWORD).await.expect("connects");
    let pid3: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pid1, pid3);
    assert_ne!(show(&client, "application_name").await, "second");
}
