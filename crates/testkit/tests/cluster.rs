//! Real-server tests of the cluster lifecycle.

use std::net::TcpStream;
use std::path::PathBuf;
use std::thread;
use std::time::Instant;

use maskgate_testkit::{PgCluster, TestkitError};

/// A reaped or zombie process counts as gone; in containers the init
/// process may be slow to reap the daemonised postmaster.
fn postmaster_alive(pid: i32) -> bool {
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let alive = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        };
        if !alive || Instant::now() >= deadline {
            return alive;
        }
        thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn count_rows(pg: &PgCluster) -> String {
    pg.psql("SELECT count(*) FROM kept").unwrap()
}

#[test]
fn two_clusters_start_in_parallel_and_are_isolated() {
    let handles: Vec<_> = (0..2)
        .map(|i| {
            thread::spawn(move || {
                let pg = PgCluster::start().unwrap();
                pg.psql(&format!("CREATE TABLE marker AS SELECT {i} AS id"))
                    .unwrap();
                pg
            })
        })
        .collect();
    let clusters: Vec<PgCluster> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(clusters[0].port(), clusters[1].port());
    assert_ne!(clusters[0].data_dir(), clusters[1].data_dir());
    for (i, pg) in clusters.iter().enumerate() {
        assert_eq!(pg.psql("SELECT id FROM marker").unwrap(), i.to_string());
    }
}

#[test]
fn psql_returns_output_and_reports_errors() {
    let pg = PgCluster::start().unwrap();
    let out = pg
        .psql("CREATE TABLE t (a int, b text); INSERT INTO t VALUES (1, 'x'), (2, 'y'); SELECT a, b FROM t ORDER BY a;")
        .unwrap();
    assert_eq!(out, "1|x\n2|y");
    assert_eq!(pg.psql("SHOW max_connections").unwrap(), "600");
    assert_eq!(pg.psql("SHOW fsync").unwrap(), "off");
    assert_eq!(pg.psql("SHOW server_encoding").unwrap(), "UTF8");
    assert_eq!(pg.psql("SHOW listen_addresses").unwrap(), "127.0.0.1");

    let err = pg
        .psql("SELECT 1; SELECT no_such_column FROM t; SELECT 2")
        .unwrap_err();
    assert!(matches!(err, TestkitError::Command { .. }));
    assert!(err.to_string().contains("no_such_column"), "{err}");

    pg.psql("CREATE DATABASE other").unwrap();
    assert_eq!(
        pg.psql_in("other", "SELECT current_database()").unwrap(),
        "other"
    );

    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), "SELECT 40 + 2;\n").unwrap();
    assert_eq!(pg.exec_file(script.path()).unwrap(), "42");
}

#[test]
fn accessors_describe_a_local_cluster() {
    let pg = PgCluster::start().unwrap();
    assert_eq!(pg.host(), "127.0.0.1");
    assert_eq!(pg.user(), "postgres");
    assert_eq!(pg.database(), "postgres");
    assert!(!pg.is_external());
    assert!(pg.password().len() >= 16);
    assert_eq!(
        pg.url(),
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            pg.password(),
            pg.port()
        )
    );
    assert!(pg.data_dir().unwrap().join("PG_VERSION").is_file());
    assert!(pg.log_path().unwrap().is_file());
    assert!(pg.bin_dir().unwrap().join("postgres").is_file());
    let socket = pg
        .socket_dir()
        .unwrap()
        .join(format!(".s.PGSQL.{}", pg.port()));
    assert!(socket.exists(), "{}", socket.display());
    let debug = format!("{pg:?}");
    assert!(!debug.contains(pg.password()));
}

#[test]
fn stop_start_again_and_restart_keep_data_and_port() {
    let mut pg = PgCluster::start().unwrap();
    let port = pg.port();
    pg.psql("CREATE TABLE kept AS SELECT generate_series(1, 3) AS n")
        .unwrap();

    pg.stop().unwrap();
    assert!(!pg.is_running());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(pg.psql("SELECT 1").is_err());
    assert!(pg.stop().is_err(), "stopping a stopped server is an error");

    pg.start_again().unwrap();
    assert!(pg.is_running());
    assert_eq!(pg.port(), port);
    assert_eq!(count_rows(&pg), "3");

    let before = pg.psql("SELECT pg_postmaster_start_time()").unwrap();
    pg.restart().unwrap();
    let after = pg.psql("SELECT pg_postmaster_start_time()").unwrap();
    assert_ne!(before, after, "server really restarted");
    assert_eq!(pg.port(), port);
    assert_eq!(count_rows(&pg), "3");
}

#[test]
fn drop_stops_the_server_and_removes_the_directory() {
    let pg = PgCluster::start().unwrap();
    let root: PathBuf = pg.data_dir().unwrap().parent().unwrap().to_path_buf();
    let port = pg.port();
    let pid: i32 = std::fs::read_to_string(pg.data_dir().unwrap().join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    drop(pg);
    assert!(!root.exists(), "{} still exists", root.display());
    assert!(!postmaster_alive(pid), "postmaster {pid} still running");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn drop_during_panic_cleans_up() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = thread::spawn(move || {
        let pg = PgCluster::start().unwrap();
        tx.send(pg.data_dir().unwrap().parent().unwrap().to_path_buf())
            .unwrap();
        panic!("test failure while holding a cluster");
    })
    .join();
    assert!(result.is_err());
    let root = rx.recv().unwrap();
    assert!(!root.exists(), "{} still exists", root.display());
}

#[test]
fn shared_cluster_is_started_once() {
    let a = PgCluster::shared();
    let b = PgCluster::shared();
    assert!(std::ptr::eq(a, b));
    assert_eq!(a.psql("SELECT 1").unwrap(), "1");
}

#[test]
fn stopped_cluster_can_be_dropped() {
    let mut pg = PgCluster::start().unwrap();
    let root = pg.data_dir().unwrap().parent().unwrap().to_path_buf();
    pg.stop().unwrap();
    drop(pg);
    assert!(!root.exists());
}

#[tokio::test]
async fn scram_login_over_tcp_checks_the_password() {
    let pg = PgCluster::start().unwrap();
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let row = client
        .query_one("SELECT current_user, inet_server_addr()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "postgres");
    assert_eq!(row.get::<_, String>(1), "127.0.0.1/32");
    let method: String = client
        .query_one(
            "SELECT left(rolpassword, 13) FROM pg_authid WHERE rolname = 'postgres'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(method, "SCRAM-SHA-256");
    drop(client);
    let _ = task.await;

    let mut config: tokio_postgres::Config = pg.url().parse().unwrap();
    config.password("definitely-wrong");
    let err = match config.connect(tokio_postgres::NoTls).await {
        Ok(_) => panic!("login with a wrong password succeeded"),
        Err(e) => e,
    };
    let code = err.code().cloned();
    assert_eq!(
        code,
        Some(tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{err}"
    );
}

/// Not an assertion on speed (CI machines vary); prints timings for humans:
/// `cargo test -p maskgate-testkit --test cluster timings -- --nocapture`.
#[test]
fn timings() {
    let t = Instant::now();
    let first = PgCluster::start().unwrap();
    let first_time = t.elapsed();
    let t = Instant::now();
    let second = PgCluster::start().unwrap();
    let second_time = t.elapsed();
    let t = Instant::now();
    drop(second);
    let drop_time = t.elapsed();
    drop(first);
    eprintln!(
        "first start (may include initdb): {first_time:?}, later start: {second_time:?}, drop: {drop_time:?}"
    );
}
