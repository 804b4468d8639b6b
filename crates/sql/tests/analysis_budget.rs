//! No statement can crash or monopolize the analyzer: chains far beyond any bound are
//! refused with PostgreSQL's own limit errors, on an ordinary test thread's stack,
//! while legitimately deep statements still pass.

mod common;

use common::{enforce, enforce_within};
use maskgate_sql::Limits;

fn chain(head: &str, link: &str, n: usize) -> String {
    let mut sql = String::with_capacity(head.len() + link.len() * n);
    sql.push_str(head);
    for _ in 0..n {
        sql.push_str(link);
    }
    sql
}

fn refused_over_limit(sql: &str) {
    let denial = enforce("analyst_79", sql).expect_err("refused");
    assert!(
        ["54000", "54001"].contains(&denial.sqlstate),
        "{}: {denial}",
        &sql[..60.min(sql.len())]
    );
}

#[test]
fn left_deep_chains_at_ten_times_their_crash_sizes_are_refused() {
    refused_over_limit(&chain("SELECT 1", " + 1", 275_000));
    refused_over_limit(&chain("SELECT 1", "::int", 400_000));
    refused_over_limit(&chain("SELECT 1", " UNION ALL SELECT 1", 95_000));
    for op in [" OR true", " AND true", " || 'x'"] {
        refused_over_limit(&chain("SELECT true", op, 1_000_000));
    }
}

#[test]
fn chains_just_past_the_depth_limit_are_refused_by_depth() {
    let denial = enforce("analyst_79", &chain("SELECT 1", "+1", 30_000)).unwrap_err();
    assert_eq!(denial.sqlstate, "54001", "{denial}");
    assert!(
        denial.message.contains("stack depth limit exceeded"),
        "{denial}"
    );
    // 16,000 terms overflowed the analysis stack when the bound was 20,000.
    let denial = enforce("analyst_79", &chain("SELECT 1", "+1", 16_000)).unwrap_err();
    assert_eq!(denial.sqlstate, "54001", "{denial}");
    let casts = chain("SELECT 1", "::int", 15_000);
    assert_eq!(enforce("analyst_79", &casts).unwrap_err().sqlstate, "54001");
}

#[test]
fn statements_over_the_size_limit_are_refused_before_tokenizing() {
    let sql = format!("SELECT 1{}", " ".repeat(2 << 20));
    let denial = enforce("analyst_79", &sql).unwrap_err();
    assert_eq!(denial.sqlstate, "54000", "{denial}");
}

#[test]
fn legitimate_depth_passes() {
    let parens = format!("SELECT {}1{}", "(".repeat(500), ")".repeat(500));
    enforce("analyst_79", &parens).unwrap_or_else(|d| panic!("500 parentheses: {d}"));
    let subqueries = format!("SELECT {}1{}", "(SELECT ".repeat(100), ")".repeat(100));
    enforce("analyst_79", &subqueries).unwrap_or_else(|d| panic!("100 subqueries: {d}"));
    let list = (0..10_000)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    enforce(
        "analyst_79",
        &format!("SELECT id FROM participant WHERE id IN ({list})"),
    )
    .unwrap_or_else(|d| panic!("IN list: {d}"));
    let filter = (0..2_000)
        .map(|i| format!("id = {i}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    enforce(
        "analyst_79",
        &format!("SELECT id FROM participant WHERE {filter}"),
    )
    .unwrap_or_else(|d| panic!("OR filter: {d}"));
    // Chains of one operator that PostgreSQL keeps as a nested tree (unlike OR and
    // AND, which it flattens) are bounded by its own parser's stack (libpg_query
    // allows what a server with the default 2 MB max_stack_depth allows).
    let sum = chain("SELECT 1", " + 1", 1_000);
    enforce("analyst_79", &sum).unwrap_or_else(|d| panic!("1,000 terms: {d}"));
}

#[test]
fn thousands_of_table_references_are_refused_before_their_subqueries_are_built() {
    // Within the size limit (about 0.4 MB), but each reference becomes a masking
    // subquery: several megabytes of text and gigabytes of trees.
    let items = (0..20_000)
        .map(|i| format!("participant p{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let denial = enforce("analyst_79", &format!("SELECT 1 FROM {items}")).unwrap_err();
    assert_eq!(denial.sqlstate, "54000", "{denial}");
    assert!(denial.message.contains("masking subqueries"), "{denial}");
    // A report joining a few dozen tables is far from the limit.
    let items = (0..40)
        .map(|i| format!("participant p{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    enforce("analyst_79", &format!("SELECT 1 FROM {items}")).unwrap();
}

#[test]
fn a_short_statement_cannot_ask_for_hundreds_of_masking_subqueries() {
    // A few kilobytes, so it takes the short analysis lane, but every reference
    // costs a masking subquery in the printer, the text check and the planner.
    let items = |n: usize| {
        (0..n)
            .map(|i| format!("participant a{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let denial = enforce("analyst_79", &format!("SELECT 1 FROM {}", items(440))).unwrap_err();
    assert_eq!(denial.sqlstate, "54000", "{denial}");
    assert!(denial.message.contains("440 times"), "{denial}");
    assert!(enforce("analyst_79", &format!("SELECT 1 FROM {}", items(65))).is_err());
    enforce("analyst_79", &format!("SELECT 1 FROM {}", items(64))).unwrap();
}

#[test]
fn an_analysis_over_its_time_budget_is_refused() {
    // Every step is short for this statement, but the rewrite of its thousands of
    // subqueries is not: with a budget of a millisecond it must stop inside it.
    let subqueries = (0..5_000)
        .map(|i| format!("(SELECT {i} + {i} * {i} WHERE {i} > 0)"))
        .collect::<Vec<_>>()
        .join(", ");
    let limits = Limits {
        max_analysis_time: std::time::Duration::from_millis(1),
        ..Limits::default()
    };
    let denial = enforce_within("analyst_79", &format!("SELECT {subqueries}"), limits).unwrap_err();
    assert_eq!(denial.sqlstate, "57014", "{denial}");
    assert!(denial.message.contains("longer than 1 ms"), "{denial}");
    assert!(
        denial.is_transient(),
        "a timeout depends on the load: {denial}"
    );
}
