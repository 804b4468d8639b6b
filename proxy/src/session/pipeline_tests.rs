//! Message sequences in, what the model expects out.

use super::*;
use crate::error::SqlState;

fn op(kind: OpKind) -> Op {
    Op::new(kind)
}

fn query(plans: usize, cap: Option<u64>) -> OpKind {
    OpKind::Query {
        statements: Some(
            (0..plans)
                .map(|_| StatementPlan {
                    key: CountKey::Statement,
                    cap,
                    declares: None,
                    copy_out: None,
                    motion: None,
                })
                .collect(),
        ),
        cap,
    }
}

fn parse(prepared: Option<u32>) -> OpKind {
    OpKind::Parse {
        name: String::new(),
        fetch_cursor: None,
        prepared,
    }
}

fn bind() -> OpKind {
    OpKind::Bind {
        portal: String::new(),
        statement: String::new(),
    }
}

fn execute(cap: Option<u64>) -> OpKind {
    OpKind::Execute {
        portal: String::new(),
        cap,
        max_rows: 0,
    }
}

fn denial(message: &str) -> ClientError {
    ClientError::error(SqlState::INSUFFICIENT_PRIVILEGE, message)
}

/// Feeds server messages (tags) and returns the steps.
fn feed(p: &mut Pipeline, tags: &[u8]) -> Vec<Step> {
    tags.iter()
        .map(|t| p.server(*t, b"").expect("the model places every message"))
        .collect()
}

fn rows(p: &mut Pipeline, n: usize) -> usize {
    (0..n)
        .filter(|_| {
            assert_eq!(p.server(b'D', b"").unwrap(), Step::Row);
            p.count_row(|| Ok(())) == RowVerdict::Forward
        })
        .count()
}

fn is_ready(step: &Step) -> bool {
    matches!(step, Step::Ready { .. })
}

#[test]
fn a_query_skipped_after_an_extended_error_gets_no_ready_for_query() {
    let mut p = Pipeline::default();
    p.push(Op::denied(parse(None), denial("first")));
    p.push(op(bind()));
    p.push(op(execute(Some(10))));
    p.push(Op::denied(query(0, Some(10)), denial("skipped")));
    p.push(op(OpKind::Sync));
    p.push(op(query(1, Some(3))));
    let steps = feed(&mut p, b"EZ");
    assert_eq!(steps[0], Step::Error(Some(denial("first"))));
    assert!(is_ready(&steps[1]), "one ReadyForQuery, for the Sync");
    // The next Query is answered with its own plan and cap, not a leftover's.
    assert_eq!(p.server(b'T', b"").unwrap(), Step::Description);
    assert_eq!(rows(&mut p, 5), 3);
    assert!(matches!(
        p.server(b'C', b"SELECT 4\0").unwrap(),
        Step::Complete(Completion::Exceeded {
            limit: Limit::PerStatement(3),
            more_pending: false
        })
    ));
    assert!(is_ready(&p.server(b'Z', b"I").unwrap()));
    assert!(p.is_idle());
}

#[test]
fn a_denial_belongs_to_its_own_message_only() {
    let mut p = Pipeline::default();
    p.push(op(query(1, None)));
    p.push(Op::denied(query(0, None), denial("second")));
    let steps = feed(&mut p, b"E");
    assert_eq!(steps[0], Step::Error(None), "the first Query's own error");
    let steps = feed(&mut p, b"ZEZ");
    assert!(is_ready(&steps[0]));
    assert_eq!(steps[1], Step::Error(Some(denial("second"))));
    assert!(is_ready(&steps[2]));
}

#[test]
fn a_multi_statement_query_stops_at_its_first_error() {
    let mut p = Pipeline::default();
    p.push(op(query(3, Some(2))));
    p.push(op(query(1, Some(2))));
    assert_eq!(feed(&mut p, b"TC")[1], Step::Complete(Completion::Done));
    assert_eq!(feed(&mut p, b"E")[0], Step::Error(None));
    assert!(is_ready(&feed(&mut p, b"Z")[0]));
    // The second Query starts with its own first statement.
    feed(&mut p, b"T");
    assert_eq!(rows(&mut p, 3), 2);
}

#[test]
fn every_sync_gets_its_ready_for_query_even_after_an_error() {
    let mut p = Pipeline::default();
    for _ in 0..2 {
        p.push(op(parse(None)));
        p.push(op(bind()));
        p.push(op(execute(None)));
        p.push(op(OpKind::Sync));
    }
    let steps = feed(&mut p, b"EZ12CZ");
    assert!(is_ready(&steps[1]) && is_ready(&steps[5]));
    assert!(p.is_idle());
    assert!(
        p.server(b'Z', b"I").is_err(),
        "a ReadyForQuery for nothing sent is a desync"
    );
}

#[test]
fn a_skipped_or_failed_parse_loses_its_statement() {
    let mut p = Pipeline::default();
    p.push(op(execute(None)));
    p.push(op(parse(Some(7))));
    p.push(op(OpKind::Sync));
    p.push(op(parse(Some(8))));
    p.push(op(OpKind::Sync));
    feed(&mut p, b"EZ");
    assert_eq!(p.take_lost(), vec![7]);
    feed(&mut p, b"1Z");
    assert!(p.take_lost().is_empty(), "8 was confirmed");
}

#[test]
fn rows_count_across_executes_of_a_portal_from_its_bind_complete() {
    let mut p = Pipeline::default();
    p.push(op(bind()));
    p.push(op(execute(Some(5))));
    p.push(op(execute(Some(5))));
    p.push(op(OpKind::Sync));
    feed(&mut p, b"2");
    assert_eq!(rows(&mut p, 3), 3);
    feed(&mut p, b"s");
    assert_eq!(rows(&mut p, 3), 2, "the portal's count carries over");
    assert!(matches!(
        p.server(b's', b"").unwrap(),
        Step::Complete(Completion::Exceeded { .. })
    ));
    feed(&mut p, b"Z");
}

#[test]
fn an_execute_of_a_declared_cursor_counts_with_its_fetches() {
    let mut p = Pipeline::default();
    p.push(op(OpKind::Query {
        statements: Some(
            [StatementPlan {
                key: CountKey::Cursor("c".into()),
                cap: Some(5),
                declares: None,
                copy_out: None,
                motion: None,
            }]
            .into(),
        ),
        cap: Some(5),
    }));
    feed(&mut p, b"T");
    assert_eq!(rows(&mut p, 3), 3, "FETCH 3 FROM c");
    feed(&mut p, b"CZ");
    // No Bind made portal "c": it is the cursor, read by the protocol.
    p.push(op(OpKind::Execute {
        portal: "c".into(),
        cap: Some(5),
        max_rows: 0,
    }));
    p.push(op(OpKind::Sync));
    assert_eq!(rows(&mut p, 3), 2, "the cursor's count carries over");
}

/// One statement of a simple Query on cursor `c`, ended with `tag`.
fn cursor_statement(
    p: &mut Pipeline,
    declares: bool,
    motion: Option<Motion>,
    upstream: usize,
    tag: &[u8],
) -> usize {
    p.push(op(OpKind::Query {
        statements: Some(
            [StatementPlan {
                key: if declares {
                    CountKey::Statement
                } else {
                    CountKey::Cursor("c".into())
                },
                cap: Some(3),
                declares: declares.then(|| "c".to_owned()),
                copy_out: None,
                motion,
            }]
            .into(),
        ),
        cap: Some(100),
    }));
    let mut forwarded = 0;
    if upstream > 0 {
        feed(p, b"T");
        forwarded = rows(p, upstream);
    }
    assert!(matches!(
        p.server(backend_tag::COMMAND_COMPLETE, tag).unwrap(),
        Step::Complete(_)
    ));
    feed(p, b"Z");
    forwarded
}

#[test]
fn a_scrolled_cursor_sends_no_row_past_its_cap_and_counts_every_row_sent() {
    let mut p = Pipeline::default();
    let last = Some(Motion::Absolute(-1));
    let all = Some(Motion::Step {
        forward: true,
        count: None,
    });
    assert_eq!(
        cursor_statement(&mut p, true, None, 0, b"DECLARE CURSOR\0"),
        0
    );
    // The cursor's query holds cap + 1 = 4 rows; where its end is, is not known yet,
    // so its last row may be the one past the cap.
    assert_eq!(cursor_statement(&mut p, false, last, 1, b"FETCH 1\0"), 0);
    // MOVE ABSOLUTE 0 rewinds; MOVE ALL finds the end (4 rows: the cap was passed).
    let rewind = Some(Motion::Absolute(0));
    assert_eq!(cursor_statement(&mut p, false, rewind, 0, b"MOVE 0\0"), 0);
    assert_eq!(cursor_statement(&mut p, false, all, 0, b"MOVE 4\0"), 0);
    // Row 3 (ABSOLUTE -2 of 4) is within the cap, row 4 is not.
    let third = Some(Motion::Absolute(-2));
    assert_eq!(cursor_statement(&mut p, false, third, 1, b"FETCH 1\0"), 1);
    assert_eq!(cursor_statement(&mut p, false, last, 1, b"FETCH 1\0"), 0);
    // Rows fetched again count: 1 sent, 2 more allowed, then the cap.
    let back = Some(Motion::Step {
        forward: false,
        count: Some(3),
    });
    assert_eq!(cursor_statement(&mut p, false, back, 3, b"FETCH 3\0"), 2);
}

#[test]
fn a_copy_swallows_syncs_and_ends_at_copy_done() {
    let mut p = Pipeline::default();
    p.push(op(parse(None)));
    p.push(op(bind()));
    p.push(op(execute(None)));
    p.push(op(OpKind::Sync));
    p.push(op(OpKind::CopyData));
    p.push(op(OpKind::CopyData));
    p.push(op(OpKind::CopyDone));
    p.push(op(OpKind::Sync));
    let steps = feed(&mut p, b"12GCZ");
    assert_eq!(steps[3], Step::Complete(Completion::Done));
    assert!(is_ready(&steps[4]));
    assert!(p.is_idle(), "the first Sync was swallowed by the COPY");
}

#[test]
fn the_proxys_copy_fail_carries_its_denial_and_later_copy_messages_are_ignored() {
    let mut p = Pipeline::default();
    p.push(op(query(2, None)));
    p.push(op(OpKind::CopyData));
    p.push(Op::denied(OpKind::CopyFail, denial("row refused")));
    p.push(op(OpKind::CopyData));
    p.push(op(OpKind::CopyDone));
    p.push(op(query(1, Some(1))));
    let steps = feed(&mut p, b"TCGEZ");
    assert_eq!(steps[3], Step::Error(Some(denial("row refused"))));
    assert!(is_ready(&steps[4]));
    // The leftover copy messages are ignored by the server; the next Query is next.
    feed(&mut p, b"T");
    assert_eq!(rows(&mut p, 2), 1);
}

#[test]
fn an_ambiguous_copy_failure_is_a_desync() {
    let mut p = Pipeline::default();
    p.push(op(query(1, None)));
    p.push(op(OpKind::CopyData));
    p.push(op(OpKind::Sync));
    p.push(op(OpKind::CopyData));
    feed(&mut p, b"G");
    assert!(p.server(b'E', b"").is_err());
}

#[test]
fn copy_messages_to_an_idle_server_are_not_queued() {
    let mut p = Pipeline::default();
    p.push(op(OpKind::CopyData));
    p.push(op(OpKind::CopyDone));
    assert!(p.is_idle());
}

#[test]
fn stopping_a_statement_with_more_sent_behind_it_is_refused() {
    let mut p = Pipeline::default();
    p.push(op(bind()));
    p.push(op(execute(Some(1))));
    p.push(op(execute(Some(1))));
    p.push(op(OpKind::Sync));
    feed(&mut p, b"2");
    rows(&mut p, 2);
    assert_eq!(
        p.server(b'C', b"").unwrap(),
        Step::Complete(Completion::Exceeded {
            limit: Limit::PerStatement(1),
            more_pending: true
        })
    );
    let mut p = Pipeline::default();
    p.push(op(execute(Some(1))));
    feed(&mut p, b"");
    rows(&mut p, 2);
    assert!(matches!(
        p.server(b'C', b"").unwrap(),
        Step::Complete(Completion::Exceeded {
            more_pending: false,
            ..
        })
    ));
    assert!(p.stop());
    assert!(
        p.client_skip,
        "the client's messages up to Sync are skipped"
    );

    // With its Sync already sent, nothing of the client's is held back.
    let mut p = Pipeline::default();
    p.push(op(execute(Some(1))));
    p.push(op(OpKind::Sync));
    rows(&mut p, 2);
    p.server(b's', b"").unwrap();
    assert!(p.stop());
    assert!(!p.client_skip);
    assert!(is_ready(&feed(&mut p, b"Z")[0]));
}

#[test]
fn the_hourly_quota_is_asked_for_every_forwarded_row() {
    let mut p = Pipeline::default();
    p.push(op(query(1, None)));
    feed(&mut p, b"T");
    let mut left = 2;
    let mut take = || {
        let ok = left > 0;
        left -= u32::from(ok);
        if ok {
            Ok(())
        } else {
            Err(Limit::Hourly)
        }
    };
    let forwarded = (0..4)
        .filter(|_| {
            p.server(b'D', b"").unwrap();
            p.count_row(&mut take) == RowVerdict::Forward
        })
        .count();
    assert_eq!(forwarded, 2);
    assert!(matches!(
        p.server(b'C', b"").unwrap(),
        Step::Complete(Completion::Exceeded {
            limit: Limit::Hourly,
            ..
        })
    ));
}

#[test]
fn each_statement_of_a_query_counts_under_its_own_cap() {
    let mut p = Pipeline::default();
    p.push(op(OpKind::Query {
        statements: Some(
            [Some(1), None]
                .into_iter()
                .map(|cap| StatementPlan {
                    key: CountKey::Statement,
                    cap,
                    declares: None,
                    copy_out: None,
                    motion: None,
                })
                .collect(),
        ),
        cap: Some(1),
    }));
    let mut counted = Vec::new();
    for statement in 0..2 {
        feed(&mut p, b"T");
        let forwarded = (0..3)
            .filter(|_| {
                p.server(b'D', b"").unwrap();
                p.count_row(|| Ok(())) == RowVerdict::Forward
            })
            .count();
        counted.push((statement, forwarded));
        let _ = p.server(b'C', b"SELECT 3\0").unwrap();
    }
    assert_eq!(counted, [(0, 1), (1, 3)], "the second statement has no cap");
}

#[test]
fn held_rows_and_shadow_caps() {
    let mut p = Pipeline {
        hold: true,
        ..Pipeline::default()
    };
    p.push(op(query(1, Some(2))));
    feed(&mut p, b"T");
    p.server(b'D', b"").unwrap();
    assert_eq!(p.count_row(|| Ok(())), RowVerdict::Hold);
    let mut shadow = Pipeline {
        shadow: true,
        ..Pipeline::default()
    };
    shadow.push(op(query(1, Some(1))));
    feed(&mut shadow, b"T");
    let forwarded = (0..3)
        .filter(|_| {
            shadow.server(b'D', b"").unwrap();
            shadow.count_row(|| Ok(())) == RowVerdict::Forward
        })
        .count();
    assert_eq!(forwarded, 3, "a shadow cap stops nothing");
    assert_eq!(
        shadow.server(b'C', b"SELECT 3\0").unwrap(),
        Step::Complete(Completion::Shadowed { cap: 1 })
    );
}
