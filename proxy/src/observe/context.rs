//! Who a session is, filled once at login.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use maskgate_policy::Generation;

/// A session's number, unique within the process and increasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl SessionId {
    pub fn next() -> SessionId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SessionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// The client leg's TLS, when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    /// `TLSv1_3` and the like.
    pub version: String,
    /// SHA-256 of the client certificate, as the policy writes it, if one was sent.
    pub client_certificate: Option<String>,
}

/// One session, as observed. Read by sinks only: no decision may depend on it.
#[derive(Debug, Clone)]
pub struct SessionContext {
    pub id: SessionId,
    /// The login name the client gave.
    pub login: String,
    /// The account's display name from the policy.
    pub account_name: Option<String>,
    /// The account's roles.
    pub roles: Vec<String>,
    pub client: SocketAddr,
    pub tls: Option<TlsFacts>,
    pub application_name: Option<String>,
    pub database: String,
    /// The policy the login was checked against.
    pub policy: Generation,
    /// Whether the account's statements are rewritten.
    pub restricted: bool,
    pub started: Instant,
}
