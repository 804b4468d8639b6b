//! Records of the audit trail as detection and the reports see them.
//!
//! The same parser reads the lines the proxy's writer hands over live and the lines
//! of segments read back at start or by a report, so a rule sees exactly what the
//! trail holds: no personal data in clear, record seqs to cite as evidence.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::{Rule, Severity};
use crate::fingerprint::KeyPrint;

/// Record kinds detection writes into the trail.
pub mod kind {
    pub const ALERT: &str = "alert";
    pub const SUSPENDED: &str = "account_suspended";
    pub const UNLOCKED: &str = "account_unlocked";
}

/// The kinds a reader parses; every other line is skipped unparsed.
pub const KINDS: [&str; 11] = [
    "proxy_start",
    "login",
    "session_end",
    "statement",
    "statement_end",
    "lockout",
    "policy_reload",
    kind::ALERT,
    kind::SUSPENDED,
    kind::UNLOCKED,
    "audit_tool",
];

/// One record.
#[derive(Debug, Clone)]
pub struct Observation {
    pub seq: u64,
    pub time: OffsetDateTime,
    pub event: Observed,
}

#[derive(Debug, Clone)]
pub enum Observed {
    ProxyStart,
    Login(Login),
    SessionEnd(SessionEnd),
    Statement(Statement),
    StatementEnd(StatementEnd),
    Lockout {
        user: String,
        client: Option<IpAddr>,
    },
    PolicyReload {
        accepted: bool,
        before: String,
        after: Option<String>,
    },
    Alert(AlertRecord),
    Suspended {
        login: String,
        alert: Option<String>,
    },
    Unlocked {
        login: String,
        reason: String,
        by: String,
    },
    AuditTool {
        command: String,
        os_user: String,
    },
}

#[derive(Debug, Clone)]
pub struct Login {
    pub admitted: bool,
    pub session: Option<String>,
    pub client: Option<IpAddr>,
    pub user: Option<String>,
    /// A refusal's reason (`auth_failed`, …).
    pub reason: Option<String>,
    pub roles: Vec<String>,
    pub certificate: Option<String>,
    pub application_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SessionEnd {
    pub session: String,
    pub user: String,
    pub end: String,
    pub rows: u64,
    pub statements: u64,
}

/// What a statement did to one policy table.
#[derive(Debug, Clone)]
pub struct TableTouch {
    pub table: String,
    /// `column:mask`.
    pub masked: Vec<String>,
    pub denied: Vec<String>,
    /// The table is lookup-only for the account: the statement pinned a key.
    pub pinned: bool,
}

#[derive(Debug, Clone)]
pub struct Statement {
    pub session: String,
    pub stmt: u64,
    pub user: String,
    pub client: Option<IpAddr>,
    /// `allowed`, `rewritten`, `monitored` (shadow mode: run as typed) or `denied`.
    pub decision: String,
    /// A denial's reason (`policy`, `statement_quota`, …).
    pub reason: Option<String>,
    pub class: String,
    pub tables: Vec<TableTouch>,
    pub written: Vec<String>,
    /// Fingerprints of the keys it pinned on lookup-only tables.
    pub keys: Vec<KeyPrint>,
    /// Keys it pinned that could not be read, hence not fingerprinted: each may be
    /// another person.
    pub unkeyed: u64,
    /// The id of the seal key its values are sealed under.
    pub seal_key: Option<String>,
}

impl Statement {
    /// Whether the statement looked someone up by key on a lookup-only table. A
    /// monitored statement names no tables (it ran as typed, unmasked), but its keys
    /// are those enforcing would have pinned, so they are lookups too.
    pub fn is_lookup(&self) -> bool {
        (self.tables.iter().any(|t| t.pinned) || self.decision == "monitored")
            && (!self.keys.is_empty() || self.unkeyed > 0)
    }
}

#[derive(Debug, Clone)]
pub struct StatementEnd {
    pub session: String,
    pub stmt: u64,
    pub outcome: String,
    pub sqlstate: Option<String>,
    pub stopped_by: Option<String>,
    pub rows: u64,
    pub bytes: u64,
}

/// An `alert` record read back.
#[derive(Debug, Clone)]
pub struct AlertRecord {
    pub id: String,
    pub rule: Option<Rule>,
    pub severity: Option<Severity>,
    pub account: Option<String>,
    pub client: Option<String>,
    /// When the triggering record was written.
    pub at: Option<OffsetDateTime>,
    pub summary: String,
    pub suspended: bool,
    pub window_start: Option<OffsetDateTime>,
    pub records: Vec<u64>,
}

/// The kind of a line, read from the writer's fixed envelope without parsing.
pub fn line_kind(line: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"kind\":\"";
    let at = memchr::memmem::find(line, KEY)? + KEY.len();
    let len = memchr::memchr(b'"', &line[at..])?;
    std::str::from_utf8(&line[at..at + len]).ok()
}

#[derive(Deserialize)]
struct TableLine<'a> {
    #[serde(borrow)]
    table: Cow<'a, str>,
    #[serde(default)]
    masked: Vec<String>,
    #[serde(default)]
    denied: Vec<String>,
    #[serde(default)]
    pinned_by: Vec<Cow<'a, str>>,
}

/// Every field any parsed kind uses; each kind reads its own.
#[derive(Deserialize)]
struct Line<'a> {
    seq: u64,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    outcome: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    session: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    client: Option<Cow<'a, str>>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    login: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    client_certificate: Option<String>,
    #[serde(default)]
    application_name: Option<String>,
    #[serde(default)]
    end: Option<String>,
    #[serde(default)]
    rows: u64,
    #[serde(default)]
    bytes: u64,
    #[serde(default)]
    statements: u64,
    #[serde(default)]
    stmt: u64,
    #[serde(default)]
    decision: Option<String>,
    #[serde(default)]
    class: Option<String>,
    #[serde(borrow, default)]
    tables: Vec<TableLine<'a>>,
    #[serde(default)]
    written: Vec<String>,
    #[serde(default)]
    keys: Vec<KeyPrint>,
    #[serde(default)]
    unkeyed: u64,
    #[serde(default)]
    sealed: Option<SealedLine>,
    #[serde(default)]
    sqlstate: Option<String>,
    #[serde(default)]
    stopped_by: Option<String>,
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    after: Option<String>,
    // alert
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    suspended: bool,
    #[serde(default)]
    evidence: Option<EvidenceLine>,
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    os_user: Option<String>,
}

#[derive(Deserialize)]
struct SealedLine {
    key_id: String,
}

#[derive(Deserialize, Default)]
struct EvidenceLine {
    #[serde(default)]
    records: Vec<u64>,
    #[serde(default)]
    window_start: Option<String>,
}

fn ip(client: &Option<Cow<'_, str>>) -> Option<IpAddr> {
    let text = client.as_deref()?;
    text.parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| text.parse::<IpAddr>())
        .ok()
        .map(|ip| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        })
}

fn time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Parses one line of a segment. `None` for kinds detection does not read and for
/// lines that are not records (the verifier is the one to report those).
pub fn parse(line: &[u8]) -> Option<Observation> {
    let kind = line_kind(line)?;
    if !KINDS.contains(&kind) {
        return None;
    }
    let l: Line<'_> = serde_json::from_slice(line).ok()?;
    let time = time(&l.time)?;
    let owned = |c: &Option<Cow<'_, str>>| c.as_deref().map(str::to_owned);
    let event = match &*l.kind {
        "proxy_start" => Observed::ProxyStart,
        "login" => Observed::Login(Login {
            admitted: l.outcome.as_deref() == Some("admitted"),
            session: owned(&l.session),
            client: ip(&l.client),
            user: l.user.or(l.login),
            reason: l.reason,
            roles: l.roles,
            certificate: l.client_certificate,
            application_name: l.application_name,
        }),
        "session_end" => Observed::SessionEnd(SessionEnd {
            session: owned(&l.session)?,
            user: l.user?,
            end: l.end.unwrap_or_default(),
            rows: l.rows,
            statements: l.statements,
        }),
        "statement" => Observed::Statement(Statement {
            session: owned(&l.session)?,
            stmt: l.stmt,
            user: l.user?,
            client: ip(&l.client),
            decision: l.decision.unwrap_or_default(),
            reason: l.reason,
            class: l.class.unwrap_or_default(),
            tables: l
                .tables
                .into_iter()
                .map(|t| TableTouch {
                    table: t.table.into_owned(),
                    masked: t.masked,
                    denied: t.denied,
                    pinned: !t.pinned_by.is_empty(),
                })
                .collect(),
            written: l.written,
            keys: l.keys,
            unkeyed: l.unkeyed,
            seal_key: l.sealed.map(|s| s.key_id),
        }),
        "statement_end" => Observed::StatementEnd(StatementEnd {
            session: owned(&l.session)?,
            stmt: l.stmt,
            outcome: l.outcome.as_deref().unwrap_or_default().to_owned(),
            sqlstate: l.sqlstate,
            stopped_by: l.stopped_by,
            rows: l.rows,
            bytes: l.bytes,
        }),
        "lockout" => Observed::Lockout {
            user: l.user.unwrap_or_default(),
            client: ip(&l.client),
        },
        "policy_reload" => Observed::PolicyReload {
            accepted: l.outcome.as_deref() == Some("accepted"),
            before: l.before.unwrap_or_default(),
            after: l.after,
        },
        kind::ALERT => {
            let evidence = l.evidence.unwrap_or_default();
            Observed::Alert(AlertRecord {
                id: l.id?,
                rule: l.rule.as_deref().and_then(Rule::parse),
                severity: l.severity,
                account: l.account,
                client: owned(&l.client),
                at: l.at.as_deref().and_then(self::time),
                summary: l.summary.unwrap_or_default(),
                suspended: l.suspended,
                window_start: evidence.window_start.as_deref().and_then(self::time),
                records: evidence.records,
            })
        }
        kind::SUSPENDED => Observed::Suspended {
            login: l.login?,
            alert: l.alert,
        },
        kind::UNLOCKED => Observed::Unlocked {
            login: l.login?,
            reason: l.reason.unwrap_or_default(),
            by: l.by.unwrap_or_default(),
        },
        "audit_tool" => Observed::AuditTool {
            command: l.command.unwrap_or_default(),
            os_user: l.os_user.unwrap_or_default(),
        },
        _ => return None,
    };
    Some(Observation {
        seq: l.seq,
        time,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_statement_with_keys_and_skips_other_kinds() {
        let line = br#"{"seq":9,"time":"2025-01-31T08:15:02.5Z","kind":"statement","prev":"00","session":"ab-1","stmt":3,"user":"clerk","client":"[::ffff:10.0.0.5]:5000","protocol":"simple","statement":"SELECT $L1","class":"read","tables":[{"table":"public.person","masked":["citizen_id:partial"],"pinned_by":["citizen_id"],"roles":["clerk"]}],"decision":"rewritten","sealed_values":1,"keys":[{"k":"00000000000000ff","n":"0000000000000001"}]}"#;
        let o = parse(line).unwrap();
        assert_eq!(o.seq, 9);
        let Observed::Statement(s) = o.event else {
            panic!()
        };
        assert!(s.is_lookup());
        assert_eq!(s.client, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(s.keys[0].k, 255);
        assert_eq!(s.keys[0].n, Some(1));
        assert!(parse(
            br#"{"seq":1,"time":"2025-01-31T08:15:02Z","kind":"checkpoint","prev":"00"}"#
        )
        .is_none());
    }
}
