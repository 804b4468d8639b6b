//! `maskgate demo`: a throwaway PostgreSQL holding a synthetic social-insurance
//! register, and maskgate in front of it under the example policy, so a newcomer
//! can log in as a clerk, an analyst or an auditor within seconds and see what
//! each one is shown.

use std::time::Duration;

use anyhow::Context as _;
use maskgate_testkit::register::{self, Account};
use maskgate_testkit::{PgCluster, TestProxy};

/// The example policy, built into the binary so the demo runs anywhere.
const POLICY_FILES: [(&str, &str); 2] = [
    (
        "classification.toml",
        include_str!("../examples/policy/classification.toml"),
    ),
    ("roles.toml", include_str!("../examples/policy/roles.toml")),
];

/// Who the demo lets log in, and what to try as each.
struct Persona {
    account: Account,
    who: &'static str,
    try_sql: String,
}

fn personas() -> Vec<Persona> {
    let person = register::participants()
        .find(|p| p.province_code == "01")
        .expect("the register has participants in province 01");
    let password = || format!("demo-{:024x}", rand::random::<u128>() >> 32);
    let with_password = |login: &str, roles: &[&str]| Account {
        password: password(),
        ..Account::new(login, roles)
    };
    vec![
        Persona {
            account: with_password("clerk_01", &["clerk"]).with("province", "01"),
            who: "counter clerk, province 01: one person at a time, by citizen ID; identifiers masked",
            try_sql: format!(
                "SELECT full_name, citizen_id, date_of_birth FROM participant WHERE citizen_id = '{}';",
                person.citizen_id
            ),
        },
        Persona {
            account: with_password("analyst_79", &["province_analyst"]).with("province", "79"),
            who: "statistics, province 79: initials, age bands, rounded amounts",
            try_sql: "SELECT full_name, date_of_birth, gender FROM participant ORDER BY id LIMIT 5;"
                .into(),
        },
        Persona {
            account: with_password("auditor_01", &["auditor"]),
            who: "internal audit: unrestricted, sees the register as stored",
            try_sql: "SELECT full_name, citizen_id, province_code FROM participant ORDER BY id LIMIT 5;"
                .into(),
        },
        Persona {
            account: with_password("investigator_01", &["investigator"]),
            who: "fraud investigator: identifiers and contacts unmasked, every province, under a quota",
            try_sql: "SELECT full_name, citizen_id, phone FROM participant ORDER BY id LIMIT 5;"
                .into(),
        },
        Persona {
            account: with_password("provincial_01", &["provincial_officer"]).with("province", "01"),
            who: "provincial office, province 01: cards, bank accounts and payments through their participants; 20-row pages",
            try_sql: "SELECT t.\"số thẻ\", b.account_number, b.holder_email FROM \"TheBHYT\" t \
                      JOIN bank_account b ON b.participant_id = t.nguoi_id ORDER BY t.id LIMIT 5;"
                .into(),
        },
        Persona {
            account: with_password("officer_48", &["claims_officer"]).with("province", "48"),
            who: "claims officer, province 48: reads and corrects its own province; identifiers masked",
            try_sql: "SELECT id, full_name, citizen_id FROM participant ORDER BY id LIMIT 5;".into(),
        },
    ]
}

/// The break-glass DBA of the example policy: held by an account that stays
/// disabled, as in a real deployment, so it is listed but cannot log in.
fn break_glass_account() -> (Account, &'static str) {
    (
        Account {
            password: format!("demo-{:024x}", rand::random::<u128>() >> 32),
            ..Account::new("dba_oncall", &["dba_breakglass"])
        },
        "disabled = true\n",
    )
}

pub async fn run(seconds: Option<u64>) -> anyhow::Result<()> {
    maskgate_proxy::logging::init(&maskgate_proxy::config::LogConfig {
        format: maskgate_proxy::config::LogFormat::Human,
        level: "info".into(),
    });
    eprintln!("starting a throwaway PostgreSQL cluster…");
    let cluster = tokio::task::spawn_blocking(PgCluster::start)
        .await?
        .context("cannot start a PostgreSQL cluster (is the PostgreSQL server installed?)")?;
    register::load(&cluster).context("cannot load the sample register")?;

    let personas = personas();
    let (break_glass, disabled) = break_glass_account();
    let accounts: Vec<Account> = personas
        .iter()
        .map(|p| p.account.clone())
        .chain(std::iter::once(break_glass.clone()))
        .collect();
    let policy_files = POLICY_FILES
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect();
    let mut options = register::proxy_options(&accounts, policy_files);
    if let Some((_, lines)) = options
        .account_settings
        .iter_mut()
        .find(|(login, _)| *login == break_glass.login)
    {
        lines.push_str(disabled);
    }
    options.auth_failure_delay = Duration::from_millis(500);
    let proxy = TestProxy::start(&cluster, options)
        .await
        .context("cannot start maskgate")?;

    println!("maskgate demo is running, in front of a synthetic register.");
    for persona in &personas {
        let account = &persona.account;
        println!();
        println!("  {} ({})", account.login, persona.who);
        println!(
            "    connect:  psql \"{}\"",
            proxy.conn_string(&account.login, &account.password)
        );
        println!("    try:      {}", persona.try_sql);
    }
    println!();
    if let Some(admin) = proxy.admin_addr() {
        println!("  metrics:    curl http://{admin}/metrics");
    }
    println!(
        "  audit:      maskgate audit verify {} --public-key {}",
        proxy.audit_dir().display(),
        proxy.audit_public_key().display()
    );
    println!(
        "              maskgate audit search {} --format table",
        proxy.audit_dir().display()
    );
    println!(
        "              maskgate audit show SEQ {} --decrypt --key-file {}",
        proxy.audit_dir().display(),
        proxy.audit_seal_key().display()
    );
    println!(
        "  explain:    what maskgate does with a statement is described in docs/enforcement.md"
    );
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
