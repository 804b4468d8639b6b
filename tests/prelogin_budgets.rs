//! End to end against the real binary: connections that never log in have a
//! budget of their own (in total and per client address) and a deadline for each
//! login step, so silent and slow floods leave real logins and `/health` served;
//! at a lowered open-file limit the process refuses cleanly and recovers.

#[path = "common/raw_login.rs"]
mod raw_login;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use maskgate_testkit::{
    http_get, metric, PgCluster, ProxyOptions, ServeOptions, ServedBinary, TestProxy,
};
use raw_login::{connect_from, login, Outcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";
const FLOODER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const SLOW: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const REAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 77);
const GUESSER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 78);

async fn serve(server_settings: &str, options: ServeOptions) -> ServedBinary {
    let template = TestProxy::start(
        PgCluster::shared(),
        ProxyOptions {
            server_settings: server_settings.into(),
            ..Default::default()
        },
    )
    .await
    .expect("proxy starts");
    ServedBinary::start(Path::new(env!("CARGO_BIN_EXE_maskgate")), template, options)
        .await
        .expect("maskgate runs")
}

/// `n` connections from `source` that send nothing.
async fn silent(served: &ServedBinary, source: Ipv4Addr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        if let Ok(tcp) = connect_from(served.addr(), source).await {
            held.push(tcp);
        }
    }
    held
}

/// Whether the server closed `tcp` within `within` (what it sent before is ignored).
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn metrics(served: &ServedBinary) -> String {
    http_get(served.admin_addr().expect("admin endpoint"), "/metrics")
        .await
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_floods_leave_real_logins_served() {
    let served = serve(
        "max_pending_logins = 64\nmax_pending_logins_per_address = 16\nlogin_step_timeout = \"1s\"",
        ServeOptions::default(),
    )
    .await;
    let db = served.database().to_string();
    let mut flood = silent(&served, FLOODER, 300).await;
    // Slowloris: a startup packet trickled a byte at a time.
    let mut slow = silent(&served, SLOW, 20).await;
    let trickle = async {
        for _ in 0..4 {
            for tcp in slow.iter_mut() {
                let _ = tcp.write_all(&[0]).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let real = async {
        let mut outcomes = Vec::new();
        for _ in 0..10 {
            outcomes.push(login(served.addr(), REAL, (USER, &db), Some(PASSWORD)).await);
        }
        outcomes
    };
    let ((), outcomes) = tokio::join!(trickle, real);
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Admitted),
        "{outcomes:?}"
    );
    let (status, _) = http_get(served.admin_addr().unwrap(), "/health").await;
    assert_eq!(status, 200);
    let text = metrics(&served).await;
    assert!(
        metric(
            &text,
            "maskgate_client_connections_rejected_total{reason=\"pending_logins\"}"
        ) >= 200.0,
        "{text}"
    );
    assert!(metric(&text, "maskgate_pending_logins") <= 64.0);
    // Every flooding connection is closed: refused at once, or at its step deadline.
    for tcp in flood.iter_mut().chain(slow.iter_mut()) {
        assert!(closed_within(tcp, Duration::from_secs(5)).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_connection_costs_little_memory() {
    let served = serve(
        "max_pending_logins = 400\nmax_pending_logins_per_address = 400\nlogin_step_timeout = \"30s\"",
        ServeOptions::default(),
    )
    .await;
    // Warm up the runtime with a first batch.
    let warm = silent(&served, FLOODER, 50).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = served.rss_bytes();
    let held = silent(&served, FLOODER, 400).await;
    let mut pending = 0.0;
    for _ in 0..50 {
        pending = metric(&metrics(&served).await, "maskgate_pending_logins");
        if pending >= 400.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pending, 400.0);
    let after = served.rss_bytes();
    let each = after.saturating_sub(before) / 400;
    eprintln!("RSS {before} -> {after} bytes for 400 pending connections: {each} bytes each");
    assert!(each < 64 << 10, "{each} bytes per pending connection");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_lowered_open_file_limit_logins_and_health_are_served_or_refused_cleanly() {
    let served = serve(
        "login_step_timeout = \"1s\"",
        ServeOptions {
            nofile: Some(160),
            ..Default::default()
        },
    )
    .await;
    let db = served.database().to_string();
    let admin = served.admin_addr().unwrap();
    assert!(
        served.log().contains("open-file limit is too low"),
        "{}",
        served.log()
    );
    eprintln!("{} files open at rest", served.open_files());
    let _flood = silent(&served, FLOODER, 400).await;
    assert_eq!(http_get(admin, "/health").await.0, 200);

    // Sessions up to the budget the limit allows; beyond it a clean 53300.
    let mut sessions = Vec::new();
    let mut refusals = Vec::new();
    for _ in 0..60 {
        match raw_login::Exchange::start(served.addr(), REAL, (USER, &db), Some(PASSWORD)).await {
            Ok(ex) => match ex.prove().await {
                (Outcome::Admitted, Some(tcp)) => sessions.push(tcp),
                (outcome, _) => refusals.push(outcome),
            },
            Err(outcome) => refusals.push(outcome),
        }
    }
    eprintln!(
        "open-file limit 160: {} sessions admitted, {} refused, {} files open",
        sessions.len(),
        refusals.len(),
        served.open_files()
    );
    assert!(
        sessions.len() >= 20,
        "{} sessions, {refusals:?}",
        sessions.len()
    );
    assert!(
        refusals
            .iter()
            .all(|o| *o == Outcome::Refused("53300".into())),
        "{refusals:?}"
    );
    assert!(!refusals.is_empty(), "the budget was not reached");
    assert_eq!(http_get(admin, "/health").await.0, 200);
    assert!(served.open_files() <= 160);

    // Room again once sessions end.
    drop(sessions);
    let mut again = Outcome::Closed;
    for _ in 0..40 {
        again = login(served.addr(), REAL, (USER, &db), Some(PASSWORD)).await;
        if again == Outcome::Admitted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(again, Outcome::Admitted);
    let log = served.log();
    let accept_failures = log.matches("accept failed").count();
    assert!(accept_failures <= 3, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_clients_of_a_dual_stack_listener_each_have_their_own_budgets() {
    let served = serve(
        "max_pending_logins_per_address = 4\nmax_failed_logins_per_address = 3\n\
         login_step_timeout = \"10s\"\nfirst_packet_timeout = \"10s\"",
        ServeOptions {
            listen_host: Some("::ffff:127.0.0.1".parse().unwrap()),
            ..Default::default()
        },
    )
    .await;
    let db = served.database().to_string();
    // One address fills its own pending budget with silent connections…
    let _silent = silent(&served, STRANGER, 4).await;
    for _ in 0..100 {
        if metric(&metrics(&served).await, "maskgate_pending_logins") >= 4.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // …another fails logins until it is refused before any SCRAM work…
    for _ in 0..3 {
        let failed = login(served.addr(), GUESSER, (USER, &db), None).await;
        assert_eq!(failed, Outcome::Refused("28P01".into()));
    }
    let limited = login(served.addr(), GUESSER, (USER, &db), None).await;
    assert_eq!(limited, Outcome::Refused("28000".into()));
    // …and a third IPv4 client is served: each is known by its own address.
    let real = login(served.addr(), REAL, (USER, &db), Some(PASSWORD)).await;
    assert_eq!(real, Outcome::Admitted, "{}", served.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_waits_in_the_listen_queue() {
    let served = serve("", ServeOptions::default()).await;
    // While the process cannot accept, the kernel queues completed connections up
    // to the listen backlog, and drops the SYNs beyond it.
    served.signal("STOP");
    let attempts = (0..400).map(|_| async {
        tokio::time::timeout(
            Duration::from_millis(700),
            connect_from(served.addr(), SLOW),
        )
        .await
        .ok()
        .and_then(Result::ok)
    });
    let held: Vec<TcpStream> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .flatten()
        .collect();
    served.signal("CONT");
    eprintln!("{} of 400 connections queued", held.len());
    assert_eq!(held.len(), 400, "the listen queue overflowed");
    let db = served.database().to_string();
    drop(held);
    assert_eq!(
        login(served.addr(), REAL, (USER, &db), Some(PASSWORD)).await,
        Outcome::Admitted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_with_many_addresses_cannot_fill_the_pending_budget() {
    let served = serve(
        "max_pending_logins = 64\nmax_pending_logins_per_address = 8\n\
         login_step_timeout = \"10s\"\nfirst_packet_timeout = \"10s\"",
        ServeOptions::default(),
    )
    .await;
    let db = served.database().to_string();
    // Eight addresses, eight silent connections each: every place is taken.
    let mut flood = Vec::new();
    for n in 0..8 {
        flood.extend(silent(&served, Ipv4Addr::new(127, 0, 1, n), 8).await);
    }
    for _ in 0..100 {
        if metric(&metrics(&served).await, "maskgate_pending_logins") >= 64.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        metric(&metrics(&served).await, "maskgate_pending_logins"),
        64.0
    );
    // Real clients, ten at once, take the places of the oldest silent connections.
    let logins = (0..10).map(|n| {
        let from = Ipv4Addr::new(127, 0, 2, n);
        login(served.addr(), from, (USER, &db), Some(PASSWORD))
    });
    let outcomes = futures_util::future::join_all(logins).await;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Admitted),
        "{outcomes:?}"
    );
    let evicted = metric(
        &metrics(&served).await,
        "maskgate_client_connections_rejected_total{reason=\"evicted\"}",
    );
    assert!(evicted >= 1.0, "{evicted}");
    // The oldest silent connection was the first to go, and it was closed.
    assert!(closed_within(&mut flood[0], Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_at_the_first_packet_deadline() {
    let served = serve(
        "login_step_timeout = \"30s\"\nfirst_packet_timeout = \"1s\"",
        ServeOptions::default(),
    )
    .await;
    let mut quiet = silent(&served, SLOW, 1).await;
    // One byte of a startup packet, then nothing.
    let mut trickled = silent(&served, SLOW, 1).await;
    trickled[0].write_all(&[0]).await.unwrap();
    for tcp in quiet.iter_mut().chain(trickled.iter_mut()) {
        assert!(closed_within(tcp, Duration::from_secs(5)).await);
    }
}
