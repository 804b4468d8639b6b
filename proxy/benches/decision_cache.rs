//! The statement path's decision for a restricted account: cold (parse, check,
//! rewrite, serialize) and from the per-account cache.
//! Budgets from the enforcement issue: cold at most 100 µs, cached at most 2 µs.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use maskgate_policy::{Policy, PolicySettings};
use maskgate_proxy::enforcement::Enforcement;

const LOOKUP: &str =
    "SELECT id, full_name, citizen_id, date_of_birth FROM participant WHERE citizen_id = $1";

/// The example policy, with one clerk account of its own.
fn policy() -> Arc<Policy> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/policy");
    let mut texts: Vec<(PathBuf, String)> = ["classification.toml", "roles.toml"]
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).expect("example policy");
            (path, text)
        })
        .collect();
    texts.push((
        "bench-accounts.toml".into(),
        "[accounts.clerk]\nname = \"Bench\"\nroles = [\"clerk\"]\nattributes = { province = \"01\" }\n\
         verifier = \"SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$Pt1yiDEkdgImZ0AmBgbiXKQxb/nzJvAzQRqgCb8ydDk=:4Nk6Be+31Y5qxyH0uF4KXvhYdvPZfX9rDG7lqW4Hc9U=\"\n"
            .into(),
    ));
    let today = time::Date::from_calendar_date(2026, time::Month::March, 2).unwrap();
    Policy::from_texts(texts, PolicySettings::default(), today)
        .unwrap_or_else(|rejected| panic!("{}", rejected.errors))
        .policy
        .into()
}

fn decision(c: &mut Criterion) {
    let policy = policy();
    let enforcement = Enforcement::new(Default::default());
    let account = enforcement.account(&policy, "clerk").unwrap();
    let path = maskgate_sql::SearchPath::starting_at(account.policy_search_path().to_vec());
    assert!(account.decide(LOOKUP, &path).is_ok());

    c.bench_function("decision/lookup/cached", |b| {
        b.iter(|| account.decide(black_box(LOOKUP), &path))
    });
    // A text not seen before each time: what the first use of a statement costs.
    let mut n = 0u64;
    c.bench_function("decision/lookup/cold", |b| {
        b.iter_batched(
            || {
                n += 1;
                format!("{LOOKUP} /* {n} */")
            },
            |sql| account.decide(&sql, &path),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, decision);
criterion_main!(benches);
