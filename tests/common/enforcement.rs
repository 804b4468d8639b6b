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

pub use register::{ANALYST, AUDITOR, CLERK, CLERK_79, INVESTIGATOR, PASSWORD};

/// Participants the tests name: row numbers of the generated register.
pub const P01: u32 = 10;
pub const P01_B: u32 = 20;
pub const P01_C: u32 = 30;
pub const P79: u32 = 14;
pub const P48: u32 = 17;

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

fn be<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes
        .get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; N])
}

/// PostgreSQL's text form of a binary value, for the types tests meet;
/// anything else is shown as (lossy) UTF-8, which keeps embedded text visible
/// to the leak scanner.
pub fn decode(ty: &Type, bytes: &[u8]) -> String {
    match *ty {
        Type::BOOL => if bytes.first() == Some(&0) { "f" } else { "t" }.to_string(),
        Type::INT2 => i16::from_be_bytes(be(bytes, 0)).to_string(),
        Type::INT4 => i32::from_be_bytes(be(bytes, 0)).to_string(),
        Type::INT8 => i64::from_be_bytes(be(bytes, 0)).to_string(),
        Type::OID | Type::XID | Type::CID | Type::REGPROC | Type::REGCLASS | Type::REGTYPE => {
            u32::from_be_bytes(be(bytes, 0)).to_string()
        }
        Type::FLOAT4 => f32::from_be_bytes(be(bytes, 0)).to_string(),
        Type::FLOAT8 => f64::from_be_bytes(be(bytes, 0)).to_string(),
        Type::NUMERIC => numeric(bytes),
        Type::DATE => date(i64::from(i32::from_be_bytes(be(bytes, 0)))),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => timestamp(i64::from_be_bytes(be(bytes, 0))),
        Type::JSONB => String::from_utf8_lossy(bytes.get(1..).unwrap_or_default()).into_owned(),
        Type::BYTEA => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("\\x{hex}")
        }
        Type::RECORD => record(bytes),
        _ => match ty.kind() {
            Kind::Array(_) => array(bytes),
            Kind::Composite(_) => record(bytes),
            _ => String::from_utf8_lossy(bytes).into_owned(),
        },
    }
}

fn by_oid(oid: u32, bytes: &[u8]) -> String {
    match Type::from_oid(oid) {
        Some(ty) => decode(&ty, bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// `(a,b,…)`; fields unquoted.
fn record(bytes: &[u8]) -> String {
    let count = i32::from_be_bytes(be(bytes, 0)).max(0) as usize;
    let mut at = 4;
    let mut fields = Vec::with_capacity(count);
    for _ in 0..count {
        let oid = u32::from_be_bytes(be(bytes, at));
        let len = i32::from_be_bytes(be(bytes, at + 4));
        at += 8;
        if len < 0 {
            fields.push(String::new());
        } else {
            let end = (at + len as usize).min(bytes.len());
            fields.push(by_oid(oid, &bytes[at.min(end)..end]));
            at = end;
        }
    }
    format!("({})", fields.join(","))
}

/// `{a,b,…}`, flattened over all dimensions.
fn array(bytes: &[u8]) -> String {
    let dims = i32::from_be_bytes(be(bytes, 0)).max(0) as usize;
    let oid = u32::from_be_bytes(be(bytes, 8));
    let mut count = if dims == 0 { 0 } else { 1 };
    for d in 0..dims {
        count *= i32::from_be_bytes(be(bytes, 12 + d * 8)).max(0) as usize;
    }
    let mut at = 12 + dims * 8;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let len = i32::from_be_bytes(be(bytes, at));
        at += 4;
        if len < 0 {
            items.push("NULL".to_string());
        } else {
            let end = (at + len as usize).min(bytes.len());
            items.push(by_oid(oid, &bytes[at.min(end)..end]));
            at = end;
        }
    }
    format!("{{{}}}", items.join(","))
}

fn numeric(bytes: &[u8]) -> String {
    let ndigits = i16::from_be_bytes(be(bytes, 0)).max(0) as usize;
    let weight = i16::from_be_bytes(be(bytes, 2)) as i64;
    let sign = u16::from_be_bytes(be(bytes, 4));
    let dscale = i16::from_be_bytes(be(bytes, 6)).max(0) as usize;
    match sign {
        0xC000 => return "NaN".to_string(),
        0xD000 => return "Infinity".to_string(),
        0xF000 => return "-Infinity".to_string(),
        _ => {}
    }
    let digits: Vec<i64> = (0..ndigits)
        .map(|i| i64::from(i16::from_be_bytes(be(bytes, 8 + i * 2))))
        .collect();
    let digit = |k: i64| -> i64 {
        if k < 0 {
            0
        } else {
            digits.get(k as usize).copied().unwrap_or(0)
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                s.push_str(&digit(k).to_string());
            } else {
                s.push_str(&format!("{:04}", digit(k)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut k = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(k)));
            k += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    s
}

/// Days since 2000-01-01 as `YYYY-MM-DD` (proleptic Gregorian).
fn date(days: i64) -> String {
    if days == i64::from(i32::MAX) {
        return "infinity".to_string();
    }
    if days == i64::from(i32::MIN) {
        return "-infinity".to_string();
    }
    let (y, m, d) = civil(days + 10_957);
    format!("{y:04}-{m:02}-{d:02}")
}

fn timestamp(micros: i64) -> String {
    let day = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let (h, min) = (rest / 3_600_000_000, rest / 60_000_000 % 60);
    let (sec, frac) = (rest / 1_000_000 % 60, rest % 1_000_000);
    let mut s = format!("{} {h:02}:{min:02}:{sec:02}", date(day));
    if frac != 0 {
        s.push_str(format!(".{frac:06}").trim_end_matches('0'));
    }
    s
}

/// Civil date from days since 1970-01-01.
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

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
        (login == CLERK || login == CLERK_79)
            && Some(person.province_code.as_str()) == province_of(login)
            && (sql.contains(&person.citizen_id) || sql.contains(&person.social_insurance_code))
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
    let clerk = login == CLERK || login == CLERK_79;
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
        ("diagnosis_code", ANALYST | INVESTIGATOR)
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

#[cfg(test)]
mod decode_tests {
    use super::*;

    #[test]
    fn dates_and_numerics_decode_like_postgres_prints_them() {
        assert_eq!(date(0), "2000-01-01");
        assert_eq!(date(-1), "1999-12-31");
        assert_eq!(date(8_842), "2024-03-17");
        // 1234567.89: weight 1, digits [123, 4567, 8900], dscale 2
        let mut b = Vec::new();
        for v in [3i16, 1, 0, 2, 123, 4567, 8900] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(numeric(&b), "1234567.89");
        // 0.05: weight -1, digits [500], dscale 2
        let mut b = Vec::new();
        for v in [1i16, -1, 0, 2, 500] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(numeric(&b), "0.05");
    }
}
