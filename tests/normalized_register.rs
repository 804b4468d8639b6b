//! Policies for a normalized register, end to end through a real driver in both
//! protocols: child tables that carry only the participant's id are seen only through
//! in-scope participants (joins, subqueries, CTEs, UNION, LATERAL, windows,
//! RETURNING), error oracles on them never fire for out-of-scope rows, lookups go
//! through the parent, writes must reference in-scope parents; rows packed into values
//! and paging (OFFSET, a session's budget) are stopped; a reference table is not
//! capped; a statement over its cap gets no row; the new masks on Vietnamese text; and
//! a monitored role runs as sent while its trail and metrics say what enforcement
//! would have done.

#[path = "common/enforcement.rs"]
mod enforcement;

use std::collections::HashSet;

use enforcement::*;
use maskgate_testkit::register::{self, PROVINCIAL, TRAINEE};
use maskgate_testkit::{http_get, metric_sum, wait_for_record, TestProxy};
use tokio_postgres::Client;

async fn proxy() -> TestProxy {
    register::start_proxy(cluster())
        .await
        .expect("proxy starts with the example policy")
}

async fn login(proxy: &TestProxy, user: &str) -> Client {
    proxy
        .connect(user, PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("{user} logs in: {e}"))
}

/// Ids of the participants of province 01.
fn in_scope() -> HashSet<String> {
    register::participants()
        .filter(|p| p.province_code == "01")
        .map(|p| p.id.to_string())
        .collect()
}

fn out_of_scope_id() -> i64 {
    register::participants()
        .find(|p| p.province_code == "79")
        .unwrap()
        .id
}

fn in_scope_id() -> i64 {
    register::participants()
        .find(|p| p.province_code == "01")
        .unwrap()
        .id
}

/// Both protocols' outcomes of `sql`.
async fn both(client: &Client, sql: &str) -> [(&'static str, Outcome); 2] {
    [
        ("simple", simple(client, sql).await),
        ("extended", extended(client, sql).await),
    ]
}

#[track_caller]
fn expect_code(outcome: &Outcome, code: &str, what: &str) -> Failure {
    match &outcome.error {
        Some(e) if e.code == code => e.clone(),
        other => panic!(
            "{what}: expected {code}, got {other:?} with {} rows",
            outcome.rows.len()
        ),
    }
}

#[track_caller]
fn expect_ok(outcome: &Outcome, what: &str) {
    if let Some(e) = &outcome.error {
        panic!("{what}: {} {}", e.code, e.message);
    }
}

async fn metrics(proxy: &TestProxy) -> String {
    http_get(proxy.admin_addr().expect("admin endpoint"), "/metrics")
        .await
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_rows_come_only_through_in_scope_parents() {
    let proxy = proxy().await;
    let officer = login(&proxy, PROVINCIAL).await;
    let scope = in_scope();
    for sql in [
        "SELECT nguoi_id FROM \"TheBHYT\" ORDER BY id LIMIT 20",
        "SELECT t.nguoi_id FROM \"TheBHYT\" t JOIN bank_account b ON b.participant_id = t.nguoi_id ORDER BY t.id DESC LIMIT 20",
        "SELECT nguoi_id FROM \"TheBHYT\" WHERE nguoi_id IN (SELECT participant_id FROM bank_account WHERE bank_code = 'VCB') ORDER BY 1 LIMIT 20",
        "WITH c AS (SELECT nguoi_id FROM \"TheBHYT\") SELECT nguoi_id FROM c ORDER BY 1 DESC LIMIT 20",
        "SELECT nguoi_id FROM \"TheBHYT\" UNION SELECT participant_id FROM bank_account ORDER BY 1 LIMIT 20",
        "SELECT x.pid FROM participant p, LATERAL (SELECT b.participant_id AS pid FROM bank_account b WHERE b.participant_id = p.id) x ORDER BY 1 LIMIT 20",
        "SELECT nguoi_id, row_number() OVER (PARTITION BY \"nơi đăng ký\" ORDER BY id) FROM \"TheBHYT\" ORDER BY id LIMIT 20",
        "SELECT b.participant_id FROM benefit_payment y JOIN bank_account b ON b.id = y.bank_account_id ORDER BY y.id LIMIT 20",
        "SELECT DISTINCT t.nguoi_id FROM \"TheBHYT\" t WHERE EXISTS (SELECT 1 FROM benefit_payment y WHERE y.bank_account_id = t.nguoi_id) ORDER BY 1 LIMIT 20",
    ] {
        for (protocol, outcome) in both(&officer, sql).await {
            expect_ok(&outcome, sql);
            assert!(!outcome.rows.is_empty(), "{protocol} {sql}");
            for row in &outcome.rows {
                let id = row.values[0].as_deref().unwrap();
                assert!(scope.contains(id), "{protocol} {sql}: participant {id} is out of scope");
            }
        }
    }
    let cards = (register::PARTICIPANTS as usize * 4) / 10;
    let payments = register::benefit_payments()
        .filter(|y| scope.contains(&y.bank_account_id.to_string()))
        .count();
    for (sql, expected) in [
        ("SELECT count(*) FROM \"TheBHYT\"", cards),
        ("SELECT count(*) FROM bank_account", cards),
        ("SELECT count(*) FROM benefit_payment", payments),
    ] {
        for (protocol, outcome) in both(&officer, sql).await {
            expect_ok(&outcome, sql);
            assert_eq!(
                outcome.rows[0].values[0].as_deref(),
                Some(expected.to_string().as_str()),
                "{protocol} {sql}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_oracles_on_child_tables_never_fire_for_out_of_scope_rows() {
    let proxy = proxy().await;
    let officer = login(&proxy, PROVINCIAL).await;
    let other = out_of_scope_id();
    for sql in [
        format!("SELECT count(*) FROM \"TheBHYT\" WHERE 1 / (CASE WHEN nguoi_id = {other} THEN 0 ELSE 1 END) = 1"),
        format!("SELECT count(*) FROM bank_account WHERE CAST(CASE WHEN participant_id = {other} THEN 'x' ELSE '1' END AS integer) = 1"),
        format!("SELECT count(*) FROM benefit_payment WHERE 1 / (CASE WHEN bank_account_id = {other} THEN 0 ELSE 1 END) = 1"),
        format!("SELECT t.id FROM \"TheBHYT\" t JOIN bank_account b ON b.participant_id = t.nguoi_id AND 1 / (b.participant_id - {other}) > -1 ORDER BY t.id LIMIT 1"),
    ] {
        for (protocol, outcome) in both(&officer, &sql).await {
            expect_ok(&outcome, &format!("{protocol} {sql}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_through_the_parent_and_the_new_masks() {
    let proxy = proxy().await;
    let clerk = login(&proxy, CLERK).await;
    let person = register::participant(P01);
    let card = register::the_bhyt()
        .find(|t| t.nguoi_id == person.id)
        .unwrap();
    let by_card = format!(
        "SELECT \"số thẻ\", \"nơi đăng ký\" FROM \"TheBHYT\" WHERE \"số thẻ\" = '{}'",
        card.so_the
    );
    let through = format!(
        "SELECT p.full_name, t.\"số thẻ\" FROM participant p JOIN \"TheBHYT\" t ON t.nguoi_id = p.id WHERE p.citizen_id = '{}'",
        person.citizen_id
    );
    let masked_card = format!("{}{}", "*".repeat(12), &card.so_the[12..]);
    for (protocol, outcome) in both(&clerk, &by_card).await {
        expect_ok(&outcome, &by_card);
        assert_eq!(outcome.rows.len(), 1, "{protocol}");
        assert_eq!(
            outcome.rows[0].values[0].as_deref(),
            Some(masked_card.as_str()),
            "{protocol}"
        );
        assert_eq!(
            outcome.rows[0].values[1].as_deref(),
            Some(card.noi_dang_ky.as_str())
        );
    }
    for (protocol, outcome) in both(&clerk, &through).await {
        expect_ok(&outcome, &through);
        assert_eq!(outcome.rows.len(), 1, "{protocol}");
        assert_eq!(
            outcome.rows[0].values[1].as_deref(),
            Some(masked_card.as_str())
        );
    }
    for browse in [
        "SELECT \"số thẻ\" FROM \"TheBHYT\" WHERE valid_to > '2026-01-01'",
        "SELECT t.\"số thẻ\" FROM participant p JOIN \"TheBHYT\" t ON t.nguoi_id = p.id WHERE p.gender = 'F'",
    ] {
        for (protocol, outcome) in both(&clerk, browse).await {
            let e = expect_code(&outcome, "42501", browse);
            assert!(e.message.contains("lookup-only"), "{protocol}: {}", e.message);
        }
    }

    let officer = login(&proxy, PROVINCIAL).await;
    let sql = format!(
        "SELECT p.full_name, p.email, p.phone, b.holder_email, b.account_number \
         FROM participant p JOIN bank_account b ON b.participant_id = p.id WHERE p.id = {}",
        person.id
    );
    let last_word = person.full_name.rsplit(' ').next().unwrap();
    let kept = format!(" {last_word}");
    let name = format!(
        "{}{kept}",
        "*".repeat(person.full_name.chars().count() - kept.chars().count())
    );
    let account = register::bank_accounts()
        .find(|a| a.id == person.id)
        .unwrap();
    for (protocol, outcome) in both(&officer, &sql).await {
        expect_ok(&outcome, &sql);
        let row = &outcome.rows[0];
        assert_eq!(
            row.values[0].as_deref(),
            Some(name.as_str()),
            "{protocol}: {}",
            person.full_name
        );
        assert_eq!(
            row.values[1].as_deref(),
            Some("***@example.invalid"),
            "{protocol}"
        );
        assert_eq!(row.values[2], None, "{protocol}: phone reads as NULL");
        assert_eq!(
            row.values[3].as_deref(),
            Some("***@nganhang.vn"),
            "{protocol}"
        );
        let number = format!("{}{}", "*".repeat(9), &account.account_number[9..]);
        assert_eq!(
            row.values[4].as_deref(),
            Some(number.as_str()),
            "{protocol}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_must_reference_in_scope_parents() {
    let proxy = proxy().await;
    let mut officer = login(&proxy, PROVINCIAL).await;
    let (mine, other) = (in_scope_id(), out_of_scope_id());
    let insert = "INSERT INTO \"TheBHYT\" (id, nguoi_id, \"số thẻ\", valid_to) VALUES ($1, $2, $3, '2027-01-01')";
    let tx = officer.transaction().await.unwrap();
    tx.execute(insert, &[&900_001i64, &mine, &"HT3XX0000000001"])
        .await
        .unwrap();
    let e = tx
        .execute(insert, &[&900_002i64, &other, &"HT3XX0000000002"])
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42501", "{db:?}");
    assert!(
        db.message()
            .contains("must reference a row this account may see"),
        "{}",
        db.message()
    );
    assert!(db.detail().is_none());
    drop(tx);
    let literal = format!(
        "INSERT INTO \"TheBHYT\" (id, nguoi_id, \"số thẻ\", valid_to) VALUES (900003, {other}, 'HT3XX0000000003', '2027-01-01')"
    );
    for (protocol, outcome) in both(&officer, &literal).await {
        expect_code(&outcome, "42501", protocol);
    }
    let tx = officer.transaction().await.unwrap();
    let moved = tx
        .query(
            "UPDATE \"TheBHYT\" SET nguoi_id = $1 WHERE id = $2 RETURNING nguoi_id, \"số thẻ\"",
            &[&mine, &mine],
        )
        .await
        .unwrap();
    assert_eq!(moved.len(), 1);
    let none = tx
        .query(
            "UPDATE \"TheBHYT\" SET valid_to = valid_to WHERE id = $1 RETURNING id",
            &[&other],
        )
        .await
        .unwrap();
    assert!(
        none.is_empty(),
        "an out-of-scope card is not there to update"
    );
    let e = tx
        .execute(
            "UPDATE \"TheBHYT\" SET nguoi_id = $1 WHERE id = $2",
            &[&other, &mine],
        )
        .await
        .unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "42501");
    drop(tx);
    let copy = simple(
        &officer,
        "COPY bank_account (id, participant_id, bank_code) FROM STDIN",
    )
    .await;
    expect_code(
        &copy,
        "42501",
        "COPY into a table filtered through a parent",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packing_rows_into_values_is_refused_above_the_cap() {
    let proxy = proxy().await;
    let officer = login(&proxy, PROVINCIAL).await;
    let refused = [
        "SELECT json_agg(p) FROM participant p",
        "SELECT jsonb_agg(b.account_number) FROM bank_account b",
        "SELECT string_agg(\"số thẻ\", ',') FROM \"TheBHYT\"",
        "SELECT array_agg(nguoi_id) FROM \"TheBHYT\"",
        "SELECT json_object_agg(id, email) FROM participant",
        "SELECT jsonb_object_agg(id, amount) FROM benefit_payment",
        "SELECT ARRAY(SELECT \"số thẻ\" FROM \"TheBHYT\")",
        "SELECT left(string_agg(full_name, ','), 10) FROM participant GROUP BY gender",
        "SELECT p.id, (SELECT \"số thẻ\" FROM \"TheBHYT\" t WHERE t.nguoi_id = p.id), \
         (SELECT account_number FROM bank_account b WHERE b.participant_id = p.id) FROM participant p ORDER BY p.id LIMIT 15",
        "SELECT lag(email, 1) OVER w, lag(email, 2) OVER w, lead(email, 1) OVER w FROM participant WINDOW w AS (ORDER BY id) LIMIT 10",
    ];
    for sql in refused {
        for (protocol, outcome) in both(&officer, sql).await {
            let e = expect_code(&outcome, "54000", &format!("{protocol} {sql}"));
            assert!(
                e.message.contains("packs more than 20 rows"),
                "{protocol} {sql}: {}",
                e.message
            );
            assert!(outcome.rows.is_empty(), "{protocol} {sql}");
        }
    }
    for sql in [
        "SELECT json_agg(id) FROM (SELECT id FROM participant ORDER BY id LIMIT 20) s",
        "SELECT count(*), sum(amount), avg(amount) FROM benefit_payment",
        "SELECT gender, count(*) FROM participant GROUP BY gender",
    ] {
        for (protocol, outcome) in both(&officer, sql).await {
            expect_ok(&outcome, &format!("{protocol} {sql}"));
        }
    }
    let xml = simple(
        &officer,
        "SELECT xmlagg(xmlelement(name p, full_name)) FROM participant",
    )
    .await;
    expect_code(&xml, "42501", "xmlagg is not an allowed function");
    let window = simple(
        &officer,
        "SELECT array_agg(id) OVER () FROM participant LIMIT 1",
    )
    .await;
    expect_code(&window, "0A000", "a collecting aggregate over a window");
    let text = metrics(&proxy).await;
    let refusals = metric_sum(&text, "maskgate_guard_refusals_total").unwrap_or(0.0);
    assert!(refusals >= (refused.len() * 2) as f64, "{refusals}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_is_stopped_by_offset_and_by_the_session_budget() {
    let proxy = proxy().await;
    let officer = login(&proxy, PROVINCIAL).await;
    for (protocol, outcome) in both(
        &officer,
        "SELECT id FROM participant ORDER BY id LIMIT 20 OFFSET 20",
    )
    .await
    {
        let e = expect_code(&outcome, "54000", protocol);
        assert!(e.message.contains("OFFSET"), "{}", e.message);
    }
    let paged = "SELECT id FROM participant ORDER BY id LIMIT 20 OFFSET $1";
    assert_eq!(officer.query(paged, &[&19i64]).await.unwrap().len(), 20);
    let e = officer.query(paged, &[&20i64]).await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "54000");

    // Keyset paging in cap-sized steps: the session's 400 rows, then nothing more.
    let harvester = login(&proxy, PROVINCIAL).await;
    let step = "SELECT id FROM participant WHERE id > $1 ORDER BY id LIMIT 20";
    let mut last = 0i64;
    let mut read = 0;
    let mut refused = None;
    for _ in 0..30 {
        match harvester.query(step, &[&last]).await {
            Ok(rows) => {
                read += rows.len();
                last = rows.last().map(|r| r.get(0)).unwrap_or(last);
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the session budget stops the paging");
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "53400", "{db:?}");
    assert!(db.message().contains("400 rows"), "{}", db.message());
    assert!(read <= 400, "{read}");
    let again = simple(&harvester, "SELECT 1").await;
    expect_code(&again, "53400", "the session has read its budget");
    // A new session starts with a new budget (the hourly quota spans sessions).
    let fresh = login(&proxy, PROVINCIAL).await;
    expect_ok(
        &simple(&fresh, "SELECT id FROM participant ORDER BY id LIMIT 5").await,
        "fresh",
    );
    let text = metrics(&proxy).await;
    assert!(
        text.contains("maskgate_quota_exceeded_total{quota=\"max_rows_per_session\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_tables_are_not_capped_and_over_cap_statements_get_no_row() {
    let proxy = proxy().await;
    let clerk = login(&proxy, CLERK).await;
    for (protocol, outcome) in both(&clerk, "SELECT code, name FROM province ORDER BY code").await {
        expect_ok(&outcome, protocol);
        assert_eq!(
            outcome.rows.len(),
            register::PROVINCE_COUNT,
            "{protocol}: past the clerk's 50"
        );
        assert!(outcome.rows.iter().any(|r| r.get("name") == Some("Hà Nội")));
    }
    let mut officer = login(&proxy, PROVINCIAL).await;
    for (protocol, outcome) in both(&officer, "SELECT code FROM province").await {
        expect_ok(&outcome, protocol);
        assert_eq!(outcome.rows.len(), register::PROVINCE_COUNT);
    }
    for sql in [
        "SELECT id FROM participant",
        "SELECT p.id, v.name FROM participant p JOIN province v ON v.code = p.province_code",
    ] {
        for (protocol, outcome) in both(&officer, sql).await {
            let e = expect_code(&outcome, "54000", &format!("{protocol} {sql}"));
            assert!(e.message.contains("20 rows"), "{}", e.message);
            assert!(
                outcome.rows.is_empty(),
                "{protocol} {sql}: {} rows sent",
                outcome.rows.len()
            );
        }
    }
    let within = extended(&officer, "SELECT id FROM participant ORDER BY id LIMIT 20").await;
    expect_ok(&within, "20 rows");
    assert_eq!(within.rows.len(), 20);
    // A portal read in steps gets the rows of each step before the cap is known.
    let stepped = portal(&mut officer, "SELECT id FROM participant ORDER BY id", 8).await;
    expect_code(&stepped, "54000", "a portal past the cap");
    assert!(stepped.rows.len() <= 20, "{}", stepped.rows.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_mode_runs_as_sent_and_records_what_enforcement_would_do() {
    let proxy = proxy().await;
    let trainee = login(&proxy, TRAINEE).await;
    let person = register::participant(P79);
    // Enforced, this would be denied (phone) and filtered (province 79): it runs as sent.
    let denied = format!(
        "SELECT full_name, phone FROM participant WHERE id = {}",
        person.id
    );
    let outcome = simple(&trainee, &denied).await;
    expect_ok(&outcome, &denied);
    assert_eq!(outcome.rows[0].values[1], person.phone, "the original ran");
    // Enforced, this would be rewritten and stopped at 5 rows: all 12 arrive.
    let capped = "SELECT id FROM participant ORDER BY id LIMIT 12";
    for (protocol, outcome) in both(&trainee, capped).await {
        expect_ok(&outcome, protocol);
        assert_eq!(outcome.rows.len(), 12, "{protocol}");
    }

    let dir = proxy.audit_dir();
    let would_deny = wait_for_record(&dir, |r| {
        r["kind"] == "statement" && r["user"] == TRAINEE && r["would"] == "deny"
    })
    .await;
    assert_eq!(would_deny["decision"], "monitored");
    assert_eq!(would_deny["would_sqlstate"], "42501");
    assert!(would_deny["would_message"]
        .as_str()
        .unwrap()
        .contains("phone"));
    let rewrite = wait_for_record(&dir, |r| {
        r["kind"] == "statement" && r["user"] == TRAINEE && r["would"] == "rewrite"
    })
    .await;
    let end = wait_for_record(&dir, |r| {
        r["kind"] == "statement_end"
            && r["session"] == rewrite["session"]
            && r["stmt"] == rewrite["stmt"]
    })
    .await;
    // It names the tables enforcing would have read, with their rules, so the
    // security team's search and reports see what the account touched.
    assert_eq!(rewrite["class"], "read", "{rewrite}");
    assert!(
        rewrite["tables"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["table"] == "public.participant")),
        "{rewrite}"
    );
    assert_eq!(end["would_stop"], "row_cap", "{end}");
    assert_eq!(end["rows"], 12);
    assert!(end.get("stopped_by").is_none(), "{end}");

    let text = metrics(&proxy).await;
    for would in ["deny", "rewrite", "row_cap"] {
        let series = format!("maskgate_monitor_decisions_total{{would=\"{would}\"}}");
        assert!(
            text.lines()
                .any(|l| l.starts_with(&series) && !l.ends_with(" 0")),
            "{series}\n{text}"
        );
    }
}
