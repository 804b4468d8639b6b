//! The rewritten SQL, run for real on PostgreSQL: masks, row filters, the fence against
//! error oracles, the row cap, and index scans for pinned lookups.

mod common;

use std::sync::OnceLock;

use common::enforce;
use maskgate_testkit::PgCluster;
use tokio_postgres::{Client, NoTls};

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
    assert!(!plan.contains("Seq Scan"), "{plan}");
    let rows = client.query(&sql, &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
}
