//! Per-statement state follows PostgreSQL's protocol order when clients pipeline:
//! batches written at once that mix simple queries, COPY, extended-protocol
//! messages, errors, denials, Flush and Sync. COPY checks stay with their own COPY,
//! the row cap and the hourly row quota are never exceeded (also by pipelined and
//! parallel statements), denials arrive at the statement they belong to, and the
//! proxy's reserved names cannot be addressed. Raw protocol bytes through the real
//! proxy to a real PostgreSQL.

#[path = "common/enforcement.rs"]
mod enforcement;
#[path = "common/batch_wire.rs"]
mod wire;

use std::time::Duration;

use enforcement::{cluster, INVESTIGATOR, PASSWORD};
use maskgate_testkit::{register, PgCluster, ProxyOptions, TestProxy};
use wire::{data_rows, errors, Batch, Wire};

async fn register_proxy() -> TestProxy {
    register::start_proxy(cluster())
        .await
        .expect("proxy starts with the example policy")
}

/// An account that may insert people of its own province, on a fresh cluster.
const LOADER_POLICY: &str = r#"
[tables."public.person".columns]
id = { type = "bigint" }
province_code = { type = "char(2)" }
note = { type = "text" }

[roles.loader]
description = "Loads new people of its province"
statements = ["insert", "read"]

[roles.loader.tables."public.person"]
row_filter = "province_code = :province"
columns = { id = "allow", province_code = "allow", note = "allow" }
"#;

const LOADER_PASSWORD: &str = "loader test password";
const COPY: &str = "COPY person (id, province_code, note) FROM STDIN";

async fn loader() -> (PgCluster, TestProxy) {
    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    cluster
        .psql("CREATE TABLE person (id bigint PRIMARY KEY, province_code char(2) NOT NULL, note text)")
        .unwrap();
    let options = ProxyOptions {
        users: vec![("loader".into(), LOADER_PASSWORD.into())],
        roles: vec!["loader".into()],
        account_settings: vec![("loader".into(), "attributes = { province = \"01\" }".into())],
        policy_files: vec![("register.toml".into(), LOADER_POLICY.into())],
        ..ProxyOptions::default()
    };
    let proxy = TestProxy::start(&cluster, options).await.unwrap();
    (cluster, proxy)
}

fn people(cluster: &PgCluster, ids: &str) -> String {
    cluster
        .psql(&format!("SELECT count(*) FROM person WHERE id IN ({ids})"))
        .unwrap()
        .trim()
        .to_string()
}

#[track_caller]
fn assert_refused_rows(msgs: &[wire::Msg]) {
    let errors = errors(msgs);
    assert_eq!(errors.len(), 1, "one error for the COPY: {msgs:?}");
    assert_eq!(errors[0].code(), "42501");
    assert!(
        errors[0]
            .message()
            .contains("maskgate refused the copied rows"),
        "{}",
        errors[0].message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_check_follows_its_own_copy_statement() {
    let (cluster, proxy) = loader().await;
    let mut wire = Wire::login(&proxy, "loader", LOADER_PASSWORD).await;

    // SELECT 1 and the COPY in one write: the SELECT's ReadyForQuery comes before the
    // client sends its rows, and must not end the COPY's check.
    wire.send(Batch::new().query("SELECT 1").query(COPY)).await;
    let first = wire.until_ready().await;
    assert_eq!(data_rows(&first), 1);
    wire.until(b'G').await;
    wire.send(
        Batch::new()
            .copy_data("201\t79\tother province\n")
            .copy_done(),
    )
    .await;
    assert_refused_rows(&wire.until_ready().await);
    assert_eq!(
        people(&cluster, "201"),
        "0",
        "the out-of-scope row was inserted"
    );

    // Everything in one write, the same.
    wire.send(
        Batch::new()
            .query("SELECT 1")
            .query(COPY)
            .copy_data("202\t01\tmine\n203\t79\tother province\n")
            .copy_done(),
    )
    .await;
    wire.until_ready().await;
    assert_refused_rows(&wire.until_ready().await);
    assert_eq!(people(&cluster, "202, 203"), "0");

    // In scope, the same pipelining inserts.
    wire.send(Batch::new().query("SELECT 1").query(COPY)).await;
    wire.until_ready().await;
    wire.until(b'G').await;
    wire.send(Batch::new().copy_data("204\t01\tmine\n").copy_done())
        .await;
    let done = wire.until_ready().await;
    assert!(errors(&done).is_empty(), "{done:?}");
    assert_eq!(people(&cluster, "204"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_skipped_after_an_extended_error_leaves_no_state_behind() {
    let proxy = register_proxy().await;
    let mut wire = Wire::login(&proxy, INVESTIGATOR, PASSWORD).await;

    // The denied Parse fails; PostgreSQL skips Bind, Execute, Flush and the Query up to
    // the Sync, and answers once.
    wire.send(
        Batch::new()
            .parse("", "SELECT pg_read_file('/etc/passwd')")
            .bind("", "")
            .execute("", 0)
            .flush()
            .query("SELECT pg_read_file('/etc/hostname')")
            .sync(),
    )
    .await;
    let batch = wire.until_ready().await;
    let errs = errors(&batch);
    assert_eq!(errs.len(), 1, "{batch:?}");
    assert_eq!(errs[0].code(), "42501", "{}", errs[0].message());
    assert!(
        wire.silent_for(Duration::from_millis(300)).await,
        "nothing answers the skipped Query"
    );

    // The next statements are counted under their own cap ...
    wire.send(Batch::new().query("SELECT id FROM participant ORDER BY id"))
        .await;
    let rows = wire.until_ready().await;
    assert!(
        data_rows(&rows) <= 500,
        "{} rows under a cap of 500",
        data_rows(&rows)
    );
    let errs = errors(&rows);
    assert_eq!(errs.len(), 1, "the cap ends the statement");
    assert_eq!(errs[0].code(), "54000", "{}", errs[0].message());

    // ... and a denial reaches its own statement as maskgate's denial.
    wire.send(Batch::new().query("SELECT pg_read_file('/etc/passwd')"))
        .await;
    let denied = wire.until_ready().await;
    let errs = errors(&denied);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].code(), "42501", "{}", errs[0].message());
    assert!(
        !errs[0].message().contains("maskgate_denied"),
        "the denial token leaked: {}",
        errs[0].message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_in_a_pipelined_batch_arrive_at_their_own_statements() {
    let proxy = register_proxy().await;
    let mut wire = Wire::login(&proxy, INVESTIGATOR, PASSWORD).await;
    wire.send(
        Batch::new()
            .query("SELECT 1")
            .query("SELECT pg_read_file('/etc/passwd')")
            .parse("", "SELECT 2")
            .bind("", "")
            .execute("", 0)
            .sync()
            .parse("", "SELECT pg_ls_dir('/')")
            .bind("", "")
            .execute("", 0)
            .sync()
            .query("SELECT 3"),
    )
    .await;
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(wire.until_ready().await);
    }
    let codes: Vec<Vec<String>> = answers
        .iter()
        .map(|a| errors(a).iter().map(|e| e.code()).collect())
        .collect();
    assert_eq!(
        codes,
        [
            vec![],
            vec!["42501".to_string()],
            vec![],
            vec!["42501".to_string()],
            vec![]
        ]
    );
    let rows: Vec<usize> = answers.iter().map(|a| data_rows(a)).collect();
    assert_eq!(rows, [1, 0, 1, 0, 1]);
}

/// A message that ends the session (here a FunctionCall, which maskgate does not
/// relay; a suspended or disabled account's next statement is the same path) comes
/// after the answers to the messages before it, as PostgreSQL would send them: a
/// driver matches answers to requests in order, and would otherwise take the FATAL
/// error for an earlier request's answer and see its own request cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_by_a_message_first_answers_the_messages_before_it() {
    let proxy = register_proxy().await;
    let mut wire = Wire::login(&proxy, INVESTIGATOR, PASSWORD).await;
    wire.send(
        Batch::new()
            .query("SELECT 1")
            .describe_or_close(b'C', b'S', "gone")
            .sync()
            .raw(b'F', &[0, 0, 0, 0]),
    )
    .await;
    let tags: Vec<u8> = wire.until_closed().await.iter().map(|m| m.tag).collect();
    assert_eq!(
        tags,
        [b'T', b'D', b'C', b'Z', b'3', b'Z', b'E'],
        "{:?}",
        String::from_utf8_lossy(&tags)
    );
}

/// Spends `statements` × `rows` of the investigator's hourly rows.
async fn spend(wire: &mut Wire, statements: usize, rows: usize) {
    for _ in 0..statements {
        wire.send(Batch::new().query(&format!(
            "SELECT id FROM participant ORDER BY id LIMIT {rows}"
        )))
        .await;
        let answer = wire.until_ready().await;
        assert_eq!(data_rows(&answer), rows, "{:?}", errors(&answer));
    }
}

/// Sends `count` queries of `rows` rows in one write; returns (rows received, 53400 errors).
async fn pipelined(wire: &mut Wire, count: usize, rows: usize) -> (usize, usize) {
    let mut batch = Batch::new();
    for _ in 0..count {
        batch = batch.query(&format!(
            "SELECT id FROM participant ORDER BY id LIMIT {rows}"
        ));
    }
    wire.send(batch).await;
    let (mut received, mut refused) = (0, 0);
    for _ in 0..count {
        let answer = wire.until_ready().await;
        received += data_rows(&answer);
        refused += errors(&answer)
            .iter()
            .filter(|e| e.code() == "53400")
            .count();
    }
    (received, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_queries_never_spend_more_than_the_hourly_rows_left() {
    let proxy = register_proxy().await;
    let mut wire = Wire::login(&proxy, INVESTIGATOR, PASSWORD).await;
    // 5000 rows per hour: leave 100.
    spend(&mut wire, 10, 490).await;
    let (received, refused) = pipelined(&mut wire, 5, 100).await;
    assert!(
        received <= 100,
        "{received} rows received with 100 left of the hourly quota"
    );
    assert_eq!(received, 100, "what is left can be spent");
    assert!(refused >= 1, "the quota refusal is reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_sessions_of_an_account_share_the_hourly_rows_left() {
    let proxy = register_proxy().await;
    let mut first = Wire::login(&proxy, INVESTIGATOR, PASSWORD).await;
    let mut second = Wire::login(&proxy, INVESTIGATOR, PASSWORD).await;
    // Leave 1000 of the 5000 rows per hour.
    spend(&mut first, 8, 500).await;
    let ((a, _), (b, _)) = tokio::join!(
        pipelined(&mut first, 3, 400),
        pipelined(&mut second, 3, 400)
    );
    assert!(
        a + b <= 1000,
        "{a} + {b} rows received with 1000 left of the hourly quota"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_reserved_names_cannot_be_addressed() {
    let proxy = register_proxy().await;
    let mut wire = Wire::login(&proxy, INVESTIGATOR, PASSWORD).await;
    // An unnamed statement the proxy prepares upstream as _maskgate_0.
    wire.send(
        Batch::new()
            .parse("", "SELECT id FROM participant WHERE id = 1")
            .bind("", "")
            .execute("", 0)
            .sync(),
    )
    .await;
    assert_eq!(data_rows(&wire.until_ready().await), 1);

    let attempts = [
        (
            "Bind to a reserved portal",
            Batch::new().parse("", "SELECT 1").bind("_maskgate_p", ""),
        ),
        (
            "Bind of a reserved statement",
            Batch::new().bind("", "_maskgate_0"),
        ),
        (
            "Execute of a reserved portal",
            Batch::new().execute("_maskgate_p", 0),
        ),
        (
            "Describe of a reserved statement",
            Batch::new().describe_or_close(b'D', b'S', "_maskgate_0"),
        ),
        (
            "Describe of a reserved portal",
            Batch::new().describe_or_close(b'D', b'P', "_maskgate_p"),
        ),
        (
            "Close of a reserved statement",
            Batch::new().describe_or_close(b'C', b'S', "_maskgate_0"),
        ),
        (
            "Close of a reserved portal",
            Batch::new().describe_or_close(b'C', b'P', "_maskgate_p"),
        ),
    ];
    for (what, batch) in attempts {
        wire.send(batch.sync()).await;
        let answer = wire.until_ready().await;
        let errs = errors(&answer);
        assert_eq!(errs.len(), 1, "{what}: {answer:?}");
        assert_eq!(errs[0].code(), "42501", "{what}: {}", errs[0].message());
        assert!(
            errs[0].message().contains("reserved"),
            "{what}: {}",
            errs[0].message()
        );
    }

    // The unnamed statement the client parsed before the refusal still runs.
    wire.send(Batch::new().bind("", "").execute("", 0).sync())
        .await;
    let again = wire.until_ready().await;
    assert!(errors(&again).is_empty(), "{again:?}");
    assert_eq!(data_rows(&again), 1);
}

/// Today the analyzer refuses a second COPY in one Query; should it ever accept one,
/// that COPY's rows must be checked by its own check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_copy_of_a_query_checks_its_own_rows() {
    let (cluster, proxy) = loader().await;
    let mut wire = Wire::login(&proxy, "loader", LOADER_PASSWORD).await;
    wire.send(Batch::new().query(&format!("{COPY}; {COPY}")))
        .await;
    let start = wire.until_any(b"GZ").await;
    if start.last().is_some_and(|m| m.tag == b'Z') {
        assert_eq!(errors(&start).len(), 1, "refused as a whole: {start:?}");
        return;
    }
    wire.send(Batch::new().copy_data("301\t01\tmine\n").copy_done())
        .await;
    // The first COPY's end, then the second COPY starts: its rows are checked too.
    let between = wire.until(b'G').await;
    assert!(errors(&between).is_empty(), "{between:?}");
    wire.send(
        Batch::new()
            .copy_data("302\t79\tother province\n")
            .copy_done(),
    )
    .await;
    assert_refused_rows(&wire.until_ready().await);
    assert_eq!(
        people(&cluster, "302"),
        "0",
        "the second COPY's row was inserted"
    );
}
