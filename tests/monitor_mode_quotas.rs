//! End to end: an account whose roles are all in monitor mode runs its statements
//! as sent (no cap), but its role's `rows_per_hour` still stops the rows past it.

#[path = "common/enforcement.rs"]
mod enforcement;

use enforcement::{simple, PASSWORD};
use maskgate_testkit::{PgCluster, ProxyOptions, TestProxy};

const ROLES: &str = "[roles.trial]\ndescription = \"A role on trial\"\n\
    statements = [\"read\"]\nmode = \"monitor\"\nmax_rows = 2\nrows_per_hour = 7\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitored_account_is_not_capped_but_its_hourly_rows_are() {
    let proxy = TestProxy::start(
        PgCluster::shared(),
        ProxyOptions {
            users: vec![("trial".into(), PASSWORD.into())],
            user_roles: vec![("trial".into(), vec!["trial".into()])],
            policy_files: vec![("roles.toml".into(), ROLES.into())],
            ..ProxyOptions::default()
        },
    )
    .await
    .expect("proxy starts");
    let client = proxy.connect("trial", PASSWORD).await.expect("logs in");
    // Five rows where the cap is two: monitor mode does not cap.
    let first = simple(&client, "SELECT generate_series(1, 5)").await;
    assert!(first.error.is_none(), "{:?}", first.error);
    assert_eq!(first.rows.len(), 5);
    // Two of the hour's seven are left: the third row stops the statement.
    let second = simple(&client, "SELECT generate_series(1, 5)").await;
    assert_eq!(second.rows.len(), 2, "{:?}", second.error);
    assert_eq!(
        second.error.as_ref().map(|e| e.code.as_str()),
        Some("53400"),
        "{:?}",
        second.error
    );
}
