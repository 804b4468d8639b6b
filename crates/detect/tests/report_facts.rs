//! The facts the breach and daily reports state, from a real signed trail: the
//! number of people is an upper bound (a key read again is one person, rows of
//! unreadable keys and of scans count), a trail cut after a checkpoint is said to
//! be possibly cut, machines of sessions that logged in before the period are
//! listed, a denied category is "not at all", a seal key rotation is an action,
//! and the daily report says whether it verified the trail.

use maskgate_audit::{SigningKey, Writer, WriterConfig};
use maskgate_detect::report::{breach, daily, Classification};
use maskgate_detect::Fingerprinter;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

struct Trail {
    w: Writer,
    prints: Fingerprinter,
}

impl Trail {
    fn statement(&mut self, stmt: u64, keys: &[&str], unkeyed: u64, seal: &str, rows: u64) {
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| serde_json::to_value(self.prints.print(k)).unwrap())
            .collect();
        let pinned: Vec<&str> = if keys.is_empty() && unkeyed == 0 {
            Vec::new()
        } else {
            vec!["citizen_id"]
        };
        self.w.append("statement", &json!({"session":"s1","stmt":stmt,"user":"clerk","client":"10.0.0.7:5000","protocol":"extended","statement":"SELECT …","class":"read","tables":[{"table":"public.person","masked":["citizen_id:partial"],"denied":["phone"],"pinned_by":pinned,"roles":["clerk"]}],"decision":"rewritten","sealed_values":1,"sealed":{"key_id":seal,"nonce":"AAAAAAAAAAAAAAAA","ciphertext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},"keys":keys,"unkeyed":unkeyed})).unwrap();
        self.w.append("statement_end", &json!({"session":"s1","stmt":stmt,"outcome":"completed","rows":rows,"bytes":rows * 50,"duration_us":700})).unwrap();
    }
}

fn classification() -> Classification {
    let mut c = Classification::default();
    c.tables.insert(
        "public.person".into(),
        vec![
            ("citizen_id".into(), vec!["pii.identifier".into()]),
            ("phone".into(), vec!["pii.contact".into()]),
        ],
    );
    c.accounts
        .insert("clerk".into(), ("Clerk".into(), vec!["clerk".into()]));
    c
}

#[test]
fn the_breach_report_bounds_people_and_says_what_the_trail_may_lack() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let public = key.public_key();
    let mut t = Trail {
        w: Writer::open(dir.path(), WriterConfig::new(key)).unwrap(),
        prints: Fingerprinter::new(&[5; 32]),
    };
    t.w.append("login", &json!({"outcome":"admitted","session":"s1","client":"10.0.0.7:5000","user":"clerk","login":"clerk","roles":["clerk"],"restricted":true,"database":"register","policy":"p"})).unwrap();
    t.w.commit().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let from = OffsetDateTime::now_utc();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // One person read 5 times, one found nobody, an unreadable key with 3 rows,
    // a scan of 10 rows; then the seal key changes.
    for stmt in 1..=5 {
        t.statement(stmt, &["000000000042"], 0, "k1", 1);
    }
    t.statement(6, &["000000000043"], 0, "k1", 0);
    t.statement(7, &[], 1, "k1", 3);
    t.statement(8, &[], 0, "k2", 10);
    t.w.commit().unwrap();
    let sealed = t.w.checkpoint().unwrap();
    // The writer stops without closing: a copy cut right after the checkpoint
    // looks the same.
    drop(t);
    let to = OffsetDateTime::now_utc() + Duration::minutes(1);

    let r = breach::build(dir.path(), &public, "clerk", (from, to), &classification()).unwrap();
    let s = &r.data_subjects;
    assert_eq!(
        (
            s.looked_up,
            s.lookup_rows,
            s.unkeyed_rows,
            s.rows_not_by_key,
            s.at_most
        ),
        (1, 1, 3, 10, 14),
        "{s:?}"
    );
    assert!(r.verification.tail_may_be_cut);
    assert_eq!(r.verification.sealed_through, sealed);
    assert!(
        r.verification.warning.contains("cut"),
        "{}",
        r.verification.warning
    );
    assert!(r.to_html().contains("this copy was cut"));
    assert_eq!(r.machines.len(), 1, "{:?}", r.machines);
    assert_eq!(r.machines[0].client, "10.0.0.7");
    let reached: Vec<(&str, &str)> = r
        .categories
        .iter()
        .map(|c| (c.label.as_str(), c.reached.as_str()))
        .collect();
    assert_eq!(
        reached,
        [
            ("pii.contact", "not at all"),
            ("pii.identifier", "masked only")
        ]
    );
    assert!(
        r.actions
            .iter()
            .any(|a| a.action == "audit seal key rotated" && a.detail.contains("k2")),
        "{:?}",
        r.actions
    );

    let d = daily::build(dir.path(), from, to, &classification(), &Default::default()).unwrap();
    assert!(d.verification.is_none());
    assert!(d.to_text().contains("NOT verified"));
    assert_eq!(d.top_by_people[0].people_at_most, 14);
}

/// A monitored account's statement ran as typed: what enforcing would have masked
/// or denied reached the account in clear, and the report says so even when other
/// statements of the period were masked.
#[test]
fn a_monitored_statement_is_reported_as_read_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let public = key.public_key();
    let mut t = Trail {
        w: Writer::open(dir.path(), WriterConfig::new(key)).unwrap(),
        prints: Fingerprinter::new(&[5; 32]),
    };
    let from = OffsetDateTime::now_utc();
    std::thread::sleep(std::time::Duration::from_millis(20));
    t.statement(1, &["000000000042"], 0, "k1", 1);
    t.w.append("statement", &json!({"session":"s1","stmt":2,"user":"clerk","client":"10.0.0.7:5000","protocol":"simple","statement":"SELECT …","class":"read","tables":[{"table":"public.person","masked":["citizen_id:partial"],"denied":["phone"],"roles":["clerk"]}],"decision":"monitored","would":"rewrite","sealed_values":0})).unwrap();
    t.w.append("statement_end", &json!({"session":"s1","stmt":2,"outcome":"completed","rows":4,"bytes":200,"duration_us":700})).unwrap();
    t.statement(3, &["000000000043"], 0, "k1", 1);
    t.w.commit().unwrap();
    t.w.checkpoint().unwrap();
    drop(t);
    let to = OffsetDateTime::now_utc() + Duration::minutes(1);

    let r = breach::build(dir.path(), &public, "clerk", (from, to), &classification()).unwrap();
    let reached: Vec<(&str, &str)> = r
        .categories
        .iter()
        .map(|c| (c.label.as_str(), c.reached.as_str()))
        .collect();
    assert_eq!(
        reached,
        [("pii.contact", "in clear"), ("pii.identifier", "in clear")]
    );
}
