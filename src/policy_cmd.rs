//! `maskgate policy check` and `maskgate policy explain`: the tools for the people
//! who edit and review the policy.
//!
//! Both read the policy directory and settings from the same configuration file as
//! `serve`, so what they report is what the proxy would load.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use maskgate_policy::{Loaded, Policy, Rejected};
use maskgate_proxy::Config;

/// Exit status: the policy is fine (warnings allowed).
const OK: i32 = 0;
/// Exit status: the policy has errors, or the account does not exist.
const REFUSED: i32 = 1;
/// Exit status: the command could not do its work (configuration, database, usage).
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
        /// Show how a statement would be rewritten for the account (not available yet).
        #[arg(long)]
        sql: Option<String>,
    },
}

/// Runs a `policy` subcommand and returns the process exit status.
pub fn run(command: PolicyCommand, runtime: &tokio::runtime::Runtime) -> i32 {
    match command {
        PolicyCommand::Check { config, live } => check(&config, live, runtime),
        PolicyCommand::Explain { user, config, sql } => explain(&user, &config, sql.is_some()),
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
            Err(Rejected { errors, warnings }) => (None, strings(&errors.0), strings(&warnings)),
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

fn explain(user: &str, config_path: &Path, with_sql: bool) -> i32 {
    if with_sql {
        eprintln!(
            "maskgate: statement rewriting is not available yet (enforcement lands in a later release)"
        );
        return CANNOT_RUN;
    }
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
