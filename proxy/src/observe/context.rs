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

/// `<instance>-<n>`: unique across restarts, since the instance prefix is random.
impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", crate::audit::instance(), self.0)
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
#[derive(Debug)]
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
    /// What the session did so far, filled as its statements end.
    pub totals: SessionTotals,
}

/// A session's running totals, for its end record.
#[derive(Debug, Default)]
pub struct SessionTotals {
    pub statements: AtomicU64,
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
}

impl SessionTotals {
    pub fn add(&self, rows: u64, bytes: u64) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.statements.load(Ordering::Relaxed),
            self.rows.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}
