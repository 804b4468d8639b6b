//! Which rules run, with which thresholds, and what an alert sets off.
//!
//! Every threshold has a default that suits a site of counter clerks and analysts
//! and an absolute minimum: a quiet account must not alert on 6 lookups instead of 4,
//! so a setting below its minimum is refused rather than obeyed.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A detection rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Concurrent sessions, or logins close in time, from different machines.
    AccountSharing,
    /// A client address or certificate never seen for the account.
    NewClient,
    /// Activity at an hour or on a day the account's own history does not have.
    OffHours,
    /// Rows read in an hour far above the account's baseline and its role's peers.
    VolumeSpike,
    /// Many distinct lookup keys, sequential keys, or lookups finding nothing.
    Enumeration,
    /// Bursts of denials, parse failures, cap and quota hits.
    Probing,
    /// Failed logins from one address across several account names.
    LoginBurst,
    /// Unused, expired, unassigned or shared-assignment accounts.
    StaleAccount,
    /// A read of a honeytoken key the policy marks.
    Canary,
}

impl Rule {
    pub const ALL: [Rule; 9] = [
        Rule::AccountSharing,
        Rule::NewClient,
        Rule::OffHours,
        Rule::VolumeSpike,
        Rule::Enumeration,
        Rule::Probing,
        Rule::LoginBurst,
        Rule::StaleAccount,
        Rule::Canary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::AccountSharing => "account_sharing",
            Rule::NewClient => "new_client",
            Rule::OffHours => "off_hours",
            Rule::VolumeSpike => "volume_spike",
            Rule::Enumeration => "enumeration",
            Rule::Probing => "probing",
            Rule::LoginBurst => "login_burst",
            Rule::StaleAccount => "stale_account",
            Rule::Canary => "canary",
        }
    }

    pub fn parse(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// The rules' thresholds, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// The sliding window of the enumeration rule.
    pub enumeration_window: Duration,
    /// Distinct lookup keys in the window that raise an alert.
    pub enumeration_keys: u64,
    /// Distinct keys of one neighbourhood (same value but its last two digits) in
    /// the window: sequential harvesting.
    pub sequential_keys: u64,
    /// Lookups that found nothing in the window.
    pub empty_lookups: u64,
    /// An hour's rows must exceed this many times the account's baseline and its
    /// role peers' baseline.
    pub volume_factor: f64,
    /// …and at least this many rows.
    pub volume_min_rows: u64,
    pub probe_window: Duration,
    /// Denials, parse failures, cap and quota hits in the probe window.
    pub probe_events: u64,
    /// Failed logins from one address in the probe window…
    pub login_burst_failures: u64,
    /// …across at least this many account names.
    pub login_burst_names: u64,
    /// Logins from two addresses closer than this look like a lent account.
    pub address_switch: Duration,
    /// Days of activity an account needs before its own history is used
    /// (off-hours, new client).
    pub history_days: u64,
    /// An account unused for this many days is stale.
    pub stale_days: u64,
    /// An account whose `valid_until` is this close is reported.
    pub expiry_warning_days: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            enumeration_window: Duration::from_secs(3600),
            enumeration_keys: 300,
            sequential_keys: 20,
            empty_lookups: 100,
            volume_factor: 10.0,
            volume_min_rows: 5000,
            probe_window: Duration::from_secs(600),
            probe_events: 20,
            login_burst_failures: 10,
            login_burst_names: 3,
            address_switch: Duration::from_secs(600),
            history_days: 10,
            stale_days: 45,
            expiry_warning_days: 14,
        }
    }
}

/// Everything detection is told.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub thresholds: Thresholds,
    /// Rules whose alerts suspend the account.
    pub suspend: BTreeSet<Rule>,
    /// A rule does not alert twice for the same account within this.
    pub cooldown: Duration,
    /// How far back the trail is read at start to rebuild windows and baselines.
    pub history: Duration,
    /// Where alerts are POSTed as JSON.
    pub webhooks: Vec<String>,
    pub webhook_timeout: Duration,
    /// Attempts per webhook before the alert goes to the dead-letter file.
    pub webhook_attempts: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            thresholds: Thresholds::default(),
            suspend: BTreeSet::new(),
            cooldown: Duration::from_secs(3600),
            history: Duration::from_secs(28 * 86400),
            webhooks: Vec::new(),
            webhook_timeout: Duration::from_secs(5),
            webhook_attempts: 5,
        }
    }
}

/// The `[detection]` section as written (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// Directory for suspensions and the webhook dead-letter file (the proxy
    /// resolves it).
    pub state_dir: Option<String>,
    pub suspend: Option<Vec<String>>,
    pub cooldown: Option<String>,
    pub history: Option<String>,
    pub webhooks: Option<Vec<String>>,
    pub webhook_timeout: Option<String>,
    pub webhook_attempts: Option<u32>,
    pub thresholds: Option<RawThresholds>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThresholds {
    pub enumeration_window: Option<String>,
    pub enumeration_keys: Option<u64>,
    pub sequential_keys: Option<u64>,
    pub empty_lookups: Option<u64>,
    pub volume_factor: Option<f64>,
    pub volume_min_rows: Option<u64>,
    pub probe_window: Option<String>,
    pub probe_events: Option<u64>,
    pub login_burst_failures: Option<u64>,
    pub login_burst_names: Option<u64>,
    pub address_switch: Option<String>,
    pub history_days: Option<u64>,
    pub stale_days: Option<u64>,
    pub expiry_warning_days: Option<u64>,
}

/// A setting that cannot be used; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[detection] {0}")]
pub struct SettingsError(pub String);

fn err(message: impl Into<String>) -> SettingsError {
    SettingsError(message.into())
}

fn duration(
    value: &Option<String>,
    name: &str,
    default: Duration,
    (min, max): (Duration, Duration),
) -> Result<Duration, SettingsError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let d = humantime::parse_duration(text)
        .map_err(|e| err(format!("{name} = {text:?} is not a duration: {e}")))?;
    if d < min || d > max {
        return Err(err(format!(
            "{name} must be between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )));
    }
    Ok(d)
}

fn at_least(value: Option<u64>, name: &str, default: u64, min: u64) -> Result<u64, SettingsError> {
    match value {
        None => Ok(default),
        Some(v) if v >= min => Ok(v),
        Some(_) => Err(err(format!(
            "{name} must be at least {min}: lower values alert on ordinary work"
        ))),
    }
}

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86400);

impl RawThresholds {
    fn validate(&self) -> Result<Thresholds, SettingsError> {
        let d = Thresholds::default();
        let volume_factor = match self.volume_factor {
            None => d.volume_factor,
            Some(f) if f >= 3.0 && f.is_finite() => f,
            Some(_) => return Err(err("thresholds.volume_factor must be at least 3")),
        };
        Ok(Thresholds {
            enumeration_window: duration(
                &self.enumeration_window,
                "thresholds.enumeration_window",
                d.enumeration_window,
                (5 * MINUTE, DAY),
            )?,
            enumeration_keys: at_least(
                self.enumeration_keys,
                "thresholds.enumeration_keys",
                d.enumeration_keys,
                50,
            )?,
            sequential_keys: at_least(
                self.sequential_keys,
                "thresholds.sequential_keys",
                d.sequential_keys,
                8,
            )?,
            empty_lookups: at_least(
                self.empty_lookups,
                "thresholds.empty_lookups",
                d.empty_lookups,
                20,
            )?,
            volume_factor,
            volume_min_rows: at_least(
                self.volume_min_rows,
                "thresholds.volume_min_rows",
                d.volume_min_rows,
                500,
            )?,
            probe_window: duration(
                &self.probe_window,
                "thresholds.probe_window",
                d.probe_window,
                (MINUTE, DAY),
            )?,
            probe_events: at_least(
                self.probe_events,
                "thresholds.probe_events",
                d.probe_events,
                5,
            )?,
            login_burst_failures: at_least(
                self.login_burst_failures,
                "thresholds.login_burst_failures",
                d.login_burst_failures,
                5,
            )?,
            login_burst_names: at_least(
                self.login_burst_names,
                "thresholds.login_burst_names",
                d.login_burst_names,
                2,
            )?,
            address_switch: duration(
                &self.address_switch,
                "thresholds.address_switch",
                d.address_switch,
                (MINUTE, DAY),
            )?,
            history_days: at_least(
                self.history_days,
                "thresholds.history_days",
                d.history_days,
                5,
            )?,
            stale_days: at_least(self.stale_days, "thresholds.stale_days", d.stale_days, 7)?,
            expiry_warning_days: at_least(
                self.expiry_warning_days,
                "thresholds.expiry_warning_days",
                d.expiry_warning_days,
                1,
            )?,
        })
    }
}

impl RawSettings {
    /// Checks every value against its bounds.
    pub fn validate(&self) -> Result<Settings, SettingsError> {
        let d = Settings::default();
        let mut suspend = BTreeSet::new();
        for name in self.suspend.iter().flatten() {
            let rule = Rule::parse(name).ok_or_else(|| {
                let known: Vec<_> = Rule::ALL.iter().map(|r| r.as_str()).collect();
                err(format!(
                    "suspend: unknown rule {name:?}; rules are {}",
                    known.join(", ")
                ))
            })?;
            suspend.insert(rule);
        }
        let webhooks = self.webhooks.clone().unwrap_or_default();
        for url in &webhooks {
            crate::webhook::Target::parse(url)
                .map_err(|e| err(format!("webhooks: {url:?}: {e}")))?;
        }
        let webhook_attempts = match self.webhook_attempts {
            None => d.webhook_attempts,
            Some(n @ 1..=20) => n,
            Some(_) => return Err(err("webhook_attempts must be between 1 and 20")),
        };
        Ok(Settings {
            thresholds: self
                .thresholds
                .as_ref()
                .map_or(Ok(d.thresholds), |t| t.validate())?,
            suspend,
            cooldown: duration(&self.cooldown, "cooldown", d.cooldown, (MINUTE, 7 * DAY))?,
            history: duration(&self.history, "history", d.history, (DAY, 400 * DAY))?,
            webhooks,
            webhook_timeout: duration(
                &self.webhook_timeout,
                "webhook_timeout",
                d.webhook_timeout,
                (Duration::from_millis(100), MINUTE),
            )?,
            webhook_attempts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, SettingsError> {
        let raw: RawSettings = toml::from_str(text).expect("toml");
        raw.validate()
    }

    #[test]
    fn defaults_and_overrides() {
        let s = parse("").unwrap();
        assert_eq!(s, Settings::default());
        let s = parse(
            "suspend = [\"enumeration\", \"canary\"]\n[thresholds]\nenumeration_keys = 60\nprobe_window = \"5m\"\n",
        )
        .unwrap();
        assert!(s.suspend.contains(&Rule::Canary));
        assert_eq!(s.thresholds.enumeration_keys, 60);
        assert_eq!(s.thresholds.probe_window, Duration::from_secs(300));
    }

    #[test]
    fn minimums_are_enforced() {
        for bad in [
            "[thresholds]\nenumeration_keys = 6",
            "[thresholds]\nprobe_events = 1",
            "[thresholds]\nvolume_factor = 1.5",
            "[thresholds]\nenumeration_window = \"1s\"",
            "suspend = [\"everything\"]",
            "webhooks = [\"ftp://x\"]",
            "history = \"1h\"",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
