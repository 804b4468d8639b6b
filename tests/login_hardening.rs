//! End to end: the lockout cannot be raced with parallel proofs nor lifted by a
//! success, a client address that keeps failing is refused for a while, and a
//! flood of failed logins with invented names costs the real process bounded
//! memory and bounded log lines.

#[path = "common/raw_login.rs"]
mod raw_login;

use std::net::Ipv4Addr;
use std::time::Duration;

use futures_util::future::join_all;
use maskgate_testkit::{
    audit_records_of, http_get, metric, PgCluster, ProxyOptions, ServeOptions, ServedBinary,
    TestProxy,
};
use raw_login::{login, Exchange, Outcome};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";
const HOME: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn refused(code: &str) -> Outcome {
    Outcome::Refused(code.into())
}

async fn start(server_settings: &str) -> TestProxy {
    TestProxy::start(
        PgCluster::shared(),
        ProxyOptions {
            server_settings: server_settings.into(),
            auth_failure_delay: Duration::from_millis(10),
            ..Default::default()
        },
    )
    .await
    .expect("proxy starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_proofs_cannot_race_the_lockout_and_a_success_cannot_lift_it() {
    let proxy = start("max_failed_logins = 3\nmax_failed_logins_per_address = 0").await;
    let (addr, db) = (proxy.addr(), proxy.database().to_string());
    // A right proof, ready before the name is locked.
    let right = Exchange::start(addr, HOME, (USER, &db), Some(PASSWORD))
        .await
        .unwrap_or_else(|o| panic!("the exchange starts: {o:?}"));
    // Twenty exchanges reach their proof, then all prove at once.
    let mut wrong = Vec::new();
    for _ in 0..20 {
        let ex = Exchange::start(addr, HOME, (USER, &db), Some("a wrong guess"))
            .await
            .unwrap_or_else(|o| panic!("the exchange starts: {o:?}"));
        wrong.push(ex);
    }
    let outcomes: Vec<Outcome> = join_all(wrong.into_iter().map(|ex| ex.prove()))
        .await
        .into_iter()
        .map(|(outcome, _)| outcome)
        .collect();
    let checked = outcomes.iter().filter(|o| **o == refused("28P01")).count();
    let locked = outcomes.iter().filter(|o| **o == refused("28000")).count();
    assert_eq!(
        checked, 3,
        "only the threshold's proofs are checked: {outcomes:?}"
    );
    assert_eq!(locked, 17, "{outcomes:?}");

    // The right proof checked after the lock is refused, and the lock stays.
    let (outcome, _) = right.prove().await;
    assert_eq!(outcome, refused("28000"));
    assert_eq!(
        login(addr, HOME, (USER, &db), Some(PASSWORD)).await,
        refused("28000")
    );
    let text = proxy.handle().metrics().encode_text();
    assert_eq!(metric(&text, "maskgate_login_lockouts_total"), 1.0);
    assert_eq!(
        metric(
            &text,
            "maskgate_client_connections_rejected_total{reason=\"auth_failed\"}"
        ),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_address_that_keeps_failing_is_refused_for_a_while() {
    let proxy = start("max_failed_logins_per_address = 4").await;
    let (addr, db) = (proxy.addr(), proxy.database().to_string());
    for i in 0..4 {
        let name = format!("guess{i}");
        assert_eq!(
            login(addr, HOME, (&name, &db), None).await,
            refused("28P01")
        );
    }
    // Even the right password is refused from that address, before any SCRAM work.
    assert_eq!(
        login(addr, HOME, (USER, &db), Some(PASSWORD)).await,
        refused("28000")
    );
    assert_eq!(
        login(addr, ELSEWHERE, (USER, &db), Some(PASSWORD)).await,
        Outcome::Admitted,
        "another address is not affected"
    );
    let text = proxy.handle().metrics().encode_text();
    assert!(
        metric(
            &text,
            "maskgate_client_connections_rejected_total{reason=\"address_limited\"}"
        ) >= 1.0
    );
}

/// The longest name a startup packet (at most 10,000 bytes) can carry.
fn invented_name(i: usize) -> String {
    format!("{i:06}{}", "n".repeat(9_000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_with_invented_names_take_bounded_memory_and_log() {
    let template = TestProxy::start(
        PgCluster::shared(),
        ProxyOptions {
            server_settings: "max_failed_logins_per_address = 0\nlockout_table_size = 1000".into(),
            auth_failure_delay: Duration::from_millis(1),
            ..Default::default()
        },
    )
    .await
    .expect("proxy starts");
    let served = ServedBinary::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_maskgate")),
        template,
        ServeOptions {
            log_filter: Some("info".into()),
            ..Default::default()
        },
    )
    .await
    .expect("maskgate runs");
    let (addr, db) = (served.addr(), served.database().to_string());
    let flood = |range: std::ops::Range<usize>| {
        let db = db.clone();
        async move {
            for chunk in range.collect::<Vec<_>>().chunks(16) {
                let attempts = chunk.iter().map(|&i| {
                    let db = db.clone();
                    async move { login(addr, HOME, (&invented_name(i), &db), None).await }
                });
                for outcome in join_all(attempts).await {
                    assert_eq!(outcome, refused("28P01"));
                }
            }
        }
    };
    // Warm up the allocator and the tables, then measure.
    flood(0..300).await;
    let before = served.rss_bytes();
    flood(300..2300).await;
    let after = served.rss_bytes();
    let growth = after.saturating_sub(before);
    eprintln!(
        "RSS {before} -> {after} bytes after 2000 failed logins with 9 KB names: {} bytes each",
        growth / 2000
    );
    // Before, each name cost about 11 KB for the whole lockout window (22 MB here).
    assert!(growth < 4 << 20, "memory grew by {growth} bytes");

    let forged = "clerk\nINFO session started user=dba";
    assert_eq!(
        login(addr, HOME, (forged, &db), None).await,
        refused("28P01")
    );
    let (_, metrics) = http_get(served.admin_addr().expect("admin"), "/metrics").await;
    assert!(metric(&metrics, "maskgate_login_names_tracked") <= 1001.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = served.log();
    assert!(log.contains("clerk\\nINFO session started"), "{log}");
    assert!(!log.lines().any(|l| l.starts_with("INFO session started")));
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 600, "a log line of {longest} bytes");
    assert!(
        !log.contains(&"n".repeat(100)),
        "a long name reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_named_refusals_is_counted_each_and_summed_up_in_the_trail() {
    use tokio::io::AsyncWriteExt;
    let mut proxy = start("").await;
    let db = proxy.database().to_string();
    // Each connection names a login, then hangs up: refused, reason "protocol".
    const FLOOD: usize = 200;
    for n in 0..FLOOD {
        let mut tcp = raw_login::connect_from(proxy.addr(), ELSEWHERE)
            .await
            .expect("connects");
        let mut startup = bytes::BytesMut::new();
        let user = format!("ghost{}", n % 3);
        postgres_protocol::message::frontend::startup_message(
            [("user", user.as_str()), ("database", db.as_str())],
            &mut startup,
        )
        .unwrap();
        tcp.write_all(&startup).await.unwrap();
        drop(tcp);
    }
    let rejected = "maskgate_client_connections_rejected_total{reason=\"protocol\"}";
    for _ in 0..100 {
        if metric(&proxy.handle().metrics().encode_text(), rejected) >= FLOOD as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(&proxy.handle().metrics().encode_text(), rejected),
        FLOOD as f64,
        "every refusal is counted"
    );
    proxy.stop().await;
    let one_by_one = audit_records_of(&proxy.audit_dir(), "login")
        .into_iter()
        .filter(|r| r["reason"] == "protocol")
        .count();
    let summaries = audit_records_of(&proxy.audit_dir(), "login_refusals");
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    let summary = &summaries[0];
    assert_eq!(summary["client"], "127.0.0.2");
    assert_eq!(summary["reason"], "protocol");
    assert!(summary["first"].is_string() && summary["last"].is_string());
    assert_eq!(summary["users"].as_array().map(Vec::len), Some(3));
    assert_eq!(one_by_one, 10);
    assert_eq!(
        one_by_one as u64 + summary["count"].as_u64().unwrap(),
        FLOOD as u64,
        "nothing is lost"
    );
}
