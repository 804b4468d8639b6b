//! Differential fuzzing of the text maskgate sends: generated statements full of
//! hostile literals (every literal kind, quotes, backslashes, newlines, comment
//! markers, dollar quotes), operator sequences that merge when printed side by side,
//! awkward names and nesting go through the enforcer, and PostgreSQL's own parser
//! (libpg_query) reads what comes out. Every allowed statement must read as one
//! statement of the analyzed kind, without a comment, keeping every string literal
//! of the input. Statements the enforcer's own printer check refused (closed, not
//! leaked) are counted and reported.
//!
//! As a baseline, the same statements printed by sqlparser's `Display` alone (what
//! maskgate used to send) are read the same way, and the differences are counted.
//!
//! `MASKGATE_FUZZ_CASES` sets the number of cases (default 100,000; the seed is fixed,
//! so a failure is reproducible; `MASKGATE_FUZZ_SEED` picks another run).

mod common;

use std::collections::HashMap;
use std::ops::ControlFlow;

use common::{enforce, Rng};
use serde_json::Value as Json;
use sqlparser::ast::{Statement, Value, Visit, Visitor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// Pieces of literal content chosen to break quoting.
const CONTENT: &[&str] = &[
    "a",
    "Z",
    "'",
    "''",
    "\\",
    "\\'",
    "\n",
    "\r\n",
    "\t",
    "--",
    "/*",
    "*/",
    ";",
    "$$",
    "$q$",
    "\"",
    "é",
    "ệ",
    "\u{1F600}",
    " DROP TABLE participant ",
    "0",
    "1",
    " OR 1=1 ",
    ")",
    "(",
    "\\x41",
    "\\u0041",
    "E'",
    "N'",
];

fn content(rng: &mut Rng) -> String {
    (0..rng.below(5)).map(|_| rng.pick(CONTENT)).collect()
}

fn literal(rng: &mut Rng) -> String {
    let text = content(rng);
    match rng.below(12) {
        0 => format!("'{}'", text.replace('\'', "''")),
        1 => format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "\\'")),
        2 => format!("N'{}'", text.replace('\'', "''")),
        3 => format!("X'{}'", rng.pick(&["1F", "", "0", "g1", "41'", "AbC"])),
        4 => format!("B'{}'", rng.pick(&["0101", "", "2", "1'", "11"])),
        5 => format!("U&'{}'", text.replace('\'', "''").replace('\\', "\\\\")),
        6 if !text.contains("$q$") => format!("$q${text}$q$"),
        7 if !text.contains("$$") => format!("$${text}$$"),
        8 => rng
            .pick(&["1", "1.5", ".5", "5.", "1e3", "0x1F", "1_000", "00", "1e-2"])
            .to_owned(),
        9 => rng.pick(&["TRUE", "NULL", "$1", "$2"]).to_owned(),
        10 => format!("'{}'", text), // possibly unbalanced on purpose
        _ => format!("'{}'", text.replace('\'', "''")),
    }
}

fn name(rng: &mut Rng) -> String {
    rng.pick(&[
        "id",
        "full_name",
        "ID",
        "\"id\"",
        "p.id",
        "\"Full_Name\"",
        "\"a\"\"b\"",
        "\"a\\b\"",
        "province_code",
        "select",
        "\"select\"",
        "birth_date",
    ])
    .to_owned()
}

const UNARY: &[&str] = &["-", "+", "~", "|/", "||/", "@", "NOT ", "- ", "-- "];
const BINARY: &[&str] = &[
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "||",
    "=",
    "<>",
    "<",
    ">=",
    " AND ",
    " OR ",
    " LIKE ",
    " IS DISTINCT FROM ",
    "@>",
    "->>",
    "#",
    "&",
    "|",
    "<<",
    "*/",
    "/*",
    "+-",
    "@-",
];

fn expr(rng: &mut Rng, depth: usize) -> String {
    let spacing = |rng: &mut Rng| if rng.below(2) == 0 { "" } else { " " };
    match if depth == 0 {
        rng.below(2)
    } else {
        rng.below(7)
    } {
        0 => literal(rng),
        1 => name(rng),
        2 => format!("{}{}", rng.pick(UNARY), expr(rng, depth - 1)),
        3 | 4 => {
            let (a, b) = (expr(rng, depth - 1), expr(rng, depth - 1));
            let (s1, s2) = (spacing(rng), spacing(rng));
            format!("{a}{s1}{}{s2}{b}", rng.pick(BINARY))
        }
        5 => format!("({})", expr(rng, depth - 1)),
        _ => format!(
            "{}::{}",
            expr(rng, depth - 1),
            rng.pick(&["int", "text", "numeric", "\"char\""])
        ),
    }
}

fn statement(rng: &mut Rng) -> String {
    let items = (0..1 + rng.below(3))
        .map(|_| expr(rng, 3))
        .collect::<Vec<_>>()
        .join(", ");
    match rng.below(3) {
        0 => format!("SELECT {items}"),
        1 => format!("SELECT {items} FROM participant p WHERE {}", expr(rng, 3)),
        _ => format!("SELECT {items} FROM employer WHERE id = {}", literal(rng)),
    }
}

/// String literals of the analyzed tree, decoded.
fn strings_of(statement: &Statement) -> Vec<String> {
    struct Strings(Vec<String>);
    impl Visitor for Strings {
        type Break = ();
        fn pre_visit_value(&mut self, value: &Value) -> ControlFlow<()> {
            match value {
                Value::SingleQuotedString(s)
                | Value::EscapedStringLiteral(s)
                | Value::UnicodeStringLiteral(s)
                | Value::NationalStringLiteral(s) => self.0.push(s.clone()),
                Value::DollarQuotedString(s) => self.0.push(s.value.clone()),
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut strings = Strings(Vec::new());
    let _ = statement.visit(&mut strings);
    strings.0
}

/// What PostgreSQL's parser reads: statement count, whether there is a comment or
/// DDL, and every string constant.
struct PgReading {
    statements: usize,
    comment: bool,
    ddl: bool,
    strings: Vec<String>,
}

fn pg_reading(sql: &str) -> Option<PgReading> {
    if sql.trim().is_empty() {
        return None;
    }
    let tokens = pg_query::scan_tokens(sql).ok()?;
    let comment = tokens.iter().any(|t| {
        t.token == pg_query::protobuf::Token::SqlComment as i32
            || t.token == pg_query::protobuf::Token::CComment as i32
    });
    let parsed = pg_query::parse(sql, 0).ok()?;
    let ddl = parsed
        .statement_types()
        .iter()
        .any(|kind| !["SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt"].contains(kind));
    let tree = serde_json::to_value(&parsed.protobuf).ok()?;
    let mut strings = Vec::new();
    let mut pending = vec![&tree];
    while let Some(node) = pending.pop() {
        match node {
            Json::Array(items) => pending.extend(items),
            Json::Object(fields) => {
                if let Some(Json::String(s)) = fields.get("Sval").and_then(|v| v.get("sval")) {
                    strings.push(s.clone());
                }
                pending.extend(fields.values());
            }
            _ => {}
        }
    }
    Some(PgReading {
        statements: parsed.protobuf.stmts.len(),
        comment,
        ddl,
        strings,
    })
}

/// Whether PostgreSQL reads `sql` as one statement of a query kind, without
/// comments, holding every string of `expected` (it may hold more: the rewrite adds
/// row filter values and mask parameters).
fn reads_as_analyzed(sql: &str, expected: &[String]) -> bool {
    let Some(reading) = pg_reading(sql) else {
        return false;
    };
    let mut have: HashMap<&str, usize> = HashMap::new();
    for s in &reading.strings {
        *have.entry(s).or_default() += 1;
    }
    let kept = expected.iter().all(|s| match have.get_mut(s.as_str()) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    });
    reading.statements == 1 && !reading.comment && !reading.ddl && kept
}

#[test]
fn generated_hostile_statements_reach_postgresql_as_analyzed() {
    let cases: usize = std::env::var("MASKGATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let seed: u64 = std::env::var("MASKGATE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x6d61_736b_6761_7465);
    let mut rng = Rng(seed);
    let (mut parsed, mut display_differs, mut allowed, mut printer_refusals) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for _ in 0..cases {
        let sql = statement(&mut rng);
        let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, &sql) else {
            continue;
        };
        let [tree] = statements.as_slice() else {
            continue;
        };
        parsed += 1;
        let expected = strings_of(tree);
        // Baseline: sqlparser's Display alone.
        if !reads_as_analyzed(&tree.to_string(), &expected) {
            display_differs += 1;
        }
        match enforce("analyst_79", &sql) {
            Ok(enforced) => {
                allowed += 1;
                let [statement] = enforced.statements.as_slice() else {
                    failures.push(format!("several statements from {sql:?}"));
                    continue;
                };
                if !reads_as_analyzed(&statement.sql, &expected) {
                    failures.push(format!("{sql:?}\n  -> {:?}", statement.sql));
                }
            }
            // The check caught a printer difference and refused: closed, not leaked.
            // Counted and reported; the cases are listed with --nocapture.
            Err(denial) if denial.message.contains("could not verify the text") => {
                printer_refusals += 1;
                if printer_refusals <= 5 {
                    eprintln!("printer check refused {sql:?}: {denial}");
                }
            }
            Err(_) => {}
        }
        if failures.len() > 20 {
            break;
        }
    }
    eprintln!(
        "{cases} generated, {parsed} parsed by sqlparser, {display_differs} read differently \
         by PostgreSQL when printed by sqlparser's Display; {allowed} allowed by maskgate, \
         {} read differently, {printer_refusals} refused by its own printer check",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        parsed > cases / 4 && allowed > cases / 10,
        "the generator must reach the printer"
    );
}
