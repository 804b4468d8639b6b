//! End to end against the real binary: the admin endpoint closes slow and idle
//! connections by its header timeout and serves only so many at once, apart from
//! client sessions; `/health` says "draining" (503) during a SIGTERM drain.

use std::path::Path;
use std::time::Duration;

use maskgate_testkit::{http_get, PgCluster, ProxyOptions, ServeOptions, ServedBinary, TestProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::NoTls;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";

async fn serve(admin_settings: &str) -> ServedBinary {
    let template = TestProxy::start(
        PgCluster::shared(),
        ProxyOptions {
            admin_settings: admin_settings.into(),
            ..Default::default()
        },
    )
    .await
    .expect("proxy starts");
    ServedBinary::start(
        Path::new(env!("CARGO_BIN_EXE_maskgate")),
        template,
        ServeOptions::default(),
    )
    .await
    .expect("maskgate runs")
}

async fn client(served: &ServedBinary) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) =
        tokio_postgres::connect(&served.conn_string(USER, PASSWORD), NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_slowloris_is_closed_by_its_timeout_and_leaves_client_logins_alone() {
    let served = serve("max_connections = 4\nheader_timeout = \"1s\"").await;
    let admin = served.admin_addr().expect("admin endpoint");
    // Forty connections that send a request line a byte every 300 ms.
    let mut slow = Vec::new();
    for _ in 0..40 {
        slow.push(TcpStream::connect(admin).await.expect("connect"));
    }
    let trickle = async {
        for byte in b"GET /health".iter().take(6) {
            for tcp in slow.iter_mut() {
                let _ = tcp.write_all(&[*byte]).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let logins = async {
        for _ in 0..5 {
            let c = client(&served)
                .await
                .expect("a client logs in during the flood");
            c.simple_query("SELECT 1").await.expect("and is served");
        }
    };
    tokio::join!(trickle, logins);
    // By now (1.8 s) every slow connection was closed, at once or by the timeout.
    for tcp in slow.iter_mut() {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a slow admin connection is still open"
        );
    }
    assert_eq!(http_get(admin, "/health").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_draining_during_a_sigterm_drain() {
    let mut served = serve("").await;
    let admin = served.admin_addr().expect("admin endpoint");
    let busy = client(&served).await.expect("connects");
    busy.batch_execute("BEGIN").await.unwrap();
    assert_eq!(http_get(admin, "/health").await.0, 200);

    served.signal("TERM");
    let mut seen = (0, String::new());
    for _ in 0..50 {
        seen = http_get(admin, "/health").await;
        if seen.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.0, 503, "{}", seen.1);
    assert!(seen.1.starts_with("draining"), "{}", seen.1);
    // The open transaction still finishes, then the process exits.
    busy.batch_execute("COMMIT")
        .await
        .expect("the drain lets it commit");
    let status = served
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("maskgate exits after the drain");
    assert!(status.success(), "{status}");
}

/// A connection to `addr` from `source` (any 127.0.0.0/8 address).
async fn connect_from(addr: std::net::SocketAddr, source: [u8; 4]) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((std::net::Ipv4Addr::from(source), 0).into())?;
    socket.connect(addr).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_sending_a_byte_and_renewed_cannot_take_health_away() {
    let served = serve("max_connections = 16\nheader_timeout = \"1s\"").await;
    let admin = served.admin_addr().expect("admin endpoint");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Sixteen addresses, one connection each, sending one byte and renewed
    // whenever the endpoint closes them.
    let attackers: Vec<_> = (1..=16u8)
        .map(|n| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut opened = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(mut tcp) = connect_from(admin, [127, 0, 3, n]).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    opened += 1;
                    let _ = tcp.write_all(b"G").await;
                    let mut buf = [0u8; 64];
                    let _ =
                        tokio::time::timeout(Duration::from_millis(1500), tcp.read(&mut buf)).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                opened
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut answered = 0;
    for _ in 0..14 {
        let probe = tokio::time::timeout(Duration::from_secs(3), http_get(admin, "/health"));
        if matches!(probe.await, Ok((200, _))) {
            answered += 1;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut opened = 0;
    for attacker in attackers {
        opened += attacker.await.unwrap();
    }
    eprintln!("{answered} of 14 probes answered; the attackers opened {opened} connections");
    assert_eq!(answered, 14);
    assert!(opened >= 16);
}
