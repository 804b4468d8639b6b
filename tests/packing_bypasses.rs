//! Ways to pack more persons than the row cap into one row, or into one error
//! message, that a hostile provincial officer (cap 20) found after the first
//! counting of packed rows: an aggregate in a subquery that PostgreSQL evaluates
//! at the outer query's level, ordered-set aggregates given an array of
//! fractions, recursive CTEs that append a row per step, scalar subqueries in
//! VALUES, collecting aggregates outside the select list whose value comes back
//! in a cast error, and subqueries of a write's RETURNING. Each must be refused,
//! in both protocols, without a row and without any of the values.

#[path = "common/enforcement.rs"]
mod enforcement;

use enforcement::*;
use maskgate_testkit::register::{self, PROVINCIAL};
use maskgate_testkit::TestProxy;
use tokio_postgres::Client;

async fn proxy() -> TestProxy {
    register::start_proxy(cluster())
        .await
        .expect("proxy starts with the example policy")
}

async fn officer(proxy: &TestProxy) -> Client {
    proxy
        .connect(PROVINCIAL, PASSWORD)
        .await
        .expect("the provincial officer logs in")
}

/// The e-mail domains the officer sees (masked as `***@domain`): none may come back
/// in an error message of a refused statement.
fn no_values(message: &str, what: &str) {
    assert!(
        !message.contains("***@"),
        "{what}: the error carries masked values"
    );
}

/// `sql` must be refused with `code` in both protocols, without rows.
async fn refused(client: &Client, sql: &str, code: &str) {
    for (protocol, outcome) in [
        ("simple", simple(client, sql).await),
        ("extended", extended(client, sql).await),
    ] {
        match &outcome.error {
            Some(e) if e.code == code => no_values(&e.message, sql),
            other => panic!(
                "{protocol} {sql}: expected {code}, got {other:?} with {} rows",
                outcome.rows.len()
            ),
        }
        assert!(outcome.rows.is_empty(), "{protocol} {sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_are_counted_at_the_level_postgres_evaluates_them() {
    let proxy = proxy().await;
    let officer = officer(&proxy).await;
    // The aggregates name only the outer query's columns, so they aggregate its rows.
    for sql in [
        "SELECT (SELECT string_agg(p.email, ',')) FROM participant p",
        "SELECT (SELECT json_agg(p.email) FROM (SELECT 1) AS one) FROM participant p",
        "SELECT (SELECT array_agg(b.account_number ORDER BY b.id)) FROM bank_account b",
    ] {
        refused(&officer, sql, "54000").await;
    }
    // An aggregate of the subquery's own rows is still counted there.
    let ok = simple(
        &officer,
        "SELECT p.id, (SELECT string_agg(b.bank_code, ',') FROM bank_account b \
         WHERE b.participant_id = p.id) FROM participant p ORDER BY p.id LIMIT 5",
    )
    .await;
    assert!(ok.error.is_none(), "{:?}", ok.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_set_aggregates_take_one_fraction_under_a_cap() {
    let proxy = proxy().await;
    let officer = officer(&proxy).await;
    let fractions: Vec<String> = (0..=40).map(|i| format!("{}", i as f64 / 40.0)).collect();
    let array = fractions.join(", ");
    for sql in [
        format!("SELECT percentile_disc(ARRAY[{array}]) WITHIN GROUP (ORDER BY email) FROM participant"),
        format!("SELECT percentile_disc('{{{array}}}'::float8[]) WITHIN GROUP (ORDER BY email) FROM participant"),
        format!("SELECT percentile_cont(ARRAY[{array}]) WITHIN GROUP (ORDER BY amount) FROM benefit_payment"),
    ] {
        refused(&officer, &sql, "0A000").await;
    }
    let median = simple(
        &officer,
        "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY registered_on) FROM participant",
    )
    .await;
    assert!(median.error.is_none(), "{:?}", median.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursive_ctes_and_values_cannot_pack_rows() {
    let proxy = proxy().await;
    let officer = officer(&proxy).await;
    // Each step appends the next participant's e-mail: every one in one row.
    refused(
        &officer,
        "WITH RECURSIVE r(id, acc) AS (SELECT CAST(0 AS bigint), CAST('' AS text) \
         UNION ALL SELECT p.id, r.acc || p.email FROM r JOIN participant p \
         ON p.id = (SELECT min(q.id) FROM participant q WHERE q.id > r.id)) \
         SELECT acc FROM r ORDER BY length(acc) DESC LIMIT 1",
        "0A000",
    )
    .await;
    // One person per scalar subquery, 25 of them in one VALUES row.
    let ids: Vec<i64> = register::participants()
        .filter(|p| p.province_code == "01")
        .take(25)
        .map(|p| p.id)
        .collect();
    let columns: Vec<String> = ids
        .iter()
        .map(|id| format!("(SELECT email FROM participant WHERE id = {id})"))
        .collect();
    refused(
        &officer,
        &format!("SELECT * FROM (VALUES ({})) AS v", columns.join(", ")),
        "54000",
    )
    .await;
    // Catalog reads (asyncpg's type introspection) may still recurse.
    let catalog = simple(
        &officer,
        "WITH RECURSIVE t(oid, depth) AS (SELECT oid, 0 FROM pg_type WHERE typname = 'int4' \
         UNION ALL SELECT ty.oid, t.depth + 1 FROM pg_type ty JOIN t ON ty.typelem = t.oid \
         WHERE t.depth < 2) SELECT count(*) FROM t",
    )
    .await;
    assert!(catalog.error.is_none(), "{:?}", catalog.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_values_cannot_leave_through_error_messages() {
    let proxy = proxy().await;
    let officer = officer(&proxy).await;
    for sql in [
        "SELECT 1 FROM participant HAVING CAST(string_agg(email, ',') AS integer) > 0",
        "SELECT count(*) FROM participant ORDER BY CAST(string_agg(email, ',') AS integer)",
        "SELECT 1 WHERE CAST(array_to_string(ARRAY(SELECT email FROM participant), ',') AS integer) = 1",
    ] {
        refused(&officer, sql, "54000").await;
    }
    // Counted arrays still compare element by element under ANY and ALL.
    for sql in [
        "SELECT id FROM participant WHERE id = ANY(ARRAY(SELECT participant_id FROM bank_account \
         ORDER BY id LIMIT 5)) ORDER BY id LIMIT 5",
        "SELECT 0 <> ALL(ARRAY(SELECT id FROM participant ORDER BY id LIMIT 5))",
    ] {
        for outcome in [simple(&officer, sql).await, extended(&officer, sql).await] {
            assert!(outcome.error.is_none(), "{sql}: {:?}", outcome.error);
            assert!(!outcome.rows.is_empty(), "{sql}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_capped_like_reads() {
    let proxy = proxy().await;
    let officer = officer(&proxy).await;
    let mine: std::collections::HashSet<i64> = register::participants()
        .filter(|p| p.province_code == "01")
        .map(|p| p.id)
        .collect();
    let account = register::bank_accounts()
        .find(|a| mine.contains(&a.participant_id))
        .expect("an in-scope bank account");
    for (sql, code) in [
        (
            format!(
                "UPDATE bank_account SET bank_code = bank_code WHERE id = {} \
                 RETURNING (SELECT string_agg(email, ',') FROM participant)",
                account.id
            ),
            "54000",
        ),
        (
            format!(
                "UPDATE bank_account SET bank_code = bank_code WHERE id = {} \
                 RETURNING (SELECT email FROM participant ORDER BY id LIMIT 1 OFFSET 500)",
                account.id
            ),
            "54000",
        ),
    ] {
        refused(&officer, &sql, code).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_never_show_the_guard_checks() {
    let proxy = proxy().await;
    let officer = officer(&proxy).await;
    // The HAVING filter of the plan would print the packed-rows check with the token
    // that makes maskgate answer with its own refusals.
    refused(
        &officer,
        "EXPLAIN SELECT gender FROM participant GROUP BY gender \
         HAVING string_agg(email, ',') IS NOT NULL",
        "0A000",
    )
    .await;
    let plan = simple(&officer, "EXPLAIN SELECT id FROM participant WHERE id = 5").await;
    assert!(plan.error.is_none(), "{:?}", plan.error);
    for row in &plan.rows {
        let line = row.values[0].as_deref().unwrap_or("");
        assert!(!line.contains("maskgate_guard"), "the plan shows a guard");
    }
}
