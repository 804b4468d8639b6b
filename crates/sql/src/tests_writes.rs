//! Writes: the statement kinds they need, the row filter and its barrier, the
//! columns they may read and write, rows kept in the account's scope.

use super::*;

#[test]
fn writes_need_the_statement_kind() {
    let denial = denied("clerk_01", "UPDATE employer SET name = 'x' WHERE id = 1");
    assert_eq!(denial.sqlstate, "42501");
    assert_eq!(denial.message, "this account may not run update statements");
    let denial = denied("writer_01", "DELETE FROM employer WHERE id = 1");
    assert_eq!(denial.message, "this account may not run delete statements");
    let statement = &enforce("writer_01", "UPDATE employer SET name = 'x' WHERE id = 1")
        .unwrap()
        .statements[0];
    assert_eq!(statement.kind, crate::StatementClass::Write);
    assert_eq!(statement.row_cap, None);
    assert_eq!(
        statement.sql,
        "UPDATE \"public\".\"employer\" SET name = 'x' WHERE (\"employer\".\"id\" = 1)"
    );
}

#[test]
fn update_gets_the_filter_and_a_barrier_around_the_user_conditions() {
    assert_eq!(
        ok(
            "editor_79",
            "UPDATE participant SET full_name = 'x' WHERE id = 2 AND 1 / (id - 3) = 0"
        ),
        "UPDATE \"public\".\"participant\" SET full_name = 'x' \
         WHERE (\"participant\".\"province_code\" = '79') AND (\"participant\".\"id\" = 2) \
         AND (CASE WHEN (\"participant\".\"province_code\" = '79') THEN ((1 / (id - 3)) = 0) ELSE FALSE END)"
    );
    // Without a WHERE the filter alone decides.
    assert_eq!(
        ok("editor_79", "DELETE FROM participant"),
        "DELETE FROM \"public\".\"participant\" WHERE (\"participant\".\"province_code\" = '79')"
    );
}

#[test]
fn update_from_rewrites_the_sources_and_keeps_the_join_usable() {
    assert_eq!(
        ok(
            "editor_79",
            "UPDATE participant AS p SET full_name = e.name FROM employer e WHERE e.id = p.id AND e.name LIKE 'A%'"
        ),
        "UPDATE \"public\".\"participant\" AS p SET full_name = e.name FROM \
         (SELECT \"employer\".\"id\", \"employer\".\"name\", \"employer\".\"phone\", \"employer\".\"province_code\" \
         FROM \"public\".\"employer\" OFFSET 0) AS e \
         WHERE (\"p\".\"province_code\" = '79') AND (e.id = p.id) \
         AND (CASE WHEN (\"p\".\"province_code\" = '79') THEN (e.name LIKE 'A%') ELSE FALSE END)"
    );
}

#[test]
fn lookup_only_targets_must_be_pinned_on_the_raw_key() {
    assert_eq!(
        ok(
            "registrar_01",
            "DELETE FROM participant WHERE citizen_id = $1 RETURNING id, birth_date"
        ),
        "DELETE FROM \"public\".\"participant\" WHERE (\"participant\".\"province_code\" = '01') \
         AND (\"participant\".\"citizen_id\" = $1) \
         RETURNING id, (m(\"participant\".\"birth_date\")) AS \"birth_date\""
    );
    for sql in [
        "UPDATE participant SET full_name = 'x' WHERE id = 1",
        "UPDATE participant SET full_name = 'x' WHERE citizen_id IN ('1', '2')",
        "DELETE FROM participant WHERE citizen_id = '1' OR true",
        "DELETE FROM participant",
    ] {
        let denial = denied("registrar_01", sql);
        assert!(denial.message.contains("lookup-only"), "{sql}: {denial}");
    }
    // The pin is the only place a masked key may be named.
    let denial = denied(
        "registrar_01",
        "UPDATE participant SET full_name = 'x' WHERE citizen_id = $1 AND citizen_id LIKE '0%'",
    );
    assert!(denial.message.contains("\"citizen_id\""), "{denial}");
}

#[test]
fn returning_shows_masks_under_their_own_names_and_expands_stars() {
    let out = ok(
        "editor_79",
        "UPDATE participant p SET full_name = 'x' WHERE id = 2 RETURNING citizen_id, lower(p.citizen_id) AS l, p.*",
    );
    assert!(
        out.ends_with(
            "RETURNING (m(\"p\".\"citizen_id\")) AS \"citizen_id\", lower((m(\"p\".\"citizen_id\"))) AS l, \
             (m(\"p\".\"birth_date\")) AS \"birth_date\", (m(\"p\".\"citizen_id\")) AS \"citizen_id\", \
             \"p\".\"full_name\", \"p\".\"id\", \"p\".\"province_code\""
        ),
        "{out}"
    );
    let out = ok(
        "editor_79",
        "DELETE FROM participant p USING employer e WHERE p.id = e.id RETURNING *",
    );
    assert!(out.ends_with("\"p\".\"province_code\", \"e\".*"), "{out}");
    let statement = &enforce(
        "editor_79",
        "DELETE FROM participant WHERE id = 2 RETURNING id",
    )
    .unwrap()
    .statements[0];
    assert_eq!(statement.row_cap, Some(100));
}

#[test]
fn writes_read_only_columns_the_account_sees_as_stored() {
    for (sql, column) in [
        ("UPDATE participant SET full_name = citizen_id WHERE id = 2", "citizen_id"),
        ("UPDATE participant SET citizen_id = 'x' WHERE id = 2", "citizen_id"),
        ("UPDATE participant SET full_name = 'x' WHERE phone = '1'", "phone"),
        ("UPDATE participant p SET full_name = 'x' WHERE p.birth_date > '2000-01-01'", "birth_date"),
        ("DELETE FROM participant WHERE id IN (SELECT id FROM employer WHERE citizen_id = '1')", "citizen_id"),
        ("DELETE FROM participant RETURNING (SELECT citizen_id)", "citizen_id"),
        ("INSERT INTO participant (id, birth_date, province_code) VALUES (1, '2000-01-01', '79')", "birth_date"),
        ("UPDATE participant SET full_name = 'x' WHERE note = '1'", "note"),
        ("DELETE FROM participant p RETURNING p.note", "note"),
    ] {
        let denial = denied("editor_79", sql);
        assert_eq!(denial.sqlstate, "42501", "{sql}");
        assert!(denial.message.contains(&format!("\"{column}\"")), "{sql}: {denial}");
    }
    for sql in [
        "UPDATE participant p SET full_name = 'x' RETURNING to_json(p)",
        "UPDATE participant p SET full_name = 'x' RETURNING to_json(p.*)",
        "UPDATE participant p SET full_name = 'x' WHERE EXISTS (SELECT p.* FROM employer)",
        "DELETE FROM participant WHERE participant IS NOT NULL",
    ] {
        let denial = denied("editor_79", sql);
        assert!(denial.message.contains("whole-row"), "{sql}: {denial}");
    }
}

#[test]
fn rows_may_not_leave_the_accounts_scope() {
    ok(
        "editor_79",
        "UPDATE participant SET province_code = '79' WHERE id = 2",
    );
    ok(
        "editor_79",
        "INSERT INTO participant (id, full_name, province_code) VALUES (5, 'a', '79'), ($1, $2, ('79'))",
    );
    ok(
        "editor_79",
        "INSERT INTO participant (id, full_name, province_code) SELECT id + 100, name, '79' FROM employer",
    );
    for sql in [
        "UPDATE participant SET province_code = '01' WHERE id = 2",
        "UPDATE participant SET province_code = $1 WHERE id = 2",
        "UPDATE participant SET (province_code, full_name) = ('79', 'x') WHERE id = 2",
        "INSERT INTO participant (id, province_code) VALUES (5, '01')",
        "INSERT INTO participant (id, province_code) VALUES (5, '79'), (6, $1)",
        "INSERT INTO participant (id, province_code) VALUES (5, E'79')",
        "INSERT INTO participant (id, province_code) VALUES (5, '79'::char(2))",
        "INSERT INTO participant (id, full_name) VALUES (5, 'a')",
        "INSERT INTO participant (id, province_code) SELECT id, province_code FROM employer",
        "INSERT INTO participant (id, province_code) SELECT 1, '79' UNION SELECT 2, '01'",
        "INSERT INTO participant (id, province_code) SELECT * FROM (VALUES (1, '01')) v",
        "INSERT INTO contribution (id, participant_id, province_code) VALUES (5, 1, '79')",
        "UPDATE contribution SET participant_id = 3 WHERE id = 1",
    ] {
        let denial = denied("editor_79", sql);
        assert_eq!(denial.sqlstate, "42501", "{sql}: {denial}");
        assert!(!denial.message.contains("'01'"), "{sql}: {denial}");
    }
}

#[test]
fn write_forms_that_are_not_analyzed() {
    for (sql, code) in [
        ("INSERT INTO participant VALUES (5, 'a')", "0A000"),
        ("INSERT INTO participant DEFAULT VALUES", "0A000"),
        (
            "INSERT INTO participant (id, province_code) VALUES (5, '79') ON CONFLICT (id) DO UPDATE SET full_name = 'x'",
            "0A000",
        ),
        ("COPY participant FROM STDIN", "0A000"),
        ("COPY participant (id, full_name) FROM STDIN WITH (FORMAT csv)", "0A000"),
        ("WITH x AS (SELECT 1) UPDATE participant SET full_name = 'x'", "42501"),
        ("MERGE INTO participant p USING employer e ON p.id = e.id WHEN MATCHED THEN DELETE", "42501"),
        ("UPDATE pg_catalog.pg_type SET typname = 'x'", "42501"),
        ("INSERT INTO audit.secret (id) VALUES (1)", "42P01"),
    ] {
        let denial = denied("editor_79", sql);
        assert_eq!(denial.sqlstate, code, "{sql}: {denial}");
    }
    assert_eq!(
        denied("editor_79", "COPY participant FROM STDIN").message,
        "of COPY … FROM, restricted accounts may use only COPY table (columns) FROM STDIN in text format"
    );
    ok(
        "editor_79",
        "INSERT INTO participant (id, province_code) VALUES (5, '79') ON CONFLICT (id) DO NOTHING",
    );
}

#[test]
fn writes_that_read_need_the_read_grant() {
    ok(
        "loader_79",
        "INSERT INTO participant (id, full_name, province_code) VALUES (5, 'a', '79')",
    );
    for sql in [
        "INSERT INTO participant (id, province_code) VALUES (5, '79') RETURNING id",
        "INSERT INTO participant (id, full_name, province_code) SELECT 5, full_name, '79' FROM participant",
        "INSERT INTO participant (id, full_name, province_code) VALUES (5, (SELECT 'x'), '79')",
    ] {
        let denial = denied("loader_79", sql);
        assert!(denial.message.contains("reads data"), "{sql}: {denial}");
    }
}
