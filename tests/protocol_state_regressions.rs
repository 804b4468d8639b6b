//! Per-statement state follows PostgreSQL's protocol order (issue 9): a COPY
//! pipelined behind another statement still has its rows checked; after an
//! error in the extended protocol (PostgreSQL skips everything up to Sync, a
//! simple Query included) the next statements are still capped, charged to
//! the hourly quota and denied as their own; pipelined statements share what
//! is left of the quota; and maskgate's reserved statement names cannot be
//! taken by clients. Every restricted account of the example policy, the
//! write-capable claims officer included, speaking the protocol by hand.

#[path = "common/enforcement.rs"]
mod enforcement;
#[path = "common/wire.rs"]
mod wire;

use enforcement::*;
use maskgate_testkit::{register, TestProxy};
use wire::*;

/// A proxy with the example policy's quotas.
async fn proxy_with_quotas() -> TestProxy {
    register::start_proxy(cluster())
        .await
        .expect("proxy starts with the example policy")
}

async fn login(proxy: &TestProxy, user: &str) -> Wire {
    Wire::login(proxy, user)
        .await
        .unwrap_or_else(|e| panic!("{user} logs in: {e}"))
}

fn codes(seen: &[Msg]) -> Vec<String> {
    seen.iter().filter_map(Msg::code).collect()
}

fn rows(seen: &[Msg]) -> usize {
    seen.iter().filter(|m| m.tag == b'D').count()
}

/// The row cap of each restricted role of the example policy.
fn cap_of(login: &str) -> usize {
    match login {
        CLERK | CLERK_79 => 50,
        ANALYST => 10_000,
        INVESTIGATOR => 500,
        OFFICER => 200,
        other => panic!("no cap known for {other}"),
    }
}

const COPY_CLAIMS: &str = "COPY benefit_claim (id, participant_id, kind, amount, submitted_on, status, province_code) FROM STDIN";

/// A claim of province "01": outside every COPY-capable account's scope.
fn out_of_scope_claim(id: u32) -> String {
    format!("{id}\t10\tsickness\t1000.00\t2025-03-02\tsubmitted\t01\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_pipelined_behind_another_statement_still_checks_every_row() {
    let proxy = proxy_with_quotas().await;
    let su = superuser(cluster()).await;
    let mut failures = Vec::new();
    for (n, login) in RESTRICTED.into_iter().enumerate() {
        // 1: SELECT 1 and the COPY in one write, the data once PostgreSQL asks for it.
        // 2: everything, the data and CopyDone included, in one write.
        for variant in 1..=2u32 {
            let id = 900_100 + 10 * n as u32 + variant;
            let mut wire = login_or_skip(&proxy, login, &mut failures).await;
            let Some(wire) = wire.as_mut() else { continue };
            let row = out_of_scope_claim(id);
            let batch = [query("SELECT 1"), query(COPY_CLAIMS)].concat();
            let seen = if variant == 1 {
                wire.send(&batch).await;
                let mut seen = match wire.until_ready().await {
                    Ok(seen) => seen,
                    Err(e) => {
                        failures.push(format!("{login} variant {variant}: {e}"));
                        continue;
                    }
                };
                let asked = match wire.until(|m| m.tag == b'G' || m.tag == b'Z').await {
                    Ok(more) => {
                        let asked = more.last().is_some_and(|m| m.tag == b'G');
                        seen.extend(more);
                        asked
                    }
                    Err(e) => {
                        failures.push(format!("{login} variant {variant}: {e}"));
                        continue;
                    }
                };
                if asked {
                    wire.send(&[copy_data(&row), copy_done()].concat()).await;
                    seen.extend(wire.until_ready().await.unwrap_or_default());
                }
                seen
            } else {
                wire.send(&[batch, copy_data(&row), copy_done()].concat())
                    .await;
                let mut seen = wire.until_ready().await.unwrap_or_default();
                seen.extend(wire.until_ready().await.unwrap_or_default());
                seen
            };
            let inserted = column(
                &su,
                &format!("SELECT count(*) FROM benefit_claim WHERE id = {id}"),
            )
            .await;
            if inserted.first().and_then(|v| v.as_deref()) != Some("0") {
                failures.push(format!(
                    "{login} variant {variant}: LEAK: the out-of-scope row was inserted (answers {:?})",
                    codes(&seen)
                ));
                let _ = su
                    .simple_query(&format!("DELETE FROM benefit_claim WHERE id = {id}"))
                    .await;
            } else if codes(&seen).is_empty() {
                failures.push(format!(
                    "{login} variant {variant}: the COPY was neither refused nor failed"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn login_or_skip(proxy: &TestProxy, login: &str, failures: &mut Vec<String>) -> Option<Wire> {
    match Wire::login(proxy, login).await {
        Ok(wire) => Some(wire),
        Err(e) => {
            failures.push(format!("{login}: login failed: {e}"));
            None
        }
    }
}

/// Reads the answer of one statement sent after a batch: messages up to a
/// ReadyForQuery that follows a row, a CommandComplete or an error (a stray
/// ReadyForQuery left over from the batch is skipped, and reported).
async fn answer(wire: &mut Wire) -> Result<(Vec<Msg>, usize), String> {
    let mut seen = Vec::new();
    let mut stray = 0;
    loop {
        let m = wire.recv().await?;
        let answered = seen
            .iter()
            .any(|m: &Msg| matches!(m.tag, b'D' | b'C' | b'E' | b'I'));
        if m.tag == b'Z' && !answered {
            stray += 1;
            continue;
        }
        let done = m.tag == b'Z';
        seen.push(m);
        if done {
            return Ok((seen, stray));
        }
    }
}

/// After an error in the extended protocol, PostgreSQL skips everything up to
/// Sync, a simple Query in the same batch included: it gets no answer. The
/// statements after the batch must still be capped, charged and denied as
/// their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_after_a_failed_extended_batch_are_still_capped_counted_and_denied() {
    let proxy = proxy_with_quotas().await;
    let mut failures = Vec::new();
    let batch = [
        parse("", "SELECT 1 / 0"),
        bind("", "", 0),
        execute("", 0),
        query("SELECT 1"),
        sync(),
    ]
    .concat();
    for login in RESTRICTED {
        let Some(mut wire) = login_or_skip(&proxy, login, &mut failures).await else {
            continue;
        };
        wire.send(&batch).await;
        match wire.until_ready().await {
            Ok(seen) if codes(&seen) == ["22012"] => {}
            Ok(seen) => failures.push(format!(
                "{login}: the batch answered {:?}, expected the division error alone",
                codes(&seen)
            )),
            Err(e) => {
                failures.push(format!("{login}: the batch: {e}"));
                continue;
            }
        }
        let cap = cap_of(login);
        wire.send(&query(&format!(
            "SELECT g FROM generate_series(1, {}) g",
            2 * cap
        )))
        .await;
        match answer(&mut wire).await {
            Ok((seen, stray)) => {
                if stray > 0 {
                    failures.push(format!(
                        "{login}: {stray} stray ReadyForQuery after the batch"
                    ));
                }
                if rows(&seen) > cap {
                    failures.push(format!(
                        "{login}: {} rows after the batch, over the cap of {cap}",
                        rows(&seen)
                    ));
                }
                if codes(&seen) != ["54000"] {
                    failures.push(format!(
                        "{login}: expected the row-cap error after the batch, got {:?}",
                        codes(&seen)
                    ));
                }
            }
            Err(e) => {
                failures.push(format!("{login}: the capped query: {e}"));
                continue;
            }
        }
        wire.send(&query("SELECT rolpassword FROM pg_authid")).await;
        match answer(&mut wire).await {
            Ok((seen, _)) => {
                let messages: Vec<String> = seen
                    .iter()
                    .filter_map(|m| m.field(b'M').filter(|_| m.tag == b'E'))
                    .collect();
                if codes(&seen) != ["42501"] || rows(&seen) > 0 {
                    failures.push(format!(
                        "{login}: a denied statement after the batch answered {:?} with {} row(s)",
                        codes(&seen),
                        rows(&seen)
                    ));
                }
                if messages.iter().any(|m| m.contains("maskgate_denied")) {
                    failures.push(format!(
                        "{login}: the denial reached PostgreSQL as text: {messages:?}"
                    ));
                }
            }
            Err(e) => failures.push(format!("{login}: the denied query: {e}")),
        }
    }

    // The hourly quota after the same batch: 5000 rows per hour for the investigator.
    let mut wire = login(&proxy, INVESTIGATOR).await;
    wire.send(&batch).await;
    let _ = wire.until_ready().await;
    let mut received = 0;
    let mut refused = false;
    for _ in 0..12 {
        wire.send(&query("SELECT g FROM generate_series(1, 500) g"))
            .await;
        let Ok((seen, _)) = answer(&mut wire).await else {
            break;
        };
        received += rows(&seen);
        if codes(&seen).iter().any(|c| c == "53400") {
            refused = true;
            break;
        }
    }
    if received > 5000 || !refused {
        failures.push(format!(
            "investigator: {received} rows after the batch under a quota of 5000 per hour (refused: {refused})"
        ));
    }
    eprintln!("rows received under the 5000-row hourly quota after the batch: {received}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Pipelined statements share what is left of the hourly quota: none may
/// spend what another one already spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_statements_cannot_each_spend_the_rest_of_the_hourly_quota() {
    let proxy = proxy_with_quotas().await;
    let mut failures = Vec::new();
    // (login, rows per hour, rows per statement while spending, statements spent)
    for (login, quota, per, spent) in [
        (INVESTIGATOR, 5_000usize, 500usize, 9usize),
        (OFFICER, 20_000, 200, 98),
        (ANALYST, 200_000, 10_000, 19),
    ] {
        let Some(mut wire) = login_or_skip(&proxy, login, &mut failures).await else {
            continue;
        };
        let mut received = 0;
        for _ in 0..spent {
            let seen = wire
                .until_ready_after(&query(&format!(
                    "SELECT g FROM generate_series(1, {per}) g"
                )))
                .await;
            received += rows(&seen);
        }
        let left = quota - received;
        // Five statements, each under the cap, together over what is left.
        let each = (left / 2).min(per);
        let pipeline: Vec<u8> = (0..5)
            .flat_map(|_| query(&format!("SELECT g FROM generate_series(1, {each}) g")))
            .collect();
        wire.send(&pipeline).await;
        let mut pipelined = 0;
        for _ in 0..5 {
            match wire.until_ready().await {
                Ok(seen) => pipelined += rows(&seen),
                Err(e) => {
                    failures.push(format!("{login}: the pipeline: {e}"));
                    break;
                }
            }
        }
        eprintln!("{login}: {pipelined} pipelined rows with {left} left of {quota}");
        if pipelined > left {
            failures.push(format!(
                "{login}: five pipelined statements returned {pipelined} rows with {left} left of the hourly quota"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// PostgreSQL keeps SQL cursors and protocol portals in one namespace, so an
/// Execute message can read a `DECLARE`d cursor without any Bind: its rows
/// count with the cursor's FETCHes against the one cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_read_by_a_protocol_execute_shares_the_cursors_cap() {
    let proxy = proxy_with_quotas().await;
    let mut failures = Vec::new();
    for login in [CLERK_79, INVESTIGATOR, OFFICER, ANALYST] {
        let Some(mut wire) = login_or_skip(&proxy, login, &mut failures).await else {
            continue;
        };
        let cap = cap_of(login);
        let mut received = 0;
        for sql in [
            "BEGIN".to_string(),
            format!(
                "DECLARE c CURSOR FOR SELECT g FROM generate_series(1, {}) g",
                cap * 3
            ),
            "FETCH 1 FROM c".to_string(),
        ] {
            received += rows(&wire.until_ready_after(&query(&sql)).await);
        }
        let mut batch = execute("c", 0);
        batch.extend(sync());
        let seen = wire.until_ready_after(&batch).await;
        received += rows(&seen);
        eprintln!(
            "{login}: {received} rows through FETCH and Execute, cap {cap}: {:?}",
            codes(&seen)
        );
        if received > cap {
            failures.push(format!(
                "{login}: {received} rows of one cursor through FETCH and a protocol Execute, cap {cap}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// maskgate's own statement names (`_maskgate_<n>`) cannot be taken by a
/// client through SQL `PREPARE`, `DECLARE` or a Bind portal name, and the
/// driver's unnamed statements keep running what they were parsed from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_statement_names_cannot_be_taken_by_clients() {
    let proxy = proxy_with_quotas().await;
    let mut failures = Vec::new();
    let taken = [
        "PREPARE _maskgate_0 AS SELECT g FROM generate_series(1, 7) g",
        "PREPARE _maskgate_1 AS SELECT g FROM generate_series(1, 7) g",
        "PREPARE \"_maskgate_2\" AS SELECT g FROM generate_series(1, 7) g",
        "PREPARE _MASKGATE_3 AS SELECT g FROM generate_series(1, 7) g",
        "PREPARE _maskgate_4 (int) AS SELECT $1 + 1",
    ];
    for login in RESTRICTED {
        let client = match proxy.connect(login, PASSWORD).await {
            Ok(client) => client,
            Err(e) => {
                failures.push(format!("{login}: login failed: {e}"));
                continue;
            }
        };
        for sql in taken {
            for (protocol, outcome) in [
                ("simple", simple(&client, sql).await),
                ("extended", extended(&client, sql).await),
            ] {
                if outcome.error.as_ref().map(|e| e.code.as_str()) != Some("42501") {
                    failures.push(format!(
                        "{login} [{protocol}]: `{sql}` was not refused with 42501: {:?}",
                        outcome.error.map(|e| e.code)
                    ));
                }
            }
        }
        for declare in [
            "DECLARE _maskgate_5 CURSOR FOR SELECT 1",
            "DECLARE \"_maskgate_6\" CURSOR FOR SELECT 1",
        ] {
            let _ = simple(&client, "BEGIN").await;
            let outcome = simple(&client, declare).await;
            if outcome.error.as_ref().map(|e| e.code.as_str()) != Some("42501") {
                failures.push(format!(
                    "{login}: `{declare}` was not refused with 42501: {:?}",
                    outcome.error.map(|e| e.code)
                ));
            }
            let _ = simple(&client, "ROLLBACK").await;
        }
        // A session whose unnamed statements maskgate prepares under its own
        // names: whatever the client could take first, each unnamed statement
        // runs what it was parsed from.
        let mut wire = match Wire::login(&proxy, login).await {
            Ok(wire) => wire,
            Err(e) => {
                failures.push(format!("{login}: login failed: {e}"));
                continue;
            }
        };
        for sql in taken {
            let _ = wire.simple(sql).await;
        }
        for k in 0..6 {
            let sql = format!("SELECT {k} + 40 AS v");
            let outcome = wire.extended_text(&sql).await;
            let values: Vec<Option<String>> =
                outcome.rows.iter().map(|r| r.values[0].clone()).collect();
            if outcome.error.is_some() || values != [Some((k + 40).to_string())] {
                failures.push(format!(
                    "{login}: unnamed `{sql}` gave {} row(s), error {:?}",
                    values.len(),
                    outcome.error.map(|e| e.code)
                ));
            }
        }
        // A Bind to a portal of the reserved prefix.
        let seen = wire
            .until_ready_after(
                &[
                    parse("", "SELECT 1"),
                    bind("_maskgate_0", "", 0),
                    execute("_maskgate_0", 0),
                    sync(),
                ]
                .concat(),
            )
            .await;
        if codes(&seen) != ["42501"] {
            failures.push(format!(
                "{login}: a Bind to portal _maskgate_0 answered {:?}, not 42501",
                codes(&seen)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
