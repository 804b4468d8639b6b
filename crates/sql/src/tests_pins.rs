//! The keys a statement pins on lookup-only tables: exactly the compared value, by
//! its place among the text's constants or its parameter number.

use super::*;
use crate::{normalize, KeyPin, PinnedValue};

fn pins(login: &str, sql: &str) -> Vec<KeyPin> {
    let enforced = enforce(login, sql).unwrap_or_else(|d| panic!("{sql}: {d}"));
    enforced
        .statements
        .into_iter()
        .flat_map(|s| s.pins)
        .collect()
}

fn values(login: &str, sql: &str) -> Vec<PinnedValue> {
    pins(login, sql).into_iter().map(|p| p.value).collect()
}

#[test]
fn the_pinned_constant_is_named_by_its_place_among_the_constants() {
    let sql = "SELECT id, full_name, 'xa', 'xb', 42 FROM participant \
               WHERE id > 7 AND citizen_id = '001203004567'";
    let found = pins("clerk_01", sql);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].table.to_string(), "public.participant");
    assert_eq!(found[0].column, "citizen_id");
    assert_eq!(found[0].column_type, "char(12)");
    let PinnedValue::Constant(Some(index)) = found[0].value else {
        panic!("{found:?}")
    };
    assert_eq!(normalize(sql).literals[index], "'001203004567'");
}

#[test]
fn a_parameter_is_named_by_its_number() {
    assert_eq!(
        values(
            "clerk_01",
            "SELECT full_name, $1::text FROM participant WHERE id > $3 AND $2 = citizen_id"
        ),
        [PinnedValue::Parameter(2)]
    );
}

#[test]
fn constants_on_other_lines_and_after_multibyte_text_are_found() {
    let sql = "SELECT full_name, 'Hà Nội' AS tỉnh\nFROM participant\n  WHERE citizen_id =\n E'00120300\\x34567'";
    let [PinnedValue::Constant(Some(index))] = values("clerk_01", sql)[..] else {
        panic!()
    };
    assert_eq!(normalize(sql).literals[index], "E'00120300\\x34567'");
}

#[test]
fn every_lookup_of_a_statement_is_pinned_and_writes_too() {
    let sql = "SELECT a.full_name FROM participant a WHERE a.citizen_id = '1' \
               AND a.id IN (SELECT b.id FROM participant b WHERE b.citizen_id = $1); \
               SELECT full_name FROM participant WHERE citizen_id = '2'";
    let found = values("clerk_01", sql);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found.contains(&PinnedValue::Parameter(1)));
    let update = "UPDATE participant SET full_name = 'x' WHERE citizen_id = '001203004567'";
    assert!(matches!(
        values("registrar_01", update)[..],
        [PinnedValue::Constant(Some(1))]
    ));
    // A prepared statement's parameters belong to a later EXECUTE.
    assert!(values(
        "clerk_01",
        "PREPARE p AS SELECT full_name FROM participant WHERE citizen_id = $1"
    )
    .is_empty());
    // No pin where the table is not lookup-only.
    assert!(values(
        "analyst_79",
        "SELECT id FROM participant WHERE citizen_id = '1'"
    )
    .is_empty());
}

#[test]
fn a_sql_prepared_lookup_names_its_keys_with_its_name_and_execute_its_constants() {
    let prepare = enforce(
        "clerk_01",
        "PREPARE look(char(12)) AS SELECT full_name FROM participant WHERE citizen_id = $1",
    )
    .unwrap();
    let statement = &prepare.statements[0];
    assert!(statement.pins.is_empty(), "not this message's parameters");
    let Some(crate::SqlPrepared::Prepare { name, pins }) = &statement.sql_prepared else {
        panic!("{statement:?}")
    };
    assert_eq!(name, "look");
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0].value, PinnedValue::Parameter(1));

    let sql = "EXECUTE Look(7, '001203004567'::char(12), 1 + 1)";
    let execute = enforce("clerk_01", sql).unwrap();
    let Some(crate::SqlPrepared::Execute { name, arguments }) = &execute.statements[0].sql_prepared
    else {
        panic!("{execute:?}")
    };
    assert_eq!(name, "look");
    let literals = normalize(sql).literals;
    let named: Vec<Option<&str>> = arguments
        .iter()
        .map(|a| a.map(|i| literals[i].as_str()))
        .collect();
    assert_eq!(named, [Some("7"), Some("'001203004567'"), None]);
}
