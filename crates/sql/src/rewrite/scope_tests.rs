//! Differential test of name binding against PostgreSQL itself.
//!
//! Statements are generated over tables with overlapping column names (joins, ON
//! clauses, LATERAL and plain derived tables, correlated EXISTS, CTEs that shadow
//! tables, UPDATE … FROM and DELETE … USING). Every column reference is a probe. In the
//! text PostgreSQL runs, a probe is `mg_probe(<id>, <reference>)`, a function that
//! raises a notice with the value it got; every row of every table holds its own
//! `relation.column` label, so the notice says where PostgreSQL bound the name, and a
//! binding error names the probe by its position. maskgate analyzes the same statement
//! with probes written `(<reference> IS DISTINCT FROM 'probe<id>')` and records, per
//! reference, the set of bindings its scope model allows. PostgreSQL's answer outside
//! that set fails. Then the text maskgate would send (for an account that sees every
//! column) gets its probes back and runs too: each must see the same value as in the
//! statement as written, so the masking subqueries change no binding.
//!
//! `MASKGATE_SCOPE_CASES` sets the number of statements (2000 by default, a few
//! seconds); `MASKGATE_SCOPE_DEBUG` prints those that failed for a reason other than a
//! binding error.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use maskgate_policy::{Policy, PolicySettings};
use sqlparser::tokenizer::Location;
use tokio_postgres::{AsyncMessage, NoTls};

use super::scope::{Has, ItemRef};
use super::{Resolved, Rewriter};
use crate::mask::MaskRenderer;
use crate::Enforcer;

/// Where a reference may bind: an item's `label.column`, or PostgreSQL's refusal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Bound {
    Column(String),
    Error,
}

/// Per reference (line, column of its first part): where maskgate lets it bind.
type Recorded = BTreeMap<(u64, u64), BTreeSet<Bound>>;

thread_local! {
    static RECORDED: RefCell<Option<Recorded>> = const { RefCell::new(None) };
}

/// Called by the rewrite for every column reference while a test records.
pub(super) fn record(rewriter: &Rewriter<'_>, parts: &[String], at: Location) {
    RECORDED.with(|recorded| {
        if let Some(map) = recorded.borrow_mut().as_mut() {
            map.insert((at.line, at.column), possible(rewriter, parts));
        }
    });
}

fn label(rewriter: &Rewriter<'_>, at: ItemRef, column: &str) -> Bound {
    let item = rewriter.scopes.item(at);
    let name = match (&item.protected, &item.resolved) {
        (Some(table), _) => table.name.clone(),
        (None, Some(Resolved::Cte(_))) => format!("cte_{}", item.name),
        _ => item.name.clone(),
    };
    Bound::Column(format!("{name}.{column}"))
}

/// Every binding maskgate's model allows for a reference.
fn possible(rewriter: &Rewriter<'_>, parts: &[String]) -> BTreeSet<Bound> {
    let scopes = &rewriter.scopes;
    let mut out = BTreeSet::new();
    match parts {
        [column] => {
            let lookup = scopes.column(column);
            if lookup.refused || lookup.found.len() != 1 || !lookup.tied.is_empty() {
                out.insert(Bound::Error);
            }
            if lookup.found.len() == 1 {
                out.insert(label(rewriter, lookup.found[0], column));
            }
            for at in &lookup.maybe {
                out.insert(label(rewriter, *at, column));
            }
        }
        [qualifier, column] => match scopes.relation(qualifier, None).as_slice() {
            [at] => {
                if scopes.refused(*at) {
                    out.insert(Bound::Error);
                }
                match scopes.item(*at).columns.has(column) {
                    Has::Yes => {
                        out.insert(label(rewriter, *at, column));
                    }
                    Has::Maybe => {
                        out.insert(label(rewriter, *at, column));
                        out.insert(Bound::Error);
                    }
                    Has::No => {
                        out.insert(Bound::Error);
                    }
                }
            }
            _ => {
                out.insert(Bound::Error);
            }
        },
        _ => {
            out.insert(Bound::Error);
        }
    }
    out
}

// ------------------------------------------------------------------ the schema

/// Tables and their columns; every one holds one row of labels.
const TABLES: &[(&str, &[&str])] = &[
    ("t1", &["a", "b", "e"]),
    ("t2", &["a", "c", "f"]),
    ("t3", &["b", "d", "g"]),
    ("t4", &["c", "d", "h"]),
];
const COLUMNS: &[&str] = &["a", "b", "c", "d", "e", "f", "g", "h"];

/// Two accounts that may read, update and delete everything: `all_1` sees every column
/// as stored, `masked_1` sees `t1.e` only masked.
fn policy_text() -> String {
    let mut text = String::new();
    for (table, columns) in TABLES {
        text.push_str(&format!("[tables.\"public.{table}\".columns]\n"));
        for column in *columns {
            text.push_str(&format!("{column} = {{ type = \"text\" }}\n"));
        }
    }
    for role in ["all", "masked"] {
        text.push_str(&format!(
            "[roles.{role}]\nstatements = [\"read\", \"insert\", \"update\", \"delete\"]\n"
        ));
        for (table, columns) in TABLES {
            let rules: Vec<String> = columns
                .iter()
                .map(|c| match (role, *table, *c) {
                    ("masked", "t1", "e") => format!("{c} = {{ mask = \"null\" }}"),
                    _ => format!("{c} = \"allow\""),
                })
                .collect();
            text.push_str(&format!(
                "[roles.{role}.tables.\"public.{table}\"]\ncolumns = {{ {} }}\n",
                rules.join(", ")
            ));
        }
        text.push_str(&format!(
            "[accounts.{role}_1]\nname = \"Differential\"\nroles = [\"{role}\"]\nverifier = \
             \"SCRAM-SHA-256$4096:ENqrke4VetwF7BUAvmg9hA==$XT4ez9bx3FeFEtOaDwU7HOOm+wg09SgHW82LS6I/anw=:tPtRELbqA9kZfdWwLP5IzHSqYt7an3afp04AnIrmGCk=\"\n"
        ));
    }
    text
}

fn schema_sql() -> String {
    let mut sql = String::new();
    for (table, columns) in TABLES {
        let defs: Vec<String> = columns.iter().map(|c| format!("{c} text")).collect();
        let values: Vec<String> = columns.iter().map(|c| format!("'{table}.{c}'")).collect();
        sql.push_str(&format!(
            "CREATE TABLE {table} ({}); INSERT INTO {table} VALUES ({});\n",
            defs.join(", "),
            values.join(", ")
        ));
    }
    sql.push_str(
        "CREATE FUNCTION mg_probe(k int, v text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS \
         $$ BEGIN RAISE NOTICE 'probe % %', k, v; RETURN true; END $$;",
    );
    sql
}

// ------------------------------------------------------------------ the generator

/// A tiny deterministic generator (xorshift), so a failure names its seed.
struct Gen {
    state: u64,
    tables: Vec<&'static str>,
    derived: usize,
    ctes: Vec<String>,
    /// Names given to FROM items so far (visible or not from where a probe is).
    defined: Vec<String>,
    /// Columns of the items defined so far.
    seen: Vec<&'static str>,
    /// Both texts and the probes: (id, offset in PostgreSQL's text, offset in ours, length).
    pg: String,
    ours: String,
    probes: Vec<(usize, usize, usize, usize)>,
    /// The probe in RETURNING, where a masked column is allowed (and shown masked).
    returning_probe: Option<usize>,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            tables: TABLES.iter().map(|(t, _)| *t).collect(),
            derived: 0,
            ctes: Vec::new(),
            defined: Vec::new(),
            seen: Vec::new(),
            pg: String::new(),
            ours: String::new(),
            probes: Vec::new(),
            returning_probe: None,
        }
    }

    fn next(&mut self, n: usize) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.next(100) < percent
    }

    fn push(&mut self, text: &str) {
        self.pg.push_str(text);
        self.ours.push_str(text);
    }

    /// A reference: a column, sometimes qualified with a name that may or may not be
    /// visible from here.
    fn probe(&mut self) {
        let column = if !self.seen.is_empty() && self.chance(75) {
            let index = self.next(self.seen.len());
            self.seen[index]
        } else {
            COLUMNS[self.next(COLUMNS.len())]
        };
        let reference = if self.chance(30) {
            let names = [
                "t1", "t2", "t3", "t4", "x2", "x3", "d1", "d2", "d3", "u", "cte_a",
            ];
            let qualifier = if !self.defined.is_empty() && self.chance(80) {
                let index = self.next(self.defined.len());
                self.defined[index].clone()
            } else {
                names[self.next(names.len())].to_owned()
            };
            format!("{qualifier}.{column}")
        } else {
            column.to_owned()
        };
        let id = self.probes.len();
        self.pg.push_str(&format!("mg_probe({id}, "));
        self.ours.push('(');
        let at = (id, self.pg.len(), self.ours.len(), reference.len());
        self.probes.push(at);
        self.pg.push_str(&reference);
        self.ours.push_str(&reference);
        self.pg.push(')');
        self.ours
            .push_str(&format!(" IS DISTINCT FROM 'probe{id}')"));
    }

    fn conditions(&mut self, depth: usize) {
        self.probe();
        if self.chance(40) {
            self.push(" AND ");
            self.probe();
        }
        if depth < 2 && self.chance(45) {
            self.push(" AND EXISTS (SELECT 1 FROM ");
            self.gen_from_list(depth + 1);
            self.push(" WHERE ");
            self.conditions(depth + 1);
            self.push(")");
        }
    }

    fn gen_from_list(&mut self, depth: usize) {
        self.gen_from_tree(depth);
        if self.chance(45) {
            self.push(", ");
            self.gen_from_tree(depth);
        }
    }

    fn gen_from_tree(&mut self, depth: usize) {
        self.gen_from_item(depth);
        while self.chance(35) {
            let kind = ["JOIN", "LEFT JOIN", "RIGHT JOIN", "CROSS JOIN"][self.next(4)];
            self.push(&format!(" {kind} "));
            self.gen_from_item(depth);
            if kind != "CROSS JOIN" {
                self.push(" ON ");
                self.conditions(depth.max(1));
            }
        }
    }

    fn gen_from_item(&mut self, depth: usize) {
        let pick = self.next(10);
        if pick < 2 && !self.ctes.is_empty() {
            let index = self.next(self.ctes.len());
            let cte = self.ctes.remove(index);
            self.push(&cte);
            self.defined.push(cte);
        } else if (pick < 6 || depth >= 2) && !self.tables.is_empty() {
            let index = self.next(self.tables.len());
            let table = self.tables.remove(index);
            self.push(table);
            let columns = TABLES
                .iter()
                .find(|(t, _)| *t == table)
                .map_or(&[][..], |t| t.1);
            self.seen.extend_from_slice(columns);
            if self.chance(30) {
                let alias = table.replace('t', "x");
                self.push(&format!(" AS {alias}"));
                self.defined.push(alias);
            } else {
                self.defined.push(table.to_owned());
            }
        } else {
            self.derived += 1;
            let name = format!("d{}", self.derived);
            self.defined.push(name.clone());
            let open = if self.chance(40) { "LATERAL (" } else { "(" };
            self.push(open);
            self.projection(&name);
            if depth < 2 && self.chance(50) {
                self.push(" FROM ");
                self.gen_from_list(depth + 1);
            }
            self.push(" WHERE ");
            self.conditions(depth + 1);
            self.push(&format!(") AS {name}"));
        }
    }

    /// `SELECT 'name.a' AS a, …` over a random non-empty subset of the columns.
    fn projection(&mut self, name: &str) {
        let label = name;
        let mut columns: Vec<&str> = COLUMNS
            .iter()
            .copied()
            .filter(|_| self.chance(20))
            .collect();
        if columns.is_empty() {
            columns.push(COLUMNS[self.next(COLUMNS.len())]);
        }
        self.seen.extend_from_slice(&columns);
        let list: Vec<String> = columns
            .iter()
            .map(|c| format!("'{label}.{c}'::text AS {c}"))
            .collect();
        self.push(&format!("SELECT {}", list.join(", ")));
    }

    /// One statement: a SELECT (perhaps with CTEs, one named like a table), an UPDATE …
    /// FROM or a DELETE … USING of t1.
    fn statement(&mut self) {
        match self.next(4) {
            0 => {
                if self.chance(50) {
                    let name = if self.chance(50) { "t2" } else { "cte_a" };
                    self.push(&format!("WITH {name} AS ("));
                    self.projection(&format!("cte_{name}"));
                    self.push(") ");
                    self.ctes.push(name.to_owned());
                    if name == "t2" {
                        self.tables.retain(|t| *t != "t2");
                    }
                }
                self.push("SELECT 1 FROM ");
                self.gen_from_list(0);
                self.push(" WHERE ");
                self.conditions(0);
            }
            kind => {
                self.tables.retain(|t| *t != "t1");
                let alias = if self.chance(40) { " AS u" } else { "" };
                self.defined
                    .push(if alias.is_empty() { "t1" } else { "u" }.to_owned());
                if kind == 3 {
                    // The target is not visible in the query of an INSERT, only in its
                    // RETURNING.
                    self.defined.pop();
                    self.push(&format!("INSERT INTO t1{alias} (a) SELECT 'x' FROM "));
                    self.gen_from_list(0);
                    self.push(" WHERE ");
                    self.conditions(0);
                    self.returning(alias);
                    return;
                }
                if kind == 1 {
                    self.push(&format!("UPDATE t1{alias} SET a = 'x'"));
                    if self.chance(70) {
                        self.push(" FROM ");
                        self.gen_from_list(0);
                    }
                } else {
                    self.push(&format!("DELETE FROM t1{alias}"));
                    if self.chance(70) {
                        self.push(" USING ");
                        self.gen_from_list(0);
                    }
                }
                self.push(" WHERE ");
                self.conditions(0);
                self.returning(alias);
            }
        }
    }

    /// The label of a probe's value. RETURNING shows the target's new row: the value
    /// the write gave `a` ('x'), NULL for columns an INSERT left out.
    fn new_row(&self, id: usize, value: String) -> String {
        if Some(id) != self.returning_probe || (value != "x" && value != "<NULL>") {
            return value;
        }
        let (_, _, offset, len) = self.probes[id];
        let reference = &self.ours[offset..offset + len];
        let column = reference.rsplit('.').next().unwrap_or(reference);
        format!("t1.{column}")
    }

    /// Sometimes a RETURNING probe (where the target is visible again).
    fn returning(&mut self, alias: &str) {
        if self.chance(50) {
            self.defined
                .push(if alias.is_empty() { "t1" } else { "u" }.to_owned());
            self.seen.extend_from_slice(TABLES[0].1);
            self.push(" RETURNING ");
            self.returning_probe = Some(self.probes.len());
            self.probe();
        }
    }
}

// ------------------------------------------------------------------ the test

struct NoMasks;

impl MaskRenderer for NoMasks {
    fn render(
        &self,
        _spec: &maskgate_mask::MaskSpec,
        column: &str,
        _ty: &maskgate_mask::PgType,
    ) -> Result<String, maskgate_mask::MaskError> {
        Ok(column.to_owned())
    }
}

/// What PostgreSQL said about one statement.
enum Answer {
    /// Each probe's notice value.
    Ran(BTreeMap<usize, String>),
    /// A binding error at this probe.
    Refused(usize),
    /// An error maskgate's binding does not model (reported, not compared).
    Other(String),
}

#[tokio::test]
async fn maskgate_binds_every_column_reference_where_postgresql_does() {
    let harness = Harness::start().await;
    let cases: u64 = std::env::var("MASKGATE_SCOPE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let mut tally = Tally::default();
    for seed in 0..cases {
        let mut generator = Gen::new(seed);
        generator.statement();
        RECORDED.with(|r| *r.borrow_mut() = Some(BTreeMap::new()));
        let _ = harness.all.enforce(&generator.ours);
        let recorded = RECORDED.with(|r| r.borrow_mut().take()).unwrap_or_default();
        let answer = harness.ask(&generator).await;
        if !matches!(answer, Answer::Other(_)) {
            if let Some(rewritten) = harness.ask_rewritten(&generator).await {
                tally.compare_rewritten(seed, &generator, &answer, rewritten);
            }
        }
        tally.compare(seed, &generator, &recorded, answer, &harness.masked);
    }
    eprintln!(
        "scope differential: {cases} statements ({} ran, {} refused by a binding error), \
         {} references compared, {} of them certain in maskgate, {} not analyzed by \
         maskgate, {} statements with other errors; {} writes that read the stored masked \
         column, all refused; {} rewritten texts bound (or failed) as written",
        tally.ran,
        tally.refused,
        tally.compared,
        tally.certain,
        tally.unrecorded,
        tally.other_errors,
        tally.leaks_checked,
        tally.rewritten
    );
    assert!(tally.failures.is_empty(), "{}", tally.failures.join("\n"));
    assert!(
        tally.compared > cases as usize,
        "too few references compared: {}",
        tally.compared
    );
    assert!(
        tally.other_errors * 10 < cases as usize,
        "too many statements failed for other reasons: {}",
        tally.other_errors
    );
}

/// A database with the schema, a connection whose notices are collected, and the two
/// accounts' enforcers.
struct Harness {
    client: tokio_postgres::Client,
    notices: std::sync::mpsc::Receiver<String>,
    all: Enforcer,
    masked: Enforcer,
}

impl Harness {
    async fn start() -> Harness {
        let cluster = maskgate_testkit::PgCluster::shared();
        let database = format!("maskgate_scope_{}", std::process::id());
        cluster
            .psql(&format!("DROP DATABASE IF EXISTS {database}"))
            .unwrap();
        cluster
            .psql(&format!("CREATE DATABASE {database}"))
            .unwrap();
        cluster.psql_in(&database, &schema_sql()).unwrap();
        let (client, mut connection) = tokio_postgres::Config::new()
            .host(cluster.host())
            .port(cluster.port())
            .user(cluster.user())
            .password(cluster.password())
            .dbname(&database)
            .connect(NoTls)
            .await
            .unwrap();
        let (sender, notices) = std::sync::mpsc::channel::<String>();
        tokio::spawn(async move {
            while let Some(Ok(message)) =
                std::future::poll_fn(|cx| connection.poll_message(cx)).await
            {
                if let AsyncMessage::Notice(notice) = message {
                    let _ = sender.send(notice.message().to_owned());
                }
            }
        });
        let path = PathBuf::from("scope_differential.toml");
        let today = time::Date::from_calendar_date(2026, time::Month::March, 2).unwrap();
        let policy: Arc<Policy> = Policy::from_texts(
            vec![(path, policy_text())],
            PolicySettings::default(),
            today,
        )
        .unwrap_or_else(|rejected| panic!("{}", rejected.errors))
        .policy
        .into();
        let enforcer =
            |login: &str| Enforcer::new(policy.clone(), policy.effective(login).unwrap(), &NoMasks);
        Harness {
            client,
            notices,
            all: enforcer("all_1"),
            masked: enforcer("masked_1"),
        }
    }

    /// Runs PostgreSQL's text in a transaction that is rolled back.
    async fn ask(&self, generator: &Gen) -> Answer {
        self.run(&generator.pg, generator).await
    }

    /// Runs the text maskgate sends for `all_1`, its probes put back.
    async fn ask_rewritten(&self, generator: &Gen) -> Option<Answer> {
        let enforced = self.all.enforce(&generator.ours).ok()?;
        let text = with_probes(&enforced.statements.first()?.sql)?;
        Some(self.run(&text, generator).await)
    }

    async fn run(&self, sql: &str, generator: &Gen) -> Answer {
        self.client.batch_execute("BEGIN").await.unwrap();
        while self.notices.try_recv().is_ok() {}
        let answer = match self.client.batch_execute(sql).await {
            Ok(()) => {
                let mut values = BTreeMap::new();
                while let Ok(notice) = self.notices.try_recv() {
                    let mut words = notice.splitn(3, ' ').skip(1);
                    if let (Some(id), Some(value)) = (words.next(), words.next()) {
                        values.insert(id.parse::<usize>().unwrap(), value.to_owned());
                    }
                }
                Answer::Ran(values)
            }
            Err(error) => refused_probe(&error, generator)
                .map_or_else(|| Answer::Other(describe(&error)), Answer::Refused),
        };
        self.client.batch_execute("ROLLBACK").await.unwrap();
        answer
    }
}

#[derive(Default)]
struct Tally {
    compared: usize,
    certain: usize,
    unrecorded: usize,
    other_errors: usize,
    ran: usize,
    refused: usize,
    leaks_checked: usize,
    rewritten: usize,
    failures: Vec<String>,
}

impl Tally {
    fn compare(
        &mut self,
        seed: u64,
        generator: &Gen,
        recorded: &Recorded,
        answer: Answer,
        masked: &Enforcer,
    ) {
        match answer {
            Answer::Ran(values) => {
                self.ran += 1;
                // The stored t1.e reached: the account that sees it masked is refused.
                let raw = values
                    .iter()
                    .any(|(id, v)| v == "t1.e" && Some(*id) != generator.returning_probe);
                for (id, value) in values {
                    let value = generator.new_row(id, value);
                    self.check(seed, generator, recorded, id, Bound::Column(value));
                }
                let write =
                    !generator.ours.starts_with("WITH") && !generator.ours.starts_with("SELECT");
                if raw && write {
                    self.leaks_checked += 1;
                    if masked.enforce(&generator.ours).is_ok() {
                        self.failures.push(format!(
                            "seed {seed}: the stored t1.e is read, yet allowed\n  {}",
                            generator.pg
                        ));
                    }
                }
            }
            Answer::Refused(id) => {
                self.refused += 1;
                self.check(seed, generator, recorded, id, Bound::Error)
            }
            Answer::Other(error) => {
                self.other_errors += 1;
                if std::env::var("MASKGATE_SCOPE_DEBUG").is_ok() {
                    eprintln!("other error {error}: {}", generator.pg);
                }
            }
        }
    }

    /// The rewritten text must bind every probe where the statement as written did,
    /// and fail where it failed.
    fn compare_rewritten(
        &mut self,
        seed: u64,
        generator: &Gen,
        written: &Answer,
        rewritten: Answer,
    ) {
        self.rewritten += 1;
        let same = match (written, &rewritten) {
            (Answer::Ran(before), Answer::Ran(after)) => before == after,
            (Answer::Ran(_), _) | (_, Answer::Ran(_)) => false,
            _ => true,
        };
        if !same {
            let got = match rewritten {
                Answer::Ran(values) => format!("{values:?}"),
                Answer::Refused(id) => format!("a binding error at probe {id}"),
                Answer::Other(error) => error,
            };
            let written = match written {
                Answer::Ran(values) => format!("{values:?}"),
                _ => "a binding error".to_owned(),
            };
            self.failures.push(format!(
                "seed {seed}: as written {written}, rewritten {got}\n  {}",
                generator.pg
            ));
        }
    }

    fn check(&mut self, seed: u64, generator: &Gen, recorded: &Recorded, id: usize, pg: Bound) {
        let (_, _, offset, _) = generator.probes[id];
        let Some(set) = recorded.get(&(1, offset as u64 + 1)) else {
            self.unrecorded += 1;
            return;
        };
        self.compared += 1;
        if set.len() == 1 {
            self.certain += 1;
        }
        if !set.contains(&pg) {
            self.failures.push(format!(
                "seed {seed}, probe {id}: PostgreSQL {pg:?}, maskgate {set:?}\n  {}",
                generator.pg
            ));
        }
    }
}

/// maskgate's output with `<ref> IS DISTINCT FROM 'probe<id>'` turned back into
/// `mg_probe(<id>, <ref>)`.
fn with_probes(sql: &str) -> Option<String> {
    const MARK: &str = " IS DISTINCT FROM 'probe";
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(MARK) {
        let before = &rest[..at];
        let start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '"'))
            .map_or(0, |i| i + 1);
        let after = &rest[at + MARK.len()..];
        let end = after.find('\'')?;
        out.push_str(&before[..start]);
        out.push_str(&format!(
            "mg_probe({}, {})",
            &after[..end],
            &before[start..]
        ));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => error.to_string(),
    }
}

/// The probe a binding error points at (ambiguous, missing or invisible names).
fn refused_probe(error: &tokio_postgres::Error, generator: &Gen) -> Option<usize> {
    let db = error.as_db_error()?;
    if !["42702", "42703", "42P01", "42P10"].contains(&db.code().code()) {
        return None;
    }
    let Some(tokio_postgres::error::ErrorPosition::Original(position)) = db.position() else {
        return None;
    };
    let position = *position as usize - 1;
    generator
        .probes
        .iter()
        .find(|(_, start, _, len)| (*start..*start + *len).contains(&position))
        .map(|(id, ..)| *id)
}
