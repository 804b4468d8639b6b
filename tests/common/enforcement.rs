//! Shared by the enforcement end-to-end tests: the register cluster, a
//! superuser connection for ground truth, running statements through a real
//! driver in the simple and the extended protocol (binary results decoded to
//! PostgreSQL's text form), and a scanner that finds values an account may
//! not see in what it received.

#![allow(dead_code, unused_imports)]

use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::sync::{Arc, OnceLock};

use futures_util::{pin_mut, TryStreamExt};
use maskgate_testkit::{register, PgCluster};
use tokio_postgres::types::{FromSql, Kind, Type};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

pub use register::{ANALYST, AUDITOR, CLERK, CLERK_79, INVESTIGATOR, OFFICER, PASSWORD};

/// Participants the tests name: row numbers of the generated register.
pub const P01: u32 = 10;
pub const P01_B: u32 = 20;
pub const P01_C: u32 = 30;
pub const P79: u32 = 14;
pub const P48: u32 = 17;
/// A participant of province "48" with a benefit claim (claim id 9) that has a diagnosis.
pub const P48_CLAIMANT: u32 = 27;
/// Every restricted login of the test accounts, the write-capable officer included.
pub const RESTRICTED: [&str; 5] = [CLERK, CLERK_79, ANALYST, INVESTIGATOR, OFFICER];
/// The restricted logins that may only read.
pub const READ_ONLY: [&str; 4] = [CLERK, CLERK_79, ANALYST, INVESTIGATOR];

/// The shared cluster with the register and an empty scratch table (not in
/// the policy) that write-then-read attempts aim at.
pub fn cluster() -> &'static PgCluster {
    static SCRATCH: OnceLock<()> = OnceLock::new();
    let cluster = register::shared();
    SCRATCH.get_or_init(|| {
        cluster
            .psql("CREATE TABLE IF NOT EXISTS public.mg_scratch (id bigint, body text)")
            .expect("creating the scratch table");
    });
    cluster
}

/// A direct superuser connection to the cluster (not through maskgate).
pub async fn superuser(cluster: &PgCluster) -> Client {
    let (client, connection) = tokio_postgres::connect(&cluster.url(), NoTls)
        .await
        .expect("superuser connects directly");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Text values of the first column of a superuser query.
pub async fn column(client: &Client, sql: &str) -> Vec<Option<String>> {
    rows_text(client, sql)
        .await
        .into_iter()
        .map(|mut r| r.swap_remove(0))
        .collect()
}

/// Every row of a superuser query, as text.
pub async fn rows_text(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("ground truth query failed: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// An error as the client saw it; no row data is kept beyond the message.
#[derive(Debug, Clone)]
pub struct Failure {
    /// SQLSTATE, or `"connection"` when it was not a server error.
    pub code: String,
    pub message: String,
    pub has_detail: bool,
    pub has_hint: bool,
    pub has_where: bool,
    pub has_position: bool,
}

impl Failure {
    pub fn from_error(e: &tokio_postgres::Error) -> Failure {
        match e.as_db_error() {
            Some(db) => Failure {
                code: db.code().code().to_string(),
                message: db.message().to_string(),
                has_detail: db.detail().is_some(),
                has_hint: db.hint().is_some(),
                has_where: db.where_().is_some(),
                has_position: db.position().is_some(),
            },
            None => Failure {
                code: "connection".to_string(),
                message: e.to_string(),
                has_detail: false,
                has_hint: false,
                has_where: false,
                has_position: false,
            },
        }
    }
}

/// One received row with its column names.
#[derive(Debug, Clone)]
pub struct OutRow {
    pub columns: Arc<[String]>,
    pub values: Vec<Option<String>>,
}

impl OutRow {
    pub fn get(&self, column: &str) -> Option<&str> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.values[i].as_deref()
    }
}

/// What a statement (or a sequence) delivered before it ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub rows: Vec<OutRow>,
    pub error: Option<Failure>,
}

impl Outcome {
    pub fn merge(&mut self, other: Outcome) {
        self.rows.extend(other.rows);
        self.error = other.error;
    }
}

/// Runs `sql` in the simple protocol (text results), keeping every row
/// received before an error.
pub async fn simple(client: &Client, sql: &str) -> Outcome {
    let mut out = Outcome::default();
    let stream = match client.simple_query_raw(sql).await {
        Ok(stream) => stream,
        Err(e) => {
            out.error = Some(Failure::from_error(&e));
            return out;
        }
    };
    pin_mut!(stream);
    let mut columns: Option<Arc<[String]>> = None;
    loop {
        match stream.try_next().await {
            Ok(Some(SimpleQueryMessage::Row(row))) => {
                let names = columns
                    .get_or_insert_with(|| {
                        row.columns().iter().map(|c| c.name().to_string()).collect()
                    })
                    .clone();
                let values = (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect();
                out.rows.push(OutRow {
                    columns: names,
                    values,
                });
            }
            Ok(Some(SimpleQueryMessage::RowDescription(desc))) => {
                columns = Some(desc.iter().map(|c| c.name().to_string()).collect());
            }
            Ok(Some(SimpleQueryMessage::CommandComplete(_))) => columns = None,
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                out.error = Some(Failure::from_error(&e));
                break;
            }
        }
    }
    out
}

/// Runs `sql` in the extended protocol (Parse/Describe/Bind/Execute) with
/// binary results, keeping every row received before an error.
pub async fn extended(client: &Client, sql: &str) -> Outcome {
    let mut out = Outcome::default();
    let stream = match client.query_raw(sql, Vec::<String>::new()).await {
        Ok(stream) => stream,
        Err(e) => {
            out.error = Some(Failure::from_error(&e));
            return out;
        }
    };
    collect_rows(stream, &mut out).await;
    out
}

/// Runs `sql` through a portal fetched `max_rows` at a time (Execute with a
/// row limit, portal suspension) inside a transaction that is rolled back.
pub async fn portal(client: &mut Client, sql: &str, max_rows: i32) -> Outcome {
    let mut out = Outcome::default();
    let tx = match client.transaction().await {
        Ok(tx) => tx,
        Err(e) => {
            out.error = Some(Failure::from_error(&e));
            return out;
        }
    };
    let result = async {
        let statement = tx.prepare(sql).await?;
        let portal = tx.bind(&statement, &[]).await?;
        Ok::<_, tokio_postgres::Error>(portal)
    }
    .await;
    let portal = match result {
        Ok(portal) => portal,
        Err(e) => {
            out.error = Some(Failure::from_error(&e));
            return out;
        }
    };
    loop {
        let before = out.rows.len();
        match tx.query_portal_raw(&portal, max_rows).await {
            Ok(stream) => collect_rows(stream, &mut out).await,
            Err(e) => out.error = Some(Failure::from_error(&e)),
        }
        let got = out.rows.len() - before;
        if out.error.is_some() || got < max_rows as usize {
            break;
        }
    }
    let _ = tx.rollback().await;
    out
}

async fn collect_rows(stream: tokio_postgres::RowStream, out: &mut Outcome) {
    pin_mut!(stream);
    let mut columns: Option<Arc<[String]>> = None;
    loop {
        match stream.try_next().await {
            Ok(Some(row)) => {
                let names = columns
                    .get_or_insert_with(|| {
                        row.columns().iter().map(|c| c.name().to_string()).collect()
                    })
                    .clone();
                let values = (0..row.len())
                    .map(|i| {
                        row.try_get::<_, Option<RawValue>>(i)
                            .expect("any value decodes as raw bytes")
                            .map(|raw| decode(&raw.ty, raw.bytes))
                    })
                    .collect();
                out.rows.push(OutRow {
                    columns: names,
                    values,
                });
            }
            Ok(None) => break,
            Err(e) => {
                out.error = Some(Failure::from_error(&e));
                break;
            }
        }
    }
}

/// A binary result value of any type.
struct RawValue<'a> {
    ty: Type,
    bytes: &'a [u8],
}

impl<'a> FromSql<'a> for RawValue<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(RawValue {
            ty: ty.clone(),
            bytes: raw,
        })
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[path = "decode.rs"]
mod decode;
pub use decode::decode;

/// The register as the superuser sees it, fetched from the cluster.
pub struct Truth {
    pub participants: Vec<TruthParticipant>,
    pub employer_phones: Vec<String>,
    pub employer_names: Vec<String>,
    pub tax_codes: Vec<String>,
    pub card_numbers: Vec<String>,
    pub diagnosis_codes: Vec<String>,
    pub contribution_amounts: Vec<String>,
    pub payment_dates: Vec<String>,
    pub claim_amounts: Vec<String>,
    /// (province_code, amount) of every benefit claim.
    pub claim_amounts_by_province: Vec<(String, String)>,
    pub submission_dates: Vec<String>,
}

pub struct TruthParticipant {
    pub id: i64,
    pub citizen_id: String,
    pub social_insurance_code: String,
    pub full_name: String,
    pub date_of_birth: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub province_code: String,
    pub registered_on: String,
}

impl Truth {
    pub async fn fetch(su: &Client) -> Truth {
        let participants = rows_text(
            su,
            "SELECT id, citizen_id, social_insurance_code, full_name, date_of_birth, phone, email, \
             address, province_code, registered_on FROM public.participant ORDER BY id",
        )
        .await
        .into_iter()
        .map(|r| {
            let s = |i: usize| r[i].clone().expect("NOT NULL column");
            TruthParticipant {
                id: s(0).parse().unwrap(),
                citizen_id: s(1),
                social_insurance_code: s(2),
                full_name: s(3),
                date_of_birth: s(4),
                phone: r[5].clone(),
                email: r[6].clone(),
                address: r[7].clone(),
                province_code: s(8),
                registered_on: s(9),
            }
        })
        .collect();
        let all = |v: Vec<Option<String>>| v.into_iter().flatten().collect::<Vec<_>>();
        Truth {
            participants,
            employer_phones: all(column(su, "SELECT contact_phone FROM public.employer").await),
            employer_names: all(column(su, "SELECT name FROM public.employer").await),
            tax_codes: all(column(su, "SELECT tax_code FROM public.employer").await),
            card_numbers: all(column(su, "SELECT card_number FROM public.health_card").await),
            diagnosis_codes: all(
                column(su, "SELECT DISTINCT diagnosis_code FROM public.benefit_claim").await,
            ),
            contribution_amounts: all(
                column(
                    su,
                    "SELECT salary_base::text FROM public.contribution UNION SELECT amount::text FROM public.contribution",
                )
                .await,
            ),
            payment_dates: all(
                column(su, "SELECT DISTINCT paid_on::text FROM public.contribution").await,
            ),
            claim_amounts: all(column(su, "SELECT amount::text FROM public.benefit_claim").await),
            claim_amounts_by_province: rows_text(
                su,
                "SELECT province_code, amount::text FROM public.benefit_claim",
            )
            .await
            .into_iter()
            .map(|r| {
                let s = |i: usize| r[i].clone().expect("NOT NULL column");
                (s(0), s(1))
            })
            .collect(),
            submission_dates: all(
                column(su, "SELECT DISTINCT submitted_on::text FROM public.benefit_claim").await,
            ),
        }
    }

    pub fn participant(&self, id: u32) -> &TruthParticipant {
        &self.participants[id as usize - 1]
    }
}

/// A value the scanner looks for, and why it must not appear.
#[derive(Debug, Clone)]
pub struct Secret {
    pub kind: &'static str,
    /// The participant a name belongs to (a clerk may see pinned people's names).
    pub owner: Option<usize>,
}

/// Finds secret values inside received text by exact substring, in time
/// linear in the text (one hash lookup per position and secret length).
pub struct Scanner {
    by_len: HashMap<usize, HashMap<Vec<u8>, Secret>>,
    lens: Vec<usize>,
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner {
            by_len: HashMap::new(),
            lens: Vec::new(),
        }
    }

    pub fn add(&mut self, value: &str, kind: &'static str, owner: Option<usize>) {
        let bytes = value.as_bytes();
        if bytes.len() < 4 {
            return;
        }
        self.by_len
            .entry(bytes.len())
            .or_default()
            .insert(bytes.to_vec(), Secret { kind, owner });
        if !self.lens.contains(&bytes.len()) {
            self.lens.push(bytes.len());
        }
    }

    pub fn add_all<'a>(
        &mut self,
        values: impl IntoIterator<Item = &'a String>,
        kind: &'static str,
    ) {
        for v in values {
            self.add(v, kind, None);
        }
    }

    /// Every (secret, matched value) in `text`.
    pub fn scan<'s>(&'s self, text: &str) -> Vec<(&'s Secret, String)> {
        let bytes = text.as_bytes();
        let mut found = Vec::new();
        for start in 0..bytes.len() {
            for &len in &self.lens {
                if let Some(window) = bytes.get(start..start + len) {
                    if let Some(secret) = self.by_len[&len].get(window) {
                        found.push((secret, String::from_utf8_lossy(window).into_owned()));
                    }
                }
            }
        }
        found
    }
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new()
    }
}

/// What `login` may never receive, from the ground truth.
pub fn secrets_for(login: &str, truth: &Truth) -> Scanner {
    let mut s = Scanner::new();
    let p = &truth.participants;
    let restricted_reader = login == CLERK || login == CLERK_79 || login == ANALYST;
    if restricted_reader {
        for (i, x) in p.iter().enumerate() {
            s.add(&x.citizen_id, "raw citizen_id", None);
            s.add(&x.social_insurance_code, "raw social_insurance_code", None);
            s.add(&x.date_of_birth, "raw date_of_birth", None);
            s.add(&x.full_name, "full_name", Some(i));
            for (v, kind) in [
                (&x.phone, "phone"),
                (&x.email, "email"),
                (&x.address, "address"),
            ] {
                if let Some(v) = v {
                    s.add(v, kind, None);
                }
            }
        }
        s.add_all(&truth.employer_phones, "employer contact_phone");
        s.add_all(&truth.card_numbers, "health card_number");
        s.add_all(&truth.diagnosis_codes, "raw diagnosis_code");
        s.add_all(&truth.contribution_amounts, "raw contribution amount");
        s.add_all(&truth.claim_amounts, "raw benefit amount");
    }
    if login == CLERK || login == CLERK_79 {
        s.add_all(&truth.employer_names, "employer name (no access)");
        s.add_all(&truth.tax_codes, "employer tax_code (no access)");
    }
    if login == ANALYST {
        for x in p {
            s.add(&x.registered_on, "raw registered_on", None);
        }
        s.add_all(&truth.payment_dates, "raw paid_on");
        s.add_all(&truth.submission_dates, "raw submitted_on");
    }
    if login == OFFICER {
        // Its own province's names and contacts are stored values it may see.
        let own = province_of(OFFICER);
        for (i, x) in p.iter().enumerate() {
            s.add(&x.citizen_id, "raw citizen_id", None);
            s.add(&x.social_insurance_code, "raw social_insurance_code", None);
            s.add(&x.date_of_birth, "raw date_of_birth", None);
            s.add(&x.full_name, "full_name of another province", Some(i));
            for (v, kind) in [
                (&x.phone, "phone of another province"),
                (&x.email, "email of another province"),
                (&x.address, "address of another province"),
            ] {
                if let Some(v) = v {
                    s.add(v, kind, Some(i));
                }
            }
        }
        for (province, amount) in &truth.claim_amounts_by_province {
            if Some(province.as_str()) != own {
                s.add(amount, "benefit amount of another province", None);
            }
        }
        s.add_all(&truth.employer_phones, "employer contact_phone (no access)");
        s.add_all(&truth.employer_names, "employer name (no access)");
        s.add_all(&truth.tax_codes, "employer tax_code (no access)");
        s.add_all(&truth.card_numbers, "health card_number (no access)");
        s.add_all(&truth.diagnosis_codes, "raw diagnosis_code");
        s.add_all(
            &truth.contribution_amounts,
            "raw contribution amount (no access)",
        );
    }
    if login == INVESTIGATOR {
        s.add_all(&truth.diagnosis_codes, "raw diagnosis_code");
        s.add_all(
            &truth.contribution_amounts,
            "raw contribution amount (no access)",
        );
    }
    s
}

/// The province an account's row filter allows, if any.
pub fn province_of(login: &str) -> Option<&'static str> {
    match login {
        CLERK => Some("01"),
        CLERK_79 | ANALYST => Some("79"),
        OFFICER => Some("48"),
        _ => None,
    }
}

/// Leaks in `rows` for `login`: secret values (unless the client typed them
/// in `sql`, or a clerk pinned that person in its own province) and values
/// whose shape shows a mask was not applied. Messages name the kind of leak
/// and the column, never the value.
pub fn leaks(
    login: &str,
    sql: &str,
    rows: &[OutRow],
    scanner: &Scanner,
    truth: &Truth,
    check_province: bool,
) -> Vec<String> {
    let mut problems: Vec<String> = Vec::new();
    let mut note = |p: String| {
        if !problems.contains(&p) {
            problems.push(p);
        }
    };
    let pinned = |owner: usize| {
        let person = &truth.participants[owner];
        let own = Some(person.province_code.as_str()) == province_of(login);
        let clerk_pin = (login == CLERK || login == CLERK_79)
            && (sql.contains(&person.citizen_id) || sql.contains(&person.social_insurance_code));
        own && (clerk_pin || login == OFFICER)
    };
    for row in rows {
        for (column, value) in row.columns.iter().zip(&row.values) {
            let Some(value) = value else { continue };
            for (secret, matched) in scanner.scan(value) {
                if sql.contains(&matched) || secret.owner.is_some_and(pinned) {
                    continue;
                }
                note(format!("{} in column {column:?}", secret.kind));
            }
            if let Some(problem) = shape_problem(login, column, value, check_province) {
                note(format!("{problem} in column {column:?}"));
            }
        }
    }
    problems
}

fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

fn masked_with_last(v: &str, stars: usize, last: usize) -> bool {
    let v = v.trim_end();
    v.len() == stars + last
        && v[..stars].bytes().all(|c| c == b'*')
        && v[stars..].bytes().all(|c| c.is_ascii_digit())
}

/// A mask-shape violation of `value` in a column named like a protected one.
fn shape_problem(login: &str, column: &str, value: &str, check_province: bool) -> Option<String> {
    // The officer's identifier and birth-date masks are the clerk's.
    let clerk = login == CLERK || login == CLERK_79 || login == OFFICER;
    match (column, login) {
        ("citizen_id", _) if clerk && !masked_with_last(value, 8, 4) => {
            Some("citizen_id not masked as ********NNNN".into())
        }
        ("social_insurance_code", _) if clerk && !masked_with_last(value, 6, 4) => {
            Some("social_insurance_code not masked as ******NNNN".into())
        }
        ("date_of_birth", _) if clerk && !(is_date(value) && value.ends_with("-01-01")) => {
            Some("date_of_birth not reduced to its year".into())
        }
        ("citizen_id" | "social_insurance_code", ANALYST) => {
            Some("identifier not nulled for the analyst".into())
        }
        ("full_name", ANALYST)
            if !value
                .split(' ')
                .all(|w| w.ends_with('.') && w.chars().count() == 2) =>
        {
            Some("full_name not reduced to initials".into())
        }
        ("date_of_birth", ANALYST) if is_date(value) => {
            Some("date_of_birth not reduced to an age band".into())
        }
        ("registered_on" | "paid_on" | "submitted_on", ANALYST)
            if is_date(value) && !value.ends_with("-01") =>
        {
            Some("date not reduced to its month".into())
        }
        ("status", ANALYST) if value == "draft" => {
            Some("draft claim outside the row filter".into())
        }
        ("amount" | "salary_base", ANALYST) if !value.ends_with("00000.00") => {
            Some("amount not rounded to 100000".into())
        }
        ("diagnosis_code", ANALYST | INVESTIGATOR | OFFICER)
            if !(value.chars().count() > 3 && value.chars().skip(3).all(|c| c == '*')) =>
        {
            Some("diagnosis_code not masked after 3 characters".into())
        }
        ("province_code", _) if check_province => match province_of(login) {
            Some(own) if value != own => Some("row outside the account's province".into()),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a set of text values from a superuser query contains `v`.
pub fn set_of(values: Vec<Option<String>>) -> HashSet<String> {
    values.into_iter().flatten().collect()
}
