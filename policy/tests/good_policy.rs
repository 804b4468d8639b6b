//! The complete register policy in tests/fixtures/good loads cleanly and means what it says.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maskgate_policy::{
    ColumnRule, LoginDenial, Policy, PolicySettings, QualifiedName, StatementKind,
};
use time::macros::{date, datetime, offset};

fn settings() -> PolicySettings {
    PolicySettings {
        timezone: offset!(+07:00),
        search_path: vec!["public".into()],
        pseudonym_keys: Vec::new(),
    }
}

fn good_files() -> Vec<(PathBuf, String)> {
    ["classification.toml", "roles.toml", "accounts.toml"]
        .into_iter()
        .map(|name| {
            let path = Path::new("tests/fixtures/good").join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect()
}

fn policy() -> Policy {
    let loaded = Policy::from_texts(good_files(), settings(), date!(2026 - 03 - 02))
        .unwrap_or_else(|rejected| panic!("{}", rejected.errors));
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    loaded.policy
}

fn name(text: &str) -> QualifiedName {
    let (schema, table) = text.split_once('.').unwrap();
    QualifiedName::new(schema, table)
}

#[test]
fn loads_from_the_directory() {
    let loaded = Policy::load_dir(Path::new("tests/fixtures/good"), settings()).unwrap();
    assert_eq!(loaded.policy.accounts().count(), 5);
    assert_eq!(loaded.policy.tables().len(), 5);
    assert_eq!(loaded.policy.roles().len(), 5);
    assert_eq!(loaded.policy.labels().len(), 5);
}

#[test]
fn clerk_is_lookup_only_masked_and_filtered() {
    let policy = policy();
    let rules = policy.effective("clerk_hanoi_01").unwrap();
    assert!(!rules.unrestricted);
    assert!(rules.statements.contains(StatementKind::Read));
    assert!(!rules.statements.contains(StatementKind::Update));
    assert_eq!(rules.max_rows, Some(50));
    assert_eq!(rules.statements_per_minute, Some(60));
    assert_eq!(rules.rows_per_hour, None);
    assert_eq!(
        rules.tables.len(),
        1,
        "only participant: everything else is denied"
    );

    let participant = &rules.tables[&name("public.participant")];
    assert_eq!(
        participant
            .row_filter
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("(province_code = '01')")
    );
    assert_eq!(
        participant.lookup_keys,
        ["citizen_id", "social_insurance_code"]
    );
    let rule = |c: &str| participant.columns[c].to_string();
    assert_eq!(rule("id"), "allow");
    assert_eq!(rule("full_name"), "allow");
    assert!(
        rule("citizen_id").starts_with("mask partial"),
        "{}",
        rule("citizen_id")
    );
    assert_eq!(rule("citizen_id"), rule("social_insurance_code"));
    assert_eq!(rule("phone"), "deny");
    assert_eq!(rule("email"), "deny");
    assert_eq!(rule("address"), "deny");
    assert!(rule("date_of_birth").starts_with("mask year"));
    // Not mentioned by the role: fail closed.
    assert_eq!(participant.columns["employer_id"], ColumnRule::Deny);
    assert_eq!(
        participant.columns.len(),
        12,
        "every classified column has a rule"
    );
}

#[test]
fn analyst_sees_no_identifiers() {
    let policy = policy();
    let rules = policy.effective("analyst_hcm_01").unwrap();
    assert_eq!(rules.tables.len(), 4);
    assert!(!rules.tables.contains_key(&name("public.health_card")));
    let claims = &rules.tables[&name("public.benefit_claim")];
    assert_eq!(
        claims
            .row_filter
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("(province_code = '79' AND status <> 'draft')")
    );
    assert!(matches!(
        claims.columns["diagnosis_code"],
        ColumnRule::Mask(_)
    ));
    assert!(matches!(claims.columns["amount"], ColumnRule::Mask(_)));
    let employer = &rules.tables[&name("public.employer")];
    assert_eq!(employer.row_filter, None);
    assert_eq!(employer.columns["contact_phone"], ColumnRule::Deny);
    assert_eq!(rules.max_rows, Some(10000));
    assert_eq!(rules.rows_per_hour, Some(200000));
}

#[test]
fn investigator_sees_identifiers_everywhere() {
    let policy = policy();
    let rules = policy.effective("investigator_01").unwrap();
    let participant = &rules.tables[&name("public.participant")];
    assert_eq!(participant.row_filter, None);
    assert!(participant.lookup_keys.is_empty());
    assert!(participant
        .columns
        .values()
        .all(|r| *r == ColumnRule::Allow));
    assert_eq!(
        rules.tables[&name("public.health_card")].columns["card_number"],
        ColumnRule::Allow
    );
    assert_eq!(rules.rows_per_hour, Some(5000));
}

#[test]
fn auditor_and_dba_are_unrestricted() {
    let policy = policy();
    let auditor = policy.effective("auditor_01").unwrap();
    assert!(auditor.unrestricted);
    assert_eq!(auditor.statements.to_string(), "read");
    let dba = policy.effective("dba_oncall").unwrap();
    assert!(dba.unrestricted);
    assert_eq!(dba.statements.to_string(), "read, insert, update, delete");
    assert!(policy.account("dba_oncall").unwrap().disabled);
    assert!(policy.effective("nobody").is_none());
    assert!(policy.account("nobody").is_none());
}

#[test]
fn accounts_are_bound_to_machines_and_hours() {
    let policy = policy();
    let clerk = policy.account("clerk_hanoi_01").unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // Monday 2026-03-02, 09:00 in Hà Nội.
    let monday = datetime!(2026-03-02 09:00 +07:00);
    assert_eq!(clerk.admit(monday, ip("127.0.0.1"), None), Ok(()));
    assert_eq!(clerk.admit(monday, ip("10.1.20.44"), None), Ok(()));
    assert_eq!(
        clerk.admit(monday, ip("127.0.0.2"), None),
        Err(LoginDenial::Address)
    );
    assert_eq!(
        clerk.admit(datetime!(2026-03-02 20:00 +07:00), ip("127.0.0.1"), None),
        Err(LoginDenial::OutsideHours)
    );
    assert_eq!(
        clerk.admit(datetime!(2026-03-08 09:00 +07:00), ip("127.0.0.1"), None),
        Err(LoginDenial::OutsideHours),
        "Sunday"
    );
    assert_eq!(
        clerk.admit(datetime!(2027-07-01 09:00 +07:00), ip("127.0.0.1"), None),
        Err(LoginDenial::Expired)
    );
    assert_eq!(clerk.assignment.as_ref().unwrap().document, "QĐ-123/2026");

    let analyst = policy.account("analyst_hcm_01").unwrap();
    assert_eq!(
        analyst.admit(monday, ip("10.79.4.2"), None),
        Err(LoginDenial::Certificate)
    );
    let fp = analyst.cert_fingerprints[0];
    assert_eq!(analyst.admit(monday, ip("10.79.4.2"), Some(&fp)), Ok(()));
    assert_eq!(
        analyst.admit(
            datetime!(2026-01-31 09:00 +07:00),
            ip("10.79.4.2"),
            Some(&fp)
        ),
        Err(LoginDenial::NotYetValid)
    );

    let dba = policy.account("dba_oncall").unwrap();
    assert_eq!(
        dba.admit(monday, ip("127.0.0.1"), None),
        Err(LoginDenial::Disabled)
    );
    assert!(!dba.is_active(date!(2026 - 03 - 02)));
    assert!(clerk.is_active(date!(2026 - 03 - 02)));
}

#[test]
fn explain_describes_without_secrets() {
    let policy = policy();
    let text = policy.explain("clerk_hanoi_01").unwrap();
    for expected in [
        "account clerk_hanoi_01 (Nguyễn Văn An, counter clerk, Hà Nội office)",
        "roles: clerk",
        "province = \"01\"",
        "valid: 2026-01-01 to 2027-06-30 inclusive",
        "assignment: QĐ-123/2026 of 2026-01-05, by Head of IT, Hà Nội",
        "connects from: 10.1.20.0/24, 127.0.0.1/32",
        "login: 07:00-19:00, mon tue wed thu fri sat (+07:00:00)",
        "max sessions: 2",
        "statements: read",
        "limits: 50 rows per statement, 60 statements per minute",
        "public.participant",
        "lookup only: each query must pin one of citizen_id, social_insurance_code by equality",
        "rows where (province_code = '01')",
        "phone                  deny",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("SCRAM"), "{text}");
    let dba = policy.explain("dba_oncall").unwrap();
    assert!(dba.contains("DISABLED"));
    assert!(dba.contains("unrestricted"));
    assert!(policy.explain("nobody").is_none());
}

#[test]
fn debug_output_hides_verifiers() {
    let policy = policy();
    let debug = format!("{policy:?}");
    assert!(
        !debug.contains("SCRAM-SHA-256$"),
        "verifier leaked into Debug"
    );
    assert!(!debug.contains("XT4ez9bx3"));
}
