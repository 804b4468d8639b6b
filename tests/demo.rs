//! `maskgate demo` starts a working proxy in front of a sample register.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_a_connection_string_that_works() {
    let mut demo = Command::new(env!("CARGO_BIN_EXE_maskgate"))
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let conn = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.trim().strip_prefix("connect:") {
                return rest
                    .trim()
                    .trim_start_matches("psql ")
                    .trim_matches('"')
                    .to_string();
            }
        }
        panic!("the demo ended without printing a connection string");
    })
    .await
    .expect("the demo starts within a minute");

    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let n: i64 = client
        .query_one("SELECT count(*) FROM participant", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 10_000);
    drop(client);

    let pid = demo.id().unwrap().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(30), demo.wait())
        .await
        .expect("the demo stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}
