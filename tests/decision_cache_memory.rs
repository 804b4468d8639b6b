//! End to end against the real binary: the analyzer's decisions of every account
//! and the printed shapes already checked share one budget in bytes, so many
//! restricted accounts sending many distinct statements leave the process's
//! memory bounded.

use std::path::Path;

use futures_util::future::join_all;
use maskgate_testkit::register::{self, Account, PASSWORD};
use maskgate_testkit::{http_get, metric, ServeOptions, ServedBinary, TestProxy};
use tokio_postgres::NoTls;

const ACCOUNTS: usize = 4;
const BUDGET: u64 = 2 << 20;
const WINDOWS: usize = 4;

async fn run(served: &ServedBinary, login: &str, statements: std::ops::Range<usize>) {
    let (client, connection) = tokio_postgres::connect(&served.conn_string(login, PASSWORD), NoTls)
        .await
        .expect("a restricted account logs in");
    tokio::spawn(connection);
    for i in statements {
        // Distinct texts, each a cold analysis and an entry of its own.
        client
            .simple_query(&format!(
                "SELECT {i} AS n, 'padding to make the text longer' AS p"
            ))
            .await
            .expect("allowed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_of_many_accounts_stay_within_one_byte_budget() {
    let cluster = register::shared();
    let accounts: Vec<Account> = (0..ACCOUNTS)
        .map(|i| Account::new(&format!("clerk_cache_{i}"), &["clerk"]).with("province", "01"))
        .collect();
    let files = register::without_quotas(register::example_policy_files().unwrap());
    let mut options = register::proxy_options(&accounts, files);
    options.server_settings = format!("decision_cache_bytes = {BUDGET}");
    let template = TestProxy::start(cluster, options)
        .await
        .expect("proxy starts");
    let served = ServedBinary::start(
        Path::new(env!("CARGO_BIN_EXE_maskgate")),
        template,
        ServeOptions {
            // One allocator arena per thread makes resident memory jump whenever
            // the runtime starts a thread; two arenas leave the caches' growth.
            env: vec![("MALLOC_ARENA_MAX".into(), "2".into())],
            ..ServeOptions::default()
        },
    )
    .await
    .expect("maskgate runs");

    let round = |range: std::ops::Range<usize>| {
        join_all(
            accounts
                .iter()
                .map(|a| run(&served, &a.login, range.clone())),
        )
    };
    // Fill the caches past their budget first: from then on a bounded cache makes
    // room for each new entry, an unbounded one grows by every entry it takes.
    round(0..1500).await;
    // Resident memory also jumps now and then for reasons of the allocator's own
    // (a burst of several MB, once): a bounded cache shows windows that do not
    // grow, an unbounded one grows in every window (about 8 MB each here).
    let mut growths = Vec::new();
    for window in 1..=WINDOWS {
        let before = served.rss_bytes();
        round(window * 1500..window * 1500 + 1500).await;
        growths.push(served.rss_bytes().saturating_sub(before));
    }
    let (_, text) = http_get(served.admin_addr().unwrap(), "/metrics").await;
    let cached = metric(&text, "maskgate_decision_cache_bytes");
    eprintln!(
        "{WINDOWS} windows of {} distinct statements over {ACCOUNTS} accounts: RSS grew by \
         {growths:?} bytes; caches {cached} bytes (budget {BUDGET})",
        ACCOUNTS * 1500
    );
    assert!(cached <= BUDGET as f64, "{cached} bytes cached");
    let least = growths.iter().copied().min().unwrap_or(0);
    assert!(least < 2 << 20, "memory grew in every window: {growths:?}");
}
