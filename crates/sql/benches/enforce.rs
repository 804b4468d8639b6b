//! Cold enforce time of typical statements (parse, resolve, rewrite, print, and the
//! check of the printed text with PostgreSQL's parser), and what PostgreSQL's parser
//! alone costs on that text (`pg_check/…`: scan and parse).
//! Budget from issue 5: at most 100 µs per typical statement before the check.

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

fn enforce(c: &mut Criterion) {
    let policy = policy();
    let keys = PseudonymKeys::default();
    let masks = KeyedMasks::new(&keys);
    for (login, name, sql) in [
        (
            "clerk_01",
            "lookup",
            "SELECT id, full_name, citizen_id, birth_date FROM participant WHERE citizen_id = $1",
        ),
        (
            "analyst_79",
            "join_aggregate",
            "SELECT p.full_name, count(*), sum(c.amount) FROM participant p \
             JOIN contribution c ON c.participant_id = p.id \
             WHERE p.province_code = '79' GROUP BY p.full_name ORDER BY 2 DESC LIMIT 20",
        ),
        (
            "editor_79",
            "update_returning",
            "UPDATE participant SET full_name = $2 WHERE id = $1 AND full_name <> $2 \
             RETURNING id, citizen_id, birth_date",
        ),
    ] {
        let rules = policy.effective(login).unwrap();
        let enforcer = Enforcer::new(policy.clone(), rules, &masks);
        let printed = enforcer.enforce(sql).unwrap().statements[0].sql.clone();
        c.bench_function(&format!("enforce/{name}"), |b| {
            b.iter(|| enforcer.enforce(black_box(sql)).unwrap())
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
