//! Who may use maskgate and how they prove it.
//!
//! The policy directory ([`Policy`]) holds accounts bound to people and machines, roles,
//! the data classification, row filters and column rules. The proxy depends on this one
//! crate for "what is this session allowed to do".
//!
//! Verifiers are treated as secrets: they never appear in errors, `Debug` output or logs,
//! because a verifier is enough for an offline guess at the password.

mod account;
mod diagnostics;
mod effective;
mod error;
mod explain;
mod filter;
mod generation;
mod load;
mod model;
mod net;
pub mod password;
mod policy;
mod scope;
mod validate;
mod verifier;

pub use account::LoginDenial;
pub use diagnostics::{Diagnostic, PolicyErrors, Severity};
pub use model::{
    Account, Assignment, Canary, ColumnClass, ColumnRule, EffectiveRules, FilterExpr, OverCap,
    PathHop, PolicySettings, QualifiedName, Role, RoleMode, RoleTable, RowFilter, ScopePath,
    StatementKind, StatementKinds, TableCap, TableClass, TableKind, TableRules,
};
pub use net::{IpNet, NetError};
pub use policy::{FileChange, Generation, Loaded, Policy, Rejected};
pub use scope::MAX_HOPS;

pub use error::Location;
pub use password::{check_password, WeakPassword};
pub use verifier::{ScramVerifier, VerifierError, DEFAULT_ITERATIONS, KEY_LEN, SALT_LEN};
