//! Differential test of operator grouping: generated expressions of unparenthesized
//! prefix, infix and postfix operators go through the enforcer, and PostgreSQL's own
//! parser (libpg_query) reads both the client's text and the text maskgate sends. For
//! every statement maskgate allows, PostgreSQL must group the two identically (the same
//! tree, positions aside); a statement PostgreSQL's grammar refuses must not be allowed.
//!
//! `MASKGATE_FUZZ_CASES` sets the number of cases (default 30,000, fixed seed).

mod common;

use common::{enforce, Rng};
use serde_json::Value as Json;

const OPERANDS: &[&str] = &[
    "1",
    "2.5",
    "'a'",
    "true",
    "NULL",
    "ARRAY[1]",
    "'2020-01-01'::timestamp",
];

const INFIX: &[&str] = &[
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "||",
    "~",
    "!~",
    "~~",
    "~*",
    "=",
    "<",
    "<>",
    ">=",
    "@>",
    "&",
    "|",
    "#",
    "<<",
    "AND",
    "OR",
    "LIKE",
    "ILIKE",
    "NOT LIKE",
    "IS DISTINCT FROM",
];

const PREFIX: &[&str] = &["-", "+", "NOT", "|/", "@", "~"];

const POSTFIX: &[&str] = &[
    "IS NULL",
    "IS NOT TRUE",
    "COLLATE \"C\"",
    "AT TIME ZONE 'UTC'",
    "::int",
    "IN (1, 2)",
    "BETWEEN 1 AND 2",
    "= ANY (ARRAY[1])",
];

/// An expression of up to `terms` operands, parenthesized now and then.
fn expression(rng: &mut Rng, terms: usize) -> String {
    let mut out = String::new();
    for term in 0..terms {
        if term > 0 {
            out.push(' ');
            out.push_str(rng.pick(INFIX));
            out.push(' ');
        }
        for _ in 0..rng.below(3).saturating_sub(1) {
            out.push_str(rng.pick(PREFIX));
            out.push(' ');
        }
        if terms > 1 && rng.below(6) == 0 {
            out.push('(');
            out.push_str(&expression(rng, 2));
            out.push(')');
        } else {
            out.push_str(rng.pick(OPERANDS));
        }
        if rng.below(4) == 0 {
            out.push(' ');
            out.push_str(rng.pick(POSTFIX));
        }
    }
    out
}

/// PostgreSQL's tree of the first statement's target list, positions removed.
fn target_list(sql: &str) -> Option<Json> {
    let parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT).ok()?;
    let mut tree = serde_json::to_value(&parsed.protobuf).ok()?;
    strip_locations(&mut tree);
    tree.pointer("/stmts/0/stmt/node/SelectStmt/target_list")
        .cloned()
}

fn strip_locations(tree: &mut Json) {
    match tree {
        Json::Object(map) => {
            map.retain(|key, _| {
                key != "location" && !key.ends_with("_start") && !key.ends_with("_end")
            });
            map.values_mut().for_each(strip_locations);
        }
        Json::Array(items) => items.iter_mut().for_each(strip_locations),
        _ => {}
    }
}

#[test]
fn postgresql_groups_every_allowed_expression_as_the_client_wrote_it() {
    let cases: usize = std::env::var("MASKGATE_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(30_000);
    let mut rng = Rng(0x0DE5_1A7E_5EED_u64);
    let (mut same, mut refused, mut invalid_refused) = (0, 0, 0);
    let mut failures = Vec::new();
    for _ in 0..cases {
        let terms = 1 + rng.below(4);
        let sql = format!("SELECT {}", expression(&mut rng, terms));
        let original = target_list(&sql);
        match enforce("analyst_79", &sql) {
            Ok(enforced) => {
                let sent = &enforced.statements[0].sql;
                match original {
                    None => failures.push(format!("allowed what PostgreSQL refuses: {sql}")),
                    Some(original) if target_list(sent).as_ref() != Some(&original) => {
                        failures.push(format!("grouped otherwise: {sql}\n   sent as {sent}"))
                    }
                    Some(_) => same += 1,
                }
            }
            Err(_) if original.is_none() => invalid_refused += 1,
            Err(_) => refused += 1,
        }
    }
    eprintln!(
        "{cases} expressions: {same} allowed and grouped alike, {refused} valid ones \
         refused, {invalid_refused} that PostgreSQL refuses also refused, {} failures",
        failures.len()
    );
    failures.truncate(20);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
