//! Audit retention end to end: segments rotated every second, `maskgate audit
//! export` archiving the finished ones with receipts, and `[audit] retention`
//! removing exactly those once past retention, behind a retention record, while a
//! finished segment that was never exported stays and is counted as overdue. The
//! trail still verifies clean with `maskgate audit verify`.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use maskgate_testkit::{http_get, metric, PgCluster, ProxyOptions, TestProxy};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery";

fn maskgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maskgate"))
        .args(args)
        .output()
        .unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The segment file names in the directory.
fn segments(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| maskgate_audit::segment::parse_segment_name(n).is_some())
        .collect()
}

fn records_of_kind(dir: &Path, kind: &str) -> Vec<Value> {
    segments(dir)
        .iter()
        .flat_map(|name| {
            std::fs::read_to_string(dir.join(name))
                .unwrap()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|r| r["kind"] == kind)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Runs statements until the trail has at least `n` more segments than `since`.
async fn rotate(client: &tokio_postgres::Client, dir: &Path, since: usize, n: usize) {
    for _ in 0..100 {
        client.simple_query("SELECT 1").await.unwrap();
        if segments(dir).len() >= since + n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the trail did not rotate: {:?}", segments(dir));
}

async fn overdue_and_removed(proxy: &TestProxy) -> (f64, f64) {
    let (status, text) = http_get(proxy.admin_addr().unwrap(), "/metrics").await;
    assert_eq!(status, 200);
    (
        metric(&text, "maskgate_audit_segments_overdue"),
        metric(&text, "maskgate_audit_segments_removed_total"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_segments_are_removed_past_retention_and_the_rest_is_kept() {
    let mut proxy =
        TestProxy::start(
            PgCluster::shared(),
            ProxyOptions {
                users: vec![("alice".into(), PASSWORD.into())],
                audit_settings:
                    "segment_age = \"1s\"\ncheckpoint_interval = \"200ms\"\nretention = \"3s\"\n"
                        .into(),
                ..ProxyOptions::default()
            },
        )
        .await
        .unwrap();
    let dir = proxy.audit_dir();
    let key = proxy.audit_public_key();
    let archive = tempfile::tempdir().unwrap();
    let client = proxy.connect("alice", PASSWORD).await.unwrap();

    rotate(&client, &dir, 0, 3).await;
    let out = maskgate(&[
        "audit",
        "export",
        p(&dir),
        "--to",
        p(archive.path()),
        "--public-key",
        p(&key),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: BTreeSet<String> = std::fs::read_dir(archive.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(exported.len() >= 2, "{exported:?}");
    assert!(
        !exported.contains(segments(&dir).last().unwrap()),
        "the open segment is not exported"
    );
    let receipts = dir.join("export-receipts.jsonl");
    assert_eq!(
        std::fs::metadata(&receipts).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(&receipts).unwrap().lines().count(),
        exported.len()
    );
    let uses = std::fs::read_to_string(dir.join("tool-uses.jsonl")).unwrap();
    assert!(uses.contains("\"command\":\"export\""), "{uses}");

    // More segments, finished but never exported.
    let before = segments(&dir).len();
    rotate(&client, &dir, before, 2).await;
    let unexported: BTreeSet<String> = segments(&dir)
        .into_iter()
        .filter(|n| !exported.contains(n))
        .collect();

    // Bounded wait: the exported segments go, one never exported is overdue.
    let mut state = (0.0, 0.0);
    for _ in 0..150 {
        state = overdue_and_removed(&proxy).await;
        let left = segments(&dir);
        if state.0 >= 1.0 && exported.iter().all(|n| !left.contains(n)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = segments(&dir);
    assert!(
        exported.iter().all(|n| !left.contains(n)),
        "{left:?} {exported:?}"
    );
    assert!(
        unexported.iter().all(|n| left.contains(n)),
        "{left:?} {unexported:?}"
    );
    assert!(state.0 >= 1.0, "overdue gauge {state:?}");
    assert_eq!(state.1, exported.len() as f64);

    let removed: BTreeSet<String> = records_of_kind(&dir, "retention")
        .iter()
        .flat_map(|r| r["removed"].as_array().unwrap().clone())
        .map(|e| e["segment"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(removed, exported);

    drop(client);
    proxy.stop().await;
    let out = maskgate(&["audit", "verify", p(&dir), "--public-key", p(&key)]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("removed by retention"), "{report}");
    // The archive verifies on its own, up to its last rotation.
    let out = maskgate(&[
        "audit",
        "verify",
        p(archive.path()),
        "--archive",
        "--public-key",
        p(&key),
    ]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("archive: ends with"), "{report}");
}
