//! PostgreSQL's backend protocol state machine, followed message by message.
//!
//! The server reads the client's messages in order and answers each in a fixed way:
//! Parse, Bind and Close with one completion message, Describe with its
//! descriptions, Execute with rows and one end, Sync and Query with one
//! ReadyForQuery, Flush with nothing. After an error in an extended-protocol message
//! it discards every message up to the next Sync (a simple Query included, which
//! then gets no ReadyForQuery at all); a simple Query stops at its first error;
//! during `COPY … FROM STDIN` it reads copy messages and swallows Flush and Sync, and
//! outside one it ignores copy messages.
//!
//! The session queues every message it sends upstream as an [`Op`] carrying the state
//! that belongs to it (how its rows count, its denial, the statement it prepares), and
//! consumes the queue as the server answers, applying those rules. So per-statement
//! state is applied to exactly the message the server answered, takes effect when the
//! server confirms it, and is dropped with the messages the server skipped. A server
//! message the model cannot place is a [`Desync`]: the session is closed rather than
//! guessed at.

use std::collections::VecDeque;
use std::time::Instant;

use crate::error::{ClientError, SqlState};

mod answers;
mod confirmed;
mod copy_in;
mod cursors;
mod outcome;
pub mod resources;
pub mod sql_names;
use crate::protocol::backend_tag;
use confirmed::Confirmed;
use cursors::Cursor;
use maskgate_sql::Motion;
use outcome::error_sqlstate;
pub use outcome::{Finished, Outcome, Seen};
use resources::Resources;
use sql_names::SqlNameOp;

/// The server sent something the model of its state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desync(pub &'static str);

/// Where a statement's rows add up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountKey {
    /// Only this statement's rows.
    Statement,
    /// Every Execute of a portal since it was bound.
    Portal(String),
    /// Every FETCH and MOVE of a cursor since it was declared.
    Cursor(String),
}

/// How one statement of a simple Query counts its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementPlan {
    pub key: CountKey,
    /// The statement's own cap (the tables it reads may set one).
    pub cap: Option<u64>,
    /// The statement declares this cursor: its count starts again once it has run.
    pub declares: Option<String>,
    /// A restricted account's `COPY … TO STDOUT`: its CopyData rows are counted.
    pub copy_out: Option<maskgate_sql::CopyOut>,
    /// A FETCH or MOVE: what it does to its cursor.
    pub motion: Option<Motion>,
}

/// A prepared statement that declares or reads a cursor (DECLARE, FETCH, MOVE,
/// CLOSE): which cursor, and what it does to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOf {
    pub cursor: String,
    pub motion: Option<Motion>,
    /// A DECLARE: the cursor's count starts again once it has run.
    pub declares: bool,
}

/// A client message as it went upstream, with the state that belongs to it.
#[derive(Debug)]
pub struct Op {
    pub kind: OpKind,
    /// The error the client gets in place of the server's answer to the denial token.
    pub denial: Option<ClientError>,
    pub sent: Instant,
    /// The number of the audit record this message's statement began, if it began one.
    pub audit: Option<u64>,
    /// The bytes of the statement text a Parse prepares.
    pub text_bytes: usize,
    /// What its text does to the prepared statements by SQL, statement by statement.
    pub names: VecDeque<SqlNameOp>,
}

#[derive(Debug)]
pub enum OpKind {
    /// A simple Query. `statements` is `None` when the text was not analyzed
    /// (unrestricted accounts): each result set then counts alone.
    Query {
        statements: Option<VecDeque<StatementPlan>>,
        cap: Option<u64>,
    },
    /// A Parse; `prepared` is the number of the proxy's statement it creates, if any.
    Parse {
        name: String,
        fetch_cursor: Option<FetchOf>,
        prepared: Option<u32>,
    },
    Bind {
        portal: String,
        statement: String,
    },
    /// A Describe; `statement` names the prepared statement it describes (`S`).
    Describe {
        statement: Option<Vec<u8>>,
    },
    Execute {
        portal: String,
        cap: Option<u64>,
        /// The Execute's row limit (0: all rows).
        max_rows: u32,
    },
    /// A Close of a statement (`S`) or portal (`P`).
    Close {
        kind: u8,
        name: String,
    },
    Sync,
    /// One or more CopyData messages in a row.
    CopyData,
    CopyDone,
    CopyFail,
}

impl Op {
    pub fn new(kind: OpKind) -> Op {
        Op {
            kind,
            denial: None,
            sent: Instant::now(),
            audit: None,
            text_bytes: 0,
            names: VecDeque::new(),
        }
    }

    /// The same, for a text of `bytes` bytes that prepares or drops statements by
    /// SQL as `names` say.
    pub fn with_text(mut self, bytes: usize, names: VecDeque<SqlNameOp>) -> Op {
        self.text_bytes = bytes;
        self.names = names;
        self
    }

    pub fn denied(kind: OpKind, denial: ClientError) -> Op {
        Op {
            denial: Some(denial),
            ..Op::new(kind)
        }
    }

    /// The same, with the audit record its statement began.
    pub fn audited(mut self, stmt: Option<u64>) -> Op {
        self.audit = stmt;
        self
    }

    fn is_copy(&self) -> bool {
        matches!(
            self.kind,
            OpKind::CopyData | OpKind::CopyDone | OpKind::CopyFail
        )
    }

    /// The server answers it (Sync and copy messages aside).
    fn answered(&self) -> bool {
        !self.is_copy() && !matches!(self.kind, OpKind::Sync)
    }
}

/// The limit a statement ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The roles' max_rows per statement (counted across the portal or cursor).
    PerStatement(u64),
    /// The account's hourly row quota is used up.
    Hourly,
    /// The session has read its `max_rows_per_session`.
    Session(u64),
}

/// What to do with a DataRow.
#[derive(Debug, PartialEq, Eq)]
pub enum RowVerdict {
    Forward,
    /// Kept back until the statement ends within its cap (`over_cap = "refuse"`).
    Hold,
    /// Over a limit: never forwarded.
    Drop,
}

/// How a statement ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Completion {
    Done,
    /// A limit was reached and rows were held back; `more_pending` tells whether
    /// messages the server will answer were sent behind it before the client could
    /// have seen an error (they run although the client expects them skipped).
    Exceeded {
        limit: Limit,
        more_pending: bool,
    },
    /// Shadow mode: it ran to its end, past the cap that would have stopped it.
    Shadowed {
        cap: u64,
    },
}

/// A server message, placed in the model.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Forward (asynchronous messages, completions, descriptions of parameters).
    Pass,
    /// A DataRow of the statement answering now; see [`Pipeline::count_row`].
    Row,
    /// A RowDescription, of a Query statement or a Describe.
    Description,
    /// A statement ended (CommandComplete, EmptyQueryResponse, PortalSuspended).
    Complete(Completion),
    /// The message being answered failed; its denial, if it was one.
    Error(Option<ClientError>),
    /// ReadyForQuery for a Sync or Query sent at `sent`.
    Ready { sent: Instant },
    /// Belongs to a statement the proxy stopped: not for the client.
    Drop,
}

#[derive(Debug)]
struct Counter {
    key: CountKey,
    rows: u64,
    cap: Option<u64>,
    exceeded: Option<Limit>,
    declares: Option<String>,
    /// For a cursor's rows: what the command does to the cursor.
    motion: Option<Motion>,
    /// DataRows the server sent for it, forwarded or not.
    upstream_rows: u64,
    /// Counted COPY data: its format, and whether a CSV header line is still to come.
    copy_out: Option<(maskgate_sql::CopyOut, bool)>,
    /// Shadow mode: the cap was passed, and not enforced.
    passed: bool,
}

impl Counter {
    fn new(key: CountKey, cap: Option<u64>) -> Counter {
        Counter {
            key,
            rows: 0,
            cap,
            exceeded: None,
            declares: None,
            motion: None,
            upstream_rows: 0,
            copy_out: None,
            passed: false,
        }
    }

    /// Whether a CopyData message of a counted COPY … TO is a row: not the CSV
    /// header line (the first message) nor the binary trailer (only the 16-bit -1).
    fn copy_row(&mut self, body: &[u8]) -> Option<bool> {
        let (format, header_pending) = self.copy_out.as_mut()?;
        if std::mem::take(header_pending) {
            return Some(false);
        }
        Some(!(format.binary && body == [0xff, 0xff]))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Copy {
    None,
    /// COPY FROM STDIN: the server reads the client's copy messages.
    In,
    /// COPY TO STDOUT: the server sends CopyData and CopyDone.
    Out,
}

/// The message the server is answering.
#[derive(Debug)]
struct Active {
    op: Op,
    counter: Option<Counter>,
    copy: Copy,
    /// A Query's statement failed: only its ReadyForQuery follows.
    failed: bool,
    /// The proxy stopped it: what is left of it is dropped.
    dropping: bool,
    /// What the client got, for the statement's audit record.
    seen: Seen,
}

/// The queue of messages the server has yet to answer, and what it is doing now.
#[derive(Debug, Default)]
pub struct Pipeline {
    ops: VecDeque<Op>,
    active: Option<Active>,
    /// After an extended-protocol error: the server discards messages up to a Sync.
    skipping: bool,
    /// The proxy ended an extended-protocol statement with its own error: the
    /// client's messages up to its Sync are not sent, as PostgreSQL would skip them.
    pub client_skip: bool,
    confirmed: Confirmed,
    /// Statements of the proxy whose Parse failed or was skipped: they do not exist.
    lost: Vec<u32>,
    /// Audited statements that ended, for their records.
    finished: Vec<Finished>,
    /// The named statements and portals the session holds upstream.
    pub resources: Resources,
    /// Rows are held back until their statement ends within its cap.
    pub hold: bool,
    /// Shadow mode: caps are counted and reported, never enforced.
    pub shadow: bool,
}

impl Pipeline {
    /// A message sent upstream. Copy messages reaching an idle server are ignored by
    /// it and not queued.
    pub fn push(&mut self, op: Op) {
        if op.is_copy() && self.is_idle() {
            return;
        }
        match &op.kind {
            OpKind::Parse { name, .. } if !name.is_empty() => {
                self.resources.sent_statement(op.text_bytes)
            }
            OpKind::Bind { portal, .. } if !portal.is_empty() => self.resources.sent_portal(),
            OpKind::Close { kind, name } => self.resources.closing(*kind, name),
            _ => {}
        }
        if matches!(op.kind, OpKind::CopyData)
            && self
                .ops
                .back()
                .is_some_and(|last| matches!(last.kind, OpKind::CopyData))
        {
            return;
        }
        self.ops.push_back(op);
    }

    /// The prepared statement the server is describing now, if it is.
    pub fn describing(&self) -> Option<&[u8]> {
        match &self.active.as_ref()?.op.kind {
            OpKind::Describe { statement } => statement.as_deref(),
            _ => None,
        }
    }

    /// Nothing sent is unanswered.
    pub fn is_idle(&self) -> bool {
        self.ops.is_empty() && self.active.is_none()
    }

    /// Proxy statements that will never exist upstream, since the last call.
    pub fn take_lost(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.lost)
    }

    /// Places one server message. Call for every message but FATAL errors.
    pub fn server(&mut self, tag: u8, body: &[u8]) -> Result<Step, Desync> {
        if matches!(
            tag,
            backend_tag::NOTICE_RESPONSE
                | backend_tag::PARAMETER_STATUS
                | backend_tag::NOTIFICATION_RESPONSE
        ) {
            return Ok(Step::Pass);
        }
        if tag == backend_tag::READY_FOR_QUERY && body.first() == Some(&b'I') {
            // The transaction is over, and with it every portal.
            self.resources.transaction_ended();
            self.confirmed.transaction_ended();
        }
        if self.active.is_none() {
            self.begin()?;
        }
        let active = self.active.as_mut().expect("begin sets the active message");
        if active.dropping && tag == backend_tag::COPY_IN_RESPONSE {
            // Dropped, the server would wait for copy data the client never sends.
            return Err(Desync("a COPY started in a batch maskgate had stopped"));
        }
        if active.dropping && tag != backend_tag::READY_FOR_QUERY {
            return Ok(Step::Drop);
        }
        match active.copy {
            Copy::In => return self.copy_in(tag, body),
            Copy::Out if tag == backend_tag::COPY_DATA => {
                let row = active.counter.as_mut().and_then(|c| c.copy_row(body));
                return Ok(if row == Some(true) {
                    Step::Row
                } else {
                    Step::Pass
                });
            }
            Copy::Out if tag == backend_tag::COPY_DONE => return Ok(Step::Pass),
            _ => {}
        }
        match active.op.kind {
            OpKind::Query { .. } => self.query(tag, body),
            OpKind::Execute { .. } => self.execute(tag, body),
            OpKind::Sync => match tag {
                backend_tag::READY_FOR_QUERY => Ok(self.ready()),
                _ => Err(Desync("a message other than ReadyForQuery answered a Sync")),
            },
            _ => self.simple_answer(tag, body),
        }
    }

    /// Makes the next message the server will answer active, passing over what it
    /// ignores (copy messages outside COPY) or skips (up to Sync after an error).
    fn begin(&mut self) -> Result<(), Desync> {
        loop {
            let Some(op) = self.ops.pop_front() else {
                return Err(Desync(
                    "the server answered a message the client did not send",
                ));
            };
            if self.skipping {
                if matches!(op.kind, OpKind::Sync) {
                    self.skipping = false;
                } else {
                    self.lose(op);
                    continue;
                }
            } else if op.is_copy() {
                continue;
            }
            let counter = match &op.kind {
                OpKind::Execute {
                    portal,
                    cap,
                    max_rows,
                } => {
                    let mut counter = Counter::new(self.confirmed.portal_key(portal), *cap);
                    counter.motion = self.confirmed.execute_motion(portal, *max_rows);
                    counter.declares = self.confirmed.portal_declares.get(portal).cloned();
                    Some(counter)
                }
                _ => None,
            };
            self.active = Some(Active {
                op,
                counter,
                copy: Copy::None,
                failed: false,
                dropping: false,
                seen: Seen::default(),
            });
            return Ok(());
        }
    }

    /// A named Parse or Bind left the queue, `created` when the server confirmed it.
    fn settle(&mut self, op: &Op, created: bool) {
        match &op.kind {
            OpKind::Parse { name, .. } if !name.is_empty() => {
                self.resources
                    .answered_statement(name, op.text_bytes, created)
            }
            OpKind::Bind { portal, .. } if !portal.is_empty() => {
                self.resources.answered_portal(portal, created)
            }
            OpKind::Close { kind, name } => self.resources.closed(*kind, name, created),
            _ => {}
        }
    }

    /// A message that will not be answered: what it would have created does not exist.
    fn lose(&mut self, op: Op) {
        self.settle(&op, false);
        if let Some(stmt) = op.audit {
            self.finished.push(Finished {
                stmt,
                outcome: Outcome::Skipped,
                seen: Seen::default(),
                duration: op.sent.elapsed(),
            });
        }
        if let OpKind::Parse {
            prepared: Some(n), ..
        } = op.kind
        {
            self.lost.push(n);
        }
    }

    fn active(&mut self) -> &mut Active {
        self.active.as_mut().expect("a message is being answered")
    }

    fn ready(&mut self) -> Step {
        let active = self.active.take().expect("a message is being answered");
        let sent = active.op.sent;
        self.retire(active);
        Step::Ready { sent }
    }

    /// An answered message is done: its audited statement, if any, has ended.
    fn retire(&mut self, active: Active) {
        let Some(stmt) = active.op.audit else {
            return;
        };
        let outcome = if active.seen.stopped_by.is_some() {
            Outcome::Stopped
        } else if active.seen.sqlstate.is_some() {
            Outcome::Failed
        } else {
            Outcome::Completed
        };
        self.finished.push(Finished {
            stmt,
            outcome,
            seen: active.seen,
            duration: active.op.sent.elapsed(),
        });
    }

    /// Audited statements that ended since the last call.
    pub fn take_finished(&mut self) -> impl Iterator<Item = Finished> + '_ {
        self.finished.drain(..)
    }

    /// Whether an audited statement ended since [`Pipeline::take_finished`].
    pub fn has_finished(&self) -> bool {
        !self.finished.is_empty()
    }

    /// The session ends: every audited statement still unanswered is interrupted.
    pub fn interrupt(&mut self) -> impl Iterator<Item = Finished> + '_ {
        let active = self.active.take();
        let ops = std::mem::take(&mut self.ops);
        let mut interrupted: Vec<Finished> = Vec::new();
        let pending = active
            .map(|a| (a.op, a.seen))
            .into_iter()
            .chain(ops.into_iter().map(|op| (op, Seen::default())));
        for (op, seen) in pending {
            if let Some(stmt) = op.audit {
                interrupted.push(Finished {
                    stmt,
                    outcome: Outcome::Interrupted,
                    seen,
                    duration: op.sent.elapsed(),
                });
            }
        }
        self.finished.extend(interrupted);
        self.finished.drain(..)
    }

    /// Counts a message sent to the client for the statement answering now (a
    /// DataRow, or a CopyData of COPY TO), `bytes` long on the wire.
    pub fn note_sent(&mut self, bytes: usize) {
        if let Some(active) = self.active.as_mut() {
            active.seen.rows += 1;
            active.seen.bytes += bytes as u64;
        }
    }

    /// The client gets `sqlstate` for the statement answering now; what stopped it.
    pub fn note_error(
        &mut self,
        sqlstate: crate::error::SqlState,
        stopped_by: Option<&'static str>,
    ) {
        if let Some(active) = self.active.as_mut() {
            active.seen.sqlstate.get_or_insert(sqlstate);
            if stopped_by.is_some() {
                active.seen.stopped_by = stopped_by;
            }
        }
    }

    /// A DataRow of the active statement: forwarded (or held back, see
    /// [`Pipeline::hold`]) while under its cap and while `take` grants the row from
    /// the account's hourly quota and the session's budget.
    pub fn count_row(&mut self, take: impl FnOnce() -> Result<(), Limit>) -> RowVerdict {
        let Some(active) = self.active.as_mut() else {
            return RowVerdict::Drop;
        };
        let Some(counter) = active.counter.as_mut() else {
            return RowVerdict::Drop;
        };
        counter.upstream_rows += 1;
        if counter.exceeded.is_some() {
            return RowVerdict::Drop;
        }
        let before = self.confirmed.before(&counter.key);
        let (cap, placed) = match &counter.key {
            // A cursor's rows: under its DECLARE's cap, and only from where it may send.
            CountKey::Cursor(c) => match self.confirmed.cursors.get(c) {
                Some(cursor) => (
                    cursor.cap.or(counter.cap),
                    cursor.row_allowed(counter.motion, counter.upstream_rows),
                ),
                None => (counter.cap, true),
            },
            _ => (counter.cap, true),
        };
        let over = cap.filter(|cap| !placed || before + counter.rows >= *cap);
        if let Some(cap) = over {
            if self.shadow {
                counter.passed = true;
            } else {
                counter.exceeded = Some(Limit::PerStatement(cap));
                return RowVerdict::Drop;
            }
        }
        if let Err(limit) = take() {
            counter.exceeded = Some(limit);
            return RowVerdict::Drop;
        }
        counter.rows += 1;
        if self.hold && counter.cap.is_some() && !self.shadow {
            RowVerdict::Hold
        } else {
            RowVerdict::Forward
        }
    }

    /// The client gets `sqlstate` for the statement answering now or the one that just
    /// failed, in place of the server's error: what stopped it.
    pub fn restate_error(&mut self, sqlstate: SqlState, stopped_by: &'static str) {
        let seen = match self.active.as_mut() {
            Some(active) => &mut active.seen,
            None => match self.finished.last_mut() {
                Some(finished) => &mut finished.seen,
                None => return,
            },
        };
        seen.sqlstate = Some(sqlstate);
        seen.stopped_by = Some(stopped_by);
    }

    /// The proxy ends the active statement with its own error (a limit, a protected
    /// column). `false` when messages sent behind it will run although the client
    /// expects them skipped: the session must then be closed.
    pub fn stop(&mut self) -> bool {
        if self.more_pending() {
            return false;
        }
        // An extended-protocol statement: PostgreSQL would skip to the next Sync, so
        // the client's messages are not sent until it sends one (unless it already has).
        let sync_sent = self.ops.iter().any(|op| matches!(op.kind, OpKind::Sync));
        match &mut self.active {
            // The rest of the Query is dropped up to its ReadyForQuery.
            Some(active) if matches!(active.op.kind, OpKind::Query { .. }) => {
                active.dropping = true;
            }
            Some(active) => {
                active.dropping = true;
                self.client_skip = !sync_sent;
            }
            None => self.client_skip = !sync_sent,
        }
        true
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
