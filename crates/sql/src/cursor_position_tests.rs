use proptest::prelude::*;

use super::*;

/// PostgreSQL's cursor over `n` rows, by the definitions of FETCH: position 0 is
/// before the first row, n + 1 after the last. Returns the positions of the rows a
/// FETCH with `motion` returns (a MOVE passes them) and moves the cursor.
fn reference(pos: &mut u64, n: u64, motion: Motion) -> Vec<u64> {
    let single = |pos: &mut u64, target: i128| {
        if target < 1 {
            *pos = 0;
            vec![]
        } else if target > n as i128 {
            *pos = n + 1;
            vec![]
        } else {
            *pos = target as u64;
            vec![*pos]
        }
    };
    match motion {
        Motion::Step { count: Some(0), .. } => {
            if *pos >= 1 && *pos <= n {
                vec![*pos]
            } else {
                vec![]
            }
        }
        Motion::Step { forward, count } => {
            let count = count.unwrap_or(u64::MAX);
            let mut rows = Vec::new();
            while (rows.len() as u64) < count {
                let next = if forward {
                    (*pos < n).then(|| *pos + 1)
                } else {
                    (*pos > 1).then(|| *pos - 1)
                };
                match next {
                    Some(next) => {
                        *pos = next;
                        rows.push(next);
                    }
                    None => {
                        *pos = if forward { n + 1 } else { 0 };
                        break;
                    }
                }
            }
            rows
        }
        Motion::Absolute(0) => {
            *pos = 0;
            vec![]
        }
        Motion::Absolute(m) if m > 0 => single(pos, m as i128),
        Motion::Absolute(m) => single(pos, n as i128 + 1 + m as i128),
        Motion::Relative(k) => single(pos, *pos as i128 + k as i128),
    }
}

fn motion() -> impl Strategy<Value = Motion> {
    prop_oneof![
        (any::<bool>(), proptest::option::of(0u64..8))
            .prop_map(|(forward, count)| Motion::Step { forward, count }),
        (-9i64..9).prop_map(Motion::Absolute),
        (-9i64..9)
            .prop_filter("RELATIVE 0 is a step", |k| *k != 0)
            .prop_map(Motion::Relative),
    ]
}

/// Runs `motions` over a cursor of `n` rows under `cap`: returns the positions of the
/// rows the model lets through, and whether it lost the cursor.
fn run(cap: u64, n: u64, motions: &[Motion]) -> (Vec<u64>, bool) {
    let mut model = CursorPosition::new(cap);
    let mut pos = 0;
    let mut sent = Vec::new();
    for &motion in motions {
        let rows = reference(&mut pos, n, motion);
        for (i, &row) in rows.iter().enumerate() {
            if model.row_allowed(motion, i as u64 + 1) {
                sent.push(row);
            }
        }
        model.observe(motion, rows.len() as u64);
    }
    (sent, model.lost)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Whatever the positioning, no row past the cap is let through, and the model
    /// never contradicts PostgreSQL's counts (so it never loses the cursor).
    #[test]
    fn no_positioning_reaches_past_the_cap(
        cap in 0u64..6,
        extra in 0u64..2,
        short in 0u64..6,
        motions in proptest::collection::vec(motion(), 1..12),
    ) {
        // The cursor holds at most cap + 1 rows (its LIMIT), perhaps fewer.
        let n = (cap + extra).saturating_sub(short % (cap + 1));
        let (sent, lost) = run(cap, n, &motions);
        prop_assert!(!lost, "lost the cursor over {n} rows");
        prop_assert!(sent.iter().all(|&row| row >= 1 && row <= cap), "{sent:?}");
    }
}

#[test]
fn forward_steps_stop_at_the_cap() {
    let fetch = |count| Motion::Step {
        forward: true,
        count: Some(count),
    };
    // FETCH 3 twice over a cursor of cap + 1 = 5 rows: rows 1..=4, then not row 5.
    let (sent, lost) = run(4, 5, &[fetch(3), fetch(3)]);
    assert_eq!(sent, [1, 2, 3, 4]);
    assert!(!lost);
}

#[test]
fn rows_counted_from_an_unknown_end_are_not_sent() {
    // FETCH LAST of a fresh cursor: the last row may be the one past the cap.
    let (sent, _) = run(4, 3, &[Motion::Absolute(-1)]);
    assert!(sent.is_empty());
    // Once FETCH ALL told where the end is, it is.
    let all = Motion::Step {
        forward: true,
        count: None,
    };
    let (sent, _) = run(4, 3, &[all, Motion::Absolute(-1), Motion::Relative(-1)]);
    assert_eq!(sent, [1, 2, 3, 3, 2]);
    // Over cap + 1 rows, the last is the one past the cap, also once known.
    let (sent, _) = run(4, 5, &[all, Motion::Absolute(-1), Motion::Absolute(-2)]);
    assert_eq!(sent, [1, 2, 3, 4, 4]);
    // Past the end after ABSOLUTE 3 found no row: the end is before row 3.
    let back = Motion::Step {
        forward: false,
        count: Some(1),
    };
    let (sent, _) = run(4, 2, &[Motion::Absolute(3), back]);
    assert_eq!(sent, [2]);
}

#[test]
fn jumps_and_refetches_within_the_cap() {
    let again = Motion::Step {
        forward: true,
        count: Some(0),
    };
    let (sent, _) = run(
        10,
        11,
        &[
            Motion::Absolute(7),
            again,
            Motion::Relative(-3),
            Motion::Absolute(11),
            Motion::Absolute(10),
        ],
    );
    assert_eq!(sent, [7, 7, 4, 10]);
}

#[test]
fn an_unexpected_count_loses_the_cursor() {
    let mut model = CursorPosition::new(10);
    // ABSOLUTE 3 returned a row, so there are at least 3; RELATIVE -1 cannot find none.
    model.observe(Motion::Absolute(3), 1);
    model.observe(Motion::Relative(-1), 0);
    assert!(model.lost);
    assert!(!model.row_allowed(Motion::Absolute(1), 1));
}

#[test]
fn motions_of_directions() {
    use sqlparser::ast::Value;
    let number = |n: &str| Value::Number(n.into(), false);
    let cases = [
        (FetchDirection::Last, Motion::Absolute(-1)),
        (FetchDirection::First, Motion::Absolute(1)),
        (
            FetchDirection::Count {
                limit: number("-3"),
            },
            Motion::Step {
                forward: false,
                count: Some(3),
            },
        ),
        (
            FetchDirection::Backward {
                limit: Some(number("-2")),
            },
            Motion::Step {
                forward: true,
                count: Some(2),
            },
        ),
        (
            FetchDirection::Relative { limit: number("0") },
            Motion::Step {
                forward: true,
                count: Some(0),
            },
        ),
        (
            FetchDirection::BackwardAll,
            Motion::Step {
                forward: false,
                count: None,
            },
        ),
    ];
    for (direction, motion) in cases {
        assert_eq!(Motion::of(&direction).unwrap(), motion, "{direction}");
    }
    assert!(Motion::of(&FetchDirection::Absolute {
        limit: number("99999999999999999999")
    })
    .is_err());
}
