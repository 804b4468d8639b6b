//! Enforcer tests against the fixture policy in `tests/fixtures/policy.toml`, with a
//! mask renderer that prints `m(<column>)` so expected SQL stays readable.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use maskgate_mask::{MaskError, MaskSpec, PgType};
use maskgate_policy::{EffectiveRules, Policy, PolicySettings};

use crate::{Denial, Enforced, Enforcer, MaskRenderer};

pub(crate) struct TestMasks;

impl MaskRenderer for TestMasks {
    fn render(&self, _spec: &MaskSpec, column: &str, _ty: &PgType) -> Result<String, MaskError> {
        Ok(format!("m({column})"))
    }
}

pub(crate) fn policy() -> &'static Arc<Policy> {
    static POLICY: OnceLock<Arc<Policy>> = OnceLock::new();
    POLICY.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let today = time::Date::from_calendar_date(2026, time::Month::March, 2).unwrap();
        Policy::from_texts(vec![(path, text)], PolicySettings::default(), today)
            .unwrap_or_else(|rejected| panic!("{}", rejected.errors))
            .policy
            .into()
    })
}

pub(crate) fn rules(login: &str) -> EffectiveRules {
    policy().effective(login).unwrap()
}

pub(crate) fn enforce(login: &str, sql: &str) -> Result<Enforced, Denial> {
    Enforcer::new(policy().clone(), rules(login), &TestMasks).enforce(sql)
}

pub(crate) fn ok(login: &str, sql: &str) -> String {
    let enforced = enforce(login, sql).unwrap_or_else(|d| panic!("{sql}: {d}"));
    let texts: Vec<_> = enforced.statements.iter().map(|s| s.sql.as_str()).collect();
    texts.join("; ")
}

pub(crate) fn denied(login: &str, sql: &str) -> Denial {
    match enforce(login, sql) {
        Ok(enforced) => panic!("{sql} was allowed: {enforced:?}"),
        Err(denial) => denial,
    }
}

/// The clerk's masking subquery of an outermost block with nothing but safe
/// conditions: no `OFFSET 0`.
fn clerk_open(extra: &str) -> String {
    clerk_fence(extra).replace(" OFFSET 0)", ")")
}

fn clerk_fence(extra: &str) -> String {
    format!("(SELECT (m(\"participant\".\"birth_date\")) AS \"birth_date\", (m(\"participant\".\"citizen_id\")) AS \"citizen_id\", \"participant\".\"full_name\", \"participant\".\"id\", \"participant\".\"province_code\" FROM \"public\".\"participant\" WHERE (province_code = '01'){extra} OFFSET 0)")
}

#[test]
fn lookup_is_pinned_on_the_raw_key_inside_the_fence() {
    assert_eq!(
        ok(
            "clerk_01",
            "SELECT full_name FROM participant WHERE citizen_id = '001203004567'"
        ),
        format!(
            "SELECT full_name FROM {} AS \"participant\" LIMIT 51",
            clerk_open(" AND (\"participant\".\"citizen_id\" = '001203004567')")
        )
    );
}

#[test]
fn safe_predicates_on_allowed_columns_are_copied_inside() {
    assert_eq!(
        ok(
            "clerk_01",
            "SELECT p.* FROM participant p WHERE p.citizen_id = $1 AND p.id > 5"
        ),
        format!(
            "SELECT p.* FROM {} AS p WHERE (p.id > 5) LIMIT 51",
            clerk_open(
                " AND (\"participant\".\"citizen_id\" = $1) AND (\"participant\".\"id\" > 5)"
            )
        )
    );
}

#[test]
fn masked_columns_are_not_pushed_down() {
    let sql = ok(
        "analyst_79",
        "SELECT id FROM participant WHERE full_name = 'N. V. A.' AND 5 < id",
    );
    assert!(
        sql.contains("WHERE (province_code = '79') AND (5 < \"participant\".\"id\") OFFSET 0) AS \"participant\" WHERE (full_name = 'N. V. A.') AND (5 < id) LIMIT 1001"),
        "{sql}"
    );
}

#[test]
fn unprotected_tables_still_get_a_fence_and_qualified_names() {
    assert_eq!(
        ok("clerk_01", "SELECT * FROM Employer LIMIT 10"),
        "SELECT * FROM (SELECT \"employer\".\"id\", \"employer\".\"name\", \"employer\".\"phone\", \"employer\".\"province_code\" FROM \"public\".\"employer\") AS \"employer\" LIMIT 10"
    );
    assert_eq!(
        ok("clerk_01", "SELECT count(*) FROM pg_am t"),
        "SELECT count(*) FROM \"pg_catalog\".\"pg_am\" AS t LIMIT 51"
    );
    let filtered = ok("clerk_01", "SELECT count(*) FROM pg_type t");
    assert!(
        filtered.starts_with(
            "SELECT count(*) FROM (SELECT * FROM \"pg_catalog\".\"pg_type\" WHERE (\"oid\" < 16384)"
        ) && filtered.ends_with(" OFFSET 0) AS t LIMIT 51"),
        "{filtered}"
    );
}

#[test]
fn row_cap_merges_with_limits() {
    let cap = |sql: &str| {
        let out = ok("clerk_01", sql);
        out[out.rfind(") AS ").unwrap()..].to_owned()
    };
    assert!(cap("SELECT id FROM employer LIMIT 500").ends_with("LIMIT 51"));
    assert!(cap("SELECT id FROM employer LIMIT 5 OFFSET 2").ends_with("LIMIT 5 OFFSET 2"));
    assert!(
        cap("SELECT id FROM employer LIMIT $1").ends_with("LIMIT LEAST($1, CAST(51 AS BIGINT))")
    );
    assert!(cap("SELECT id FROM employer FETCH FIRST 3 ROWS ONLY").ends_with("LIMIT 3"));
    assert!(cap("SELECT id FROM employer LIMIT ALL").ends_with("LIMIT 51"));
    let statement = &enforce("clerk_01", "SELECT 1").unwrap().statements[0];
    assert_eq!(statement.row_cap, Some(50));
    assert_eq!(statement.sql, "SELECT 1 LIMIT 51");
}

#[test]
fn cte_shadowing_keeps_the_inner_table_masked() {
    let sql = ok(
        "analyst_79",
        "WITH participant AS (SELECT id, full_name FROM participant) SELECT * FROM participant",
    );
    assert!(
        sql.starts_with("WITH participant AS (SELECT id, full_name FROM (SELECT "),
        "{sql}"
    );
    assert!(
        sql.ends_with(") SELECT * FROM participant LIMIT 1001"),
        "{sql}"
    );
    assert_eq!(
        sql.matches("FROM \"public\".\"participant\"").count(),
        1,
        "{sql}"
    );
}

#[test]
fn multi_statement_strings_are_all_or_nothing() {
    let enforced = enforce("clerk_01", "BEGIN; SELECT 1; COMMIT").unwrap();
    assert_eq!(enforced.statements.len(), 3);
    assert_eq!(enforced.statements[2].sql, "COMMIT");
    let denial = denied("clerk_01", "SELECT 1; SET ROLE postgres; SELECT 2");
    assert_eq!(denial.sqlstate, "42501");
    assert!(
        denial.message.starts_with("statement 2 of 3: SET ROLE"),
        "{denial}"
    );
}

#[test]
fn denied_columns_are_named_with_their_table() {
    let denial = denied(
        "clerk_01",
        "SELECT phone FROM participant WHERE citizen_id = '1'",
    );
    assert_eq!(denial.sqlstate, "42501");
    assert_eq!(
        denial.message,
        "column \"phone\" of table \"public.participant\" is not available to this account"
    );
    // Another table's column of the same name, qualified, is fine.
    ok(
        "analyst_79",
        "SELECT e.phone FROM employer e JOIN participant p ON p.id = e.id",
    );
}

#[test]
fn messages_never_echo_literals() {
    for sql in [
        "SELECT phone FROM participant WHERE citizen_id = '001203004567'",
        "SELECT full_name FROM participant WHERE full_name = '001203004567'",
        "SELECT '001203004567' FROM pg_authid",
        "SELECT '001203004567' FROM",
        "SELECT current_setting('001203004567')",
    ] {
        let denial = denied("clerk_01", sql);
        assert!(!denial.message.contains("001203004567"), "{sql}: {denial}");
    }
}

#[test]
fn statement_kinds() {
    use crate::StatementClass::*;
    for (sql, class) in [
        ("BEGIN", Transaction),
        (
            "START TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            Transaction,
        ),
        ("SAVEPOINT a", Transaction),
        ("RELEASE SAVEPOINT a", Transaction),
        ("ROLLBACK TO SAVEPOINT a", Transaction),
        ("COMMIT", Transaction),
        ("SET application_name = 'x'", Session),
        ("SET TIME ZONE 'UTC'", Session),
        ("SET statement_timeout TO 5000", Session),
        ("SET DateStyle = ISO", Session),
        ("SHOW server_version", Session),
        ("SHOW TimeZone", Session),
        ("DISCARD ALL", Session),
        ("DEALLOCATE x", Session),
        ("CLOSE c", Cursor),
        ("FETCH 10 FROM c", Cursor),
        ("LISTEN ch", Notification),
        ("NOTIFY ch", Notification),
        ("UNLISTEN ch", Notification),
    ] {
        let enforced = enforce("clerk_01", sql).unwrap_or_else(|d| panic!("{sql}: {d}"));
        assert_eq!(enforced.statements[0].kind, class, "{sql}");
    }
    assert_eq!(
        enforce("clerk_01", "FETCH 10 FROM c").unwrap().statements[0].row_cap,
        Some(50)
    );
}

#[test]
fn notifications_use_only_the_channels_a_role_names() {
    for sql in [
        "NOTIFY other",
        "LISTEN other",
        "LISTEN \"CH\"",
        "NOTIFY other, 'x'",
    ] {
        assert_eq!(denied("clerk_01", sql).sqlstate, "42501", "{sql}");
    }
    for sql in [
        "LISTEN CH",
        "NOTIFY ch, 'x'",
        "UNLISTEN other",
        "UNLISTEN *",
    ] {
        enforce("clerk_01", sql).unwrap_or_else(|d| panic!("{sql}: {d}"));
    }
    assert_eq!(denied("analyst_79", "LISTEN ch").sqlstate, "42501");
}

#[test]
fn information_schema_lists_only_what_the_account_sees() {
    let out = ok(
        "clerk_01",
        "SELECT column_name FROM information_schema.columns c WHERE c.table_name = 'participant'",
    );
    assert!(
        out.starts_with(
            "SELECT column_name FROM (SELECT * FROM \"information_schema\".\"columns\" WHERE \
             (\"table_schema\", \"table_name\", \"column_name\") IN (VALUES \
             ('public', 'employer', 'id'), ('public', 'employer', 'name'), ('public', 'employer', 'phone'), \
             ('public', 'employer', 'province_code'), ('public', 'participant', 'birth_date'), \
             ('public', 'participant', 'citizen_id'), ('public', 'participant', 'full_name'), \
             ('public', 'participant', 'id'), ('public', 'participant', 'province_code')) OFFSET 0) AS c"
        ),
        "{out}"
    );
    let out = ok(
        "writer_01",
        "SELECT table_name FROM information_schema.tables",
    );
    assert!(
        out.contains("IN (VALUES ('public', 'employer')) OFFSET 0) AS \"tables\""),
        "{out}"
    );
    for view in [
        "key_column_usage",
        "table_constraints",
        "referential_constraints",
    ] {
        let out = ok(
            "writer_01",
            &format!("SELECT * FROM information_schema.{view}"),
        );
        assert!(out.contains("OFFSET 0) AS"), "{out}");
        assert!(!out.contains("participant"), "{out}");
    }
    assert_eq!(
        ok(
            "writer_01",
            "SELECT schema_name FROM information_schema.schemata"
        ),
        "SELECT schema_name FROM \"information_schema\".\"schemata\""
    );
}

#[test]
fn parse_errors_are_denials_without_the_text() {
    let denial = denied("clerk_01", "SEL/**/ECT 'secret'");
    assert_eq!(denial.sqlstate, "42501");
    assert!(!denial.message.contains("secret"), "{denial}");
}

#[test]
fn output_reparses_to_the_same_text() {
    for sql in [
        "SELECT full_name FROM participant WHERE citizen_id = 'a''b\\c'",
        "SELECT e.name, (SELECT count(*) FROM contribution c WHERE c.participant_id = e.id) FROM employer e ORDER BY 1",
        "SELECT E'x\\'y', $$z$$, 1.5e3, -2 FROM employer",
    ] {
        let login = if sql.contains("contribution") { "analyst_79" } else { "clerk_01" };
        let out = ok(login, sql);
        let mut again =
            sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, &out)
                .unwrap_or_else(|e| panic!("{out}: {e}"));
        // maskgate's printing is a fixed point: what it prints, read again and
        // printed again, is the same text.
        assert_eq!(crate::print::print(&mut again[0]).unwrap().sql, out);
    }
}

#[test]
fn client_encoding_stays_utf8() {
    for sql in [
        "SET client_encoding = 'SJIS'",
        "SET client_encoding TO latin1",
        "SET NAMES 'BIG5'",
    ] {
        assert_eq!(denied("clerk_01", sql).sqlstate, "42501", "{sql}");
    }
    for sql in [
        "SET client_encoding = 'UTF8'",
        "SET client_encoding TO DEFAULT",
        "SET NAMES 'utf8'",
    ] {
        ok("clerk_01", sql);
    }
}

#[test]
fn the_outermost_block_leaves_its_fence_open_only_when_nothing_else_runs_beside_the_filter() {
    // Open: one table, conditions all pinned or safe and copied inside.
    for sql in [
        "SELECT full_name, citizen_id FROM participant WHERE citizen_id = $1",
        "SELECT count(*) FROM participant WHERE citizen_id = $1 GROUP BY full_name ORDER BY 1",
    ] {
        assert!(!ok("clerk_01", sql).contains("OFFSET 0"), "{sql}");
    }
    // Fenced: the statement's own conditions, a join, HAVING, or an enclosing block.
    for sql in [
        "SELECT full_name FROM participant WHERE citizen_id = $1 AND 1 / (id - 3) = 1",
        "SELECT full_name FROM participant WHERE citizen_id = $1 AND full_name LIKE 'N%'",
        "SELECT p.full_name FROM participant p JOIN employer e ON e.id = p.id WHERE p.citizen_id = $1",
        "SELECT full_name FROM participant WHERE citizen_id = $1 GROUP BY full_name HAVING full_name > 'A'",
        "SELECT * FROM (SELECT full_name FROM participant WHERE citizen_id = $1) s WHERE 1 / 0 = 1",
        "WITH s AS (SELECT full_name FROM participant WHERE citizen_id = $1) SELECT * FROM s",
        "SELECT full_name FROM participant WHERE citizen_id = $1 UNION SELECT name FROM employer",
    ] {
        assert!(ok("clerk_01", sql).contains("OFFSET 0"), "{sql}");
    }
}

#[test]
fn copy_from_stdin_needs_the_insert_grant_and_states_what_rows_must_hold() {
    assert_eq!(
        denied("clerk_01", "COPY participant (id) FROM STDIN").sqlstate,
        "42501"
    );
    let enforced = enforce(
        "loader_79",
        "copy participant (id, full_name, province_code) from stdin",
    )
    .unwrap();
    let statement = &enforced.statements[0];
    assert_eq!(
        statement.sql,
        "COPY \"public\".\"participant\" (\"id\", \"full_name\", \"province_code\") FROM STDIN"
    );
    let copy = statement.copy_in.as_ref().unwrap();
    assert_eq!(copy.columns, 3);
    assert_eq!(copy.required, vec![(2, "79".to_owned())]);
    // The filter's column must be given; masked or denied columns may not be written.
    assert_eq!(
        denied("loader_79", "COPY participant (id, full_name) FROM STDIN").sqlstate,
        "42501"
    );
    assert_eq!(
        denied(
            "loader_79",
            "COPY participant (id, full_name, province_code) FROM STDIN WITH (FORMAT csv)"
        )
        .sqlstate,
        "0A000"
    );
}

#[path = "tests_pins.rs"]
mod pins;

#[path = "tests_writes.rs"]
mod writes;

#[path = "tests_cursors.rs"]
mod cursors;
