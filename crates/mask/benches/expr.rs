//! Time to build each mask expression: the enforcement layer builds them for
//! every rewritten statement that misses its cache.

use std::hint::black_box;
use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion};
use maskgate_mask::{parse_pg_type, MaskSpec, PseudonymKeys};

const KINDS: &[(&str, &str, &str)] = &[
    (
        "partial",
        "mask = \"partial\"\nkeep_first = 1\nkeep_last = 4",
        "varchar(60)",
    ),
    ("citizen_id", "mask = \"citizen_id\"", "char(12)"),
    ("health_card", "mask = \"health_card\"", "varchar(15)"),
    ("email", "mask = \"email\"", "text"),
    ("initials", "mask = \"initials\"", "text"),
    ("month", "mask = \"month\"", "date"),
    ("age_band", "mask = \"age_band\"", "date"),
    ("round", "mask = \"round\"\ndigits = -3", "numeric(12,2)"),
    ("bucket", "mask = \"bucket\"\nwidth = 1000000", "bigint"),
    ("null", "mask = \"null\"", "text"),
    (
        "constant",
        "mask = \"constant\"\nvalue = \"Ẩn danh\"",
        "text",
    ),
    (
        "pseudonym",
        "mask = \"pseudonym\"\nkey = \"v1\"",
        "char(12)",
    ),
    (
        "pseudonym_digits",
        "mask = \"pseudonym_digits\"\nkey = \"v1\"",
        "char(12)",
    ),
];

fn keys() -> PseudonymKeys {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    let text = PseudonymKeys::generate_key_file_text("v1").expect("valid id");
    file.write_all(text.as_bytes()).expect("write key file");
    PseudonymKeys::load(file.path()).expect("generated key file loads")
}

fn build(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("sql_expr");
    for (name, src, ty) in KINDS {
        let table: toml::Table = toml::from_str(src).expect("bench TOML");
        let spec = MaskSpec::from_toml(&table).expect("bench spec");
        let ty = parse_pg_type(ty).expect("bench type");
        group.bench_function(*name, |b| {
            b.iter(|| {
                spec.sql_expr(black_box("\"p\".\"value\""), &ty, &keys)
                    .expect("builds")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, build);
criterion_main!(benches);
