//! Errors PostgreSQL raises for the checks the rewrite makes it run (see
//! `maskgate_sql`'s guard module): an `invalid input syntax` error whose text carries
//! this process's guard token and the reason. The client gets maskgate's own error in
//! its place, with the SQLSTATE PostgreSQL would use for the limit.

use super::*;
use crate::observe::GuardCheck;

impl SessionRules<'_> {
    /// The error a guard check failed with, if `body` (an ErrorResponse of a
    /// restricted statement) is one; the statement's record and the metrics learn it.
    pub(super) fn guard_error(&self, pipe: &mut Pipeline, body: &[u8]) -> Option<ClientError> {
        let token = self.enforcement.guard_token().as_bytes();
        let at = body.windows(token.len()).position(|w| w == token)?;
        let rest = body.get(at + token.len() + 1..)?;
        let end = rest
            .iter()
            .position(|b| matches!(b, b'"' | 0))
            .unwrap_or(rest.len());
        let reason = std::str::from_utf8(&rest[..end]).ok()?;
        let (check, error) = guard_reason(reason)?;
        pipe.restate_error(error.sqlstate, check.as_str());
        self.events.emit(Event::StatementStopped(StatementStopped {
            session: self.session.clone(),
            limit: StopLimit::Guard(check),
            column: None,
        }));
        Some(error)
    }
}

/// `packed:<cap>`, `offset:<cap>` or `scope:<table>`.
fn guard_reason(reason: &str) -> Option<(GuardCheck, ClientError)> {
    let (kind, argument) = reason.split_once(':')?;
    Some(match kind {
        "packed" => {
            let cap = argument.parse().ok()?;
            (
                GuardCheck::PackedRows(cap),
                ClientError::error(
                    SqlState::PROGRAM_LIMIT_EXCEEDED,
                    format!(
                        "this statement packs more than {cap} rows into its values \
                         (json_agg, string_agg, array_agg, ARRAY(…), scalar subqueries, lag/lead), \
                         the most this account's roles allow per statement"
                    ),
                )
                .with_hint("aggregate to statistics (count, sum, avg), or ask for fewer rows"),
            )
        }
        "offset" => {
            let cap = argument.parse().ok()?;
            (GuardCheck::Offset(cap), offset_error(cap))
        }
        "scope" => (
            GuardCheck::ParentScope,
            ClientError::error(
                SqlState::INSUFFICIENT_PRIVILEGE,
                format!(
                    "a row written to table \"{argument}\" must reference a row this account \
                     may see; the write is refused"
                ),
            ),
        ),
        _ => return None,
    })
}

pub(super) fn offset_error(cap: u64) -> ClientError {
    ClientError::error(
        SqlState::PROGRAM_LIMIT_EXCEEDED,
        format!(
            "OFFSET at or beyond {cap}, the most rows this statement may return, is refused: \
             it would page past the cap"
        ),
    )
    .with_hint("narrow the query with WHERE instead of paging")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        let (check, error) = guard_reason("packed:50").unwrap();
        assert_eq!(check, GuardCheck::PackedRows(50));
        assert_eq!(error.sqlstate, SqlState::PROGRAM_LIMIT_EXCEEDED);
        assert_eq!(guard_reason("offset:20").unwrap().0, GuardCheck::Offset(20));
        let (check, error) = guard_reason("scope:public.TheBHYT").unwrap();
        assert_eq!(check, GuardCheck::ParentScope);
        assert!(error.message.contains("public.TheBHYT"));
        assert!(guard_reason("packed:x").is_none());
        assert!(guard_reason("other:1").is_none());
    }
}
