//! End to end: large client messages cannot take maskgate's memory. A restricted
//! account's statement longer than maskgate analyzes is refused from its header
//! in its place (its body is dropped as it arrives, never buffered, and the
//! session goes on), large messages of all sessions share one budget
//! (`message_buffer_bytes`, answered 53200), and a message must arrive whole within
//! `message_timeout`.

#[path = "common/enforcement.rs"]
mod enforcement;
#[path = "common/wire.rs"]
mod wire;

use std::time::Duration;

use enforcement::PASSWORD;
use maskgate_testkit::{metric, PgCluster, ProxyOptions, TestProxy};
use wire::{message, Msg, Wire};

/// Longer than any answer here may take; a hang is a failure, not a slow pass.
const ANSWER: Duration = Duration::from_secs(5);
/// The budget of large messages: one message of `BIG` fits, two do not.
const BUDGET: usize = 6 << 20;
const BIG: usize = 7 << 19;

const ROLES: &str = "[roles.reader]\ndescription = \"Reads nothing\"\nstatements = [\"read\"]\n";

async fn start() -> TestProxy {
    TestProxy::start(
        PgCluster::shared(),
        ProxyOptions {
            users: vec![
                ("alice".into(), PASSWORD.into()),
                ("clerk".into(), PASSWORD.into()),
            ],
            user_roles: vec![("clerk".into(), vec!["reader".into()])],
            policy_files: vec![("roles.toml".into(), ROLES.into())],
            max_message_size: 4 << 20,
            server_settings: format!(
                "max_statement_size = 65536\nmessage_buffer_bytes = {BUDGET}\n\
                 message_timeout = \"1s\""
            ),
            ..ProxyOptions::default()
        },
    )
    .await
    .expect("proxy starts")
}

/// A Query of `len` bytes in all: a SELECT and a comment to fill it.
fn long_query(len: usize) -> Vec<u8> {
    let head = b"SELECT 42 -- ";
    let mut body = head.to_vec();
    body.resize(len - 5 - 1, b'x');
    body.push(0);
    message(b'Q', &body)
}

/// The next message, which must come within [`ANSWER`].
async fn answer(wire: &mut Wire, what: &str) -> Msg {
    tokio::time::timeout(ANSWER, wire.recv())
        .await
        .unwrap_or_else(|_| panic!("no answer in time: {what}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn expect_fatal(wire: &mut Wire, code: &str, what: &str) {
    let m = answer(wire, what).await;
    assert_eq!(
        m.code().as_deref(),
        Some(code),
        "{what}: {:?}",
        m.field(b'M')
    );
    assert_eq!(m.field(b'S').as_deref(), Some("FATAL"), "{what}");
    let closed = tokio::time::timeout(ANSWER, wire.recv()).await;
    assert!(matches!(closed, Ok(Err(_))), "{what}: the session goes on");
}

async fn expect_answer(wire: &mut Wire, what: &str) {
    loop {
        let m = answer(wire, what).await;
        assert_ne!(m.tag, b'E', "{what}: {:?}", m.field(b'M'));
        if m.tag == b'Z' {
            return;
        }
    }
}

/// An ERROR (not FATAL) with `code`, then ReadyForQuery.
async fn expect_error(wire: &mut Wire, code: &str, what: &str) {
    let m = answer(wire, what).await;
    assert_eq!(m.tag, b'E', "{what}: {}", m.tag as char);
    assert_eq!(
        m.code().as_deref(),
        Some(code),
        "{what}: {:?}",
        m.field(b'M')
    );
    assert_eq!(m.field(b'S').as_deref(), Some("ERROR"), "{what}");
    let ready = answer(wire, what).await;
    assert_eq!(ready.tag, b'Z', "{what}: {}", ready.tag as char);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_statement_too_long_to_analyze_is_refused_from_its_header() {
    let proxy = start().await;
    // Only the header and a few bytes: the answer does not wait for the rest.
    let query = long_query(3 << 20);
    let mut clerk = Wire::login(&proxy, "clerk").await.expect("clerk logs in");
    clerk.send(&query[..100]).await;
    expect_error(&mut clerk, "54000", "a 3 MiB restricted Query").await;
    // The rest is dropped as it comes, and the session goes on.
    clerk.send(&query[100..]).await;
    clerk.send(&long_query(100)).await;
    expect_answer(&mut clerk, "a statement after the long one").await;

    // A Parse too: refused in its place, the rest of the batch skipped to Sync.
    let mut parse = b"s1\0".to_vec();
    parse.resize(3 << 20, b' ');
    let parse = message(b'P', &parse);
    let mut batch = parse.clone();
    batch.extend_from_slice(&message(b'B', b"\0s1\0\0\0\0\0\0\0"));
    batch.extend_from_slice(&message(b'E', b"\0\0\0\0\0"));
    batch.extend_from_slice(&message(b'S', b""));
    clerk.send(&batch).await;
    expect_error(&mut clerk, "54000", "a 3 MiB restricted Parse").await;
    clerk.send(&long_query(100)).await;
    expect_answer(&mut clerk, "a statement after the long Parse").await;

    // An unrestricted account's statement of that size is relayed.
    let mut alice = Wire::login(&proxy, "alice").await.expect("alice logs in");
    alice.send(&query).await;
    expect_answer(&mut alice, "a 3 MiB Query of alice").await;
    let metrics = proxy.handle().metrics().encode_text();
    assert_eq!(
        metric(
            &metrics,
            "maskgate_client_messages_refused_total{limit=\"statement_size\"}"
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_of_all_sessions_share_one_budget() {
    let proxy = start().await;
    let query = long_query(BIG);
    let mut first = Wire::login(&proxy, "alice").await.expect("logs in");
    let mut second = Wire::login(&proxy, "alice").await.expect("logs in");
    // The first holds its place with all but the last byte...
    first.send(&query[..BIG - 1]).await;
    // ...so the second finds no room for its own, from its header.
    tokio::time::sleep(Duration::from_millis(200)).await;
    second.send(&query[..100]).await;
    expect_fatal(&mut second, "53200", "a second large message").await;

    first.send(&query[BIG - 1..]).await;
    expect_answer(&mut first, "the first large message").await;
    // Its place is given back once it is whole.
    let mut third = Wire::login(&proxy, "alice").await.expect("logs in");
    third.send(&query).await;
    expect_answer(&mut third, "a large message after the first").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_not_sent_whole_in_time_ends_the_session() {
    let proxy = start().await;
    let query = long_query(100);
    let mut stalled = Wire::login(&proxy, "alice").await.expect("logs in");
    stalled.send(&query[..50]).await;
    expect_fatal(&mut stalled, "08P01", "half a message, then silence").await;
    // A client that sends its message whole is not hurried.
    let mut other = Wire::login(&proxy, "alice").await.expect("logs in");
    other.send(&query).await;
    expect_answer(&mut other, "a whole message").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_after_a_refused_one_has_a_deadline_of_its_own() {
    let proxy = start().await;
    let long = long_query(200 << 10);
    let mut clerk = Wire::login(&proxy, "clerk").await.expect("clerk logs in");
    // The refused statement's body takes most of message_timeout (1 s) to arrive...
    clerk.send(&long[..100]).await;
    expect_error(&mut clerk, "54000", "a long restricted Query").await;
    let rest = &long[100..long.len() - 10];
    for piece in rest.chunks(rest.len() / 7 + 1) {
        clerk.send(piece).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...its last bytes come with the first half of the next one, and the next
    // one's second half takes most of its own time.
    let next = long_query(100);
    let mut joined = long[long.len() - 10..].to_vec();
    joined.extend_from_slice(&next[..50]);
    clerk.send(&joined).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    clerk.send(&next[50..]).await;
    expect_answer(&mut clerk, "the statement after the long one").await;
}
