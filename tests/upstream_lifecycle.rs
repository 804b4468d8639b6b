//! End to end: the database server going away and coming back while
//! maskgate keeps running.

#[path = "common/raw_login.rs"]
mod raw_login;

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

/// Every process of a local cluster: the postmaster and its children.
fn cluster_pids(pg: &PgCluster) -> Vec<String> {
    let pidfile = pg
        .data_dir()
        .expect("a local cluster")
        .join("postmaster.pid");
    let postmaster = std::fs::read_to_string(pidfile)
        .expect("postmaster.pid")
        .lines()
        .next()
        .expect("the postmaster's pid")
        .trim()
        .to_string();
    let mut pids = vec![postmaster.clone()];
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid …; comm may hold spaces, so read after the last ')'.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if parent == Some(postmaster.as_str()) {
            pids.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    pids
}

/// A cluster stopped with SIGSTOP, continued when dropped (also when a test fails).
struct Frozen(Vec<String>);

impl Frozen {
    fn freeze(pg: &PgCluster) -> Frozen {
        let pids = cluster_pids(pg);
        let status = std::process::Command::new("kill")
            .arg("-STOP")
            .args(&pids)
            .status()
            .expect("kill runs");
        assert!(status.success());
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-CONT")
            .args(&self.0)
            .status();
    }
}

async fn health(proxy: &TestProxy) -> (u16, String) {
    maskgate_testkit::http_get(proxy.admin_addr().expect("admin"), "/health").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_database_is_answered_within_the_configured_bounds() {
    let pg = PgCluster::start().expect("cluster starts");
    let proxy = TestProxy::start(
        &pg,
        ProxyOptions {
            pool_size: 2,
            upstream_settings: "checkout_timeout = \"1s\"\nreset_timeout = \"1s\"\n\
                                health_check_interval = \"300ms\""
                .into(),
            ..Default::default()
        },
    )
    .await
    .expect("proxy starts");
    let (client, driver) = connect(&proxy).await.expect("connects");
    assert_eq!(select_one(&client).await.unwrap(), 1);
    drop(client);
    driver.await.unwrap().expect("the session ends cleanly");
    wait_for_idle_upstreams(&proxy, 1).await;

    let frozen = Frozen::freeze(&pg);
    // A new session is refused once its pooled connection does not answer.
    let e = match tokio::time::timeout(Duration::from_secs(10), connect(&proxy)).await {
        Ok(Ok(_)) => panic!("a session started on a frozen database"),
        Ok(Err(e)) => e,
        Err(_) => panic!("the login hung on a frozen database"),
    };
    assert_eq!(sqlstate(&e).as_deref(), Some("08006"), "{e}");
    let message = e.as_db_error().expect("a server error").message();
    assert!(message.contains("not answering"), "{message}");
    let mut seen = (0, String::new());
    for _ in 0..100 {
        seen = health(&proxy).await;
        if seen.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.0, 503, "{}", seen.1);
    assert!(seen.1.contains("did not answer"), "{}", seen.1);
    let text = proxy.handle().metrics().encode_text();
    assert!(metric(&text, "maskgate_upstream_checkout_timeouts_total") >= 1.0);

    drop(frozen);
    let mut recovered = false;
    for _ in 0..100 {
        if health(&proxy).await.0 == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "/health recovers once the database answers");
    let (client, _driver) = connect(&proxy).await.expect("connects again");
    assert_eq!(select_one(&client).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_running_out_of_connections_reaches_the_client_as_53300() {
    let mut pg = PgCluster::start().expect("cluster starts");
    pg.psql("ALTER SYSTEM SET max_wal_senders = 0")
        .expect("alter system");
    pg.psql("ALTER SYSTEM SET max_connections = 5")
        .expect("alter system");
    tokio::task::block_in_place(|| pg.restart()).expect("cluster restarts");
    let proxy = TestProxy::start(
        &pg,
        ProxyOptions {
            pool_size: 0,
            upstream_settings: "health_check_interval = \"0s\"".into(),
            ..Default::default()
        },
    )
    .await
    .expect("proxy starts");
    let mut open = Vec::new();
    let e = loop {
        match connect(&proxy).await {
            Ok(session) => open.push(session),
            Err(e) => break e,
        }
        assert!(
            open.len() <= 5,
            "more sessions than the database has connections"
        );
    };
    assert_eq!(open.len(), 5);
    assert_eq!(sqlstate(&e).as_deref(), Some("53300"), "{e}");
}

/// A login by hand, without startup settings: nothing is asked of the upstream
/// connection before the session starts, unless maskgate asks it.
async fn bare_login(proxy: &TestProxy) -> raw_login::Outcome {
    let local = std::net::Ipv4Addr::new(127, 0, 0, 1);
    let db = proxy.database().to_string();
    tokio::time::timeout(
        Duration::from_secs(15),
        raw_login::login(proxy.addr(), local, (USER, &db), Some(PASSWORD)),
    )
    .await
    .expect("the login does not hang")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_to_a_frozen_database_is_not_handed_out() {
    let pg = PgCluster::start().expect("cluster starts");
    let proxy = TestProxy::start(
        &pg,
        ProxyOptions {
            pool_size: 2,
            upstream_settings: "checkout_timeout = \"1s\"\nhealth_check_interval = \"0s\"".into(),
            ..Default::default()
        },
    )
    .await
    .expect("proxy starts");
    // A session without startup settings leaves its connection in the pool.
    assert_eq!(bare_login(&proxy).await, raw_login::Outcome::Admitted);
    wait_for_idle_upstreams(&proxy, 1).await;

    let frozen = Frozen::freeze(&pg);
    // Before, the pooled connection was handed out at once and the session's first
    // statement hung for as long as the database was frozen.
    assert_eq!(
        bare_login(&proxy).await,
        raw_login::Outcome::Refused("08006".into())
    );
    let text = proxy.handle().metrics().encode_text();
    assert!(metric(&text, "maskgate_upstream_checkout_timeouts_total") >= 1.0);
    drop(frozen);
    assert_eq!(bare_login(&proxy).await, raw_login::Outcome::Admitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_times_out_is_reported_as_a_database_not_answering() {
    let pg = PgCluster::start().expect("cluster starts");
    let proxy = TestProxy::start(
        &pg,
        ProxyOptions {
            pool_size: 0,
            // Longer than the harness's connect_timeout (5 s), which runs out first.
            upstream_settings: "checkout_timeout = \"20s\"\nhealth_check_interval = \"0s\"".into(),
            ..Default::default()
        },
    )
    .await
    .expect("proxy starts");
    let frozen = Frozen::freeze(&pg);
    let e = match tokio::time::timeout(Duration::from_secs(15), connect(&proxy)).await {
        Ok(Ok(_)) => panic!("a session started on a frozen database"),
        Ok(Err(e)) => e,
        Err(_) => panic!("the login hung on a frozen database"),
    };
    drop(frozen);
    assert_eq!(sqlstate(&e).as_deref(), Some("08006"), "{e}");
    let message = e.as_db_error().expect("a server error").message();
    assert!(message.contains("not answering"), "{message}");
    let text = proxy.handle().metrics().encode_text();
    assert_eq!(
        metric(&text, "maskgate_upstream_checkout_timeouts_total"),
        1.0
    );
}
