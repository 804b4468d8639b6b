//! End to end: every login rule of an account, enforced by the real proxy and
//! seen by real clients (tokio-postgres, from 127.0.0.1 and 127.0.0.2, with and
//! without client certificates), plus lockouts after repeated failed logins.

#[path = "common/raw_login.rs"]
mod raw_login;

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use maskgate_testkit::{http_get, PgCluster, ProxyOptions, TestProxy};
use rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::SupportedCipherSuite;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{ChannelBinding, TlsConnect};
use tokio_postgres::{Client, NoTls};

const PASSWORD: &str = "correct horse battery";
const LOCAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn users(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| (n.to_string(), PASSWORD.to_string()))
        .collect()
}

fn settings(list: &[(&str, String)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(l, s)| (l.to_string(), s.clone()))
        .collect()
}

async fn start(options: ProxyOptions) -> TestProxy {
    TestProxy::start(PgCluster::shared(), options)
        .await
        .expect("proxy starts")
}

fn config(proxy: &TestProxy, user: &str, password: &str) -> tokio_postgres::Config {
    proxy
        .conn_string(user, password)
        .parse()
        .expect("the test proxy's connection string parses")
}

/// Logs in over plain TCP from `source` (a loopback address) and proves the
/// session works with a statement.
async fn login_from(
    proxy: &TestProxy,
    source: Ipv4Addr,
    user: &str,
    password: &str,
) -> Result<Client, tokio_postgres::Error> {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("bind to a loopback address");
    let stream = socket.connect(proxy.addr()).await.expect("TCP connect");
    let (client, connection) = config(proxy, user, password)
        .connect_raw(stream, NoTls)
        .await?;
    tokio::spawn(connection);
    let row = client.query_one("SELECT 41 + 1", &[]).await?;
    assert_eq!(row.get::<_, i32>(0), 42);
    Ok(client)
}

async fn login(
    proxy: &TestProxy,
    user: &str,
    password: &str,
) -> Result<Client, tokio_postgres::Error> {
    login_from(proxy, LOCAL, user, password).await
}

/// Asserts that `result` is a login refused with `state` and a message containing `fragment`.
#[track_caller]
fn assert_refused(
    result: Result<Client, tokio_postgres::Error>,
    state: &SqlState,
    fragment: &str,
) -> tokio_postgres::error::DbError {
    let e = match result {
        Ok(_) => panic!(
            "the login was accepted; expected {} ({fragment})",
            state.code()
        ),
        Err(e) => e,
    };
    assert_eq!(e.code(), Some(state), "{e}");
    let db = e.as_db_error().expect("a server error").clone();
    assert!(
        db.message().contains(fragment),
        "message {:?} lacks {fragment:?}",
        db.message()
    );
    db
}

#[track_caller]
fn assert_denied(result: Result<Client, tokio_postgres::Error>, fragment: &str) {
    let db = assert_refused(
        result,
        &SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        fragment,
    );
    assert!(
        db.message().contains("security officer"),
        "the message does not tell the person what to do: {:?}",
        db.message()
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_bind_an_account_to_client_addresses() {
    let proxy = start(ProxyOptions {
        users: users(&["alice", "bob"]),
        account_settings: settings(&[
            ("alice", r#"networks = ["127.0.0.2/32"]"#.into()),
            ("bob", r#"networks = ["127.0.0.0/8"]"#.into()),
        ]),
        ..Default::default()
    })
    .await;

    login_from(&proxy, OTHER, "alice", PASSWORD)
        .await
        .expect("alice from her registered address");
    // From elsewhere, the right password is answered as a wrong one.
    assert_refused(
        login_from(&proxy, LOCAL, "alice", PASSWORD).await,
        &SqlState::INVALID_PASSWORD,
        "password authentication failed for user \"alice\"",
    );
    for source in [LOCAL, OTHER] {
        login_from(&proxy, source, "bob", PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("bob from {source}: {e}"));
    }
}

/// tokio-postgres TLS over tokio-rustls, presenting `client_cert` when given.
#[derive(Clone)]
struct RustlsConnect(Arc<rustls::ClientConfig>);

impl RustlsConnect {
    fn new(proxy: &TestProxy, client_cert: Option<&rcgen::CertifiedKey>) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(proxy.ca_cert_path()).expect("proxy certificate")
        {
            roots.add(cert.expect("PEM")).expect("a CA certificate");
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
        let config = match client_cert {
            None => builder.with_no_client_auth(),
            Some(ck) => builder
                .with_client_auth_cert(
                    vec![ck.cert.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der())),
                )
                .expect("client certificate and key"),
        };
        RustlsConnect(Arc::new(config))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl TlsConnect<TcpStream> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = BoxFuture<io::Result<RustlsStream>>;

    fn connect(self, stream: TcpStream) -> Self::Future {
        Box::pin(async move {
            let name = ServerName::try_from("localhost").expect("server name");
            let tls = tokio_rustls::TlsConnector::from(self.0)
                .connect(name, stream)
                .await?;
            Ok(RustlsStream(tls))
        })
    }
}

struct RustlsStream(tokio_rustls::client::TlsStream<TcpStream>);

impl tokio_postgres::tls::TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

async fn login_tls(
    proxy: &TestProxy,
    user: &str,
    client_cert: Option<&rcgen::CertifiedKey>,
) -> Result<Client, tokio_postgres::Error> {
    let mut config = config(proxy, user, PASSWORD);
    config.ssl_mode(SslMode::Require);
    let stream = TcpStream::connect(proxy.addr()).await.expect("TCP connect");
    let (client, connection) = config
        .connect_raw(stream, RustlsConnect::new(proxy, client_cert))
        .await?;
    tokio::spawn(connection);
    let row = client.query_one("SELECT 41 + 1", &[]).await?;
    assert_eq!(row.get::<_, i32>(0), 42);
    Ok(client)
}

fn client_cert(name: &str) -> rcgen::CertifiedKey {
    rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("client certificate")
}

/// The policy's format: `sha256:` and the SHA-256 of the DER, hex with colons.
fn fingerprint(cert: &CertificateDer<'_>) -> String {
    // SHA-256 from the TLS library's own provider, to need no extra crate.
    let SupportedCipherSuite::Tls13(suite) = TLS13_AES_128_GCM_SHA256 else {
        unreachable!("a TLS 1.3 suite")
    };
    let digest = suite.common.hash_provider.hash(cert.as_ref());
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{}", hex.join(":"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_bind_an_account_to_its_machines() {
    let registered = client_cert("workstation-01");
    let other = client_cert("workstation-02");
    let proxy = start(ProxyOptions {
        users: users(&["alice", "bob"]),
        account_settings: settings(&[(
            "alice",
            format!(
                "cert_fingerprints = [\"{}\"]",
                fingerprint(registered.cert.der())
            ),
        )]),
        tls: "require",
        ..Default::default()
    })
    .await;

    login_tls(&proxy, "alice", Some(&registered))
        .await
        .expect("alice with her registered certificate");
    // Without it, the right password is answered as a wrong one.
    for cert in [None, Some(&other)] {
        assert_refused(
            login_tls(&proxy, "alice", cert).await,
            &SqlState::INVALID_PASSWORD,
            "password authentication failed",
        );
    }
    // An account without fingerprints takes any certificate, or none.
    login_tls(&proxy, "bob", None).await.expect("bob without");
    login_tls(&proxy, "bob", Some(&other))
        .await
        .expect("bob with a certificate");
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn days_list(days: impl Iterator<Item = usize>) -> String {
    let names: Vec<String> = days.map(|d| format!("\"{}\"", DAYS[d % 7])).collect();
    format!("[{}]", names.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validity_disabled_flag_and_login_times_are_enforced() {
    // The policy's time zone is UTC here.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let hour = (secs / 3600 % 24) as usize;
    // 1970-01-01 was a Thursday.
    let today = ((secs / 86_400 + 3) % 7) as usize;
    // A one-hour window six hours from now, and one from an hour ago to two
    // hours ahead (across midnight where needed).
    let later = format!(
        "login_hours = \"{:02}:00-{:02}:00\"",
        (hour + 6) % 24,
        (hour + 7) % 24
    );
    let around = format!(
        "login_hours = \"{:02}:00-{:02}:00\"",
        (hour + 23) % 24,
        (hour + 2) % 24
    );
    let accounts = [
        ("disabled", "disabled = true".to_string()),
        ("expired", "valid_until = 2020-01-31".to_string()),
        ("future", "valid_from = 2999-01-01".to_string()),
        ("later", later),
        (
            "otherdays",
            format!("login_days = {}", days_list((1..7).map(|d| today + d))),
        ),
        (
            "inwindow",
            format!(
                "{around}\nlogin_days = {}\nvalid_from = 2020-01-01\nvalid_until = 2999-12-31",
                // Today and tomorrow, in case the test runs across midnight.
                days_list([today, today + 1].into_iter())
            ),
        ),
    ];
    let names: Vec<&str> = accounts.iter().map(|(n, _)| *n).collect();
    let proxy = start(ProxyOptions {
        users: users(&names),
        account_settings: settings(&accounts),
        ..Default::default()
    })
    .await;

    assert_denied(
        login(&proxy, "disabled", PASSWORD).await,
        "this account is disabled",
    );
    assert_denied(
        login(&proxy, "expired", PASSWORD).await,
        "this account has expired",
    );
    assert_denied(
        login(&proxy, "future", PASSWORD).await,
        "this account is not active yet",
    );
    const HOURS: &str = "may not log in at this time";
    assert_denied(login(&proxy, "later", PASSWORD).await, HOURS);
    assert_denied(login(&proxy, "otherdays", PASSWORD).await, HOURS);
    login(&proxy, "inwindow", PASSWORD)
        .await
        .expect("inside the login window");

    // The rules are checked after the password: a wrong one still says only that.
    assert_refused(
        login(&proxy, "disabled", "wrong password").await,
        &SqlState::INVALID_PASSWORD,
        "password authentication failed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_caps_concurrent_sessions() {
    let proxy = start(ProxyOptions {
        users: users(&["alice", "bob"]),
        account_settings: settings(&[("alice", "max_sessions = 2".into())]),
        ..Default::default()
    })
    .await;

    let first = login(&proxy, "alice", PASSWORD).await.expect("first");
    let second = login(&proxy, "alice", PASSWORD).await.expect("second");
    assert_refused(
        login(&proxy, "alice", PASSWORD).await,
        &SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        "already has its maximum number of open sessions",
    );
    login(&proxy, "bob", PASSWORD)
        .await
        .expect("another account is not affected");

    drop(first);
    // The slot is released when the proxy notices the session ended.
    let deadline = Instant::now() + Duration::from_secs(5);
    let third = loop {
        match login(&proxy, "alice", PASSWORD).await {
            Ok(client) => break client,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(
                    e.code(),
                    Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
                    "{e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no session slot freed after closing one: {e}"),
        }
    };
    second.simple_query("SELECT 1").await.expect("second works");
    third.simple_query("SELECT 1").await.expect("third works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_a_login_name() {
    let proxy = start(ProxyOptions {
        users: users(&["alice", "bob"]),
        ..Default::default()
    })
    .await;
    const LOCKED: &str = "temporarily locked";
    assert_eq!(metric(&proxy, "maskgate_login_lockouts_total").await, 0.0);

    // The default threshold: 5 failures within 15 minutes.
    for _ in 0..5 {
        assert_refused(
            login(&proxy, "alice", "wrong password").await,
            &SqlState::INVALID_PASSWORD,
            "password authentication failed",
        );
    }
    let locked = assert_refused(
        login(&proxy, "alice", PASSWORD).await,
        &SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        LOCKED,
    );
    assert_eq!(metric(&proxy, "maskgate_login_lockouts_total").await, 1.0);
    login(&proxy, "bob", PASSWORD)
        .await
        .expect("another account is not affected");

    // A name without an account is counted and locked the same way.
    for _ in 0..5 {
        assert_refused(
            login(&proxy, "mallory", "wrong password").await,
            &SqlState::INVALID_PASSWORD,
            "password authentication failed",
        );
    }
    let unknown = assert_refused(
        login(&proxy, "mallory", PASSWORD).await,
        &SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        LOCKED,
    );
    assert_eq!(unknown.message(), locked.message());
    assert_eq!(unknown.hint(), locked.hint());
    assert_eq!(unknown.detail(), locked.detail());
    assert_eq!(unknown.severity(), locked.severity());
    assert_eq!(metric(&proxy, "maskgate_login_lockouts_total").await, 2.0);

    // Still locked for the right password, again.
    assert_refused(
        login(&proxy, "alice", PASSWORD).await,
        &SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        LOCKED,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_look_the_same() {
    let proxy = start(ProxyOptions::default()).await;
    let wrong = assert_refused(
        login(&proxy, "alice", "wrong password").await,
        &SqlState::INVALID_PASSWORD,
        "password authentication failed",
    );
    let unknown = assert_refused(
        login(&proxy, "nobody", "wrong password").await,
        &SqlState::INVALID_PASSWORD,
        "password authentication failed",
    );
    let shape = |m: &str, user: &str| m.replace(user, "USER");
    assert_eq!(
        shape(wrong.message(), "alice"),
        shape(unknown.message(), "nobody")
    );
    assert_eq!(wrong.hint(), unknown.hint());
    assert_eq!(wrong.detail(), unknown.detail());
    assert_eq!(wrong.severity(), unknown.severity());
    login(&proxy, "alice", PASSWORD)
        .await
        .expect("the right password still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_right_password_from_an_unregistered_machine_looks_like_a_wrong_one() {
    let proxy = start(ProxyOptions {
        account_settings: settings(&[("alice", r#"networks = ["127.0.0.2/32"]"#.into())]),
        audit: true,
        ..Default::default()
    })
    .await;
    let unregistered = Ipv4Addr::new(127, 0, 0, 5);
    let db = proxy.database().to_string();
    let answer = |password: Option<&'static str>| {
        let db = db.clone();
        let addr = proxy.addr();
        async move {
            raw_login::Exchange::start(addr, unregistered, ("alice", &db), password)
                .await
                .unwrap_or_else(|_| panic!("the exchange reaches the proof"))
                .prove_messages()
                .await
        }
    };
    let right = answer(Some(PASSWORD)).await;
    let wrong = answer(None).await;
    // One ErrorResponse each, the same in every field; no server signature before it.
    let fields = |messages: &[raw_login::Msg]| -> Vec<(u8, Vec<u8>)> {
        messages.iter().map(|m| (m.tag, m.body.clone())).collect()
    };
    assert_eq!(right.len(), 1, "{:?}", fields(&right));
    assert_eq!(right[0].code().as_deref(), Some("28P01"));
    assert_eq!(fields(&right), fields(&wrong));
    // The operator sees the true reason.
    let unregistered_refusals = metric(
        &proxy,
        "maskgate_client_connections_rejected_total{reason=\"unregistered_machine\"}",
    )
    .await;
    assert_eq!(unregistered_refusals, 1.0);
    login_from(&proxy, OTHER, "alice", PASSWORD)
        .await
        .expect("alice from her registered address");
}
