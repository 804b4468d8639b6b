//! The rewritten SQL, run for real on PostgreSQL: masks, row filters, the fence against
//! error oracles, the row cap, index scans for pinned lookups and writes, filtered
//! writes with RETURNING, prepared statements, cursors and `information_schema`.
//! Writes run in transactions that are rolled back, so the tests can share the data.

mod common;

use std::sync::OnceLock;

use common::enforce;
use maskgate_testkit::PgCluster;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// A database of its own on the shared cluster, with the fixture's tables: the names
/// must be the classification's, so a schema per test run would not do.
fn database() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let pg = PgCluster::shared();
        let name = format!("maskgate_sql_{}", std::process::id());
        pg.psql(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
        pg.psql(&format!("CREATE DATABASE {name}")).unwrap();
        pg.psql_in(
            &name,
            "CREATE TABLE participant (id bigint PRIMARY KEY, full_name text, citizen_id char(12),
                 phone text, province_code char(2), birth_date date);
             CREATE INDEX participant_citizen_id ON participant (citizen_id);
             CREATE TABLE employer (id bigint PRIMARY KEY, name text, phone text, province_code char(2));
             CREATE TABLE contribution (id bigint PRIMARY KEY, participant_id bigint, amount numeric(12,2),
                 province_code char(2));
             INSERT INTO participant VALUES
                 (1, 'Nguyễn Văn An', '001203004567', '0912345678', '01', '1990-05-17'),
                 (2, 'Trần Thị Bình', '079198000123', '0987654321', '79', '1985-11-02'),
                 (3, 'Lê Minh Châu', '079199000456', '0901112223', '79', '2001-01-30');
             INSERT INTO participant
                 SELECT g, 'Person ' || g, lpad(g::text, 12, '0'), NULL,
                        CASE WHEN g % 2 = 0 THEN '01' ELSE '79' END, DATE '1970-01-01' + g
                 FROM generate_series(10, 20000) AS g;
             INSERT INTO employer VALUES (1, 'Công ty A', '0241234567', '01');
             INSERT INTO contribution VALUES (1, 2, 1234567.89, '79'), (2, 1, 99.00, '01');
             ANALYZE;",
        )
        .unwrap();
        name
    })
}

async fn connect() -> Client {
    let db = database();
    let pg = PgCluster::shared();
    let (client, connection) = tokio_postgres::Config::new()
        .host(pg.host())
        .port(pg.port())
        .user(pg.user())
        .password(pg.password())
        .dbname(db)
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

fn rewrite(login: &str, sql: &str) -> String {
    let enforced = enforce(login, sql).unwrap_or_else(|d| panic!("{sql}: {d}"));
    assert_eq!(enforced.statements.len(), 1);
    enforced.statements[0].sql.clone()
}

#[tokio::test]
async fn a_pinned_lookup_finds_the_person_and_shows_the_key_masked() {
    let client = connect().await;
    let sql = rewrite(
        "clerk_01",
        "SELECT citizen_id, full_name, birth_date::text FROM participant WHERE citizen_id = $1",
    );
    let rows = client.query(&sql, &[&"001203004567"]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "********4567");
    assert_eq!(rows[0].get::<_, String>(1), "Nguyễn Văn An");
    assert_eq!(rows[0].get::<_, String>(2), "1990-01-01");

    // The same lookup for someone of another province finds nothing: the row filter.
    let rows = client.query(&sql, &[&"079198000123"]).await.unwrap();
    assert!(rows.is_empty());

    // A masked value typed back does not match: the pin is on the raw key.
    let rows = client.query(&sql, &[&"********4567"]).await.unwrap();
    assert!(rows.is_empty());
}

#[tokio::test]
async fn analysts_see_their_province_masked_and_never_the_denied_column() {
    let client = connect().await;
    let sql = rewrite(
        "analyst_79",
        "SELECT * FROM participant WHERE id < 10 ORDER BY id",
    );
    let rows = client.query(&sql, &[]).await.unwrap();
    assert_eq!(rows.len(), 2, "only province 79");
    let columns: Vec<_> = rows[0]
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    assert!(!columns.contains(&"phone".to_owned()), "{columns:?}");
    let name: String = rows[0].get("full_name");
    assert_eq!(name, "T. T. B.");
    let citizen: Option<String> = rows[0].get("citizen_id");
    assert_eq!(citizen, None);

    let sql = rewrite(
        "analyst_79",
        "SELECT row_to_json(p)::text FROM participant p WHERE id = 2",
    );
    let json: String = client.query_one(&sql, &[]).await.unwrap().get(0);
    assert!(
        !json.contains("0987654321") && !json.contains("079198000123") && !json.contains("Bình"),
        "{json}"
    );
}

#[tokio::test]
async fn user_expressions_never_see_rows_outside_the_filter() {
    let client = connect().await;
    // Without the fence PostgreSQL could evaluate the division on province 01 rows
    // and answer "division by zero", revealing that such rows exist.
    let sql = rewrite(
        "analyst_79",
        "SELECT count(*) FROM participant WHERE 1 / (CASE WHEN province_code = '01' THEN 0 ELSE 1 END) = 1",
    );
    let count: i64 = client.query_one(&sql, &[]).await.unwrap().get(0);
    assert_eq!(count, 9_997, "rows 2, 3 and the odd ids of 11..=19999");
}

#[tokio::test]
async fn an_open_outermost_fence_still_evaluates_the_statement_only_on_rows_in_scope() {
    let client = connect().await;
    // The outermost block's only table goes without OFFSET 0 when its WHERE holds
    // nothing of the statement's own; its select list, aggregates and ordering must
    // still never run on province 01 rows.
    let fails_outside = "1 / (CASE WHEN province_code = '01' THEN 0 ELSE 1 END)";
    for sql in [
        format!("SELECT sum({fails_outside}) FROM participant"),
        format!("SELECT count(*) FROM participant GROUP BY {fails_outside}"),
        format!("SELECT id FROM participant ORDER BY {fails_outside}, id LIMIT 5"),
        format!("SELECT {fails_outside} FROM participant WHERE id > 5"),
    ] {
        let rewritten = rewrite("analyst_79", &sql);
        assert!(!rewritten.contains("OFFSET 0"), "{rewritten}");
        client
            .query(&rewritten, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[tokio::test]
async fn the_row_cap_asks_for_one_row_more() {
    let client = connect().await;
    let sql = rewrite("analyst_79", "SELECT id FROM participant");
    assert_eq!(client.query(&sql, &[]).await.unwrap().len(), 1001);
    let sql = rewrite("analyst_79", "SELECT id FROM participant LIMIT 3");
    assert_eq!(client.query(&sql, &[]).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_pinned_lookup_is_an_index_scan() {
    let client = connect().await;
    let sql = rewrite(
        "clerk_01",
        "SELECT full_name FROM participant WHERE citizen_id = '000000000042'",
    );
    let plan = citizen_id_index_plan(&client, &sql).await;
    assert!(!plan.contains("Seq Scan"), "{plan}");
    let rows = client.query(&sql, &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
}

/// Rows of a simple-protocol answer as text; the command's row count at the end.
async fn simple(client: &Client, sql: &str) -> (Vec<Vec<Option<String>>>, u64) {
    let mut rows = Vec::new();
    let mut count = 0;
    for message in client.simple_query(sql).await.unwrap() {
        match message {
            SimpleQueryMessage::Row(row) => rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            SimpleQueryMessage::CommandComplete(n) => count = n,
            _ => {}
        }
    }
    (rows, count)
}

fn text(value: &str) -> Option<String> {
    Some(value.to_owned())
}

#[tokio::test]
async fn a_filtered_update_touches_only_rows_in_scope_and_returns_masked_values() {
    let mut client = connect().await;
    let tx = client.transaction().await.unwrap();
    let sql = rewrite(
        "editor_79",
        "UPDATE participant SET full_name = 'Changed' WHERE id IN (1, 2, 3) \
         RETURNING id, citizen_id, birth_date::text AS born, full_name",
    );
    let rows = tx.query(&sql, &[]).await.unwrap();
    let mut seen: Vec<(i64, Option<String>, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (
                2,
                text("********0123"),
                "1985-01-01".into(),
                "Changed".into()
            ),
            (
                3,
                text("********0456"),
                "2001-01-01".into(),
                "Changed".into()
            ),
        ]
    );
    let changed: Vec<i64> = tx
        .query(
            "SELECT id FROM participant WHERE full_name = 'Changed' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(changed, vec![2, 3], "row 1 is in province 01");

    // RETURNING * shows what SELECT * would: masked, without the denied phone.
    let sql = rewrite(
        "editor_79",
        "DELETE FROM participant WHERE id = 2 RETURNING *",
    );
    let rows = tx.query(&sql, &[]).await.unwrap();
    let columns: Vec<&str> = rows[0].columns().iter().map(|c| c.name()).collect();
    assert_eq!(
        columns,
        [
            "birth_date",
            "citizen_id",
            "full_name",
            "id",
            "province_code"
        ]
    );
    assert_eq!(
        rows[0].get::<_, Option<String>>("citizen_id"),
        text("********0123")
    );
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn write_conditions_never_see_rows_outside_the_filter() {
    let mut client = connect().await;
    let tx = client.transaction().await.unwrap();
    // On a province 01 row the division fails: the CASE guard keeps it from running there.
    let sql = rewrite(
        "editor_79",
        "UPDATE participant SET full_name = full_name \
         WHERE id < 10 AND 1 / (CASE WHEN province_code = '01' THEN 0 ELSE 1 END) = 1",
    );
    assert_eq!(tx.execute(&sql, &[]).await.unwrap(), 2);
    let sql = rewrite(
        "editor_79",
        "DELETE FROM participant WHERE 1 / (id - 1) > 2",
    );
    tx.execute(&sql, &[]).await.unwrap();
    let left: i64 = tx
        .query_one("SELECT count(*) FROM participant WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1);
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn inserts_keep_rows_in_scope_and_update_from_reads_masked_sources() {
    let mut client = connect().await;
    let tx = client.transaction().await.unwrap();
    let sql = rewrite(
        "editor_79",
        "INSERT INTO participant (id, full_name, province_code) VALUES ($1, $2, '79') \
         RETURNING id, citizen_id, province_code",
    );
    let row = tx
        .query_one(&sql, &[&900_001i64, &"Inserted"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 900_001);
    assert_eq!(row.get::<_, Option<String>>(1), None);
    assert_eq!(row.get::<_, String>(2), "79");

    // The source of UPDATE … FROM is a masking subquery: names arrive as initials.
    let sql = rewrite(
        "editor_79",
        "UPDATE participant p SET full_name = c.amount::text FROM contribution c \
         WHERE c.participant_id = p.id RETURNING p.id, p.full_name",
    );
    let rows = tx.query(&sql, &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), 2);
    assert_eq!(
        rows[0].get::<_, String>(1),
        "1200000.00",
        "the rounded amount"
    );

    let sql = rewrite(
        "editor_79",
        "INSERT INTO participant (id, full_name, province_code) \
         SELECT id + 800000, full_name, '79' FROM participant WHERE id < 4 RETURNING full_name",
    );
    let names: Vec<String> = tx
        .query(&sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names.len(), 2, "only the source rows in scope: {names:?}");
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn a_pinned_write_is_an_index_scan() {
    let client = connect().await;
    let sql = rewrite(
        "registrar_01",
        "UPDATE participant SET full_name = $2 WHERE citizen_id = $1",
    );
    let sql = sql.replace("$1", "'000000000042'").replace("$2", "'x'");
    citizen_id_index_plan(&client, &sql).await;
}

#[tokio::test]
async fn declared_cursors_fetch_masked_capped_rows() {
    let client = connect().await;
    let tx = &client;
    simple(tx, "BEGIN").await;
    let declare = rewrite(
        "analyst_79",
        "DECLARE c NO SCROLL CURSOR FOR SELECT id, full_name, citizen_id FROM participant \
         WHERE id < 10 ORDER BY id",
    );
    tx.batch_execute(&declare).await.unwrap();
    let (rows, _) = simple(tx, &rewrite("analyst_79", "FETCH FORWARD 1 FROM c")).await;
    assert_eq!(rows, vec![vec![text("2"), text("T. T. B."), None]]);
    let (_, moved) = simple(tx, &rewrite("analyst_79", "MOVE FORWARD 5 IN c")).await;
    assert_eq!(moved, 1, "one row left to move over");
    simple(tx, &rewrite("analyst_79", "CLOSE c")).await;

    let declare = rewrite(
        "analyst_79",
        "DECLARE big CURSOR WITH HOLD FOR SELECT id FROM participant",
    );
    tx.batch_execute(&declare).await.unwrap();
    let (rows, _) = simple(tx, &rewrite("analyst_79", "FETCH ALL FROM big")).await;
    assert_eq!(rows.len(), 1001, "cap + 1: the proxy reports the excess");
    simple(tx, "ROLLBACK").await;
}

#[tokio::test]
async fn prepared_statements_run_their_rewrite() {
    let client = connect().await;
    let (_, _) = simple(
        &client,
        &rewrite(
            "clerk_01",
            "PREPARE lookup (text) AS SELECT full_name, citizen_id FROM participant \
             WHERE citizen_id = $1",
        ),
    )
    .await;
    let (rows, _) = simple(
        &client,
        &rewrite("clerk_01", "EXECUTE lookup('001203004567')"),
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![text("Nguyễn Văn An"), text("********4567")]]
    );
    let (rows, _) = simple(
        &client,
        &rewrite("clerk_01", "EXECUTE lookup('079198000123')"),
    )
    .await;
    assert!(rows.is_empty(), "another province");
    simple(&client, &rewrite("clerk_01", "DEALLOCATE lookup")).await;

    simple(&client, "BEGIN").await;
    simple(
        &client,
        &rewrite(
            "editor_79",
            "PREPARE rename (bigint) AS UPDATE participant SET full_name = 'P' WHERE id = $1",
        ),
    )
    .await;
    let (_, outside) = simple(&client, &rewrite("editor_79", "EXECUTE rename(1)")).await;
    let (_, inside) = simple(&client, &rewrite("editor_79", "EXECUTE rename(2)")).await;
    assert_eq!((outside, inside), (0, 1));
    simple(&client, "ROLLBACK").await;
}

#[tokio::test]
async fn information_schema_shows_only_the_accounts_tables_and_columns() {
    let client = connect().await;
    let list = |rows: Vec<Vec<Option<String>>>| -> Vec<String> {
        rows.into_iter()
            .map(|r| r.into_iter().flatten().collect::<Vec<_>>().join("."))
            .collect()
    };
    let (rows, _) = simple(
        &client,
        &rewrite(
            "analyst_79",
            "SELECT table_name FROM information_schema.tables ORDER BY 1",
        ),
    )
    .await;
    assert_eq!(list(rows), ["contribution", "employer", "participant"]);
    let (rows, _) = simple(
        &client,
        &rewrite(
            "writer_01",
            "SELECT table_schema, table_name FROM information_schema.tables",
        ),
    )
    .await;
    assert_eq!(list(rows), ["public.employer"]);
    let (rows, _) = simple(
        &client,
        &rewrite(
            "analyst_79",
            "SELECT column_name FROM information_schema.columns \
             WHERE table_name = 'participant' ORDER BY 1",
        ),
    )
    .await;
    assert_eq!(
        list(rows),
        [
            "birth_date",
            "citizen_id",
            "full_name",
            "id",
            "province_code"
        ]
    );
    let (rows, _) = simple(
        &client,
        &rewrite(
            "writer_01",
            "SELECT k.table_name, k.column_name FROM information_schema.key_column_usage k \
             JOIN information_schema.table_constraints t USING (constraint_name) ORDER BY 1",
        ),
    )
    .await;
    assert_eq!(list(rows), ["employer.id"]);
    let (rows, _) = simple(
        &client,
        &rewrite(
            "writer_01",
            "SELECT count(*) FROM information_schema.referential_constraints",
        ),
    )
    .await;
    assert_eq!(list(rows), ["0"]);
}

/// The EXPLAIN output of `sql`, asserted to use the citizen_id index.
async fn citizen_id_index_plan(client: &Client, sql: &str) -> String {
    let plan: Vec<String> = client
        .query(&format!("EXPLAIN {sql}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Scan using participant_citizen_id")
            || plan.contains("Bitmap Index Scan on participant_citizen_id"),
        "{plan}"
    );
    plan
}
