//! One client connection, from its first byte to its last.
//!
//! Login (TLS, startup, SCRAM) must finish within `login_timeout`; the
//! session then attaches an upstream connection, applies the client's
//! session settings to it, and relays until either side ends. Every way a
//! session can end sends the client a PostgreSQL error that says why.

mod account_guard;
mod audit;
mod auto_prepare;
mod copy_check;
mod handshake;
mod intercept;
mod login;
mod message_types;
pub mod params;
mod pipeline;
mod relay;
mod rule_errors;
mod rules;
mod statements;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use maskgate_policy::Policy;

use crate::admission::PendingPermit;
use crate::auth::AuthError;
use crate::enforcement::AccountRules;
use crate::error::{ClientError, SqlState, UserFacingError};
use crate::login::SessionSlot;
use crate::metrics::RejectReason;
use crate::observe::{Event, LoginAttempt, LoginOutcome, SessionContext, SessionEnd, SessionEnded};
use crate::protocol;
use crate::protocol::io::ReadError;
use crate::server::Shared;
use crate::stream::Stream;
use crate::upstream::{UpstreamConn, UpstreamError};
use account_guard::AccountGuard;
use params::StartupRequest;
use relay::{Controls, Relay, RelayEnd};
use rules::SessionRules;

/// Why a session could not start; sent to the client when the connection still allows it.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// Refused by a login rule; the reason is counted, the error sent.
    #[error("{1}")]
    Refused(RejectReason, ClientError),
    #[error("connection closed by the client")]
    Closed,
    /// A login step (the first bytes, the TLS handshake) took too long.
    #[error("login step timed out")]
    StepTimeout,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<ReadError> for SessionError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Closed => SessionError::Closed,
            ReadError::Frame(e) => {
                ClientError::fatal(SqlState::PROTOCOL_VIOLATION, e.to_string()).into()
            }
            ReadError::Io(e) => SessionError::Io(e),
        }
    }
}

impl SessionError {
    fn reject_reason(&self) -> RejectReason {
        match self {
            SessionError::Client(e) if e.sqlstate == SqlState::INSUFFICIENT_PRIVILEGE => {
                RejectReason::StartupParameter
            }
            SessionError::Client(e) if e.sqlstate == SqlState::INVALID_AUTHORIZATION => {
                RejectReason::TlsRequired
            }
            SessionError::Client(e) if e.sqlstate == SqlState::TOO_MANY_CONNECTIONS => {
                RejectReason::MaxConnections
            }
            SessionError::Client(e) if e.sqlstate == SqlState::ADMIN_SHUTDOWN => {
                RejectReason::ShuttingDown
            }
            SessionError::Auth(AuthError::Failed { .. }) => RejectReason::AuthFailed,
            SessionError::StepTimeout | SessionError::Auth(AuthError::TimedOut) => {
                RejectReason::LoginTimeout
            }
            SessionError::Upstream(_) => RejectReason::Upstream,
            SessionError::Refused(reason, _) => *reason,
            SessionError::Tls(_) => RejectReason::Tls,
            _ => RejectReason::Protocol,
        }
    }

    /// The error the client is told, if it can still be told anything.
    fn client_error(&self) -> Option<ClientError> {
        match self {
            SessionError::Client(e) | SessionError::Refused(_, e) => Some(e.clone()),
            SessionError::Auth(AuthError::Closed | AuthError::Io(_)) => None,
            SessionError::Auth(e) => Some(e.to_client_error()),
            SessionError::Upstream(e) => Some(e.to_client_error()),
            SessionError::StepTimeout => Some(ClientError::fatal(
                SqlState::PROTOCOL_VIOLATION,
                "login step did not complete in time",
            )),
            SessionError::Tls(_) | SessionError::Closed | SessionError::Io(_) => None,
        }
    }
}

/// A client that passed login, with its upstream connection attached.
struct Attached {
    stream: Stream,
    pending: BytesMut,
    upstream: UpstreamConn,
    request: StartupRequest,
    /// The policy the login was checked against.
    policy: Arc<Policy>,
    rules: Arc<AccountRules>,
    context: Arc<SessionContext>,
    _slot: SessionSlot,
    /// The session's place among authenticated sessions.
    _place: OwnedSemaphorePermit,
}

/// Serves one client connection, which holds `pending` (its place among the
/// connections logging in) until its login is over.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>, pending: PendingPermit) {
    let _ = tcp.set_nodelay(true);
    let login_timeout = shared.config.server.login_timeout;
    let mut client: Option<Stream> = None;
    let mut user: Option<String> = None;
    // A login still running when a shutdown starts would be closed right
    // after it completes anyway; ending it now keeps a silent client from
    // holding the shutdown up until its login timeout.
    let login = tokio::select! {
        result = tokio::time::timeout(
            login_timeout,
            login::login(tcp, peer, &shared, (&mut client, &mut user)),
        ) => result,
        _ = shared.draining.cancelled() => {
            refused(&shared, peer, None, RejectReason::ShuttingDown, String::new());
            let e = ClientError::fatal(
                SqlState::ADMIN_SHUTDOWN,
                "maskgate is shutting down and accepts no new sessions",
            );
            send_error(client.as_mut(), &e).await;
            return;
        }
    };
    // A refused connection keeps its pending place until it is told (after the
    // failed-login delay): otherwise fast failures could pile up connections
    // outside every budget.
    let attached = match login {
        Ok(Ok(Some(attached))) => attached,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            reject(&shared, client.as_mut(), &e, peer, user.as_deref()).await;
            return;
        }
        Err(_) => {
            refused(
                &shared,
                peer,
                user.as_deref(),
                RejectReason::LoginTimeout,
                String::new(),
            );
            let e = ClientError::fatal(
                SqlState::PROTOCOL_VIOLATION,
                "login did not complete in time",
            );
            send_error(client.as_mut(), &e).await;
            return;
        }
    };
    drop(pending);
    let context = attached.context.clone();
    shared.events.emit(Event::Login(LoginAttempt {
        client: peer,
        login: Some(context.login.clone()),
        outcome: LoginOutcome::Admitted(context.clone()),
    }));
    let end = run_session(attached, &shared).await;
    shared.events.emit(Event::SessionEnded(SessionEnded {
        duration: context.started.elapsed(),
        session: context,
        end,
    }));
}

/// Tells a connection that came when too many were logging in that there is no
/// room (`53300`), as PostgreSQL would, then closes it; `permit` bounds how many
/// such refusals run at once, and each takes at most a second.
pub async fn refuse_busy(tcp: TcpStream, permit: OwnedSemaphorePermit) {
    let error = ClientError::fatal(
        SqlState::TOO_MANY_CONNECTIONS,
        "sorry, too many clients are logging in already",
    )
    .with_hint("try again in a moment");
    handshake::refuse(tcp, &error, std::time::Duration::from_secs(1)).await;
    drop(permit);
}

/// Reports a refused login attempt. Connections that never said who they are
/// (silent, garbage, a failed TLS handshake), and refusals of an address that
/// failed too often, are only counted: under a flood, a log line or audit record
/// for each would be the flood's amplifier.
fn refused(
    shared: &Shared,
    client: SocketAddr,
    login: Option<&str>,
    reason: RejectReason,
    detail: String,
) {
    let anonymous = login.is_none()
        && matches!(
            reason,
            RejectReason::LoginTimeout | RejectReason::Protocol | RejectReason::Tls
        );
    if anonymous || reason == RejectReason::AddressLimited {
        shared.metrics.client_rejected(reason);
        tracing::debug!(peer = %client, %reason, "connection refused before login");
        return;
    }
    shared.events.emit(Event::Login(LoginAttempt {
        client,
        login: login.map(str::to_owned),
        outcome: LoginOutcome::Refused { reason, detail },
    }));
}

async fn reject(
    shared: &Shared,
    client: Option<&mut Stream>,
    e: &SessionError,
    peer: SocketAddr,
    login: Option<&str>,
) {
    let detail = match e {
        SessionError::Closed => String::new(),
        e => e.to_string(),
    };
    refused(shared, peer, login, e.reject_reason(), detail);
    if let SessionError::Auth(AuthError::Failed { .. }) = e {
        // The same delay whatever failed, so timing does not reveal which accounts exist.
        tokio::time::sleep(shared.config.server.auth_failure_delay).await;
    }
    if let Some(error) = e.client_error() {
        send_error(client, &error).await;
    }
}

async fn send_error(client: Option<&mut Stream>, error: &ClientError) {
    let Some(client) = client else { return };
    let mut out = BytesMut::new();
    error.encode(&mut out);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let _ = client.write_all(&out).await;
        let _ = client.flush().await;
    })
    .await;
}

/// Relays an admitted session until it ends; how it ended.
async fn run_session(attached: Attached, shared: &Shared) -> SessionEnd {
    let Attached {
        mut stream,
        pending,
        mut upstream,
        request,
        policy,
        rules,
        context,
        _slot,
        _place,
    } = attached;
    let cancel_guard = shared.cancel.register(upstream.cancel_key());
    let client_key = cancel_guard.client_key();

    let mut greeting = BytesMut::with_capacity(512);
    for (name, value) in upstream.server_params() {
        protocol::parameter_status(&mut greeting, name, value);
    }
    protocol::backend_key_data(&mut greeting, client_key.pid, client_key.secret);
    protocol::ready_for_query(&mut greeting, b'I');
    if stream.write_all(&greeting).await.is_err() || stream.flush().await.is_err() {
        shared.pool.discard(upstream);
        return SessionEnd::Client;
    }
    shared.metrics.bytes_to_client(greeting.len());

    let (end, reusable, in_flight, held) = {
        let mut relay = Relay::new(
            &mut stream,
            &mut upstream,
            pending,
            &shared.metrics,
            AccountGuard::new(&shared.policy, policy, &request.user)
                .with_suspensions(&shared.suspended),
            SessionRules::new(&shared.enforcement, rules, (&shared.events, context))
                .with_startup_search_path(
                    login::startup_search_path(&request).and_then(Result::ok),
                ),
            (
                shared.config.server.max_message_size,
                shared.config.server.session_limits,
            ),
        );
        let end = relay
            .run(Controls {
                draining: &shared.draining,
                force: &shared.force,
                idle_timeout: shared.config.server.client_idle_timeout,
            })
            .await;
        let held = relay.prepared_high_water();
        (end, relay.upstream_reusable(), relay.in_flight(), held)
    };
    upstream.prepared_high_water = upstream.prepared_high_water.max(held);
    drop(cancel_guard);

    let session_end = match &end {
        RelayEnd::ClientTerminated | RelayEnd::ClientGone => SessionEnd::Client,
        RelayEnd::UpstreamGone { .. } => SessionEnd::UpstreamGone,
        RelayEnd::Closed(e) => SessionEnd::ClosedByMaskgate(e.to_string()),
    };
    if let RelayEnd::UpstreamGone { fatal_sent: false } = end {
        let e = ClientError::fatal(
            SqlState::CONNECTION_FAILURE,
            "connection to the database server was lost",
        );
        send_error(Some(&mut stream), &e).await;
    }
    let _ = stream.shutdown().await;

    if matches!(end, RelayEnd::UpstreamGone { .. }) {
        shared.pool.discard(upstream);
    } else if reusable {
        shared.pool.put(upstream).await;
    } else {
        // A statement may still run upstream for a client that is gone: stop it.
        if in_flight {
            let key = upstream.cancel_key();
            if let Err(e) = shared.pool.connector().cancel(key).await {
                tracing::debug!(error = %e, "could not cancel an abandoned statement");
            }
        }
        shared.pool.discard(upstream);
    }
    session_end
}
