//! `maskgate report daily|breach`: the reports of `maskgate_detect::report`, from
//! the trail and the policy named by the configuration.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use maskgate_detect::report::{breach, daily, Classification};
use maskgate_detect::{StateDir, Suspensions};
use maskgate_policy::Policy;
use maskgate_proxy::Config;
use time::{Duration, OffsetDateTime};

use crate::audit_cmd::parse_instant;

#[derive(Subcommand)]
pub enum ReportCommand {
    /// What a reviewer must look at for a period (default: the last 24 hours).
    Daily {
        #[arg(long, short, default_value = "maskgate.toml", env = "MASKGATE_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// text, json or html.
        #[arg(long, default_value = "text")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Verify the trail with this public key first (refused if it does not
        /// verify); without it the report says the trail was not verified.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// The facts of a breach notification for one account (JSON or printable HTML),
    /// from a trail that verifies.
    Breach {
        #[arg(long, short, default_value = "maskgate.toml", env = "MASKGATE_CONFIG")]
        config: PathBuf,
        #[arg(long, required_unless_present = "alert")]
        account: Option<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// Take the account and the period from this alert.
        #[arg(long)]
        alert: Option<String>,
        /// The trail's public key (verification is not optional).
        #[arg(long)]
        public_key: PathBuf,
        /// json or html.
        #[arg(long, default_value = "json")]
        format: String,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// Exit status: 0 built, 1 refused (the trail does not verify), 3 could not run.
pub fn run(command: ReportCommand) -> i32 {
    match run_inner(command) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("maskgate report: {e:#}");
            if e.downcast_ref::<breach::BreachError>()
                .is_some_and(|b| matches!(b, breach::BreachError::Tampered(_)))
            {
                1
            } else {
                3
            }
        }
    }
}

struct Context {
    audit_dir: PathBuf,
    classification: Classification,
    suspensions: Suspensions,
}

fn context(config: &Path) -> anyhow::Result<Context> {
    let config = Config::load(config)?;
    let audit = config
        .audit
        .as_ref()
        .context("the configuration has no [audit] section: there is no trail to report on")?;
    let policy = Policy::load_dir(&config.policy.dir, config.policy.settings.clone())
        .map_err(|e| {
            anyhow::anyhow!(
                "the policy in {} is not valid:\n{e}",
                config.policy.dir.display()
            )
        })?
        .policy;
    let mut classification = Classification {
        labels: policy.labels().clone(),
        ..Classification::default()
    };
    for (table, class) in policy.tables() {
        classification.tables.insert(
            table.to_string(),
            class
                .columns
                .iter()
                .map(|(c, col)| (c.clone(), col.labels.clone()))
                .collect(),
        );
    }
    for a in policy.accounts() {
        classification
            .accounts
            .insert(a.login.clone(), (a.name.clone(), a.roles.clone()));
    }
    let suspensions = match &config.detection {
        Some(d) => StateDir::existing(&d.state_dir)
            .and_then(|s| s.read())
            .unwrap_or_default(),
        None => Suspensions::default(),
    };
    Ok(Context {
        audit_dir: audit.dir.clone(),
        classification,
        suspensions,
    })
}

fn emit(output: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn run_inner(command: ReportCommand) -> anyhow::Result<()> {
    match command {
        ReportCommand::Daily {
            config,
            from,
            to,
            format,
            output,
            public_key,
        } => {
            let cx = context(&config)?;
            let verification = match &public_key {
                Some(path) => {
                    let verified = maskgate_audit::verify(&cx.audit_dir, &public_key_at(path)?)?;
                    if verified.status() == maskgate_audit::Status::Tampered {
                        return Err(breach::BreachError::Tampered(verified.to_string()).into());
                    }
                    Some(breach::verification(&verified))
                }
                None => None,
            };
            let to = to
                .as_deref()
                .map(parse_instant)
                .transpose()?
                .unwrap_or_else(OffsetDateTime::now_utc);
            let from = from
                .as_deref()
                .map(parse_instant)
                .transpose()?
                .unwrap_or(to - Duration::days(1));
            let mut report =
                daily::build(&cx.audit_dir, from, to, &cx.classification, &cx.suspensions)?;
            report.verification = verification;
            let text = match format.as_str() {
                "text" => report.to_text(),
                "json" => serde_json::to_string_pretty(&report)? + "\n",
                "html" => report.to_html(),
                other => anyhow::bail!("--format {other} is unknown; use text, json or html"),
            };
            emit(output.as_deref(), &text)
        }
        ReportCommand::Breach {
            config,
            account,
            from,
            to,
            alert,
            public_key,
            format,
            output,
        } => {
            let cx = context(&config)?;
            let key = public_key_at(&public_key)?;
            let (mut account, mut start, mut end) = (account, None, None);
            if let Some(id) = &alert {
                let found = find_alert(&cx.audit_dir, id)?;
                account = account.or(found.account.clone());
                let at = found.at.unwrap_or_else(OffsetDateTime::now_utc);
                start = Some(found.window_start.unwrap_or(at) - Duration::hours(1));
                end = Some(OffsetDateTime::now_utc());
            }
            let account = account.context("the alert names no account; give --account")?;
            let to = to
                .as_deref()
                .map(parse_instant)
                .transpose()?
                .or(end)
                .unwrap_or_else(OffsetDateTime::now_utc);
            let from = from
                .as_deref()
                .map(parse_instant)
                .transpose()?
                .or(start)
                .unwrap_or(to - Duration::days(1));
            let report = breach::build(
                &cx.audit_dir,
                &key,
                &account,
                (from, to),
                &cx.classification,
            )?;
            let text = match format.as_str() {
                "json" => serde_json::to_string_pretty(&report)? + "\n",
                "html" => report.to_html(),
                other => anyhow::bail!("--format {other} is unknown; use json or html"),
            };
            emit(output.as_deref(), &text)
        }
    }
}

fn public_key_at(path: &Path) -> anyhow::Result<maskgate_audit::PublicKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(maskgate_audit::PublicKey::from_pem(&text)?)
}

fn find_alert(dir: &Path, id: &str) -> anyhow::Result<maskgate_detect::observe::AlertRecord> {
    use maskgate_detect::observe::{self, Observed};
    let mut found = None;
    let needle = format!("\"id\":\"{id}\"");
    maskgate_detect::trail::read_since(dir, None, |line| {
        if found.is_none()
            && observe::line_kind(line) == Some("alert")
            && memchr::memmem::find(line, needle.as_bytes()).is_some()
        {
            if let Some(Observed::Alert(a)) = observe::parse(line).map(|o| o.event) {
                found = Some(a);
            }
        }
    })?;
    found.with_context(|| format!("no alert {id:?} in the trail"))
}
