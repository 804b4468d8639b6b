//! End to end under load: hundreds of concurrent sessions, a result far
//! larger than the proxy's memory, and deep pipelines on one connection.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use maskgate_testkit::{free_port, metric, PgCluster, ProxyOptions, TestProxy};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::{backend, frontend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_sessions() {
    const CLIENTS: usize = 500;
    let started = Instant::now();
    // A private server: 500 upstream sessions would crowd the shared one.
    let pg = PgCluster::start().expect("cluster starts");
    let proxy = Arc::new(
        TestProxy::start(
            &pg,
            ProxyOptions {
                login_timeout: Duration::from_secs(60),
                ..Default::default()
            },
        )
        .await
        .expect("proxy starts"),
    );

    // All sessions stay open together; only the logins are staggered, so
    // the SCRAM work on two cores does not pile up behind timeouts.
    let logins = Arc::new(Semaphore::new(64));
    let all_open = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut tasks = JoinSet::new();
    for i in 0..CLIENTS {
        let proxy = proxy.clone();
        let logins = logins.clone();
        let all_open = all_open.clone();
        tasks.spawn(async move {
            let permit = logins.acquire_owned().await.unwrap();
            let client = proxy
                .connect(USER, PASSWORD)
                .await
                .unwrap_or_else(|e| panic!("client {i} could not connect: {e}"));
            drop(permit);
            all_open.wait().await;
            let n = i32::try_from(i).unwrap();
            let row = client
                .query_one("SELECT $1::int", &[&n])
                .await
                .unwrap_or_else(|e| panic!("client {i}: {e}"));
            assert_eq!(row.get::<_, i32>(0), n);
            // Hold the session until every client has its answer.
            all_open.wait().await;
            i
        });
    }
    let mut done = vec![false; CLIENTS];
    let all = async {
        while let Some(result) = tasks.join_next().await {
            done[result.expect("client task")] = true;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("500 sessions finish in time");
    assert!(done.iter().all(|d| *d));
    let metrics = proxy.handle().metrics().encode_text();
    let total = metric(&metrics, "maskgate_client_connections_total");
    assert!(total >= CLIENTS as f64, "{total}");
    eprintln!("500 concurrent sessions took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statement_reuse_and_a_pipelined_burst() {
    let proxy = TestProxy::start(PgCluster::shared(), ProxyOptions::default())
        .await
        .expect("proxy starts");
    let client = Arc::new(proxy.connect(USER, PASSWORD).await.expect("connects"));

    let stmt = client
        .prepare("SELECT $1::int * 2, repeat('y', $1::int % 50)")
        .await
        .expect("prepares");
    for i in 0..200i32 {
        let row = client.query_one(&stmt, &[&i]).await.expect("reuse");
        assert_eq!(row.get::<_, i32>(0), i * 2);
    }

    // tokio-postgres writes each request as soon as it is issued, so 1000
    // concurrent calls on one client form one deep pipeline.
    let mut burst = JoinSet::new();
    for i in 0..1000i32 {
        let client = client.clone();
        let stmt = stmt.clone();
        burst.spawn(async move {
            let row = if i % 2 == 0 {
                client.query_one(&stmt, &[&i]).await
            } else {
                client
                    .query_one("SELECT $1::int * 2, repeat('y', $1::int % 50)", &[&i])
                    .await
            }
            .unwrap_or_else(|e| panic!("query {i}: {e}"));
            assert_eq!(row.get::<_, i32>(0), i * 2);
            assert_eq!(row.get::<_, &str>(1).len(), (i % 50) as usize);
        });
    }
    let all = async {
        while let Some(result) = burst.join_next().await {
            result.expect("query task");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("the burst finishes");

    let n: i64 = client
        .query_one("SELECT count(*) FROM generate_series(1, 10)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 10, "the session is still in step after the burst");
}

/// The maskgate binary's peak resident memory, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .expect("VmHWM in /proc status")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("a number of kB");
    kib * 1024
}

/// Starts `maskgate serve` on `port` with the configuration the test proxy wrote.
fn spawn_binary(config_dir: &Path, port: u16) -> tokio::process::Child {
    let generated =
        std::fs::read_to_string(config_dir.join("maskgate.toml")).expect("generated config");
    assert!(generated.contains("listen = \"127.0.0.1:0\""));
    let config = generated
        .replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
            1,
        )
        // Its own audit directory: the in-process proxy holds a lock on the other.
        .replacen("dir = \"audit\"", &format!("dir = \"audit-{port}\""), 1);
    let path = config_dir.join("maskgate-binary.toml");
    std::fs::write(&path, config).expect("writing the config");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_maskgate"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("maskgate starts")
}

/// A minimal protocol client: the test must read rows at its own pace,
/// which a client library that buffers ahead would hide.
struct RawClient {
    tcp: TcpStream,
    buf: BytesMut,
}

impl RawClient {
    async fn connect(addr: SocketAddr, database: &str) -> std::io::Result<RawClient> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut client = RawClient {
            tcp,
            buf: BytesMut::with_capacity(64 * 1024),
        };
        let mut out = BytesMut::new();
        frontend::startup_message([("user", USER), ("database", database)], &mut out)?;
        client.tcp.write_all(&out).await?;
        let mut scram = None;
        loop {
            match client.next().await? {
                backend::Message::AuthenticationSasl(_) => {
                    let s = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
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

    async fn fill(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(16 * 1024);
        let n = self.tcp.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(n)
    }

    async fn next(&mut self) -> std::io::Result<backend::Message> {
        loop {
            if let Some(m) = backend::Message::parse(&mut self.buf)? {
                return Ok(m);
            }
            self.fill().await?;
        }
    }

    /// Runs `sql` and consumes its rows one message at a time, like a slow
    /// consumer: nothing at all is read for `stall` (long enough for the
    /// server to produce the whole result), and there are pauses later on.
    /// Returns (rows, bytes of the result).
    async fn stream_rows(&mut self, sql: &str, stall: Duration) -> std::io::Result<(u64, u64)> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out)?;
        self.tcp.write_all(&out).await?;
        tokio::time::sleep(stall).await;
        let (mut rows, mut bytes) = (0u64, 0u64);
        loop {
            // The length field counts itself but not the tag byte.
            let (header, total) = loop {
                if let Some(h) = backend::Header::parse(&self.buf)? {
                    let total = h.len() as usize + 1;
                    if self.buf.len() >= total {
                        break (h, total);
                    }
                }
                self.fill().await?;
            };
            bytes += total as u64;
            match header.tag() {
                backend::DATA_ROW_TAG => {
                    self.buf.advance(total);
                    rows += 1;
                    if rows % 100_000 == 0 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                backend::READY_FOR_QUERY_TAG => {
                    self.buf.advance(total);
                    return Ok((rows, bytes));
                }
                backend::ERROR_RESPONSE_TAG => {
                    return Err(std::io::Error::other("the query failed"));
                }
                _ => self.buf.advance(total),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_rows_stream_through_the_binary_in_bounded_memory() {
    const ROWS: u64 = 1_000_000;
    let proxy = TestProxy::start(
        PgCluster::shared(),
        ProxyOptions {
            admin: false,
            ..Default::default()
        },
    )
    .await
    .expect("proxy files are written");

    let port = free_port();
    let mut child = spawn_binary(proxy.config_dir(), port);
    let pid = child.id().expect("the binary runs");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = loop {
        match RawClient::connect(addr, proxy.database()).await {
            Ok(c) => break c,
            Err(e) => {
                if let Some(status) = child.try_wait().expect("child status") {
                    panic!("maskgate exited early: {status}");
                }
                assert!(Instant::now() < deadline, "maskgate never accepted: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let baseline = peak_rss(pid);

    let started = Instant::now();
    let (rows, bytes) = client
        .stream_rows(
            "SELECT g, repeat('x', 100) FROM generate_series(1, 1000000) g",
            Duration::from_secs(3),
        )
        .await
        .expect("the result streams");
    let peak = peak_rss(pid);
    eprintln!(
        "{rows} rows, {} MiB in {:?}; maskgate peak RSS {} MiB (after login {} MiB)",
        bytes >> 20,
        started.elapsed(),
        peak >> 20,
        baseline >> 20
    );
    assert_eq!(rows, ROWS);
    assert!(bytes > 100 << 20, "the result is only {bytes} bytes");
    assert!(
        peak < 60 << 20,
        "maskgate's peak RSS was {} MiB while streaming {} MiB",
        peak >> 20,
        bytes >> 20
    );

    child.kill().await.expect("maskgate is stopped");
}
