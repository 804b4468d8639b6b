//! Which frontend message types the relay knows, and how it names the others.

use crate::error::{ClientError, SqlState};
use crate::protocol::frontend_tag;

/// Whether `tag` is a frontend message the relay knows; any other is refused from
/// its first byte, before its length is looked at or its body read.
pub fn known_tag(tag: u8) -> bool {
    matches!(
        tag,
        frontend_tag::QUERY
            | frontend_tag::PARSE
            | frontend_tag::BIND
            | frontend_tag::DESCRIBE
            | frontend_tag::EXECUTE
            | frontend_tag::CLOSE
            | frontend_tag::FLUSH
            | frontend_tag::SYNC
            | frontend_tag::TERMINATE
            | frontend_tag::COPY_DATA
            | frontend_tag::COPY_DONE
            | frontend_tag::COPY_FAIL
            | frontend_tag::PASSWORD
            | frontend_tag::FUNCTION_CALL
    )
}

/// PostgreSQL's answer to a message type it does not know.
pub fn invalid_type(tag: u8) -> ClientError {
    ClientError::fatal(
        SqlState::PROTOCOL_VIOLATION,
        format!("invalid frontend message type {}", describe_tag(tag)),
    )
}

/// Messages PostgreSQL discards while it skips to the next Sync.
pub fn is_skipped_till_sync(tag: u8) -> bool {
    matches!(
        tag,
        frontend_tag::QUERY
            | frontend_tag::PARSE
            | frontend_tag::BIND
            | frontend_tag::DESCRIBE
            | frontend_tag::EXECUTE
            | frontend_tag::CLOSE
            | frontend_tag::FLUSH
            | frontend_tag::COPY_DATA
            | frontend_tag::COPY_DONE
            | frontend_tag::COPY_FAIL
    )
}

fn describe_tag(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", tag as char)
    } else {
        format!("{tag:#04x}")
    }
}
