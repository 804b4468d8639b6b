//! End to end: the database server going away and coming back while
//! maskgate keeps running.

use std::time::Duration;

use maskgate_testkit::{metric, PgCluster, ProxyOptions, TestProxy};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Error, NoTls};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";

fn sqlstate(e: &Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

/// Connects and keeps the connection task's result, which carries the
/// error the server sent when it ended the session on its own.
async fn connect(proxy: &TestProxy) -> Result<(Client, JoinHandle<Result<(), Error>>), Error> {
    let (client, connection) =
        tokio_postgres::connect(&proxy.conn_string(USER, PASSWORD), NoTls).await?;
    Ok((client, tokio::spawn(connection)))
}

async fn select_one(client: &Client) -> Result<i32, Error> {
    Ok(client.query_one("SELECT 1", &[]).await?.get(0))
}

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
async fn upstream_down_gives_a_connection_error_and_the_proxy_stays_up() {
    let mut pg = PgCluster::start().expect("cluster starts");
    let proxy = TestProxy::start(&pg, ProxyOptions::default())
        .await
        .expect("proxy starts");
    tokio::task::block_in_place(|| pg.stop()).expect("cluster stops");

    for _ in 0..2 {
        let e = match tokio::time::timeout(Duration::from_secs(15), connect(&proxy)).await {
            Ok(Ok(_)) => panic!("a session started without a database server"),
            Ok(Err(e)) => e,
            Err(_) => panic!("connecting hung while the database server is down"),
        };
        let code = sqlstate(&e).unwrap_or_default();
        assert!(code.starts_with("08"), "SQLSTATE {code:?}: {e}");
        let message = e.as_db_error().expect("a server error").message();
        assert!(message.contains("could not connect"), "{message}");
    }

    tokio::task::block_in_place(|| pg.start_again()).expect("cluster starts again");
    let (client, _driver) = connect(&proxy)
        .await
        .expect("connects once the server is back");
    assert_eq!(select_one(&client).await.unwrap(), 1);
    let text = proxy.handle().metrics().encode_text();
    assert!(
        metric(&text, "maskgate_upstream_connect_errors_total") >= 2.0,
        "connect errors are not counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_restart_drops_dead_pooled_connections_and_ends_open_sessions_cleanly() {
    let mut pg = PgCluster::start().expect("cluster starts");
    let proxy = TestProxy::start(
        &pg,
        ProxyOptions {
            pool_size: 2,
            ..Default::default()
        },
    )
    .await
    .expect("proxy starts");

    let (open, open_driver) = connect(&proxy).await.expect("connects");
    assert_eq!(select_one(&open).await.unwrap(), 1);

    let (client, driver) = connect(&proxy).await.expect("connects");
    assert_eq!(select_one(&client).await.unwrap(), 1);
    drop(client);
    driver.await.unwrap().expect("the session ends cleanly");
    wait_for_idle_upstreams(&proxy, 1).await;

    tokio::task::block_in_place(|| pg.restart()).expect("cluster restarts");

    // The pooled connection died with the old server; a new session must
    // not be handed it.
    let (client, _driver) = tokio::time::timeout(Duration::from_secs(15), connect(&proxy))
        .await
        .expect("connecting does not hang")
        .expect("connects after the restart");
    assert_eq!(select_one(&client).await.unwrap(), 1);

    // The session that was open across the restart fails cleanly.
    let result = tokio::time::timeout(Duration::from_secs(10), select_one(&open))
        .await
        .expect("the old session does not hang");
    let e = result.expect_err("the old session's upstream is gone");
    let connection_end = tokio::time::timeout(Duration::from_secs(5), open_driver)
        .await
        .expect("the old connection ends")
        .unwrap();
    let code = sqlstate(&e)
        .or_else(|| connection_end.as_ref().err().and_then(sqlstate))
        .unwrap_or_default();
    assert!(
        code == "57P01" || code.starts_with("08"),
        "SQLSTATE {code:?}: {e}; connection ended with {connection_end:?}"
    );
}
