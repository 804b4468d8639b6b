//! End to end: a restricted account's Query whose text PostgreSQL itself would
//! refuse (bytes after its NUL, invalid UTF-8) gets PostgreSQL's answer (08P01,
//! 22021) from maskgate, which never analyzes it, and the session goes on; in a
//! transaction block the error fails the transaction as PostgreSQL's would.

#[path = "common/enforcement.rs"]
mod enforcement;
#[path = "common/wire.rs"]
mod wire;

use enforcement::{cluster, CLERK};
use maskgate_testkit::register;
use wire::{message, query, Msg, Wire};

/// The error, and the transaction status of the ReadyForQuery after it.
async fn answer(wire: &mut Wire, bytes: &[u8]) -> (Msg, u8) {
    let seen = wire.until_ready_after(bytes).await;
    let error = seen
        .iter()
        .find(|m| m.tag == b'E')
        .cloned()
        .expect("an error");
    let ready = seen.last().expect("a ReadyForQuery");
    assert_eq!(ready.tag, b'Z');
    (error, ready.body[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_query_texts_are_answered_like_postgresql_and_the_session_goes_on() {
    let proxy = register::start_proxy(cluster())
        .await
        .expect("proxy starts");
    let mut wire = Wire::login(&proxy, CLERK).await.expect("clerk logs in");

    let (e, status) = answer(&mut wire, &message(b'Q', b"SELECT 1\0SELECT 2\0")).await;
    assert_eq!(e.code().as_deref(), Some("08P01"));
    assert_eq!(e.field(b'S').as_deref(), Some("ERROR"));
    assert_eq!(e.field(b'M').as_deref(), Some("invalid message format"));
    assert_eq!(status, b'I');

    let (e, status) = answer(&mut wire, &message(b'Q', b"SELECT '\xe2\x82'\0")).await;
    assert_eq!(e.code().as_deref(), Some("22021"));
    assert_eq!(
        e.field(b'M').as_deref(),
        Some("invalid byte sequence for encoding \"UTF8\": 0xe2 0x82 0x27")
    );
    assert_eq!(status, b'I');

    wire.until_ready_after(&query("BEGIN")).await;
    let (e, status) = answer(&mut wire, &message(b'Q', b"SELECT '\xff'\0")).await;
    assert_eq!(e.code().as_deref(), Some("22021"));
    assert_eq!(status, b'E', "the transaction failed, as in PostgreSQL");
    wire.until_ready_after(&query("ROLLBACK")).await;
    let outcome = wire.simple("SELECT 41 + 1").await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.rows.len(), 1);
}
