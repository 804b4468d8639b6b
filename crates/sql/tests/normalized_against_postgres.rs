//! A normalized register, rewritten and run on PostgreSQL directly: child tables that
//! carry only the participant's id (a mixed-case quoted table, a column with a space
//! and diacritics), filtered through their parent; lookups by key that stay index
//! scans; writes that must reference in-scope parents; rows packed into values and
//! OFFSETs counted against the cap; a reference table exempt from the cap.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use maskgate_mask::PseudonymKeys;
use maskgate_policy::{Policy, PolicySettings};
use maskgate_sql::{Denial, Enforcer, KeyedMasks, DEFAULT_GUARD_TOKEN};
use maskgate_testkit::PgCluster;
use tokio_postgres::{Client, NoTls};

const POLICY: &str = r#"
[tables."public.participant".columns]
id            = { type = "bigint" }
full_name     = { type = "text" }
citizen_id    = { type = "char(12)" }
email         = { type = "text" }
province_code = { type = "char(2)" }

[tables."public.\"TheBHYT\"".columns]
id            = { type = "bigint" }
nguoi_id      = { type = "bigint" }
"số thẻ"      = { type = "varchar(15)" }
hospital_code = { type = "text" }

[tables."public.bank_account".columns]
id             = { type = "bigint" }
participant_id = { type = "bigint" }
iban           = { type = "text" }

[tables."public.payment".columns]
id              = { type = "bigint" }
bank_account_id = { type = "bigint" }
amount          = { type = "numeric(12,2)" }

[tables."public.province".columns]
code = { type = "char(2)" }
name = { type = "text" }

[roles.officer]
statements = ["read", "insert", "update", "delete"]
max_rows = 20
[roles.officer.tables."public.participant"]
row_filter = "province_code = :province"
columns = { id = "allow", full_name = "allow", citizen_id = "allow", email = { mask = "email_domain" }, province_code = "allow" }
[roles.officer.tables."public.\"TheBHYT\""]
row_filter_path = "nguoi_id -> public.participant(id)"
columns = { id = "allow", nguoi_id = "allow", "số thẻ" = "allow", hospital_code = "allow" }
[roles.officer.tables."public.bank_account"]
row_filter_path = "participant_id -> public.participant(id)"
columns = { id = "allow", participant_id = "allow", iban = "null" }
[roles.officer.tables."public.payment"]
row_filter_path = ["bank_account_id -> public.bank_account(id)", "participant_id -> public.participant(id)"]
columns = { id = "allow", bank_account_id = "allow", amount = "allow" }
[roles.officer.tables."public.province"]
max_rows = "none"
columns = { code = "allow", name = "allow" }

[roles.clerk]
max_rows = 20
[roles.clerk.tables."public.participant"]
row_filter = "province_code = :province"
lookup_keys = ["citizen_id"]
columns = { id = "allow", full_name = "allow", citizen_id = { mask = "partial", keep_last = 4 }, province_code = "allow" }
[roles.clerk.tables."public.\"TheBHYT\""]
row_filter_path = "nguoi_id -> public.participant(id)"
lookup_keys = ["số thẻ"]
columns = { id = "allow", nguoi_id = "allow", "số thẻ" = { mask = "partial", keep_last = 3 }, hospital_code = "allow" }

[accounts.officer_01]
name = "officer"
verifier = "SCRAM-SHA-256$4096:ENqrke4VetwF7BUAvmg9hA==$XT4ez9bx3FeFEtOaDwU7HOOm+wg09SgHW82LS6I/anw=:tPtRELbqA9kZfdWwLP5IzHSqYt7an3afp04AnIrmGCk="
roles = ["officer"]
attributes = { province = "01" }
[accounts.clerk_01]
name = "clerk"
verifier = "SCRAM-SHA-256$4096:ENqrke4VetwF7BUAvmg9hA==$XT4ez9bx3FeFEtOaDwU7HOOm+wg09SgHW82LS6I/anw=:tPtRELbqA9kZfdWwLP5IzHSqYt7an3afp04AnIrmGCk="
roles = ["clerk"]
attributes = { province = "01" }
"#;

/// 2,000 participants, every other one in province 01; one card and one account per
/// participant, two payments per account; 63 provinces.
const SCHEMA: &str = r#"
CREATE TABLE participant (id bigint PRIMARY KEY, full_name text, citizen_id char(12) UNIQUE,
    email text, province_code char(2));
CREATE TABLE "TheBHYT" (id bigint PRIMARY KEY, nguoi_id bigint NOT NULL REFERENCES participant (id),
    "số thẻ" varchar(15) UNIQUE, hospital_code text);
CREATE INDEX the_bhyt_nguoi_id ON "TheBHYT" (nguoi_id);
CREATE TABLE bank_account (id bigint PRIMARY KEY, participant_id bigint REFERENCES participant (id),
    iban text);
CREATE INDEX bank_account_participant ON bank_account (participant_id);
CREATE TABLE payment (id bigint PRIMARY KEY, bank_account_id bigint REFERENCES bank_account (id),
    amount numeric(12,2));
CREATE TABLE province (code char(2) PRIMARY KEY, name text);
INSERT INTO participant SELECT g, 'Người ' || g, lpad(g::text, 12, '0'), 'p' || g || '@gmail.com',
    CASE WHEN g % 2 = 0 THEN '01' ELSE '79' END FROM generate_series(1, 2000) g;
INSERT INTO "TheBHYT" SELECT g, g, 'GD4' || lpad(g::text, 12, '0'), 'H' || (g % 7) FROM generate_series(1, 2000) g;
INSERT INTO bank_account SELECT g, g, 'VN' || g FROM generate_series(1, 2000) g;
INSERT INTO payment SELECT g, (g + 1) / 2, g * 1.5 FROM generate_series(1, 4000) g;
INSERT INTO province SELECT lpad(g::text, 2, '0'), 'Tỉnh ' || g FROM generate_series(1, 63) g;
ANALYZE;
"#;

fn policy() -> &'static Arc<Policy> {
    static POLICY_: OnceLock<Arc<Policy>> = OnceLock::new();
    POLICY_.get_or_init(|| {
        let today = time::Date::from_calendar_date(2026, time::Month::March, 2).unwrap();
        Policy::from_texts(
            vec![(PathBuf::from("normalized.toml"), POLICY.to_owned())],
            PolicySettings::default(),
            today,
        )
        .unwrap_or_else(|rejected| panic!("{}", rejected.errors))
        .policy
        .into()
    })
}

fn enforce(login: &str, sql: &str) -> Result<(String, Option<u64>), Denial> {
    let rules = policy().effective(login).unwrap();
    let keys = PseudonymKeys::default();
    let enforced = Enforcer::new(policy().clone(), rules, &KeyedMasks::new(&keys)).enforce(sql)?;
    let statement = &enforced.statements[0];
    Ok((statement.sql.clone(), statement.row_cap))
}

fn rewrite(login: &str, sql: &str) -> String {
    enforce(login, sql)
        .unwrap_or_else(|d| panic!("{sql}: {d}"))
        .0
}

fn database() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let pg = PgCluster::shared();
        let name = format!("maskgate_normalized_{}", std::process::id());
        pg.psql(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
        pg.psql(&format!("CREATE DATABASE {name}")).unwrap();
        pg.psql_in(&name, SCHEMA).unwrap();
        name
    })
}

async fn connect() -> Client {
    let db = database();
    let pg = PgCluster::shared();
    let (client, connection) = tokio_postgres::Config::new()
        .host(pg.host())
        .port(pg.port())
        .user(pg.user())
        .password(pg.password())
        .dbname(db)
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

async fn texts(
    client: &Client,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, tokio_postgres::Error> {
    let mut rows = Vec::new();
    for message in client.simple_query(sql).await? {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

async fn explain(client: &Client, sql: &str) -> String {
    texts(client, &format!("EXPLAIN {sql}"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The guard reason of a failed statement, from PostgreSQL's message.
fn guard_reason(error: &tokio_postgres::Error) -> String {
    let message = error
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default();
    let at = message
        .find(DEFAULT_GUARD_TOKEN)
        .unwrap_or_else(|| panic!("not a guard error: {message}"));
    message[at + DEFAULT_GUARD_TOKEN.len() + 1..]
        .trim_end_matches('"')
        .to_owned()
}

#[tokio::test]
async fn children_are_in_scope_only_through_their_parent() {
    let client = connect().await;
    for (sql, expected) in [
        ("SELECT count(*) FROM \"TheBHYT\"", "1000"),
        ("SELECT count(*) FROM bank_account", "1000"),
        ("SELECT count(*) FROM payment", "2000"),
        (
            "SELECT count(*) FROM \"TheBHYT\" t JOIN participant p ON p.id = t.nguoi_id",
            "1000",
        ),
        (
            "SELECT count(*) FROM \"TheBHYT\" WHERE nguoi_id % 2 = 1",
            "0",
        ),
        (
            "WITH c AS (SELECT nguoi_id FROM \"TheBHYT\") SELECT count(*) FROM c \
             WHERE nguoi_id IN (SELECT participant_id FROM bank_account)",
            "1000",
        ),
    ] {
        let rows = texts(&client, &rewrite("officer_01", sql)).await.unwrap();
        assert_eq!(rows[0][0].as_deref(), Some(expected), "{sql}");
    }
    // Out-of-scope rows never meet the statement's own expressions.
    // (Every odd participant is out of scope: the division fails only on their cards.)
    let sql = "SELECT count(*) FROM \"TheBHYT\" WHERE 1 / (1 - nguoi_id % 2) = 1";
    let rows = texts(&client, &rewrite("officer_01", sql)).await.unwrap();
    assert_eq!(rows[0][0].as_deref(), Some("1000"), "no division by zero");
    let rows = texts(
        &client,
        &rewrite("officer_01", "SELECT iban, \"số thẻ\" FROM bank_account b JOIN \"TheBHYT\" t ON t.nguoi_id = b.participant_id WHERE b.id = 2"),
    )
    .await
    .unwrap();
    assert_eq!(
        rows,
        [[None, Some("GD4000000000002".to_owned())]],
        "iban reads as NULL"
    );
}

#[tokio::test]
async fn a_lookup_on_the_child_stays_an_index_scan() {
    let client = connect().await;
    for sql in [
        "SELECT * FROM \"TheBHYT\" WHERE id = 42",
        "SELECT * FROM \"TheBHYT\" WHERE nguoi_id = 42",
        "SELECT * FROM \"TheBHYT\" WHERE \"số thẻ\" = 'GD4000000000042'",
    ] {
        let rewritten = rewrite("officer_01", sql);
        let plan = explain(&client, &rewritten).await;
        assert!(!plan.contains("Seq Scan"), "{sql}\n{rewritten}\n{plan}");
        assert_eq!(texts(&client, &rewritten).await.unwrap().len(), 1, "{sql}");
    }
}

#[tokio::test]
async fn a_lookup_only_child_is_pinned_by_its_key_or_through_its_parent() {
    let client = connect().await;
    let own = rewrite(
        "clerk_01",
        "SELECT \"số thẻ\", hospital_code FROM \"TheBHYT\" WHERE \"số thẻ\" = $1",
    );
    let rows = client.query(&own, &[&"GD4000000000042"]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "************042");
    assert!(
        client
            .query(&own, &[&"GD4000000000043"])
            .await
            .unwrap()
            .is_empty(),
        "province 79"
    );

    let through = rewrite(
        "clerk_01",
        "SELECT p.full_name, t.\"số thẻ\" FROM participant p JOIN \"TheBHYT\" t ON t.nguoi_id = p.id \
         WHERE p.citizen_id = $1",
    );
    let plan = explain(&client, &through.replace("$1", "'000000000042'")).await;
    assert!(!plan.contains("Seq Scan"), "{through}\n{plan}");
    let rows = client.query(&through, &[&"000000000042"]).await.unwrap();
    assert_eq!(rows.len(), 1);
    let denial = enforce(
        "clerk_01",
        "SELECT * FROM \"TheBHYT\" WHERE hospital_code = 'H1'",
    )
    .unwrap_err();
    assert!(denial.message.contains("lookup-only"), "{denial}");
    let denial = enforce(
        "clerk_01",
        "SELECT t.* FROM participant p JOIN \"TheBHYT\" t ON t.nguoi_id = p.id WHERE p.full_name = 'x'",
    )
    .unwrap_err();
    assert!(denial.message.contains("lookup-only"), "{denial}");
}

/// A child read through its pinned parent names the parent's key value as its pin
/// (once, when the parent is lookup-only too), so detection counts the person read.
#[test]
fn a_child_read_through_its_parent_names_the_parents_key_as_pin() {
    let rules = policy().effective("clerk_01").unwrap();
    let keys = PseudonymKeys::default();
    let enforcer = Enforcer::new(policy().clone(), rules, &KeyedMasks::new(&keys));
    let sql = "SELECT t.\"số thẻ\" FROM participant p JOIN \"TheBHYT\" t ON t.nguoi_id = p.id \
               WHERE p.citizen_id = $1";
    let pins = &enforcer.enforce(sql).unwrap().statements[0].pins;
    assert_eq!(pins.len(), 1, "{pins:?}");
    assert_eq!(pins[0].table.to_string(), "public.participant");
    assert_eq!(pins[0].column, "citizen_id");
    assert_eq!(pins[0].value, maskgate_sql::PinnedValue::Parameter(1));
}

#[tokio::test]
async fn writes_reference_in_scope_parents_only() {
    let mut client = connect().await;
    let tx = client.transaction().await.unwrap();
    let insert = rewrite(
        "officer_01",
        "INSERT INTO \"TheBHYT\" (id, nguoi_id, \"số thẻ\") VALUES ($1, $2, $3)",
    );
    tx.execute(&insert, &[&10_001i64, &2i64, &"GD4XXXXXXXXX001"])
        .await
        .unwrap();
    let error = tx
        .execute(&insert, &[&10_002i64, &3i64, &"GD4XXXXXXXXX002"])
        .await
        .unwrap_err();
    assert_eq!(guard_reason(&error), "scope:public.TheBHYT");
    drop(tx);

    let tx = client.transaction().await.unwrap();
    let literal = rewrite(
        "officer_01",
        "INSERT INTO bank_account (id, participant_id) VALUES (5001, 4), (5002, 5)",
    );
    let error = tx.batch_execute(&literal).await.unwrap_err();
    assert_eq!(guard_reason(&error), "scope:public.bank_account");
    drop(tx);

    let tx = client.transaction().await.unwrap();
    let update = rewrite(
        "officer_01",
        "UPDATE \"TheBHYT\" SET nguoi_id = $1 WHERE id = 2",
    );
    assert_eq!(tx.execute(&update, &[&4i64]).await.unwrap(), 1);
    let error = tx.execute(&update, &[&7i64]).await.unwrap_err();
    assert_eq!(guard_reason(&error), "scope:public.TheBHYT");
    drop(tx);

    let tx = client.transaction().await.unwrap();
    let delete = rewrite("officer_01", "DELETE FROM payment WHERE amount > 0");
    assert_eq!(
        tx.execute(&delete, &[]).await.unwrap(),
        2000,
        "only in scope"
    );
    drop(tx);

    for refused in [
        "INSERT INTO \"TheBHYT\" (id, \"số thẻ\") VALUES (1, 'x')",
        "INSERT INTO \"TheBHYT\" (id, nguoi_id) SELECT 1, id FROM participant",
        "UPDATE \"TheBHYT\" SET nguoi_id = nguoi_id + 2",
    ] {
        let denial = enforce("officer_01", refused).unwrap_err();
        assert_eq!(denial.sqlstate, "42501", "{refused}: {denial}");
    }
}

#[tokio::test]
async fn rows_packed_into_values_count_against_the_cap() {
    let client = connect().await;
    for (sql, fits) in [
        ("SELECT json_agg(p) FROM participant p", false),
        ("SELECT string_agg(full_name, ',') FROM participant", false),
        ("SELECT array_agg(id) FROM participant WHERE id < 30", true),
        ("SELECT jsonb_agg(id) FILTER (WHERE id < 30) FROM participant", true),
        ("SELECT province_code, json_agg(id) FROM participant GROUP BY 1", false),
        ("SELECT ARRAY(SELECT id FROM participant)", false),
        ("SELECT ARRAY(SELECT id FROM participant WHERE id <= 20)", true),
        (
            "SELECT id, (SELECT \"số thẻ\" FROM \"TheBHYT\" t WHERE t.nguoi_id = p.id) FROM participant p WHERE id <= 20",
            true,
        ),
        (
            "SELECT id, (SELECT \"số thẻ\" FROM \"TheBHYT\" t WHERE t.nguoi_id = p.id), \
             (SELECT iban FROM bank_account b WHERE b.participant_id = p.id) FROM participant p WHERE id <= 30",
            false,
        ),
        (
            "SELECT count(*), (SELECT count(*) FROM \"TheBHYT\") FROM participant",
            true,
        ),
        (
            "SELECT lag(full_name, 1) OVER w, lag(full_name, 2) OVER w FROM participant WHERE id <= 30 WINDOW w AS (ORDER BY id)",
            false,
        ),
        (
            "SELECT s FROM (SELECT string_agg(full_name, ',') AS s FROM participant) x",
            false,
        ),
        ("SELECT count(*), sum(id), max(full_name) FROM participant", true),
    ] {
        let rewritten = rewrite("officer_01", sql);
        match texts(&client, &rewritten).await {
            Ok(_) => assert!(fits, "{sql} ran"),
            Err(error) => {
                assert!(!fits, "{sql}: {error}");
                assert_eq!(guard_reason(&error), "packed:20", "{sql}");
            }
        }
    }
    let denial = enforce(
        "officer_01",
        "SELECT array_agg(id) OVER () FROM participant",
    )
    .unwrap_err();
    assert_eq!(denial.sqlstate, "0A000", "{denial}");
}

#[tokio::test]
async fn offsets_may_not_page_past_the_cap() {
    let client = connect().await;
    let denial = enforce(
        "officer_01",
        "SELECT id FROM participant ORDER BY id OFFSET 20",
    )
    .unwrap_err();
    assert_eq!(denial.sqlstate, "54000", "{denial}");
    let denial = enforce(
        "officer_01",
        "SELECT * FROM (SELECT id FROM participant ORDER BY id LIMIT 5 OFFSET 100) s",
    )
    .unwrap_err();
    assert_eq!(denial.sqlstate, "54000", "{denial}");
    let paged = rewrite(
        "officer_01",
        "SELECT id FROM participant ORDER BY id LIMIT 5 OFFSET $1",
    );
    assert_eq!(client.query(&paged, &[&19i64]).await.unwrap().len(), 5);
    let error = client.query(&paged, &[&20i64]).await.unwrap_err();
    assert_eq!(guard_reason(&error), "offset:20");
    let denial = enforce("officer_01", "SELECT id FROM participant OFFSET 1 + 1").unwrap_err();
    assert_eq!(denial.sqlstate, "0A000", "{denial}");
}

#[tokio::test]
async fn a_reference_table_does_not_cap_its_statements() {
    let client = connect().await;
    let (sql, cap) = enforce(
        "officer_01",
        "SELECT code, name FROM province ORDER BY code",
    )
    .unwrap();
    assert_eq!(cap, None);
    assert_eq!(texts(&client, &sql).await.unwrap().len(), 63);
    let (_, cap) = enforce(
        "officer_01",
        "SELECT p.id, v.name FROM participant p JOIN province v ON v.code = p.province_code",
    )
    .unwrap();
    assert_eq!(cap, Some(20), "the participant's cap");
    let (_, cap) = enforce("officer_01", "SELECT 1").unwrap();
    assert_eq!(cap, Some(20), "no table: the account's cap");
}

#[tokio::test]
async fn masks_of_the_normalized_policy() {
    let client = connect().await;
    let rows = texts(
        &client,
        &rewrite("officer_01", "SELECT email FROM participant WHERE id = 4"),
    )
    .await
    .unwrap();
    assert_eq!(rows[0][0].as_deref(), Some("***@gmail.com"));
}
