//! Until statement rules are enforced, restricted accounts are refused at
//! login instead of being relayed unfiltered (fail closed).

use maskgate_testkit::{PgCluster, ProxyOptions, TestProxy};
use tokio_postgres::error::SqlState;

const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_account_is_refused_rather_than_relayed_unfiltered() {
    let options = ProxyOptions {
        users: vec![("clerk".into(), PASSWORD.into())],
        roles: vec!["reader".into()],
        policy_files: vec![(
            "roles.toml".into(),
            "[roles.reader]\ndescription = \"reads, restricted\"\nstatements = [\"read\"]\n".into(),
        )],
        ..ProxyOptions::default()
    };
    let proxy = TestProxy::start(PgCluster::shared(), options)
        .await
        .unwrap();
    let err = proxy.connect("clerk", PASSWORD).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED), "{err}");
    let text = err.as_db_error().unwrap().message().to_string();
    assert!(
        text.contains("cannot enforce statement rules yet"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrestricted_account_is_relayed() {
    let proxy = TestProxy::start(PgCluster::shared(), ProxyOptions::default())
        .await
        .unwrap();
    let client = proxy.connect("alice", PASSWORD).await.unwrap();
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}
