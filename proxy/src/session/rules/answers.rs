//! The server's answers a session's rules act on: a RowDescription that would show a
//! protected column as stored, a statement's end (past a limit, or with rows held
//! back), and errors and notices that lose every field that can quote data.

use super::*;

impl SessionRules<'_> {
    /// A RowDescription: a protected column that arrives as stored stops the statement.
    pub(super) fn description(
        &mut self,
        pipe: &mut Pipeline,
        body: &[u8],
        out: &mut BytesMut,
    ) -> ServerVerdict {
        if !self.restricted() {
            return ServerVerdict::Forward;
        }
        let Some(column) = self.hidden_column(body) else {
            return ServerVerdict::Forward;
        };
        self.events.emit(Event::StatementStopped(StatementStopped {
            session: self.session.clone(),
            limit: StopLimit::ProtectedColumn,
            column: Some(self.account.describe_column(column)),
        }));
        let error = ClientError::error(
            SqlState::INTERNAL_ERROR,
            "maskgate stopped this statement: its result would have shown a protected column as stored",
        );
        pipe.note_error(error.sqlstate, Some("protected_column"));
        stop(pipe, error, false, out)
    }

    /// A statement ended; if it went past a limit, its end becomes the error. Rows
    /// held back go out in front of its end, or are dropped with the error.
    pub(super) fn complete(
        &mut self,
        pipe: &mut Pipeline,
        completion: Completion,
        (tag, body): (u8, &[u8]),
        out: &mut BytesMut,
    ) -> ServerVerdict {
        let (limit, more_pending) = match completion {
            Completion::Exceeded {
                limit,
                more_pending,
            } => (limit, more_pending),
            Completion::Done | Completion::Shadowed { .. } => {
                if matches!(completion, Completion::Shadowed { .. }) {
                    self.shadow_cap();
                }
                if self.held.is_empty() {
                    return ServerVerdict::Forward;
                }
                for size in self.held.release(out) {
                    pipe.note_sent(size);
                }
                protocol::write_message(out, tag, &[body]);
                return ServerVerdict::Replace;
            }
        };
        self.held.discard();
        let (stopped, error) = match limit {
            Limit::PerStatement(cap) => (StopLimit::RowCap(cap), cap_error(cap)),
            Limit::Hourly => (
                StopLimit::HourlyRows,
                hourly_error(self.account.rows_per_hour.unwrap_or(0)),
            ),
            Limit::Session(budget) => {
                (StopLimit::SessionRows(budget), session_budget_error(budget))
            }
        };
        self.events.emit(Event::StatementStopped(StatementStopped {
            session: self.session.clone(),
            limit: stopped,
            column: None,
        }));
        stop(pipe, error, more_pending, out)
    }

    /// Whether a server error quotes this process's denial token.
    pub(super) fn carries_token(&self, body: &[u8]) -> bool {
        let token = self.enforcement.denial_token().as_bytes();
        body.windows(token.len()).any(|w| w == token)
    }

    /// Errors and notices reach restricted accounts with severity, SQLSTATE and
    /// message only.
    pub(super) fn without_detail(&self, tag: u8, body: &[u8], out: &mut BytesMut) -> ServerVerdict {
        if !self.restricted() {
            return ServerVerdict::Forward;
        }
        match protocol::write_without_detail(out, tag, body) {
            Ok(()) => ServerVerdict::Replace,
            Err(_) => ServerVerdict::Close(ClientError::fatal(
                SqlState::PROTOCOL_VIOLATION,
                "invalid message from the database server",
            )),
        }
    }

    /// The first field of a RowDescription that shows a hidden column as stored.
    pub(super) fn hidden_column(&self, body: &[u8]) -> Option<crate::enforcement::ColumnId> {
        let mut f = Fields::new(body, "RowDescription");
        let count = f.i16().ok()?;
        for _ in 0..count {
            f.cstr().ok()?;
            let table = f.i32().ok()? as u32;
            let column = f.i16().ok()?;
            f.bytes(4 + 2 + 4 + 2).ok()?;
            if table != 0 && self.account.is_hidden((table, column)) {
                return Some((table, column));
            }
        }
        None
    }
}

/// Ends the current statement with `error` in place of its next message. If more
/// statements were sent behind it that the server will run although the client will
/// believe them skipped after the error, the session is closed instead.
pub(super) fn stop(
    pipe: &mut Pipeline,
    error: ClientError,
    more_pending: bool,
    out: &mut BytesMut,
) -> ServerVerdict {
    if more_pending || !pipe.stop() {
        let mut fatal = error;
        fatal.severity = crate::error::Severity::Fatal;
        fatal.hint = Some(
            "statements sent after it in the same batch had already run; the session is closed so that none of their results is misread".into(),
        );
        return ServerVerdict::Close(fatal);
    }
    error.encode(out);
    ServerVerdict::Replace
}
