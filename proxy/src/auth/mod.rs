//! Client authentication: SCRAM-SHA-256 against the verifiers in the policy's
//! accounts. Cleartext and MD5 are never offered.

pub mod scram;

use std::time::Duration;

use bytes::BytesMut;
use maskgate_policy::ScramVerifier;
use tokio::io::AsyncWriteExt;

use crate::error::{ClientError, SqlState, UserFacingError};
use crate::protocol::fields::Fields;
use crate::protocol::io::{read_message, ReadError};
use crate::protocol::{self, frontend_tag};
use crate::stream::Stream;
use scram::{ScramError, ScramExchange};

const MECHANISM: &str = "SCRAM-SHA-256";
/// SASL messages are small; anything larger is not a SCRAM message.
const MAX_SASL_MESSAGE: usize = 4096;

/// Why a login did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong password or unknown account; deliberately indistinguishable.
    #[error("password authentication failed for user \"{user}\"")]
    Failed { user: String },
    #[error("authentication protocol violation: {0}")]
    Protocol(&'static str),
    #[error("connection closed during authentication")]
    Closed,
    /// A client message did not arrive within the login step timeout.
    #[error("authentication step timed out")]
    TimedOut,
    #[error("i/o error during authentication: {0}")]
    Io(#[from] std::io::Error),
}

impl From<ReadError> for AuthError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Closed => AuthError::Closed,
            ReadError::Frame(_) => AuthError::Protocol("invalid message framing"),
            ReadError::Io(e) => AuthError::Io(e),
        }
    }
}

impl UserFacingError for AuthError {
    fn to_client_error(&self) -> ClientError {
        match self {
            AuthError::Failed { user } => ClientError::fatal(
                SqlState::INVALID_PASSWORD,
                format!("password authentication failed for user \"{user}\""),
            ),
            AuthError::Protocol(what) => ClientError::fatal(
                SqlState::PROTOCOL_VIOLATION,
                format!("authentication protocol violation: {what}"),
            ),
            AuthError::TimedOut => ClientError::fatal(
                SqlState::PROTOCOL_VIOLATION,
                "authentication step did not complete in time",
            ),
            AuthError::Closed | AuthError::Io(_) => ClientError::fatal(
                SqlState::CONNECTION_FAILURE,
                "connection lost during authentication",
            ),
        }
    }
}

/// A client's SCRAM exchange up to its proof, which is not checked yet: the caller
/// counts the attempt first (see `login::Lockouts::begin`), so parallel exchanges
/// cannot all have their proofs checked.
pub struct PendingProof {
    exchange: ScramExchange,
    message: BytesMut,
    user: String,
}

/// Runs the SCRAM-SHA-256 exchange up to the client's proof.
///
/// An unknown user goes through the same exchange as a known one and fails at
/// the same step, so the answer does not tell whether the account exists. Each
/// client message must arrive within `step`.
pub async fn read_proof(
    stream: &mut Stream,
    buf: &mut BytesMut,
    (user, verifier): (&str, Option<&ScramVerifier>),
    server_secret: &[u8; 32],
    step: Duration,
) -> Result<PendingProof, AuthError> {
    let mut exchange = ScramExchange::new(user, verifier, server_secret);
    let mut out = BytesMut::new();
    protocol::auth_sasl(&mut out, &[MECHANISM]);
    send(stream, &mut out).await?;

    let msg = read_password_message(stream, buf, step).await?;
    let mut f = Fields::new(&msg, "SASLInitialResponse");
    let mechanism = f
        .str()
        .map_err(|_| AuthError::Protocol("malformed SASLInitialResponse"))?;
    let len = f
        .i32()
        .map_err(|_| AuthError::Protocol("malformed SASLInitialResponse"))?;
    let data = match len {
        -1 => &[][..],
        n if n >= 0 => f
            .bytes(n as usize)
            .map_err(|_| AuthError::Protocol("malformed SASLInitialResponse"))?,
        _ => return Err(AuthError::Protocol("malformed SASLInitialResponse")),
    };
    let server_first = exchange
        .client_first(mechanism, data)
        .map_err(|e| scram_error(e, user))?;
    protocol::auth_sasl_continue(&mut out, server_first);
    send(stream, &mut out).await?;

    let message = read_password_message(stream, buf, step).await?;
    Ok(PendingProof {
        exchange,
        message,
        user: user.to_owned(),
    })
}

impl PendingProof {
    /// Checks the proof; the server-final message when it verifies.
    pub fn check(mut self) -> Result<Vec<u8>, AuthError> {
        self.exchange
            .client_final(&self.message)
            .map_err(|e| scram_error(e, &self.user))
    }
}

/// Sends the server's final SCRAM message and AuthenticationOk.
pub async fn accept(stream: &mut Stream, server_final: Vec<u8>) -> Result<(), AuthError> {
    let mut out = BytesMut::new();
    protocol::auth_sasl_final(&mut out, server_final);
    protocol::auth_ok(&mut out);
    send(stream, &mut out).await
}

fn scram_error(e: ScramError, user: &str) -> AuthError {
    match e {
        ScramError::AuthenticationFailed => AuthError::Failed {
            user: user.to_string(),
        },
        ScramError::Protocol(what) => AuthError::Protocol(what),
    }
}

async fn read_password_message(
    stream: &mut Stream,
    buf: &mut BytesMut,
    step: Duration,
) -> Result<BytesMut, AuthError> {
    let msg = tokio::time::timeout(step, read_message(stream, buf, MAX_SASL_MESSAGE))
        .await
        .map_err(|_| AuthError::TimedOut)??;
    if msg.tag != frontend_tag::PASSWORD {
        return Err(AuthError::Protocol("expected a SASL response message"));
    }
    Ok(msg.body)
}

async fn send(stream: &mut Stream, out: &mut BytesMut) -> Result<(), AuthError> {
    stream.write_all(out).await?;
    stream.flush().await?;
    out.clear();
    Ok(())
}
