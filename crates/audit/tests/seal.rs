//! Sealed literals through the whole path: key file, seal, record, trail, open,
//! and key rotation.

mod common;

use std::fs;

use common::*;
use maskgate_audit::keys::{
    add_seal_key, generate_seal_key_file, generate_signing_key_files, load_public_key,
    load_signing_key,
};
use maskgate_audit::{verify, SealError, Sealed, Sealer, Status, Writer, WriterConfig};
use serde_json::json;

#[test]
fn literals_are_sealed_in_the_trail_and_open_after_rotation() {
    let keys = tempfile::tempdir().unwrap();
    let seal_path = keys.path().join("seal.keys");
    generate_seal_key_file(&seal_path, "2025-01").unwrap();
    let (sk, pk) = (keys.path().join("audit.key"), keys.path().join("audit.pub"));
    generate_signing_key_files(&sk, &pk).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = WriterConfig::new(load_signing_key(&sk).unwrap());
    let mut w = Writer::open(dir.path(), config).unwrap();

    let literal = br#"["756.1234.5678.97", 2024]"#;
    let sealer = Sealer::load(&seal_path).unwrap();
    let id = w
        .append_with("statement", |seq| {
            let literals = sealer.seal(literal, seq.to_string().as_bytes())?;
            Ok(json!({"statement": "SELECT * FROM p WHERE ahv = $1 AND year = $2", "literals": literals}))
        })
        .unwrap();

    // Rotate the key: new values use the new key, old ones still open.
    add_seal_key(&seal_path, "2025-07").unwrap();
    let sealer = Sealer::load(&seal_path).unwrap();
    assert_eq!(sealer.current_key_id(), "2025-07");
    let id2 = w.next_seq();
    let sealed2 = sealer
        .seal(b"\"CH-9999\"", id2.to_string().as_bytes())
        .unwrap();
    assert_eq!(sealed2.key_id, "2025-07");
    w.append("statement", &json!({"literals": sealed2}))
        .unwrap();
    w.close().unwrap();

    assert_eq!(
        verify(dir.path(), &load_public_key(&pk).unwrap())
            .unwrap()
            .status(),
        Status::Clean
    );

    // Nothing of the literals is in the files.
    for path in fs::read_dir(dir.path()).unwrap() {
        let bytes = fs::read(path.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("756.1234") && !text.contains("CH-9999"));
    }

    // An investigator reads them back from the records.
    let lines = read_lines(&dir.path().join("audit-000001.jsonl"));
    let by_seq = |s: u64| {
        lines
            .iter()
            .map(|l| parse(l))
            .find(|m| m["seq"] == s)
            .unwrap()
    };
    let stored: Sealed = serde_json::from_value(by_seq(id)["literals"].clone()).unwrap();
    assert_eq!(stored.key_id, "2025-01");
    assert_eq!(
        &sealer.open(&stored, id.to_string().as_bytes()).unwrap()[..],
        literal
    );
    let stored2: Sealed = serde_json::from_value(by_seq(id2)["literals"].clone()).unwrap();
    assert_eq!(
        &sealer.open(&stored2, id2.to_string().as_bytes()).unwrap()[..],
        b"\"CH-9999\""
    );

    // Moved to another record, it does not open.
    assert_eq!(
        sealer
            .open(&stored, id2.to_string().as_bytes())
            .unwrap_err(),
        SealError::Failed
    );
    // Without the old key, the old value is unreadable (and says which key it needs).
    let only_new = keys.path().join("only-new.keys");
    let text = fs::read_to_string(&seal_path).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("2025-01")).collect();
    maskgate_audit::keys::generate_seal_key_file(&only_new, "tmp").unwrap();
    fs::write(&only_new, kept.join("\n")).unwrap();
    let partial = Sealer::load(&only_new).unwrap();
    assert_eq!(
        partial
            .open(&stored, id.to_string().as_bytes())
            .unwrap_err(),
        SealError::UnknownKey {
            key_id: "2025-01".into()
        }
    );
}

#[test]
fn key_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let keys = tempfile::tempdir().unwrap();
    let p = keys.path().join("seal.keys");
    generate_seal_key_file(&p, "k1").unwrap();
    assert_eq!(
        fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        Sealer::load(&p),
        Err(maskgate_audit::KeyError::Permissions { .. })
    ));
    assert!(matches!(
        add_seal_key(&p, "k2"),
        Err(maskgate_audit::KeyError::Permissions { .. })
    ));
}

#[test]
fn a_trail_signed_with_one_key_does_not_verify_with_another() {
    let t = closed_trail(3, 1 << 20);
    let other = maskgate_audit::SigningKey::generate().public_key();
    let r = verify(t.path(), &other).unwrap();
    assert_eq!(r.status(), Status::Tampered, "{r}");
}
