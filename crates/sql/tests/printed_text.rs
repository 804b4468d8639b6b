//! What maskgate sends upstream is what it analyzed: statements written to smuggle SQL
//! past the printer (unescaped prefixed literals, tokens that merge into comments,
//! names that print ambiguously) are either refused or sent as text that PostgreSQL's
//! own parser reads as exactly one statement of the analyzed kind, with no comment.

mod common;

use common::enforce;

/// Each statement either is refused, or every rewritten statement is one statement
/// of PostgreSQL's grammar with no comment, of the expected kind.
fn sent_as_analyzed(login: &str, sql: &str) -> Vec<String> {
    match enforce(login, sql) {
        Err(_) => Vec::new(),
        Ok(enforced) => enforced
            .statements
            .into_iter()
            .map(|statement| {
                let text = statement.sql;
                let tokens = pg_query::scan_tokens(&text).unwrap();
                assert!(
                    !tokens.iter().any(|t| {
                        t.token == pg_query::protobuf::Token::SqlComment as i32
                            || t.token == pg_query::protobuf::Token::CComment as i32
                    }),
                    "comment in {text}"
                );
                let parsed = pg_query::parse(&text, 0).unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!(parsed.protobuf.stmts.len(), 1, "{sql}\n  -> {text}");
                assert!(
                    parsed.ddl_tables().is_empty() && parsed.ddl_functions().is_empty(),
                    "DDL in {text}"
                );
                text
            })
            .collect(),
    }
}

const SMUGGLING: &[&str] = &[
    "SELECT N'x'' ; DROP TABLE participant; SELECT ''' FROM participant WHERE citizen_id = '1'",
    "SELECT full_name FROM participant WHERE citizen_id = N'1'' OR true OR ''1'",
    "SELECT X'41'' ; CREATE TABLE t (a int); --'",
    "SELECT B'1'' ; CREATE TABLE t (a int); --'",
    "SELECT - -1, 'x\n; CREATE TABLE t (a int); SELECT '",
    "SELECT - - - 1 + - -2, '\n) ; DROP TABLE participant; --'",
    "SELECT 1 - -1, 2 * -3, 4 / - 5, @ - 6, |/ 16, ~ 1, 1 + -2",
    "SELECT E'\\'' ; CREATE TABLE t (a int); --'",
    "SELECT E'a\\\\'' ; CREATE TABLE t (a int); --'",
    "SELECT 'a''''b', '''', ''''''",
    "SELECT U&'\\0041''' ; CREATE TABLE t (a int); --'",
    "SELECT $$a'b$$, $q$it's -- not a comment$q$",
    "SELECT 1 AS \"a\"\"b\"",
    "SELECT 1 AS \"a\\\"",
    "SELECT 'a' /* c */ , 2 -- c",
    "SELECT /* /* nested */ */ 1",
    "SELECT 1 /* unterminated",
    "SELECT 0x1F, 1_000, 0o17, 0b101",
    "SELECT 1e, 1.2.3",
    "SELECT $1, $01, $0, $99999",
    "SELECT full_name FROM participant WHERE citizen_id = '1' AND full_name = E'\\n--'",
];

#[test]
fn smuggling_attempts_are_refused_or_sent_as_one_analyzed_statement() {
    for login in ["clerk_01", "analyst_79", "editor_79"] {
        for sql in SMUGGLING {
            sent_as_analyzed(login, sql);
        }
    }
}

#[test]
fn prefixed_literals_reach_postgresql_with_the_analyzed_value() {
    let sent = sent_as_analyzed("analyst_79", "SELECT N'a''b', X'1F', B'0101', E'c\\\\d'");
    assert_eq!(
        sent,
        [
            "SELECT CAST('a''b' AS pg_catalog.bpchar), CAST('x1F' AS pg_catalog.bit(8)), \
          CAST('0101' AS pg_catalog.bit(4)), E'c\\\\d' LIMIT 1001"
        ]
    );
}

#[test]
fn quoted_names_that_print_ambiguously_are_refused() {
    for sql in ["SELECT 1 AS \"a\"\"b\"", "SELECT 1 AS \"a\\b\""] {
        let denial = enforce("analyst_79", sql).unwrap_err();
        assert_eq!(denial.sqlstate, "0A000", "{sql}: {denial}");
    }
}

#[test]
fn reserved_statement_and_cursor_names_are_refused() {
    for sql in [
        "PREPARE _maskgate_1 AS SELECT 1",
        "PREPARE \"_MASKGATE_x\" AS SELECT 1",
        "EXECUTE _maskgate_1",
        "DECLARE _maskgate_c CURSOR FOR SELECT 1",
        "FETCH NEXT FROM _maskgate_c",
        "CLOSE _maskgate_c",
        "DEALLOCATE _maskgate_1",
        "DEALLOCATE PREPARE \"_maskgate_1\"",
    ] {
        let denial = enforce("analyst_79", sql).unwrap_err();
        assert_eq!(denial.sqlstate, "42501", "{sql}: {denial}");
        assert!(denial.message.contains("reserved"), "{sql}: {denial}");
    }
    for sql in [
        "DEALLOCATE ALL",
        "DEALLOCATE mine",
        "DEALLOCATE PREPARE mine",
    ] {
        enforce("analyst_79", sql).unwrap_or_else(|d| panic!("{sql}: {d}"));
    }
}

/// Nodes that sqlparser prints with a raw string of the client's: types of other
/// dialects (`DateTime64(3, 'tz')`, `Enum`, `Set`, modifiers of a custom type), and
/// COLLATE in SET NAMES. Each text, printed as sqlparser would, hides a second read
/// of a protected table between two quotes.
#[test]
fn raw_strings_of_other_nodes_are_refused() {
    let hidden = "(SELECT citizen_id FROM public.participant LIMIT 1) AS b";
    for sql in [
        format!(
            "SELECT CAST(1 AS DateTime64(3, 'x'')) AS a, {hidden}, \
             CAST(1 AS DateTime64(3, ''x')) AS c FROM participant"
        ),
        format!("SELECT CAST(1 AS ENUM('x'')) AS a, {hidden}, CAST(1 AS ENUM(''x')) AS c"),
        format!("SELECT CAST(1 AS SET('x'')) AS a, {hidden}, CAST(1 AS SET(''x')) AS c"),
        format!("SELECT CAST(1 AS int4('x'')) AS a, {hidden}, CAST(1 AS int4(''x')) AS c"),
        "SET NAMES 'utf8' COLLATE 'x; CREATE TABLE t (a int)'".to_owned(),
    ] {
        for login in ["clerk_01", "analyst_79"] {
            assert!(enforce(login, &sql).is_err(), "{login}: {sql}");
        }
    }
}

/// Ordinary statements whose printed form once tripped the text check: FROM items
/// that are calls in PostgreSQL's tree, and EXTRACT with a quoted field.
#[test]
fn everyday_statements_pass_the_text_check() {
    for sql in [
        "SELECT x FROM unnest(ARRAY['a', 'b']) AS x",
        "SELECT p.id, g FROM participant p, LATERAL generate_series(1, 2) g WHERE p.id = 1",
        "SELECT EXTRACT('year' FROM registered_on) FROM participant WHERE id = 1",
        "SELECT 'a' LIKE 'b' ESCAPE '!'",
        "SELECT normalize('a', NFC)",
    ] {
        let sent = sent_as_analyzed("analyst_79", sql);
        assert_eq!(
            sent.len(),
            1,
            "refused: {sql}: {:?}",
            enforce("analyst_79", sql).err()
        );
    }
}

/// Text PostgreSQL cannot parse is the client's syntax error, whatever else the
/// check found: `42601`, not a printer alarm.
#[test]
fn client_syntax_errors_are_not_printer_alarms() {
    for sql in ["SELECT 1 AS 'x'", "SELECT id FROM participant AS 'p'"] {
        let before = maskgate_sql::printer_mismatches();
        let denial = enforce("analyst_79", sql).unwrap_err();
        assert_eq!(denial.sqlstate, "42601", "{sql}: {denial}");
        assert_eq!(maskgate_sql::printer_mismatches(), before, "{sql}");
    }
}
