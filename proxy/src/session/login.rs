//! Login: TLS and startup, the lockout and address checks, SCRAM, the account's
//! login rules, a session place, and the upstream connection made ready within
//! `checkout_timeout`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use maskgate_policy::{Account, LoginDenial, Policy};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::handshake::{self, Opening};
use super::params::StartupRequest;
use super::{rules, Attached, SessionError};
use crate::auth;
use crate::enforcement::AccountRules;
use crate::error::{ClientError, SqlState};
use crate::login::{Refusal, SessionSlot};
use crate::metrics::RejectReason;
use crate::observe::{Event, SessionContext, SessionId, TlsFacts};
use crate::server::Shared;
use crate::stream::Stream;
use crate::upstream::{UpstreamConn, UpstreamError};

/// TLS, startup, authentication and upstream attachment. Returns `None` for
/// connections that were only a CancelRequest. `client` receives the stream
/// as soon as there is one, so errors can be reported on it, and `user` the login
/// name as soon as the client sent it, so refusals name it.
pub(super) async fn login(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    (client, user): (&mut Option<Stream>, &mut Option<String>),
) -> Result<Option<Attached>, SessionError> {
    let step = shared.config.server.login_step_timeout;
    let (request, mut pending) = match handshake::open(tcp, shared, client, step).await? {
        Opening::Cancel { pid, secret } => {
            forward_cancel(shared, pid, secret).await;
            return Ok(None);
        }
        Opening::Session { request, pending } => (request, pending),
    };
    let stream = client.as_mut().expect("the handshake stored the stream");
    *user = Some(request.user.clone());
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
    let policy = shared.policy.load_full();
    let account =
        authenticate(stream, &mut pending, peer, shared, (&policy, &request.user)).await?;
    let cert = match &*stream {
        Stream::ServerTls(tls) => crate::tls::client_cert_fingerprint(tls),
        _ => None,
    };
    let (slot, place) = admit(
        shared,
        peer,
        (&policy, account),
        cert.as_ref(),
        &request.user,
    )?;

    let (upstream, rules) = attach(shared, &policy, &request).await?;
    let stream = client
        .as_ref()
        .expect("the client stream is set after the handshake");
    let context = Arc::new(SessionContext {
        id: SessionId::next(),
        login: request.user.clone(),
        account_name: Some(account.name.clone()),
        roles: account.roles.clone(),
        client: peer,
        tls: tls_facts(stream, cert),
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
    if let Err(e) = record_login(shared, &context) {
        shared.pool.discard(upstream);
        return Err(e);
    }
    let stream = client
        .take()
        .expect("the client stream is set after the handshake");
    Ok(Some(Attached {
        stream,
        pending,
        upstream,
        request,
        policy,
        rules,
        context,
        _slot: slot,
        _place: place,
    }))
}

/// The account's login rules (machine, certificate, hours), its session cap, and a
/// place among authenticated sessions, which strangers logging in cannot take.
/// Clears the name's failed logins (unless it is locked) once all passed.
fn admit(
    shared: &Shared,
    peer: SocketAddr,
    (policy, account): (&Policy, &Account),
    cert: Option<&[u8; 32]>,
    login: &str,
) -> Result<(SessionSlot, OwnedSemaphorePermit), SessionError> {
    account
        .admit(policy.now(), peer.ip(), cert)
        .map_err(|denial| {
            SessionError::Refused(
                denial_reason(denial),
                ClientError::fatal(SqlState::INVALID_AUTHORIZATION, denial.message()),
            )
        })?;
    if shared.suspended.is_suspended(login) {
        return Err(SessionError::Refused(
            RejectReason::Suspended,
            super::account_guard::suspended(),
        ));
    }
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
    let place = shared.admission.session().ok_or_else(|| {
        SessionError::from(ClientError::fatal(
            SqlState::TOO_MANY_CONNECTIONS,
            "sorry, too many clients already",
        ))
    })?;
    shared.lockouts.record_success(login, Instant::now());
    Ok((slot, place))
}

/// The SCRAM exchange, with the lockout and the address limit checked before any
/// work and counted again, atomically, right before the proof is checked.
async fn authenticate<'p>(
    stream: &mut Stream,
    pending: &mut BytesMut,
    peer: SocketAddr,
    shared: &Shared,
    (policy, login): (&'p Policy, &str),
) -> Result<&'p Account, SessionError> {
    shared
        .lockouts
        .check(login, peer.ip(), Instant::now())
        .map_err(lockout_refusal)?;
    let account = policy.account(login);
    let proof = auth::read_proof(
        stream,
        pending,
        (login, account.map(|a| &a.verifier)),
        &shared.server_secret,
        shared.config.server.login_step_timeout,
    )
    .await?;
    let attempt = shared
        .lockouts
        .begin(login, account.is_some(), peer.ip(), Instant::now())
        .map_err(lockout_refusal)?;
    match proof.check() {
        Ok(server_final) => {
            // The failure count is cleared only once the login is admitted: a right
            // password from an unregistered machine must not wipe it.
            attempt.passed();
            auth::accept(stream, server_final).await?;
        }
        Err(e) => {
            let failed = attempt.failed(Instant::now());
            if failed.locked {
                shared.events.emit(Event::Lockout {
                    client: peer,
                    login: login.to_owned(),
                });
            }
            if failed.address_limited {
                tracing::warn!(
                    peer = %peer.ip(),
                    "client address refused for a while after repeated failed logins"
                );
            }
            return Err(e.into());
        }
    }
    Ok(account.expect("authentication succeeds only for accounts in the policy"))
}

fn lockout_refusal(refusal: Refusal) -> SessionError {
    match refusal {
        Refusal::Locked(_) => SessionError::Refused(
            RejectReason::LockedOut,
            ClientError::fatal(
                SqlState::INVALID_AUTHORIZATION,
                "this account is temporarily locked after repeated failed logins",
            )
            .with_hint("try again later, or ask your security officer"),
        ),
        Refusal::Address(_) => SessionError::Refused(
            RejectReason::AddressLimited,
            ClientError::fatal(
                SqlState::INVALID_AUTHORIZATION,
                "too many failed logins from this address",
            )
            .with_hint("try again later"),
        ),
    }
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

/// An upstream connection ready for the session (taken or opened, the client's
/// settings applied, the account's rules loaded), within `checkout_timeout`: a
/// database that does not answer is reported, not waited for.
async fn attach(
    shared: &Shared,
    policy: &Arc<Policy>,
    request: &StartupRequest,
) -> Result<(UpstreamConn, Arc<AccountRules>), SessionError> {
    let limit = shared.config.upstream.checkout_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    let timed_out = || {
        shared.metrics.guards().checkout_timeout();
        SessionError::Upstream(UpstreamError::NotReady { after: limit })
    };
    let mut upstream = tokio::time::timeout_at(deadline, shared.pool.get())
        .await
        .map_err(|_| timed_out())??;
    let setup = async {
        let rules = account_rules(shared, policy, request, &mut upstream).await?;
        apply_settings(&mut upstream, request, &rules).await?;
        Ok(rules)
    };
    match tokio::time::timeout_at(deadline, setup).await {
        Ok(Ok(rules)) => Ok((upstream, rules)),
        Ok(Err(e)) => {
            shared.pool.discard(upstream);
            Err(e)
        }
        Err(_) => {
            shared.pool.discard(upstream);
            Err(timed_out())
        }
    }
}

/// Queues the admitted login's audit record before the session starts. When the
/// trail cannot take it, the session is refused like its statements would be: a
/// session nobody could later attribute must not run.
fn record_login(shared: &Shared, context: &Arc<SessionContext>) -> Result<(), SessionError> {
    let Some(trail) = shared.events.audit() else {
        return Ok(());
    };
    let payload = crate::observe::admitted_login(context);
    match trail.record(crate::audit::kind::LOGIN, payload, None) {
        Ok(()) => Ok(()),
        Err(why) if trail.refuses_unrecorded(context.restricted) => Err(SessionError::Refused(
            RejectReason::AuditUnavailable,
            ClientError::fatal(
                SqlState::INSUFFICIENT_RESOURCES,
                format!(
                    "maskgate cannot record this login in its audit trail ({why}), so the \
                     session is not started"
                ),
            )
            .with_hint("try again shortly; if it persists, tell your administrator"),
        )),
        Err(why) => {
            tracing::error!(session = %context.id, error = %why, "a session starts without its login record");
            Ok(())
        }
    }
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
pub(super) fn startup_search_path(
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
