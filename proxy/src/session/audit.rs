//! A session's statement records: begun before a statement goes upstream, ended
//! when the pipeline sees its answer end.
//!
//! Extended-protocol statements are recorded when they run (at Execute), with the
//! text of the prepared statement the portal was bound from and the portal's bind
//! parameters; Parse and Bind only remember what Execute will need.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use maskgate_sql::{normalize, StatementClass};
use tokio::sync::oneshot;

use super::pipeline::Finished;
use crate::audit::{self, kind, Payload, Secret, TableFacts, Trail};
use crate::enforcement::{AccountRules, Rewritten};
use crate::error::{ClientError, SqlState};
use crate::observe::{Refusal, SessionContext};
use crate::protocol::fields::Fields;

/// Largest total of bind parameter bytes kept (sealed) per statement.
const MAX_PARAM_BYTES: usize = 1024 * 1024;

/// A statement text as its records describe it.
#[derive(Debug)]
pub(super) struct Text {
    statement: String,
    literals: Vec<String>,
    cut: bool,
    class: String,
    tables: Vec<Arc<TableFacts>>,
    written: Vec<String>,
    /// `allowed` (sent as typed), `rewritten` or `monitored`.
    decision: &'static str,
    /// Monitor mode: what enforcement would have done (`deny` or `rewrite`), and the
    /// denial's SQLSTATE and message.
    would: Option<(&'static str, Option<(String, String)>)>,
}

impl Text {
    /// An unrestricted account's statement, sent as typed.
    pub(super) fn unanalyzed(sql: &str) -> Arc<Text> {
        let n = normalize(sql);
        Arc::new(Text {
            statement: n.text,
            literals: n.literals,
            cut: n.cut,
            class: "unanalyzed".into(),
            tables: Vec::new(),
            written: Vec::new(),
            decision: "allowed",
            would: None,
        })
    }

    /// A monitored account's statement, sent as typed: `would` is what enforcing it
    /// would have done, with a denial's SQLSTATE and message.
    pub(super) fn monitored(
        sql: &str,
        would: (&'static str, Option<(String, String)>),
    ) -> Arc<Text> {
        let n = normalize(sql);
        Arc::new(Text {
            statement: n.text,
            literals: n.literals,
            cut: n.cut,
            class: "unanalyzed".into(),
            tables: Vec::new(),
            written: Vec::new(),
            decision: "monitored",
            would: Some(would),
        })
    }

    /// A restricted account's statement, as the analyzer saw it.
    pub(super) fn rewritten(sql: &str, rewritten: &Rewritten, account: &AccountRules) -> Arc<Text> {
        let n = normalize(sql);
        let mut class = String::new();
        let mut tables: Vec<Arc<TableFacts>> = Vec::new();
        let mut written = Vec::new();
        for statement in &rewritten.statements {
            if !class.is_empty() {
                class.push(',');
            }
            class.push_str(class_name(statement.kind));
            for table in &statement.tables.read {
                if let Some(facts) = account.table_facts(table) {
                    if !tables.iter().any(|t| Arc::ptr_eq(t, facts)) {
                        tables.push(facts.clone());
                    }
                }
            }
            if let Some(table) = &statement.tables.written {
                written.push(table.to_string());
            }
        }
        Arc::new(Text {
            statement: n.text,
            literals: n.literals,
            cut: n.cut,
            class,
            tables,
            written,
            decision: "rewritten",
            would: None,
        })
    }
}

fn class_name(class: StatementClass) -> &'static str {
    match class {
        StatementClass::Read => "read",
        StatementClass::Write => "write",
        StatementClass::Transaction => "transaction",
        StatementClass::Session => "session",
        StatementClass::Cursor => "cursor",
        StatementClass::Notification => "notification",
    }
}

fn refusal_name(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::Policy => "policy",
        Refusal::StatementQuota => "statement_quota",
        Refusal::RowQuota => "row_quota",
        Refusal::SessionBudget => "session_rows",
        Refusal::CopyRow => "copy_row",
        Refusal::Unrecorded => "unrecorded",
        Refusal::SessionLimit => "session_limit",
    }
}

struct Bound {
    text: Arc<Text>,
    params: Vec<Option<String>>,
}

/// The session's side of the audit trail.
pub(super) struct StatementAudit {
    trail: Option<Trail>,
    session: Arc<SessionContext>,
    id: String,
    client: String,
    next: u64,
    prepared: HashMap<Vec<u8>, Arc<Text>>,
    portals: HashMap<Vec<u8>, Bound>,
    /// Strict mode: the newest record the session's next results wait for.
    durable: Option<oneshot::Receiver<()>>,
}

impl StatementAudit {
    pub(super) fn new(trail: Option<Trail>, session: Arc<SessionContext>) -> StatementAudit {
        StatementAudit {
            id: session.id.to_string(),
            client: session.client.to_string(),
            trail,
            session,
            next: 0,
            prepared: HashMap::new(),
            portals: HashMap::new(),
            durable: None,
        }
    }

    pub(super) fn is_on(&self) -> bool {
        self.trail.is_some()
    }

    /// Queues a statement's first record, before it goes upstream. Returns its
    /// number, or the error that refuses it when the trail cannot take the record.
    pub(super) fn begin(
        &mut self,
        protocol: &'static str,
        text: &Text,
        params: Vec<Option<String>>,
    ) -> Result<Option<u64>, ClientError> {
        let Some(trail) = &self.trail else {
            return Ok(None);
        };
        self.next += 1;
        let stmt = self.next;
        let secret = Secret {
            literals: text.literals.clone(),
            params,
        };
        let payload = Payload::Statement(audit::Statement {
            session: self.id.clone(),
            stmt,
            user: self.session.login.clone(),
            client: self.client.clone(),
            application_name: self.session.application_name.clone(),
            protocol,
            statement: text.statement.clone(),
            cut: text.cut,
            class: text.class.clone(),
            tables: text.tables.clone(),
            written: text.written.clone(),
            decision: text.decision,
            would: text.would.as_ref().map(|(would, _)| *would),
            would_sqlstate: text
                .would
                .as_ref()
                .and_then(|(_, denial)| Some(denial.as_ref()?.0.clone())),
            would_message: text
                .would
                .as_ref()
                .and_then(|(_, denial)| Some(denial.as_ref()?.1.clone())),
            reason: None,
            sqlstate: None,
            message: None,
            sealed_values: secret.len(),
        });
        let restricted = self.session.restricted;
        let queued = if trail.is_strict() && restricted {
            trail
                .record_durable(kind::STATEMENT, payload, Some(secret))
                .map(|told| self.durable = Some(told))
        } else {
            trail.record(kind::STATEMENT, payload, Some(secret))
        };
        match queued {
            Ok(()) => Ok(Some(stmt)),
            Err(why) if trail.refuses_unrecorded(restricted) => Err(why.client_error()),
            Err(why) => {
                tracing::error!(session = %self.id, error = %why, "a statement runs without its audit record");
                Ok(None)
            }
        }
    }

    /// Records a statement that was refused before it went upstream.
    pub(super) fn denied(
        &mut self,
        protocol: &'static str,
        sql: &str,
        refusal: Refusal,
        error: &ClientError,
    ) {
        let Some(trail) = &self.trail else {
            return;
        };
        self.next += 1;
        let n = normalize(sql);
        let secret = Secret {
            literals: n.literals,
            params: Vec::new(),
        };
        let payload = Payload::Statement(audit::Statement {
            session: self.id.clone(),
            stmt: self.next,
            user: self.session.login.clone(),
            client: self.client.clone(),
            application_name: self.session.application_name.clone(),
            protocol,
            statement: n.text,
            cut: n.cut,
            class: "denied".into(),
            tables: Vec::new(),
            written: Vec::new(),
            decision: "denied",
            would: None,
            would_sqlstate: None,
            would_message: None,
            reason: Some(refusal_name(refusal)),
            sqlstate: Some(error.sqlstate.to_string()),
            message: Some(error.message.clone()),
            sealed_values: secret.len(),
        });
        if let Err(why) = trail.record(kind::STATEMENT, payload, Some(secret)) {
            tracing::error!(session = %self.id, error = %why, "a denied statement could not be recorded");
        }
    }

    /// A Parse: what an Execute of `name` will run.
    pub(super) fn parsed(&mut self, name: &[u8], text: Arc<Text>) {
        if self.is_on() {
            self.prepared.insert(name.to_vec(), text);
        }
    }

    /// A Close of a statement (`S`) or portal (`P`).
    pub(super) fn closed(&mut self, kind: u8, name: &[u8]) {
        match kind {
            b'S' => self.prepared.remove(name),
            _ => self.portals.remove(name).map(|b| b.text),
        };
    }

    /// Every prepared statement was dropped (`DEALLOCATE ALL`, `DISCARD ALL`).
    pub(super) fn forget_statements(&mut self) {
        self.prepared.clear();
    }

    /// A Bind: the portal's statement and parameters, for its Execute.
    pub(super) fn bound(&mut self, portal: &[u8], statement: &[u8], body: &[u8]) {
        if !self.is_on() {
            return;
        }
        let Some(text) = self.prepared.get(statement).cloned() else {
            // A statement prepared with SQL PREPARE or before maskgate saw it.
            self.portals.remove(portal);
            return;
        };
        let params = bind_params(body).unwrap_or_default();
        self.portals.insert(portal.to_vec(), Bound { text, params });
    }

    /// An Execute: the portal's statement begins.
    pub(super) fn execute(&mut self, portal: &[u8]) -> Result<Option<u64>, ClientError> {
        if !self.is_on() {
            return Ok(None);
        }
        let (text, params) = match self.portals.get(portal) {
            Some(bound) => (bound.text.clone(), bound.params.clone()),
            // A cursor's name, or a portal bound from a statement never seen.
            None => (Text::unanalyzed(""), Vec::new()),
        };
        self.begin("extended", &text, params)
    }

    /// A statement's answer ended: its closing record and the session's totals.
    pub(super) fn ended(&mut self, finished: Finished) {
        self.session
            .totals
            .add(finished.seen.rows, finished.seen.bytes);
        let Some(trail) = &self.trail else {
            return;
        };
        let payload = Payload::StatementEnd(audit::StatementEnd {
            session: self.id.clone(),
            stmt: finished.stmt,
            outcome: finished.outcome.as_str(),
            sqlstate: finished.seen.sqlstate.map(|s| s.to_string()),
            stopped_by: finished.seen.stopped_by,
            would_stop: finished.seen.would_stop,
            rows: finished.seen.rows,
            bytes: finished.seen.bytes,
            duration_us: finished.duration.as_micros() as u64,
        });
        trail.record_event(kind::STATEMENT_END, payload);
    }

    /// Strict mode: ready once every record begun so far is on disk.
    pub(super) fn poll_durable(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ClientError>> {
        let Some(told) = self.durable.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        match Pin::new(told).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.durable = None;
                Poll::Ready(result.map_err(|_| {
                    ClientError::fatal(
                        SqlState::INSUFFICIENT_RESOURCES,
                        "maskgate could not make this statement's audit record durable, so its results are withheld",
                    )
                }))
            }
        }
    }
}

/// The parameters of a Bind message: text as sent, binary as `\x` hex.
fn bind_params(body: &[u8]) -> Option<Vec<Option<String>>> {
    let mut f = Fields::new(body, "Bind");
    f.cstr().ok()?;
    f.cstr().ok()?;
    let formats: Vec<i16> = (0..f.i16().ok()?)
        .map(|_| f.i16())
        .collect::<Result<_, _>>()
        .ok()?;
    let count = f.i16().ok()? as usize;
    let mut params = Vec::with_capacity(count);
    let mut kept = 0usize;
    for i in 0..count {
        let len = f.i32().ok()?;
        if len < 0 {
            params.push(None);
            continue;
        }
        let value = f.bytes(len as usize).ok()?;
        kept += value.len();
        if kept > MAX_PARAM_BYTES {
            params.push(Some("<cut>".into()));
            continue;
        }
        let binary = match formats.as_slice() {
            [] => false,
            [one] => *one == 1,
            many => many.get(i).copied() == Some(1),
        };
        params.push(Some(if binary {
            format!("\\x{}", hex::encode(value))
        } else {
            String::from_utf8_lossy(value).into_owned()
        }));
    }
    Some(params)
}
