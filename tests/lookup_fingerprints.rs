//! A lookup is fingerprinted by the one key it pins, however the client typed or
//! sent it: constants before the key, quotes, escapes, blank padding, leading
//! zeros, binary parameters whose bytes look like text. Other values of the
//! statement never count as keys, honeytokens are recognised in every spelling,
//! and the breach report's number of people is an upper bound. Real driver, real
//! proxy, real PostgreSQL.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use maskgate_testkit::{audit_records, PgCluster, ProxyOptions, TestProxy};
use serde_json::Value;
use tokio_postgres::types::Type;

const PASSWORD: &str = "correct horse battery";

const POLICY: &str = r#"
[labels]
"pii.identifier" = "Citizen ID"
"pii.name" = "Full name"

[tables."public.person".columns]
id = { type = "integer", canaries = ["1094795585"] }
citizen_id = { type = "char(12)", labels = ["pii.identifier"], canaries = ["999000000001"] }
full_name = { type = "text", labels = ["pii.name"] }

[roles.clerk]
description = "Looks up one person at a time by citizen ID or number"
statements = ["read"]
max_rows = 5

[roles.clerk.tables."public.person"]
lookup_keys = ["citizen_id", "id"]
labels = { "pii.identifier" = { mask = "partial", keep_last = 4 } }
columns = { id = "allow", full_name = "allow" }

[roles.trainee]
description = "A clerk in shadow mode: statements run as sent"
statements = ["read"]
mode = "monitor"

[roles.trainee.tables."public.person"]
lookup_keys = ["citizen_id", "id"]
labels = { "pii.identifier" = { mask = "partial", keep_last = 4 } }
columns = { id = "allow", full_name = "allow" }
"#;

const SCHEMA: &str = "
CREATE TABLE person (id integer PRIMARY KEY, citizen_id char(12) NOT NULL, full_name text NOT NULL);
INSERT INTO person SELECT g, lpad(g::text, 12, '0'), 'Person ' || g FROM generate_series(1, 300) g;
INSERT INTO person VALUES (1094795585, '999000000001', 'Nobody Real');
";

/// The `keys` of `user`'s statement records, in order, once `count` are written.
async fn keys_of(dir: &Path, user: &str, count: usize) -> Vec<Value> {
    for _ in 0..400 {
        let keys: Vec<Value> = audit_records(dir)
            .into_iter()
            .filter(|r| r["kind"] == "statement" && r["user"] == user)
            .map(|r| r["keys"].clone())
            .collect();
        if keys.len() >= count {
            return keys;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{user}'s {count} statement records were not written");
}

async fn alerts(dir: &Path, rule: &str, account: &str, at_least: usize) -> Vec<Value> {
    for _ in 0..400 {
        let found: Vec<Value> = audit_records(dir)
            .into_iter()
            .filter(|r| r["kind"] == "alert" && r["rule"] == rule && r["account"] == account)
            .collect();
        if found.len() >= at_least {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no {rule} alert for {account}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_is_fingerprinted_by_its_key_however_it_is_typed_or_sent() {
    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    cluster.psql(SCHEMA).unwrap();
    let users = ["clerk", "clerk2", "clerk3", "clerk4", "clerk5", "trainee"];
    let options = ProxyOptions {
        users: users
            .iter()
            .map(|u| (u.to_string(), PASSWORD.to_string()))
            .collect(),
        roles: vec!["clerk".into()],
        user_roles: vec![("trainee".into(), vec!["trainee".into()])],
        policy_files: vec![("register.toml".into(), POLICY.into())],
        extra_config: "[detection]\n[detection.thresholds]\nenumeration_keys = 50\n".into(),
        ..ProxyOptions::default()
    };
    let proxy = TestProxy::start(&cluster, options).await.unwrap();
    let dir = proxy.audit_dir();

    // The honeytoken's citizen ID, as a text parameter and typed every other way.
    let clerk = proxy.connect("clerk", PASSWORD).await.unwrap();
    let dummies: Vec<String> = (b'a'..=b'p').map(|c| format!("'x{}'", c as char)).collect();
    let sql = format!(
        "SELECT id, full_name, {} FROM person WHERE citizen_id = $1",
        dummies.join(", ")
    );
    clerk
        .query(
            "SELECT id, full_name FROM person WHERE citizen_id = $1",
            &[&"999000000001"],
        )
        .await
        .unwrap();
    clerk.query(&sql, &[&"999000000001"]).await.unwrap();
    let padded = format!("'999000000001{}'", " ".repeat(250));
    for typed in [
        "'999000000001'",
        padded.as_str(),
        "E'99900000000\\061'",
        "$k$999000000001$k$",
    ] {
        let sql = format!("SELECT id, 'a', 7 FROM person WHERE 1 < 2 AND citizen_id = {typed}");
        clerk.simple_query(&sql).await.unwrap();
    }
    let keys = keys_of(&dir, "clerk", 6).await;
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(k.as_array().map(Vec::len), Some(1), "statement {i}: {k}");
        assert_eq!(*k, keys[0], "statement {i} has another fingerprint");
    }
    assert!(
        keys[0][0]["n"].is_string(),
        "a key ending in digits has a range"
    );
    alerts(&dir, "canary", "clerk", 1).await;

    // The honeytoken's number: a binary int4 whose bytes are "AAAA" (its type
    // described by the server), leading zeros, a quoted and signed spelling.
    let clerk2 = proxy.connect("clerk2", PASSWORD).await.unwrap();
    clerk2
        .query(
            "SELECT full_name FROM person WHERE id = $1",
            &[&1094795585i32],
        )
        .await
        .unwrap();
    let zeros = format!(
        "SELECT full_name FROM person WHERE id = {}1094795585",
        "0".repeat(260)
    );
    clerk2.simple_query(&zeros).await.unwrap();
    clerk2
        .simple_query("SELECT full_name FROM person WHERE id = '  +1094795585 '")
        .await
        .unwrap();
    // A type declared in the Parse (no Describe): an int8 read as one.
    clerk2
        .query_typed(
            "SELECT full_name FROM person WHERE id = $1",
            &[(&1094795585i64, Type::INT8)],
        )
        .await
        .unwrap();
    let keys = keys_of(&dir, "clerk2", 4).await;
    assert!(
        keys.iter()
            .all(|k| *k == keys[0] && k.as_array().map(Vec::len) == Some(1)),
        "{keys:?}"
    );
    alerts(&dir, "canary", "clerk2", 1).await;

    // A shadow-mode account runs its lookups as typed; their keys are those
    // enforcing would pin, and the honeytoken is seen.
    let trainee = proxy.connect("trainee", PASSWORD).await.unwrap();
    trainee
        .query(
            "SELECT full_name, 'x' FROM person WHERE citizen_id = $1",
            &[&"999000000001"],
        )
        .await
        .unwrap();
    let keys = keys_of(&dir, "trainee", 1).await;
    assert_eq!(keys[0], keys_of(&dir, "clerk", 1).await[0]);
    alerts(&dir, "canary", "trainee", 1).await;

    // A lookup prepared by SQL and run with EXECUTE: the EXECUTE's record names
    // the key its argument pins, and the prepared statement's table.
    let clerk5 = proxy.connect("clerk5", PASSWORD).await.unwrap();
    clerk5
        .batch_execute(
            "PREPARE look(char(12)) AS SELECT full_name FROM person WHERE citizen_id = $1; \
             EXECUTE look('999000000001')",
        )
        .await
        .unwrap();
    clerk5
        .simple_query("EXECUTE Look ('999000000001'::char(12))")
        .await
        .unwrap();
    let mut waited = 0;
    let executes: Vec<Value> = loop {
        let found: Vec<Value> = audit_records(&dir)
            .into_iter()
            .filter(|r| r["kind"] == "statement" && r["user"] == "clerk5")
            .collect();
        if found.len() >= 2 {
            break found;
        }
        waited += 1;
        assert!(waited < 200, "the EXECUTE records were not written");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let canary_key = keys_of(&dir, "clerk", 1).await[0][0].clone();
    for record in &executes {
        let keys = record["keys"].as_array().cloned().unwrap_or_default();
        assert!(keys.contains(&canary_key), "{record}");
        assert!(
            record["tables"].as_array().is_some_and(|t| t
                .iter()
                .any(|t| t["table"] == "public.person" && t["pinned_by"].is_array())),
            "{record}"
        );
    }
    alerts(&dir, "canary", "clerk5", 1).await;
    // A second PREPARE of the name, which PostgreSQL refuses, does not take the
    // key out of the next EXECUTE's record; nor does an EXECUTE parsed (extended
    // protocol) before its PREPARE.
    let _ = clerk5.simple_query("PREPARE look AS SELECT 1").await;
    clerk5
        .simple_query("EXECUTE look('999000000001')")
        .await
        .unwrap();
    let early = clerk5
        .prepare("EXECUTE later('999000000001')")
        .await
        .unwrap();
    clerk5
        .simple_query(
            "PREPARE later(char(12)) AS SELECT full_name FROM person WHERE citizen_id = $1",
        )
        .await
        .unwrap();
    // (tokio-postgres read the EXECUTE's description before the statement existed,
    // as no rows, and refuses the rows that come: the statement ran all the same.)
    let _ = clerk5.query(&early, &[]).await;
    let mut waited = 0;
    let executes: Vec<Value> = loop {
        let found: Vec<Value> = audit_records(&dir)
            .into_iter()
            .filter(|r| {
                r["kind"] == "statement"
                    && r["user"] == "clerk5"
                    && r["statement"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("EXECUTE"))
            })
            .collect();
        if found.len() >= 3 {
            break found;
        }
        waited += 1;
        assert!(waited < 200, "the EXECUTE records were not written");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    for record in &executes[executes.len() - 2..] {
        let keys = record["keys"].as_array().cloned().unwrap_or_default();
        assert!(keys.contains(&canary_key), "{record}");
    }

    // One person looked up 25 times with a growing second parameter: one key, and
    // no enumeration alert.
    let clerk3 = proxy.connect("clerk3", PASSWORD).await.unwrap();
    for i in 0..25i32 {
        clerk3
            .query(
                "SELECT full_name FROM person WHERE citizen_id = $1 AND id > $2",
                &[&"000000000042", &(i - 100)],
            )
            .await
            .unwrap();
    }
    let keys = keys_of(&dir, "clerk3", 25).await;
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");

    // Thirty people harvested with blank-padded constants: each one a key, the
    // sequential rule fires, and the breach report counts them.
    let clerk4 = proxy.connect("clerk4", PASSWORD).await.unwrap();
    for i in 100..130 {
        let sql = format!(
            "SELECT id, full_name FROM person WHERE citizen_id = '{i:012}{}'",
            " ".repeat(250)
        );
        clerk4.simple_query(&sql).await.unwrap();
    }
    let keys = keys_of(&dir, "clerk4", 30).await;
    let distinct: std::collections::BTreeSet<String> =
        keys.iter().map(|k| k[0]["k"].to_string()).collect();
    assert_eq!(distinct.len(), 30);
    alerts(&dir, "enumeration", "clerk4", 1).await;
    assert!(audit_records(&dir)
        .iter()
        .filter(|r| r["kind"] == "alert" && r["account"] == "clerk3")
        .all(|r| r["rule"] != "enumeration"));

    let config = proxy.config_dir().join("maskgate.toml");
    let key = proxy.audit_public_key();
    let breach = Command::new(env!("CARGO_BIN_EXE_maskgate"))
        .args(["report", "breach", "--account", "clerk4", "--from", "1h"])
        .arg("--config")
        .arg(&config)
        .arg("--public-key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        breach.status.success(),
        "{}",
        String::from_utf8_lossy(&breach.stderr)
    );
    let breach: Value = serde_json::from_slice(&breach.stdout).unwrap();
    let subjects = &breach["data_subjects"];
    assert_eq!(subjects["looked_up"], 30, "{subjects}");
    assert!(subjects["at_most"].as_u64().unwrap() >= 30, "{subjects}");
    assert_eq!(breach["records"], 30);
    assert!(breach["machines"][0]["client"] == "127.0.0.1", "{breach:#}");
}
