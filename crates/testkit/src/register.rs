//! A synthetic social-insurance register shaped exactly like
//! `examples/policy/classification.toml`, and maskgate started in front of
//! it with the example policy and test accounts.
//!
//! Every value is derived from a row number, so the people belong to nobody,
//! every run holds the same data, and a test can recompute any value. The
//! values are chosen so that leaks are easy to recognise in output:
//! identifiers, phones, e-mails, addresses and card numbers are unique; no
//! raw date of birth, registration, payment or submission date falls on the
//! first of a month (so a raw date never equals its `year`/`month` mask);
//! every amount has non-zero cents (so it never equals its rounded mask),
//! odd for contributions and even for benefit claims; full names are unique
//! and no given name is a prefix of another.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::{PgCluster, ProxyOptions, TestProxy, TestkitError};

mod normalized;

pub use normalized::{
    bank_accounts, benefit_payments, provinces, the_bhyt, BankAccount, BenefitPayment, Province,
    TheBhyt, PROVINCE_COUNT,
};

/// Number of participants (ids `1..=PARTICIPANTS`).
pub const PARTICIPANTS: u32 = 3000;
/// Number of employers (ids `1..=EMPLOYERS`).
pub const EMPLOYERS: u32 = 200;
/// Monthly contributions per participant (January to April 2024).
pub const PERIODS: u32 = 4;
/// Every province code in the register; "01" holds 40 % of the
/// participants, "79" 30 %, the others 10 % each.
pub const PROVINCES: [&str; 5] = ["01", "79", "48", "31", "92"];
/// The password of every account [`accounts`] returns.
pub const PASSWORD: &str = "register test password";

const SURNAMES: [&str; 12] = [
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ",
];
const MIDDLE_NAMES: [&str; 10] = [
    "Văn", "Thị", "Hữu", "Đình", "Thu", "Đức", "Ngọc", "Quốc", "Thanh", "Gia",
];
/// No entry is a prefix of another, so a full name never contains another one.
const GIVEN_NAMES: [&str; 30] = [
    "Bảo", "Châu", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hiếu", "Hoa", "Hùng", "Huy", "Khoa",
    "Lan", "Linh", "Long", "Mai", "Minh", "Nam", "Ngọc", "Phúc", "Phương", "Quân", "Sơn", "Tâm",
    "Thảo", "Trang", "Tuấn", "Vy", "Yến", "Xuân",
];
const CLAIM_KINDS: [&str; 4] = ["sickness", "maternity", "accident", "retirement"];
const CLAIM_STATUSES: [&str; 4] = ["submitted", "approved", "paid", "rejected"];
const DIAGNOSIS_LETTERS: [char; 6] = ['A', 'E', 'I', 'J', 'K', 'M'];

/// One row of `public.participant`; dates are `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub id: i64,
    pub citizen_id: String,
    pub social_insurance_code: String,
    pub full_name: String,
    pub date_of_birth: String,
    pub gender: &'static str,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub province_code: &'static str,
    pub employer_id: i64,
    pub registered_on: String,
}

/// One row of `public.employer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Employer {
    pub id: i64,
    pub tax_code: String,
    pub name: String,
    pub province_code: &'static str,
    pub address: String,
    pub contact_phone: String,
}

/// One row of `public.contribution`; amounts are exact decimal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub id: i64,
    pub participant_id: i64,
    pub employer_id: i64,
    pub period: String,
    pub salary_base: String,
    pub amount: String,
    pub province_code: &'static str,
    pub paid_on: String,
}

/// One row of `public.health_card`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCard {
    pub id: i64,
    pub participant_id: i64,
    pub card_number: String,
    pub hospital_code: String,
    pub valid_from: String,
    pub valid_to: String,
    pub province_code: &'static str,
}

/// One row of `public.benefit_claim`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenefitClaim {
    pub id: i64,
    pub participant_id: i64,
    pub kind: &'static str,
    pub diagnosis_code: Option<String>,
    pub amount: String,
    pub submitted_on: String,
    pub status: &'static str,
    pub province_code: &'static str,
}

fn province_of(n: u32) -> &'static str {
    match n % 10 {
        0..=3 => PROVINCES[0],
        4..=6 => PROVINCES[1],
        7 => PROVINCES[2],
        8 => PROVINCES[3],
        _ => PROVINCES[4],
    }
}

fn date(year: u32, month: u32, day: u32) -> String {
    format!("{year:04}-{month:02}-{day:02}")
}

fn cents(total: u64) -> String {
    format!("{}.{:02}", total / 100, total % 100)
}

/// Participant `n` (1-based). Panics outside `1..=PARTICIPANTS`.
pub fn participant(n: u32) -> Participant {
    assert!((1..=PARTICIPANTS).contains(&n), "no participant {n}");
    let province = province_of(n);
    let province_number: u32 = province.parse().expect("numeric province code");
    let birth_year = 1950 + (n * 7) % 50;
    let female = n % 2 == 0;
    // Century-and-gender digit of a citizen ID: 0 male, 1 female (born 1900-1999).
    let gender_digit = u32::from(female);
    let has_contacts = n % 50 != 0;
    Participant {
        id: i64::from(n),
        citizen_id: format!(
            "{province_number:03}{gender_digit}{:02}{n:06}",
            birth_year % 100
        ),
        social_insurance_code: format!("{province}{:08}", 31_000_000 + n * 13),
        full_name: format!(
            "{} {} {}",
            SURNAMES[(n % 12) as usize],
            MIDDLE_NAMES[((n / 12) % 10) as usize],
            GIVEN_NAMES[((n / 120) % 30) as usize]
        ),
        date_of_birth: date(birth_year, 2 + n % 11, 2 + n % 27),
        gender: if female { "F" } else { "M" },
        phone: has_contacts.then(|| format!("09{:08}", 10_000_000 + n * 17)),
        email: has_contacts.then(|| format!("p{n:06}@example.invalid")),
        address: has_contacts.then(|| format!("Số {n:05} ngõ {}, phường Thử Nghiệm", n % 40)),
        province_code: province,
        employer_id: i64::from(1 + n % EMPLOYERS),
        registered_on: date(2005 + n % 20, 1 + n % 12, 2 + (n * 3) % 27),
    }
}

/// Every participant, by id.
pub fn participants() -> impl Iterator<Item = Participant> {
    (1..=PARTICIPANTS).map(participant)
}

/// Employer `n` (1-based).
pub fn employer(n: u32) -> Employer {
    assert!((1..=EMPLOYERS).contains(&n), "no employer {n}");
    let province = province_of(n);
    Employer {
        id: i64::from(n),
        tax_code: format!("{province}{:08}", 40_000_000 + n * 31),
        name: format!("Công ty Thử Nghiệm số {n:03}"),
        province_code: province,
        address: format!("Lô {n:03}, khu công nghiệp Thử Nghiệm"),
        contact_phone: format!("024{:07}", 3_000_000 + n * 101),
    }
}

/// Every employer, by id.
pub fn employers() -> impl Iterator<Item = Employer> {
    (1..=EMPLOYERS).map(employer)
}

/// Every contribution: [`PERIODS`] per participant, by id.
pub fn contributions() -> impl Iterator<Item = Contribution> {
    participants().flat_map(|p| {
        let n = p.id as u64;
        (0..u64::from(PERIODS)).map(move |k| {
            // Odd cents, never zero: a raw amount never equals a rounded one.
            let salary = 500_000_000
                + (n * 3_701 + k * 977) % 2_000_000_000 / 100 * 100
                + 2 * ((n + k) % 50)
                + 1;
            let amount = salary * 8 / 100 / 2 * 2 + 1;
            let month = (k + 1) as u32;
            Contribution {
                id: ((n - 1) * u64::from(PERIODS) + k + 1) as i64,
                participant_id: p.id,
                employer_id: p.employer_id,
                period: date(2024, month, 1),
                salary_base: cents(salary),
                amount: cents(amount),
                province_code: p.province_code,
                paid_on: date(2024, month, 11 + (n % 10) as u32),
            }
        })
    })
}

/// Every health card: one per participant, same id.
pub fn health_cards() -> impl Iterator<Item = HealthCard> {
    participants().map(|p| HealthCard {
        id: p.id,
        participant_id: p.id,
        card_number: format!("GD4{}{:010}", p.province_code, 1_000_000 + p.id),
        hospital_code: format!("{}{:03}", p.province_code, p.id % 7),
        valid_from: date(2025, 1, 1),
        valid_to: date(2025, 12, 31),
        province_code: p.province_code,
    })
}

/// Whether participant `n` has a benefit claim (every third one does).
fn has_claim(n: u32) -> bool {
    n % 3 == 0
}

/// Every benefit claim, by id; some in every province are drafts.
pub fn benefit_claims() -> impl Iterator<Item = BenefitClaim> {
    participants().filter(|p| has_claim(p.id as u32)).map(|p| {
        let n = p.id as u32;
        let kind = CLAIM_KINDS[((n / 3) % 4) as usize];
        let diagnosis_code = (kind != "retirement").then(|| {
            format!(
                "{}{:02}.{}",
                DIAGNOSIS_LETTERS[(n % 6) as usize],
                (n / 7) % 100,
                n % 10
            )
        });
        // Even cents, never zero.
        let amount = 100_000_000 + u64::from(n) * 12_345 / 100 * 100 + 2 * u64::from(n % 49) + 2;
        BenefitClaim {
            id: i64::from(n / 3),
            participant_id: p.id,
            kind,
            diagnosis_code,
            amount: cents(amount),
            submitted_on: date(2025, 1 + n % 12, 2 + n % 27),
            status: if n % 63 == 0 {
                "draft"
            } else {
                CLAIM_STATUSES[((n / 3) % 4) as usize]
            },
            province_code: p.province_code,
        }
    })
}

/// The DDL, data (COPY) and statistics of the register as one psql script.
/// Drops and recreates the tables, so loading twice is harmless.
pub fn script() -> String {
    let mut sql = String::from(SCHEMA);
    sql.push_str(normalized::SCHEMA);
    copy(
        &mut sql,
        "public.employer (id, tax_code, name, province_code, address, contact_phone)",
        employers().map(|e| {
            vec![
                Some(e.id.to_string()),
                Some(e.tax_code),
                Some(e.name),
                Some(e.province_code.to_string()),
                Some(e.address),
                Some(e.contact_phone),
            ]
        }),
    );
    copy(
        &mut sql,
        "public.participant (id, citizen_id, social_insurance_code, full_name, date_of_birth, gender, phone, email, address, province_code, employer_id, registered_on)",
        participants().map(|p| {
            vec![
                Some(p.id.to_string()),
                Some(p.citizen_id),
                Some(p.social_insurance_code),
                Some(p.full_name),
                Some(p.date_of_birth),
                Some(p.gender.to_string()),
                p.phone,
                p.email,
                p.address,
                Some(p.province_code.to_string()),
                Some(p.employer_id.to_string()),
                Some(p.registered_on),
            ]
        }),
    );
    copy(
        &mut sql,
        "public.contribution (id, participant_id, employer_id, period, salary_base, amount, province_code, paid_on)",
        contributions().map(|c| {
            vec![
                Some(c.id.to_string()),
                Some(c.participant_id.to_string()),
                Some(c.employer_id.to_string()),
                Some(c.period),
                Some(c.salary_base),
                Some(c.amount),
                Some(c.province_code.to_string()),
                Some(c.paid_on),
            ]
        }),
    );
    copy(
        &mut sql,
        "public.health_card (id, participant_id, card_number, hospital_code, valid_from, valid_to, province_code)",
        health_cards().map(|h| {
            vec![
                Some(h.id.to_string()),
                Some(h.participant_id.to_string()),
                Some(h.card_number),
                Some(h.hospital_code),
                Some(h.valid_from),
                Some(h.valid_to),
                Some(h.province_code.to_string()),
            ]
        }),
    );
    copy(
        &mut sql,
        "public.benefit_claim (id, participant_id, kind, diagnosis_code, amount, submitted_on, status, province_code)",
        benefit_claims().map(|b| {
            vec![
                Some(b.id.to_string()),
                Some(b.participant_id.to_string()),
                Some(b.kind.to_string()),
                b.diagnosis_code,
                Some(b.amount),
                Some(b.submitted_on),
                Some(b.status.to_string()),
                Some(b.province_code.to_string()),
            ]
        }),
    );
    normalized::data(&mut sql);
    sql.push_str("COMMIT;\nANALYZE public.employer, public.participant, public.contribution, public.health_card, public.benefit_claim, ");
    sql.push_str(normalized::TABLES);
    sql.push_str(";\n");
    sql
}

/// Column types exactly as `examples/policy/classification.toml` declares them.
const SCHEMA: &str = "\
BEGIN;
DROP TABLE IF EXISTS public.benefit_payment, public.bank_account, public.\"TheBHYT\", public.benefit_claim, public.health_card, public.contribution, public.participant, public.employer CASCADE;
CREATE TABLE public.employer (
    id            bigint PRIMARY KEY,
    tax_code      varchar(14) NOT NULL,
    name          text NOT NULL,
    province_code char(2) NOT NULL,
    address       text,
    contact_phone text
);
CREATE TABLE public.participant (
    id                    bigint PRIMARY KEY,
    citizen_id            char(12) NOT NULL,
    social_insurance_code char(10) NOT NULL,
    full_name             text NOT NULL,
    date_of_birth         date NOT NULL,
    gender                char(1) NOT NULL,
    phone                 text,
    email                 text,
    address               text,
    province_code         char(2) NOT NULL,
    employer_id           bigint REFERENCES public.employer (id),
    registered_on         date NOT NULL
);
CREATE UNIQUE INDEX participant_citizen_id_idx ON public.participant (citizen_id);
CREATE UNIQUE INDEX participant_social_insurance_code_idx ON public.participant (social_insurance_code);
CREATE TABLE public.contribution (
    id             bigint PRIMARY KEY,
    participant_id bigint NOT NULL REFERENCES public.participant (id),
    employer_id    bigint NOT NULL REFERENCES public.employer (id),
    period         date NOT NULL,
    salary_base    numeric(12,2) NOT NULL,
    amount         numeric(12,2) NOT NULL,
    province_code  char(2) NOT NULL,
    paid_on        date
);
CREATE TABLE public.health_card (
    id             bigint PRIMARY KEY,
    participant_id bigint NOT NULL REFERENCES public.participant (id),
    card_number    varchar(15) NOT NULL UNIQUE,
    hospital_code  varchar(5) NOT NULL,
    valid_from     date NOT NULL,
    valid_to       date NOT NULL,
    province_code  char(2) NOT NULL
);
CREATE TABLE public.benefit_claim (
    id             bigint PRIMARY KEY,
    participant_id bigint NOT NULL REFERENCES public.participant (id),
    kind           text NOT NULL,
    diagnosis_code varchar(10),
    amount         numeric(12,2) NOT NULL,
    submitted_on   date NOT NULL,
    status         text NOT NULL,
    province_code  char(2) NOT NULL
);
";

/// Appends a `COPY … FROM STDIN` block in text format (`None` is NULL).
fn copy(sql: &mut String, target: &str, rows: impl Iterator<Item = Vec<Option<String>>>) {
    let _ = writeln!(sql, "COPY {target} FROM STDIN;");
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .map(|value| match value {
                None => "\\N".to_string(),
                Some(v) => v
                    .replace('\\', "\\\\")
                    .replace('\t', "\\t")
                    .replace('\n', "\\n")
                    .replace('\r', "\\r"),
            })
            .collect();
        sql.push_str(&line.join("\t"));
        sql.push('\n');
    }
    sql.push_str("\\.\n");
}

/// Creates the register's tables in `cluster`'s database (replacing them if
/// they exist) and fills them.
pub fn load(cluster: &PgCluster) -> Result<(), TestkitError> {
    cluster.psql(&script()).map(drop)
}

/// [`PgCluster::shared`] with the register loaded once per process.
/// Panics if the cluster cannot be started or loaded.
pub fn shared() -> &'static PgCluster {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    let cluster = PgCluster::shared();
    if let Err(e) = LOADED.get_or_init(|| load(cluster).map_err(|e| e.to_string())) {
        panic!("loading the register failed: {e}");
    }
    cluster
}

/// A test account: login, roles and attributes (e.g. `province`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub login: String,
    pub password: String,
    pub roles: Vec<String>,
    pub attributes: Vec<(String, String)>,
}

impl Account {
    /// An account with [`PASSWORD`] and the given roles, no attributes.
    pub fn new(login: &str, roles: &[&str]) -> Account {
        Account {
            login: login.to_string(),
            password: PASSWORD.to_string(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            attributes: Vec::new(),
        }
    }

    /// Adds an attribute such as `province = "01"`.
    pub fn with(mut self, name: &str, value: &str) -> Account {
        self.attributes.push((name.to_string(), value.to_string()));
        self
    }
}

/// Login of the counter clerk of province "01" (role `clerk`).
pub const CLERK: &str = "clerk_01";
/// Login of a counter clerk of province "79" (role `clerk`).
pub const CLERK_79: &str = "clerk_79";
/// Login of the statistics analyst of province "79" (role `province_analyst`).
pub const ANALYST: &str = "analyst_79";
/// Login of the fraud investigator (role `investigator`).
pub const INVESTIGATOR: &str = "investigator";
/// Login of the internal auditor (role `auditor`, unrestricted).
pub const AUDITOR: &str = "auditor";
/// Login of the benefit desk of province "48" (role `claims_officer`): reads,
/// inserts, updates and deletes in its province, identifiers masked.
pub const OFFICER: &str = "officer_48";
/// Login of the provincial officer of province "01" (role `provincial_officer`):
/// participants and, through them, cards, bank accounts and payments.
pub const PROVINCIAL: &str = "provincial_01";
/// Login on trial of the monitored role `trainee_officer`, province "01".
pub const TRAINEE: &str = "trainee_01";

/// The standard test accounts, one per role of the example policy (the
/// disabled break-glass role excepted), all with [`PASSWORD`].
pub fn accounts() -> Vec<Account> {
    vec![
        Account::new(CLERK, &["clerk"]).with("province", "01"),
        Account::new(CLERK_79, &["clerk"]).with("province", "79"),
        Account::new(ANALYST, &["province_analyst"]).with("province", "79"),
        Account::new(INVESTIGATOR, &["investigator"]),
        Account::new(AUDITOR, &["auditor"]),
        Account::new(OFFICER, &["claims_officer"]).with("province", "48"),
        Account::new(PROVINCIAL, &["provincial_officer"]).with("province", "01"),
        Account::new(TRAINEE, &["trainee_officer"]).with("province", "01"),
    ]
}

/// `examples/policy/classification.toml` and `roles.toml` as (file name,
/// text), read from the repository at run time.
pub fn example_policy_files() -> Result<Vec<(String, String)>, TestkitError> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/policy");
    ["classification.toml", "roles.toml"]
        .iter()
        .map(|name| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map(|text| (name.to_string(), text))
                .map_err(|e| TestkitError::io_path("reading the example policy", &path, e))
        })
        .collect()
}

/// The policy files without rolling quotas (`statements_per_minute`,
/// `rows_per_hour`), for suites that run more statements per account than a
/// person would; row caps stay.
pub fn without_quotas(files: Vec<(String, String)>) -> Vec<(String, String)> {
    files
        .into_iter()
        .map(|(name, text)| {
            let kept: Vec<&str> = text
                .lines()
                .filter(|line| {
                    let key = line.trim_start();
                    !key.starts_with("statements_per_minute") && !key.starts_with("rows_per_hour")
                })
                .collect();
            (name, kept.join("\n") + "\n")
        })
        .collect()
}

/// Proxy options serving `accounts` under `policy_files`: each account gets
/// its own roles, its attributes, an assignment, and may log in from
/// 127.0.0.1 at any time until 2099.
pub fn proxy_options(accounts: &[Account], policy_files: Vec<(String, String)>) -> ProxyOptions {
    ProxyOptions {
        users: accounts
            .iter()
            .map(|a| (a.login.clone(), a.password.clone()))
            .collect(),
        user_roles: accounts
            .iter()
            .map(|a| (a.login.clone(), a.roles.clone()))
            .collect(),
        account_settings: accounts
            .iter()
            .map(|a| {
                let attributes = a
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k} = \"{v}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                // The lines a reviewed account carries, so the policy loads without
                // warnings about the test accounts themselves.
                let mut lines = String::from(
                    "networks = [\"127.0.0.1/32\"]\nvalid_until = 2099-12-31\n\
                     assignment = { document = \"maskgate test kit\", date = 2026-01-01, assigned_by = \"maskgate test kit\" }\n",
                );
                if !attributes.is_empty() {
                    lines.push_str(&format!("attributes = {{ {attributes} }}\n"));
                }
                (a.login.clone(), lines)
            })
            .collect(),
        policy_files,
        // Suites that log in hundreds of times must not fail a login on a loaded machine.
        login_timeout: std::time::Duration::from_secs(60),
        ..ProxyOptions::default()
    }
}

/// maskgate in front of `cluster` (which must hold the register) with the
/// example policy and the standard [`accounts`].
pub async fn start_proxy(cluster: &PgCluster) -> Result<TestProxy, TestkitError> {
    let options = proxy_options(&accounts(), example_policy_files()?);
    TestProxy::start(cluster, options).await
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn identifying_values_are_unique() {
        let all: Vec<Participant> = participants().collect();
        let unique = |f: &dyn Fn(&Participant) -> String| {
            all.iter().map(f).collect::<HashSet<_>>().len() == all.len()
        };
        assert!(unique(&|p| p.citizen_id.clone()));
        assert!(unique(&|p| p.social_insurance_code.clone()));
        assert!(unique(&|p| p.full_name.clone()));
        let cards: HashSet<String> = health_cards().map(|h| h.card_number).collect();
        assert_eq!(cards.len(), all.len());
    }

    #[test]
    fn values_fit_their_columns() {
        for p in participants() {
            assert_eq!(p.citizen_id.len(), 12, "{}", p.id);
            assert!(p.citizen_id.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(p.social_insurance_code.len(), 10, "{}", p.id);
            assert!(p.phone.as_ref().is_none_or(|x| x.len() == 10));
            assert!(p.citizen_id.starts_with(&format!("0{}", p.province_code)));
        }
        for h in health_cards() {
            assert_eq!(h.card_number.len(), 15);
            assert!(h.hospital_code.len() <= 5);
        }
        for e in employers() {
            assert!(e.tax_code.len() <= 14);
        }
        for b in benefit_claims() {
            assert!(b.diagnosis_code.as_ref().is_none_or(|d| d.len() <= 10));
            let units: u64 = b.amount.split('.').next().unwrap().parse().unwrap();
            assert!(units < 10_000_000_000);
        }
        for c in contributions() {
            let units: u64 = c.salary_base.split('.').next().unwrap().parse().unwrap();
            assert!(units < 10_000_000_000);
        }
    }

    #[test]
    fn no_given_name_is_a_prefix_of_another() {
        for a in GIVEN_NAMES {
            for b in GIVEN_NAMES {
                assert!(a == b || !b.starts_with(a), "{a} / {b}");
            }
        }
    }

    #[test]
    fn masks_never_equal_raw_values() {
        for p in participants() {
            assert!(!p.date_of_birth.ends_with("-01"));
            assert!(!p.date_of_birth.contains("-01-"));
            assert!(!p.registered_on.ends_with("-01"));
        }
        for c in contributions() {
            assert!(!c.salary_base.ends_with(".00") && !c.amount.ends_with(".00"));
            assert!(c.amount.ends_with(['1', '3', '5', '7', '9']));
            assert!(!c.paid_on.ends_with("-01"));
        }
        for b in benefit_claims() {
            assert!(!b.amount.ends_with(".00"));
            assert!(!b.amount.ends_with(['1', '3', '5', '7', '9']));
            assert!(!b.submitted_on.ends_with("-01"));
        }
    }

    #[test]
    fn every_province_has_participants_and_drafts() {
        for province in PROVINCES {
            assert!(participants().any(|p| p.province_code == province));
            assert!(benefit_claims().any(|b| b.province_code == province && b.status == "draft"));
            assert!(benefit_claims().any(|b| b.province_code == province && b.status != "draft"));
        }
        let drafts = benefit_claims().filter(|b| b.status == "draft").count();
        assert!((10..100).contains(&drafts), "{drafts}");
    }

    #[test]
    fn quotas_can_be_lifted() {
        let files = without_quotas(example_policy_files().unwrap());
        let roles = &files.iter().find(|(n, _)| n == "roles.toml").unwrap().1;
        assert!(!roles.contains("statements_per_minute"));
        assert!(!roles.contains("rows_per_hour"));
        assert!(roles.contains("max_rows = 50"));
    }
}
