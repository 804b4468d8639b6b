//! Statements other than queries, writes, prepared statements and cursors: which are
//! harmless session housekeeping and which are refused.

use sqlparser::ast::{Expr, Ident, ObjectNamePart, Set, Statement, Value};

use crate::denial::{sqlstate, Denial};
use crate::enforce::StatementClass;
use crate::names;

/// Settings a client may change, at startup or with SET: they affect
/// formatting, timeouts and transaction defaults, never who the user is, how
/// names resolve or how string literals are read (`standard_conforming_strings`
/// stays on, since the analyzer reads literals that way). Lower case, as
/// PostgreSQL matches setting names case-insensitively.
pub const SETTABLE: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "timezone",
    "intervalstyle",
    "extra_float_digits",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",
    "bytea_output",
    "client_min_messages",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "default_transaction_deferrable",
];

/// Settings a client may read besides [`SETTABLE`]: drivers ask for them at startup.
const SHOWABLE: &[&str] = &[
    "server_version",
    "server_version_num",
    "server_encoding",
    "standard_conforming_strings",
    "integer_datetimes",
    "max_identifier_length",
    "transaction_isolation",
    "transaction isolation level",
    "transaction_read_only",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "search_path",
    "default_table_access_method",
    "timezone_abbreviations",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
];

/// Whether a client may read setting `name` (lower case): with SHOW or
/// `current_setting()`. Never `maskgate.*`, which holds the pseudonym keys.
pub(crate) fn is_readable_setting(name: &str) -> bool {
    SETTABLE.contains(&name) || SHOWABLE.contains(&name)
}

/// Every setting [`is_readable_setting`] allows.
pub(crate) fn readable_settings() -> impl Iterator<Item = &'static str> {
    SETTABLE.iter().chain(SHOWABLE).copied()
}

/// Classifies a statement that is not a query. `Ok` means it may be forwarded as is.
pub(crate) fn classify(statement: &Statement) -> Result<StatementClass, Denial> {
    match statement {
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => Ok(StatementClass::Transaction),
        Statement::Set(set) => classify_set(set),
        Statement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(names::fold)
                .collect::<Vec<_>>()
                .join(" ");
            if SETTABLE.contains(&name.as_str()) || SHOWABLE.contains(&name.as_str()) {
                Ok(StatementClass::Session)
            } else {
                Err(Denial::forbidden(format!("SHOW {name}")))
            }
        }
        Statement::Discard { .. } | Statement::Deallocate { .. } => Ok(StatementClass::Session),
        Statement::LISTEN { .. } | Statement::UNLISTEN { .. } | Statement::NOTIFY { .. } => {
            Ok(StatementClass::Notification)
        }
        Statement::CreateTable(create) if create.query.is_some() => {
            Err(Denial::forbidden("CREATE TABLE … AS"))
        }
        Statement::CreateView { .. } => Err(Denial::forbidden("CREATE VIEW")),
        Statement::Copy { to: false, .. } => Err(copy_from()),
        Statement::Copy { .. } => Err(Denial::forbidden("COPY")),
        Statement::Explain { .. } | Statement::ExplainTable { .. } => {
            Err(Denial::forbidden("EXPLAIN"))
        }
        Statement::Call(_) => Err(Denial::forbidden("CALL")),
        Statement::LockTables { .. } => Err(Denial::forbidden("LOCK")),
        Statement::Vacuum(_) => Err(Denial::forbidden("VACUUM")),
        Statement::Analyze { .. } => Err(Denial::forbidden("ANALYZE")),
        Statement::Grant { .. } | Statement::Revoke { .. } => {
            Err(Denial::forbidden("GRANT/REVOKE"))
        }
        Statement::Load { .. } => Err(Denial::forbidden("LOAD")),
        other => Err(Denial::forbidden(construct_name(other))),
    }
}

fn classify_set(set: &Set) -> Result<StatementClass, Denial> {
    match set {
        Set::SingleAssignment {
            hivevar: false,
            variable,
            values,
            ..
        } => {
            let parts = names::parts(variable)?;
            let name = match parts.as_slice() {
                [one] => one.as_str(),
                _ => return Err(Denial::forbidden(format!("SET {}", names::display(&parts)))),
            };
            if is_reset_all(&Statement::Set(set.clone())) || name == "search_path" {
                // search_path: checked by `search_path::change_of`.
                return Ok(StatementClass::Session);
            }
            if !SETTABLE.contains(&name) {
                return Err(Denial::forbidden(format!("SET {name}")));
            }
            if name == "client_encoding" && !values.iter().all(is_utf8_value) {
                Err(utf8_only())
            } else if values.iter().all(is_plain_setting_value) {
                Ok(StatementClass::Session)
            } else {
                Err(Denial::forbidden(format!("SET {name} to an expression")))
            }
        }
        Set::SetTimeZone { value, .. } if is_plain_setting_value(value) => {
            Ok(StatementClass::Session)
        }
        Set::SetNames { charset_name, .. } if !is_utf8(&charset_name.value) => Err(utf8_only()),
        // sqlparser prints the collation as it was written, quotes gone; PostgreSQL
        // has no COLLATE here anyway.
        Set::SetNames {
            collation_name: Some(_),
            ..
        } => Err(Denial::unsupported("SET NAMES … COLLATE")),
        Set::SetNames { .. } | Set::SetNamesDefault {} | Set::SetTransaction { .. } => {
            Ok(StatementClass::Session)
        }
        Set::SetRole { .. } => Err(Denial::forbidden("SET ROLE")),
        Set::SetSessionParam(_) => Err(Denial::forbidden("SET SESSION AUTHORIZATION")),
        _ => Err(Denial::forbidden("this form of SET")),
    }
}

/// `RESET ALL`, as the tokens were rewritten for the parser (see
/// `housekeeping::RESET_ALL_MARKER`). It resets only what SET may change.
pub(crate) fn is_reset_all(statement: &Statement) -> bool {
    let Statement::Set(Set::SingleAssignment {
        hivevar: false,
        variable,
        values,
        scope: None,
    }) = statement
    else {
        return false;
    };
    matches!(variable.0.as_slice(), [ObjectNamePart::Identifier(ident)]
        if ident.quote_style == Some('"') && ident.value == crate::housekeeping::RESET_ALL_MARKER)
        && matches!(values.as_slice(), [Expr::Identifier(v)]
            if v.quote_style.is_none() && v.value.eq_ignore_ascii_case("default"))
}

/// Whether PostgreSQL reads `name` as the encoding UTF8. Statements are analyzed as
/// UTF-8; a client encoding PostgreSQL would read differently (a multi-byte one whose
/// second bytes include `'` or `\`) could hide a quote from the analyzer, so
/// restricted accounts keep UTF-8. PostgreSQL's `clean_encoding_name` keeps only the
/// ASCII letters and digits of a name, lower-cased, before it looks the name up:
/// `UTF-8`, `'utf-8'`, `utf_8` and `Unicode` are all UTF8, and nothing else is.
pub fn is_utf8(name: &str) -> bool {
    let cleaned: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    matches!(cleaned.as_str(), "utf8" | "unicode")
}

fn is_utf8_value(value: &Expr) -> bool {
    match value {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => is_utf8(s),
            _ => false,
        },
        Expr::Identifier(ident) => {
            is_utf8(&ident.value) || ident.value.eq_ignore_ascii_case("default")
        }
        _ => false,
    }
}

fn utf8_only() -> Denial {
    Denial::forbidden("a client_encoding other than UTF8")
}

/// `SET x = 'a'`, `SET x = 5`, `SET x TO DEFAULT`, `SET x = local`: a value, not a query.
fn is_plain_setting_value(value: &Expr) -> bool {
    match value {
        Expr::Value(v) => !matches!(v.value, Value::Placeholder(_)),
        Expr::Identifier(Ident { .. }) => true,
        Expr::UnaryOp { expr, .. } => matches!(**expr, Expr::Value(_)),
        Expr::Interval(_) => true,
        _ => false,
    }
}

/// `COPY … FROM`: its rows arrive as CopyData, which the analyzer does not check.
pub(crate) fn copy_from() -> Denial {
    Denial {
        sqlstate: sqlstate::FEATURE_NOT_SUPPORTED,
        message:
            "of COPY … FROM, restricted accounts may use only COPY table (columns) FROM STDIN \
                  in text format"
                .to_owned(),
    }
}

/// The statement's leading keywords, for a message. Only words made of ASCII letters
/// are kept, so nothing the statement carries beyond its keywords is echoed.
pub(crate) fn construct_name(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take(2)
        .take_while(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase()))
        .collect();
    if words.is_empty() {
        "this statement".to_owned()
    } else {
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::is_utf8;

    #[test]
    fn utf8_spellings_are_the_ones_postgresql_accepts() {
        for name in [
            "UTF8", "utf8", "utf-8", "'utf-8'", "UTF_8", "Unicode", " utf8 ",
        ] {
            assert!(is_utf8(name), "{name}");
        }
        for name in [
            "",
            "utf",
            "utf16",
            "utf8x",
            "latin1",
            "SQL_ASCII",
            "sjis",
            "big5",
        ] {
            assert!(!is_utf8(name), "{name}");
        }
    }
}
