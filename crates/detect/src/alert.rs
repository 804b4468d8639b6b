//! Alerts: what a rule found, about whom, on what evidence.
//!
//! An alert names record seqs, counts, addresses and times — never a looked-up
//! value, a statement's constants or a row. It is written into the trail as an
//! `alert` record (so it is chained and signed like everything else) and POSTed as
//! the same JSON to the webhooks.

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{Rule, Severity};

/// Seqs cited per alert; the count says how many there were.
pub const MAX_EVIDENCE_RECORDS: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// `<rule>-<seq of the record that set it off>`: unique in a trail, and the
    /// same when the trail is read again.
    pub id: String,
    pub rule: Rule,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The client address, when the alert is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// When the record that set it off was written.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// One line for people.
    pub summary: String,
    pub evidence: Evidence,
    /// Whether the rule suspends the account.
    pub suspended: bool,
}

/// What the alert rests on.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Evidence {
    /// Seqs of the records in question (the first [`MAX_EVIDENCE_RECORDS`]).
    pub records: Vec<u64>,
    /// How many events the rule counted.
    pub count: u64,
    /// The threshold the count passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u64>,
    /// The baseline it was compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<u64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub window_start: Option<OffsetDateTime>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub window_end: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<String>,
    /// Other accounts involved (login bursts: only the policy's accounts; shared
    /// assignment documents).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// Login names tried that are not accounts of the policy (counted, never
    /// listed: they may be passwords or citizen IDs typed in the wrong field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_names: Option<u64>,
}

impl Evidence {
    /// Evidence citing `records` (cut to the first [`MAX_EVIDENCE_RECORDS`]).
    pub fn records(records: impl IntoIterator<Item = u64>, count: u64) -> Evidence {
        Evidence {
            records: records.into_iter().take(MAX_EVIDENCE_RECORDS).collect(),
            count,
            ..Evidence::default()
        }
    }

    pub fn threshold(mut self, threshold: u64) -> Evidence {
        self.threshold = Some(threshold);
        self
    }

    pub fn window(mut self, start: OffsetDateTime, end: OffsetDateTime) -> Evidence {
        self.window_start = Some(start);
        self.window_end = Some(end);
        self
    }
}

impl Alert {
    /// The JSON an alert record and a webhook carry.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
