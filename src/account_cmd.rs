//! `maskgate account list|show|unlock`: the accounts as the security officer sees
//! them — suspended or not, last logins, open alerts — and lifting a suspension.
//!
//! An unlock is written into the detection state directory with the officer's
//! reason and OS user; the running proxy picks it up within a second (or at its
//! next start), lets the account in again and records `account_unlocked` in the
//! audit trail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use maskgate_detect::observe::{self, Observed};
use maskgate_detect::{StateDir, StateError, Unlock};
use maskgate_policy::Policy;
use maskgate_proxy::Config;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Every account of the policy: status, last login, open alerts.
    List {
        #[arg(long, short, default_value = "maskgate.toml", env = "MASKGATE_CONFIG")]
        config: PathBuf,
        /// How far back the trail is read for logins and alerts.
        #[arg(long, default_value = "30d")]
        days: humantime::Duration,
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// One account: status, suspension, recent logins, open alerts.
    Show {
        login: String,
        #[arg(long, short, default_value = "maskgate.toml", env = "MASKGATE_CONFIG")]
        config: PathBuf,
        #[arg(long, default_value = "30d")]
        days: humantime::Duration,
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Lift a suspension. The reason goes into the audit trail.
    Unlock {
        login: String,
        #[arg(long)]
        reason: String,
        #[arg(long, short, default_value = "maskgate.toml", env = "MASKGATE_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Debug, Default, Serialize)]
struct AccountView {
    login: String,
    name: String,
    roles: Vec<String>,
    /// `active`, `suspended` or `disabled`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    suspension: Option<maskgate_detect::Suspension>,
    logins: Vec<LoginView>,
    /// Alerts since the account's last unlock.
    open_alerts: Vec<AlertView>,
}

#[derive(Debug, Clone, Serialize)]
struct LoginView {
    at: String,
    client: String,
    admitted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct AlertView {
    id: String,
    rule: String,
    severity: String,
    at: String,
    summary: String,
}

pub fn run(command: AccountCommand) -> anyhow::Result<()> {
    match command {
        AccountCommand::List {
            config,
            days,
            format,
        } => {
            let views = views(&config, *days)?;
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&views)?);
                return Ok(());
            }
            println!(
                "{:<20} {:<10} {:<26} {:<20} OPEN ALERTS",
                "LOGIN", "STATUS", "LAST LOGIN", "FROM"
            );
            for v in views.values() {
                let last = v.logins.iter().rev().find(|l| l.admitted);
                println!(
                    "{:<20} {:<10} {:<26} {:<20} {}",
                    v.login,
                    v.status,
                    last.map_or("-", |l| l.at.as_str()),
                    last.map_or("-", |l| l.client.as_str()),
                    v.open_alerts.len()
                );
            }
            Ok(())
        }
        AccountCommand::Show {
            login,
            config,
            days,
            format,
        } => {
            let mut views = views(&config, *days)?;
            let view = views
                .remove(&login)
                .with_context(|| format!("no account {login:?} in the policy"))?;
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print_view(&view);
            }
            Ok(())
        }
        AccountCommand::Unlock {
            login,
            reason,
            config,
        } => unlock(&config, &login, &reason),
    }
}

fn print_view(v: &AccountView) {
    println!("account {} ({})", v.login, v.name);
    println!("  roles: {}", v.roles.join(", "));
    println!("  status: {}", v.status);
    if let Some(s) = &v.suspension {
        println!(
            "  suspended since {} by alert {} ({}): {}",
            s.since.format(&Rfc3339).unwrap_or_default(),
            s.alert,
            s.rule,
            s.summary
        );
    }
    println!("  recent logins:");
    for l in v.logins.iter().rev().take(10) {
        let outcome = if l.admitted { "admitted" } else { "refused" };
        println!(
            "    {} {} {} {}",
            l.at,
            l.client,
            outcome,
            l.reason.as_deref().unwrap_or("")
        );
    }
    println!("  open alerts:");
    for a in &v.open_alerts {
        println!(
            "    {} {} [{}] {} {}",
            a.at, a.id, a.severity, a.rule, a.summary
        );
    }
}

struct Paths {
    policy: Policy,
    audit_dir: Option<PathBuf>,
    state: Option<StateDir>,
}

fn load(config: &Path) -> anyhow::Result<Paths> {
    let config = Config::load(config)?;
    let policy = Policy::load_dir(&config.policy.dir, config.policy.settings.clone())
        .map_err(|e| {
            anyhow::anyhow!(
                "the policy in {} is not valid:\n{e}",
                config.policy.dir.display()
            )
        })?
        .policy;
    let state = match &config.detection {
        Some(d) => Some(StateDir::existing(&d.state_dir).with_context(|| {
            format!(
                "the detection state directory {} (has maskgate run with [detection]?)",
                d.state_dir.display()
            )
        })?),
        None => None,
    };
    Ok(Paths {
        policy,
        audit_dir: config.audit.as_ref().map(|a| a.dir.clone()),
        state,
    })
}

fn views(
    config: &Path,
    span: std::time::Duration,
) -> anyhow::Result<BTreeMap<String, AccountView>> {
    let paths = load(config)?;
    let suspended = match &paths.state {
        Some(state) => state.read()?.suspended,
        None => BTreeMap::new(),
    };
    let mut views: BTreeMap<String, AccountView> = paths
        .policy
        .accounts()
        .map(|a| {
            let suspension = suspended.get(&a.login).cloned();
            let status = match (&suspension, a.disabled) {
                (Some(_), _) => "suspended",
                (None, true) => "disabled",
                (None, false) => "active",
            };
            let view = AccountView {
                login: a.login.clone(),
                name: a.name.clone(),
                roles: a.roles.clone(),
                status,
                suspension,
                ..AccountView::default()
            };
            (a.login.clone(), view)
        })
        .collect();
    let Some(dir) = &paths.audit_dir else {
        return Ok(views);
    };
    let since = OffsetDateTime::now_utc() - span;
    let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    maskgate_detect::trail::read_since(dir, Some(since), |line| {
        if !matches!(
            observe::line_kind(line),
            Some("login" | "alert" | "account_unlocked")
        ) {
            return;
        }
        let Some(o) = observe::parse(line) else {
            return;
        };
        if o.time < since {
            return;
        }
        match o.event {
            Observed::Login(l) => {
                if let Some(v) = l.user.as_ref().and_then(|u| views.get_mut(u)) {
                    v.logins.push(LoginView {
                        at: fmt(o.time),
                        client: l.client.map(|c| c.to_string()).unwrap_or_default(),
                        admitted: l.admitted,
                        reason: l.reason,
                    });
                }
            }
            Observed::Alert(a) => {
                if let Some(v) = a.account.as_ref().and_then(|u| views.get_mut(u)) {
                    v.open_alerts.push(AlertView {
                        id: a.id,
                        rule: a.rule.map(|r| r.as_str().to_owned()).unwrap_or_default(),
                        severity: a
                            .severity
                            .map(|s| s.as_str().to_owned())
                            .unwrap_or_default(),
                        at: fmt(a.at.unwrap_or(o.time)),
                        summary: a.summary,
                    });
                }
            }
            Observed::Unlocked { login, .. } => {
                if let Some(v) = views.get_mut(&login) {
                    v.open_alerts.clear();
                }
            }
            _ => {}
        }
    })?;
    Ok(views)
}

fn unlock(config: &Path, login: &str, reason: &str) -> anyhow::Result<()> {
    let reason = reason.trim();
    anyhow::ensure!(
        reason.len() >= 10,
        "--reason must say why the account may be used again (at least 10 characters): it goes into the audit trail"
    );
    let paths = load(config)?;
    let state = paths
        .state
        .context("the configuration has no [detection] section: nothing is suspended")?;
    let by = crate::audit_cmd::os_user();
    #[derive(Debug, thiserror::Error)]
    enum UnlockError {
        #[error(transparent)]
        State(#[from] StateError),
        #[error("{0} is not suspended")]
        NotSuspended(String),
    }
    let alert = state.update(|s| {
        let suspension = s
            .suspended
            .remove(login)
            .ok_or_else(|| UnlockError::NotSuspended(login.to_owned()))?;
        s.unlocks.push(Unlock {
            login: login.to_owned(),
            reason: reason.to_owned(),
            by: by.clone(),
            at: OffsetDateTime::now_utc(),
            alert: Some(suspension.alert.clone()),
        });
        Ok::<_, UnlockError>(suspension.alert)
    })?;
    println!(
        "{login} is unlocked (it was suspended by alert {alert}). A running maskgate lets it in \
         again within a second and records the unlock, with your reason, in the audit trail."
    );
    Ok(())
}
