//! The first packets of a client connection: TLS negotiation and the
//! StartupMessage, or a CancelRequest.

use std::future::Future;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::params::{parse_startup, StartupRequest};
use super::SessionError;
use crate::config::ClientTlsMode;
use crate::error::{ClientError, SqlState};
use crate::protocol::fields::Fields;
use crate::protocol::io::read_startup_packet;
use crate::server::Shared;
use crate::stream::Stream;

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
/// The first byte of a TLS handshake record, sent by clients using direct TLS.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a new connection asked for.
pub enum Opening {
    /// A session: the validated startup request and any bytes the client sent
    /// after its StartupMessage. The (possibly TLS) stream is in the caller's slot.
    Session {
        request: StartupRequest,
        pending: BytesMut,
    },
    /// A CancelRequest for the session with this proxy-side key.
    Cancel { pid: i32, secret: i32 },
}

/// One login step: it must be over within `step`.
async fn within<T>(
    step: Duration,
    work: impl Future<Output = Result<T, SessionError>>,
) -> Result<T, SessionError> {
    within_deadline(tokio::time::Instant::now() + step, work).await
}

async fn within_deadline<T>(
    deadline: tokio::time::Instant,
    work: impl Future<Output = Result<T, SessionError>>,
) -> Result<T, SessionError> {
    tokio::time::timeout_at(deadline, work)
        .await
        .unwrap_or(Err(SessionError::StepTimeout))
}

/// Negotiates TLS and reads the StartupMessage. The connection is kept in
/// `slot` throughout (plain, then TLS), so the caller can report errors on it.
/// The first packet must arrive within `first_packet_timeout` (a client sends it
/// as soon as it is connected); the TLS handshake and each later packet within
/// `login_step_timeout`.
pub async fn open(
    tcp: TcpStream,
    shared: &Shared,
    slot: &mut Option<Stream>,
) -> Result<Opening, SessionError> {
    let mode = shared.config.client_tls.mode;
    let step = shared.config.server.login_step_timeout;
    let first_packet = tokio::time::Instant::now() + shared.config.server.first_packet_timeout;
    let mut buf = BytesMut::with_capacity(512);

    let mut first = [0u8; 1];
    let peeked = within_deadline(first_packet, async { Ok(tcp.peek(&mut first).await?) }).await?;
    let direct_tls = shared.tls.is_some() && peeked == 1 && first[0] == TLS_HANDSHAKE_RECORD;
    *slot = Some(if direct_tls {
        within(step, accept_tls(tcp, shared)).await?
    } else {
        Stream::Plain(tcp)
    });

    // PostgreSQL answers each negotiation request once; a client repeating one
    // is not a client the proxy needs to humour.
    let (mut ssl_answered, mut gss_answered) = (false, false);
    let mut first_read = !direct_tls;
    loop {
        let stream = slot.as_mut().expect("the slot holds the connection");
        let deadline = if std::mem::take(&mut first_read) {
            first_packet
        } else {
            tokio::time::Instant::now() + step
        };
        let packet = within_deadline(deadline, async {
            Ok(read_startup_packet(stream, &mut buf).await?)
        })
        .await?;
        let mut f = Fields::new(&packet[4..], "startup packet");
        let code = f.i32().map_err(|_| protocol("malformed startup packet"))?;
        match code {
            SSL_REQUEST => {
                if std::mem::replace(&mut ssl_answered, true) {
                    return Err(protocol("SSLRequest sent twice").into());
                }
                if stream.is_tls() {
                    return Err(protocol("SSLRequest received on an encrypted connection").into());
                }
                if !buf.is_empty() {
                    // Bytes sent before the answer could be injected by a
                    // man in the middle; PostgreSQL refuses them too.
                    return Err(protocol("received unencrypted data after SSLRequest").into());
                }
                match &shared.tls {
                    Some(_) => {
                        stream.write_all(b"S").await?;
                        let Some(Stream::Plain(tcp)) = slot.take() else {
                            unreachable!("checked above that the connection is not TLS yet");
                        };
                        *slot = Some(within(step, accept_tls(tcp, shared)).await?);
                    }
                    None => stream.write_all(b"N").await?,
                }
            }
            GSSENC_REQUEST => {
                if std::mem::replace(&mut gss_answered, true) {
                    return Err(protocol("GSSENCRequest sent twice").into());
                }
                stream.write_all(b"N").await?
            }
            CANCEL_REQUEST => {
                let pid = f.i32().map_err(|_| protocol("malformed CancelRequest"))?;
                let secret = f.i32().map_err(|_| protocol("malformed CancelRequest"))?;
                return Ok(Opening::Cancel { pid, secret });
            }
            _ => {
                let major = (code >> 16) as u16;
                if major != 3 {
                    return Err(ClientError::fatal(
                        SqlState::FEATURE_NOT_SUPPORTED,
                        format!(
                            "unsupported frontend protocol {}.{}: maskgate speaks protocol 3.0",
                            code >> 16,
                            code & 0xffff
                        ),
                    )
                    .into());
                }
                if mode == ClientTlsMode::Require && !stream.is_tls() {
                    return Err(ClientError::fatal(
                        SqlState::INVALID_AUTHORIZATION,
                        "maskgate accepts only encrypted connections",
                    )
                    .with_hint("connect with sslmode=require (or verify-full)")
                    .into());
                }
                let params =
                    startup_parameters(f).ok_or_else(|| protocol("malformed StartupMessage"))?;
                let request = parse_startup(params)?;
                if code & 0xffff > 0 || !request.unsupported_protocol_options.is_empty() {
                    let mut out = BytesMut::new();
                    crate::protocol::negotiate_protocol_version(
                        &mut out,
                        request.unsupported_protocol_options.clone(),
                    );
                    stream.write_all(&out).await?;
                }
                return Ok(Opening::Session {
                    request,
                    pending: buf,
                });
            }
        }
    }
}

/// Answers a connection there is no room for with `error`, as PostgreSQL answers
/// one beyond `max_connections`: after its startup packet (an SSLRequest or
/// GSSENCRequest is declined first), all within `limit`. A client opening with
/// TLS directly is just closed.
pub async fn refuse(mut tcp: TcpStream, error: &ClientError, limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        let mut buf = BytesMut::with_capacity(64);
        for _ in 0..3 {
            let Ok(packet) = read_startup_packet(&mut tcp, &mut buf).await else {
                return;
            };
            let code = Fields::new(&packet[4..], "startup packet")
                .i32()
                .unwrap_or(0);
            if code == SSL_REQUEST || code == GSSENC_REQUEST {
                if tcp.write_all(b"N").await.is_err() {
                    return;
                }
                continue;
            }
            if code != CANCEL_REQUEST {
                let mut out = BytesMut::new();
                error.encode(&mut out);
                let _ = tcp.write_all(&out).await;
                let _ = tcp.shutdown().await;
            }
            return;
        }
    })
    .await;
}

async fn accept_tls(tcp: TcpStream, shared: &Shared) -> Result<Stream, SessionError> {
    let acceptor = shared
        .tls
        .as_ref()
        .expect("TLS is only accepted when configured");
    let tls = acceptor.accept(tcp).await.map_err(SessionError::Tls)?;
    Ok(Stream::ServerTls(Box::new(tls)))
}

/// The name/value pairs of a StartupMessage body (after the version), read
/// strictly: every string NUL-terminated, UTF-8, the list ended by an empty
/// name, and nothing after it. (pgwire's decoder accepts truncated and
/// trailing bytes, and a proxy must not guess what a client meant.)
fn startup_parameters(mut f: Fields<'_>) -> Option<Vec<(&str, &str)>> {
    let mut params = Vec::new();
    loop {
        let name = f.str().ok()?;
        if name.is_empty() {
            return f.finish().ok().map(|()| params);
        }
        let value = f.str().ok()?;
        params.push((name, value));
    }
}

fn protocol(message: &str) -> ClientError {
    ClientError::fatal(SqlState::PROTOCOL_VIOLATION, message)
}
