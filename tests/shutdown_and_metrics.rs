//! End to end: graceful shutdown, idle timeout, the connection limit, and the
//! admin endpoint's metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use maskgate_testkit::{http_get, metric, PgCluster, ProxyOptions, TestProxy};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Error, NoTls};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";

fn sqlstate(e: &Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

/// Connects and keeps the connection task's result, which carries the
/// error the proxy sent when it ended the session on its own.
async fn connect(proxy: &TestProxy) -> Result<(Client, JoinHandle<Result<(), Error>>), Error> {
    let (client, connection) =
        tokio_postgres::connect(&proxy.conn_string(USER, PASSWORD), NoTls).await?;
    Ok((client, tokio::spawn(connection)))
}

/// The SQLSTATE the proxy ended a connection with, waiting at most `within`.
async fn ended_with(driver: JoinHandle<Result<(), Error>>, within: Duration) -> String {
    let end = tokio::time::timeout(within, driver)
        .await
        .expect("the connection is closed in time")
        .expect("the connection task");
    let e = end.expect_err("the connection ended with an error");
    sqlstate(&e).unwrap_or_else(|| panic!("no SQLSTATE: {e}"))
}

async fn start(options: ProxyOptions) -> TestProxy {
    TestProxy::start(PgCluster::shared(), options)
        .await
        .expect("proxy starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_running_work_finish_and_closes_idle_sessions() {
    let grace = Duration::from_secs(5);
    let proxy = start(ProxyOptions {
        shutdown_grace: grace,
        ..Default::default()
    })
    .await;
    let (idle, idle_driver) = connect(&proxy).await.expect("connects");
    let (busy, busy_driver) = connect(&proxy).await.expect("connects");
    let busy = Arc::new(busy);
    busy.batch_execute("BEGIN").await.unwrap();
    let sleeper = {
        let busy = busy.clone();
        tokio::spawn(async move { busy.batch_execute("SELECT pg_sleep(1)").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let shutdown_started = Instant::now();
    proxy.handle().shutdown();

    assert_eq!(
        ended_with(idle_driver, Duration::from_secs(3)).await,
        "57P01",
        "the idle session is told the proxy shuts down"
    );
    assert!(idle.simple_query("SELECT 1").await.is_err());

    sleeper
        .await
        .unwrap()
        .expect("the running statement completes");
    busy.batch_execute("COMMIT")
        .await
        .expect("the open transaction can still commit");
    assert_eq!(
        ended_with(busy_driver, Duration::from_secs(3)).await,
        "57P01",
        "the busy session is closed once its transaction is over"
    );

    let refused = tokio::time::timeout(Duration::from_secs(5), connect(&proxy))
        .await
        .expect("a new connection is answered");
    assert!(
        refused.is_err(),
        "a new session started during the shutdown"
    );

    tokio::time::timeout(grace + Duration::from_secs(2), proxy.shutdown())
        .await
        .expect("the proxy stops within the grace period");
    assert!(shutdown_started.elapsed() < grace + Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_still_running_after_the_grace_period_are_ended() {
    let grace = Duration::from_secs(1);
    let proxy = start(ProxyOptions {
        shutdown_grace: grace,
        ..Default::default()
    })
    .await;
    let (client, _driver) = connect(&proxy).await.expect("connects");
    let marker = "grace_test_marker";
    let stuck = tokio::spawn(async move {
        let result = client
            .batch_execute(&format!("SELECT pg_sleep(30) /* {marker} */"))
            .await;
        (result, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let shutdown_started = Instant::now();
    proxy.handle().shutdown();
    let (result, ended) = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .expect("the stuck statement is ended")
        .unwrap();
    let e = result.expect_err("the statement cannot finish");
    assert_eq!(sqlstate(&e).as_deref(), Some("57P01"), "{e}");
    let after = ended - shutdown_started;
    assert!(
        after >= grace - Duration::from_millis(100) && after < grace + Duration::from_secs(2),
        "closed after {after:?}"
    );
    tokio::time::timeout(grace + Duration::from_secs(2), proxy.shutdown())
        .await
        .expect("the proxy stops");

    // The statement the client abandoned does not keep running upstream.
    let query = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
    );
    let mut running = String::new();
    for _ in 0..50 {
        let q = query.clone();
        running = tokio::task::spawn_blocking(move || PgCluster::shared().psql(&q))
            .await
            .unwrap()
            .expect("psql works");
        if running == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(running, "0", "the abandoned statement still runs upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_time_out_but_running_statements_do_not() {
    let proxy = start(ProxyOptions {
        client_idle_timeout: Duration::from_millis(500),
        ..Default::default()
    })
    .await;

    let (busy, _busy_driver) = connect(&proxy).await.expect("connects");
    let busy_query = tokio::spawn(async move {
        let result = busy.batch_execute("SELECT pg_sleep(1.5)").await;
        (busy, result)
    });

    let connected = Instant::now();
    let (idle, idle_driver) = connect(&proxy).await.expect("connects");
    assert_eq!(
        ended_with(idle_driver, Duration::from_secs(5)).await,
        "57P05"
    );
    assert!(
        connected.elapsed() >= Duration::from_millis(450),
        "closed after {:?}",
        connected.elapsed()
    );
    assert!(idle.simple_query("SELECT 1").await.is_err());

    let (_busy, result) = busy_query.await.unwrap();
    result.expect("a statement longer than the idle timeout is not interrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_beyond_the_limit_get_53300() {
    let proxy = start(ProxyOptions {
        max_client_connections: 3,
        ..Default::default()
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect(&proxy).await.expect("within the limit"));
    }
    let Err(e) = connect(&proxy).await else {
        panic!("the fourth client is admitted");
    };
    assert_eq!(sqlstate(&e).as_deref(), Some("53300"), "{e}");
    for (client, _) in &open {
        client.simple_query("SELECT 1").await.expect("still served");
    }

    let (client, driver) = open.pop().unwrap();
    drop(client);
    driver.await.unwrap().expect("ends cleanly");
    let mut admitted = false;
    for _ in 0..40 {
        if let Ok((client, _)) = connect(&proxy).await {
            client.simple_query("SELECT 1").await.expect("served");
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "a freed slot is not given to the next client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_are_served_over_http() {
    let proxy = start(ProxyOptions::default()).await;
    let admin = proxy.admin_addr().expect("admin endpoint configured");

    let (client, _driver) = connect(&proxy).await.expect("connects");
    for i in 0..5i32 {
        let row = client.query_one("SELECT $1::int", &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i);
    }
    client.simple_query("SELECT 1").await.unwrap();
    let e = client
        .simple_query("SELECT 1/0")
        .await
        .expect_err("division by zero");
    assert_eq!(sqlstate(&e).as_deref(), Some("22012"));

    let Err(e) = tokio_postgres::connect(&proxy.conn_string(USER, "wrong password"), NoTls).await
    else {
        panic!("a wrong password is accepted");
    };
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}");

    let (status, body) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(metric(&body, "maskgate_statements_total") >= 7.0);
    assert!(metric(&body, "maskgate_errors_total{sqlstate_class=\"22\"}") >= 1.0);
    assert!(metric(&body, "maskgate_client_bytes_received_total") > 0.0);
    assert!(metric(&body, "maskgate_client_bytes_sent_total") > 0.0);
    assert!(metric(&body, "maskgate_statement_duration_seconds_count") > 0.0);
    assert!(
        metric(
            &body,
            "maskgate_client_connections_rejected_total{reason=\"auth_failed\"}"
        ) >= 1.0
    );
    assert_eq!(metric(&body, "maskgate_client_connections"), 1.0);

    let (status, body) = http_get(admin, "/health").await;
    assert_eq!(status, 200, "{body}");
}

/// A protocol-level client for what tokio-postgres never sends: extended
/// query messages ended by Flush instead of Sync, or a login left unfinished.
mod raw {
    use std::net::SocketAddr;

    use bytes::{BufMut, BytesMut};
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
    use postgres_protocol::message::{backend, frontend};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub struct RawClient {
        pub tcp: TcpStream,
        buf: BytesMut,
    }

    /// One message as (tag, body).
    pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_u8(tag);
        out.put_i32(i32::try_from(body.len() + 4).unwrap());
        out.put_slice(body);
        out.to_vec()
    }

    /// Parse, Bind and Execute of `sql` on the unnamed statement and portal, then Flush.
    pub fn execute_and_flush(sql: &str) -> Vec<u8> {
        let mut parse = b"\0".to_vec();
        parse.extend_from_slice(sql.as_bytes());
        parse.extend_from_slice(b"\0\0\0");
        let mut out = message(b'P', &parse);
        out.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
        out.extend(message(b'E', b"\0\0\0\0\0"));
        out.extend(message(b'H', b""));
        out
    }

    impl RawClient {
        pub async fn login(
            addr: SocketAddr,
            user: &str,
            password: &str,
            database: &str,
        ) -> std::io::Result<RawClient> {
            let tcp = TcpStream::connect(addr).await?;
            let mut client = RawClient {
                tcp,
                buf: BytesMut::new(),
            };
            let mut out = BytesMut::new();
            frontend::startup_message([("user", user), ("database", database)], &mut out)?;
            client.tcp.write_all(&out).await?;
            let mut scram = None;
            loop {
                let (tag, body) = client.next().await?;
                let mut frame = BytesMut::from(&message(tag, &body)[..]);
                match backend::Message::parse(&mut frame)?.expect("a whole message") {
                    backend::Message::AuthenticationSasl(_) => {
                        let s =
                            ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                        let mut out = BytesMut::new();
                        frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)?;
                        client.tcp.write_all(&out).await?;
                        scram = Some(s);
                    }
                    backend::Message::AuthenticationSaslContinue(body) => {
                        let s = scram.as_mut().expect("SASL started");
                        s.update(body.data())?;
                        let mut out = BytesMut::new();
                        frontend::sasl_response(s.message(), &mut out)?;
                        client.tcp.write_all(&out).await?;
                    }
                    backend::Message::AuthenticationSaslFinal(body) => {
                        scram.as_mut().expect("SASL started").finish(body.data())?;
                    }
                    backend::Message::ReadyForQuery(_) => return Ok(client),
                    backend::Message::ErrorResponse(_) => {
                        return Err(std::io::Error::other("login refused"))
                    }
                    _ => {}
                }
            }
        }

        pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            self.tcp.write_all(bytes).await
        }

        /// The next message as (tag, body).
        pub async fn next(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
            loop {
                if self.buf.len() >= 5 {
                    let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                    if self.buf.len() > len {
                        let frame = self.buf.split_to(len + 1);
                        return Ok((frame[0], frame[5..].to_vec()));
                    }
                }
                if self.tcp.read_buf(&mut self.buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
    }

    /// The SQLSTATE of an ErrorResponse body.
    pub fn sqlstate(body: &[u8]) -> String {
        body.split(|b| *b == 0)
            .find_map(|f| f.strip_prefix(b"C"))
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default()
    }
}

/// Reads until CommandComplete or an ErrorResponse; returns the tags seen
/// and the SQLSTATE of the error, if one came first.
async fn until_complete(client: &mut raw::RawClient) -> (Vec<char>, Option<String>) {
    let mut tags = Vec::new();
    loop {
        let (tag, body) = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("an answer")
            .expect("the connection is open");
        tags.push(tag as char);
        match tag {
            b'C' => return (tags, None),
            b'E' => return (tags, Some(raw::sqlstate(&body))),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_sent_with_flush_instead_of_sync_survives_a_graceful_shutdown() {
    let proxy = start(ProxyOptions::default()).await;
    let mut client = raw::RawClient::login(proxy.addr(), USER, PASSWORD, proxy.database())
        .await
        .expect("logs in");
    client
        .send(&raw::execute_and_flush("SELECT pg_sleep(1)"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.handle().shutdown();

    let (tags, error) = until_complete(&mut client).await;
    assert_eq!(
        error, None,
        "the running statement was cut off by the shutdown (messages {tags:?})"
    );
    client.send(&raw::message(b'S', b"")).await.unwrap();
    let (tag, _) = client.next().await.expect("ReadyForQuery");
    assert_eq!(tag, b'Z');
    let (tag, body) = client.next().await.expect("the shutdown notice");
    assert_eq!((tag, raw::sqlstate(&body).as_str()), (b'E', "57P01"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_sent_with_flush_instead_of_sync_is_not_an_idle_session() {
    let proxy = start(ProxyOptions {
        client_idle_timeout: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let mut client = raw::RawClient::login(proxy.addr(), USER, PASSWORD, proxy.database())
        .await
        .expect("logs in");
    client
        .send(&raw::execute_and_flush("SELECT pg_sleep(1.5)"))
        .await
        .unwrap();
    let (tags, error) = until_complete(&mut client).await;
    assert_eq!(
        error, None,
        "the running statement was cut off by the idle timeout (messages {tags:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_login_does_not_hold_up_shutdown() {
    let grace = Duration::from_secs(1);
    let proxy = start(ProxyOptions {
        shutdown_grace: grace,
        login_timeout: Duration::from_secs(20),
        ..Default::default()
    })
    .await;
    // Connected, but the startup packet never comes.
    let _silent = TcpStream::connect(proxy.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(25), proxy.shutdown()).await;
    let took = started.elapsed();
    assert!(stopped.is_ok(), "the proxy never stopped");
    assert!(
        took < grace + Duration::from_secs(2),
        "shutdown waited {took:?} for a client that never logged in"
    );
}
