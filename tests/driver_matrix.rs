//! A restricted account works through real drivers and tools: psql's `\d` family,
//! psycopg, asyncpg, SQLAlchemy reflection, node-postgres, pgjdbc (tests/drivers/)
//! and tokio-postgres (through tokio-postgres-rustls), each over TLS verified against
//! the proxy's certificate. Every client asserts that it works, that the masked
//! column comes back masked and that the denied column, its index, its constraint and
//! its comment, and the table outside the policy, never appear; this test also scans
//! everything the clients printed for them.
//!
//! The clients come from the package registries (`tests/drivers/install.sh`, which
//! `.ci/run` runs). A client that is missing fails the test under `CI=true` and is
//! reported as skipped otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use maskgate_testkit::{PgCluster, ProxyOptions, TestProxy};

const PASSWORD: &str = "correct horse battery";

/// Strings that would mean the denied column, its metadata, a raw value or the
/// unlisted table reached the client.
const NEVER: &[&str] = &[
    "phone",
    "0999",
    "001203004002",
    "hidden_payroll",
    "hidden-comment-must-not-leak",
    "person_lower_name_idx",
    "tax_code",
];

async fn start() -> (PgCluster, TestProxy) {
    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await
        .unwrap()
        .unwrap();
    cluster.psql(include_str!("drivers/schema.sql")).unwrap();
    let options = ProxyOptions {
        users: vec![
            ("clerk".into(), PASSWORD.into()),
            ("viewer".into(), PASSWORD.into()),
        ],
        roles: vec!["clerk".into()],
        user_roles: vec![("viewer".into(), vec!["viewer".into()])],
        account_settings: vec![("clerk".into(), "attributes = { province = \"01\" }".into())],
        policy_files: vec![(
            "register.toml".into(),
            include_str!("drivers/policy.toml").into(),
        )],
        tls: "prefer",
        ..ProxyOptions::default()
    };
    let proxy = TestProxy::start(&cluster, options).await.unwrap();
    (cluster, proxy)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A client that is not installed: a failure in CI, a loud skip elsewhere.
fn missing(client: &str) -> Vec<String> {
    let message = format!("driver matrix: {client} is not installed; run tests/drivers/install.sh");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("SKIPPED {message}");
    Vec::new()
}

/// Runs one client script with the connection in its environment; returns its `ok`
/// lines and fails on any `FAIL` line or a non-zero exit.
fn run(name: &str, mut command: Command, proxy: &TestProxy) -> Vec<String> {
    let output = command
        .env("MG_HOST", "127.0.0.1")
        .env("MG_PORT", proxy.port().to_string())
        .env("MG_USER", "clerk")
        .env("MG_USER2", "viewer")
        .env("MG_PASSWORD", PASSWORD)
        .env("MG_DB", proxy.database())
        .env("MG_CA", proxy.ca_cert_path())
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        output.status.success() && failures.is_empty(),
        "{name} failed:\n{stdout}\n{stderr}"
    );
    assert_nothing_leaks(name, &stdout);
    let ok: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("ok "))
        .map(str::to_owned)
        .collect();
    assert!(!ok.is_empty(), "{name} ran no check:\n{stdout}\n{stderr}");
    ok
}

fn assert_nothing_leaks(name: &str, text: &str) {
    for never in NEVER {
        assert!(!text.contains(never), "{name} showed {never:?}:\n{text}");
    }
}

fn psql_checks(proxy: &TestProxy, cluster: &PgCluster) -> Vec<String> {
    let psql = cluster
        .bin_dir()
        .map(|dir| dir.join("psql"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("psql"));
    let conninfo = format!(
        "host=127.0.0.1 port={} user=clerk dbname={} sslmode=verify-ca sslrootcert={}",
        proxy.port(),
        proxy.database(),
        proxy.ca_cert_path().display()
    );
    let describe = |command: &str| -> String {
        let output = Command::new(&psql)
            .args([
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &conninfo,
                "-c",
                command,
            ])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap_or_else(|e| panic!("psql: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "psql {command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_nothing_leaks(&format!("psql {command}"), &stdout);
        stdout
    };
    if Command::new(&psql).arg("--version").output().is_err() {
        return missing("psql");
    }
    let mut ok = Vec::new();
    let table = describe("\\d person");
    for expected in [
        "citizen_id",
        "person_pkey",
        "person_citizen_key",
        "person_province_len",
        "person_employer_id_fkey",
    ] {
        assert!(
            table.contains(expected),
            "\\d person lacks {expected}:\n{table}"
        );
    }
    let order: Vec<&str> = table
        .lines()
        .filter_map(|l| l.split('|').next())
        .map(str::trim)
        .filter(|c| ["id", "full_name", "citizen_id", "province_code"].contains(c))
        .collect();
    assert_eq!(order, ["id", "full_name", "citizen_id", "province_code"]);
    ok.push("ok psql \\d person".to_owned());
    let plus = describe("\\d+ person");
    assert!(plus.contains("Name as on the card"), "{plus}");
    ok.push("ok psql \\d+ person".to_owned());
    let tables = describe("\\dt");
    assert!(
        tables.contains("person") && tables.contains("employer"),
        "{tables}"
    );
    ok.push("ok psql \\dt".to_owned());
    assert!(describe("\\dn").contains("public"));
    ok.push("ok psql \\dn".to_owned());
    describe("\\df");
    ok.push("ok psql \\df".to_owned());
    describe("\\d employer");
    ok.push("ok psql \\d employer".to_owned());
    let copied = describe("\\copy (SELECT * FROM person ORDER BY id) to stdout with csv header");
    assert_eq!(copied.lines().count(), 21, "{copied}");
    assert!(copied.contains("********4002"), "{copied}");
    ok.push("ok psql \\copy out with export".to_owned());
    let rows = describe("SELECT * FROM person WHERE id = 2");
    assert!(rows.contains("********4002"), "{rows}");
    ok.push("ok psql masked select".to_owned());
    ok
}

fn python_checks(proxy: &TestProxy) -> Vec<String> {
    let python = root().join("target/drivers/venv/bin/python");
    if !python.exists() {
        return missing("the Python drivers (psycopg, asyncpg, SQLAlchemy)");
    }
    let mut command = Command::new(python);
    command.arg(root().join("tests/drivers/python_drivers.py"));
    run("python drivers", command, proxy)
}

fn node_checks(proxy: &TestProxy) -> Vec<String> {
    let modules = root().join("target/drivers/node/node_modules");
    if !modules.join("pg-cursor").exists()
        || Command::new("node").arg("--version").output().is_err()
    {
        return missing("node-postgres (pg, pg-cursor)");
    }
    let mut command = Command::new("node");
    command
        .arg(root().join("tests/drivers/node_drivers.js"))
        .env("NODE_PATH", modules);
    run("node-postgres", command, proxy)
}

fn jdbc_checks(proxy: &TestProxy) -> Vec<String> {
    let jar = Path::new("/usr/share/java/postgresql.jar");
    if !jar.exists() || Command::new("javac").arg("-version").output().is_err() {
        return missing("pgjdbc (a JDK and libpostgresql-jdbc-java)");
    }
    let classes = tempfile::tempdir().unwrap();
    let compiled = Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg("-cp")
        .arg(jar)
        .arg(root().join("tests/drivers/JdbcDrivers.java"))
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let mut command = Command::new("java");
    command
        .arg("-cp")
        .arg(format!("{}:{}", classes.path().display(), jar.display()))
        .arg("JdbcDrivers");
    run("pgjdbc", command, proxy)
}

/// tokio-postgres over TLS (rustls, verifying the proxy's certificate), as the
/// restricted account.
async fn tls_client(proxy: &TestProxy) -> tokio_postgres::Client {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(proxy.ca_cert_path()).unwrap();
    roots.add(ca).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
    let conninfo = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=clerk password='{PASSWORD}' \
         dbname={} sslmode=require connect_timeout=10",
        proxy.port(),
        proxy.database()
    );
    let (client, connection) = tokio_postgres::connect(&conninfo, tls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

async fn tokio_postgres_checks(proxy: &TestProxy) -> Vec<String> {
    let client = tls_client(proxy).await;
    let mut ok = Vec::new();
    let rows = client
        .simple_query("SELECT * FROM person WHERE id = 2")
        .await
        .unwrap();
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .expect("a row");
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    assert!(!names.contains(&"phone"), "{names:?}");
    assert_eq!(row.get("citizen_id"), Some("********4002"));
    ok.push("ok tokio-postgres over TLS simple query (text results)".to_owned());
    let statement = client
        .prepare("SELECT * FROM person WHERE id = $1")
        .await
        .unwrap();
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "id",
            "full_name",
            "citizen_id",
            "province_code",
            "employer_id",
            "birth_date"
        ]
    );
    let row = client.query_one(&statement, &[&2i64]).await.unwrap();
    assert_eq!(row.get::<_, &str>("citizen_id"), "********4002");
    ok.push("ok tokio-postgres over TLS prepared (binary results)".to_owned());
    for sql in ["SELECT phone FROM person", "SELECT * FROM hidden_payroll"] {
        let error = client.simple_query(sql).await.unwrap_err();
        assert!(
            matches!(
                error.code(),
                Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
                    | Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
            ),
            "{sql}: {error:?}"
        );
    }
    let columns = client
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_name = 'person' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap();
    let columns: Vec<String> = columns.iter().map(|r| r.get(0)).collect();
    assert!(columns.iter().any(|c| c == "citizen_id"), "{columns:?}");
    assert_nothing_leaks("tokio-postgres catalog", &columns.join(" "));
    ok.push("ok tokio-postgres over TLS denied column and table never appear".to_owned());
    client
        .batch_execute("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;")
        .await
        .unwrap();
    client.batch_execute("DISCARD ALL").await.unwrap();
    ok.push("ok tokio-postgres over TLS pool reset statements".to_owned());
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_account_works_through_every_driver() {
    let (cluster, proxy) = start().await;
    let mut ok = tokio_postgres_checks(&proxy).await;
    let (cluster, proxy, blocking) = tokio::task::spawn_blocking(move || {
        let mut ok = psql_checks(&proxy, &cluster);
        ok.extend(python_checks(&proxy));
        ok.extend(node_checks(&proxy));
        ok.extend(jdbc_checks(&proxy));
        (cluster, proxy, ok)
    })
    .await
    .unwrap();
    ok.extend(blocking);
    eprintln!("driver matrix: {} checks passed", ok.len());
    for line in &ok {
        eprintln!("  {line}");
    }
    drop(proxy);
    drop(cluster);
}
