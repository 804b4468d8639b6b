//! What happens outside the request/response rhythm: query cancellation
//! through maskgate's own cancel keys, notifications and notices the server
//! sends on its own, and errors inside transactions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use maskgate_testkit::{PgCluster, ProxyOptions, TestProxy};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, NoTls};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";
/// How long any single wait may take before the test calls it a hang.
const WAIT: Duration = Duration::from_secs(5);

async fn proxy() -> TestProxy {
    TestProxy::start(PgCluster::shared(), ProxyOptions::default())
        .await
        .expect("maskgate starts")
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, f).await {
        Ok(t) => t,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A client whose connection task hands over notifications and notices.
async fn connect_with_messages(
    proxy: &TestProxy,
) -> (Client, mpsc::UnboundedReceiver<AsyncMessage>) {
    let (client, mut connection) =
        tokio_postgres::connect(&proxy.conn_string(USER, PASSWORD), NoTls)
            .await
            .expect("login through maskgate");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(message) => {
                    let _ = tx.send(message);
                }
                Err(_) => break,
            }
        }
    });
    (client, rx)
}

/// Waits until `marker` shows up as a running statement in pg_stat_activity.
async fn wait_until_running(observer: &Client, marker: &str) {
    let started = Instant::now();
    loop {
        let row = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
                &[&marker],
            )
            .await
            .unwrap();
        if row.get::<_, i64>(0) > 0 {
            return;
        }
        assert!(started.elapsed() < WAIT, "{marker} never started running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn select_one(client: &Client) {
    let row = within("SELECT 1", client.query_one("SELECT 1", &[]))
        .await
        .expect("the session is usable");
    assert_eq!(row.get::<_, i32>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_query_promptly() {
    let proxy = proxy().await;
    let client = Arc::new(proxy.connect(USER, PASSWORD).await.unwrap());
    let observer = proxy.connect(USER, PASSWORD).await.unwrap();
    let token = client.cancel_token();

    let running = client.clone();
    let query = tokio::spawn(async move {
        running
            .simple_query("SELECT pg_sleep(30) -- cancel me")
            .await
    });
    wait_until_running(&observer, "cancel me").await;

    let cancelled_at = Instant::now();
    within("the cancel request", token.cancel_query(NoTls))
        .await
        .expect("the cancel request is accepted");
    let result = within("the cancelled query", query).await.unwrap();
    let elapsed = cancelled_at.elapsed();
    let e = result.expect_err("the query was cancelled");
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    assert!(
        elapsed < Duration::from_secs(2),
        "cancelled after {elapsed:?}"
    );

    select_one(&client).await;
}

/// A session logged in by hand, to know its BackendKeyData.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    key: (i32, i32),
}

impl Raw {
    async fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let msg = self.buf.split_to(len + 1);
                    return Some((msg[0], msg[5..].to_vec()));
                }
            }
            match within("a message", self.stream.read_buf(&mut self.buf)).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn expect(&mut self, what: &str) -> (u8, Vec<u8>) {
        self.read()
            .await
            .unwrap_or_else(|| panic!("connection closed while waiting for {what}"))
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn login(proxy: &TestProxy) -> Raw {
        let stream = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
            key: (0, 0),
        };
        let mut out = BytesMut::new();
        frontend::startup_message([("user", USER), ("database", proxy.database())], &mut out)
            .unwrap();
        raw.send(&out).await;
        let mut scram = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
        let mut key = None;
        loop {
            let (tag, body) = raw.expect("login").await;
            out.clear();
            match tag {
                b'R' => match i32::from_be_bytes(body[..4].try_into().unwrap()) {
                    10 => {
                        frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out)
                            .unwrap();
                        raw.send(&out).await;
                    }
                    11 => {
                        scram.update(&body[4..]).unwrap();
                        frontend::sasl_response(scram.message(), &mut out).unwrap();
                        raw.send(&out).await;
                    }
                    12 => scram.finish(&body[4..]).unwrap(),
                    0 => {}
                    code => panic!("unexpected authentication request {code}"),
                },
                b'K' => {
                    key = Some((
                        i32::from_be_bytes(body[..4].try_into().unwrap()),
                        i32::from_be_bytes(body[4..8].try_into().unwrap()),
                    ))
                }
                b'Z' => break,
                b'S' | b'N' => {}
                b'E' => panic!("login refused"),
                other => panic!("unexpected message {:?} during login", other as char),
            }
        }
        raw.key = key.expect("BackendKeyData");
        raw
    }

    async fn send_query(&mut self, sql: &str) {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).unwrap();
        self.send(&out).await;
    }

    /// Reads a simple query's answer; returns the SQLSTATE of its error, if any.
    async fn finish_query(&mut self) -> Option<String> {
        let mut error = None;
        loop {
            let (tag, body) = self.expect("the query's answer").await;
            match tag {
                b'E' => error = sqlstate(&body),
                b'Z' => return error,
                _ => {}
            }
        }
    }

    async fn terminate(mut self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        self.send(&out).await;
        assert!(self.read().await.is_none(), "closed after Terminate");
    }
}

fn sqlstate(body: &[u8]) -> Option<String> {
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        let nul = tail.iter().position(|&b| b == 0)?;
        if kind == b'C' {
            return Some(String::from_utf8_lossy(&tail[..nul]).into_owned());
        }
        rest = &tail[nul + 1..];
    }
    None
}

/// Sends a CancelRequest on a fresh connection; with `linger` it then waits
/// for the proxy to close the connection (it never answers one).
async fn send_cancel(proxy: &TestProxy, (pid, secret): (i32, i32), linger: bool) {
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut out = BytesMut::new();
    frontend::cancel_request(pid, secret, &mut out);
    stream.write_all(&out).await.unwrap();
    if linger {
        let mut answer = Vec::new();
        let _ = within(
            "the cancel connection to close",
            stream.read_to_end(&mut answer),
        )
        .await;
        assert!(answer.is_empty(), "a CancelRequest gets no reply");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_cancel_needs_the_right_key() {
    let proxy = proxy().await;
    let observer = proxy.connect(USER, PASSWORD).await.unwrap();
    let mut raw = Raw::login(&proxy).await;
    let (pid, secret) = raw.key;

    // Unknown keys and wrong secrets change nothing.
    raw.send_query("SELECT pg_sleep(1) -- wrong keys").await;
    wait_until_running(&observer, "wrong keys").await;
    send_cancel(&proxy, (pid, secret.wrapping_add(1)), true).await;
    send_cancel(&proxy, (pid.wrapping_add(1), secret), true).await;
    send_cancel(&proxy, (0x1234_5678, -0x0765_4321), false).await;
    assert_eq!(raw.finish_query().await, None, "no cancel took effect");

    // The right key cancels, even when the client hangs up at once.
    raw.send_query("SELECT pg_sleep(30) -- right key").await;
    wait_until_running(&observer, "right key").await;
    let cancelled_at = Instant::now();
    send_cancel(&proxy, (pid, secret), false).await;
    assert_eq!(raw.finish_query().await.as_deref(), Some("57014"));
    assert!(cancelled_at.elapsed() < Duration::from_secs(2));

    raw.send_query("SELECT 1").await;
    assert_eq!(raw.finish_query().await, None);
    raw.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_of_a_finished_session_cancels_nothing() {
    // One pooled upstream connection, so the next session usually reuses the first one's backend.
    let proxy = TestProxy::start(
        PgCluster::shared(),
        ProxyOptions {
            pool_size: 1,
            ..ProxyOptions::default()
        },
    )
    .await
    .unwrap();
    let observer = proxy.connect(USER, PASSWORD).await.unwrap();
    let first = Raw::login(&proxy).await;
    let stale = first.key;
    first.terminate().await;

    let mut second = Raw::login(&proxy).await;
    assert_ne!(second.key, stale, "each session gets a key of its own");
    second.send_query("SELECT pg_sleep(1) -- stale key").await;
    wait_until_running(&observer, "stale key").await;
    send_cancel(&proxy, stale, true).await;
    send_cancel(&proxy, stale, false).await;
    assert_eq!(
        second.finish_query().await,
        None,
        "the stale key cancelled nothing"
    );
    second.terminate().await;

    let client = proxy.connect(USER, PASSWORD).await.unwrap();
    select_one(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_cancel_requests_do_no_harm() {
    let proxy = proxy().await;
    // A CancelRequest cut short, and one cut short then abandoned.
    for linger in [true, false] {
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut out = BytesMut::new();
        frontend::cancel_request(1, 2, &mut out);
        // Claim 12 bytes: code but no key.
        out[3] = 12;
        stream.write_all(&out[..12]).await.unwrap();
        if linger {
            let mut answer = Vec::new();
            let _ = within("the connection to close", stream.read_to_end(&mut answer)).await;
        }
    }
    let client = proxy.connect(USER, PASSWORD).await.unwrap();
    select_one(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_reaches_an_idle_listener() {
    let proxy = proxy().await;
    let (listener, mut messages) = connect_with_messages(&proxy).await;
    let sender = proxy.connect(USER, PASSWORD).await.unwrap();

    listener
        .batch_execute("LISTEN maskgate_test_channel")
        .await
        .unwrap();
    sender
        .batch_execute("NOTIFY maskgate_test_channel, 'hello'")
        .await
        .unwrap();

    // The listener sends nothing: the proxy must relay the server's message on its own.
    let notification = loop {
        match within("the notification", messages.recv()).await {
            Some(AsyncMessage::Notification(n)) => break n,
            Some(_) => continue,
            None => panic!("connection closed before the notification"),
        }
    };
    assert_eq!(notification.channel(), "maskgate_test_channel");
    assert_eq!(notification.payload(), "hello");

    // A payload sent from within a transaction arrives once it commits.
    sender
        .batch_execute("BEGIN; NOTIFY maskgate_test_channel, 'second'; COMMIT")
        .await
        .unwrap();
    let notification = loop {
        match within("the second notification", messages.recv()).await {
            Some(AsyncMessage::Notification(n)) => break n,
            Some(_) => continue,
            None => panic!("connection closed before the notification"),
        }
    };
    assert_eq!(notification.payload(), "second");
    select_one(&listener).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_inside_a_transaction_then_rollback() {
    let proxy = proxy().await;
    let client = proxy.connect(USER, PASSWORD).await.unwrap();

    let e = client
        .batch_execute("BEGIN; SELECT 1/0;")
        .await
        .expect_err("division by zero");
    assert_eq!(e.code(), Some(&SqlState::DIVISION_BY_ZERO));
    let e = client
        .simple_query("SELECT 1")
        .await
        .expect_err("the transaction is aborted");
    assert_eq!(e.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    client.batch_execute("ROLLBACK").await.unwrap();
    select_one(&client).await;

    // The same with the extended protocol, inside a client-side transaction.
    let mut client = client;
    let tx = client.transaction().await.unwrap();
    let e = tx
        .query_one("SELECT 1 / $1::int", &[&0i32])
        .await
        .expect_err("division by zero");
    assert_eq!(e.code(), Some(&SqlState::DIVISION_BY_ZERO));
    tx.rollback().await.unwrap();
    select_one(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_reach_the_client() {
    let proxy = proxy().await;
    let (client, mut messages) = connect_with_messages(&proxy).await;
    client
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'x'; END $$")
        .await
        .unwrap();
    let notice = loop {
        match within("the notice", messages.recv()).await {
            Some(AsyncMessage::Notice(n)) => break n,
            Some(_) => continue,
            None => panic!("connection closed before the notice"),
        }
    };
    assert_eq!(notice.message(), "x");
    assert_eq!(notice.code(), &SqlState::SUCCESSFUL_COMPLETION);
    assert_eq!(notice.severity(), "NOTICE");
    select_one(&client).await;
}

/// Idle upstream connections in the proxy's pool, from its metrics.
fn idle_upstreams(proxy: &TestProxy) -> i64 {
    proxy
        .handle()
        .metrics()
        .encode_text()
        .lines()
        .find_map(|line| line.strip_prefix("maskgate_upstream_connections_idle "))
        .and_then(|value| value.trim().parse().ok())
        .expect("the idle upstream gauge is exported")
}

async fn backend_pid(client: &Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_does_not_outlive_its_session_on_a_reused_upstream() {
    let proxy = TestProxy::start(
        PgCluster::shared(),
        ProxyOptions {
            pool_size: 1,
            ..ProxyOptions::default()
        },
    )
    .await
    .unwrap();

    let (first, _first_messages) = connect_with_messages(&proxy).await;
    let first_pid = backend_pid(&first).await;
    first
        .batch_execute("LISTEN maskgate_leak_check")
        .await
        .unwrap();
    drop(first);
    let started = Instant::now();
    while idle_upstreams(&proxy) < 1 {
        assert!(
            started.elapsed() < WAIT,
            "the upstream never returned to the pool"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (second, mut messages) = connect_with_messages(&proxy).await;
    assert_eq!(
        backend_pid(&second).await,
        first_pid,
        "the second session reuses the first one's backend"
    );
    second
        .batch_execute("LISTEN maskgate_marker")
        .await
        .unwrap();

    // Notifications from one sender arrive in commit order: a leaked LISTEN
    // would deliver the first before the marker.
    let sender = proxy.connect(USER, PASSWORD).await.unwrap();
    sender
        .batch_execute("NOTIFY maskgate_leak_check, 'leak'")
        .await
        .unwrap();
    sender
        .batch_execute("NOTIFY maskgate_marker, 'marker'")
        .await
        .unwrap();
    loop {
        match within("the marker notification", messages.recv()).await {
            Some(AsyncMessage::Notification(n)) => {
                assert_eq!(
                    n.channel(),
                    "maskgate_marker",
                    "a LISTEN of the previous session leaked into this one"
                );
                break;
            }
            Some(_) => continue,
            None => panic!("connection closed before the marker"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_of_a_vanished_client_is_cancelled() {
    let proxy = proxy().await;
    let observer = proxy.connect(USER, PASSWORD).await.unwrap();
    let mut raw = Raw::login(&proxy).await;
    raw.send_query("SELECT pg_sleep(30) -- abandoned").await;
    wait_until_running(&observer, "abandoned").await;
    drop(raw);

    let started = Instant::now();
    loop {
        let row = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE state = 'active' AND query LIKE '%abandoned%' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        if row.get::<_, i64>(0) == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the abandoned statement still runs upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_works_when_the_connection_limit_is_reached() {
    let proxy = TestProxy::start(
        PgCluster::shared(),
        ProxyOptions {
            max_client_connections: 2,
            ..ProxyOptions::default()
        },
    )
    .await
    .unwrap();
    let observer = proxy.connect(USER, PASSWORD).await.unwrap();
    let client = Arc::new(proxy.connect(USER, PASSWORD).await.unwrap());
    let e = proxy
        .connect(USER, PASSWORD)
        .await
        .expect_err("the limit is reached");
    assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e}");

    let running = client.clone();
    let query = tokio::spawn(async move {
        running
            .simple_query("SELECT pg_sleep(30) -- at the limit")
            .await
    });
    wait_until_running(&observer, "at the limit").await;
    within(
        "the cancel request",
        client.cancel_token().cancel_query(NoTls),
    )
    .await
    .expect("the cancel request is accepted");
    let e = within("the cancelled query", query)
        .await
        .unwrap()
        .expect_err("the query was cancelled");
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    select_one(&client).await;
}
