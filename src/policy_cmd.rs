//! `maskgate policy check` and `maskgate policy explain`: the tools for the people
//! who edit and review the policy.
//!
//! Both read the policy directory and settings from the same configuration file as
//! `serve`, so what they report is what the proxy would load.

use std::fmt::Display;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use maskgate_mask::quote_ident;
use maskgate_policy::{ColumnRule, EffectiveRules, Loaded, Policy, Rejected};
use maskgate_proxy::Config;
use maskgate_sql::{Enforced, Enforcer, KeyedMasks};

/// Exit status: the policy is fine (warnings allowed); with `--sql`, the statement is
/// allowed.
const OK: i32 = 0;
/// Exit status: the policy has errors, or the account does not exist (without `--sql`);
/// with `--sql`, the statement is denied.
const REFUSED: i32 = 1;
/// Exit status: the command could not do its work (configuration, database, usage;
/// with `--sql` also an unknown account, so that 1 only ever means "denied").
const CANNOT_RUN: i32 = 2;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check the policy files: every error with file:line:column and a hint, then
    /// warnings. Exit 0 without errors, 1 with errors, 2 if the check could not run.
    Check {
        /// The configuration file (names the policy directory and time zone).
        #[arg(long, short, default_value = "maskgate.toml", env = "MASKGATE_CONFIG")]
        config: PathBuf,
        /// Also compare the classification with the upstream database's catalog:
        /// tables, columns and their types.
        #[arg(long)]
        live: bool,
    },
    /// Print what an account may do: its login rules and its effective table and
    /// column rules, merged across its roles.
    Explain {
        /// The account's login name.
        #[arg(long, short)]
        user: String,
        /// The configuration file (names the policy directory and time zone).
        #[arg(long, short, default_value = "maskgate.toml", env = "MASKGATE_CONFIG")]
        config: PathBuf,
        /// Decide this statement (or `;`-separated statements) for the account instead:
        /// print the decision, the reasons and what would be sent upstream. `-` reads
        /// it from standard input. Exit 0 if allowed, 1 if denied, 2 if the command
        /// could not run (configuration, policy errors, unknown account).
        #[arg(long, value_name = "STATEMENT")]
        sql: Option<String>,
    },
}

/// Runs a `policy` subcommand and returns the process exit status.
pub fn run(command: PolicyCommand, runtime: &tokio::runtime::Runtime) -> i32 {
    match command {
        PolicyCommand::Check { config, live } => check(&config, live, runtime),
        PolicyCommand::Explain { user, config, sql } => explain(&user, &config, sql),
    }
}

fn load_config(path: &Path) -> Result<Config, i32> {
    Config::load(path).map_err(|e| {
        eprintln!("maskgate: {e}");
        eprintln!(
            "  hint: `policy` reads the same configuration as `serve`, so it needs the same \
             environment (for example the upstream password variable)"
        );
        CANNOT_RUN
    })
}

fn check(config_path: &Path, live: bool, runtime: &tokio::runtime::Runtime) -> i32 {
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let settings = config.policy.settings.clone();
    let (loaded, mut errors, mut warnings): (Option<Loaded>, Vec<String>, Vec<String>) =
        match Policy::check_dir(&config.policy.dir, settings) {
            Ok(loaded) => {
                let warnings = strings(&loaded.warnings);
                (Some(loaded), Vec::new(), warnings)
            }
            Err(Rejected {
                errors, warnings, ..
            }) => (None, strings(&errors.0), strings(&warnings)),
        };

    let mut live_note = None;
    let mut live_failure = None;
    if live {
        match &loaded {
            None => {
                live_note = Some("live check skipped: fix the errors above first".to_owned());
            }
            Some(loaded) => match runtime.block_on(check_live(&config, &loaded.policy)) {
                Ok(findings) => {
                    for finding in findings {
                        match finding.severity {
                            maskgate_policy::Severity::Error => errors.push(finding.to_string()),
                            maskgate_policy::Severity::Warning => {
                                warnings.push(finding.to_string())
                            }
                        }
                    }
                    let upstream = &config.upstream;
                    live_note = Some(format!(
                        "checked against database {} at {}:{}",
                        upstream.database, upstream.host, upstream.port
                    ));
                }
                Err(e) => live_failure = Some(e),
            },
        }
    }

    if !errors.is_empty() {
        println!("errors:");
        for error in &errors {
            println!("{error}");
        }
    }
    if !warnings.is_empty() {
        if !errors.is_empty() {
            println!();
        }
        println!("warnings:");
        for warning in &warnings {
            println!("{warning}");
        }
    }
    if !errors.is_empty() || !warnings.is_empty() {
        println!();
    }
    if let Some(note) = live_note {
        println!("{note}");
    }
    let (e, w) = (errors.len(), warnings.len());
    match &loaded {
        Some(loaded) if errors.is_empty() => {
            let policy = &loaded.policy;
            println!(
                "policy OK: {} accounts, {} roles, {} tables; {w} {}",
                policy.accounts().count(),
                policy.roles().len(),
                policy.tables().len(),
                plural(w, "warning", "warnings"),
            );
        }
        _ => println!(
            "policy REFUSED: {e} {}, {w} {}",
            plural(e, "error", "errors"),
            plural(w, "warning", "warnings"),
        ),
    }
    if let Some(failure) = live_failure {
        eprintln!("maskgate: cannot check the policy against the database: {failure}");
        return CANNOT_RUN;
    }
    if errors.is_empty() {
        OK
    } else {
        REFUSED
    }
}

async fn check_live(
    config: &Config,
    policy: &Policy,
) -> anyhow::Result<Vec<maskgate_proxy::catalog::CatalogFinding>> {
    let upstream = &config.upstream;
    let tls = maskgate_proxy::tls::upstream_config(upstream.tls, upstream.ca_file.as_deref())?;
    let connector = maskgate_proxy::upstream::Connector::new(Arc::new(upstream.clone()), tls);
    let mut conn = connector.connect().await?;
    Ok(maskgate_proxy::catalog::check_catalog(policy, &mut conn).await?)
}

fn explain(user: &str, config_path: &Path, sql: Option<String>) -> i32 {
    // Read stdin first: a usage problem should not wait for the policy to load.
    let sql = match sql.as_deref() {
        Some("-") => match read_stdin() {
            Ok(text) => Some(text),
            Err(code) => return code,
        },
        _ => sql,
    };
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let loaded = match Policy::load_dir(&config.policy.dir, config.policy.settings.clone()) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "maskgate: the policy in {} has errors; run `maskgate policy check` and fix them first",
                config.policy.dir.display()
            );
            return CANNOT_RUN;
        }
    };
    if let Some(sql) = sql {
        return explain_statement(loaded.policy, &config, user, &sql);
    }
    match loaded.policy.explain(user) {
        Some(text) => {
            print!("{text}");
            OK
        }
        None => {
            eprintln!(
                "maskgate: there is no account {user:?} in the policy in {}",
                config.policy.dir.display()
            );
            REFUSED
        }
    }
}

fn read_stdin() -> Result<String, i32> {
    let mut text = String::new();
    match std::io::stdin().read_to_string(&mut text) {
        Ok(_) => Ok(text),
        Err(e) => {
            eprintln!("maskgate: cannot read the statement from standard input: {e}");
            Err(CANNOT_RUN)
        }
    }
}

/// `policy explain --sql`: runs the same enforcer the proxy builds for the account
/// (same policy, same pseudonym keys) and prints its decision.
fn explain_statement(policy: Policy, config: &Config, user: &str, sql: &str) -> i32 {
    if sql.trim().is_empty() {
        eprintln!("maskgate: --sql needs a statement (or `-` to read it from standard input)");
        return CANNOT_RUN;
    }
    let policy = Arc::new(policy);
    let (account, rules) = match (policy.account(user), policy.effective(user)) {
        (Some(account), Some(rules)) => (account, rules),
        _ => {
            eprintln!(
                "maskgate: there is no account {user:?} in the policy in {}",
                config.policy.dir.display()
            );
            return CANNOT_RUN;
        }
    };
    let header = || {
        println!(
            "account {} (roles: {})",
            account.login,
            account.roles.join(", ")
        );
        if account.disabled {
            println!("note: the account is disabled and cannot log in; shown as if it could");
        }
    };

    if rules.unrestricted {
        header();
        println!("decision: allowed");
        println!(
            "reason: the account holds an unrestricted role: statements pass through unchanged, \
             without analysis or rewriting (still audited)"
        );
        println!("row cap: {}", cap_text(rules.max_rows));
        println!("sent upstream as written:");
        print_indented(sql.trim(), "  ");
        return OK;
    }

    let masks = KeyedMasks::new(&config.policy.pseudonym_keys);
    let enforcer = Enforcer::new(Arc::clone(&policy), rules, &masks);
    match enforcer.enforce(sql) {
        Ok(enforced) if enforced.statements.is_empty() => {
            eprintln!("maskgate: --sql contains no statement, only separators or comments");
            CANNOT_RUN
        }
        Ok(enforced) => {
            header();
            print_allowed(&enforced, enforcer.rules());
            OK
        }
        Err(denial) => {
            header();
            println!("decision: denied");
            println!("sqlstate: {}", denial.sqlstate);
            println!("message: {}", denial.message);
            println!("nothing of this string would be sent upstream");
            REFUSED
        }
    }
}

fn print_allowed(enforced: &Enforced, rules: &EffectiveRules) {
    println!("decision: allowed");
    let count = enforced.statements.len();
    for (index, statement) in enforced.statements.iter().enumerate() {
        println!();
        println!("statement {} of {count}: {:?}", index + 1, statement.kind);
        println!("  row cap: {}", cap_text(statement.row_cap));
        let reasons = table_reasons(&statement.sql, rules);
        if !reasons.is_empty() {
            println!("  rules applied:");
            for line in reasons {
                println!("    {line}");
            }
        }
        println!("  sent upstream:");
        print_indented(&statement.sql, "    ");
    }
}

/// Per protected table the rewritten statement reads: its row filter, lookup keys,
/// masked and unreadable columns, one per line. The rewrite names every relation
/// schema-qualified and quoted, which is how the table is recognised in it.
fn table_reasons(rewritten: &str, rules: &EffectiveRules) -> Vec<String> {
    let mut out = Vec::new();
    for (name, table) in &rules.tables {
        let (Ok(schema), Ok(relation)) = (quote_ident(&name.schema), quote_ident(&name.name))
        else {
            continue;
        };
        if !rewritten.contains(&format!("{schema}.{relation}")) {
            continue;
        }
        out.push(name.to_string());
        let first = out.len();
        if let Some(filter) = &table.row_filter {
            out.push(format!("  rows where {filter}"));
        }
        if !table.lookup_keys.is_empty() {
            out.push(format!(
                "  lookup only: pinned by equality on one of {}",
                table.lookup_keys.join(", ")
            ));
        }
        let masked: Vec<String> = table
            .columns
            .iter()
            .filter_map(|(column, rule)| match rule {
                ColumnRule::Mask(spec) => Some(format!("{column} {spec}")),
                _ => None,
            })
            .collect();
        if !masked.is_empty() {
            out.push(format!("  masked: {}", masked.join(", ")));
        }
        let denied: Vec<&str> = table
            .columns
            .iter()
            .filter(|(_, rule)| matches!(rule, ColumnRule::Deny))
            .map(|(column, _)| column.as_str())
            .collect();
        if !denied.is_empty() {
            out.push(format!("  not readable: {}", denied.join(", ")));
        }
        if out.len() == first {
            out.push("  every row, every column as stored".to_owned());
        }
    }
    out
}

fn cap_text(cap: Option<u64>) -> String {
    match cap {
        Some(1) => "1 row".to_owned(),
        Some(n) => format!("{n} rows"),
        None => "none".to_owned(),
    }
}

fn print_indented(text: &str, indent: &str) {
    for line in text.lines() {
        println!("{indent}{line}");
    }
}

fn strings<T: Display>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}
