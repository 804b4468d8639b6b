//! The listener: accepts clients, enforces the connection limit, and runs
//! graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use maskgate_policy::{Policy, PolicyErrors};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState, HealthState};
use crate::cancel::CancelRegistry;
use crate::config::{ClientTlsMode, Config};
use crate::enforcement::Enforcement;
use crate::login::{Lockouts, SessionCounts};
use crate::metrics::Metrics;
use crate::observe::{Event, Events, PolicyReload};
use crate::session;
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
    pub(crate) sessions: Arc<SessionCounts>,
    pub(crate) pool: Arc<Pool>,
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
        self.shared.draining.cancel();
    }

    /// Reads the policy directory again and puts it in force if it is valid.
    /// An invalid policy changes nothing: the error is logged, returned, shown
    /// by `/health` and counted in `/metrics`. Statements already running keep
    /// the policy they started with.
    pub fn reload_policy(&self) -> Result<(), PolicyErrors> {
        let shared = &self.shared;
        let before = shared.policy.load().generation().clone();
        match load_policy(&shared.config) {
            Ok(policy) => {
                let after = policy.generation().clone();
                shared.policy.store(Arc::new(policy));
                shared.health.clear_error();
                shared.events.emit(Event::PolicyReload(PolicyReload {
                    before,
                    outcome: Ok(after),
                }));
                Ok(())
            }
            Err(errors) => {
                let first = errors
                    .0
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                shared.health.set_error(format!(
                    "policy reload refused ({} errors; the previous policy stays in force): {first}",
                    errors.0.len()
                ));
                shared.events.emit(Event::PolicyReload(PolicyReload {
                    before,
                    outcome: Err(errors.to_string()),
                }));
                Err(errors)
            }
        }
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
        let policy = load_policy(&config).map_err(|errors| ServerError::Policy {
            dir: config.policy.dir.clone(),
            errors,
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
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.server.listen,
                source,
            })?;
        let admin = match config.admin_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Bind { addr, source })?,
            ),
            None => None,
        };
        let detection = crate::detection::prepare(config.detection.as_ref())
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
        let shared = Arc::new(Shared {
            policy: ArcSwap::from_pointee(policy),
            enforcement: Enforcement::new(config.policy.pseudonym_keys.clone())
                .with_limits(config.server.analysis),
            lockouts: Lockouts::new(config.server.lockout),
            sessions: Arc::new(SessionCounts::default()),
            pool,
            cancel: CancelRegistry::default(),
            events: Events::start(metrics.clone(), audit),
            suspended: detection.suspended.clone(),
            metrics,
            health: Arc::new(HealthState::new()),
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
                .with_audit(shared.events.audit().map(|t| t.state().clone()));
            tokio::spawn(admin::serve_admin(listener, state, stop_background.clone()))
        });
        let reaper = tokio::spawn(shared.pool.clone().reap_idle(stop_background.clone()));
        let watcher = crate::reload::watch_policy_dir(
            ServerHandle {
                shared: shared.clone(),
            },
            stop_background.clone(),
        );

        let limit = Arc::new(Semaphore::new(shared.config.server.max_client_connections));
        let sessions = TaskTracker::new();
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "maskgate accepting connections");
        }
        loop {
            let accepted = tokio::select! {
                _ = shared.draining.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let permit = limit.clone().try_acquire_owned().ok();
            let shared = shared.clone();
            sessions.spawn(async move {
                let admitted = permit.is_some();
                session::serve(tcp, peer, shared, admitted).await;
                drop(permit);
            });
        }
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
        let _ = watcher.await;
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

/// Loads the policy directory, logging its warnings.
fn load_policy(config: &Config) -> Result<Policy, PolicyErrors> {
    let loaded = Policy::load_dir(&config.policy.dir, config.policy.settings.clone())?;
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
