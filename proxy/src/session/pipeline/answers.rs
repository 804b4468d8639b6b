//! How the server answers one message: completions, errors, and the rows and end
//! of a statement, as the model of its state expects them.

use super::*;

impl Pipeline {
    /// Parse, Bind, Describe and Close: their completion, descriptions or error.
    pub(super) fn simple_answer(&mut self, tag: u8, body: &[u8]) -> Result<Step, Desync> {
        let active = self.active.as_ref().expect("a message is being answered");
        let step = match (&active.op.kind, tag) {
            (_, backend_tag::ERROR_RESPONSE) => return Ok(self.extended_error(body)),
            (OpKind::Parse { .. }, backend_tag::PARSE_COMPLETE) => Step::Pass,
            (OpKind::Bind { .. }, backend_tag::BIND_COMPLETE) => Step::Pass,
            (OpKind::Close { .. }, backend_tag::CLOSE_COMPLETE) => Step::Pass,
            (OpKind::Describe { .. }, backend_tag::PARAMETER_DESCRIPTION) => return Ok(Step::Pass),
            (OpKind::Describe { .. }, backend_tag::NO_DATA) => Step::Pass,
            (OpKind::Describe { .. }, backend_tag::ROW_DESCRIPTION) => Step::Description,
            _ => return Err(Desync("unexpected answer to an extended-protocol message")),
        };
        let mut done = self.active.take().expect("a message is being answered");
        self.settle(&done.op, true);
        match done.op.kind {
            OpKind::Parse {
                name, fetch_cursor, ..
            } => {
                self.confirmed
                    .prepared(&name, fetch_cursor, done.op.names.pop_front());
            }
            OpKind::Bind { portal, statement } => self.confirmed.bound(portal, &statement),
            _ => {}
        }
        Ok(step)
    }

    /// An error answering an extended-protocol message: the server skips to Sync.
    pub(super) fn extended_error(&mut self, body: &[u8]) -> Step {
        let mut done = self.active.take().expect("a message is being answered");
        self.settle(&done.op, false);
        self.skipping = true;
        let denial = done.op.denial.take();
        done.seen
            .sqlstate
            .get_or_insert_with(|| error_sqlstate(denial.as_ref(), body));
        if let OpKind::Parse {
            prepared: Some(n), ..
        } = done.op.kind
        {
            self.lost.push(n);
        }
        self.retire(done);
        Step::Error(denial)
    }

    pub(super) fn execute(&mut self, tag: u8, body: &[u8]) -> Result<Step, Desync> {
        match tag {
            backend_tag::DATA_ROW => Ok(Step::Row),
            backend_tag::COMMAND_COMPLETE
            | backend_tag::EMPTY_QUERY_RESPONSE
            | backend_tag::PORTAL_SUSPENDED => {
                let completion = self.complete(body);
                let done = self.active.take().expect("a message is being answered");
                self.retire(done);
                Ok(Step::Complete(completion))
            }
            backend_tag::ERROR_RESPONSE => Ok(self.extended_error(body)),
            backend_tag::COPY_IN_RESPONSE => {
                self.active().copy = Copy::In;
                Ok(Step::Pass)
            }
            backend_tag::COPY_OUT_RESPONSE => {
                self.active().copy = Copy::Out;
                Ok(Step::Pass)
            }
            _ => Err(Desync("unexpected answer to an Execute")),
        }
    }

    pub(super) fn query(&mut self, tag: u8, body: &[u8]) -> Result<Step, Desync> {
        let active = self.active();
        if active.failed && tag != backend_tag::READY_FOR_QUERY {
            return Err(Desync("a failed Query went on answering"));
        }
        match tag {
            backend_tag::ROW_DESCRIPTION => {
                self.start_statement(true);
                Ok(Step::Description)
            }
            backend_tag::DATA_ROW => {
                self.start_statement(false);
                Ok(Step::Row)
            }
            backend_tag::COPY_IN_RESPONSE | backend_tag::COPY_OUT_RESPONSE => {
                self.start_statement(false);
                self.active().copy = if tag == backend_tag::COPY_IN_RESPONSE {
                    Copy::In
                } else {
                    Copy::Out
                };
                Ok(Step::Pass)
            }
            backend_tag::COMMAND_COMPLETE | backend_tag::EMPTY_QUERY_RESPONSE => {
                self.start_statement(false);
                Ok(Step::Complete(self.complete(body)))
            }
            backend_tag::ERROR_RESPONSE => {
                let active = self.active();
                active.failed = true;
                active.counter = None;
                let denial = active.op.denial.take();
                active
                    .seen
                    .sqlstate
                    .get_or_insert_with(|| error_sqlstate(denial.as_ref(), body));
                Ok(Step::Error(denial))
            }
            backend_tag::READY_FOR_QUERY => Ok(self.ready()),
            _ => Err(Desync("unexpected answer to a simple Query")),
        }
    }

    /// The statement of a Query whose results arrive now, counted under its plan. A
    /// new RowDescription of an unanalyzed Query starts a new count.
    pub(super) fn start_statement(&mut self, described: bool) {
        let active = self.active.as_mut().expect("a message is being answered");
        let OpKind::Query { statements, cap } = &mut active.op.kind else {
            return;
        };
        if active.counter.is_some() && !(described && statements.is_none()) {
            return;
        }
        // More result sets than analyzed statements still count, each under the cap.
        let plan = statements.as_mut().and_then(VecDeque::pop_front);
        let mut counter = Counter::new(
            plan.as_ref().map_or(CountKey::Statement, |p| p.key.clone()),
            plan.as_ref().map_or(*cap, |p| p.cap),
        );
        if let Some(plan) = &plan {
            counter.copy_out = plan.copy_out.map(|format| (format, format.header));
            counter.motion = plan.motion;
        }
        counter.declares = plan.and_then(|p| p.declares);
        active.counter = Some(counter);
    }

    /// Ends the statement answering now and adds its rows to its portal or cursor.
    pub(super) fn complete(&mut self, command_tag: &[u8]) -> Completion {
        let tag = command_tag.strip_suffix(b"\0").unwrap_or(command_tag);
        if matches!(tag, b"PREPARE" | b"DEALLOCATE" | b"DEALLOCATE ALL") {
            let op = match self.active.as_mut().map(|a| (&a.op.kind, &mut a.op.names)) {
                Some((OpKind::Execute { portal, .. }, _)) => self.confirmed.names_of(portal),
                Some((_, names)) => names.pop_front(),
                None => None,
            };
            self.resources.command(tag, op);
        } else {
            self.resources.command(tag, None);
        }
        let more_pending = self.more_pending();
        let Some(counter) = self.active().counter.take() else {
            return Completion::Done;
        };
        match counter.key {
            CountKey::Statement => {}
            CountKey::Portal(p) => {
                *self.confirmed.portal_rows.entry(p).or_default() += counter.rows
            }
            // Every row sent counts; where the command left the cursor is followed.
            CountKey::Cursor(c) => {
                let cursor = self
                    .confirmed
                    .cursors
                    .entry(c)
                    .or_insert_with(|| Cursor::declared(None));
                cursor.sent += counter.rows;
                cursor.ran(counter.motion, command_tag, counter.upstream_rows);
            }
        }
        if let Some(cursor) = counter.declares {
            let declared = Cursor::declared(counter.cap);
            self.confirmed.cursors.insert(cursor, declared);
        }
        match counter.exceeded {
            None if counter.passed => {
                self.active().seen.would_stop = Some("row_cap");
                Completion::Shadowed {
                    cap: counter.cap.unwrap_or(0),
                }
            }
            None => Completion::Done,
            Some(limit) => {
                let (stopped_by, sqlstate) = match limit {
                    Limit::PerStatement(_) => ("row_cap", SqlState::PROGRAM_LIMIT_EXCEEDED),
                    Limit::Hourly => ("hourly_rows", SqlState::CONFIGURATION_LIMIT_EXCEEDED),
                    Limit::Session(_) => ("session_rows", SqlState::CONFIGURATION_LIMIT_EXCEEDED),
                };
                self.note_error(sqlstate, Some(stopped_by));
                Completion::Exceeded {
                    limit,
                    more_pending,
                }
            }
        }
    }

    /// Whether the server will run more statements before the client, told of an
    /// error now, expects it to stop: later statements of the same Query, or
    /// answered messages before the next Sync.
    pub(super) fn more_pending(&self) -> bool {
        if let Some(Active {
            op:
                Op {
                    kind: OpKind::Query { statements, .. },
                    ..
                },
            ..
        }) = &self.active
        {
            return statements.as_ref().is_some_and(|s| !s.is_empty());
        }
        self.ops
            .iter()
            .take_while(|op| !matches!(op.kind, OpKind::Sync))
            .any(Op::answered)
    }
}
