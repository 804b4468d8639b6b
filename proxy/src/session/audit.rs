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

use maskgate_detect::canonical::type_oid;
use maskgate_detect::KeyKind;
use maskgate_sql::{normalize, KeyPin, Normalized, PinnedValue, SqlPrepared, StatementClass};
use tokio::sync::oneshot;

use super::pipeline::Finished;
use crate::audit::{
    self, kind, KeySource, KeyValue, ParamForm, Payload, Secret, TableFacts, Trail,
};
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
    /// The keys it pins on lookup-only tables.
    pins: Vec<PinnedKey>,
    /// The statements it runs with SQL EXECUTE, with the constant each argument is:
    /// what they pin is read from the session's SQL-prepared statements when the
    /// statement runs (a PREPARE may come after the EXECUTE's Parse).
    executes: Vec<(String, Vec<Option<usize>>)>,
}

/// A pinned key, with how its column compares.
#[derive(Debug)]
struct PinnedKey {
    value: PinnedValue,
    kind: KeyKind,
    /// The type PostgreSQL gives an untyped parameter compared with the column.
    column_oid: Option<u32>,
    /// A parameter used only in this comparison: its type is inferred from it.
    sole_use: bool,
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
            pins: Vec::new(),
            executes: Vec::new(),
        })
    }

    /// A monitored account's statement, sent as typed: `would` is what enforcing it
    /// would have done, with a denial's SQLSTATE and message.
    /// Its pins are those enforcing would have made: the statement runs as typed, with
    /// the same comparisons of the same keys.
    /// Its tables are those enforcing would have read and written, with the masks and
    /// filters it would have applied (the reports read them as reached in clear).
    pub(super) fn monitored(
        sql: &str,
        would: (&'static str, Option<(String, String)>),
        (rewritten, account): (Option<&Rewritten>, &AccountRules),
    ) -> Arc<Text> {
        let n = normalize(sql);
        let pins = rewritten.map_or_else(Vec::new, |r| pins_of(&n, r));
        let (class, tables, written) = match rewritten {
            Some(r) => facts_of(r, account),
            None => ("unanalyzed".into(), Vec::new(), Vec::new()),
        };
        Arc::new(Text {
            statement: n.text,
            literals: n.literals,
            cut: n.cut,
            class,
            tables,
            written,
            decision: "monitored",
            would: Some(would),
            pins,
            executes: Vec::new(),
        })
    }

    /// A restricted account's statement, as the analyzer saw it.
    pub(super) fn rewritten(sql: &str, rewritten: &Rewritten, account: &AccountRules) -> Arc<Text> {
        let n = normalize(sql);
        let pins = pins_of(&n, rewritten);
        let (class, tables, written) = facts_of(rewritten, account);
        let executes = rewritten
            .statements
            .iter()
            .filter_map(|s| match &s.sql_prepared {
                Some(SqlPrepared::Execute { name, arguments }) => {
                    Some((name.clone(), arguments.clone()))
                }
                _ => None,
            })
            .collect();
        Arc::new(Text {
            statement: n.text,
            literals: n.literals,
            cut: n.cut,
            class,
            tables,
            written,
            decision: "rewritten",
            would: None,
            pins,
            executes,
        })
    }

    /// Where each pinned key is in the record's sealed values, and how to read it.
    fn key_sources(&self, params: &Params) -> Vec<KeySource> {
        self.pins
            .iter()
            .filter_map(|pin| {
                let value = match pin.value {
                    PinnedValue::Constant(index) => KeyValue::Constant(index),
                    PinnedValue::Parameter(number) => {
                        let index = number.checked_sub(1)?;
                        // The type the server reads it as: declared, described,
                        // or inferred from the key column it alone is compared with.
                        let oid = [params.declared.get(index), params.described.get(index)]
                            .into_iter()
                            .flatten()
                            .copied()
                            .find(|oid| *oid != 0)
                            .or(pin.column_oid.filter(|_| pin.sole_use));
                        KeyValue::Param {
                            index,
                            form: params.forms.get(index).copied().unwrap_or(ParamForm::Text),
                            oid,
                        }
                    }
                };
                Some(KeySource {
                    value,
                    kind: pin.kind,
                })
            })
            .collect()
    }

    /// The parameter numbers the pins read, whose values are always kept.
    fn pinned_params(&self) -> Vec<usize> {
        self.pins
            .iter()
            .filter_map(|p| match p.value {
                PinnedValue::Parameter(n) => n.checked_sub(1),
                PinnedValue::Constant(_) => None,
            })
            .collect()
    }
}

/// The keys the statements of `rewritten` pin, with how their columns compare.
fn pins_of(n: &Normalized, rewritten: &Rewritten) -> Vec<PinnedKey> {
    let pins = rewritten.statements.iter().flat_map(|s| s.pins.iter());
    pins.map(|pin| PinnedKey {
        value: pin.value,
        kind: KeyKind::of(&pin.column_type),
        column_oid: type_oid(&pin.column_type),
        sole_use: match pin.value {
            PinnedValue::Parameter(number) => !n.cut && parameter_uses(&n.text, number) == 1,
            PinnedValue::Constant(_) => false,
        },
    })
    .collect()
}

/// How often `$number` stands in a normalized text.
fn parameter_uses(text: &str, number: usize) -> usize {
    let needle = format!("${number}");
    let bytes = text.as_bytes();
    text.match_indices(&needle)
        .filter(|(at, _)| {
            let before = at.checked_sub(1).map(|i| bytes[i]);
            let after = bytes.get(at + needle.len());
            !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
                && !after.is_some_and(u8::is_ascii_digit)
        })
        .count()
}

/// A SQL-prepared statement's keys (by parameter or constant) and tables.
#[derive(Debug)]
struct SqlPreparedFacts {
    pins: Vec<KeyPin>,
    tables: Vec<Arc<TableFacts>>,
}

/// The statement classes, the tables read (with the rules the account's policy
/// applies to them) and the tables written of an analyzed statement string.
fn facts_of(
    rewritten: &Rewritten,
    account: &AccountRules,
) -> (String, Vec<Arc<TableFacts>>, Vec<String>) {
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
    (class, tables, written)
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
    info: Params,
}

/// What the record of a bound statement needs to read its parameters.
#[derive(Debug, Clone, Default)]
pub(super) struct Params {
    /// Types the Parse declared (0: left to the server).
    declared: Vec<u32>,
    /// Types the server described (ParameterDescription).
    described: Vec<u32>,
    forms: Vec<ParamForm>,
}

/// A prepared statement as its Executes will record it.
struct Prepared {
    text: Arc<Text>,
    declared: Vec<u32>,
    described: Vec<u32>,
}

/// The session's side of the audit trail.
pub(super) struct StatementAudit {
    trail: Option<Trail>,
    session: Arc<SessionContext>,
    id: String,
    client: String,
    next: u64,
    prepared: HashMap<Vec<u8>, Prepared>,
    portals: HashMap<Vec<u8>, Bound>,
    /// Statements prepared by SQL, by folded name: what an EXECUTE of them pins.
    /// Noted when analyzed, before PostgreSQL accepts them: every body analyzed
    /// under a name since it was last dropped is a candidate, and an EXECUTE's
    /// record names the keys and tables of all of them (never fewer than ran).
    sql_prepared: HashMap<String, Vec<SqlPreparedFacts>>,
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
            sql_prepared: HashMap::new(),
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
        info: &Params,
    ) -> Result<Option<u64>, ClientError> {
        let Some(trail) = &self.trail else {
            return Ok(None);
        };
        self.next += 1;
        let stmt = self.next;
        let mut keys = text.key_sources(info);
        let mut tables = text.tables.clone();
        if !text.executes.is_empty() {
            let (more_keys, more_tables) = self.executed(text);
            keys.extend(more_keys);
            for facts in more_tables {
                if !tables.iter().any(|t| Arc::ptr_eq(t, &facts)) {
                    tables.push(facts);
                }
            }
        }
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
            tables,
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
            keys,
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
            keys: Vec::new(),
        });
        if let Err(why) = trail.record(kind::STATEMENT, payload, Some(secret)) {
            tracing::error!(session = %self.id, error = %why, "a denied statement could not be recorded");
        }
    }

    /// A Parse: what an Execute of `name` will run, and the parameter types it
    /// declares (`param_types`: count and OIDs as sent).
    pub(super) fn parsed(&mut self, name: &[u8], text: Arc<Text>, param_types: &[u8]) {
        if self.is_on() {
            let declared = oids(param_types).unwrap_or_default();
            let prepared = Prepared {
                text,
                declared,
                described: Vec::new(),
            };
            self.prepared.insert(name.to_vec(), prepared);
        }
    }

    /// The server described the parameters of `name` (a ParameterDescription).
    pub(super) fn described(&mut self, name: &[u8], body: &[u8]) {
        if let Some(prepared) = self.prepared.get_mut(name) {
            prepared.described = oids(body).unwrap_or_default();
        }
    }

    /// A Close of a statement (`S`) or portal (`P`), or a statement dropped by SQL.
    pub(super) fn closed(&mut self, kind: u8, name: &[u8]) {
        match kind {
            b'S' => {
                self.prepared.remove(name);
                if let Ok(name) = std::str::from_utf8(name) {
                    self.sql_prepared.remove(name);
                }
            }
            _ => {
                self.portals.remove(name);
            }
        }
    }

    /// Every prepared statement was dropped (`DEALLOCATE ALL`, `DISCARD ALL`).
    pub(super) fn forget_statements(&mut self) {
        self.prepared.clear();
        self.sql_prepared.clear();
    }

    /// Notes the bodies SQL PREPAREs in `rewritten` give their names.
    pub(super) fn note_sql_prepared(&mut self, rewritten: &Rewritten, account: &AccountRules) {
        if !self.is_on() {
            return;
        }
        for statement in &rewritten.statements {
            if let Some(SqlPrepared::Prepare { name, pins }) = &statement.sql_prepared {
                let tables = statement
                    .tables
                    .read
                    .iter()
                    .filter_map(|t| account.table_facts(t).cloned())
                    .collect();
                let facts = SqlPreparedFacts {
                    pins: pins.clone(),
                    tables,
                };
                self.sql_prepared
                    .entry(name.clone())
                    .or_default()
                    .push(facts);
            }
        }
    }

    /// The keys and tables of what `text` runs with SQL EXECUTE: each parameter a
    /// prepared body pins, named by the constant the EXECUTE passes for it (an
    /// argument that is not a constant is a key the trail does not keep).
    fn executed(&self, text: &Text) -> (Vec<KeySource>, Vec<Arc<TableFacts>>) {
        let (mut keys, mut tables) = (Vec::new(), Vec::new());
        for (name, arguments) in &text.executes {
            for body in self.sql_prepared.get(name).into_iter().flatten() {
                for pin in &body.pins {
                    let PinnedValue::Parameter(number) = pin.value else {
                        continue;
                    };
                    let constant = number
                        .checked_sub(1)
                        .and_then(|i| arguments.get(i).copied().flatten());
                    keys.push(KeySource {
                        value: KeyValue::Constant(constant),
                        kind: KeyKind::of(&pin.column_type),
                    });
                }
                tables.extend(body.tables.iter().cloned());
            }
        }
        (keys, tables)
    }

    /// A Bind: the portal's statement and parameters, for its Execute.
    pub(super) fn bound(&mut self, portal: &[u8], statement: &[u8], body: &[u8]) {
        if !self.is_on() {
            return;
        }
        let Some(prepared) = self.prepared.get(statement) else {
            // A statement prepared with SQL PREPARE or before maskgate saw it.
            self.portals.remove(portal);
            return;
        };
        let keep = prepared.text.pinned_params();
        let (params, forms) = bind_params(body, &keep).unwrap_or_default();
        let info = Params {
            declared: prepared.declared.clone(),
            described: prepared.described.clone(),
            forms,
        };
        let text = prepared.text.clone();
        self.portals
            .insert(portal.to_vec(), Bound { text, params, info });
    }

    /// An Execute: the portal's statement begins.
    pub(super) fn execute(&mut self, portal: &[u8]) -> Result<Option<u64>, ClientError> {
        if !self.is_on() {
            return Ok(None);
        }
        let (text, params, info) = match self.portals.get(portal) {
            Some(bound) => (bound.text.clone(), bound.params.clone(), bound.info.clone()),
            // A cursor's name, or a portal bound from a statement never seen.
            None => (Text::unanalyzed(""), Vec::new(), Params::default()),
        };
        self.begin("extended", &text, params, &info)
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

/// A count and that many OIDs (a Parse's parameter types, a ParameterDescription).
fn oids(body: &[u8]) -> Option<Vec<u32>> {
    let mut f = Fields::new(body, "types");
    let count = f.i16().ok()?;
    (0..count).map(|_| f.i32().ok().map(|v| v as u32)).collect()
}

/// The parameters of a Bind message: text as sent, binary as `\x` hex, and how
/// each was sent. Past [`MAX_PARAM_BYTES`] values are cut, but never those of
/// `keep` (the pinned lookup keys, bounded by the message size).
fn bind_params(body: &[u8], keep: &[usize]) -> Option<(Vec<Option<String>>, Vec<ParamForm>)> {
    let mut f = Fields::new(body, "Bind");
    f.cstr().ok()?;
    f.cstr().ok()?;
    let formats: Vec<i16> = (0..f.i16().ok()?)
        .map(|_| f.i16())
        .collect::<Result<_, _>>()
        .ok()?;
    let count = f.i16().ok()? as usize;
    let mut params = Vec::with_capacity(count);
    let mut forms = Vec::with_capacity(count);
    let mut kept = 0usize;
    for i in 0..count {
        let binary = match formats.as_slice() {
            [] => false,
            [one] => *one == 1,
            many => many.get(i).copied() == Some(1),
        };
        let len = f.i32().ok()?;
        if len < 0 {
            params.push(None);
            forms.push(if binary {
                ParamForm::Binary
            } else {
                ParamForm::Text
            });
            continue;
        }
        let value = f.bytes(len as usize).ok()?;
        if !keep.contains(&i) {
            kept += value.len();
            if kept > MAX_PARAM_BYTES {
                params.push(Some("<cut>".into()));
                forms.push(ParamForm::Cut);
                continue;
            }
        }
        params.push(Some(if binary {
            format!("\\x{}", hex::encode(value))
        } else {
            String::from_utf8_lossy(value).into_owned()
        }));
        forms.push(if binary {
            ParamForm::Binary
        } else {
            ParamForm::Text
        });
    }
    Some((params, forms))
}

#[cfg(test)]
mod tests {
    use super::parameter_uses;

    #[test]
    fn parameter_uses_count_whole_placeholders() {
        assert_eq!(parameter_uses("SELECT a FROM t WHERE k = $1", 1), 1);
        assert_eq!(
            parameter_uses("SELECT $1::int8, a$1 FROM t WHERE k = $1 AND x = $10", 1),
            2
        );
        assert_eq!(parameter_uses("SELECT $2", 1), 0);
    }
}
