//! `maskgate audit` run as a real process on a trail written with the proxy's own
//! record structs, sealed with a `Sealer`, by `maskgate_audit::Writer`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use maskgate_audit::{keys, Sealed, Sealer, Writer, WriterConfig};
use maskgate_proxy::audit::Secret;
use maskgate_proxy::audit::{
    kind, Login, Payload, SessionFacts, Statement, StatementEnd, TableFacts,
};
use serde::Serialize;
use serde_json::Value;

/// Values that must never be in a file in clear.
const LITERAL: &str = "756.1234.5678.97";
const PARAM: &str = "SECRET-PARAM-4242";

fn maskgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maskgate"))
        .args(args)
        .env_remove("MASKGATE_AUDIT_DIR")
        .env_remove("MASKGATE_AUDIT_TOOL_LOG")
        .output()
        .expect("run maskgate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The payload with its sealed secret, as the proxy's writer thread writes it.
#[derive(Serialize)]
struct WithSeal<'a> {
    #[serde(flatten)]
    payload: &'a Payload,
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed: Option<Sealed>,
}

struct Trail {
    writer: Writer,
    sealer: Sealer,
}

impl Trail {
    fn open(dir: &Path, keys_dir: &Path, max_segment_bytes: u64) -> Trail {
        let signing_key = keys::load_signing_key(&keys_dir.join("audit-signing.pem")).unwrap();
        let sealer = Sealer::load(&keys_dir.join("audit-seal.keys")).unwrap();
        let config = WriterConfig {
            max_segment_bytes,
            max_segment_age: Duration::from_secs(3600),
            signing_key,
            keep_last_record: false,
        };
        Trail {
            writer: Writer::open(dir, config).unwrap(),
            sealer,
        }
    }

    fn record(&mut self, kind: &str, payload: Payload, secret: Option<Secret>) -> u64 {
        let sealer = &self.sealer;
        self.writer
            .append_with(kind, |seq| {
                let sealed = match &secret {
                    None => None,
                    Some(s) => Some(
                        sealer.seal(&serde_json::to_vec(s).unwrap(), seq.to_string().as_bytes())?,
                    ),
                };
                Ok(WithSeal {
                    payload: &payload,
                    sealed,
                })
            })
            .unwrap()
    }

    fn login(
        &mut self,
        session: Option<&str>,
        user: &str,
        client: &str,
        refused: Option<&'static str>,
    ) -> u64 {
        let facts = session.map(|_| SessionFacts {
            login: user.to_owned(),
            account_name: None,
            roles: vec!["clerk".to_owned()],
            restricted: true,
            database: "register".to_owned(),
            application_name: Some("psql".to_owned()),
            tls: None,
            client_certificate: None,
            policy: "p1".to_owned(),
        });
        self.record(
            kind::LOGIN,
            Payload::Login(Login {
                outcome: if refused.is_some() {
                    "refused"
                } else {
                    "admitted"
                },
                session: session.map(str::to_owned),
                client: client.to_owned(),
                user: Some(user.to_owned()),
                reason: refused,
                detail: None,
                facts,
            }),
            None,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn statement(
        &mut self,
        session: &str,
        stmt: u64,
        user: &str,
        client: &str,
        table: &str,
        masked: &[&str],
        decision: &'static str,
        secret: Secret,
    ) -> u64 {
        let denied = decision == "denied";
        self.record(
            kind::STATEMENT,
            Payload::Statement(Statement {
                session: session.to_owned(),
                stmt,
                user: user.to_owned(),
                client: client.to_owned(),
                application_name: Some("psql".to_owned()),
                protocol: "simple",
                statement: format!("SELECT * FROM {table} WHERE id = $L1"),
                cut: false,
                class: "read".to_owned(),
                tables: vec![Arc::new(TableFacts {
                    table: table.to_owned(),
                    masked: masked.iter().map(|m| m.to_string()).collect(),
                    denied: Vec::new(),
                    filtered_by: Vec::new(),
                    pinned_by: Vec::new(),
                    roles: vec!["clerk".to_owned()],
                })],
                // A statement on public.orders also writes the archive.
                written: if table == "public.orders" {
                    vec!["public.orders_archive".to_owned()]
                } else {
                    Vec::new()
                },
                decision,
                would: None,
                would_sqlstate: None,
                would_message: None,
                reason: denied.then_some("policy"),
                sqlstate: denied.then(|| "42501".to_owned()),
                message: denied.then(|| "permission denied".to_owned()),
                sealed_values: secret.len(),
                keys: Vec::new(),
            }),
            Some(secret),
        )
    }

    fn end(&mut self, session: &str, stmt: u64, rows: u64, failed: bool) -> u64 {
        self.record(
            kind::STATEMENT_END,
            Payload::StatementEnd(StatementEnd {
                session: session.to_owned(),
                stmt,
                outcome: if failed { "failed" } else { "completed" },
                sqlstate: failed.then(|| "42501".to_owned()),
                stopped_by: None,
                would_stop: None,
                rows,
                bytes: rows * 40,
                duration_us: 900,
            }),
            None,
        )
    }
}

fn secret(literal: &str, param: Option<&str>) -> Secret {
    Secret {
        literals: vec![literal.to_owned()],
        params: vec![param.map(str::to_owned), None],
    }
}

fn search(dir: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "search", p(dir), "--format", "json"];
    all.extend_from_slice(args);
    let out = maskgate(&all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        text(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["results"].as_array().unwrap().clone()
}

fn seqs(results: &[Value]) -> Vec<u64> {
    results.iter().map(|r| r["seq"].as_u64().unwrap()).collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn keygen(root: &Path) -> PathBuf {
    let keys_dir = root.join("keys");
    let out = maskgate(&["audit", "keygen", "--dir", p(&keys_dir), "--key-id", "k1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    keys_dir
}

#[test]
fn keygen_verify_search_show_and_the_audit_of_the_audit() {
    let root = tempfile::tempdir().unwrap();
    let keys_dir = keygen(root.path());
    let (signing, public, seal) = (
        keys_dir.join("audit-signing.pem"),
        keys_dir.join("audit-public.pem"),
        keys_dir.join("audit-seal.keys"),
    );
    assert_eq!(mode(&signing), 0o600);
    assert_eq!(mode(&seal), 0o600);
    assert!(fs::read_to_string(&public)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let before = fs::read(&signing).unwrap();
    let again = maskgate(&["audit", "keygen", "--dir", p(&keys_dir)]);
    assert_eq!(again.status.code(), Some(3));
    assert!(text(&again.stderr).contains("already exists"));
    assert_eq!(fs::read(&signing).unwrap(), before);

    // The trail: two batches with a known instant between them, and a statement
    // whose end lands in a later segment.
    let dir = root.path().join("trail");
    let mut t = Trail::open(&dir, &keys_dir, 4096);
    let alice_login = t.login(Some("s1"), "alice", "10.1.2.3:50000", None);
    let alice_stmt = t.statement(
        "s1",
        1,
        "alice",
        "10.1.2.3:50000",
        "public.patients",
        &["ssn:hash"],
        "rewritten",
        secret(LITERAL, Some(PARAM)),
    );
    t.end("s1", 1, 3, false);
    let bob_refused = t.login(None, "bob", "192.168.5.6:40000", Some("auth_failed"));
    let bob_login = t.login(Some("s2"), "bob", "192.168.5.6:40001", None);
    let bob_stmt = t.statement(
        "s2",
        1,
        "bob",
        "192.168.5.6:40001",
        "public.salaries",
        &[],
        "denied",
        secret("x", None),
    );
    t.end("s2", 1, 0, true);
    t.writer.commit().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let between = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let carol_stmt = t.statement(
        "s3",
        1,
        "carol",
        "10.9.9.9:1",
        "public.orders",
        &[],
        "allowed",
        secret("y", None),
    );
    for i in 0..40 {
        t.login(
            None,
            "mallory",
            &format!("203.0.113.{i}:1"),
            Some("auth_failed"),
        );
    }
    t.end("s3", 1, 7, false);
    t.writer.close().unwrap();
    let segments = fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("audit-")
        })
        .count();
    assert!(
        segments >= 2,
        "the test wants a statement and its end in different segments"
    );

    // verify: clean.
    let out = maskgate(&["audit", "verify", p(&dir), "--public-key", p(&public)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("CLEAN"));
    let out = maskgate(&[
        "audit",
        "verify",
        p(&dir),
        "--public-key",
        p(&public),
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "clean");

    // search by account: alice's login and statement, joined with its end.
    let r = search(&dir, &["--account", "alice"]);
    assert_eq!(seqs(&r), vec![alice_login, alice_stmt]);
    assert_eq!(r[1]["end"]["rows"], 3);
    assert_eq!(r[1]["end"]["outcome"], "completed");
    assert!(r[1].get("sealed").is_none() && r[1].get("prev").is_none());

    // by table (with or without schema) and by masked column.
    assert_eq!(
        seqs(&search(&dir, &["--table", "public.patients"])),
        vec![alice_stmt]
    );
    assert_eq!(
        seqs(&search(&dir, &["--table", "patients"])),
        vec![alice_stmt]
    );
    assert!(search(&dir, &["--table", "other.patients"]).is_empty());
    assert_eq!(
        seqs(&search(&dir, &["--table", "orders_archive"])),
        vec![carol_stmt]
    );
    assert_eq!(seqs(&search(&dir, &["--column", "ssn"])), vec![alice_stmt]);
    assert_eq!(
        seqs(&search(&dir, &["--column", "patients.ssn"])),
        vec![alice_stmt]
    );

    // by decision, with the end's SQLSTATE.
    let r = search(&dir, &["--decision", "denied"]);
    assert_eq!(seqs(&r), vec![bob_stmt]);
    assert_eq!(r[0]["reason"], "policy");
    assert_eq!(r[0]["end"]["sqlstate"], "42501");

    // by client network, by reason, by session.
    assert_eq!(
        seqs(&search(&dir, &["--client", "192.168.0.0/16"])),
        vec![bob_refused, bob_login, bob_stmt]
    );
    assert_eq!(
        seqs(&search(&dir, &["--client", "10.1.2.3"])),
        vec![alice_login, alice_stmt]
    );
    assert_eq!(
        seqs(&search(
            &dir,
            &["--reason", "auth_failed", "--account", "bob"]
        )),
        vec![bob_refused]
    );
    assert_eq!(
        seqs(&search(&dir, &["--session", "s2"])),
        vec![bob_login, bob_stmt]
    );

    // by time.
    let before_between = search(&dir, &["--until", &between, "--kind", "statement"]);
    assert_eq!(seqs(&before_between), vec![alice_stmt, bob_stmt]);
    let after = search(&dir, &["--since", &between, "--kind", "statement"]);
    assert_eq!(seqs(&after), vec![carol_stmt]);
    // ...whose end is in another segment.
    assert_eq!(after[0]["end"]["rows"], 7);
    assert!(search(&dir, &["--since", "1h", "--until", "2000-01-01"]).is_empty());

    // limit.
    let out = maskgate(&[
        "audit",
        "search",
        p(&dir),
        "--format",
        "json",
        "--limit",
        "1",
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["results"].as_array().unwrap().len(), 1);
    assert_eq!(doc["more"], true);

    // The table format.
    let out = maskgate(&["audit", "search", p(&dir), "--account", "alice"]);
    assert_eq!(out.status.code(), Some(0));
    let table = text(&out.stdout);
    assert!(
        table.contains("SELECT * FROM public.patients WHERE id = $L1"),
        "{table}"
    );
    assert!(table.contains("completed 3 rows 120 B"), "{table}");
    assert!(table.contains("2 record(s)"), "{table}");

    // show without the key: the record and its end, no literal.
    let id = alice_stmt.to_string();
    let out = maskgate(&["audit", "show", &id, p(&dir)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("public.patients") && shown.contains("completed"),
        "{shown}"
    );
    assert!(shown.contains("--decrypt"), "{shown}");
    assert!(!shown.contains(LITERAL) && !shown.contains(PARAM));

    // show --decrypt, after a key rotation: the old key still opens it.
    let out = maskgate(&["audit", "rotate-seal-key", "--seal-key", p(&seal)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_ne!(Sealer::load(&seal).unwrap().current_key_id(), "k1");
    let out = maskgate(&[
        "audit",
        "show",
        &id,
        p(&dir),
        "--decrypt",
        "--key-file",
        p(&seal),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains(&format!("$L1 = '{LITERAL}'")), "{shown}");
    assert!(
        shown.contains(&format!("$1 = '{PARAM}'")) && shown.contains("$2 = NULL"),
        "{shown}"
    );
    let out = maskgate(&[
        "audit",
        "show",
        &id,
        p(&dir),
        "--decrypt",
        "--key-file",
        p(&seal),
        "--json",
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["secret"]["literals"][0], LITERAL);
    assert_eq!(doc["end"]["rows"], 3);
    // --decrypt without a key is a usage error; a missing record exits 1.
    assert_eq!(
        maskgate(&["audit", "show", &id, p(&dir), "--decrypt"])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(
        maskgate(&["audit", "show", "999999", p(&dir)])
            .status
            .code(),
        Some(1)
    );

    // The audit of the audit: every use above is in the tool log, 0600, and the
    // decrypting ones say so.
    let log = dir.join("tool-uses.jsonl");
    assert_eq!(mode(&log), 0o600);
    let uses: Vec<Value> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(uses.iter().any(|u| u["command"] == "verify"));
    assert!(uses.iter().any(|u| u["command"] == "search"
        && u["arguments"]
            .as_str()
            .unwrap()
            .contains("account=\"alice\"")
        && u["results"] == 2));
    let decrypting: Vec<&Value> = uses.iter().filter(|u| u["decrypted"] == true).collect();
    assert_eq!(decrypting.len(), 2, "{uses:?}");
    assert!(decrypting.iter().all(|u| u["command"] == "show"
        && u["arguments"]
            .as_str()
            .unwrap()
            .contains(&format!("id={id} decrypt"))
        && !u["os_user"].as_str().unwrap().is_empty()));

    // With the signing key and no proxy running, the use goes into the trail itself.
    let out = maskgate(&[
        "audit",
        "search",
        p(&dir),
        "--decision",
        "denied",
        "--signing-key",
        p(&signing),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("recorded in the trail"),
        "{}",
        text(&out.stderr)
    );
    let tool = search(&dir, &["--kind", "audit_tool"]);
    assert_eq!(tool.len(), 1);
    assert_eq!(tool[0]["command"], "search");
    assert_eq!(tool[0]["results"], 1);
    let out = maskgate(&["audit", "verify", p(&dir), "--public-key", p(&public)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // No literal or parameter in clear anywhere in the directory.
    for (path, bytes) in all_bytes(&dir) {
        for secret in [LITERAL, PARAM] {
            assert!(
                !contains(&bytes, secret),
                "{secret} in clear in {}",
                path.display()
            );
        }
    }

    // Tampering: one byte of alice's statement.
    let first = dir.join("audit-000001.jsonl");
    let mut bytes = fs::read(&first).unwrap();
    let at = bytes
        .windows(b"\"user\":\"alice\"".len())
        .position(|w| w == b"\"user\":\"alice\"")
        .unwrap();
    bytes[at + 12] = b'f';
    fs::write(&first, &bytes).unwrap();
    let out = maskgate(&["audit", "verify", p(&dir), "--public-key", p(&public)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let report = text(&out.stdout);
    assert!(
        report.contains("TAMPERED") && report.contains("audit-000001.jsonl line"),
        "{report}"
    );
    let out = maskgate(&[
        "audit",
        "verify",
        p(&dir),
        "--public-key",
        p(&public),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "tampered");
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["severity"] == "error"));
}

#[test]
fn unsealed_tail_locked_directory_and_usage_errors() {
    let root = tempfile::tempdir().unwrap();
    let keys_dir = keygen(root.path());
    let public = keys_dir.join("audit-public.pem");
    let dir = root.path().join("trail");
    let mut t = Trail::open(&dir, &keys_dir, 1 << 20);
    t.login(Some("s1"), "alice", "10.1.2.3:1", None);
    t.writer.checkpoint().unwrap();
    t.login(Some("s2"), "alice", "10.1.2.3:2", None);
    // Committed, not checkpointed: what a running proxy's trail looks like.
    t.writer.commit().unwrap();

    let out = maskgate(&["audit", "verify", p(&dir), "--public-key", p(&public)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("UNSEALED TAIL"));

    // The directory is held by the writer: with --signing-key, the use falls back
    // to the tool log and says why.
    let out = maskgate(&[
        "audit",
        "search",
        p(&dir),
        "--signing-key",
        p(&keys_dir.join("audit-signing.pem")),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("tool log"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("2 record(s)"));
    let log = fs::read_to_string(dir.join("tool-uses.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("\"search\"")).count(), 1);

    // A tool log elsewhere (a read-only copy of a trail).
    let elsewhere = root.path().join("uses.jsonl");
    let out = maskgate(&["audit", "search", p(&dir), "--tool-log", p(&elsewhere)]);
    assert_eq!(out.status.code(), Some(0));
    assert!(fs::read_to_string(&elsewhere)
        .unwrap()
        .contains("\"search\""));
    drop(t);

    // Usage errors and unreadable inputs exit 3, never 2.
    for args in [
        &["audit", "verify", p(&dir)][..],
        &["audit", "search", p(&dir), "--decision", "maybe"],
        &["audit", "search", p(&dir), "--since", "someday"],
        &["audit", "search", p(&dir), "--client", "10.0.0.0/40"],
        &["audit", "search", p(&root.path().join("missing"))],
        &[
            "audit",
            "verify",
            p(&dir),
            "--public-key",
            p(&root.path().join("missing")),
        ],
        &["audit", "keygen", "--dir", p(&dir)],
        &["audit", "bogus"],
    ] {
        assert_eq!(maskgate(args).status.code(), Some(3), "{args:?}");
    }
    let help = maskgate(&["audit", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("2 verify: unsealed tail"));
}
