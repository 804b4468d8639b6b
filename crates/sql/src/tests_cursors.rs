//! SQL PREPARE/EXECUTE and cursors: rewritten like reads, named for counting,
//! and each FETCH or MOVE motion named.

use super::*;

#[test]
fn prepare_rewrites_its_statement_and_execute_takes_only_values() {
    let enforced = enforce(
        "clerk_01",
        "PREPARE s (text) AS SELECT full_name FROM participant WHERE citizen_id = $1",
    )
    .unwrap();
    let statement = &enforced.statements[0];
    assert_eq!(statement.kind, crate::StatementClass::Session);
    assert_eq!(
        statement.sql,
        format!(
            "PREPARE s (TEXT) AS SELECT full_name FROM {} AS \"participant\" LIMIT 51",
            clerk_open(" AND (\"participant\".\"citizen_id\" = $1)")
        )
    );
    for sql in [
        "PREPARE s AS SELECT * FROM participant",
        "PREPARE s AS SELECT phone FROM participant WHERE citizen_id = $1",
        "PREPARE s AS DELETE FROM employer",
        "PREPARE s AS SET ROLE postgres",
        "PREPARE s (evil_type) AS SELECT 1",
    ] {
        let denial = denied("clerk_01", sql);
        assert_ne!(denial.sqlstate, "42601", "{sql}: {denial}");
    }
    let statement = &enforce("clerk_01", "EXECUTE s('001203004567'::text, $1, -2, now())")
        .unwrap()
        .statements[0];
    assert_eq!(statement.kind, crate::StatementClass::Read);
    assert_eq!(statement.row_cap, Some(50));
    assert_eq!(
        statement.sql,
        "EXECUTE s('001203004567'::TEXT, $1, -2, now())"
    );
    for sql in [
        "EXECUTE s((SELECT full_name FROM participant))",
        "EXECUTE s(pg_read_file('x'))",
        "EXECUTE s(citizen_id)",
        "EXECUTE s(1::evil_type)",
        "EXECUTE IMMEDIATE 'select 1'",
        "EXECUTE public.s",
    ] {
        let denial = denied("clerk_01", sql);
        assert!(!denial.message.contains("001203004567"), "{sql}: {denial}");
    }
    assert_eq!(ok("clerk_01", "DEALLOCATE s"), "DEALLOCATE s");
}

#[test]
fn cursors_are_rewritten_like_reads_and_named_for_counting() {
    use crate::{CursorUse, Motion};
    let enforced = enforce(
        "analyst_79",
        "DECLARE \"Big\" BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT id, full_name FROM participant; \
         FETCH FORWARD 10 FROM \"Big\"; MOVE ALL IN \"Big\"; CLOSE \"Big\"; CLOSE ALL",
    )
    .unwrap();
    let [declare, fetch, moved, close, close_all] = enforced.statements.as_slice() else {
        panic!("{enforced:?}");
    };
    assert!(
        declare.sql.starts_with("DECLARE \"Big\" BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT id, full_name FROM (SELECT "),
        "{}",
        declare.sql
    );
    assert!(declare.sql.ends_with("LIMIT 1001"), "{}", declare.sql);
    let big = |declare, motion| {
        Some(CursorUse {
            name: "Big".to_owned(),
            declare,
            motion,
        })
    };
    let step = |forward, count| Some(Motion::Step { forward, count });
    assert_eq!(declare.cursor, big(true, None));
    assert_eq!(declare.row_cap, Some(1000));
    assert_eq!(fetch.sql, "FETCH FORWARD 10 FROM \"Big\"");
    assert_eq!(fetch.cursor, big(false, step(true, Some(10))));
    assert_eq!(fetch.row_cap, Some(1000));
    assert_eq!(moved.sql, "MOVE ALL IN \"Big\"");
    assert_eq!(moved.cursor, big(false, step(true, None)));
    assert_eq!(close.cursor, big(false, None));
    assert_eq!(close_all.cursor, None);
    for statement in &enforced.statements {
        assert_eq!(statement.kind, crate::StatementClass::Cursor);
    }
    assert_eq!(
        enforce("analyst_79", "fetch next from MyCursor")
            .unwrap()
            .statements[0]
            .cursor,
        Some(CursorUse {
            name: "mycursor".to_owned(),
            declare: false,
            motion: Some(Motion::Step {
                forward: true,
                count: Some(1)
            }),
        })
    );
    for (sql, out) in [
        ("FETCH c", "FETCH NEXT FROM c"),
        ("fetch from C", "FETCH NEXT FROM C"),
        ("FETCH PRIOR c", "FETCH PRIOR FROM c"),
        ("FETCH FORWARD IN c", "FETCH NEXT IN c"),
        ("MOVE BACKWARD FROM c", "MOVE PRIOR FROM c"),
        ("MOVE 5 c", "MOVE 5 FROM c"),
        ("FETCH BACKWARD ALL c", "FETCH BACKWARD ALL FROM c"),
        (
            "BEGIN; MOVE ALL IN c; /* x */ fetch\nforward 2 from \"c\"",
            "BEGIN; MOVE ALL IN c; FETCH FORWARD 2 FROM \"c\"",
        ),
    ] {
        assert_eq!(ok("analyst_79", sql), out, "{sql}");
    }
    for sql in [
        "FETCH",
        "MOVE",
        "FETCH - FROM c",
        "FETCH 5",
        "DECLARE c CURSOR FOR SELECT phone FROM participant",
        "DECLARE c CURSOR FOR SELECT * FROM participant FOR UPDATE",
        "DECLARE c CURSOR FOR SELECT * FROM pg_authid",
        "FETCH 10 FROM c INTO x",
    ] {
        denied("analyst_79", sql);
    }
    denied("clerk_01", "DECLARE c CURSOR FOR SELECT * FROM participant");
    denied("loader_79", "DECLARE c CURSOR FOR SELECT 1");
}

#[test]
fn cursors_may_be_positioned_and_each_motion_is_named() {
    use crate::Motion;
    let step = |forward, count| Motion::Step { forward, count };
    for (sql, out, motion) in [
        (
            "FETCH LAST FROM c",
            "FETCH LAST FROM c",
            Motion::Absolute(-1),
        ),
        (
            "FETCH FIRST FROM c",
            "FETCH FIRST FROM c",
            Motion::Absolute(1),
        ),
        (
            "FETCH ABSOLUTE 51 FROM c",
            "FETCH ABSOLUTE 51 FROM c",
            Motion::Absolute(51),
        ),
        (
            "FETCH ABSOLUTE -2 FROM c",
            "FETCH ABSOLUTE -2 FROM c",
            Motion::Absolute(-2),
        ),
        (
            "FETCH RELATIVE -10 FROM c",
            "FETCH RELATIVE -10 FROM c",
            Motion::Relative(-10),
        ),
        (
            "FETCH RELATIVE 0 FROM c",
            "FETCH RELATIVE 0 FROM c",
            step(true, Some(0)),
        ),
        (
            "MOVE ABSOLUTE 50 IN c",
            "MOVE ABSOLUTE 50 IN c",
            Motion::Absolute(50),
        ),
        ("MOVE LAST IN c", "MOVE LAST IN c", Motion::Absolute(-1)),
        ("MOVE -3 FROM c", "MOVE -3 FROM c", step(false, Some(3))),
        ("MOVE +3 FROM c", "MOVE 3 FROM c", step(true, Some(3))),
        (
            "FETCH BACKWARD -2 c",
            "FETCH BACKWARD -2 FROM c",
            step(true, Some(2)),
        ),
        (
            "FETCH BACKWARD ALL FROM c",
            "FETCH BACKWARD ALL FROM c",
            step(false, None),
        ),
        (
            "FETCH PRIOR FROM c",
            "FETCH PRIOR FROM c",
            step(false, Some(1)),
        ),
    ] {
        let enforced = enforce("clerk_01", sql).unwrap_or_else(|d| panic!("{sql}: {d}"));
        let statement = &enforced.statements[0];
        assert_eq!(statement.sql, out, "{sql}");
        let cursor = statement.cursor.as_ref().expect("a cursor");
        assert_eq!(cursor.motion, Some(motion), "{sql}");
        assert!(!cursor.declare);
    }
    for sql in [
        "FETCH ABSOLUTE 99999999999999999999 FROM c",
        "FETCH 1.5 FROM c",
    ] {
        denied("clerk_01", sql);
    }
}
