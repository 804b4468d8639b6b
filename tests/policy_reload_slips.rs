//! End to end: policy changes that are not atomic renames. A file written in place
//! is not put in force while it is still open for writing (a half-written
//! accounts file once enabled a disabled break-glass account), a reload that widens
//! access is named in the trail, and a swapped policy directory (renamed into
//! place, or a symlink switched to another release) is still watched afterwards.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use maskgate_testkit::{
    accounts_toml, audit_records_of, metric, rewrite_accounts, PgCluster, ProxyOptions, TestProxy,
};
use tokio_postgres::Client;

const PASSWORD: &str = "correct horse battery";
/// How long a policy change may take to show: debounce, settle time, a check.
const PATIENCE: Duration = Duration::from_secs(8);

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

async fn login(proxy: &TestProxy, user: &str) -> Result<Client, tokio_postgres::Error> {
    let client = proxy.connect(user, PASSWORD).await?;
    client.simple_query("SELECT 1").await?;
    Ok(client)
}

/// Waits until `user` can log in, for at most [`PATIENCE`], trying once per
/// accepted reload: failed logins lock the name.
async fn admitted(proxy: &TestProxy, user: &str) {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = -1.0;
    loop {
        let text = proxy.handle().metrics().encode_text();
        let reloads = metric(&text, "maskgate_policy_reloads_total{result=\"ok\"}");
        if reloads != seen {
            seen = reloads;
            if login(proxy, user).await.is_ok() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{user} was never admitted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_in_place_is_read_once_closed_and_widening_is_recorded() {
    let mut options = ProxyOptions {
        users: users(&["alice", "bob", "dba_oncall"]),
        account_settings: vec![("dba_oncall".into(), "disabled = true".into())],
        audit: true,
        ..Default::default()
    };
    let proxy = start(options.clone()).await;
    login(&proxy, "alice").await.expect("alice");
    assert!(
        login(&proxy, "dba_oncall").await.is_err(),
        "dba_oncall is disabled"
    );

    // The same accounts and carol, written in place, slowly: the file stops just
    // before dba_oncall's `disabled = true` and stays open for a while.
    options.users.insert(2, ("carol".into(), PASSWORD.into()));
    let text = accounts_toml(&options);
    let cut = text.find("disabled = true").expect("the disabled line");
    let path = proxy.config_dir().join("policy/accounts.toml");
    let mut file = std::fs::File::create(&path).expect("open in place");
    file.write_all(&text.as_bytes()[..cut]).expect("write");
    file.flush().expect("flush");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        login(&proxy, "dba_oncall").await.is_err(),
        "a half-written file was put in force: the disabled account logs in"
    );
    file.write_all(&text.as_bytes()[cut..])
        .expect("write the rest");
    drop(file);
    admitted(&proxy, "carol").await;
    assert!(login(&proxy, "dba_oncall").await.is_err(), "still disabled");

    // Enabling it is meant here, and named in the trail as a widening.
    options.account_settings.clear();
    rewrite_accounts(&proxy, &options).expect("rewrite");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reloads = audit_records_of(&proxy.audit_dir(), "policy_reload");
        let widened = reloads.iter().find(|r| {
            r["widened"]
                .as_array()
                .is_some_and(|w| w.iter().any(|x| x == "account dba_oncall enabled"))
        });
        if widened.is_some() {
            // Adding carol was a widening too; nothing narrowing is listed.
            assert!(reloads.iter().any(|r| r["widened"]
                .as_array()
                .is_some_and(|w| w.iter().any(|x| x == "account carol added"))));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no widening recorded: {reloads:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    login(&proxy, "dba_oncall")
        .await
        .expect("dba_oncall is enabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_policy_directory_is_still_watched() {
    let mut options = ProxyOptions {
        users: users(&["alice"]),
        ..Default::default()
    };
    let proxy = start(options.clone()).await;
    login(&proxy, "alice").await.expect("alice");
    let config = proxy.config_dir();
    let policy = config.join("policy");

    // cp -r policy policy.new; edit; mv policy policy.old; mv policy.new policy
    copy_dir(&policy, &config.join("policy.new"));
    options.users.push(("dave".into(), PASSWORD.into()));
    std::fs::write(
        config.join("policy.new/accounts.toml"),
        accounts_toml(&options),
    )
    .unwrap();
    std::fs::rename(&policy, config.join("policy.old")).unwrap();
    std::fs::rename(config.join("policy.new"), &policy).unwrap();
    admitted(&proxy, "dave").await;
    // Edits of the directory now in place are seen.
    options.users.push(("erin".into(), PASSWORD.into()));
    rewrite_accounts(&proxy, &options).expect("rewrite");
    admitted(&proxy, "erin").await;

    // A `policy -> releases/N` symlink switched to the next release.
    let releases = config.join("releases");
    std::fs::create_dir(&releases).unwrap();
    std::fs::rename(&policy, releases.join("1")).unwrap();
    std::os::unix::fs::symlink(releases.join("1"), &policy).unwrap();
    copy_dir(&releases.join("1"), &releases.join("2"));
    options.users.push(("frank".into(), PASSWORD.into()));
    std::fs::write(releases.join("2/accounts.toml"), accounts_toml(&options)).unwrap();
    std::os::unix::fs::symlink(releases.join("2"), config.join("policy.tmp")).unwrap();
    std::fs::rename(config.join("policy.tmp"), &policy).unwrap();
    admitted(&proxy, "frank").await;
    options.users.push(("grace".into(), PASSWORD.into()));
    rewrite_accounts(&proxy, &options).expect("rewrite through the symlink");
    admitted(&proxy, "grace").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_watch_cannot_see_is_found_by_the_periodic_check() {
    let mut options = ProxyOptions {
        users: users(&["alice"]),
        policy_settings: "check_interval = \"1s\"".into(),
        ..Default::default()
    };
    let proxy = start(options.clone()).await;
    login(&proxy, "alice").await.expect("alice");
    // The accounts file lives outside the watched directory, behind a symlink.
    let outside = proxy.config_dir().join("accounts-outside.toml");
    std::fs::write(&outside, accounts_toml(&options)).unwrap();
    let link = proxy.config_dir().join("policy/accounts.link.tmp");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    std::fs::rename(&link, proxy.config_dir().join("policy/accounts.toml")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    login(&proxy, "alice")
        .await
        .expect("alice, after the symlink");

    options.users.push(("dave".into(), PASSWORD.into()));
    let tmp = outside.with_extension("tmp");
    std::fs::write(&tmp, accounts_toml(&options)).unwrap();
    std::fs::rename(&tmp, &outside).unwrap();
    admitted(&proxy, "dave").await;
}
