//! The bypass corpus harness: cases (statements, an expectation, content
//! checks, side-effect checks), run against the real proxy in front of the
//! register under the example policy, judged against ground truth read
//! directly from the cluster as superuser (see `enforcement`).

#![allow(dead_code)]

use std::collections::HashSet;

use futures_util::StreamExt;
use maskgate_testkit::{register, TestProxy};
use tokio_postgres::Client;

use crate::enforcement::*;
use crate::wire::Wire;

/// A statement of a case: plain, or read through a portal `n` rows per
/// Execute (the simple protocol runs it plainly).
#[derive(Clone, Copy)]
pub enum Step {
    Sql(&'static str),
    Portal(&'static str, i32),
}

#[derive(Clone, Copy)]
pub enum Expect {
    /// An error with one of these SQLSTATEs.
    Denied(&'static [&'static str]),
    /// Either a denial (42501, 0A000, 42601, 54000 or the listed codes), or
    /// rows that pass every check.
    Harmless(&'static [&'static str]),
    /// Rows that pass every check; a denial is a failure.
    Rows,
    /// At most `n` rows, then an error 54000 whose message states `n`.
    Capped(usize),
    /// [`Expect::Capped`], or a denial (42501 / 0A000).
    CappedOrDenied(usize),
}

#[derive(Clone, Copy)]
pub enum Check {
    /// Every value of the column is in the superuser query's first column.
    ColumnIn(&'static str, &'static str),
    /// The rows equal the superuser query's rows (as a multiset).
    Same(&'static str),
    /// The rows equal the superuser query's rows, in order.
    SameOrdered(&'static str),
    /// The rows differ from the superuser query's rows (an ordering by raw values).
    NotSameOrdered(&'static str),
    /// Exactly this many rows.
    RowCount(usize),
    /// Values of the superuser query's first column are secrets for this case.
    Secrets(&'static str, &'static str),
    /// `province_code` may be any province (e.g. an employer's).
    AnyProvince,
}

#[derive(Clone, Copy)]
pub enum After {
    /// `SHOW name` on the same connection must not print this value.
    SettingIsNot(&'static str, &'static str),
    /// The superuser query must print exactly this.
    Superuser(&'static str, &'static str),
}

#[derive(Clone)]
pub struct Case {
    pub name: &'static str,
    pub login: &'static str,
    pub steps: Vec<Step>,
    pub expect: Expect,
    pub checks: Vec<Check>,
    pub after: Vec<After>,
    /// Several statements in one string: the extended protocol may also answer 42601.
    pub multi: bool,
}

pub fn case(name: &'static str, login: &'static str, sql: &'static str) -> Case {
    Case {
        name,
        login,
        steps: vec![Step::Sql(sql)],
        expect: Expect::Harmless(&[]),
        checks: Vec::new(),
        after: Vec::new(),
        multi: false,
    }
}

pub fn steps(name: &'static str, login: &'static str, steps: &[Step]) -> Case {
    Case {
        steps: steps.to_vec(),
        ..case(name, login, "")
    }
}

impl Case {
    pub fn denied(mut self, codes: &'static [&'static str]) -> Case {
        self.expect = Expect::Denied(codes);
        self
    }
    pub fn harmless(mut self, extra: &'static [&'static str]) -> Case {
        self.expect = Expect::Harmless(extra);
        self
    }
    pub fn rows(mut self) -> Case {
        self.expect = Expect::Rows;
        self
    }
    pub fn capped(mut self, n: usize) -> Case {
        self.expect = Expect::Capped(n);
        self
    }
    pub fn capped_or_denied(mut self, n: usize) -> Case {
        self.expect = Expect::CappedOrDenied(n);
        self
    }
    pub fn check(mut self, check: Check) -> Case {
        self.checks.push(check);
        self
    }
    pub fn after(mut self, after: After) -> Case {
        self.after.push(after);
        self
    }
    pub fn multi(mut self) -> Case {
        self.multi = true;
        self
    }
}

pub const A: &str = ANALYST;
pub const C: &str = CLERK;
pub const C79: &str = CLERK_79;
pub const I: &str = INVESTIGATOR;
pub const O: &str = OFFICER;

/// A denial: `42501`, or `42P01` for a relation outside the account's policy
/// (answered like one that does not exist, before anything runs).
pub const PRIV: &[&str] = &["42501", "42P01"];
pub const DENY: &[&str] = &["42501", "0A000", "42P01"];
/// Statements maskgate cannot parse are refused like any other it cannot analyze.
pub const UNPARSABLE: &[&str] = &["42501"];
pub const DENY_OR_SYNTAX: &[&str] = &["42501", "0A000", "42601", "42P01"];

pub const IDS_79: &str = "SELECT id FROM participant WHERE province_code = '79'";
pub const COUNT_79: &str = "SELECT count(*) FROM participant WHERE province_code = '79'";
pub const CLAIMS_79: &str =
    "SELECT id FROM benefit_claim WHERE province_code = '79' AND status <> 'draft'";
pub const CONTRIBUTIONS_79: &str = "SELECT id FROM contribution WHERE province_code = '79'";
pub const ZERO: &str = "SELECT 0::bigint";

/// Values a case substitutes into its statements and truth queries.
pub struct Placeholders(pub Vec<(&'static str, String)>);

impl Placeholders {
    pub async fn new(su: &tokio_postgres::Client, truth: &Truth) -> Placeholders {
        let diag = column(
            su,
            "SELECT diagnosis_code FROM benefit_claim WHERE diagnosis_code IS NOT NULL ORDER BY id LIMIT 1",
        )
        .await
        .remove(0)
        .expect("a diagnosis code");
        Placeholders(vec![
            (
                "{SIC_OF_CID01}",
                truth.participant(P01).social_insurance_code.clone(),
            ),
            ("{CID01B}", truth.participant(P01_B).citizen_id.clone()),
            ("{CID01}", truth.participant(P01).citizen_id.clone()),
            (
                "{SIC01}",
                truth.participant(P01_C).social_insurance_code.clone(),
            ),
            ("{CID79}", truth.participant(P79).citizen_id.clone()),
            ("{NAME79}", truth.participant(P79).full_name.clone()),
            ("{NAME01}", truth.participant(P01).full_name.clone()),
            ("{DIAG}", diag),
        ])
    }

    pub fn fill(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_string(), |t, (k, v)| t.replace(k, v))
    }
}

/// How a case's statements reach the proxy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Protocol {
    /// Query messages, text results.
    Simple,
    /// Parse/Bind/Execute through the driver, binary results.
    Extended,
    /// Parse/Bind/Execute by hand, text results.
    ExtendedText,
    /// `PREPARE … AS` and `EXECUTE` in Query messages, for statements that
    /// can be prepared; others are sent as they are.
    Prepare,
}

impl Protocol {
    /// A lower-case name, for objects a case names per protocol.
    pub fn tag(self) -> String {
        format!("{self:?}").to_ascii_lowercase()
    }

    /// `text` with [`PROTOCOL`] and [`PROTOCOL_NUMBER`] replaced.
    pub fn fill(self, text: &str) -> String {
        let number = ALL_PROTOCOLS.iter().position(|p| *p == self).unwrap_or(0);
        text.replace(PROTOCOL, &self.tag())
            .replace(PROTOCOL_NUMBER, &number.to_string())
    }
}

/// Replaced by [`Protocol::tag`] in a case's statements and side-effect
/// checks, so that each protocol's run names its own objects.
pub const PROTOCOL: &str = "{protocol}";
/// Replaced by the protocol's position in [`ALL_PROTOCOLS`] (a digit).
pub const PROTOCOL_NUMBER: &str = "{protocol_number}";

pub const BOTH: &[Protocol] = &[Protocol::Simple, Protocol::Extended];
pub const ALL_PROTOCOLS: &[Protocol] = &[
    Protocol::Simple,
    Protocol::Extended,
    Protocol::ExtendedText,
    Protocol::Prepare,
];

pub struct Env {
    pub proxy: TestProxy,
    pub su: Client,
    pub truth: Truth,
    pub scanners: Vec<(&'static str, Scanner)>,
    pub fill: Placeholders,
}

impl Env {
    /// The shared register, a proxy under the example policy without rolling
    /// quotas (a corpus runs more statements than a person would; caps stay),
    /// and the ground truth.
    pub async fn start() -> Env {
        let cluster = cluster();
        let su = superuser(cluster).await;
        let truth = Truth::fetch(&su).await;
        let options = register::proxy_options(
            &register::accounts(),
            register::without_quotas(register::example_policy_files().unwrap()),
        );
        let proxy = TestProxy::start(cluster, options)
            .await
            .expect("proxy starts");
        let scanners = RESTRICTED
            .into_iter()
            .map(|login| (login, secrets_for(login, &truth)))
            .collect();
        let fill = Placeholders::new(&su, &truth).await;
        Env {
            proxy,
            su,
            truth,
            scanners,
            fill,
        }
    }
}

enum Conn {
    Driver(Client),
    Wire(Wire),
}

impl Conn {
    async fn simple(&mut self, sql: &str) -> Outcome {
        match self {
            Conn::Driver(client) => simple(client, sql).await,
            Conn::Wire(wire) => wire.simple(sql).await,
        }
    }
}

/// Whether PostgreSQL's PREPARE takes the statement.
fn preparable(sql: &str) -> bool {
    let first = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "SELECT" | "WITH" | "VALUES" | "TABLE" | "INSERT" | "UPDATE" | "DELETE"
    )
}

/// `sql` through SQL-level `PREPARE` and `EXECUTE` (simple protocol).
pub async fn prepared(client: &Client, sql: &str, n: usize) -> Outcome {
    if !preparable(sql) {
        return simple(client, sql).await;
    }
    let name = format!("mg_case_{n}");
    let mut out = simple(client, &format!("PREPARE {name} AS {sql}")).await;
    if out.error.is_none() {
        out.merge(simple(client, &format!("EXECUTE {name}")).await);
    }
    if out.error.is_none() {
        out.merge(simple(client, &format!("DEALLOCATE {name}")).await);
    }
    out
}

/// Runs every case in each of `protocols`, four at a time, prints a summary
/// line per run, and fails with every failure together.
pub async fn run_corpus(env: &Env, cases: &[Case], protocols: &[Protocol]) {
    let names: HashSet<&str> = cases.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    let runs: Vec<(usize, usize)> = (0..cases.len())
        .flat_map(|i| (0..protocols.len()).map(move |p| (i, p)))
        .collect();
    let mut results: Vec<(usize, usize, (Vec<String>, String))> =
        futures_util::stream::iter(runs.into_iter().map(|(i, p)| {
            let case = &cases[i];
            async move { (i, p, run(env, case, protocols[p]).await) }
        }))
        .buffer_unordered(4)
        .collect()
        .await;
    results.sort_by_key(|(i, p, _)| (*i, *p));
    // What each case got back, for `--nocapture` readers judging the corpus.
    for (i, p, (_, summary)) in &results {
        println!("{:<40} {:<12?} {summary}", cases[*i].name, protocols[*p]);
    }
    let failures: Vec<String> = results.into_iter().flat_map(|(_, _, (f, _))| f).collect();
    let failed_cases: HashSet<&str> = failures
        .iter()
        .filter_map(|f| f.split(' ').next())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed ({} failure(s) over {} protocol(s)):\n{}",
        failed_cases.len(),
        cases.len(),
        failures.len(),
        protocols.len(),
        failures.join("\n")
    );
}

/// A string that lives for the rest of the test (generated case names and statements).
pub fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

pub async fn run(env: &Env, case: &Case, protocol: Protocol) -> (Vec<String>, String) {
    let tag = format!("{} [{protocol:?}, {}]", case.name, case.login);
    let login = match protocol {
        Protocol::ExtendedText => Wire::login(&env.proxy, case.login).await.map(Conn::Wire),
        _ => env
            .proxy
            .connect(case.login, PASSWORD)
            .await
            .map(Conn::Driver)
            .map_err(|e| Failure::from_error(&e).message),
    };
    let mut conn = match login {
        Ok(conn) => conn,
        Err(e) => {
            return (
                vec![format!("{tag}: login failed: {e}")],
                "login failed".into(),
            )
        }
    };
    let mut outcome = Outcome::default();
    let mut all_sql = String::new();
    for (n, step) in case.steps.iter().enumerate() {
        let (Step::Sql(sql) | Step::Portal(sql, _)) = step;
        let sql = protocol.fill(&env.fill.fill(sql));
        all_sql.push_str(&sql);
        let result = match (&mut conn, step, protocol) {
            (Conn::Wire(wire), _, _) => wire.extended_text(&sql).await,
            (Conn::Driver(client), _, Protocol::Simple) => simple(client, &sql).await,
            (Conn::Driver(client), Step::Sql(_), Protocol::Extended) => {
                extended(client, &sql).await
            }
            (Conn::Driver(client), Step::Portal(_, rows), Protocol::Extended) => {
                portal(client, &sql, *rows).await
            }
            (Conn::Driver(client), _, _) => prepared(client, &sql, n).await,
        };
        outcome.merge(result);
        if outcome.error.is_some() {
            break;
        }
    }

    let mut failures = Vec::new();
    let error = outcome.error.clone();
    let summary = match &error {
        Some(e) => format!("{} after {} row(s)", e.code, outcome.rows.len()),
        None => format!("ok, {} row(s)", outcome.rows.len()),
    };
    let describe = |e: &Failure| format!("{} {:?}", e.code, e.message);
    let denial_ok = |codes: &[&str], e: &Failure| {
        codes.contains(&e.code.as_str())
            || (case.multi
                && matches!(protocol, Protocol::Extended | Protocol::ExtendedText)
                && e.code == "42601")
    };
    let cap_error_ok =
        |n: usize, e: &Failure| e.code == "54000" && e.message.contains(&n.to_string());
    let mut content_checks = true;
    match case.expect {
        Expect::Denied(codes) => match &error {
            Some(e) if denial_ok(codes, e) => {}
            Some(e) => failures.push(format!(
                "{tag}: expected a denial {codes:?}, got {}",
                describe(e)
            )),
            None => failures.push(format!(
                "{tag}: expected a denial {codes:?}, but it ran and returned {} row(s)",
                outcome.rows.len()
            )),
        },
        Expect::Harmless(extra) => {
            if let Some(e) = &error {
                content_checks = false;
                let acceptable = DENY_OR_SYNTAX.contains(&e.code.as_str())
                    || e.code == "54000"
                    || extra.contains(&e.code.as_str())
                    || denial_ok(&[], e);
                if !acceptable {
                    failures.push(format!(
                        "{tag}: neither a denial nor a clean result: {} (an error raised by evaluating the statement can be an oracle)",
                        describe(e)
                    ));
                }
            }
        }
        Expect::Rows => {
            if let Some(e) = &error {
                content_checks = false;
                failures.push(format!("{tag}: expected rows, got {}", describe(e)));
            }
        }
        Expect::Capped(n) | Expect::CappedOrDenied(n) => {
            content_checks = false;
            if outcome.rows.len() > n {
                failures.push(format!(
                    "{tag}: received {} rows, more than the cap of {n}",
                    outcome.rows.len()
                ));
            }
            let denied_ok = matches!(case.expect, Expect::CappedOrDenied(_));
            match &error {
                Some(e) if cap_error_ok(n, e) => {}
                Some(e) if denied_ok && DENY.contains(&e.code.as_str()) => {}
                Some(e) => failures.push(format!(
                    "{tag}: expected the row-cap error 54000 naming {n}, got {}",
                    describe(e)
                )),
                None => failures.push(format!(
                    "{tag}: expected the row-cap error 54000 naming {n}, but the statement completed with {} rows",
                    outcome.rows.len()
                )),
            }
        }
    }

    let check_province = !case.checks.iter().any(|c| matches!(c, Check::AnyProvince));
    let scanner = &env
        .scanners
        .iter()
        .find(|(l, _)| *l == case.login)
        .expect("a scanner per login")
        .1;
    for leak in leaks(
        case.login,
        &all_sql,
        &outcome.rows,
        scanner,
        &env.truth,
        check_province,
    ) {
        failures.push(format!("{tag}: LEAK: {leak}"));
    }

    let received: Vec<Vec<Option<String>>> =
        outcome.rows.iter().map(|r| r.values.clone()).collect();
    for check in &case.checks {
        match *check {
            Check::ColumnIn(column_name, sql) => {
                let allowed = set_of(super_column(env, sql).await);
                let outside = outcome
                    .rows
                    .iter()
                    .filter_map(|r| r.get(column_name))
                    .filter(|v| !allowed.contains(*v))
                    .count();
                if outside > 0 {
                    failures.push(format!(
                        "{tag}: LEAK: {outside} row(s) whose {column_name} is outside the account's scope"
                    ));
                }
            }
            Check::Same(sql) if content_checks && error.is_none() => {
                let mut want = rows_text(&env.su, &env.fill.fill(sql)).await;
                let mut got = received.clone();
                want.sort();
                got.sort();
                if want != got {
                    failures.push(format!(
                        "{tag}: result differs from what the account may see ({} row(s) vs {} expected)",
                        got.len(),
                        want.len()
                    ));
                }
            }
            Check::SameOrdered(sql) if content_checks && error.is_none() => {
                let want = rows_text(&env.su, &env.fill.fill(sql)).await;
                if want != received {
                    failures.push(format!(
                        "{tag}: order differs from ordering by masked values (raw values may have been ordered on)"
                    ));
                }
            }
            Check::NotSameOrdered(sql) if content_checks && error.is_none() => {
                let raw_order = rows_text(&env.su, &env.fill.fill(sql)).await;
                if raw_order == received {
                    failures.push(format!(
                        "{tag}: LEAK: rows come in the order of the raw values"
                    ));
                }
            }
            Check::RowCount(n) if content_checks && error.is_none() && outcome.rows.len() != n => {
                failures.push(format!(
                    "{tag}: expected {n} row(s), got {}",
                    outcome.rows.len()
                ));
            }
            Check::Secrets(sql, kind) => {
                let mut extra = Scanner::new();
                for v in super_column(env, sql).await.into_iter().flatten() {
                    extra.add(&v, kind, None);
                }
                let hits = outcome
                    .rows
                    .iter()
                    .flat_map(|r| r.values.iter().flatten())
                    .filter(|v| !extra.scan(v).is_empty())
                    .count();
                if hits > 0 {
                    failures.push(format!("{tag}: LEAK: {kind} in {hits} value(s)"));
                }
            }
            _ => {}
        }
    }

    if !case.after.is_empty() {
        let _ = conn.simple("ROLLBACK").await;
    }
    for after in &case.after {
        match *after {
            After::SettingIsNot(name, forbidden) => {
                let shown = conn.simple(&format!("SHOW {name}")).await;
                match (&shown.error, shown.rows.first()) {
                    (None, Some(row)) if row.values[0].as_deref() != Some(forbidden) => {}
                    (None, Some(_)) => failures.push(format!(
                        "{tag}: SIDE EFFECT: {name} was set by a string that was denied"
                    )),
                    (Some(e), _) => failures.push(format!(
                        "{tag}: could not verify {name} afterwards: {}",
                        describe(e)
                    )),
                    (None, None) => failures.push(format!("{tag}: SHOW {name} returned no row")),
                }
            }
            After::Superuser(sql, expected) => {
                let sql = protocol.fill(sql);
                let got = super_column(env, &sql).await;
                if got.first().and_then(|v| v.as_deref()) != Some(expected) {
                    failures.push(format!(
                        "{tag}: SIDE EFFECT: `{sql}` gives {got:?}, expected {expected}"
                    ));
                }
            }
        }
    }
    (failures, summary)
}

pub async fn super_column(env: &Env, sql: &str) -> Vec<Option<String>> {
    column(&env.su, &env.fill.fill(sql)).await
}
