//! What the rules read from a statement: whether it drops the session's prepared
//! statements, how its rows count, the cursor a prepared FETCH reads, and its
//! fingerprint in the debug log.

use maskgate_sql::EnforcedStatement;

use super::pipeline::sql_names::{sql_name_ops, SqlNameOp};
use super::pipeline::{CountKey, FetchOf, StatementPlan};
use crate::protocol::fields::Fields;

/// Whether a statement (as sent upstream) can drop maskgate's own prepared
/// statements: `DISCARD`, `DEALLOCATE ALL`, or a `DEALLOCATE` of one of their
/// names. (A `DEALLOCATE` of the client's own statement leaves them: forgetting
/// them would prepare them again under new names, and the backend would keep both.)
pub(super) fn drops_prepared(sql: &str) -> bool {
    let head = sql.trim_start().as_bytes();
    if head.len() >= 7 && head[..7].eq_ignore_ascii_case(b"DISCARD") {
        return true;
    }
    sql_name_ops(sql.as_bytes()).iter().any(|op| match op {
        SqlNameOp::DeallocateAll => true,
        SqlNameOp::Deallocate(name) => super::auto_prepare::is_reserved(name.as_bytes()),
        SqlNameOp::Prepare { .. } => false,
    })
}

/// How a statement's rows count: a DECLARE starts its cursor's count again, a
/// FETCH adds the rows it sends to it, and a FETCH or MOVE moves it.
pub(super) fn plan(statement: &EnforcedStatement) -> StatementPlan {
    let (key, declares) = match &statement.cursor {
        Some(cursor) if cursor.declare => (CountKey::Statement, Some(cursor.name.clone())),
        Some(cursor) => (CountKey::Cursor(cursor.name.clone()), None),
        None => (CountKey::Statement, None),
    };
    StatementPlan {
        key,
        cap: statement.row_cap,
        declares,
        copy_out: statement.copy_out,
        motion: statement.cursor.as_ref().and_then(|c| c.motion),
    }
}

/// The cursor a prepared DECLARE, FETCH, MOVE or CLOSE declares or reads, and what it
/// does to it.
pub(super) fn fetch_cursor(statement: &EnforcedStatement) -> Option<FetchOf> {
    statement.cursor.as_ref().map(|c| FetchOf {
        cursor: c.name.clone(),
        motion: c.motion,
        declares: c.declare,
    })
}

/// Logs an unrestricted account's statement as its fingerprint, at debug level.
pub(super) fn log_statement(body: &[u8], message: &'static str, what: &'static str) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let mut f = Fields::new(body, message);
        if message == "Parse" {
            let _ = f.cstr();
        }
        if let Ok(sql) = f.str() {
            tracing::debug!(statement = ?maskgate_sql::fingerprint(sql), "{what}");
        }
    }
}
