//! maskgate's detection: rules over the audit trail, alerts, suspensions,
//! webhooks and the security team's reports.
//!
//! Detection reads records, never SQL and never personal data: the proxy's audit
//! writer hands each line it appends to a [`Detector`] (through a bounded queue, on
//! a thread of its own), and at start the detector reads the last weeks of the
//! trail back ([`trail`]), so a restart loses no window and no baseline. Lookup
//! keys are seen only as keyed fingerprints ([`fingerprint`]).
//!
//! The crate depends on the audit crate only; the proxy wires it in.

#[cfg(not(unix))]
compile_error!("maskgate-detect needs a unix platform (flock, file modes)");

pub mod alert;
pub mod canonical;
pub mod config;
mod engine;
pub mod fingerprint;
pub mod observe;
pub mod report;
mod state;
pub mod suspension;
pub mod trail;
pub mod webhook;

pub use alert::{Alert, Evidence};
pub use canonical::{KeyKind, RawKey};
pub use config::{RawSettings, Rule, Settings, SettingsError, Severity, Thresholds};
pub use engine::{AccountInfo, Detector};
pub use fingerprint::{Fingerprinter, KeyPrint};
pub use suspension::{StateDir, StateError, Suspension, Suspensions, Unlock};
pub use webhook::{Target, Webhooks};
