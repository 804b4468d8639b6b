//! The service account's authentication to PostgreSQL: SCRAM-SHA-256, MD5 or
//! trust. Cleartext passwords are refused even if the server asks for one.

use bytes::{BufMut, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::AsyncWriteExt;

use super::{server_error, UpstreamError, MAX_SETUP_MESSAGE};
use crate::config::UpstreamConfig;
use crate::protocol::backend_tag;
use crate::protocol::fields::Fields;
use crate::protocol::io::read_message;
use crate::stream::Stream;

const AUTH_OK: i32 = 0;
const AUTH_CLEARTEXT: i32 = 3;
const AUTH_MD5: i32 = 5;
const AUTH_SASL: i32 = 10;
const AUTH_SASL_CONTINUE: i32 = 11;
const AUTH_SASL_FINAL: i32 = 12;
const SCRAM: &str = "SCRAM-SHA-256";

/// Runs the authentication exchange up to AuthenticationOk.
pub(super) async fn authenticate(
    stream: &mut Stream,
    buf: &mut BytesMut,
    config: &UpstreamConfig,
) -> Result<(), UpstreamError> {
    let password = || {
        config.password.as_ref().map(|p| p.expose()).ok_or_else(|| {
            UpstreamError::Authentication(
                "the server asks for a password, and none is configured \
                 (set upstream.password_env or upstream.password_file)"
                    .into(),
            )
        })
    };
    let malformed = |what: &str| UpstreamError::Protocol(format!("malformed {what}"));
    let mut scram: Option<ScramSha256> = None;
    loop {
        let msg = read_message(stream, buf, MAX_SETUP_MESSAGE).await?;
        match msg.tag {
            backend_tag::AUTHENTICATION => {}
            backend_tag::ERROR_RESPONSE => return Err(server_error(&msg.body)),
            backend_tag::NEGOTIATE_PROTOCOL_VERSION => continue,
            other => {
                return Err(UpstreamError::Protocol(format!(
                    "message '{}' during authentication",
                    other as char
                )))
            }
        }
        let mut f = Fields::new(&msg.body, "Authentication");
        let code = f.i32().map_err(|_| malformed("Authentication"))?;
        let mut out = BytesMut::new();
        match code {
            AUTH_OK => return Ok(()),
            AUTH_CLEARTEXT => {
                return Err(UpstreamError::Authentication(
                    "the server asks for a cleartext password; configure scram-sha-256 \
                     for the service account in pg_hba.conf"
                        .into(),
                ))
            }
            AUTH_MD5 => {
                let salt = f.bytes(4).map_err(|_| malformed("MD5 salt"))?;
                let hash = postgres_protocol::authentication::md5_hash(
                    config.user.as_bytes(),
                    password()?.as_bytes(),
                    [salt[0], salt[1], salt[2], salt[3]],
                );
                put_password_message(&mut out, |b| {
                    b.put_slice(hash.as_bytes());
                    b.put_u8(0);
                });
            }
            AUTH_SASL => {
                let mut offered = false;
                while let Ok(mechanism) = f.str() {
                    if mechanism.is_empty() {
                        break;
                    }
                    offered |= mechanism == SCRAM;
                }
                if !offered {
                    return Err(UpstreamError::Authentication(
                        "the server offers no SASL mechanism maskgate supports".into(),
                    ));
                }
                // Channel binding is not used on this leg: verify-full already
                // authenticates the server by its certificate.
                let exchange =
                    ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                put_password_message(&mut out, |b| {
                    b.put_slice(SCRAM.as_bytes());
                    b.put_u8(0);
                    b.put_i32(exchange.message().len() as i32);
                    b.put_slice(exchange.message());
                });
                scram = Some(exchange);
            }
            AUTH_SASL_CONTINUE => {
                let exchange = scram.as_mut().ok_or_else(|| malformed("SASL sequence"))?;
                exchange
                    .update(f.rest())
                    .map_err(|e| UpstreamError::Authentication(e.to_string()))?;
                put_password_message(&mut out, |b| b.put_slice(exchange.message()));
            }
            AUTH_SASL_FINAL => {
                let exchange = scram.as_mut().ok_or_else(|| malformed("SASL sequence"))?;
                exchange.finish(f.rest()).map_err(|e| {
                    UpstreamError::Authentication(format!(
                        "the server's SCRAM signature did not verify: {e}"
                    ))
                })?;
                continue;
            }
            other => {
                return Err(UpstreamError::Authentication(format!(
                    "the server asks for authentication method {other}, which maskgate does not support"
                )))
            }
        }
        stream.write_all(&out).await?;
        stream.flush().await?;
    }
}

fn put_password_message(out: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(b'p');
    let at = out.len();
    out.put_i32(0);
    body(out);
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}
