//! The listener: accepts clients into their budgets (see [`crate::admission`]),
//! and runs graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use maskgate_policy::{Policy, PolicyErrors, Rejected};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState, HealthState};
use crate::admission::{Admission, Admit, Budgets, FdBudget};
use crate::cancel::CancelRegistry;
use crate::config::{ClientTlsMode, Config};
use crate::enforcement::Enforcement;
use crate::login::{Lockouts, SessionCounts};
use crate::metrics::{Metrics, RejectReason};
use crate::observe::Events;
use crate::reload::ReloadError;
use crate::session;
use crate::throttle::{AcceptBackoff, Throttled};
use crate::tls::{self, TlsError};
use crate::upstream::pool::Pool;
use crate::upstream::Connector;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("client TLS: {0}")]
    ClientTls(#[source] TlsError),
    #[error("upstream TLS: {0}")]
    UpstreamTls(#[source] TlsError),
    #[error("the policy in {dir} is not valid:\n{errors}")]
    Policy { dir: PathBuf, errors: PolicyErrors },
    #[error("audit trail: {0}")]
    Audit(#[source] crate::audit::StartError),
    #[error("detection: {0}")]
    Detection(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// State shared by the listener and every session.
pub struct Shared {
    pub(crate) config: Config,
    /// The policy in force; swapped whole on reload, so a statement keeps the
    /// policy it started with.
    pub(crate) policy: ArcSwap<Policy>,
    /// Per-account enforcers, decision caches and quotas.
    pub(crate) enforcement: Enforcement,
    pub(crate) lockouts: Lockouts,
    /// Named login refusals past a few per address and reason, summed up.
    pub(crate) refusals: crate::login::RefusalSummaries,
    /// Large client messages buffered at once, all sessions together.
    pub(crate) message_budget: crate::session::message_budget::MessageBudget,
    pub(crate) sessions: Arc<SessionCounts>,
    pub(crate) pool: Arc<Pool>,
    /// Places for connections logging in and for authenticated sessions.
    pub(crate) admission: Admission,
    /// The open-file limit and the budgets fitted to it.
    pub(crate) fd: FdBudget,
    pub(crate) cancel: CancelRegistry,
    pub(crate) metrics: Arc<Metrics>,
    /// Where every login, session end, refusal and reload is reported.
    pub(crate) events: Events,
    /// Accounts suspended by detection: refused at login, ended at their next message.
    pub(crate) suspended: Arc<crate::detection::Suspended>,
    pub(crate) health: Arc<HealthState>,
    pub(crate) tls: Option<TlsAcceptor>,
    /// Keys the mock SCRAM exchange for unknown users.
    pub(crate) server_secret: [u8; 32],
    /// Stop accepting; sessions end when next idle.
    pub(crate) draining: CancellationToken,
    /// The grace period is over; sessions end now.
    pub(crate) force: CancellationToken,
}

/// A bound, not yet running proxy.
pub struct Server {
    listener: TcpListener,
    admin: Option<TcpListener>,
    shared: Arc<Shared>,
}

/// Controls a running server from outside (signals, tests).
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Starts a graceful shutdown: no new connections; sessions end when idle
    /// or, at the latest, when the grace period is over.
    pub fn shutdown(&self) {
        self.shared.health.set_draining();
        self.shared.draining.cancel();
    }

    /// Reads the policy directory again and puts it in force if it is valid and
    /// removes no more accounts than the guard allows. A refused policy changes
    /// nothing: the reason is logged, returned, shown by `/health` and counted in
    /// `/metrics`. Statements already running keep the policy they started with.
    pub fn reload_policy(&self) -> Result<(), ReloadError> {
        crate::reload::reload(&self.shared)
    }

    /// [`ServerHandle::reload_policy`], read again after a pause while the files
    /// are still being written.
    pub async fn reload_policy_settled(&self) -> Result<(), ReloadError> {
        crate::reload::reload_settled(&self.shared).await
    }

    /// The directory the policy is read from.
    pub fn policy_dir(&self) -> &std::path::Path {
        &self.shared.config.policy.dir
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }
}

impl Server {
    /// Loads the accounts and TLS material and binds the listeners.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let policy = load_policy(&config).map_err(|rejected| ServerError::Policy {
            dir: config.policy.dir.clone(),
            errors: rejected.errors,
        })?;
        let tls = match config.client_tls.mode {
            ClientTlsMode::Disable => None,
            ClientTlsMode::Require | ClientTlsMode::Prefer => {
                let cert = config.client_tls.cert.as_deref().expect("validated config");
                let key = config.client_tls.key.as_deref().expect("validated config");
                let server_config =
                    tls::server_config(cert, key).map_err(ServerError::ClientTls)?;
                Some(TlsAcceptor::from(server_config))
            }
        };
        let upstream_tls =
            tls::upstream_config(config.upstream.tls, config.upstream.ca_file.as_deref())
                .map_err(ServerError::UpstreamTls)?;
        let listener =
            listen(config.server.listen, config.server.listen_backlog).map_err(|source| {
                ServerError::Bind {
                    addr: config.server.listen,
                    source,
                }
            })?;
        let admin = match config.admin_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Bind { addr, source })?,
            ),
            None => None,
        };
        let audit_dir = config.audit.as_ref().map(|a| a.dir.as_path());
        let detection = crate::detection::prepare(config.detection.as_ref(), audit_dir)
            .map_err(|e| ServerError::Detection(e.to_string()))?;
        let audit = match &config.audit {
            Some(audit) => Some(
                crate::audit::Trail::start_with_feed(
                    audit,
                    crate::audit::ProxyStart {
                        instance: crate::audit::instance().to_owned(),
                        version: env!("CARGO_PKG_VERSION"),
                        policy: policy.generation().to_string(),
                        strict: audit.strict,
                    },
                    detection.feed.clone(),
                )
                .map_err(ServerError::Audit)?,
            ),
            None => {
                tracing::warn!(
                    "no [audit] section in the configuration: statements and logins are not \
                     recorded in an audit trail"
                );
                None
            }
        };
        let metrics = Arc::new(Metrics::new());
        let connector = Connector::new(Arc::new(config.upstream.clone()), upstream_tls)
            .with_pseudonym_keys(&config.policy.pseudonym_keys);
        let pool = Arc::new(Pool::new(connector, metrics.clone()));
        let server_secret = mock_secret(&config);
        let fd = fd_budget(&config);
        let health = Arc::new(HealthState::new());
        if policy.accounts().next().is_none() {
            tracing::warn!("the policy has no accounts: no one can log in");
            health.set(crate::reload::COMPONENT, crate::reload::NO_ACCOUNTS);
        }
        let shared = Arc::new(Shared {
            policy: ArcSwap::from_pointee(policy),
            enforcement: Enforcement::new(config.policy.pseudonym_keys.clone())
                .with_limits(config.server.analysis)
                .with_cache_bytes(config.server.decision_cache_bytes),
            lockouts: Lockouts::new(config.server.lockout),
            refusals: Default::default(),
            message_budget: crate::session::message_budget::MessageBudget::new(
                config.server.message_buffer_bytes,
            ),
            sessions: Arc::new(SessionCounts::default()),
            pool,
            admission: Admission::new(fd.budgets),
            fd,
            cancel: CancelRegistry::default(),
            events: Events::start(metrics.clone(), audit),
            suspended: detection.suspended.clone(),
            metrics,
            health,
            tls,
            server_secret,
            draining: CancellationToken::new(),
            force: CancellationToken::new(),
            config,
        });
        detection
            .start(&shared)
            .map_err(|e| ServerError::Detection(e.to_string()))?;
        Ok(Server {
            listener,
            admin,
            shared,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until a shutdown completes.
    pub async fn run(self) {
        let Server {
            listener,
            admin,
            shared,
        } = self;
        let stop_background = CancellationToken::new();
        let admin_task = admin.map(|listener| {
            let state = AdminState::new(shared.metrics.clone(), shared.health.clone())
                .with_audit(shared.events.audit().map(|t| t.state().clone()))
                .with_live(shared.clone());
            let limits = crate::config::AdminLimits {
                max_connections: shared.fd.budgets.admin,
                ..shared.config.admin
            };
            tokio::spawn(admin::serve_admin(
                listener,
                state,
                limits,
                stop_background.clone(),
            ))
        });
        let reaper = tokio::spawn(shared.pool.clone().reap_idle(stop_background.clone()));
        let summaries = tokio::spawn(sum_up_refusals(shared.clone(), stop_background.clone()));
        let probe = shared.config.upstream.health_check_interval.map(|every| {
            tokio::spawn(crate::upstream::probe::watch(
                shared.pool.connector().clone(),
                shared.health.clone(),
                (every, shared.config.upstream.checkout_timeout),
                stop_background.clone(),
            ))
        });
        let watcher = crate::reload::watch_policy_dir(shared.clone(), stop_background.clone());

        let sessions = TaskTracker::new();
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "maskgate accepting connections");
        }
        accept_loop(&listener, &shared, &sessions).await;
        shared.health.set_draining();
        drop(listener);
        sessions.close();

        let grace = shared.config.server.shutdown_grace;
        tracing::info!(
            sessions = sessions.len(),
            ?grace,
            "shutting down: waiting for sessions to finish"
        );
        if tokio::time::timeout(grace, sessions.wait()).await.is_err() {
            tracing::warn!(
                sessions = sessions.len(),
                "grace period over: closing the remaining sessions"
            );
            shared.force.cancel();
            sessions.wait().await;
        }
        stop_background.cancel();
        let _ = reaper.await;
        let _ = summaries.await;
        let _ = watcher.await;
        if let Some(probe) = probe {
            let _ = probe.await;
        }
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        shared.pool.close_all();
        if let Some(trail) = shared.events.audit().cloned() {
            let closed = tokio::task::spawn_blocking(move || {
                trail.close_blocking(crate::audit::ProxyStop {
                    instance: crate::audit::instance().to_owned(),
                })
            });
            let _ = closed.await;
        }
        tracing::info!("maskgate stopped");
    }
}

/// Accepts clients until the drain starts. Each connection gets a place among
/// those logging in, or is told there is no room (53300), or, when even the
/// refusals are all busy, is closed at once; refusals are logged once per ten
/// seconds, with their count.
async fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, sessions: &TaskTracker) {
    let mut backoff = AcceptBackoff::new("client listener");
    let mut refusals = Throttled::default();
    loop {
        let accepted = tokio::select! {
            _ = shared.draining.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            // An IPv4 client of a dual-stack listener is known by its IPv4 address
            // everywhere: budgets, lockouts, the policy's networks, logs, the trail.
            Ok((tcp, peer)) => {
                backoff.succeeded();
                (tcp, SocketAddr::new(peer.ip().to_canonical(), peer.port()))
            }
            Err(e) => {
                shared.metrics.guards().accept_error();
                backoff.failed(&e).await;
                continue;
            }
        };
        let admit = shared.admission.admit(peer.ip());
        if !matches!(admit, Admit::Login(_)) {
            shared.metrics.client_rejected(RejectReason::PendingLogins);
            if let Some(refused) = refusals.note() {
                tracing::warn!(
                    refused,
                    pending = shared.admission.pending(),
                    "connections refused: too many are logging in (max_pending_logins, \
                     max_pending_logins_per_address)"
                );
            }
        }
        match admit {
            Admit::Login(pending) => {
                sessions.spawn(session::serve(tcp, peer, shared.clone(), pending));
            }
            Admit::Refuse(permit) => {
                sessions.spawn(session::refuse_busy(tcp, permit));
            }
            Admit::Close => drop(tcp),
        }
    }
}

/// Writes the summaries of login refusals at the end of each window, and once more
/// at `stop`.
async fn sum_up_refusals(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let stopped = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(crate::login::refusals::WINDOW) => false,
        };
        for summary in shared.refusals.take() {
            shared
                .events
                .emit(crate::observe::Event::LoginRefusals(summary));
        }
        if stopped {
            return;
        }
    }
}

/// The gauges of the budgets and bounded tables, read at each scrape.
impl admin::LiveMetrics for Shared {
    fn append(&self, text: &mut String) {
        let gauge = |text: &mut String, name: &str, help: &str, value: usize| {
            admin::append_gauge(text, name, help, value as f64)
        };
        let budgets = self.fd.budgets;
        gauge(
            text,
            "maskgate_pending_logins",
            "Connections logging in now",
            self.admission.pending(),
        );
        gauge(
            text,
            "maskgate_pending_logins_limit",
            "Connections that may be logging in at once (max_pending_logins, fitted to the open-file limit)",
            budgets.pending,
        );
        gauge(
            text,
            "maskgate_client_sessions_limit",
            "Authenticated sessions that may be open at once (max_client_connections, fitted to the open-file limit)",
            budgets.sessions,
        );
        gauge(
            text,
            "maskgate_open_files_limit",
            "The process's soft limit of open files",
            self.fd.limit as usize,
        );
        if let Ok(open) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                text,
                "maskgate_open_files",
                "Files the process has open",
                open.count(),
            );
        }
        let (names, addresses) = self.lockouts.tracked();
        gauge(
            text,
            "maskgate_login_names_tracked",
            "Login names with recent failed logins (bounded by lockout_table_size for names not in the policy)",
            names,
        );
        gauge(
            text,
            "maskgate_client_addresses_tracked",
            "Client addresses with recent failed logins (bounded by lockout_table_size)",
            addresses,
        );
        gauge(
            text,
            "maskgate_decision_cache_bytes",
            "Bytes the analyzer's caches (decisions and checked shapes) hold, by their estimate (bounded by decision_cache_bytes)",
            self.enforcement.cached_bytes() as usize,
        );
        gauge(
            text,
            "maskgate_upstream_responsive",
            "1 while the database server answers the health probe in time",
            usize::from(!self.health.has(crate::upstream::probe::COMPONENT)),
        );
        gauge(
            text,
            "maskgate_policy_accounts",
            "Accounts in the policy in force",
            self.policy.load().accounts().count(),
        );
    }
}

/// Raises the open-file limit and fits the connection budgets to it, warning when
/// the limit is too low for the configuration.
fn fd_budget(config: &Config) -> FdBudget {
    let wanted = Budgets {
        sessions: config.server.max_client_connections,
        pending: config.server.max_pending_logins,
        pending_per_address: config.server.max_pending_logins_per_address,
        refusing: REFUSAL_SLOTS.min(config.server.max_pending_logins),
        admin: config
            .admin_listen
            .map_or(0, |_| config.admin.max_connections),
    };
    let limit = crate::admission::raise_fd_limit().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read the open-file limit; assuming 1024");
        1024
    });
    // Idle pooled connections and the health probe hold upstream descriptors too.
    let plan = FdBudget::plan(wanted, config.upstream.pool_size + 1, limit);
    if plan.budgets != wanted {
        let b = plan.budgets;
        tracing::warn!(
            limit,
            needed = plan.needed,
            sessions = b.sessions,
            pending_logins = b.pending,
            admin_connections = b.admin,
            "the open-file limit is too low for the configured connection limits; they \
             are lowered to fit (raise the limit, e.g. LimitNOFILE= in the systemd unit)"
        );
    } else if limit < 2 * plan.needed {
        tracing::info!(
            limit,
            needed = plan.needed,
            "the open-file limit leaves little room above the configured connection limits"
        );
    }
    plan
}

/// Binds the client listener with a listen queue of `backlog`: the standard
/// library's 128 overflows under a burst of connections long before the budgets
/// are reached.
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Connections told at once that there is no room for them.
const REFUSAL_SLOTS: usize = 32;

/// Loads the policy directory, logging its warnings.
pub(crate) fn load_policy(config: &Config) -> Result<Policy, Rejected> {
    let loaded = Policy::check_dir(&config.policy.dir, config.policy.settings.clone())?;
    for warning in &loaded.warnings {
        tracing::warn!("policy: {warning}");
    }
    Ok(loaded.policy)
}

/// The key for mock SCRAM exchanges. Derived from the upstream password when
/// there is one, so an unknown user's fake salt stays the same across
/// restarts (a salt that changed would betray a non-existent account).
fn mock_secret(config: &Config) -> [u8; 32] {
    match &config.upstream.password {
        Some(password) => {
            let mut h = Sha256::new();
            h.update(b"maskgate mock scram v1\0");
            h.update(password.expose().as_bytes());
            h.finalize().into()
        }
        None => rand::random(),
    }
}
