//! Hostile and broken clients: maskgate answers protocol abuse with a
//! PostgreSQL error carrying the right SQLSTATE, closes the connection, and
//! keeps serving everyone else. The tests speak the wire protocol by hand so
//! they can send what no well-behaved driver would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use maskgate_testkit::{PgCluster, ProxyOptions, TestProxy};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";
/// How long any single read may take before the test calls it a hang.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

async fn proxy() -> TestProxy {
    proxy_with(ProxyOptions::default()).await
}

async fn proxy_with(options: ProxyOptions) -> TestProxy {
    TestProxy::start(PgCluster::shared(), options)
        .await
        .expect("maskgate starts")
}

/// A server message: its tag and body.
#[derive(Debug)]
struct Msg {
    tag: u8,
    body: Vec<u8>,
}

/// The fields of an ErrorResponse.
#[derive(Debug)]
struct ErrorFields(Vec<(u8, String)>);

impl ErrorFields {
    fn parse(body: &[u8]) -> ErrorFields {
        let mut fields = Vec::new();
        let mut rest = body;
        while let Some((&kind, tail)) = rest.split_first() {
            if kind == 0 {
                break;
            }
            let nul = tail
                .iter()
                .position(|&b| b == 0)
                .expect("error field is NUL-terminated");
            fields.push((kind, String::from_utf8_lossy(&tail[..nul]).into_owned()));
            rest = &tail[nul + 1..];
        }
        ErrorFields(fields)
    }

    fn get(&self, kind: u8) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_str())
    }

    fn code(&self) -> &str {
        self.get(b'C').expect("an ErrorResponse has a SQLSTATE")
    }

    fn message(&self) -> &str {
        self.get(b'M').expect("an ErrorResponse has a message")
    }

    fn severity(&self) -> &str {
        self.get(b'S').expect("an ErrorResponse has a severity")
    }
}

/// A raw protocol connection to the proxy.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    /// The BackendKeyData of a logged-in session.
    key: Option<(i32, i32)>,
}

impl Raw {
    async fn connect(proxy: &TestProxy) -> Raw {
        let stream = TcpStream::connect(proxy.addr())
            .await
            .expect("connect to maskgate");
        Raw {
            stream,
            buf: BytesMut::new(),
            key: None,
        }
    }

    /// Sends bytes; a proxy that already hung up is not an error here, the
    /// following reads tell what happened.
    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// The next message, or `None` once the proxy has closed the connection.
    /// Panics if nothing arrives within [`READ_TIMEOUT`].
    async fn read(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap());
                assert!(len >= 4, "the proxy sent a message of length {len}");
                let total = len as usize + 1;
                if self.buf.len() >= total {
                    let msg = self.buf.split_to(total);
                    return Some(Msg {
                        tag: msg[0],
                        body: msg[5..].to_vec(),
                    });
                }
            }
            let read = tokio::time::timeout(READ_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("maskgate neither answered nor closed the connection in time");
            match read {
                Ok(0) => {
                    assert!(
                        self.buf.is_empty(),
                        "connection closed in the middle of a message"
                    );
                    return None;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading from maskgate: {e}"),
            }
        }
    }

    async fn expect_message(&mut self, what: &str) -> Msg {
        match self.read().await {
            Some(msg) => msg,
            None => panic!("connection closed while waiting for {what}"),
        }
    }

    /// Reads up to the next ErrorResponse and returns its fields.
    async fn expect_error(&mut self) -> ErrorFields {
        loop {
            let msg = self.expect_message("an ErrorResponse").await;
            match msg.tag {
                b'E' => return ErrorFields::parse(&msg.body),
                b'N' | b'S' => continue,
                other => panic!("expected an ErrorResponse, got message {:?}", other as char),
            }
        }
    }

    /// Asserts the proxy closes the connection without sending anything more.
    async fn expect_closed(&mut self) {
        if let Some(msg) = self.read().await {
            panic!(
                "expected the connection to be closed, got message {:?}",
                msg.tag as char
            );
        }
    }

    /// Reads an Authentication message and returns its code and data.
    async fn expect_auth(&mut self) -> (i32, Vec<u8>) {
        let msg = self.expect_message("an Authentication message").await;
        if msg.tag == b'E' {
            let e = ErrorFields::parse(&msg.body);
            panic!("authentication refused: {} {}", e.code(), e.message());
        }
        assert_eq!(msg.tag, b'R', "expected an Authentication message");
        let code = i32::from_be_bytes(msg.body[..4].try_into().unwrap());
        (code, msg.body[4..].to_vec())
    }

    /// Sends a StartupMessage for `user` and reads AuthenticationSASL.
    async fn start(proxy: &TestProxy, user: &str) -> Raw {
        let mut raw = Raw::connect(proxy).await;
        let mut out = BytesMut::new();
        frontend::startup_message([("user", user), ("database", proxy.database())], &mut out)
            .unwrap();
        raw.send(&out).await;
        let (code, data) = raw.expect_auth().await;
        assert_eq!(code, 10, "expected AuthenticationSASL");
        assert!(
            data.split(|&b| b == 0).any(|m| m == b"SCRAM-SHA-256"),
            "SCRAM-SHA-256 is offered"
        );
        raw
    }

    /// A complete login as alice, up to the first ReadyForQuery.
    async fn login(proxy: &TestProxy) -> Raw {
        let mut raw = Raw::start(proxy, USER).await;
        let mut scram = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
        let mut out = BytesMut::new();
        frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out).unwrap();
        raw.send(&out).await;
        let (code, data) = raw.expect_auth().await;
        assert_eq!(code, 11, "expected AuthenticationSASLContinue");
        scram.update(&data).expect("valid server-first-message");

        out.clear();
        frontend::sasl_response(scram.message(), &mut out).unwrap();
        raw.send(&out).await;
        let (code, data) = raw.expect_auth().await;
        assert_eq!(code, 12, "expected AuthenticationSASLFinal");
        scram
            .finish(&data)
            .expect("the server proves it knows the verifier");
        let (code, _) = raw.expect_auth().await;
        assert_eq!(code, 0, "expected AuthenticationOk");

        loop {
            let msg = raw.expect_message("ReadyForQuery").await;
            match msg.tag {
                b'K' => {
                    let pid = i32::from_be_bytes(msg.body[..4].try_into().unwrap());
                    let secret = i32::from_be_bytes(msg.body[4..8].try_into().unwrap());
                    raw.key = Some((pid, secret));
                }
                b'Z' => break,
                b'S' | b'N' => {}
                other => panic!("unexpected message {:?} during login", other as char),
            }
        }
        assert!(raw.key.is_some(), "the proxy sends BackendKeyData");
        raw
    }

    /// Reads raw bytes until the proxy closes the connection; returns how many arrived.
    async fn drain_until_closed(&mut self) -> usize {
        let mut total = self.buf.len();
        loop {
            self.buf.clear();
            let read = tokio::time::timeout(READ_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("maskgate neither answered nor closed the connection in time");
            match read {
                Ok(0) => return total,
                Ok(n) => total += n,
                Err(_) => return total,
            }
        }
    }
}

/// A tagged message with a correct length field.
fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn query(sql: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    frontend::query(sql, &mut out).unwrap();
    out.to_vec()
}

/// A normal client still gets served: the proxy neither crashed nor hung.
async fn assert_proxy_serves(proxy: &TestProxy) {
    let work = async {
        let client = proxy
            .connect(USER, PASSWORD)
            .await
            .expect("a normal client can log in");
        let row = client.query_one("SELECT 1 + 1", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 2);
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .expect("a normal client is served in time");
}

/// Logs in, sends `bytes`, and asserts a FATAL error with `code` followed by
/// the connection closing; returns the error.
async fn after_login_expect_fatal(proxy: &TestProxy, bytes: &[u8], code: &str) -> ErrorFields {
    let mut raw = Raw::login(proxy).await;
    raw.send(bytes).await;
    let e = raw.expect_error().await;
    assert_eq!(e.code(), code, "SQLSTATE of {:?}", e.message());
    assert_eq!(e.severity(), "FATAL");
    raw.expect_closed().await;
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_login_and_query_work() {
    let proxy = proxy().await;
    let mut raw = Raw::login(&proxy).await;
    raw.send(&query("SELECT 41 + 1")).await;
    let mut saw_row = false;
    loop {
        let msg = raw.expect_message("the query's answer").await;
        match msg.tag {
            b'D' => {
                saw_row = true;
                assert!(msg.body.ends_with(b"42"));
            }
            b'Z' => break,
            b'T' | b'C' => {}
            other => panic!("unexpected message {:?}", other as char),
        }
    }
    assert!(saw_row);
    let mut out = BytesMut::new();
    frontend::terminate(&mut out);
    raw.send(&out).await;
    raw.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_pipelined_behind_the_last_sasl_message_is_answered() {
    let proxy = proxy().await;
    let mut raw = Raw::start(&proxy, USER).await;
    let mut scram = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
    let mut out = BytesMut::new();
    frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out).unwrap();
    raw.send(&out).await;
    let (code, data) = raw.expect_auth().await;
    assert_eq!(code, 11);
    scram.update(&data).unwrap();
    out.clear();
    frontend::sasl_response(scram.message(), &mut out).unwrap();
    frontend::query("SELECT 'pipelined'", &mut out).unwrap();
    raw.send(&out).await;

    let mut ready = 0;
    let mut row = None;
    while ready < 2 {
        let msg = raw.expect_message("the pipelined query's answer").await;
        match msg.tag {
            b'Z' => ready += 1,
            b'D' => row = Some(msg.body),
            b'E' => panic!("{:?}", ErrorFields::parse(&msg.body)),
            _ => {}
        }
    }
    assert!(row.expect("a row").ends_with(b"pipelined"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_length_below_four_is_a_protocol_violation() {
    let proxy = proxy().await;
    after_login_expect_fatal(&proxy, b"Q\0\0\0\x02", "08P01").await;
    after_login_expect_fatal(&proxy, b"Q\xff\xff\xff\xff", "08P01").await;
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_refused_from_its_header_alone() {
    let proxy = proxy().await;
    let mut raw = Raw::login(&proxy).await;
    let sent = Instant::now();
    // Only the header: the proxy must not wait for a 2 GiB body.
    raw.send(b"Q\x7f\xff\xff\xff").await;
    let e = raw.expect_error().await;
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        sent.elapsed()
    );
    assert_eq!(e.code(), "08P01");
    assert!(
        e.message().contains("message too large"),
        "message: {}",
        e.message()
    );
    raw.expect_closed().await;
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_just_over_the_limit_is_refused() {
    let proxy = proxy_with(ProxyOptions {
        max_message_size: 1024,
        ..ProxyOptions::default()
    })
    .await;
    // A Query that fits is relayed...
    let mut raw = Raw::login(&proxy).await;
    let fits = format!("SELECT '{}'", "x".repeat(900));
    raw.send(&query(&fits)).await;
    loop {
        let msg = raw.expect_message("the query's answer").await;
        assert_ne!(msg.tag, b'E', "{:?}", ErrorFields::parse(&msg.body));
        if msg.tag == b'Z' {
            break;
        }
    }
    // ...one that does not is refused.
    let too_big = format!("SELECT '{}'", "x".repeat(1100));
    raw.send(&query(&too_big)).await;
    let e = raw.expect_error().await;
    assert_eq!(e.code(), "08P01");
    assert!(e.message().contains("message too large"), "{}", e.message());
    raw.expect_closed().await;
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call_is_refused() {
    let proxy = proxy().await;
    // FunctionCall: function oid, no argument formats, no arguments, text result.
    let mut body = BytesMut::new();
    body.put_i32(1299); // now()
    body.put_i16(0);
    body.put_i16(0);
    body.put_i16(0);
    after_login_expect_fatal(&proxy, &message(b'F', &body), "0A000").await;
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_types_are_refused() {
    let proxy = proxy().await;
    for tag in [0x01u8, b'z', 0xff, b'A'] {
        let e = after_login_expect_fatal(&proxy, &message(tag, b"abc\0"), "08P01").await;
        assert!(
            e.message().contains("invalid frontend message type"),
            "{}",
            e.message()
        );
    }
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_message_type_is_refused_from_its_header() {
    let proxy = proxy().await;
    // The header announces 60 MB that never come: the answer comes anyway.
    let mut header = vec![b'z'];
    header.extend_from_slice(&(60_000_000i32).to_be_bytes());
    let e = after_login_expect_fatal(&proxy, &header, "08P01").await;
    assert!(
        e.message().contains("invalid frontend message type"),
        "{}",
        e.message()
    );
}

/// Sends `bytes` and reads up to ReadyForQuery: the error, and the status.
async fn error_then_ready(raw: &mut Raw, bytes: &[u8]) -> (ErrorFields, u8) {
    raw.send(bytes).await;
    let e = raw.expect_error().await;
    loop {
        let msg = raw.expect_message("ReadyForQuery").await;
        if msg.tag == b'Z' {
            return (e, msg.body[0]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_texts_are_refused_as_postgresql_refuses_them_and_the_session_goes_on() {
    let proxy = proxy().await;
    let mut raw = Raw::login(&proxy).await;
    let (e, status) = error_then_ready(&mut raw, &message(b'Q', b"SELECT 1\0SELECT 2\0")).await;
    assert_eq!(
        (e.code(), e.severity()),
        ("08P01", "ERROR"),
        "{}",
        e.message()
    );
    assert_eq!(status, b'I');
    let (e, _) = error_then_ready(&mut raw, &message(b'Q', b"SELECT '\xff'\0")).await;
    assert_eq!(
        (e.code(), e.severity()),
        ("22021", "ERROR"),
        "{}",
        e.message()
    );
    // In a transaction block, the error fails the transaction, as in PostgreSQL.
    raw.send(&query("BEGIN")).await;
    while raw.expect_message("ReadyForQuery").await.tag != b'Z' {}
    let (e, status) = error_then_ready(&mut raw, &message(b'Q', b"SELECT '\xc3('\0")).await;
    assert_eq!(e.code(), "22021", "{}", e.message());
    assert_eq!(status, b'E');
    raw.send(&query("ROLLBACK")).await;
    while raw.expect_message("ReadyForQuery").await.tag != b'Z' {}
    raw.send(&query("SELECT 1")).await;
    let mut rows = 0;
    loop {
        match raw.expect_message("the answer").await.tag {
            b'D' => rows += 1,
            b'Z' => break,
            b'E' => panic!("the session did not go on"),
            _ => {}
        }
    }
    assert_eq!(rows, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_message_after_login_is_refused() {
    let proxy = proxy().await;
    let mut out = BytesMut::new();
    frontend::password_message(PASSWORD.as_bytes(), &mut out).unwrap();
    after_login_expect_fatal(&proxy, &out, "08P01").await;
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_leaving_in_the_middle_of_a_message_does_no_harm() {
    let proxy = proxy().await;
    for _ in 0..3 {
        let mut raw = Raw::login(&proxy).await;
        let q = query("SELECT 'half a message'");
        raw.send(&q[..q.len() / 2]).await;
        drop(raw);
    }
    // Also in the header itself.
    let mut raw = Raw::login(&proxy).await;
    raw.send(b"Q\0\0").await;
    drop(raw);
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_message_then_silence_does_not_hold_up_others() {
    let proxy = proxy().await;
    let mut stalled = Raw::login(&proxy).await;
    let q = query("SELECT 'completed late'");
    let (first, second) = q.split_at(q.len() / 2);
    stalled.send(first).await;

    for _ in 0..3 {
        assert_proxy_serves(&proxy).await;
    }

    // The stalled client still gets its answer once it sends the rest.
    stalled.send(second).await;
    loop {
        let msg = stalled.expect_message("the late query's answer").await;
        match msg.tag {
            b'D' => assert!(msg.body.ends_with(b"completed late")),
            b'Z' => break,
            b'T' | b'C' => {}
            other => panic!("unexpected message {:?}", other as char),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_packet_with_length_three_is_refused() {
    let proxy = proxy().await;
    let mut raw = Raw::connect(&proxy).await;
    raw.send(&[0, 0, 0, 3]).await;
    if let Some(msg) = raw.read().await {
        assert_eq!(msg.tag, b'E');
        assert_eq!(ErrorFields::parse(&msg.body).code(), "08P01");
        raw.expect_closed().await;
    }
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_startup_packet_is_refused_without_reading_it() {
    let proxy = proxy().await;
    let mut raw = Raw::connect(&proxy).await;
    let mut out = BytesMut::new();
    out.put_i32(100_000);
    out.put_i32(196_608);
    raw.send(&out).await;
    let e = raw.expect_error().await;
    assert_eq!(e.code(), "08P01");
    raw.expect_closed().await;
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_version_two_is_refused() {
    let proxy = proxy().await;
    let mut raw = Raw::connect(&proxy).await;
    let params = b"user\0alice\0\0";
    let mut out = BytesMut::new();
    out.put_i32(8 + params.len() as i32);
    out.put_i32(2 << 16);
    out.put_slice(params);
    raw.send(&out).await;
    let e = raw.expect_error().await;
    assert_eq!(e.code(), "0A000");
    assert_eq!(e.severity(), "FATAL");
    assert!(e.message().contains("protocol"), "{}", e.message());
    raw.expect_closed().await;
    assert_proxy_serves(&proxy).await;
}

/// Startup parameters must be NUL-terminated pairs ended by one empty name
/// that is the packet's last byte; PostgreSQL refuses any other layout with 08P01.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_startup_message_is_refused() {
    let proxy = proxy().await;
    let database = proxy.database().to_string();
    let layouts: [(&str, Vec<u8>); 3] = [
        ("a value without its NUL", b"user\0alice".to_vec()),
        ("no final terminator", b"user\0alice\0".to_vec()),
        (
            "bytes after the final terminator",
            format!("user\0alice\0\0database\0{database}\0\0").into_bytes(),
        ),
    ];
    let mut wrong = Vec::new();
    for (what, params) in layouts {
        let mut raw = Raw::connect(&proxy).await;
        let mut out = BytesMut::new();
        out.put_i32(8 + params.len() as i32);
        out.put_i32(196_608);
        out.put_slice(&params);
        raw.send(&out).await;
        let msg = raw.expect_message("an ErrorResponse").await;
        if msg.tag != b'E' {
            wrong.push(format!("{what}: accepted (answered {:?})", msg.tag as char));
            continue;
        }
        let e = ErrorFields::parse(&msg.body);
        if e.code() != "08P01" {
            wrong.push(format!("{what}: {} {}", e.code(), e.message()));
        }
        raw.expect_closed().await;
    }
    assert_proxy_serves(&proxy).await;
    assert!(
        wrong.is_empty(),
        "malformed startup packets not refused with 08P01: {wrong:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_sasl_mechanism_is_refused() {
    let proxy = proxy().await;
    let mut raw = Raw::start(&proxy, USER).await;
    let scram = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
    let mut out = BytesMut::new();
    frontend::sasl_initial_response("SCRAM-SHA-1", scram.message(), &mut out).unwrap();
    raw.send(&out).await;
    let e = raw.expect_error().await;
    assert_eq!(e.code(), "08P01");
    assert!(e.message().contains("mechanism"), "{}", e.message());
    raw.expect_closed().await;
    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_sasl_exchange_is_a_protocol_violation() {
    let proxy = proxy().await;

    // Garbage as client-first-message.
    let mut raw = Raw::start(&proxy, USER).await;
    let mut out = BytesMut::new();
    frontend::sasl_initial_response("SCRAM-SHA-256", b"\xff\xfe,,n=\0r=", &mut out).unwrap();
    raw.send(&out).await;
    assert_eq!(raw.expect_error().await.code(), "08P01");
    raw.expect_closed().await;

    // A SASLInitialResponse whose data length points past its end.
    let mut raw = Raw::start(&proxy, USER).await;
    let mut body = BytesMut::new();
    body.put_slice(b"SCRAM-SHA-256\0");
    body.put_i32(1000);
    body.put_slice(b"n,,n=,r=abc");
    raw.send(&message(b'p', &body)).await;
    assert_eq!(raw.expect_error().await.code(), "08P01");
    raw.expect_closed().await;

    // A valid first message, then garbage as client-final-message.
    let mut raw = Raw::start(&proxy, USER).await;
    let scram = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
    out.clear();
    frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out).unwrap();
    raw.send(&out).await;
    assert_eq!(raw.expect_auth().await.0, 11);
    out.clear();
    frontend::sasl_response(b"c=\xff\xff,r=,p=!!!", &mut out).unwrap();
    raw.send(&out).await;
    assert_eq!(raw.expect_error().await.code(), "08P01");
    raw.expect_closed().await;

    // A SASL message claiming to be huge.
    let mut raw = Raw::start(&proxy, USER).await;
    raw.send(b"p\x7f\xff\xff\xff").await;
    assert_eq!(raw.expect_error().await.code(), "08P01");
    raw.expect_closed().await;

    // Something other than a SASL message during authentication.
    let mut raw = Raw::start(&proxy, USER).await;
    raw.send(&query("SELECT 1")).await;
    assert_eq!(raw.expect_error().await.code(), "08P01");
    raw.expect_closed().await;

    assert_proxy_serves(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_dropped_at_the_login_timeout() {
    let proxy = proxy_with(ProxyOptions {
        login_timeout: Duration::from_millis(500),
        ..ProxyOptions::default()
    })
    .await;

    // Sends nothing at all.
    let started = Instant::now();
    let mut raw = Raw::connect(&proxy).await;
    if let Some(msg) = raw.read().await {
        assert_eq!(msg.tag, b'E');
        assert_eq!(ErrorFields::parse(&msg.body).code(), "08P01");
        raw.expect_closed().await;
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400),
        "closed after {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "closed after {elapsed:?}");

    // Stops in the middle of the SCRAM exchange.
    let started = Instant::now();
    let mut raw = Raw::start(&proxy, USER).await;
    let e = raw.expect_error().await;
    assert_eq!(e.code(), "08P01");
    raw.expect_closed().await;
    assert!(started.elapsed() < Duration::from_secs(2));

    assert_proxy_serves(&proxy).await;
}

/// Panics raised outside this file, e.g. in a proxy session task, which
/// tokio would otherwise swallow without a trace in the test's outcome.
static FOREIGN_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_foreign_panics() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = info
                .location()
                .is_some_and(|l| l.file().ends_with("protocol_robustness.rs"));
            if !ours {
                FOREIGN_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

/// A small deterministic generator, so a failing case can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A first packet: random bytes, or random bytes behind a plausible header.
fn random_first_packet(rng: &mut XorShift) -> Vec<u8> {
    let body_len = rng.below(120) as usize;
    let mut out = Vec::new();
    match rng.below(4) {
        0 => return rng.bytes(body_len),
        1 => {
            out.extend_from_slice(&(body_len as i32 + 8).to_be_bytes());
            out.extend_from_slice(&196_608i32.to_be_bytes());
        }
        2 => {
            out.extend_from_slice(&(body_len as i32 + 8).to_be_bytes());
            out.extend_from_slice(&(rng.next() as i32).to_be_bytes());
        }
        _ => {
            out.extend_from_slice(&(rng.next() as i32).to_be_bytes());
        }
    }
    if rng.below(2) == 0 {
        // Mostly NUL-separated printable strings, like startup parameters.
        for _ in 0..body_len {
            let b = match rng.below(6) {
                0 => 0,
                _ => b'a' + rng.below(26) as u8,
            };
            out.push(b);
        }
    } else {
        out.extend(rng.bytes(body_len));
    }
    out
}

/// Bytes after login: random bytes, or messages with real tags and random bodies.
fn random_session_bytes(rng: &mut XorShift) -> Vec<u8> {
    const TAGS: &[u8] = b"QPBDECHSdcfFXpz\x01";
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let tag = TAGS[rng.below(TAGS.len() as u64) as usize];
        let body_len = rng.below(40) as usize;
        let body = rng.bytes(body_len);
        match rng.below(4) {
            0 => {
                let n = 1 + rng.below(60) as usize;
                out.extend(rng.bytes(n));
            }
            1 => {
                out.push(tag);
                out.extend_from_slice(&(rng.next() as i32).to_be_bytes());
                out.extend(body);
            }
            _ => out.extend(message(tag, &body)),
        }
    }
    out
}

/// Sends `bytes` on `raw`, half-closes, and requires the proxy to close within the timeout.
async fn send_and_expect_close(mut raw: Raw, bytes: Vec<u8>) {
    raw.send(&bytes).await;
    let _ = raw.stream.shutdown().await;
    raw.drain_until_closed().await;
}

const FUZZ_CASES: usize = 300;

/// The fuzz seed: fixed, so failures replay, unless `MASKGATE_FUZZ_SEED`
/// asks for another run.
fn fuzz_seed(default: u64) -> u64 {
    std::env::var("MASKGATE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s != 0)
        .unwrap_or(default)
}

/// Connections in flight at once during a fuzz run.
const FUZZ_PARALLEL: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_first_packets_never_break_the_proxy() {
    count_foreign_panics();
    let proxy = proxy().await;
    let mut rng = XorShift(fuzz_seed(0x9e37_79b9_7f4a_7c15));
    let cases: Vec<Vec<u8>> = (0..FUZZ_CASES)
        .map(|_| random_first_packet(&mut rng))
        .collect();
    for chunk in cases.chunks(FUZZ_PARALLEL) {
        let runs = chunk.iter().cloned().map(|bytes| {
            let proxy = &proxy;
            async move { send_and_expect_close(Raw::connect(proxy).await, bytes).await }
        });
        join_all(runs).await;
    }
    assert_proxy_serves(&proxy).await;
    assert_eq!(
        FOREIGN_PANICS.load(Ordering::SeqCst),
        0,
        "maskgate panicked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_after_login_never_break_the_proxy() {
    count_foreign_panics();
    let proxy = proxy().await;
    let mut rng = XorShift(fuzz_seed(0x2545_f491_4f6c_dd1d));
    let cases: Vec<Vec<u8>> = (0..FUZZ_CASES)
        .map(|_| random_session_bytes(&mut rng))
        .collect();
    for chunk in cases.chunks(FUZZ_PARALLEL) {
        let runs = chunk.iter().cloned().map(|bytes| {
            let proxy = &proxy;
            async move { send_and_expect_close(Raw::login(proxy).await, bytes).await }
        });
        join_all(runs).await;
    }
    assert_proxy_serves(&proxy).await;
    assert_eq!(
        FOREIGN_PANICS.load(Ordering::SeqCst),
        0,
        "maskgate panicked"
    );
}

/// Runs futures concurrently on this task and waits for all of them.
async fn join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut pending: Vec<_> = futures.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_look_the_same() {
    let proxy = proxy().await;
    let connect = |user: &str, password: &str| {
        let conn = proxy.conn_string(user, password);
        async move {
            match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
                Ok(_) => panic!("login must fail"),
                Err(e) => e,
            }
        }
    };

    let wrong = connect(USER, "wrong password").await;
    let unknown = connect("mallory", PASSWORD).await;
    for e in [&wrong, &unknown] {
        assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD), "{e}");
    }
    let wrong = wrong.as_db_error().expect("a server error");
    let unknown = unknown.as_db_error().expect("a server error");
    assert_eq!(wrong.severity(), unknown.severity());
    assert_eq!(
        wrong.message().replace(USER, "<user>"),
        unknown.message().replace("mallory", "<user>")
    );
    assert_eq!(wrong.detail(), unknown.detail());
    assert_eq!(wrong.hint(), unknown.hint());
    for message in [wrong.message(), unknown.message()] {
        let lower = message.to_lowercase();
        assert!(
            !lower.contains("exist") && !lower.contains("unknown") && !lower.contains("no such"),
            "the message must not tell whether the account exists: {message}"
        );
    }
    assert_proxy_serves(&proxy).await;
}

/// The parts of a server-first-message: (salt, iterations).
async fn server_first(proxy: &TestProxy, user: &str) -> (String, String) {
    let mut raw = Raw::start(proxy, user).await;
    let scram = ScramSha256::new(b"irrelevant", ChannelBinding::unsupported());
    let mut out = BytesMut::new();
    frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out).unwrap();
    raw.send(&out).await;
    let (code, data) = raw.expect_auth().await;
    assert_eq!(code, 11);
    let text = String::from_utf8(data).unwrap();
    let attr = |name: &str| {
        text.split(',')
            .find_map(|a| a.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} missing from {text}"))
            .to_string()
    };
    (attr("s="), attr("i="))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_gets_a_plausible_and_stable_salt() {
    let proxy = proxy().await;
    let (real_salt, real_iterations) = server_first(&proxy, USER).await;
    let (fake_salt, fake_iterations) = server_first(&proxy, "mallory").await;
    let (fake_salt_again, _) = server_first(&proxy, "mallory").await;
    assert_eq!(
        fake_salt, fake_salt_again,
        "a changing salt betrays a fake account"
    );
    assert_eq!(real_salt.len(), fake_salt.len());
    assert_eq!(real_iterations, fake_iterations);
    assert_ne!(real_salt, fake_salt);
}
