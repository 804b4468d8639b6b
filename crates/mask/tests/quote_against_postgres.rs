//! `quote_literal` and `quote_ident` checked by PostgreSQL itself: generated
//! values, heavy in the characters a SQL lexer cares about, must come back
//! unchanged under both `standard_conforming_strings` settings, and nothing
//! after the quoted token may ever run.

use maskgate_mask::{quote_ident, quote_literal, MAX_IDENTIFIER_BYTES};
use maskgate_testkit::PgCluster;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use tokio::runtime::Runtime;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Cases per property; each costs a few round trips to the local cluster.
const CASES: u32 = 400;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(scs: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(&PgCluster::shared().url(), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "SET standard_conforming_strings = {scs}; SET escape_string_warning = off"
        ))
        .await
        .unwrap();
    client
}

/// Every row of a simple query, as text; the number of result sets tells
/// whether anything ran after the quoted token.
async fn simple(client: &Client, sql: &str) -> (usize, Vec<Vec<Option<String>>>) {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql:?}: {e:?}"));
    let mut statements = 0;
    let mut rows = Vec::new();
    for m in messages {
        match m {
            SimpleQueryMessage::Row(row) => rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            SimpleQueryMessage::CommandComplete(_) => statements += 1,
            _ => {}
        }
    }
    (statements, rows)
}

/// Strings built from pieces that end literals, start comments, escape,
/// prefix or quote, plus arbitrary Unicode.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^\\x00]{0,30}",
        proptest::collection::vec(
            prop::sample::select(vec![
                "'",
                "''",
                "\"",
                "\\",
                "\\'",
                "\\\\",
                "$$",
                "$a$",
                "--",
                "/*",
                "*/",
                ";",
                "\n",
                "\r\n",
                " ",
                "\t",
                "E",
                "e'",
                "U&",
                "\\u0041",
                "\\x41",
                "\\047",
                "N",
                "X",
                "B",
                "ẩ",
                "Đức",
                "\u{2028}",
                "\u{feff}",
                "\u{10ffff}",
                "0",
                "x",
                "SELECT 1",
            ]),
            0..16,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

fn runner() -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

#[test]
fn literals_read_back_as_the_value_under_both_settings() {
    let rt = runtime();
    let clients = rt.block_on(async { [connect("on").await, connect("off").await] });
    runner()
        .run(&hostile(), |value| {
            let literal = quote_literal(&value).unwrap();
            // Nothing may run after the literal: a second statement would
            // add a result set, a comment would swallow the marker column.
            let sql = format!("SELECT {literal}, pg_typeof({literal})::text, 'end'");
            for client in &clients {
                let (statements, rows) = rt.block_on(simple(client, &sql));
                prop_assert_eq!(statements, 1, "{}", sql);
                prop_assert_eq!(
                    &rows,
                    &vec![vec![
                        Some(value.clone()),
                        Some("unknown".to_string()),
                        Some("end".to_string())
                    ]],
                    "{}",
                    sql
                );
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn literals_keep_their_value_where_they_are_typed() {
    let rt = runtime();
    let clients = rt.block_on(async { [connect("on").await, connect("off").await] });
    runner()
        .run(&hostile(), |value| {
            let literal = quote_literal(&value).unwrap();
            let sql = format!(
                "SELECT {literal}::text = $1::text, octet_length({literal}::text), $1::text IN ({literal}, 'x')"
            );
            for client in &clients {
                let row = rt
                    .block_on(client.query_one(sql.as_str(), &[&value]))
                    .unwrap_or_else(|e| panic!("{sql:?}: {e:?}"));
                prop_assert!(row.get::<_, bool>(0), "{}", sql);
                prop_assert_eq!(row.get::<_, i32>(1) as usize, value.len());
                prop_assert!(row.get::<_, bool>(2), "{}", sql);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn nul_is_refused_not_truncated() {
    assert!(quote_literal("a\0b").is_err());
    assert!(quote_ident("a\0b").is_err());
}

fn identifiers() -> impl Strategy<Value = String> {
    hostile().prop_filter("a PostgreSQL name", |name| {
        !name.is_empty() && name.len() <= MAX_IDENTIFIER_BYTES
    })
}

/// Names a table column may have: not one of the system columns.
fn columns() -> impl Strategy<Value = String> {
    identifiers().prop_filter("not a system column", |name| {
        !["tableoid", "cmax", "xmax", "cmin", "xmin", "ctid", "oid"].contains(&name.as_str())
    })
}

#[test]
fn identifiers_name_exactly_the_given_name() {
    let rt = runtime();
    let clients = rt.block_on(async { [connect("on").await, connect("off").await] });
    runner()
        .run(&(identifiers(), columns()), |(table, column)| {
            let (qt, qc) = (quote_ident(&table).unwrap(), quote_ident(&column).unwrap());
            for client in &clients {
                // As an output name: the RowDescription carries it back.
                let sql = format!("SELECT 1 AS {qc}, 2 AS \"end\"");
                let statement = rt
                    .block_on(client.prepare(&sql))
                    .unwrap_or_else(|e| panic!("{sql:?}: {e:?}"));
                let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
                prop_assert_eq!(names, vec![column.as_str(), "end"], "{}", sql);

                // As a created relation and column, found again by name.
                let ddl = format!(
                    "BEGIN; CREATE TEMP TABLE {qt} ({qc} int); INSERT INTO {qt} ({qc}) VALUES (7)"
                );
                rt.block_on(client.batch_execute(&ddl))
                    .unwrap_or_else(|e| panic!("{ddl:?}: {e:?}"));
                let found = rt
                    .block_on(client.query(
                        "SELECT c.relname::text, a.attname::text FROM pg_class c \
                         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = 1 \
                         WHERE c.relpersistence = 't' AND c.relname = $1",
                        &[&table],
                    ))
                    .unwrap();
                let select = format!("SELECT {qt}.{qc} FROM {qt}");
                let (statements, rows) = rt.block_on(simple(client, &select));
                rt.block_on(client.batch_execute("ROLLBACK")).unwrap();
                let found: Vec<(String, String)> =
                    found.iter().map(|r| (r.get(0), r.get(1))).collect();
                prop_assert_eq!(found, vec![(table.clone(), column.clone())]);
                prop_assert_eq!(statements, 1);
                prop_assert_eq!(rows, vec![vec![Some("7".to_string())]]);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn long_names_are_refused_instead_of_truncated() {
    let rt = runtime();
    let client = rt.block_on(connect("on"));
    let name = "ẩ".repeat(21);
    assert_eq!(name.len(), MAX_IDENTIFIER_BYTES);
    let sql = format!("SELECT 1 AS {}", quote_ident(&name).unwrap());
    let statement = rt.block_on(client.prepare(&sql)).unwrap();
    assert_eq!(
        statement.columns()[0].name(),
        name,
        "63 bytes are kept whole"
    );
    let longer = format!("{name}x");
    assert!(quote_ident(&longer).is_err());
    // What the refusal prevents: PostgreSQL cuts the name to 63 bytes.
    let cut = rt
        .block_on(client.prepare(&format!("SELECT 1 AS \"{longer}\"")))
        .unwrap();
    assert_eq!(cut.columns()[0].name(), name);
}
