//! End to end: a session may hold only so many prepared statements and portals
//! (answered 53200, as PostgreSQL answers an exhausted resource, and the session
//! goes on), and an upstream connection whose sessions held many prepared
//! statements is closed rather than pooled, since its backend keeps the memory.

use std::time::Duration;

#[path = "common/enforcement.rs"]
mod enforcement;
#[path = "common/wire.rs"]
mod wire;

use maskgate_testkit::{metric, register, PgCluster, ProxyOptions, TestProxy};
use tokio_postgres::{Client, NoTls};
use wire::{bind, execute, parse, query, sync, Wire};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";

async fn start() -> TestProxy {
    TestProxy::start(
        PgCluster::shared(),
        ProxyOptions {
            pool_size: 1,
            server_settings: "max_prepared_statements = 20\nmax_portals = 3".into(),
            upstream_settings: "recycle_after_prepared = 10".into(),
            ..Default::default()
        },
    )
    .await
    .expect("proxy starts")
}

async fn connect(proxy: &TestProxy) -> (Client, tokio::task::JoinHandle<()>) {
    let (client, connection) = tokio_postgres::connect(&proxy.conn_string(USER, PASSWORD), NoTls)
        .await
        .expect("connects");
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, driver)
}

async fn backend_pid(client: &Client) -> String {
    match &client
        .simple_query("SELECT pg_backend_pid()")
        .await
        .unwrap()[1]
    {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).unwrap().to_owned(),
        other => panic!("no row: {other:?}"),
    }
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

/// Waits until `series` reaches `at_least` in the proxy's metrics.
async fn wait_metric(proxy: &TestProxy, series: &str, at_least: f64) {
    for _ in 0..200 {
        if metric(&proxy.handle().metrics().encode_text(), series) >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{series} never reached {at_least}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_and_portals_are_capped_per_session() {
    let proxy = start().await;
    let (client, _driver) = connect(&proxy).await;
    let mut held = Vec::new();
    for i in 0..20 {
        held.push(
            client
                .prepare(&format!("SELECT {i}"))
                .await
                .expect("within the cap"),
        );
    }
    let e = client
        .prepare("SELECT 'one too many'")
        .await
        .expect_err("past the cap");
    assert_eq!(code(&e), "53200", "{e}");
    let e = client
        .batch_execute("PREPARE by_sql AS SELECT 1")
        .await
        .expect_err("SQL PREPARE counts too");
    assert_eq!(code(&e), "53200", "{e}");
    client
        .simple_query("SELECT 1")
        .await
        .expect("the session goes on");
    // A closed statement makes room (the driver closes it when dropped).
    drop(held.pop());
    client.simple_query("SELECT 1").await.unwrap();
    client
        .prepare("SELECT 'room again'")
        .await
        .expect("room after a Close");
    drop(held);

    // Portals: at most three in a transaction, all gone with it.
    let mut client = client;
    let statement = client.prepare("SELECT 1").await.unwrap();
    let tx = client.transaction().await.unwrap();
    let mut portals = Vec::new();
    for _ in 0..3 {
        portals.push(tx.bind(&statement, &[]).await.expect("within the cap"));
    }
    let Err(e) = tx.bind(&statement, &[]).await else {
        panic!("a portal past the cap");
    };
    assert_eq!(code(&e), "53200", "{e}");
    drop(portals);
    tx.rollback().await.unwrap();
    let tx = client.transaction().await.unwrap();
    for _ in 0..3 {
        tx.bind(&statement, &[])
            .await
            .expect("a new transaction's portals");
    }
    tx.commit().await.unwrap();
    let text = proxy.handle().metrics().encode_text();
    assert!(
        metric(
            &text,
            "maskgate_session_limit_reached_total{limit=\"prepared_statements\"}"
        ) >= 2.0
    );
    assert!(
        metric(
            &text,
            "maskgate_session_limit_reached_total{limit=\"portals\"}"
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_backend_grew_is_not_pooled() {
    let proxy = start().await;
    // A session with a few statements: its connection is reused.
    let (client, driver) = connect(&proxy).await;
    let first = backend_pid(&client).await;
    for i in 0..3 {
        client.prepare(&format!("SELECT {i}")).await.unwrap();
    }
    drop(client);
    driver.await.unwrap();
    wait_metric(&proxy, "maskgate_upstream_connections_idle", 1.0).await;
    let (client, driver) = connect(&proxy).await;
    assert_eq!(
        backend_pid(&client).await,
        first,
        "the pooled connection is reused"
    );

    // Fifteen statements held at once, more than recycle_after_prepared (10).
    let mut held = Vec::new();
    for i in 0..15 {
        held.push(client.prepare(&format!("SELECT {i}")).await.unwrap());
    }
    drop(held);
    drop(client);
    driver.await.unwrap();
    wait_metric(&proxy, "maskgate_upstream_recycled_total", 1.0).await;
    let (client, _driver) = connect(&proxy).await;
    assert_ne!(
        backend_pid(&client).await,
        first,
        "the grown backend was closed, not pooled"
    );
}

/// Prepares and drops a statement `rounds` times, the way psycopg 3 and
/// ActiveRecord evict theirs: by SQL `DEALLOCATE`, never by a protocol Close
/// (the `DEALLOCATE` in the simple and the extended protocol in turn). The
/// errors seen, if any.
async fn prepare_and_deallocate(wire: &mut Wire, rounds: usize) -> Vec<String> {
    let mut errors = Vec::new();
    for round in 0..rounds {
        let name = format!("a{round}");
        let prepared = [parse(&name, "SELECT 1"), sync()].concat();
        let dropped = if round % 2 == 0 {
            query(&format!("DEALLOCATE {name}"))
        } else {
            let sql = format!("DEALLOCATE PREPARE \"{name}\"");
            [parse("", &sql), bind("", "", 0), execute("", 0), sync()].concat()
        };
        for bytes in [prepared, dropped] {
            let seen = wire.until_ready_after(&bytes).await;
            errors.extend(
                seen.iter()
                    .filter(|m| m.tag == b'E')
                    .map(|m| format!("round {round}: {:?}", m.code())),
            );
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_deallocated_by_sql_free_their_place() {
    let mut options = register::proxy_options(
        &register::accounts(),
        register::example_policy_files().expect("policy files"),
    );
    options.server_settings = "max_prepared_statements = 20".into();
    let proxy = TestProxy::start(register::shared(), options)
        .await
        .expect("proxy starts");
    // Twice the cap of 20: every round's statement is gone before the next, for
    // an unrestricted account and a restricted one.
    for login in [register::AUDITOR, register::CLERK] {
        let mut wire = Wire::login(&proxy, login).await.expect("logs in");
        let errors = prepare_and_deallocate(&mut wire, 40).await;
        assert!(errors.is_empty(), "{login}: {errors:?}");
    }
    // DEALLOCATE ALL frees them all.
    let mut wire = Wire::login(&proxy, register::CLERK).await.expect("logs in");
    for i in 0..20 {
        let seen = wire
            .until_ready_after(&[parse(&format!("s{i}"), "SELECT 1"), sync()].concat())
            .await;
        assert!(seen.iter().all(|m| m.tag != b'E'), "{i}");
    }
    let seen = wire
        .until_ready_after(&[parse("full", "SELECT 1"), sync()].concat())
        .await;
    let error = seen.iter().find(|m| m.tag == b'E').expect("at the cap");
    assert_eq!(error.code().as_deref(), Some("53200"));
    wire.until_ready_after(&query("DEALLOCATE ALL")).await;
    let errors = prepare_and_deallocate(&mut wire, 5).await;
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statement_texts_are_capped_in_bytes() {
    let proxy = TestProxy::start(
        PgCluster::shared(),
        ProxyOptions {
            server_settings: "max_prepared_statement_bytes = 65536".into(),
            ..Default::default()
        },
    )
    .await
    .expect("proxy starts");
    let (client, _driver) = connect(&proxy).await;
    let text = |i: usize| format!("SELECT {i}, '{}'", "x".repeat(10_000));
    let mut held = Vec::new();
    for i in 0..6 {
        held.push(client.prepare(&text(i)).await.expect("within the budget"));
    }
    let e = client
        .prepare(&text(6))
        .await
        .expect_err("past the budget of bytes");
    assert_eq!(code(&e), "53200", "{e}");
    let message = e.as_db_error().expect("a server error").message();
    assert!(message.contains("65536 bytes"), "{message}");
    let e = client
        .batch_execute(&format!("PREPARE by_sql AS {}", text(7)))
        .await
        .expect_err("SQL PREPARE counts too");
    assert_eq!(code(&e), "53200", "{e}");
    client
        .simple_query("SELECT 1")
        .await
        .expect("the session goes on");
    // A closed statement makes room (the driver closes it when dropped).
    drop(held.pop());
    client.simple_query("SELECT 1").await.unwrap();
    client.prepare(&text(8)).await.expect("room after a Close");
    let series = "maskgate_session_limit_reached_total{limit=\"prepared_statement_bytes\"}";
    assert_eq!(metric(&proxy.handle().metrics().encode_text(), series), 2.0);
}
