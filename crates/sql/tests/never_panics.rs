//! Property test with a hand-rolled generator: arbitrary statement strings never panic
//! the enforcer, and whatever it allows is its own, fenced serialization.

mod common;

use std::ops::ControlFlow;

use common::{enforce, Rng};
use maskgate_sql::StatementClass;
use sqlparser::ast::visit_relations;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

const TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "JOIN",
    "LEFT JOIN",
    "ON",
    "USING",
    "AS",
    "WITH",
    "RECURSIVE",
    "UNION",
    "ALL",
    "EXCEPT",
    "ORDER BY",
    "GROUP BY",
    "HAVING",
    "LIMIT",
    "OFFSET",
    "FETCH FIRST",
    "ROWS ONLY",
    "LATERAL",
    "EXISTS",
    "IN",
    "ANY",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "NULL",
    "TRUE",
    "DISTINCT",
    "ON",
    "FOR UPDATE",
    "VALUES",
    "INTO",
    "participant",
    "p",
    "employer",
    "e",
    "contribution",
    "pg_type",
    "pg_authid",
    "public",
    "\"participant\"",
    "PARTICIPANT",
    "citizen_id",
    "phone",
    "full_name",
    "id",
    "province_code",
    "birth_date",
    "x",
    "r",
    "*",
    ".",
    ",",
    "(",
    ")",
    "=",
    "<>",
    "<",
    "+",
    "/",
    "||",
    "::",
    "text",
    "'001203004567'",
    "1",
    "0",
    "$1",
    "count(*)",
    "row_to_json",
    "lower",
    "pg_read_file",
    "current_setting",
    "pg_sleep",
    ";",
    "--",
    "/*",
    "*/",
    "$$",
    "U&\"x\"",
    "E'\\''",
    "ARRAY[",
    "]",
    "BEGIN",
    "COMMIT",
    "SET",
    "SHOW",
    "ROLE",
    "UPDATE",
    "DELETE FROM",
    "INSERT INTO",
    "RETURNING",
    "(id, full_name, province_code)",
    "'79'",
    "DEFAULT",
    "ON CONFLICT DO NOTHING",
    "DECLARE c CURSOR FOR",
    "FETCH 5 FROM c",
    "MOVE",
    "CLOSE",
    "PREPARE s AS",
    "EXECUTE s",
    "COPY",
    "information_schema.tables",
    "information_schema.columns",
];

const SEEDS: &[&str] = &[
    "SELECT full_name FROM participant WHERE citizen_id = '001203004567'",
    "SELECT p.* FROM participant p JOIN employer e ON e.id = p.id WHERE p.citizen_id = $1",
    "WITH participant AS (SELECT * FROM participant) SELECT * FROM participant",
    "SELECT id FROM participant UNION SELECT id FROM employer ORDER BY 1 LIMIT 5",
    "SELECT e.name, x.id FROM employer e, LATERAL (SELECT id FROM participant p WHERE p.id = e.id) x",
    "SELECT count(*) FROM participant GROUP BY full_name HAVING count(*) > 1",
    "UPDATE participant p SET full_name = e.name FROM employer e WHERE e.id = p.id RETURNING *",
    "DELETE FROM participant WHERE citizen_id = $1 AND id > 2 RETURNING id, citizen_id",
    "INSERT INTO participant (id, full_name, province_code) VALUES (1, 'a', '79') RETURNING *",
    "DECLARE c CURSOR FOR SELECT * FROM participant; FETCH 5 FROM c; MOVE 1 IN c",
    "PREPARE s (text) AS SELECT * FROM participant WHERE citizen_id = $1; EXECUTE s('1')",
    "SELECT column_name FROM information_schema.columns WHERE table_name = 'participant'",
];

fn random_statement(rng: &mut Rng) -> String {
    if rng.below(2) == 0 {
        let len = 1 + rng.below(30);
        (0..len)
            .map(|_| rng.pick(TOKENS))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        let mut text: Vec<char> = rng.pick(SEEDS).chars().collect();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(text.len() + 1);
            match rng.below(3) {
                0 if at < text.len() => {
                    text.remove(at);
                }
                1 => {
                    let token = rng.pick(TOKENS);
                    for (i, c) in format!(" {token} ").chars().enumerate() {
                        text.insert(at + i, c);
                    }
                }
                _ => {
                    let end = (at + rng.below(10)).min(text.len());
                    text.drain(at..end);
                }
            }
        }
        text.into_iter().collect()
    }
}

/// Every relation in an allowed read is schema-qualified (or a CTE name), and the
/// protected tables appear only inside masking subqueries (a write's own target aside).
fn check_allowed(login: &str, sql: &str, out: &str, targets: usize) {
    // sqlparser knows FETCH, not MOVE (the same syntax).
    let fetch = out
        .strip_prefix("MOVE ")
        .map(|rest| format!("FETCH {rest}"));
    let out = fetch.as_deref().unwrap_or(out);
    let reparsed = Parser::parse_sql(&PostgreSqlDialect {}, out)
        .unwrap_or_else(|e| panic!("{login}: {sql}\n -> {out}\n does not reparse: {e}"));
    let _ = visit_relations(&reparsed, |name| {
        let parts = name.0.len();
        assert!(parts <= 2, "{sql} -> {out}");
        ControlFlow::<()>::Continue(())
    });
    for table in ["participant", "employer", "contribution"] {
        let raw = out.matches(&format!("\"public\".\"{table}\"")).count();
        let fenced = out
            .matches(&format!("\"{table}\" FROM \"public\".\"{table}\""))
            .count()
            + out
                .matches(&format!("FROM \"public\".\"{table}\" OFFSET 0)"))
                .count()
            + out
                .matches(&format!("FROM \"public\".\"{table}\" WHERE"))
                .count();
        assert!(raw <= fenced + targets, "{login}: {sql}\n -> {out}");
    }
    assert!(!out.contains("\"participant\".\"phone\""), "{sql} -> {out}");
}

#[test]
fn random_statements_never_panic_and_allowed_ones_are_fenced() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut allowed = 0;
    // Two of the four accounts per statement, in turn, to keep the run short.
    let logins = ["clerk_01", "analyst_79", "editor_79", "registrar_01"];
    for round in 0..4000 {
        let sql = random_statement(&mut rng);
        for login in [logins[round % 4], logins[(round + 1) % 4]] {
            if let Ok(enforced) = enforce(login, &sql) {
                for statement in &enforced.statements {
                    match statement.kind {
                        StatementClass::Read | StatementClass::Cursor => {
                            allowed += 1;
                            check_allowed(login, &sql, &statement.sql, 0);
                        }
                        StatementClass::Write | StatementClass::Session => {
                            allowed += 1;
                            check_allowed(login, &sql, &statement.sql, 1);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    assert!(
        allowed > 50,
        "the generator should reach allowed reads too ({allowed})"
    );
}
