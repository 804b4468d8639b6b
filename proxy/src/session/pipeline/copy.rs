//! The server's answers while it reads `COPY … FROM STDIN`: the copy's end, or its
//! error, and which of the client's copy messages it read.

use super::*;

impl Pipeline {
    /// The server's answer during COPY FROM STDIN: the copy's end, or its error.
    pub(super) fn copy_in(&mut self, tag: u8, body: &[u8]) -> Result<Step, Desync> {
        match tag {
            backend_tag::COMMAND_COMPLETE => {
                // The server read every copy message up to CopyDone, swallowing Syncs.
                loop {
                    match self.ops.pop_front().map(|op| op.kind) {
                        Some(OpKind::CopyData | OpKind::Sync) => {}
                        Some(OpKind::CopyDone) => break,
                        _ => return Err(Desync("COPY FROM STDIN ended without CopyDone")),
                    }
                }
                self.active().copy = Copy::None;
                let completion = self.complete(b"");
                if !matches!(self.active().op.kind, OpKind::Query { .. }) {
                    let done = self.active.take().expect("a message is being answered");
                    self.retire(done);
                }
                Ok(Step::Complete(completion))
            }
            backend_tag::ERROR_RESPONSE => {
                let denial = self.end_failed_copy()?;
                self.active().copy = Copy::None;
                if matches!(self.active().op.kind, OpKind::Query { .. }) {
                    let mut step = self.query(tag, body)?;
                    if denial.is_some() {
                        step = Step::Error(denial);
                    }
                    return Ok(step);
                }
                if let (Some(denial), Some(active)) = (&denial, self.active.as_mut()) {
                    active.seen.sqlstate.get_or_insert(denial.sqlstate);
                }
                let step = self.extended_error(body);
                Ok(if denial.is_some() {
                    Step::Error(denial)
                } else {
                    step
                })
            }
            _ => Err(Desync("unexpected message during COPY FROM STDIN")),
        }
    }

    /// The copy messages a failed COPY read or leaves to be ignored. Syncs before the
    /// first CopyData were swallowed when the COPY started; a Sync or another message
    /// among the data may or may not have been read before the error, so the state
    /// cannot be known. Returns the denial of the proxy's CopyFail, if it ended it.
    pub(super) fn end_failed_copy(&mut self) -> Result<Option<ClientError>, Desync> {
        let mut data_seen = false;
        loop {
            let Some(op) = self.ops.front() else {
                return Ok(None);
            };
            match op.kind {
                OpKind::CopyData => data_seen = true,
                OpKind::Sync if !data_seen => {}
                OpKind::CopyDone => {}
                OpKind::CopyFail => {
                    let mut op = self.ops.pop_front().expect("the front was just seen");
                    return Ok(op.denial.take());
                }
                _ => {
                    return Err(Desync(
                        "a COPY FROM STDIN failed with other messages pipelined among its data",
                    ))
                }
            }
            let op = self.ops.pop_front().expect("the front was just seen");
            if matches!(op.kind, OpKind::CopyDone) {
                return Ok(None);
            }
        }
    }
}
