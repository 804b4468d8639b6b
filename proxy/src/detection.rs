//! Detection in the proxy: a thread that reads every record the audit writer
//! appends, raises alerts, and answers them — an `alert` record in the trail, a
//! webhook POST, and for the rules configured so, the account's suspension.
//!
//! It is off the statement path: the writer hands it each line with `try_send`,
//! after the record is written, and never waits for it. Sessions only read the
//! [`Suspended`] set: an atomic generation per statement, a map lookup at login.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use maskgate_detect::{AccountInfo, Alert, Detector, StateDir, StateError, Webhooks};
use maskgate_policy::Policy;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::audit::{self, kind, Payload, Trail};
use crate::config::DetectionConfig;
use crate::server::Shared;

/// How often the suspensions file and the policy are looked at again.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// The suspended logins, as sessions check them.
#[derive(Debug, Default)]
pub struct Suspended {
    logins: RwLock<HashMap<String, String>>,
    /// Bumped on every change, so a session checks the map only after one.
    generation: AtomicU64,
}

impl Suspended {
    pub fn is_suspended(&self, login: &str) -> bool {
        self.logins
            .read()
            .map(|m| m.contains_key(login))
            .unwrap_or(true)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn replace(&self, logins: HashMap<String, String>) {
        if let Ok(mut map) = self.logins.write() {
            if *map != logins {
                *map = logins;
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    fn add(&self, login: &str, alert: &str) {
        if let Ok(mut map) = self.logins.write() {
            map.insert(login.to_owned(), alert.to_owned());
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Reads the suspensions the state directory holds; a proxy does not start
/// without knowing them (fail closed). Suspensions the trail's `account_suspended`
/// records hold (of the window detection reads back) that the file lost without
/// an unlock are put back first, before any login is served; they are returned
/// to be recorded.
pub fn load_suspended(
    config: &DetectionConfig,
    audit_dir: Option<&Path>,
) -> Result<(StateDir, Suspended, Restored), StateError> {
    let state = StateDir::open(&config.state_dir)?;
    let from_trail = match audit_dir {
        // A first start has no trail yet.
        Some(dir) if dir.exists() => trail_suspensions(dir, &config.settings),
        _ => BTreeMap::new(),
    };
    let (restored, now) = state.update(|s| {
        let restored = restore(s, &from_trail);
        Ok::<_, StateError>((restored, s.suspended.clone()))
    })?;
    let suspended = Suspended::default();
    suspended.replace(
        now.iter()
            .map(|(l, s)| (l.clone(), s.alert.clone()))
            .collect(),
    );
    let restored = Restored {
        restored,
        known: now,
    };
    Ok((state, suspended, restored))
}

/// Suspensions lost from the state file and put back from the trail, and the
/// suspensions in force at start.
pub struct Restored {
    pub restored: Vec<(String, maskgate_detect::Suspension)>,
    pub known: BTreeMap<String, maskgate_detect::Suspension>,
}

/// The accounts the trail shows suspended and not unlocked since, over what
/// detection reads back at start (`history`, or `stale_days` if longer).
fn trail_suspensions(
    dir: &Path,
    settings: &maskgate_detect::Settings,
) -> BTreeMap<String, maskgate_detect::Suspension> {
    use maskgate_detect::observe::{self, Observed};
    let now = OffsetDateTime::now_utc();
    let stale = time::Duration::days(settings.thresholds.stale_days as i64);
    let since = (now - settings.history).min(now - stale);
    let mut out = BTreeMap::new();
    let read = maskgate_detect::trail::read_since(dir, Some(since), |line| {
        if !matches!(
            observe::line_kind(line),
            Some(kind::ACCOUNT_SUSPENDED | kind::ACCOUNT_UNLOCKED)
        ) {
            return;
        }
        match observe::parse(line).map(|o| (o.time, o.event)) {
            Some((at, Observed::Suspended { login, alert })) => {
                let alert = alert.unwrap_or_default();
                let suspension = maskgate_detect::Suspension {
                    since: at,
                    rule: alert.split('-').next().unwrap_or_default().to_owned(),
                    alert,
                    summary: "restored from the audit trail".into(),
                };
                out.insert(login, suspension);
            }
            Some((_, Observed::Unlocked { login, .. })) => {
                out.remove(&login);
            }
            _ => {}
        }
    });
    if let Err(e) = read {
        tracing::error!(error = %e, "the audit trail could not be read for suspensions the state file may have lost");
    }
    out
}

/// Puts back into `s` the suspensions of `known` it lost without an unlock;
/// returns them.
fn restore(
    s: &mut maskgate_detect::Suspensions,
    known: &BTreeMap<String, maskgate_detect::Suspension>,
) -> Vec<(String, maskgate_detect::Suspension)> {
    let mut restored = Vec::new();
    for (login, suspension) in known {
        let unlocked = s.unlocks.iter().any(|u| &u.login == login);
        if !unlocked && !s.suspended.contains_key(login) {
            s.suspended.insert(login.clone(), suspension.clone());
            restored.push((login.clone(), suspension.clone()));
        }
    }
    restored
}

fn logins(s: &maskgate_detect::Suspensions) -> HashMap<String, String> {
    s.suspended
        .iter()
        .map(|(login, s)| (login.clone(), s.alert.clone()))
        .collect()
}

struct Service {
    shared: Arc<Shared>,
    trail: Trail,
    detector: Detector,
    state: StateDir,
    webhooks: Option<Webhooks>,
    audit_dir: PathBuf,
    policy: Option<Arc<Policy>>,
    state_seen: Option<SystemTime>,
    follow: Follow,
    /// The suspensions last read from the state file, to tell a suspension lifted
    /// by an unlock from one that vanished from the file.
    known: BTreeMap<String, maskgate_detect::Suspension>,
    /// Put back from the trail at start, to be recorded.
    restored: Vec<(String, maskgate_detect::Suspension)>,
}

/// Starts the detection thread. It reads the last `history` of the trail first,
/// then the records the writer hands over on `lines`, and stops when the writer does.
pub fn start(
    shared: Arc<Shared>,
    config: &DetectionConfig,
    (state, restored): (StateDir, Restored),
    lines: Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let (Some(trail), Some(audit)) = (shared.events.audit().cloned(), shared.config.audit.as_ref())
    else {
        return Ok(());
    };
    let settings = config.settings.clone();
    let webhooks = if settings.webhooks.is_empty() {
        None
    } else {
        let targets = settings
            .webhooks
            .iter()
            .filter_map(|url| maskgate_detect::Target::parse(url).ok())
            .collect();
        Some(Webhooks::start(
            targets,
            maskgate_detect::webhook::DeliverySettings {
                timeout: settings.webhook_timeout,
                attempts: settings.webhook_attempts,
                retry_every: maskgate_detect::webhook::RETRY_EVERY,
            },
            state.dead_letter(),
        )?)
    };
    let tz = shared.policy.load().settings().timezone;
    // A file deleted before the first look is a change too.
    let state_seen = state.modified();
    let service = Service {
        audit_dir: audit.dir.clone(),
        detector: Detector::new(settings, tz),
        trail,
        state,
        webhooks,
        policy: None,
        state_seen,
        follow: Follow::default(),
        known: restored.known,
        restored: restored.restored,
        shared,
    };
    std::thread::Builder::new()
        .name("maskgate-detect".into())
        .spawn(move || service.run(lines))?;
    Ok(())
}

impl Service {
    fn run(mut self, lines: Receiver<Vec<u8>>) {
        let restored = std::mem::take(&mut self.restored);
        self.record_restored(restored);
        self.follow_policy();
        self.replay();
        let mut last_poll = Instant::now();
        loop {
            match lines.recv_timeout(POLL_EVERY) {
                Ok(line) => self.live(&line),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_poll.elapsed() >= POLL_EVERY {
                last_poll = Instant::now();
                self.follow_policy();
                self.follow_state();
                self.catch_up();
                let alerts = self.detector.tick(OffsetDateTime::now_utc());
                self.respond(alerts);
            }
        }
    }

    /// Rebuilds windows and baselines from the trail's last `history`, and the
    /// accounts' last logins from the last `stale_days` if that is longer.
    fn replay(&mut self) {
        let now = OffsetDateTime::now_utc();
        let settings = self.detector.settings();
        let full_from = now - settings.history;
        let stale = time::Duration::days(settings.thresholds.stale_days as i64);
        let since = full_from.min(now - stale);
        let started = Instant::now();
        self.detector.begin_replay();
        let detector = &mut self.detector;
        let read = maskgate_detect::trail::read_since(&self.audit_dir, Some(since), |line| {
            let recent = maskgate_detect::trail::line_time(line).is_some_and(|t| t >= full_from);
            let kind = maskgate_detect::observe::line_kind(line);
            let kept = matches!(
                kind,
                Some("login" | "account_suspended" | "account_unlocked")
            );
            if recent || kept {
                detector.ingest_line(line);
            }
        });
        let pending = self.detector.end_replay();
        match read {
            Ok(lines) => tracing::info!(
                lines,
                records = self.detector.records(),
                ms = started.elapsed().as_millis() as u64,
                "detection rebuilt its windows from the audit trail"
            ),
            Err(e) => {
                tracing::error!(error = %e, "detection could not read the audit trail back; its windows start empty")
            }
        }
        self.respond(pending);
    }

    fn live(&mut self, line: &[u8]) {
        let alerts = self
            .follow
            .line(&mut self.detector, self.trail.state(), line);
        self.respond(alerts);
    }

    fn catch_up(&mut self) {
        let alerts = self
            .follow
            .catch_up(&mut self.detector, self.trail.state(), &self.audit_dir);
        self.respond(alerts);
    }

    /// Honeytokens, accounts and time zone of the policy in force.
    fn follow_policy(&mut self) {
        let policy = self.shared.policy.load_full();
        if self
            .policy
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, &policy))
        {
            return;
        }
        let fingerprinter = self.trail.fingerprinter();
        // Canonical for the canary's column, as the writer fingerprints lookups.
        self.detector
            .set_canaries(policy.canaries().iter().filter_map(|c| {
                let column = policy.tables().get(&c.table)?.columns.get(&c.column)?;
                let kind = maskgate_detect::KeyKind::of(&column.pg_type);
                let print = fingerprinter.key(maskgate_detect::RawKey::Text(&c.value), kind)?;
                Some(print.k)
            }));
        self.detector.set_accounts(
            policy
                .accounts()
                .map(|a| AccountInfo {
                    login: a.login.clone(),
                    roles: a.roles.clone(),
                    valid_until: a.valid_until,
                    disabled: a.disabled,
                    assignment: a.assignment.as_ref().map(|x| x.document.clone()),
                })
                .collect(),
        );
        self.detector.set_timezone(policy.settings().timezone);
        self.policy = Some(policy);
    }

    /// Suspensions changed on disk (an unlock): take them, and record the unlocks.
    /// A suspension gone from the file without an unlock (the file deleted or
    /// edited) is put back, logged and recorded: only `account unlock` lifts one.
    fn follow_state(&mut self) {
        let modified = self.state.modified();
        if modified == self.state_seen {
            return;
        }
        self.state_seen = modified;
        let known = std::mem::take(&mut self.known);
        let changes = self.state.update(|s| {
            let restored = restore(s, &known);
            self.shared.suspended.replace(logins(s));
            Ok::<_, StateError>((
                std::mem::take(&mut s.unlocks),
                restored,
                s.suspended.clone(),
            ))
        });
        match changes {
            Ok((unlocks, restored, now)) => {
                self.known = now;
                for u in unlocks {
                    tracing::warn!(login = ?u.login, by = ?u.by, "account unlocked by an officer");
                    self.trail.record_event(
                        kind::ACCOUNT_UNLOCKED,
                        Payload::AccountUnlocked(audit::AccountUnlocked {
                            login: u.login,
                            reason: u.reason,
                            by: u.by,
                            requested: u.at.format(&Rfc3339).unwrap_or_default(),
                            alert: u.alert,
                        }),
                    );
                }
                self.record_restored(restored);
                self.state_seen = self.state.modified();
            }
            Err(e) => {
                self.known = known;
                tracing::error!(error = %e, "the suspensions file cannot be read; the suspensions in force are kept")
            }
        }
    }

    fn record_restored(&self, restored: Vec<(String, maskgate_detect::Suspension)>) {
        for (login, s) in restored {
            tracing::error!(login = ?login, alert = %s.alert, "a suspension vanished from the suspensions file without an unlock; it is put back");
            self.trail.record_event(
                kind::ACCOUNT_SUSPENDED,
                Payload::AccountSuspended(audit::AccountSuspended {
                    login,
                    alert: s.alert,
                    rule: s.rule,
                    restored: Some("vanished from the suspensions file without an unlock"),
                }),
            );
        }
    }

    fn respond(&mut self, alerts: Vec<Alert>) {
        for alert in alerts {
            tracing::warn!(
                id = %alert.id,
                rule = %alert.rule,
                severity = alert.severity.as_str(),
                account = ?alert.account,
                client = ?alert.client,
                summary = %alert.summary,
                "detection alert"
            );
            if alert.suspended {
                if let Some(login) = &alert.account {
                    self.suspend(login, &alert);
                }
            }
            if let Some(webhooks) = &self.webhooks {
                webhooks.send(alert.to_json());
            }
            self.trail.record_event(kind::ALERT, Payload::Alert(alert));
        }
    }

    /// Suspends `login`: in memory at once (its sessions end at their next
    /// message, its logins are refused), then on disk and in the trail.
    fn suspend(&mut self, login: &str, alert: &Alert) {
        if self.shared.suspended.is_suspended(login) {
            return;
        }
        self.shared.suspended.add(login, &alert.id);
        let suspension = maskgate_detect::Suspension {
            since: OffsetDateTime::now_utc(),
            rule: alert.rule.as_str().to_owned(),
            alert: alert.id.clone(),
            summary: alert.summary.clone(),
        };
        self.known.insert(login.to_owned(), suspension.clone());
        let saved = self.state.update(|s| {
            s.suspended.entry(login.to_owned()).or_insert(suspension);
            Ok::<_, StateError>(())
        });
        if let Err(e) = saved {
            tracing::error!(error = %e, login = ?login, "a suspension could not be saved; it holds until maskgate restarts");
        }
        self.state_seen = self.state.modified();
        self.trail.record_event(
            kind::ACCOUNT_SUSPENDED,
            Payload::AccountSuspended(audit::AccountSuspended {
                login: login.to_owned(),
                alert: alert.id.clone(),
                rule: alert.rule.as_str().to_owned(),
                restored: None,
            }),
        );
    }
}

#[path = "detection_follow.rs"]
mod follow;
use follow::Follow;

/// Lines waiting for detection; past this the writer drops them (counted).
const QUEUE: usize = 65_536;

/// Detection set up before the server's shared state exists, started after.
pub(crate) struct Prepared {
    /// For the audit writer: where it hands every line.
    pub feed: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    pub suspended: Arc<Suspended>,
    rest: Option<(DetectionConfig, StateDir, Restored, Receiver<Vec<u8>>)>,
}

/// Reads the suspensions (checked against the trail in `audit_dir`) and makes the
/// writer's feed, if detection is configured.
pub(crate) fn prepare(
    config: Option<&DetectionConfig>,
    audit_dir: Option<&Path>,
) -> Result<Prepared, StateError> {
    let Some(config) = config else {
        return Ok(Prepared {
            feed: None,
            suspended: Arc::default(),
            rest: None,
        });
    };
    let (state, suspended, restored) = load_suspended(config, audit_dir)?;
    let (feed, lines) = std::sync::mpsc::sync_channel(QUEUE);
    Ok(Prepared {
        feed: Some(feed),
        suspended: Arc::new(suspended),
        rest: Some((config.clone(), state, restored, lines)),
    })
}

impl Prepared {
    /// Starts the detection thread (once the server's shared state exists).
    pub(crate) fn start(self, shared: &Arc<Shared>) -> std::io::Result<()> {
        match self.rest {
            Some((config, state, restored, lines)) => {
                start(shared.clone(), &config, (state, restored), lines)
            }
            None => Ok(()),
        }
    }
}
