//! Pseudonym keys reach PostgreSQL in the upstream startup packet, never in a
//! statement, and a policy cannot use a key the key file does not hold.

use std::path::PathBuf;

use maskgate_mask::{parse_pg_type, MaskSpec, PseudonymKeys};
use maskgate_policy::{Policy, PolicySettings};
use maskgate_testkit::{PgCluster, ProxyOptions, TestProxy};

const PASSWORD: &str = "correct horse battery";

fn pseudonym_spec() -> MaskSpec {
    let table: toml::Table = toml::from_str("mask = \"pseudonym\"\nkey = \"v1\"").unwrap();
    MaskSpec::from_toml(&table).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mask_expressions_through_the_proxy_use_the_configured_key() {
    let key_file = PseudonymKeys::generate_key_file_text("v1").unwrap();
    let options = ProxyOptions {
        pseudonym_key_file: Some(key_file),
        ..ProxyOptions::default()
    };
    let pg = PgCluster::shared();
    let proxy = TestProxy::start(pg, options).await.unwrap();
    let keys = PseudonymKeys::load(&proxy.config_dir().join("keys.toml")).unwrap();

    let expr = pseudonym_spec()
        .sql_expr("\"x\"", &parse_pg_type("text").unwrap(), &keys)
        .unwrap();
    let client = proxy.connect("alice", PASSWORD).await.unwrap();
    let sql = format!("SELECT {expr} FROM (VALUES ('001203004567'::text)) AS t(\"x\")");
    let token: String = client.query_one(&sql, &[]).await.unwrap().get(0);
    assert_eq!(Some(token), keys.token("v1", "001203004567"));

    // The key material is in no statement PostgreSQL saw.
    let secret_hex = keys.upstream_options();
    let activity = pg
        .psql("SELECT string_agg(query, ' ') FROM pg_stat_activity")
        .unwrap();
    for word in secret_hex.split_whitespace().filter(|w| w.contains('=')) {
        let value = word.split_once('=').unwrap().1;
        assert!(
            !activity.contains(value),
            "key material in pg_stat_activity"
        );
        assert!(!sql.contains(value), "key material in the statement");
    }
}

#[test]
fn a_pseudonym_mask_needs_its_key_in_the_key_file() {
    let files = vec![(
        PathBuf::from("policy.toml"),
        r#"
[tables."public.participant".columns]
citizen_id = { type = "char(12)" }

[roles.analyst]
statements = ["read"]
[roles.analyst.tables."public.participant"]
columns = { citizen_id = { mask = "pseudonym", key = "v1" } }
"#
        .to_string(),
    )];
    let today = time::macros::date!(2026 - 11 - 26);
    let refused = Policy::from_texts(files.clone(), PolicySettings::default(), today).unwrap_err();
    let text = refused.errors.to_string();
    assert!(
        text.contains("policy.toml:8:") && text.contains("key_file"),
        "{text}"
    );

    let settings = PolicySettings {
        pseudonym_keys: vec!["v1".into()],
        ..PolicySettings::default()
    };
    assert!(Policy::from_texts(files, settings, today).is_ok());
}
