//! maskgate's server: a PostgreSQL wire-protocol proxy.
//!
//! Clients connect with TLS and SCRAM-SHA-256 ([`auth`]); each session gets an
//! upstream connection under the service account ([`upstream`]) and a relay
//! ([`session`]) through which every message passes one inspection point. The
//! listener, connection limit and graceful shutdown live in [`server`], the
//! budgets of connections still logging in in [`admission`]; `/health` and
//! `/metrics` in [`admin`].

pub mod admin;
pub mod admission;
pub mod audit;
pub mod auth;
pub mod cancel;
pub mod catalog;
pub mod config;
pub mod detection;
pub mod enforcement;
pub mod error;
pub mod logging;
pub mod login;
pub mod metrics;
pub mod observe;
pub mod protocol;
pub mod reload;
pub mod server;
pub mod session;
pub mod stream;
pub mod throttle;
pub mod tls;
pub mod upstream;

pub use config::Config;
pub use server::{Server, ServerError, ServerHandle};
