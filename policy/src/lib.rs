//! Who may use maskgate and how they prove it.
//!
//! For now this is the interim users file of SCRAM-SHA-256 verifiers; roles, masking
//! rules and hot reload will live here too, so the proxy depends on one crate for "what
//! is this session allowed to do".
//!
//! Verifiers are treated as secrets: they never appear in errors, `Debug` output or logs,
//! because a verifier is enough for an offline guess at the password.

mod error;
mod users;
mod verifier;

pub use error::{Location, PolicyError};
pub use users::{Users, UsersFile};
pub use verifier::{ScramVerifier, VerifierError, DEFAULT_ITERATIONS, KEY_LEN, SALT_LEN};
