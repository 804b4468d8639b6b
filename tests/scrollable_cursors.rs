//! Scrollable cursors of a restricted account, in the simple and the extended
//! protocol: every direction works within the cap, rows fetched again count against
//! the cursor's cap and the hourly quota, and no positioning returns the row past the
//! cap, a row out of scope or an unmasked value. The cursor reads people of province
//! 01 (even ids) in id order, so row k of the cursor is the person with id 2k.

#[path = "common/enforcement.rs"]
mod enforcement;

use enforcement::{extended, simple, Outcome};
use maskgate_testkit::{PgCluster, ProxyOptions, TestProxy};
use tokio_postgres::{Client, SimpleQueryMessage};

const PASSWORD: &str = "correct horse battery";
const CAP: i64 = 5;

const POLICY: &str = r#"
[labels]
"pii.identifier" = "Citizen ID"

[tables."public.person".columns]
id = { type = "bigint" }
citizen_id = { type = "char(12)", labels = ["pii.identifier"] }
province_code = { type = "char(2)" }

[roles.clerk]
statements = ["read"]
max_rows = 5

[roles.clerk.tables."public.person"]
row_filter = "province_code = :province"
labels = { "pii.identifier" = { mask = "partial", keep_last = 4 } }
columns = { id = "allow", province_code = "allow" }

[roles.metered]
statements = ["read"]
max_rows = 5
rows_per_hour = 8

[roles.metered.tables."public.person"]
row_filter = "province_code = :province"
columns = { id = "allow", province_code = "allow" }
"#;

const SCHEMA: &str = "
CREATE TABLE person (id bigint PRIMARY KEY, citizen_id char(12) NOT NULL,
                     province_code char(2) NOT NULL);
INSERT INTO person SELECT g, lpad((1203004000 + g)::text, 12, '0'),
       CASE WHEN g % 2 = 0 THEN '01' ELSE '79' END
FROM generate_series(1, 40) g;
";

async fn start() -> (PgCluster, TestProxy) {
    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    cluster.psql(SCHEMA).unwrap();
    let province = "attributes = { province = \"01\" }".to_owned();
    let options = ProxyOptions {
        users: vec![
            ("clerk".into(), PASSWORD.into()),
            ("metered".into(), PASSWORD.into()),
        ],
        user_roles: vec![
            ("clerk".into(), vec!["clerk".into()]),
            ("metered".into(), vec!["metered".into()]),
        ],
        account_settings: vec![
            ("clerk".into(), province.clone()),
            ("metered".into(), province),
        ],
        policy_files: vec![("register.toml".into(), POLICY.into())],
        ..ProxyOptions::default()
    };
    let proxy = TestProxy::start(&cluster, options).await.unwrap();
    (cluster, proxy)
}

async fn run(protocol: &str, client: &Client, sql: &str) -> Outcome {
    match protocol {
        "simple" => simple(client, sql).await,
        _ => extended(client, sql).await,
    }
}

/// The ids of the rows, checking each is in scope, within the cap and masked.
fn ids(what: &str, outcome: &Outcome) -> Vec<i64> {
    outcome
        .rows
        .iter()
        .map(|row| {
            let id: i64 = row.get("id").unwrap().parse().unwrap();
            assert!(id % 2 == 0, "{what}: person {id} is out of scope");
            assert!(id <= 2 * CAP, "{what}: person {id} is past the cap");
            if let Some(cid) = row.get("citizen_id") {
                assert!(cid.starts_with("********"), "{what}: {cid} unmasked");
            }
            id
        })
        .collect()
}

/// Declares a SCROLL cursor in a new transaction, runs `steps` (statement, the ids
/// it returns, the SQLSTATE it ends with), and rolls back.
async fn scenario(protocol: &str, client: &Client, steps: &[(&str, &[i64], Option<&str>)]) {
    let declare = "DECLARE c SCROLL CURSOR FOR SELECT id, citizen_id FROM person ORDER BY id";
    for sql in ["BEGIN", declare] {
        assert!(run(protocol, client, sql).await.error.is_none(), "{sql}");
    }
    for (sql, expected, code) in steps {
        let what = format!("{protocol}: {sql}");
        let outcome = run(protocol, client, sql).await;
        assert_eq!(ids(&what, &outcome), *expected, "{what}");
        let got = outcome.error.as_ref().map(|e| e.code.as_str());
        assert_eq!(got, *code, "{what}: {:?}", outcome.error);
    }
    assert!(run(protocol, client, "ROLLBACK").await.error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrollable_cursors_work_within_the_cap_and_never_past_it() {
    let (_cluster, proxy) = start().await;
    let client = proxy.connect("clerk", PASSWORD).await.unwrap();
    let cap = Some("54000");
    for protocol in ["simple", "extended"] {
        // Every direction, within the cap: 5 rows sent (6 and 2 twice).
        scenario(
            protocol,
            &client,
            &[
                ("FETCH ABSOLUTE 4 FROM c", &[8], None),
                ("FETCH RELATIVE -2 FROM c", &[4], None),
                ("FETCH RELATIVE 0 FROM c", &[4], None),
                ("MOVE -1 FROM c", &[], None),
                ("FETCH FIRST FROM c", &[2], None),
                ("FETCH ABSOLUTE 5 FROM c", &[10], None),
            ],
        )
        .await;
        // Rows fetched again count: 4 forward, then 3 back of which 1 fits.
        scenario(
            protocol,
            &client,
            &[
                ("FETCH 4 FROM c", &[2, 4, 6, 8], None),
                ("FETCH BACKWARD 3 FROM c", &[6], cap),
            ],
        )
        .await;
        // Row 6 exists (the cursor holds cap + 1 rows) but is never sent, reached
        // however: directly, stepping, from past the end, or from the end.
        for steps in [
            &[("FETCH ABSOLUTE 6 FROM c", &[][..], cap)][..],
            &[
                ("MOVE ABSOLUTE 5 FROM c", &[], None),
                ("FETCH NEXT FROM c", &[], cap),
            ],
            &[
                ("MOVE ABSOLUTE 20 FROM c", &[], None),
                ("FETCH PRIOR FROM c", &[], cap),
            ],
            &[("FETCH LAST FROM c", &[], cap)],
            &[
                ("MOVE FORWARD ALL FROM c", &[], None),
                ("FETCH ABSOLUTE -2 FROM c", &[10], None),
                ("FETCH LAST FROM c", &[], cap),
            ],
            &[("FETCH ALL FROM c", &[2, 4, 6, 8, 10], cap)],
        ] {
            scenario(protocol, &client, steps).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_reveals_no_more_than_the_cap() {
    let (_cluster, proxy) = start().await;
    let client = proxy.connect("clerk", PASSWORD).await.unwrap();
    client
        .batch_execute(
            "BEGIN; DECLARE c SCROLL CURSOR FOR SELECT id FROM person ORDER BY id; \
             DECLARE d SCROLL CURSOR FOR SELECT id FROM person ORDER BY id",
        )
        .await
        .unwrap();
    // 20 people are in scope; MOVE counts at most cap + 1 of them.
    let moved = client
        .simple_query("MOVE FORWARD ALL FROM c")
        .await
        .unwrap();
    let tag = moved.iter().find_map(|m| match m {
        SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    });
    assert_eq!(tag, Some(CAP as u64 + 1));
    let moved = client
        .execute("MOVE FORWARD ALL FROM d", &[])
        .await
        .unwrap();
    assert_eq!(moved, CAP as u64 + 1);
    client.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_fetched_again_count_against_the_hourly_quota() {
    let (_cluster, proxy) = start().await;
    let client = proxy.connect("metered", PASSWORD).await.unwrap();
    let declare =
        |name: &str| format!("DECLARE {name} SCROLL CURSOR FOR SELECT id FROM person ORDER BY id");
    for sql in ["BEGIN".to_owned(), declare("a"), declare("b")] {
        client.batch_execute(&sql).await.unwrap();
    }
    // 5 rows of a, 3 of b: the 8 rows of the hour. Fetching b's row again is a 9th.
    let a = simple(&client, "FETCH 5 FROM a").await;
    assert_eq!(ids("a", &a), [2, 4, 6, 8, 10]);
    let b = simple(&client, "FETCH 3 FROM b").await;
    assert_eq!(ids("b", &b), [2, 4, 6]);
    let again = simple(&client, "FETCH RELATIVE 0 FROM b").await;
    assert!(again.rows.is_empty(), "{:?}", again.rows.len());
    assert_eq!(again.error.map(|e| e.code), Some("53400".to_owned()));
}
