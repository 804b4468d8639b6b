//! Throwaway PostgreSQL clusters for maskgate's end-to-end tests and for
//! `maskgate demo`.
//!
//! Tests must run against a real server (never a mock), and each test wants
//! a server it can break, stop and restart. [`PgCluster::start`] gives one in
//! well under a second by copying a per-process template made by `initdb`;
//! [`PgCluster::shared`] gives one per process for tests that only need SQL.
//!
//! Cleanup: dropping a cluster (also while a test panics) stops it and
//! removes its directory; the shared cluster and the template are removed by
//! an `atexit` hook. If the test process is killed (SIGKILL, Ctrl-C, abort)
//! neither runs; a small detached shell per cluster notices within a second
//! and stops the server and deletes the directory. Only a machine crash or
//! killing that shell too leaves a server behind.
//!
//! [`TestProxy`] runs maskgate itself in-process, on an ephemeral port, in
//! front of a cluster, configured through a real configuration file.
//! [`register`] fills a cluster with a synthetic social-insurance register
//! and starts maskgate in front of it with the example policy. [`ServedBinary`]
//! runs the `maskgate` binary itself from a [`TestProxy`]'s configuration.
//!
//! When run as root, the cluster directories belong to and the server runs
//! as the OS user `postgres`, because PostgreSQL refuses to run as root.

mod binaries;
mod cleanup;
mod cluster;
mod error;
mod http;
mod process;
mod proxy;
pub mod register;
mod served;
mod template;
mod trail;
mod url;

pub use binaries::{PgBinaries, BINDIR_ENV};
pub use cluster::{PgCluster, EXTERNAL_URL_ENV};
pub use error::TestkitError;
pub use http::{free_port, http_get, metric, metric_sum};
pub use proxy::{accounts_toml, rewrite_accounts, ProxyOptions, TestProxy};
pub use served::{ServeOptions, ServedBinary};
pub use template::TMPDIR_ENV;
pub use trail::{audit_records, audit_records_of, wait_for_record};
