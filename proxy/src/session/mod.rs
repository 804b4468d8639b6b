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
pub mod params;
mod pipeline;
mod relay;
mod rule_errors;
mod rules;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use maskgate_policy::{LoginDenial, Policy};

use crate::auth::{self, AuthError};
use crate::enforcement::AccountRules;
use crate::error::{ClientError, SqlState, UserFacingError};
use crate::login::SessionSlot;
use crate::metrics::RejectReason;
use crate::observe::{
    Event, LoginAttempt, LoginOutcome, SessionContext, SessionEnd, SessionEnded, SessionId,
    TlsFacts,
};
use crate::protocol;
use crate::protocol::io::ReadError;
use crate::server::Shared;
use crate::stream::Stream;
use crate::upstream::{UpstreamConn, UpstreamError};
use account_guard::AccountGuard;
use handshake::Opening;
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
}

/// Serves one client connection. `admitted` is false when the connection
/// limit is reached: the client then gets a 53300 error after its startup packet.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>, admitted: bool) {
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
            login(tcp, peer, &shared, admitted, (&mut client, &mut user)),
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

/// Reports a refused login attempt.
fn refused(
    shared: &Shared,
    client: SocketAddr,
    login: Option<&str>,
    reason: RejectReason,
    detail: String,
) {
    shared.events.emit(Event::Login(LoginAttempt {
        client,
        login: login.map(str::to_owned),
        outcome: LoginOutcome::Refused { reason, detail },
    }));
}

fn denial_reason(denial: LoginDenial) -> RejectReason {
    match denial {
        LoginDenial::Disabled | LoginDenial::NotYetValid | LoginDenial::Expired => {
            RejectReason::AccountInactive
        }
        LoginDenial::Address | LoginDenial::Certificate => RejectReason::UnregisteredMachine,
        LoginDenial::OutsideHours => RejectReason::OutsideHours,
    }
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

/// TLS, startup, authentication and upstream attachment. Returns `None` for
/// connections that were only a CancelRequest. `client` receives the stream
/// as soon as there is one, so errors can be reported on it, and `user` the login
/// name as soon as the client sent it, so refusals name it.
async fn login(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    admitted: bool,
    (client, user): (&mut Option<Stream>, &mut Option<String>),
) -> Result<Option<Attached>, SessionError> {
    let (stream, request, mut pending) = match handshake::open(tcp, shared, client).await? {
        Opening::Cancel { pid, secret } => {
            forward_cancel(shared, pid, secret).await;
            return Ok(None);
        }
        Opening::Session { request, pending } => (
            client.as_mut().expect("handshake stored the stream"),
            request,
            pending,
        ),
    };
    *user = Some(request.user.clone());
    if !admitted {
        return Err(ClientError::fatal(
            SqlState::TOO_MANY_CONNECTIONS,
            "sorry, too many clients already",
        )
        .into());
    }
    if shared.draining.is_cancelled() {
        return Err(ClientError::fatal(
            SqlState::ADMIN_SHUTDOWN,
            "maskgate is shutting down and accepts no new sessions",
        )
        .into());
    }
    let database = &shared.config.upstream.database;
    if let Some(requested) = &request.database {
        if requested != database {
            return Err(ClientError::fatal(
                SqlState::INVALID_CATALOG_NAME,
                format!("database \"{requested}\" is not served by maskgate"),
            )
            .with_hint(format!("connect to database \"{database}\""))
            .into());
        }
    }

    let login = request.user.as_str();
    if shared.lockouts.check(login, Instant::now()).is_err() {
        return Err(SessionError::Refused(
            RejectReason::LockedOut,
            ClientError::fatal(
                SqlState::INVALID_AUTHORIZATION,
                "this account is temporarily locked after repeated failed logins",
            )
            .with_hint("try again later, or ask your security officer"),
        ));
    }
    let policy = shared.policy.load_full();
    let account = policy.account(login);
    let authenticated = auth::authenticate(
        stream,
        &mut pending,
        login,
        account.map(|a| &a.verifier),
        &shared.server_secret,
    )
    .await;
    match authenticated {
        // The failure count is cleared only once the login is admitted below:
        // a right password from an unregistered machine must not wipe it.
        Ok(()) => {}
        Err(e @ AuthError::Failed { .. }) => {
            if shared.lockouts.record_failure(login, Instant::now()) {
                shared.events.emit(Event::Lockout {
                    client: peer,
                    login: login.to_owned(),
                });
            }
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    }
    let account = account.expect("authentication succeeds only for accounts in the policy");
    let cert = match &*stream {
        Stream::ServerTls(tls) => crate::tls::client_cert_fingerprint(tls),
        _ => None,
    };
    account
        .admit(policy.now(), peer.ip(), cert.as_ref())
        .map_err(|denial| {
            SessionError::Refused(
                denial_reason(denial),
                ClientError::fatal(SqlState::INVALID_AUTHORIZATION, denial.message()),
            )
        })?;
    let slot = shared
        .sessions
        .try_acquire(login, account.max_sessions)
        .ok_or_else(|| {
            SessionError::Refused(
                RejectReason::MaxSessions,
                ClientError::fatal(
                    SqlState::INVALID_AUTHORIZATION,
                    "this account already has its maximum number of open sessions",
                )
                .with_hint("close another session of this account first"),
            )
        })?;
    shared.lockouts.record_success(login);

    let mut upstream = shared.pool.get().await?;
    let rules = match account_rules(shared, &policy, &request, &mut upstream).await {
        Ok(rules) => rules,
        Err(e) => {
            shared.pool.discard(upstream);
            return Err(e);
        }
    };
    if let Err(e) = apply_settings(&mut upstream, &request, &rules).await {
        shared.pool.discard(upstream);
        return Err(e);
    }
    let stream = client
        .take()
        .expect("the client stream is set after the handshake");
    let context = Arc::new(SessionContext {
        id: SessionId::next(),
        login: request.user.clone(),
        account_name: Some(account.name.clone()),
        roles: account.roles.clone(),
        client: peer,
        tls: tls_facts(&stream, cert),
        application_name: request
            .settings
            .iter()
            .find(|(name, _)| name == "application_name")
            .map(|(_, value)| value.clone()),
        database: shared.config.upstream.database.clone(),
        policy: policy.generation().clone(),
        restricted: rules.is_restricted(),
        started: Instant::now(),
        totals: Default::default(),
    });
    Ok(Some(Attached {
        stream,
        pending,
        upstream,
        request,
        policy,
        rules,
        context,
        _slot: slot,
    }))
}

/// The client leg's TLS, for the session's context.
fn tls_facts(stream: &Stream, cert: Option<[u8; 32]>) -> Option<TlsFacts> {
    let Stream::ServerTls(tls) = stream else {
        return None;
    };
    Some(TlsFacts {
        version: tls
            .get_ref()
            .1
            .protocol_version()
            .map_or_else(|| "unknown".to_owned(), |v| format!("{v:?}")),
        client_certificate: cert.map(|c| c.iter().map(|b| format!("{b:02x}")).collect()),
    })
}

/// The account's rules for this session. A restricted account needs the column
/// identities of the protected tables for the result check; if they cannot be read,
/// the session is refused rather than run without it.
async fn account_rules(
    shared: &Shared,
    policy: &Arc<Policy>,
    request: &StartupRequest,
    upstream: &mut UpstreamConn,
) -> Result<Arc<AccountRules>, SessionError> {
    let login = request.user.as_str();
    let unavailable = || {
        SessionError::Refused(
            RejectReason::EnforcementUnavailable,
            ClientError::fatal(
                SqlState::CONNECTION_FAILURE,
                "maskgate cannot enforce this account's rules right now",
            )
            .with_hint("try again shortly; if it persists, tell the database administrators"),
        )
    };
    let restricted = policy
        .effective(login)
        .is_some_and(|rules| !rules.unrestricted);
    if restricted {
        let encoding = request_encoding(request);
        if encoding.is_some_and(|e| !rules::is_utf8(e)) {
            return Err(SessionError::Refused(
                RejectReason::StartupParameter,
                rules::encoding_error(),
            ));
        }
        if let Err(denial) = startup_search_path(request).transpose() {
            return Err(SessionError::Refused(
                RejectReason::StartupParameter,
                ClientError::fatal(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    format!("startup parameter \"search_path\": {}", denial.message),
                ),
            ));
        }
        if let Err(e) = shared.enforcement.load_columns(policy, upstream).await {
            tracing::error!(error = %e, "cannot read the column identities of the protected tables");
            return Err(unavailable());
        }
    }
    shared
        .enforcement
        .account(policy, login)
        .ok_or_else(unavailable)
}

/// The search_path the client asked for at startup, if any, as maskgate reads it.
fn startup_search_path(
    request: &StartupRequest,
) -> Option<Result<Vec<String>, maskgate_sql::Denial>> {
    request
        .settings
        .iter()
        .find(|(name, _)| name == "search_path")
        .map(|(_, value)| maskgate_sql::parse_search_path(value))
}

/// The client_encoding the client asked for at startup, if any.
fn request_encoding(request: &StartupRequest) -> Option<&str> {
    request
        .settings
        .iter()
        .find(|(name, _)| name == "client_encoding")
        .map(|(_, value)| value.as_str())
}

/// Applies the client's startup settings to the upstream session.
async fn apply_settings(
    upstream: &mut UpstreamConn,
    request: &StartupRequest,
    rules: &AccountRules,
) -> Result<(), SessionError> {
    if request.settings.is_empty() {
        return Ok(());
    }
    let mut sql = String::new();
    for (name, value) in &request.settings {
        // A restricted session's path goes upstream as the analyzer sends a SET of
        // it: only the schemas of the account's tables (checked at login already).
        let filtered;
        let value = match startup_search_path(request) {
            Some(Ok(path)) if name == "search_path" && rules.is_restricted() => {
                let kept = rules.upstream_search_path(&path);
                filtered = kept
                    .iter()
                    .map(|s| format!("\"{}\"", s.replace('"', "\"\"")))
                    .collect::<Vec<_>>()
                    .join(", ");
                &filtered
            }
            _ => value,
        };
        // Names come from the allowlist in `params`, values from the client: both go
        // through the workspace's quoting functions (`params` already refused NUL).
        let (Ok(name), Ok(value)) = (
            maskgate_mask::quote_ident(name),
            maskgate_mask::quote_literal(value),
        ) else {
            return Err(ClientError::fatal(
                SqlState::PROTOCOL_VIOLATION,
                format!("startup parameter \"{name}\" has an invalid value"),
            )
            .into());
        };
        if name == "\"search_path\"" {
            // A list, read as PostgreSQL reads it in the startup packet (SET would
            // take the literal as one schema name).
            sql.push_str(&format!(
                "SELECT pg_catalog.set_config('search_path', {value}, false);"
            ));
        } else {
            sql.push_str(&format!("SET {name} = {value};"));
        }
    }
    match upstream.run_internal(&sql).await {
        Ok(_) => Ok(()),
        Err(UpstreamError::Server { sqlstate, message }) => Err(ClientError {
            sqlstate: SqlState::from_bytes(sqlstate.as_bytes())
                .unwrap_or(SqlState::PROTOCOL_VIOLATION),
            ..ClientError::fatal(SqlState::PROTOCOL_VIOLATION, message)
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

async fn forward_cancel(shared: &Shared, pid: i32, secret: i32) {
    match shared.cancel.lookup(pid, secret) {
        Some(key) => {
            if let Err(e) = shared.pool.connector().cancel(key).await {
                tracing::warn!(error = %e, "could not forward a cancel request");
            } else {
                tracing::debug!("cancel request forwarded");
            }
        }
        None => tracing::debug!("cancel request for no live session ignored"),
    }
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

    let (end, reusable, in_flight) = {
        let mut relay = Relay::new(
            &mut stream,
            &mut upstream,
            pending,
            &shared.metrics,
            AccountGuard::new(&shared.policy, policy, &request.user),
            SessionRules::new(&shared.enforcement, rules, (&shared.events, context))
                .with_startup_search_path(startup_search_path(&request).and_then(Result::ok)),
            shared.config.server.max_message_size,
        );
        let end = relay
            .run(Controls {
                draining: &shared.draining,
                force: &shared.force,
                idle_timeout: shared.config.server.client_idle_timeout,
            })
            .await;
        (end, relay.upstream_reusable(), relay.in_flight())
    };
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
