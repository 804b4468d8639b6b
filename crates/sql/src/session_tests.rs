//! What drivers, pools and tools send: resets, session settings, the catalog, EXPLAIN,
//! the search_path a session follows, column order.

use std::collections::BTreeMap;

use maskgate_policy::QualifiedName;

use crate::tests::{denied, ok, policy, rules, TestMasks};
use crate::{Enforcer, PathChange, SearchPath};

#[test]
fn pool_reset_statements_pass() {
    assert_eq!(
        ok(
            "clerk_01",
            "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;"
        ),
        "SELECT pg_advisory_unlock_all() LIMIT 51; CLOSE ALL; UNLISTEN *; RESET ALL"
    );
    assert_eq!(ok("clerk_01", "DISCARD ALL"), "DISCARD ALL");
    assert_eq!(
        ok("clerk_01", "reset statement_timeout"),
        "SET statement_timeout = DEFAULT"
    );
    for refused in [
        "RESET ROLE",
        "RESET SESSION AUTHORIZATION",
        "RESET work_mem",
    ] {
        assert_eq!(denied("clerk_01", refused).sqlstate, "42501", "{refused}");
    }
}

#[test]
fn settings_are_read_only_by_name_of_a_readable_one() {
    ok("clerk_01", "SELECT current_setting('application_name')");
    ok(
        "clerk_01",
        "SELECT current_setting('server_version_num', true)",
    );
    for refused in [
        "SELECT current_setting('maskgate.pk_6b_i')",
        "SELECT current_setting('data_directory')",
        "SELECT current_setting('application_name', (SELECT true))",
    ] {
        assert_eq!(denied("clerk_01", refused).sqlstate, "42501", "{refused}");
    }
    let bound = ok("clerk_01", "SELECT current_setting($1)");
    assert!(
        bound.starts_with(
            "SELECT current_setting(CASE WHEN pg_catalog.lower(($1)) IN ('application_name'"
        ) && bound.contains("THEN ($1) END)")
            && !bound.contains("'maskgate"),
        "{bound}"
    );
}

#[test]
fn notifications_through_pg_notify_follow_the_channels() {
    ok("clerk_01", "SELECT pg_notify('ch', 'done')");
    assert_eq!(
        denied("clerk_01", "SELECT pg_notify('other', 'x')").sqlstate,
        "42501"
    );
    assert_eq!(
        denied("clerk_01", "SELECT pg_notify(current_user, 'x')").sqlstate,
        "42501"
    );
}

#[test]
fn catalog_operators_and_three_part_names() {
    let sql = ok(
        "clerk_01",
        "SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class \
         WHERE relname OPERATOR(pg_catalog.~) '^(participant)$'",
    );
    assert!(
        sql.starts_with("SELECT pg_class.relname FROM (SELECT \"oid\""),
        "{sql}"
    );
    assert!(sql.contains("OPERATOR(pg_catalog.~)"), "{sql}");
    assert_eq!(
        denied("clerk_01", "SELECT 1 WHERE 'a' OPERATOR(public.~) 'b'").sqlstate,
        "42501"
    );
    let sql = ok(
        "clerk_01",
        "SELECT public.employer.name FROM public.employer WHERE public.employer.id = 1",
    );
    assert!(
        sql.starts_with("SELECT employer.name FROM (SELECT")
            && sql.contains("WHERE employer.id = 1"),
        "{sql}"
    );
}

#[test]
fn catalog_functions_are_guarded_by_the_account_catalog() {
    let sql = ok("clerk_01", "SELECT pg_get_indexdef(12345)");
    assert!(
        sql.starts_with("SELECT CASE WHEN (12345) IN (SELECT \"i\".\"indexrelid\"")
            && sql.ends_with("THEN pg_get_indexdef(12345) END LIMIT 51"),
        "{sql}"
    );
    let sql = ok("clerk_01", "SELECT col_description(1, 2)");
    assert!(
        sql.starts_with("SELECT CASE WHEN (1, 2) IN (SELECT \"attrelid\", \"attnum\""),
        "{sql}"
    );
    // Denied columns are not in the catalog's column set.
    assert!(!sql.contains("'participant', 'phone'"), "{sql}");
    for refused in [
        "SELECT pg_table_size(1)",
        "SELECT pg_get_viewdef(1)",
        "SELECT * FROM pg_stats",
        "SELECT * FROM pg_prepared_statements",
    ] {
        assert_eq!(denied("clerk_01", refused).sqlstate, "42501", "{refused}");
    }
}

#[test]
fn relations_outside_the_policy_answer_as_missing_ones() {
    for sql in [
        "SELECT * FROM audit.secret",
        "SELECT * FROM contribution",
        "SELECT * FROM no_such_table",
    ] {
        let denial = denied("clerk_01", sql);
        assert_eq!(denial.sqlstate, "42P01", "{sql}");
        assert!(denial.message.ends_with("does not exist"), "{denial}");
    }
}

#[test]
fn explain_forces_costs_off_and_refuses_analyze() {
    assert_eq!(
        ok("clerk_01", "EXPLAIN (FORMAT json) SELECT id FROM employer"),
        "EXPLAIN (COSTS false, FORMAT JSON) SELECT id FROM (SELECT \"employer\".\"id\", \
         \"employer\".\"name\", \"employer\".\"phone\", \"employer\".\"province_code\" FROM \
         \"public\".\"employer\") AS \"employer\" LIMIT 51"
    );
    for refused in [
        "EXPLAIN ANALYZE SELECT 1",
        "EXPLAIN (ANALYZE true) SELECT 1",
        "EXPLAIN (BUFFERS) SELECT 1",
        "EXPLAIN VERBOSE SELECT 1",
        "EXPLAIN (COSTS) SELECT 1",
        "EXPLAIN SELECT phone FROM participant WHERE citizen_id = '1'",
    ] {
        assert_eq!(denied("clerk_01", refused).sqlstate, "42501", "{refused}");
    }
    assert_eq!(
        denied("clerk_01", "EXPLAIN UPDATE employer SET name = 'x'").sqlstate,
        "0A000"
    );
}

#[test]
fn sleeps_are_bounded() {
    ok("clerk_01", "SELECT pg_sleep(59.5)");
    assert_eq!(denied("clerk_01", "SELECT pg_sleep(61)").sqlstate, "42501");
    assert_eq!(
        denied("clerk_01", "SELECT pg_sleep(id) FROM employer").sqlstate,
        "42501"
    );
}

#[test]
fn names_resolve_through_the_session_search_path() {
    let enforcer = Enforcer::new(policy().clone(), rules("clerk_01"), &TestMasks);
    let mut path = SearchPath::starting_at(vec!["public".into()]);
    let read = |path: &SearchPath| enforcer.enforce_in("SELECT id FROM employer", path);
    assert!(read(&path).is_ok());
    path.apply(&PathChange::Set(vec!["audit".into()]));
    assert_eq!(read(&path).unwrap_err().sqlstate, "42P01");
    path.apply(&PathChange::Reset);
    assert!(read(&path).is_ok());
    // A SET applies to the statements after it in the same string, and is reported.
    let both = enforcer.enforce_in("SET search_path = audit; SELECT id FROM employer", &path);
    assert_eq!(both.unwrap_err().sqlstate, "42P01");
    let set = enforcer
        .enforce_in("SET search_path TO audit, \"Public\"", &path)
        .unwrap();
    assert_eq!(
        set.statements[0].search_path,
        Some(PathChange::Set(vec!["audit".into(), "Public".into()]))
    );
    // Upstream only the schemas of the account's tables go (none of these).
    assert_eq!(set.statements[0].sql, "SET search_path = ''");
    let set = enforcer
        .enforce_in("SET search_path = audit, public", &path)
        .unwrap();
    assert_eq!(set.statements[0].sql, "SET search_path = 'public'");
    for reset in [
        "RESET search_path",
        "RESET ALL",
        "DISCARD ALL",
        "SET search_path TO DEFAULT",
    ] {
        let reset = enforcer.enforce_in(reset, &path).unwrap();
        assert_eq!(reset.statements[0].search_path, Some(PathChange::Reset));
    }
    for refused in [
        "SET search_path = public, pg_catalog",
        "SET LOCAL search_path = public",
        "SET search_path = pg_temp",
    ] {
        assert_eq!(
            enforcer.enforce_in(refused, &path).unwrap_err().sqlstate,
            "0A000",
            "{refused}"
        );
    }
}

#[test]
fn star_follows_the_database_column_order() {
    let order = BTreeMap::from([(
        QualifiedName::new("public", "employer"),
        vec![
            "province_code".into(),
            "name".into(),
            "id".into(),
            "phone".into(),
        ],
    )]);
    let enforcer =
        Enforcer::with_column_order(policy().clone(), rules("clerk_01"), &TestMasks, &order);
    let sql = enforcer
        .enforce("SELECT * FROM employer")
        .unwrap()
        .statements[0]
        .sql
        .clone();
    assert!(
        sql.contains(
            "(SELECT \"employer\".\"province_code\", \"employer\".\"name\", \"employer\".\"id\", \
             \"employer\".\"phone\" FROM"
        ),
        "{sql}"
    );
}

#[test]
fn client_encoding_spellings() {
    for allowed in [
        "SET client_encoding = 'utf-8'",
        "SET client_encoding TO 'UTF_8'",
        "SET NAMES 'unicode'",
    ] {
        ok("clerk_01", allowed);
    }
    for refused in ["SET client_encoding = 'SJIS'", "SET NAMES 'latin1'"] {
        assert_eq!(denied("clerk_01", refused).sqlstate, "42501", "{refused}");
    }
}

#[test]
fn export_is_a_masked_read_for_roles_granted_it() {
    let sql = ok(
        "analyst_79",
        "COPY (SELECT full_name FROM participant) TO STDOUT WITH (FORMAT csv, HEADER true)",
    );
    assert!(
        sql.starts_with("COPY (SELECT full_name FROM (SELECT")
            && sql.contains("m(\"participant\".\"full_name\")")
            && sql.contains("province_code = '79'")
            && sql.contains("LIMIT 1001) TO STDOUT"),
        "{sql}"
    );
    let table = ok("analyst_79", "COPY participant (id, full_name) TO STDOUT");
    assert!(
        table.starts_with("COPY (SELECT id, full_name FROM (SELECT")
            && table.ends_with("TO STDOUT"),
        "{table}"
    );
    let enforced =
        crate::tests::enforce("analyst_79", "COPY employer TO STDOUT (FORMAT binary)").unwrap();
    assert_eq!(
        enforced.statements[0].copy_out,
        Some(crate::CopyOut {
            header: false,
            binary: true
        })
    );
    assert_eq!(
        denied("clerk_01", "COPY (SELECT id FROM employer) TO STDOUT").sqlstate,
        "42501",
        "a role without export"
    );
    for refused in [
        "COPY (SELECT phone FROM participant) TO STDOUT",
        "COPY participant TO '/tmp/x'",
        "COPY participant TO PROGRAM 'cat'",
        "COPY (SELECT 1) TO STDOUT WITH (ENCODING 'SJIS')",
    ] {
        let denial = denied("analyst_79", refused);
        assert!(
            ["42501", "0A000"].contains(&denial.sqlstate),
            "{refused}: {denial}"
        );
    }
}
