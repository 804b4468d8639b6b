//! The relay is faithful: what a client does through maskgate behaves as it
//! does against PostgreSQL directly (simple and extended protocol, prepared
//! statements, binary results, COPY, transactions).

use maskgate_testkit::{PgCluster, ProxyOptions, TestProxy};
use tokio_postgres::SimpleQueryMessage;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";

async fn proxy() -> TestProxy {
    TestProxy::start(PgCluster::shared(), ProxyOptions::default())
        .await
        .expect("maskgate starts")
}

fn simple_values(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_query_with_several_statements_returns_every_result() {
    let proxy = proxy().await;
    let client = proxy.connect(USER, PASSWORD).await.unwrap();
    let messages = client
        .simple_query("SELECT 1 AS a; SELECT 'two', NULL; SELECT x FROM generate_series(1, 3) x")
        .await
        .unwrap();
    assert_eq!(
        simple_values(&messages),
        vec![
            vec![Some("1".to_string())],
            vec![Some("two".to_string()), None],
            vec![Some("1".to_string())],
            vec![Some("2".to_string())],
            vec![Some("3".to_string())],
        ]
    );
    let completions = messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count();
    assert_eq!(completions, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_query_binds_parameters_and_returns_binary_results() {
    let proxy = proxy().await;
    let client = proxy.connect(USER, PASSWORD).await.unwrap();
    // tokio-postgres asks for every result column in binary format.
    let row = client
        .query_one(
            "SELECT $1::int8 + 1, $2::text || '!', $3::float8 * 2, $4::bool, $5::bytea, now() IS NOT NULL",
            &[&41i64, &"Nguyễn Văn An", &1.25f64, &true, &vec![0u8, 255, 7]],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);
    assert_eq!(row.get::<_, String>(1), "Nguyễn Văn An!");
    assert_eq!(row.get::<_, f64>(2), 2.5);
    assert!(row.get::<_, bool>(3));
    assert_eq!(row.get::<_, Vec<u8>>(4), vec![0u8, 255, 7]);
    assert!(row.get::<_, bool>(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_is_reused_many_times() {
    let proxy = proxy().await;
    let client = proxy.connect(USER, PASSWORD).await.unwrap();
    let statement = client
        .prepare("SELECT $1::int4 * 2, repeat('x', $1::int4)")
        .await
        .unwrap();
    for i in 0..2000i32 {
        let row = client.query_one(&statement, &[&(i % 50)]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), (i % 50) * 2);
        assert_eq!(row.get::<_, String>(1).len(), (i % 50) as usize);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_are_suspended_and_resumed_with_row_limits() {
    let proxy = proxy().await;
    let mut client = proxy.connect(USER, PASSWORD).await.unwrap();
    let tx = client.transaction().await.unwrap();
    let portal = tx
        .bind("SELECT g FROM generate_series(1, 25) g", &[])
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        // Each call is an Execute with a row limit; all but the last end in PortalSuspended.
        let rows = tx.query_portal(&portal, 10).await.unwrap();
        if rows.is_empty() {
            break;
        }
        seen.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
    }
    tx.commit().await.unwrap();
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_runs_in_both_directions() {
    use bytes::Bytes;
    use futures_util::{SinkExt, TryStreamExt};

    let proxy = proxy().await;
    let client = proxy.connect(USER, PASSWORD).await.unwrap();
    client
        .batch_execute("CREATE TEMP TABLE copied (id int, name text)")
        .await
        .unwrap();

    let sink = client
        .copy_in("COPY copied FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    for i in 0..10_000 {
        sink.send(Bytes::from(format!("{i},Trần Thị Bình {i}\n")))
            .await
            .unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 10_000);

    let stream = client
        .copy_out("COPY (SELECT id, name FROM copied ORDER BY id) TO STDOUT (FORMAT csv)")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    let text = String::from_utf8(chunks.concat()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 10_000);
    assert_eq!(lines[0], "0,Trần Thị Bình 0");
    assert_eq!(lines[9_999], "9999,Trần Thị Bình 9999");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_copy_leaves_the_session_usable() {
    let proxy = proxy().await;
    let client = proxy.connect(USER, PASSWORD).await.unwrap();
    client
        .batch_execute("CREATE TEMP TABLE strict_copy (id int)")
        .await
        .unwrap();
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY strict_copy FROM STDIN")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    use futures_util::SinkExt;
    sink.send(bytes::Bytes::from_static(b"not a number\n"))
        .await
        .unwrap();
    let err = sink.finish().await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_TEXT_REPRESENTATION)
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM strict_copy", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_in_a_transaction_then_rollback_leaves_the_session_usable() {
    let proxy = proxy().await;
    let client = proxy.connect(USER, PASSWORD).await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    let err = client.batch_execute("SELECT 1/0").await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO)
    );
    let err = client.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
    );
    client.batch_execute("ROLLBACK").await.unwrap();
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    // The same in the extended protocol: the error ends the pipeline at Sync.
    let err = client
        .query("SELECT 1/$1::int", &[&0i32])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO)
    );
    let two: i32 = client.query_one("SELECT 2", &[]).await.unwrap().get(0);
    assert_eq!(two, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_and_roll_back_upstream() {
    let pg = PgCluster::shared();
    pg.psql("CREATE TABLE IF NOT EXISTS relay_tx (id int PRIMARY KEY)")
        .unwrap();
    let proxy = proxy().await;
    let mut client = proxy.connect(USER, PASSWORD).await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO relay_tx VALUES (1) ON CONFLICT DO NOTHING",
        &[],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO relay_tx VALUES (2)", &[])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let ids = pg
        .psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM relay_tx WHERE id IN (1, 2)")
        .unwrap();
    assert_eq!(ids, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_works_through_the_proxy() {
    let pg = PgCluster::shared();
    let proxy = proxy().await;
    let psql = pg.bin_dir().expect("a local cluster").join("psql");
    let out = tokio::process::Command::new(psql)
        .arg(proxy.conn_string(USER, PASSWORD))
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1"])
        .args([
            "-c",
            "SELECT 'psql ' || 40 + 2",
            "-c",
            "\\copy (SELECT 1 UNION ALL SELECT 2) TO STDOUT",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "psql 42\n1\n2\n");
}
