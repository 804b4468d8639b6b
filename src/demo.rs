//! `maskgate demo`: a throwaway PostgreSQL with a small synthetic register,
//! and maskgate in front of it, so a newcomer can connect within seconds.

use std::time::Duration;

use anyhow::Context as _;
use maskgate_testkit::{PgCluster, ProxyOptions, TestProxy};

const DEMO_USER: &str = "demo";

/// A small register: the names, identifiers and phone numbers are generated
/// from row numbers and belong to nobody.
const SAMPLE_REGISTER: &str = r#"
CREATE TABLE participant (
    id            bigint PRIMARY KEY,
    full_name     text NOT NULL,
    citizen_id    char(12) NOT NULL,
    social_insurance_code char(10) NOT NULL,
    phone         text,
    birth_date    date NOT NULL,
    province_code char(2) NOT NULL
);
INSERT INTO participant
SELECT g,
       (ARRAY['Nguyễn','Trần','Lê','Phạm','Hoàng'])[1 + g % 5] || ' ' ||
       (ARRAY['Văn','Thị','Minh','Thu','Quốc'])[1 + (g / 5) % 5] || ' ' ||
       (ARRAY['An','Bình','Chi','Dũng','Hà','Lan'])[1 + (g / 25) % 6],
       lpad((100000000000 + g * 7919)::text, 12, '0'),
       lpad((1000000000 + g * 104729 % 8999999999)::text, 10, '0'),
       '09' || lpad((g * 7727 % 100000000)::text, 8, '0'),
       date '1950-01-01' + (g * 37 % 20000),
       lpad((1 + g % 63)::text, 2, '0')
FROM generate_series(1, 10000) g;
"#;

pub async fn run(seconds: Option<u64>) -> anyhow::Result<()> {
    maskgate_proxy::logging::init(&maskgate_proxy::config::LogConfig {
        format: maskgate_proxy::config::LogFormat::Human,
        level: "info".into(),
    });
    eprintln!("starting a throwaway PostgreSQL cluster…");
    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await?
        .context("cannot start a PostgreSQL cluster (is the PostgreSQL server installed?)")?;
    cluster
        .psql(SAMPLE_REGISTER)
        .context("cannot load the sample register")?;

    let password = format!("demo-{:024x}", rand::random::<u128>() >> 32);
    let proxy = TestProxy::start(
        &cluster,
        ProxyOptions {
            users: vec![(DEMO_USER.into(), password.clone())],
            auth_failure_delay: Duration::from_millis(500),
            ..ProxyOptions::default()
        },
    )
    .await
    .context("cannot start maskgate")?;

    println!("maskgate demo is running.");
    println!();
    println!(
        "  connect:  psql \"{}\"",
        proxy.conn_string(DEMO_USER, &password)
    );
    println!("  try:      SELECT full_name, citizen_id, province_code FROM participant LIMIT 5;");
    if let Some(admin) = proxy.admin_addr() {
        println!("  metrics:  curl http://{admin}/metrics");
    }
    println!();
    println!("The data is synthetic. Press Ctrl-C (or send SIGTERM) to stop; everything is removed on exit.");

    match seconds {
        Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
        None => {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r.context("cannot wait for Ctrl-C")?,
                _ = term.recv() => {}
            }
        }
    }
    proxy.shutdown().await;
    drop(cluster);
    Ok(())
}
