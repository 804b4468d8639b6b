//! Enforcement on the wire path, one behaviour per test: masked lookups and
//! row filters in both protocols, denials that behave like PostgreSQL errors
//! (connection usable, transaction failed, prepared statement not created,
//! nothing of a denied string run), row caps across Execute limits and cursor
//! fetches, stripped error fields, quotas, unrestricted pass-through, and the
//! metrics that count denials. Real driver, real proxy, real cluster holding
//! the synthetic register, example policy.

#[path = "common/enforcement.rs"]
mod enforcement;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use enforcement::*;
use futures_util::StreamExt;
use maskgate_testkit::{http_get, metric_sum, register, TestProxy};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, NoTls};

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

async fn truth() -> (Client, Truth) {
    let su = superuser(cluster()).await;
    let truth = Truth::fetch(&su).await;
    (su, truth)
}

#[track_caller]
fn assert_code(outcome: &Outcome, code: &str, what: &str) -> Failure {
    match &outcome.error {
        Some(e) if e.code == code => e.clone(),
        Some(e) => panic!(
            "{what}: expected SQLSTATE {code}, got {} {:?}",
            e.code, e.message
        ),
        None => panic!(
            "{what}: expected SQLSTATE {code}, but it succeeded with {} row(s)",
            outcome.rows.len()
        ),
    }
}

#[track_caller]
fn assert_ok(outcome: &Outcome, what: &str) {
    if let Some(e) = &outcome.error {
        panic!("{what}: failed with {} {:?}", e.code, e.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerk_finds_a_person_by_the_raw_key_and_sees_the_key_masked() {
    let (_su, truth) = truth().await;
    let proxy = proxy().await;
    let clerk = login(&proxy, CLERK).await;
    let person = truth.participant(P01);
    let masked_cid = format!("********{}", &person.citizen_id[8..]);
    let masked_sic = format!("******{}", &person.social_insurance_code[6..]);
    let birth_year = format!("{}-01-01", &person.date_of_birth[..4]);

    let sql = format!(
        "SELECT id, full_name, citizen_id, social_insurance_code, date_of_birth FROM participant WHERE citizen_id = '{}'",
        person.citizen_id
    );
    for (protocol, outcome) in [
        ("simple", simple(&clerk, &sql).await),
        ("extended", extended(&clerk, &sql).await),
    ] {
        assert_ok(&outcome, protocol);
        assert_eq!(outcome.rows.len(), 1, "{protocol}: one person found");
        let row = &outcome.rows[0];
        assert_eq!(
            row.get("id"),
            Some(person.id.to_string().as_str()),
            "{protocol}"
        );
        assert_eq!(
            row.get("full_name"),
            Some(person.full_name.as_str()),
            "{protocol}"
        );
        assert_eq!(
            row.get("citizen_id"),
            Some(masked_cid.as_str()),
            "{protocol}: citizen_id masked"
        );
        assert_eq!(
            row.get("social_insurance_code"),
            Some(masked_sic.as_str()),
            "{protocol}: social_insurance_code masked"
        );
        assert_eq!(
            row.get("date_of_birth"),
            Some(birth_year.as_str()),
            "{protocol}"
        );
    }

    // Bind parameters, typed binary results, either lookup key.
    let by_cid = clerk
        .query(
            "SELECT id, full_name, citizen_id FROM participant WHERE citizen_id = $1",
            &[&person.citizen_id],
        )
        .await
        .expect("lookup with a bind parameter");
    assert_eq!(by_cid.len(), 1);
    assert_eq!(by_cid[0].get::<_, i64>(0), person.id);
    assert_eq!(by_cid[0].get::<_, String>(1), person.full_name);
    assert_eq!(by_cid[0].get::<_, String>(2), masked_cid);
    let by_sic = clerk
        .query(
            "SELECT full_name, social_insurance_code FROM participant WHERE social_insurance_code = $1",
            &[&person.social_insurance_code],
        )
        .await
        .expect("lookup by the second key");
    assert_eq!(by_sic.len(), 1);
    assert_eq!(by_sic[0].get::<_, String>(1), masked_sic);

    // The same statement prepared once, executed for two people.
    let statement = clerk
        .prepare("SELECT full_name FROM participant WHERE citizen_id = $1")
        .await
        .expect("prepare a lookup");
    for n in [P01, P01_B] {
        let p = truth.participant(n);
        let rows = clerk.query(&statement, &[&p.citizen_id]).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, String>(0), p.full_name);
    }

    // Someone of another province is not found, by either protocol.
    let other = truth.participant(P79);
    let sql = format!(
        "SELECT full_name FROM participant WHERE citizen_id = '{}'",
        other.citizen_id
    );
    for outcome in [simple(&clerk, &sql).await, extended(&clerk, &sql).await] {
        assert_ok(&outcome, "lookup outside the province");
        assert!(
            outcome.rows.is_empty(),
            "a person of province 79 was found by the clerk of 01"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyst_sees_only_province_79() {
    let (su, _truth) = truth().await;
    let proxy = proxy().await;
    let analyst = login(&proxy, ANALYST).await;
    let mut want = column(
        &su,
        "SELECT id::text FROM participant WHERE province_code = '79'",
    )
    .await;
    want.sort();
    for (protocol, outcome) in [
        (
            "simple",
            simple(&analyst, "SELECT id, province_code FROM participant").await,
        ),
        (
            "extended",
            extended(&analyst, "SELECT id, province_code FROM participant").await,
        ),
    ] {
        assert_ok(&outcome, protocol);
        assert!(
            outcome
                .rows
                .iter()
                .all(|r| r.get("province_code") == Some("79")),
            "{protocol}: rows of another province"
        );
        let mut got: Vec<Option<String>> =
            outcome.rows.iter().map(|r| r.values[0].clone()).collect();
        got.sort();
        assert_eq!(got.len(), want.len(), "{protocol}: row count");
        assert!(
            got == want,
            "{protocol}: not exactly the participants of province 79"
        );
    }
    let claims = analyst
        .query_one("SELECT count(*) FROM benefit_claim", &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    let want_claims: i64 = column(
        &su,
        "SELECT count(*) FROM benefit_claim WHERE province_code = '79' AND status <> 'draft'",
    )
    .await[0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        claims, want_claims,
        "draft claims and other provinces are filtered"
    );
    let provinces = analyst
        .query("SELECT DISTINCT province_code FROM contribution", &[])
        .await
        .unwrap();
    assert_eq!(provinces.len(), 1);
    assert_eq!(provinces[0].get::<_, String>(0), "79");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_in_the_extended_protocol_leaves_the_connection_usable() {
    let proxy = proxy().await;
    let analyst = login(&proxy, ANALYST).await;
    let err = analyst
        .query("SELECT phone FROM participant", &[])
        .await
        .expect_err("a denied column");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    let err = analyst
        .prepare("SELECT * FROM pg_authid")
        .await
        .expect_err("a denied catalog");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    let n: i64 = analyst
        .query_one("SELECT count(*) FROM employer", &[])
        .await
        .expect("the next statement works")
        .get(0);
    assert_eq!(n, i64::from(register::EMPLOYERS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_inside_a_transaction_fails_it_like_postgres() {
    let proxy = proxy().await;
    let (_su, truth) = truth().await;
    let cid = truth.participant(P01).citizen_id.clone();

    // Extended protocol.
    let mut clerk = login(&proxy, CLERK).await;
    let tx = clerk.transaction().await.unwrap();
    tx.query(
        "SELECT full_name FROM participant WHERE citizen_id = $1",
        &[&cid],
    )
    .await
    .expect("a lookup inside the transaction");
    let err = tx
        .query("SELECT full_name FROM participant", &[])
        .await
        .expect_err("an unpinned read is denied");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    let err = tx
        .query("SELECT 1", &[])
        .await
        .expect_err("the transaction is failed");
    assert_eq!(
        err.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "{err}"
    );
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("current transaction is aborted"),
        "{err}"
    );
    tx.rollback()
        .await
        .expect("ROLLBACK ends the failed transaction");
    clerk
        .query_one("SELECT 1", &[])
        .await
        .expect("usable after ROLLBACK");

    // Simple protocol.
    let clerk = login(&proxy, CLERK).await;
    assert_ok(&simple(&clerk, "BEGIN").await, "BEGIN");
    assert_code(
        &simple(&clerk, "SELECT full_name FROM participant").await,
        "42501",
        "unpinned read",
    );
    let failed = assert_code(&simple(&clerk, "SELECT 1").await, "25P02", "after a denial");
    assert!(
        failed.message.contains("current transaction is aborted"),
        "{}",
        failed.message
    );
    assert_ok(&simple(&clerk, "ROLLBACK").await, "ROLLBACK");
    assert_ok(&simple(&clerk, "SELECT 1").await, "after ROLLBACK");
}

/// A frontend speaking the protocol message by message, for what drivers do
/// not expose (statement names, pipelining).
struct Wire {
    stream: TcpStream,
    buf: BytesMut,
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(s.as_bytes());
    b.push(0);
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend_from_slice(&0i16.to_be_bytes());
    message(b'P', &b)
}

fn describe_statement(name: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    cstr(&mut b, name);
    message(b'D', &b)
}

fn bind(portal: &str, statement: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    cstr(&mut b, statement);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    message(b'B', &b)
}

fn execute(portal: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    b.extend_from_slice(&0i32.to_be_bytes());
    message(b'E', &b)
}

fn sync() -> Vec<u8> {
    message(b'S', &[])
}

impl Wire {
    async fn login(proxy: &TestProxy, user: &str) -> Wire {
        let stream = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut wire = Wire {
            stream,
            buf: BytesMut::new(),
        };
        let mut out = BytesMut::new();
        frontend::startup_message([("user", user), ("database", proxy.database())], &mut out)
            .unwrap();
        wire.send(&out).await;
        let (tag, body) = wire.recv().await;
        assert_eq!(
            (tag, &body[..4]),
            (b'R', &10i32.to_be_bytes()[..]),
            "SASL requested"
        );
        let mut scram = ScramSha256::new(PASSWORD.as_bytes(), ChannelBinding::unsupported());
        let mut out = BytesMut::new();
        frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out).unwrap();
        wire.send(&out).await;
        let (_, body) = wire.recv().await;
        scram.update(&body[4..]).unwrap();
        let mut out = BytesMut::new();
        frontend::sasl_response(scram.message(), &mut out).unwrap();
        wire.send(&out).await;
        let (_, body) = wire.recv().await;
        scram.finish(&body[4..]).unwrap();
        wire.until_ready().await;
        wire
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn recv(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let frame = self.buf.split_to(len + 1);
                    return (frame[0], frame[5..].to_vec());
                }
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(Duration::from_secs(30), self.stream.read(&mut chunk))
                .await
                .expect("the proxy answers")
                .unwrap();
            assert!(n > 0, "the proxy closed the connection");
            self.buf.put_slice(&chunk[..n]);
        }
    }

    /// Messages up to and including ReadyForQuery, as (tag, SQLSTATE of an error).
    async fn until_ready(&mut self) -> Vec<(u8, Option<String>)> {
        let mut seen = Vec::new();
        loop {
            let (tag, body) = self.recv().await;
            let code = (tag == b'E').then(|| error_code(&body));
            seen.push((tag, code));
            if tag == b'Z' {
                return seen;
            }
        }
    }
}

fn error_code(body: &[u8]) -> String {
    let mut fields = body.split(|b| *b == 0);
    fields
        .find_map(|f| f.strip_prefix(b"C"))
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default()
}

fn errors(seen: &[(u8, Option<String>)]) -> Vec<String> {
    seen.iter().filter_map(|(_, c)| c.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_named_prepared_statement_does_not_exist_afterwards() {
    let proxy = proxy().await;
    let mut wire = Wire::login(&proxy, CLERK).await;

    wire.send(&[parse("leak", "SELECT full_name FROM participant"), sync()].concat())
        .await;
    assert_eq!(
        errors(&wire.until_ready().await),
        ["42501"],
        "Parse is denied"
    );

    wire.send(&[describe_statement("leak"), sync()].concat())
        .await;
    assert_eq!(
        errors(&wire.until_ready().await),
        ["26000"],
        "Describe finds no statement"
    );
    wire.send(&[bind("", "leak"), execute(""), sync()].concat())
        .await;
    assert_eq!(
        errors(&wire.until_ready().await),
        ["26000"],
        "Bind finds no statement"
    );

    // Pipelined: Parse denied, the Bind and Execute behind it are skipped up to Sync.
    wire.send(
        &[
            parse("leak2", "SELECT * FROM pg_authid"),
            bind("", "leak2"),
            execute(""),
            sync(),
        ]
        .concat(),
    )
    .await;
    let seen = wire.until_ready().await;
    assert_eq!(errors(&seen), ["42501"], "one error for the pipeline");
    assert!(!seen.iter().any(|(t, _)| *t == b'D'), "no rows");

    // The name is free: a permitted statement can take it.
    wire.send(
        &[
            parse(
                "leak",
                "SELECT full_name FROM participant WHERE citizen_id = $1",
            ),
            sync(),
        ]
        .concat(),
    )
    .await;
    let seen = wire.until_ready().await;
    assert!(errors(&seen).is_empty(), "{seen:?}");
    assert_eq!(seen.first().map(|(t, _)| *t), Some(b'1'), "ParseComplete");
}

/// A superuser connection that receives notifications.
async fn listener(channel: &str) -> (Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = tokio_postgres::connect(&cluster().url(), NoTls)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .unwrap();
    (client, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_denied_statement_in_a_simple_query_string_runs_none() {
    let proxy = proxy().await;
    let (_listener, mut notifications) = listener("report_ready").await;
    let analyst = login(&proxy, ANALYST).await;

    let outcome = simple(
        &analyst,
        "SET application_name = 'mg_multi_set'; NOTIFY report_ready, 'forwarded'; SELECT count(*) FROM employer; SELECT phone FROM participant",
    )
    .await;
    assert_code(&outcome, "42501", "the string with a denied statement");
    assert!(
        outcome.rows.is_empty(),
        "no statement of the string returned rows"
    );

    let shown = simple(&analyst, "SHOW application_name").await;
    assert_ok(&shown, "SHOW application_name");
    assert_ne!(
        shown.rows[0].values[0].as_deref(),
        Some("mg_multi_set"),
        "the SET before the denied statement ran"
    );
    // Notifications arrive in commit order: the sentinel comes after anything
    // the denied string might have sent.
    assert_ok(
        &simple(&analyst, "NOTIFY report_ready, 'sentinel'").await,
        "NOTIFY through the proxy",
    );
    loop {
        let payload = tokio::time::timeout(Duration::from_secs(30), notifications.recv())
            .await
            .expect("the sentinel notification arrives")
            .expect("listener alive");
        assert_ne!(
            payload, "forwarded",
            "the NOTIFY before the denied statement ran"
        );
        if payload == "sentinel" {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_over_the_row_cap_ends_with_an_error_naming_the_limit() {
    let proxy = proxy().await;
    let clerk = login(&proxy, CLERK).await;
    let sql = "SELECT g FROM generate_series(1, 200) g";
    for (protocol, outcome) in [
        ("simple", simple(&clerk, sql).await),
        ("extended", extended(&clerk, sql).await),
    ] {
        let e = assert_code(&outcome, "54000", protocol);
        assert!(
            e.message.contains("50"),
            "{protocol}: the message states the limit: {}",
            e.message
        );
        assert!(
            outcome.rows.len() <= 50,
            "{protocol}: {} rows received past the cap of 50",
            outcome.rows.len()
        );
    }
    // At the cap exactly: every row, no error.
    let at_cap = extended(&clerk, "SELECT g FROM generate_series(1, 200) g LIMIT 50").await;
    assert_ok(&at_cap, "50 rows");
    assert_eq!(at_cap.rows.len(), 50);
    assert_ok(
        &simple(&clerk, "SELECT 1").await,
        "usable after the cap error",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_row_cap_holds_across_portal_suspension() {
    let proxy = proxy().await;
    let mut clerk = login(&proxy, CLERK).await;
    for batch in [20, 7, 50, 51] {
        let outcome = portal(&mut clerk, "SELECT g FROM generate_series(1, 200) g", batch).await;
        let e = assert_code(
            &outcome,
            "54000",
            &format!("Execute with a limit of {batch}"),
        );
        assert!(e.message.contains("50"), "{}", e.message);
        assert!(
            outcome.rows.len() <= 50,
            "{} rows received through a portal fetched {batch} at a time",
            outcome.rows.len()
        );
    }
    let mut investigator = login(&proxy, INVESTIGATOR).await;
    let outcome = portal(&mut investigator, "SELECT id FROM participant", 120).await;
    assert_code(&outcome, "54000", "investigator portal");
    assert!(outcome.rows.len() <= 500, "{} rows", outcome.rows.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_row_cap_holds_across_cursor_fetches() {
    let proxy = proxy().await;
    let clerk = login(&proxy, CLERK).await;
    let mut problems = Vec::new();
    for (protocol, run) in [("simple", false), ("extended", true)] {
        let mut total = Outcome::default();
        let mut per_fetch = Vec::new();
        for sql in [
            "BEGIN",
            "DECLARE c CURSOR FOR SELECT g FROM generate_series(1, 200) g",
            "FETCH 30 FROM c",
            "FETCH 30 FROM c",
            "FETCH 30 FROM c",
        ] {
            let step = if run {
                extended(&clerk, sql).await
            } else {
                simple(&clerk, sql).await
            };
            if sql.starts_with("FETCH") {
                per_fetch.push(step.rows.len());
            }
            total.merge(step);
            if total.error.is_some() {
                break;
            }
        }
        if total.rows.len() > 50 {
            problems.push(format!(
                "{protocol}: {} rows fetched past the cap of 50 (per FETCH: {per_fetch:?})",
                total.rows.len()
            ));
        }
        match &total.error {
            Some(e) if e.code == "54000" && e.message.contains("50") => {}
            Some(e) => problems.push(format!(
                "{protocol}: expected 54000 naming 50, got {} {:?}",
                e.code, e.message
            )),
            None => problems.push(format!(
                "{protocol}: no row-cap error after FETCHes of {per_fetch:?} rows"
            )),
        }
        assert_ok(&simple(&clerk, "ROLLBACK").await, "ROLLBACK");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

async fn run_in(protocol: &str, client: &Client, sql: &str) -> Outcome {
    if protocol == "simple" {
        simple(client, sql).await
    } else {
        extended(client, sql).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_reach_restricted_accounts_without_detail_hint_context_or_position() {
    let proxy = proxy().await;
    let clerk = login(&proxy, CLERK).await;
    let auditor = login(&proxy, AUDITOR).await;
    // A JSON error carries DETAIL, CONTEXT (WHERE) and a position; a date error a HINT.
    let cases = [
        ("SELECT '{\"a\": 1'::jsonb", "22P02"),
        ("SELECT '13/45/2020'::date", "22008"),
    ];
    for (sql, code) in cases {
        for protocol in ["simple", "extended"] {
            let full = assert_code(&run_in(protocol, &auditor, sql).await, code, "unrestricted");
            let stripped = assert_code(&run_in(protocol, &clerk, sql).await, code, "restricted");
            assert!(
                full.has_detail || full.has_hint || full.has_where,
                "{protocol} {sql}: PostgreSQL sent no extra fields, the test proves nothing"
            );
            assert!(
                full.has_position,
                "{protocol} {sql}: unrestricted keeps the position"
            );
            assert_eq!(
                stripped.message, full.message,
                "{protocol} {sql}: message kept"
            );
            assert!(
                !(stripped.has_detail || stripped.has_hint || stripped.has_where || stripped.has_position),
                "{protocol} {sql}: DETAIL/HINT/WHERE/position reached a restricted account: {stripped:?}"
            );
        }
    }
    // An error about a value carries the masked value, never the raw one.
    let (_su, truth) = truth().await;
    let analyst = login(&proxy, ANALYST).await;
    let scanner = secrets_for(ANALYST, &truth);
    for outcome in [
        simple(&analyst, "SELECT full_name::int FROM participant").await,
        extended(&analyst, "SELECT full_name::int FROM participant").await,
    ] {
        let e = assert_code(&outcome, "22P02", "cast of a masked name");
        let kinds: Vec<&str> = scanner
            .scan(&e.message)
            .iter()
            .map(|(s, _)| s.kind)
            .collect();
        assert!(kinds.is_empty(), "the error message carries {kinds:?}");
        assert!(!e.has_detail && !e.has_where && !e.has_position);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statements_per_minute_quota_is_enforced() {
    let proxy = proxy().await;
    let investigator = login(&proxy, INVESTIGATOR).await;
    for i in 1..=30 {
        assert_ok(
            &simple(&investigator, "SELECT 1").await,
            &format!("statement {i} of 30"),
        );
    }
    let e = assert_code(
        &simple(&investigator, "SELECT 1").await,
        "53400",
        "statement 31",
    );
    assert!(
        e.message.contains("30") && e.message.contains("minute"),
        "the message names the quota: {}",
        e.message
    );
    let e = assert_code(
        &extended(&investigator, "SELECT 2").await,
        "53400",
        "extended too",
    );
    assert!(e.message.contains("minute"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_statements_spend_the_statement_quota_and_are_not_analyzed_past_it() {
    let proxy = proxy().await;
    let investigator = login(&proxy, INVESTIGATOR).await;
    // Each text is new, so each would be analyzed, and each is refused.
    for i in 1..=30 {
        assert_code(
            &simple(&investigator, &format!("SELECT {i} FROM no_such_table")).await,
            "42P01",
            &format!("refused statement {i} of 30"),
        );
    }
    let e = assert_code(
        &simple(&investigator, "SELECT 31 FROM no_such_table").await,
        "53400",
        "past the quota, without an analysis",
    );
    assert!(e.message.contains("minute"), "{}", e.message);
    // A session can still end its transaction.
    assert_ok(
        &simple(&investigator, "ROLLBACK").await,
        "transaction control",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rows_per_hour_quota_is_enforced() {
    let proxy = proxy().await;
    let investigator = login(&proxy, INVESTIGATOR).await;
    let mut received = 0;
    let mut refused = None;
    for _ in 0..12 {
        let outcome = simple(
            &investigator,
            "SELECT id FROM participant ORDER BY id LIMIT 500",
        )
        .await;
        received += outcome.rows.len();
        if let Some(e) = outcome.error {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("12 x 500 rows exceed the 5000 rows per hour");
    assert_eq!(e.code, "53400", "{e:?}");
    assert!(e.message.contains("rows per hour"), "{}", e.message);
    assert!(
        received <= 5000,
        "{received} rows received under a quota of 5000 per hour"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrestricted_accounts_pass_through_unchanged() {
    let (_su, truth) = truth().await;
    let proxy = proxy().await;
    let auditor = login(&proxy, AUDITOR).await;
    let person = truth.participant(P79);
    let sql = "SELECT citizen_id, phone, full_name, date_of_birth FROM participant WHERE id = 14";
    for (protocol, outcome) in [
        ("simple", simple(&auditor, sql).await),
        ("extended", extended(&auditor, sql).await),
    ] {
        assert_ok(&outcome, protocol);
        let row = &outcome.rows[0];
        assert_eq!(
            row.get("citizen_id"),
            Some(person.citizen_id.as_str()),
            "{protocol}"
        );
        assert_eq!(row.get("phone"), person.phone.as_deref(), "{protocol}");
        assert_eq!(
            row.get("full_name"),
            Some(person.full_name.as_str()),
            "{protocol}"
        );
        assert_eq!(
            row.get("date_of_birth"),
            Some(person.date_of_birth.as_str()),
            "{protocol}"
        );
    }
    let all: i64 = auditor
        .query_one("SELECT count(*) FROM participant", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(all, i64::from(register::PARTICIPANTS));
    let stats: i64 = auditor
        .query_one(
            "SELECT count(*) FROM pg_stats WHERE tablename = 'participant'",
            &[],
        )
        .await
        .expect("catalogs pass through for the auditor")
        .get(0);
    assert!(stats > 0);
}

async fn metrics(proxy: &TestProxy) -> String {
    let (status, body) = http_get(proxy.admin_addr().expect("admin endpoint"), "/metrics").await;
    assert_eq!(status, 200);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_row_caps_and_quotas_are_counted_in_metrics() {
    const SERIES: [&str; 3] = [
        "maskgate_statements_denied_total",
        "maskgate_row_cap_exceeded_total",
        "maskgate_quota_exceeded_total",
    ];
    let proxy = proxy().await;
    let before = metrics(&proxy).await;
    let missing: Vec<&str> = SERIES
        .iter()
        .copied()
        .filter(|s| metric_sum(&before, s).is_none())
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");

    let analyst = login(&proxy, ANALYST).await;
    assert_code(
        &simple(&analyst, "SELECT phone FROM participant").await,
        "42501",
        "denial",
    );
    let clerk = login(&proxy, CLERK).await;
    assert_code(
        &simple(&clerk, "SELECT g FROM generate_series(1, 200) g").await,
        "54000",
        "row cap",
    );
    let investigator = login(&proxy, INVESTIGATOR).await;
    let mut quota_hit = false;
    for _ in 0..31 {
        if simple(&investigator, "SELECT 1").await.error.is_some() {
            quota_hit = true;
            break;
        }
    }
    assert!(
        quota_hit,
        "the quota of 30 statements per minute was not hit"
    );

    let after = metrics(&proxy).await;
    for series in SERIES {
        let (b, a) = (
            metric_sum(&before, series).unwrap(),
            metric_sum(&after, series).unwrap_or(0.0),
        );
        assert!(a >= b + 1.0, "{series} did not count the event: {b} -> {a}");
    }
}

/// Notification payloads come from other sessions unmasked: a restricted
/// account may LISTEN and NOTIFY only on the channels its roles name, and
/// UNLISTEN (what connection pools send on reset) always works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_accounts_use_only_the_notification_channels_their_roles_name() {
    let proxy = proxy().await;
    let analyst = login(&proxy, ANALYST).await;
    for sql in [
        "LISTEN report_ready",
        "NOTIFY report_ready, 'done'",
        "UNLISTEN *",
    ] {
        assert_ok(&simple(&analyst, sql).await, sql);
    }
    for sql in [
        "LISTEN participant_changes",
        "NOTIFY participant_changes, 'x'",
        "LISTEN \"Report_Ready\"",
    ] {
        assert_code(&simple(&analyst, sql).await, "42501", sql);
    }
    let clerk = login(&proxy, CLERK_79).await;
    assert_code(
        &simple(&clerk, "LISTEN report_ready").await,
        "42501",
        "a clerk's LISTEN",
    );
    assert_ok(&simple(&clerk, "UNLISTEN *").await, "a clerk's UNLISTEN *");
}
