//! Names that PostgreSQL binds to the stored target of a write, because the inner item
//! that has them is not visible where they are written (a non-LATERAL sibling, the
//! items after a JOIN, a CTE that shadows a table): run as written on PostgreSQL they
//! read the raw value, so maskgate must refuse them. And names that do bind to an inner
//! masking subquery (LATERAL, correlated, a CTE's own column) still work, masked.

mod common;

use std::sync::OnceLock;

use common::enforce;
use maskgate_testkit::PgCluster;
use tokio_postgres::{Client, NoTls};

fn database() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let pg = PgCluster::shared();
        let name = format!("maskgate_scope_pg_{}", std::process::id());
        pg.psql(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
        pg.psql(&format!("CREATE DATABASE {name}")).unwrap();
        pg.psql_in(
            &name,
            "CREATE TABLE participant (id bigint PRIMARY KEY, full_name text, citizen_id char(12),
                 phone text, province_code char(2), birth_date date);
             CREATE TABLE employer (id bigint PRIMARY KEY, name text, phone text, province_code char(2));
             CREATE TABLE contribution (id bigint PRIMARY KEY, participant_id bigint, amount numeric(12,2),
                 province_code char(2));
             INSERT INTO participant VALUES
                 (1, 'Nguyễn Văn An', '001203004567', '0912345678', '01', '1990-05-17'),
                 (2, 'Trần Thị Bình', '079198000123', '0987654321', '79', '1985-11-02'),
                 (3, 'Lê Minh Châu', '079199000456', '0901112223', '79', '2001-01-30');
             INSERT INTO employer VALUES (1, 'Công ty A', '0241234567', '79');
             INSERT INTO contribution VALUES (1, 2, 1234567.89, '79'), (2, 1, 99.00, '01');",
        )
        .unwrap();
        name
    })
}

async fn connect() -> Client {
    let pg = PgCluster::shared();
    let (client, connection) = tokio_postgres::Config::new()
        .host(pg.host())
        .port(pg.port())
        .user(pg.user())
        .password(pg.password())
        .dbname(database())
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// UPDATEs whose SET copies a stored value PostgreSQL finds on the target row; the
/// raw value (or part of it) that lands in `full_name`; the column maskgate must name.
const COPIES: &[(&str, &str, &str)] = &[
    (
        "UPDATE participant SET full_name = (SELECT citizen_id FROM (SELECT 1) s) WHERE id = 2",
        "079198000123",
        "citizen_id",
    ),
    (
        "UPDATE participant SET full_name = (SELECT min(s.c) FROM participant q, (SELECT citizen_id AS c) s) WHERE id = 2",
        "079198000123",
        "citizen_id",
    ),
    (
        "UPDATE participant SET full_name = (SELECT min(s.c) FROM participant participant, (SELECT participant.citizen_id AS c) s) WHERE id = 2",
        "079198000123",
        "citizen_id",
    ),
    (
        "UPDATE participant SET full_name = (SELECT min(s.j) FROM employer participant, (SELECT to_json(participant.*)::text AS j) s) WHERE id = 2",
        "0987654321",
        "participant",
    ),
    (
        "UPDATE participant SET full_name = (WITH participant AS (SELECT 1 AS n) SELECT citizen_id FROM participant) WHERE id = 2",
        "079198000123",
        "citizen_id",
    ),
    (
        "UPDATE participant SET full_name = (SELECT min(x.c) FROM generate_series(1, 1) g, LATERAL (SELECT citizen_id AS c) x) WHERE id = 2",
        "079198000123",
        "citizen_id",
    ),
];

/// Writes whose condition tests a stored value of the target row (an oracle: one row
/// changes exactly when the guess is right), with the column maskgate must name.
const ORACLES: &[(&str, &str)] = &[
    (
        "UPDATE participant SET full_name = 'x' WHERE id = 2 AND EXISTS (SELECT 1 FROM employer e JOIN contribution c ON citizen_id LIKE '0791%', participant q)",
        "citizen_id",
    ),
    (
        "UPDATE participant SET full_name = 'x' WHERE id = 2 AND EXISTS (SELECT 1 FROM employer e JOIN contribution c ON participant.citizen_id LIKE '0791%', participant)",
        "citizen_id",
    ),
    (
        "UPDATE participant SET full_name = 'x' WHERE id = 2 AND EXISTS (SELECT 1 FROM employer e WHERE EXISTS (SELECT 1 FROM contribution c WHERE citizen_id LIKE '0791%'))",
        "citizen_id",
    ),
    (
        "DELETE FROM participant WHERE id = 2 AND EXISTS (SELECT 1 FROM (SELECT 1 FROM employer e WHERE birth_date < '1986-01-01') s, participant q)",
        "birth_date",
    ),
];

fn assert_refused(sql: &str, column: &str) {
    match enforce("editor_79", sql) {
        Ok(enforced) => panic!("allowed: {sql}\n  -> {:?}", enforced.statements[0].sql),
        Err(denial) => {
            assert_eq!(denial.sqlstate, "42501", "{sql}: {denial}");
            assert!(
                denial.message.contains(&format!("\"{column}\"")),
                "{sql}: the denial should name {column}: {denial}"
            );
        }
    }
}

#[tokio::test]
async fn names_postgresql_binds_to_the_stored_target_are_refused() {
    let mut client = connect().await;
    for (sql, raw, column) in COPIES {
        let tx = client.transaction().await.unwrap();
        let row = tx
            .query_one(&format!("{sql} RETURNING full_name"), &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let copied: String = row.get(0);
        assert!(copied.contains(raw), "{sql}: PostgreSQL copied {copied}");
        tx.rollback().await.unwrap();
        assert_refused(sql, column);
    }
    for (sql, column) in ORACLES {
        let tx = client.transaction().await.unwrap();
        let changed = tx
            .execute(*sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(
            changed, 1,
            "{sql}: the guess about the stored value is right"
        );
        tx.rollback().await.unwrap();
        assert_refused(sql, column);
    }
}

#[tokio::test]
async fn names_that_bind_to_an_inner_masking_subquery_read_masked_values() {
    let mut client = connect().await;
    for sql in [
        "UPDATE participant SET full_name = (SELECT min(x.c) FROM participant q, LATERAL (SELECT citizen_id AS c) x) WHERE id = 2 RETURNING full_name",
        "UPDATE participant SET full_name = (WITH q AS (SELECT citizen_id FROM participant) SELECT min(citizen_id) FROM q) WHERE id = 2 RETURNING full_name",
        "UPDATE participant SET full_name = (SELECT min(q.citizen_id) FROM participant q WHERE EXISTS (SELECT 1 FROM employer e WHERE e.id > 0 AND citizen_id LIKE '%0123')) WHERE id = 2 RETURNING full_name",
    ] {
        let rewritten = enforce("editor_79", sql)
            .unwrap_or_else(|d| panic!("{sql}: {d}"))
            .statements[0]
            .sql
            .clone();
        let tx = client.transaction().await.unwrap();
        let row = tx
            .query_one(&rewritten, &[])
            .await
            .unwrap_or_else(|e| panic!("{rewritten}: {e}"));
        let copied: String = row.get(0);
        assert!(
            copied.starts_with("********") && !copied.contains("0791"),
            "{sql}: {copied}"
        );
        tx.rollback().await.unwrap();
    }
}
