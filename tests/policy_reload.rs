//! End to end: changing the policy while the proxy serves. Disabling an account
//! ends its open sessions, an invalid policy changes nothing, reloads under
//! load fail no statement, and SIGHUP reloads the binary's policy.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use maskgate_testkit::{
    accounts_toml, free_port, http_get, rewrite_accounts, PgCluster, ProxyOptions, TestProxy,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

const PASSWORD: &str = "correct horse battery";
/// How long a policy change may take to show; the debounce is 300 ms.
const PATIENCE: Duration = Duration::from_secs(5);

fn users(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| (n.to_string(), PASSWORD.to_string()))
        .collect()
}

async fn start(options: ProxyOptions) -> TestProxy {
    TestProxy::start(PgCluster::shared(), options)
        .await
        .expect("proxy starts")
}

/// Logs in to maskgate at `addr` and proves the session works.
async fn login_at(
    addr: SocketAddr,
    database: &str,
    user: &str,
) -> Result<Client, tokio_postgres::Error> {
    let conn = format!(
        "host={} port={} user={user} password='{PASSWORD}' dbname={database} sslmode=disable connect_timeout=10",
        addr.ip(),
        addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await?;
    Ok(client)
}

async fn login(proxy: &TestProxy, user: &str) -> Result<Client, tokio_postgres::Error> {
    login_at(proxy.addr(), proxy.database(), user).await
}

/// Polls `probe` until it returns `Some`, for at most [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn health(proxy: &TestProxy) -> (u16, String) {
    http_get(proxy.admin_addr().expect("admin"), "/health").await
}

async fn metric(proxy: &TestProxy, series: &str) -> f64 {
    let (status, body) = http_get(proxy.admin_addr().expect("admin"), "/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
        .trim()
        .parse()
        .expect("a number")
}

const RELOADS_OK: &str = "maskgate_policy_reloads_total{result=\"ok\"}";
const RELOADS_REFUSED: &str = "maskgate_policy_reloads_total{result=\"refused\"}";
const ENDED: &str = "this account may no longer be used";

#[track_caller]
fn assert_state(e: &tokio_postgres::Error, state: &SqlState, fragment: &str) {
    assert_eq!(e.code(), Some(state), "{e}");
    let message = e.as_db_error().expect("a server error").message();
    assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_an_account_ends_its_open_sessions() {
    let mut options = ProxyOptions {
        // Three: removing one of two is half the accounts, which the guard refuses.
        users: users(&["alice", "bob", "carol"]),
        ..Default::default()
    };
    let proxy = start(options.clone()).await;
    let simple = login(&proxy, "alice").await.expect("alice");
    let extended = login(&proxy, "alice").await.expect("alice again");
    let bob = login(&proxy, "bob").await.expect("bob");
    assert_eq!(
        metric(&proxy, "maskgate_sessions_ended_by_policy_total").await,
        0.0
    );

    options
        .account_settings
        .push(("alice".into(), "disabled = true".into()));
    rewrite_accounts(&proxy, &options).expect("rewrite accounts");
    let written = Instant::now();

    // The simple-protocol session ends at its next Query.
    let e = eventually("alice's session to end", || async {
        simple.simple_query("SELECT 1").await.err()
    })
    .await;
    let took = written.elapsed();
    assert_state(&e, &SqlState::INVALID_AUTHORIZATION_SPECIFICATION, ENDED);
    assert!(
        took < Duration::from_secs(2),
        "the session ended only {took:?} after the change"
    );
    assert!(simple.is_closed() || simple.simple_query("SELECT 1").await.is_err());

    // The extended-protocol session ends at its next Parse.
    let e = extended
        .query_one("SELECT $1::int", &[&1i32])
        .await
        .expect_err("the second session ends too");
    assert_state(&e, &SqlState::INVALID_AUTHORIZATION_SPECIFICATION, ENDED);

    let e = login(&proxy, "alice")
        .await
        .expect_err("new logins refused");
    assert_state(
        &e,
        &SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        "this account is disabled",
    );
    bob.simple_query("SELECT 1")
        .await
        .expect("bob is unaffected");
    login(&proxy, "bob").await.expect("bob logs in");
    assert_eq!(
        metric(&proxy, "maskgate_sessions_ended_by_policy_total").await,
        2.0
    );

    // Removing the account entirely ends bob's session the same way.
    options.users.retain(|(login, _)| login != "bob");
    rewrite_accounts(&proxy, &options).expect("rewrite accounts");
    let e = eventually("bob's session to end", || async {
        bob.simple_query("SELECT 1").await.err()
    })
    .await;
    assert_state(&e, &SqlState::INVALID_AUTHORIZATION_SPECIFICATION, ENDED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_cannot_keep_running_prepared_statements() {
    let mut options = ProxyOptions::default();
    let proxy = start(options.clone()).await;
    let client = login(&proxy, "alice").await.expect("alice");
    // Prepared once, then run with Bind and Execute only, as pools and drivers do.
    let statement = client.prepare("SELECT $1::int").await.expect("prepare");
    let row = client.query_one(&statement, &[&1i32]).await.expect("run");
    assert_eq!(row.get::<_, i32>(0), 1);

    options
        .account_settings
        .push(("alice".into(), "disabled = true".into()));
    rewrite_accounts(&proxy, &options).expect("rewrite accounts");
    eventually("new logins to be refused", || async {
        login(&proxy, "alice").await.err()
    })
    .await;

    let e = client
        .query_one(&statement, &[&2i32])
        .await
        .expect_err("the prepared statement ran for a disabled account");
    assert_state(&e, &SqlState::INVALID_AUTHORIZATION_SPECIFICATION, ENDED);
}

/// An unknown key on line 3, column 1.
const BROKEN: &str = "[roles.spare]\ndescription = \"Not used\"\ncolour = \"blue\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_changes_nothing() {
    let mut options = ProxyOptions::default();
    let proxy = start(options.clone()).await;
    let session = login(&proxy, "alice").await.expect("alice");
    assert_eq!(health(&proxy).await.0, 200);
    assert_eq!(metric(&proxy, "maskgate_policy_valid").await, 1.0);

    // A broken file, and in the same change a new account: neither takes effect.
    let broken = proxy.config_dir().join("policy/broken.toml");
    std::fs::write(&broken, BROKEN).expect("write broken.toml");
    options.users.push(("carol".into(), PASSWORD.into()));
    rewrite_accounts(&proxy, &options).expect("rewrite accounts");

    let body = eventually("/health to report the refused policy", || async {
        let (status, body) = health(&proxy).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.contains("broken.toml:3:1"), "{body}");
    assert!(body.contains("colour"), "{body}");
    assert_eq!(metric(&proxy, "maskgate_policy_valid").await, 0.0);
    assert!(metric(&proxy, RELOADS_REFUSED).await >= 1.0);

    session
        .simple_query("SELECT 1")
        .await
        .expect("the open session still works");
    login(&proxy, "alice")
        .await
        .expect("new sessions still work");
    let e = login(&proxy, "carol")
        .await
        .expect_err("carol is in a refused policy");
    assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD), "{e}");

    std::fs::remove_file(&broken).expect("remove broken.toml");
    eventually("/health to recover", || async {
        (health(&proxy).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(metric(&proxy, "maskgate_policy_valid").await, 1.0);
    login(&proxy, "carol")
        .await
        .expect("carol once the policy is valid");
    session
        .simple_query("SELECT 1")
        .await
        .expect("the open session survived it all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_fail_no_statement() {
    let base = ProxyOptions {
        users: users(&["alice", "bob"]),
        // Going from alice, bob and dave back to alice alone removes most of these
        // few accounts: the share guard would refuse it (removing every account is
        // refused whatever the share).
        policy_settings: "max_account_removal_share = 1.0".into(),
        pool_size: 8,
        ..Default::default()
    };
    let proxy = start(base.clone()).await;
    let reloads_before = metric(&proxy, RELOADS_OK).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let client = login(&proxy, "alice").await.expect("alice");
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let mut i = 0i32;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // Both protocols: the account is checked at Query and at Parse.
                let result = if i % 2 == 0 {
                    client.simple_query("SELECT 1").await.map(drop)
                } else {
                    client
                        .query_one("SELECT $1::int", &[&i])
                        .await
                        .map(|row| assert_eq!(row.get::<_, i32>(0), i))
                };
                match result {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }

    // Valid changes that do not concern alice: bob comes and goes, and changes.
    // The files are prepared up front: verifiers take a while to generate.
    let variants: Vec<String> = (0..4)
        .map(|variant| {
            let mut options = base.clone();
            match variant {
                0 => options.users.retain(|(login, _)| login != "bob"),
                1 => options.account_settings.push((
                    "bob".into(),
                    "attributes = { unit = \"HN-01\" }\nmax_sessions = 1".into(),
                )),
                2 => options
                    .account_settings
                    .push(("bob".into(), "disabled = true".into())),
                _ => options.users.push(("dave".into(), PASSWORD.into())),
            }
            accounts_toml(&options)
        })
        .collect();
    let accounts = proxy.config_dir().join("policy/accounts.toml");
    for round in 0..20 {
        replace(&accounts, &variants[round % 4]);
        // Reload at once as SIGHUP would; every other change is also left
        // quiet long enough for the directory watcher to reload it.
        proxy
            .handle()
            .reload_policy()
            .expect("a valid policy reloads");
        let pause = if round % 2 == 0 { 10 } else { 360 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let (mut ok, mut failed) = (0, Vec::new());
    for worker in workers {
        let (n, errors) = worker.await.expect("worker");
        ok += n;
        failed.extend(errors);
    }
    assert!(
        failed.is_empty(),
        "{} statements failed: {failed:?}",
        failed.len()
    );
    assert!(ok > 100, "only {ok} statements ran");
    let reloads = metric(&proxy, RELOADS_OK).await - reloads_before;
    assert!(reloads >= 20.0, "only {reloads} reloads");
    assert_eq!(metric(&proxy, RELOADS_REFUSED).await, 0.0);
    assert_eq!(health(&proxy).await.0, 200);
}

/// The `maskgate` binary, killed when dropped.
struct Maskgate {
    child: std::process::Child,
}

impl Drop for Maskgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces `path` atomically, as editors and deployment tools do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policy_of_the_binary() {
    let mut options = ProxyOptions {
        admin: false,
        ..Default::default()
    };
    // The harness writes a complete configuration; the binary runs a copy of it.
    let harness = start(options.clone()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let from = harness.config_dir();
    let port = free_port();
    let config = std::fs::read_to_string(from.join("maskgate.toml")).expect("config");
    let config = config
        .replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
            1,
        )
        // Its own audit directory: the in-process proxy holds a lock on the other.
        .replacen("dir = \"audit\"", &format!("dir = \"audit-{port}\""), 1);
    std::fs::write(dir.path().join("maskgate.toml"), config).expect("config copy");
    for file in ["upstream.pass", "audit-signing.pem", "audit-seal.keys"] {
        std::fs::copy(from.join(file), dir.path().join(file)).expect("copy");
    }
    std::fs::create_dir(dir.path().join("policy")).expect("policy dir");
    std::fs::copy(
        from.join("policy/harness.toml"),
        dir.path().join("policy/harness.toml"),
    )
    .expect("copy");
    // The accounts file lives outside the watched directory, behind a symlink,
    // so that only SIGHUP can notice a change to it.
    let accounts = dir.path().join("accounts.toml");
    replace(&accounts, &accounts_toml(&options));
    std::os::unix::fs::symlink(&accounts, dir.path().join("policy/accounts.toml"))
        .expect("symlink");
    let database = harness.database().to_string();
    drop(harness);

    let log = std::fs::File::create(dir.path().join("maskgate.log")).expect("log file");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_maskgate"))
        .arg("serve")
        .arg("--config")
        .arg(dir.path().join("maskgate.toml"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("maskgate starts");
    let pid = child.id();
    let _maskgate = Maskgate { child };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let log_text = || std::fs::read_to_string(dir.path().join("maskgate.log")).unwrap_or_default();

    eventually("the binary to accept alice", || async {
        login_at(addr, &database, "alice").await.ok()
    })
    .await;

    options.users.push(("dave".into(), PASSWORD.into()));
    replace(&accounts, &accounts_toml(&options));
    // Longer than the debounce: the watcher did not see this change.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let e = login_at(addr, &database, "dave")
        .await
        .expect_err("dave is not in the policy yet");
    assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD), "{e}");

    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let dave = eventually("dave to be admitted after SIGHUP", || async {
        login_at(addr, &database, "dave").await.ok()
    })
    .await;
    dave.simple_query("SELECT 1").await.expect("dave's session");
    login_at(addr, &database, "alice")
        .await
        .unwrap_or_else(|e| panic!("alice still works: {e}\n{}", log_text()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_removing_every_account_or_too_many_is_refused() {
    let mut options = ProxyOptions {
        users: users(&["alice", "bob", "carol", "dave"]),
        ..Default::default()
    };
    let proxy = start(options.clone()).await;
    let accounts = proxy.config_dir().join("policy/accounts.toml");
    let session = login(&proxy, "alice").await.expect("alice");

    // An operator's slip: the accounts file emptied (written and renamed, as a
    // deployment tool would).
    replace(&accounts, "");
    let body = eventually("/health to report the refused policy", || async {
        let (status, body) = health(&proxy).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.contains("removes every account (4)"), "{body}");
    assert!(body.contains("confirm_account_removal"), "{body}");
    assert_eq!(metric(&proxy, "maskgate_policy_valid").await, 0.0);
    assert!(metric(&proxy, RELOADS_REFUSED).await >= 1.0);
    session
        .simple_query("SELECT 1")
        .await
        .expect("the open session goes on under the last good policy");
    login(&proxy, "bob").await.expect("logins still work");

    // Three of four accounts gone is more than half: refused too.
    options.users = users(&["alice"]);
    rewrite_accounts(&proxy, &options).expect("rewrite accounts");
    eventually("/health to report the second refusal", || async {
        let (status, body) = health(&proxy).await;
        (status == 503 && body.contains("removes 3 of 4")).then_some(())
    })
    .await;
    login(&proxy, "dave").await.expect("dave is still in force");

    // One of four is an ordinary change.
    options.users = users(&["alice", "bob", "carol"]);
    rewrite_accounts(&proxy, &options).expect("rewrite accounts");
    eventually("/health to recover", || async {
        (health(&proxy).await.0 == 200).then_some(())
    })
    .await;
    let e = login(&proxy, "dave").await.expect_err("dave was removed");
    assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_removal_of_every_account_is_applied_and_health_says_so() {
    let proxy = start(ProxyOptions {
        policy_settings: "confirm_account_removal = true".into(),
        ..Default::default()
    })
    .await;
    // The proxy serves (and so watches its policy directory) before the change.
    login(&proxy, "alice").await.expect("alice");
    replace(&proxy.config_dir().join("policy/accounts.toml"), "");
    let body = eventually("/health to report a policy without accounts", || async {
        let (status, body) = health(&proxy).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.contains("no accounts"), "{body}");
    assert_eq!(metric(&proxy, "maskgate_policy_accounts").await, 0.0);
    let e = login(&proxy, "alice")
        .await
        .expect_err("no account is left");
    assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD), "{e}");
}
