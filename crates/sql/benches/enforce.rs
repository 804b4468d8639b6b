//! Cold enforce time of typical statements (parse, resolve, rewrite, print, and the
//! check of the printed text with PostgreSQL's parser), for a text of a new shape and
//! for one that differs from a checked one only in a string constant, and what
//! PostgreSQL's parser alone costs on that text (`pg_check/…`: scan and parse).
//! Budget from issue 5: at most 100 µs per typical statement before the check.
//! The `normalized/…` statements run under the example policy's provincial officer:
//! a child table filtered through its parent, two steps away, and an aggregate whose
//! packed rows are counted.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use maskgate_mask::PseudonymKeys;
use maskgate_policy::{Policy, PolicySettings};
use maskgate_sql::{Enforcer, KeyedMasks};

fn policy() -> Arc<Policy> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let today = time::Date::from_calendar_date(2026, time::Month::March, 2).unwrap();
    Policy::from_texts(vec![(path, text)], PolicySettings::default(), today)
        .unwrap_or_else(|rejected| panic!("{}", rejected.errors))
        .policy
        .into()
}

/// Each statement with `{n}` where a number (part of the printed text's shape) or a
/// string constant (not part of it) varies between iterations.
const STATEMENTS: [(&str, &str, &str); 3] = [
    (
        "clerk_01",
        "lookup",
        "SELECT id, full_name, citizen_id, birth_date FROM participant \
         WHERE citizen_id = '{s}' AND id > {n}",
    ),
    (
        "analyst_79",
        "join_aggregate",
        "SELECT p.full_name, count(*), sum(c.amount) FROM participant p \
         JOIN contribution c ON c.participant_id = p.id \
         WHERE p.province_code = '79' AND p.full_name <> '{s}' \
         GROUP BY p.full_name HAVING count(*) > {n} ORDER BY 2 DESC LIMIT 20",
    ),
    (
        "editor_79",
        "update_returning",
        "UPDATE participant SET full_name = '{s}' WHERE id = {n} AND full_name <> $2 \
         RETURNING id, citizen_id, birth_date",
    ),
];

/// The example policy with one provincial officer of province 01.
fn example_policy() -> Arc<Policy> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/policy");
    let mut files: Vec<(PathBuf, String)> = ["classification.toml", "roles.toml"]
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect();
    files.push((
        PathBuf::from("officer.toml"),
        "[accounts.provincial_01]\nname = \"bench\"\nroles = [\"provincial_officer\"]\n\
         attributes = { province = \"01\" }\n\
         verifier = \"SCRAM-SHA-256$4096:ENqrke4VetwF7BUAvmg9hA==$XT4ez9bx3FeFEtOaDwU7HOOm+wg09SgHW82LS6I/anw=:tPtRELbqA9kZfdWwLP5IzHSqYt7an3afp04AnIrmGCk=\"\n"
            .to_owned(),
    ));
    let today = time::Date::from_calendar_date(2026, time::Month::March, 2).unwrap();
    Policy::from_texts(files, PolicySettings::default(), today)
        .unwrap_or_else(|rejected| panic!("{}", rejected.errors))
        .policy
        .into()
}

const NORMALIZED: [(&str, &str, &str); 3] = [
    (
        "provincial_01",
        "normalized/child_lookup",
        "SELECT id, \"số thẻ\", valid_to FROM \"TheBHYT\" WHERE id = {n} AND \"nơi đăng ký\" <> '{s}'",
    ),
    (
        "provincial_01",
        "normalized/two_steps_join",
        "SELECT y.amount, b.account_number FROM benefit_payment y \
         JOIN bank_account b ON b.id = y.bank_account_id WHERE y.id = {n} AND b.bank_code <> '{s}'",
    ),
    (
        "provincial_01",
        "normalized/packed_aggregate",
        "SELECT gender, string_agg(full_name, '{s}') FROM participant WHERE id > {n} GROUP BY gender",
    ),
];

fn enforce(c: &mut Criterion) {
    let policy = policy();
    let example = example_policy();
    let keys = PseudonymKeys::default();
    let masks = KeyedMasks::new(&keys);
    let cases = STATEMENTS
        .iter()
        .map(|case| (&policy, case))
        .chain(NORMALIZED.iter().map(|case| (&example, case)));
    for (policy, &(login, name, template)) in cases {
        let rules = policy.effective(login).unwrap();
        let enforcer = Enforcer::new(policy.clone(), rules, &masks);
        let text = |n: u64, s: u64| {
            template
                .replace("{n}", &(n + 1).to_string())
                .replace("{s}", &format!("{s:012}"))
        };
        let printed = enforcer.enforce(&text(0, 0)).unwrap().statements[0]
            .sql
            .clone();
        // Every iteration a printed text of a shape not seen before: the whole
        // analysis, PostgreSQL's parser check included.
        let mut n = 1u64;
        c.bench_function(&format!("enforce_new_shape/{name}"), |b| {
            b.iter(|| {
                n += 1;
                enforcer.enforce(black_box(&text(n, 0))).unwrap()
            })
        });
        // Only a string constant differs from a text checked before (a lookup sent
        // with its value inline): the check of the shape is remembered.
        let mut s = 1u64;
        c.bench_function(&format!("enforce_new_constant/{name}"), |b| {
            b.iter(|| {
                s += 1;
                enforcer.enforce(black_box(&text(0, s))).unwrap()
            })
        });
        c.bench_function(&format!("pg_check/{name}"), |b| {
            b.iter(|| {
                let tokens = pg_query::scan_tokens(black_box(&printed)).unwrap();
                let tree = pg_query::parse(&printed, 0).unwrap();
                (tokens.len(), tree.protobuf.stmts.len())
            })
        });
    }
}

criterion_group!(benches, enforce);
criterion_main!(benches);
