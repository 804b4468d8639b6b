//! What masking costs PostgreSQL on a 1,000,000-row scan, compared with
//! reading the raw columns.
//!
//! ```text
//! MASKGATE_BENCH_URL=postgres://user:pass@127.0.0.1:5432/db \
//!     cargo run --release -p maskgate-mask --example scan_cost
//! ```
//!
//! Creates (and replaces) the table `maskgate_scan_cost` in the target
//! database. Each query is `SELECT count(*) FROM (SELECT <columns> FROM t) s
//! WHERE num_nonnulls(<all outputs>) >= 0`, so every expression is evaluated
//! for every row but nothing is sent back; the median of 5 client-timed runs
//! is reported, with parallel query off so the numbers are per core.

use std::io::Write;
use std::time::{Duration, Instant};

use maskgate_mask::{parse_pg_type, MaskSpec, PseudonymKeys};
use tokio_postgres::{Client, Config, NoTls};

const ROWS: u32 = 1_000_000;
const RUNS: usize = 5;

/// `(column, type, mask)`.
const MASKS: &[(&str, &str, &str)] = &[
    ("cid", "char(12)", "mask = \"citizen_id\""),
    (
        "name",
        "varchar(60)",
        "mask = \"partial\"\nkeep_first = 1\nkeep_last = 1",
    ),
    ("name", "varchar(60)", "mask = \"initials\""),
    ("email", "text", "mask = \"email\""),
    ("phone", "varchar(10)", "mask = \"phone\""),
    ("birth", "date", "mask = \"age_band\""),
    ("birth", "date", "mask = \"year\""),
    (
        "salary",
        "numeric(12,2)",
        "mask = \"bucket\"\nwidth = 1000000",
    ),
    ("salary", "numeric(12,2)", "mask = \"round\"\ndigits = -3"),
    ("cid", "char(12)", "mask = \"pseudonym\"\nkey = \"bench\""),
    (
        "cid",
        "char(12)",
        "mask = \"pseudonym_digits\"\nkey = \"bench\"",
    ),
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("MASKGATE_BENCH_URL")
        .map_err(|_| "set MASKGATE_BENCH_URL=postgres://user:password@host:port/database")?;
    let mut file = tempfile::NamedTempFile::new()?;
    file.write_all(PseudonymKeys::generate_key_file_text("bench")?.as_bytes())?;
    let keys = PseudonymKeys::load(file.path())?;

    let mut config: Config = url.parse()?;
    config.options(keys.upstream_options());
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute("SET max_parallel_workers_per_gather = 0; SET jit = off")
        .await?;
    create_table(&client).await?;

    let raw_all = ["cid", "name", "email", "phone", "birth", "salary"];
    let raw_time = median(&client, &raw_all.map(|c| c.to_string())).await?;
    println!("{ROWS} rows, median of {RUNS} runs, parallel query off, JIT off\n");
    println!("raw columns (all six):            {:>8.1} ms", ms(raw_time));

    let mut all_masked = Vec::new();
    let mut rows = Vec::new();
    for (column, ty, src) in MASKS {
        let table: toml::Table = toml::from_str(src)?;
        let spec = MaskSpec::from_toml(&table)?;
        let pg_type = parse_pg_type(ty).ok_or("bad type")?;
        let expr = spec.sql_expr(&format!("t.{column}"), &pg_type, &keys)?;
        let raw = median(&client, &[format!("t.{column}")]).await?;
        let masked = median(&client, std::slice::from_ref(&expr)).await?;
        rows.push((spec.to_string(), raw, masked));
        if !matches!(spec.kind, maskgate_mask::MaskKind::PseudonymDigits { .. }) {
            all_masked.push(expr);
        }
    }
    println!("\nper mask (one column)              raw ms   masked ms   ratio");
    for (name, raw, masked) in &rows {
        println!(
            "{name:<34} {:>7.1} {:>10.1} {:>7.2}",
            ms(*raw),
            ms(*masked),
            ms(*masked) / ms(*raw)
        );
    }
    let masked_time = median(&client, &all_masked).await?;
    println!(
        "\nall columns masked ({} expressions, incl. pseudonym): {:.1} ms; ratio to raw {:.2}",
        all_masked.len(),
        ms(masked_time),
        ms(masked_time) / ms(raw_time)
    );
    let without_pseudonym: Vec<String> = all_masked
        .iter()
        .filter(|e| !e.contains("sha256"))
        .cloned()
        .collect();
    let plain_time = median(&client, &without_pseudonym).await?;
    println!(
        "all columns masked without pseudonym ({}): {:.1} ms; ratio to raw {:.2}",
        without_pseudonym.len(),
        ms(plain_time),
        ms(plain_time) / ms(raw_time)
    );
    client
        .batch_execute("DROP TABLE maskgate_scan_cost")
        .await?;
    Ok(())
}

async fn create_table(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS maskgate_scan_cost;
             CREATE TABLE maskgate_scan_cost (
               cid char(12), name varchar(60), email text, phone varchar(10),
               birth date, salary numeric(12,2));
             INSERT INTO maskgate_scan_cost
             SELECT lpad(((i::bigint * 7919 * 104729) % 1000000000000)::text, 12, '0'),
                    (ARRAY['Nguyễn','Trần','Lê','Phạm','Hoàng','Đặng'])[1 + i % 6] || ' ' ||
                    (ARRAY['Văn','Thị','Hữu','Ngọc','Minh'])[1 + i % 5] || ' ' ||
                    (ARRAY['An','Bình','Cường','Hạnh','Linh','Phúc','Tâm','Ánh'])[1 + i % 8],
                    'user' || i || '@example.vn',
                    '09' || lpad((i % 100000000)::text, 8, '0'),
                    date '1950-01-01' + (i % 20000),
                    (i % 50000000)::numeric / 100
             FROM generate_series(1, {ROWS}) AS i"
        ))
        .await?;
    client
        .batch_execute("VACUUM ANALYZE maskgate_scan_cost")
        .await
}

async fn median(client: &Client, outputs: &[String]) -> Result<Duration, tokio_postgres::Error> {
    let columns: Vec<String> = outputs
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{e} AS o{i}"))
        .collect();
    let refs: Vec<String> = (0..outputs.len()).map(|i| format!("s.o{i}")).collect();
    let sql = format!(
        "SELECT count(*) FROM (SELECT {} FROM maskgate_scan_cost t) s WHERE num_nonnulls({}) >= 0",
        columns.join(", "),
        refs.join(", ")
    );
    client.simple_query(&sql).await?;
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        client.simple_query(&sql).await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[RUNS / 2])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
