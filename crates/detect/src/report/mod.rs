//! The security team's reports, built from the trail alone: the daily review
//! ([`daily`]) and the facts of a breach notification under Decree 13 ([`breach`]),
//! as JSON, text and self-contained HTML ([`html`]: inline CSS and SVG, no asset).

pub mod breach;
pub mod daily;
pub mod html;
pub mod subjects;

use std::collections::BTreeMap;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What the policy says about the data, for naming categories and columns.
#[derive(Debug, Clone, Default)]
pub struct Classification {
    /// Table -> its columns with their labels.
    pub tables: BTreeMap<String, Vec<(String, Vec<String>)>>,
    /// Label -> description.
    pub labels: BTreeMap<String, String>,
    /// Login -> (display name, roles).
    pub accounts: BTreeMap<String, (String, Vec<String>)>,
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Seconds since the start of the hour.
pub(crate) fn hour_of(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(t)
}
