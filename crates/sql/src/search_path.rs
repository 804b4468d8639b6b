//! The search_path of a restricted account's session, which maskgate follows for its
//! own name resolution.
//!
//! Relations in the rewrite are always schema-qualified, so the search_path PostgreSQL
//! uses cannot change what is read; maskgate resolves the client's unqualified names
//! through the session's path, as PostgreSQL would. The path comes from the policy
//! (`[policy] search_path`), from the startup packet (`options=-c search_path=…` or a
//! `search_path` parameter) or from `SET search_path`, and goes back to the session's
//! default with `RESET`, `RESET ALL`, `SET … TO DEFAULT` and `DISCARD ALL`.
//!
//! `pg_catalog` must be absent or first: PostgreSQL then searches it before the other
//! schemas, so an unqualified function, operator or type name means the built-in one
//! the analyzer allowed, never a look-alike in another schema. `SET LOCAL` is refused:
//! maskgate does not follow transaction-scoped settings. A SET that fails upstream, or
//! is rolled back, still moves maskgate's path; the account can only ever reach its own
//! policy tables, whichever one a name then means.

use std::cell::RefCell;

use sqlparser::ast::{Expr, Set, Statement, Value};

use crate::denial::Denial;
use crate::names;

/// A session's search_path: what names resolve through now, and what RESET restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPath {
    pub current: Vec<String>,
    pub default: Vec<String>,
}

impl SearchPath {
    /// A session whose path starts (and resets) at `default`.
    pub fn starting_at(default: Vec<String>) -> SearchPath {
        SearchPath {
            current: default.clone(),
            default,
        }
    }

    /// Follows one statement's change.
    pub fn apply(&mut self, change: &PathChange) {
        self.current = match change {
            PathChange::Set(path) => path.clone(),
            PathChange::Reset => self.default.clone(),
        };
    }
}

/// What a statement does to the session's search_path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathChange {
    /// `SET search_path = …`: these schemas, in order.
    Set(Vec<String>),
    /// Back to the session's default.
    Reset,
}

/// Reads a search_path setting as PostgreSQL does (`public, "My Schema"`): elements
/// separated by commas, unquoted ones folded to lower case. For the startup packet.
pub fn parse_setting(value: &str) -> Result<Vec<String>, Denial> {
    let invalid = || Denial::unsupported("this search_path value");
    let mut path = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        let mut name = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        name.push('"');
                    }
                    Some('"') => break,
                    Some(c) => name.push(c),
                    None => return Err(invalid()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_ascii_whitespace() {
                    break;
                }
                name.push(c.to_ascii_lowercase());
                chars.next();
            }
        }
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if name.is_empty() {
            if path.is_empty() && chars.peek().is_none() {
                break;
            }
            return Err(invalid());
        }
        path.push(name);
        match chars.next() {
            None => break,
            Some(',') => continue,
            Some(_) => return Err(invalid()),
        }
    }
    check(&path)?;
    Ok(path)
}

/// `pg_catalog` absent or first, and no name PostgreSQL could not hold.
fn check(path: &[String]) -> Result<(), Denial> {
    if path.iter().skip(1).any(|s| s == "pg_catalog") {
        return Err(Denial::unsupported(
            "a search_path that lists pg_catalog after another schema (functions and \
             types must resolve to the built-in ones)",
        ));
    }
    if path.iter().any(|s| s.starts_with("pg_temp")) {
        return Err(Denial::unsupported(
            "a search_path that lists pg_temp (restricted accounts have no temporary objects)",
        ));
    }
    if path.iter().any(|s| s.contains('\0') || s.len() > 63) {
        return Err(Denial::unsupported("this search_path value"));
    }
    Ok(())
}

/// The search_path change a statement makes, if any; refuses forms maskgate cannot
/// follow. `values` of SET may be names or string literals, each one schema.
pub(crate) fn change_of(statement: &Statement) -> Result<Option<PathChange>, Denial> {
    let set = match statement {
        Statement::Discard { .. } => return Ok(Some(PathChange::Reset)),
        Statement::Set(set) => set,
        _ => return Ok(None),
    };
    if crate::classify::is_reset_all(statement) {
        return Ok(Some(PathChange::Reset));
    }
    let Set::SingleAssignment {
        scope,
        variable,
        values,
        ..
    } = set
    else {
        return Ok(None);
    };
    if names::parts(variable)? != ["search_path"] {
        return Ok(None);
    }
    if scope.is_some() {
        return Err(Denial::unsupported(
            "SET LOCAL or SESSION search_path (use SET search_path)",
        ));
    }
    if let [Expr::Identifier(ident)] = values.as_slice() {
        if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default") {
            return Ok(Some(PathChange::Reset));
        }
    }
    let mut path = Vec::with_capacity(values.len());
    for value in values {
        match value {
            Expr::Identifier(ident) => {
                names::check_quote(ident)?;
                path.push(names::fold(ident));
            }
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => path.push(s.clone()),
                _ => return Err(Denial::unsupported("this search_path value")),
            },
            _ => return Err(Denial::unsupported("this search_path value")),
        }
    }
    check(&path)?;
    Ok(Some(PathChange::Set(path)))
}

/// What a `SET search_path` sends upstream: only the schemas that hold one of the
/// account's policy tables (and `pg_catalog`), in the session's order. An unqualified
/// function name resolves by argument types across every schema of the path, so a
/// schema the account needs for no table could offer a better-matching function of
/// the same name; maskgate's own resolution still follows the whole path. Each
/// schema is a string literal, the folded name exactly (PostgreSQL quotes each
/// literal element of this list as an identifier, so it means the same schema): its
/// grammar reads names in a SET as string constants, which the check of the printed
/// text compares. No schema left sends `''`: `pg_catalog` alone.
pub(crate) fn as_literals(statement: &mut Statement, path: &[String], account: &[&str]) {
    if let Statement::Set(Set::SingleAssignment { values, .. }) = statement {
        let kept: Vec<&String> = path
            .iter()
            .filter(|schema| *schema == "pg_catalog" || account.contains(&schema.as_str()))
            .collect();
        *values = if kept.is_empty() {
            vec![Expr::Value(Value::SingleQuotedString(String::new()).into())]
        } else {
            kept.into_iter()
                .map(|schema| Expr::Value(Value::SingleQuotedString(schema.clone()).into()))
                .collect()
        };
    }
}

thread_local! {
    /// The path of the analysis running on this thread, when the caller gave one.
    static ACTIVE: RefCell<Option<SearchPath>> = const { RefCell::new(None) };
}

/// Runs `f` (one analysis, on this thread) with `path` as the session's search_path.
pub(crate) fn with_path<R>(path: Option<&SearchPath>, f: impl FnOnce() -> R) -> R {
    let previous = ACTIVE.with(|active| active.replace(path.cloned()));
    let result = f();
    ACTIVE.with(|active| *active.borrow_mut() = previous);
    result
}

/// The schemas of the running analysis' session, if it gave one.
pub(crate) fn active() -> Option<Vec<String>> {
    ACTIVE.with(|active| active.borrow().as_ref().map(|p| p.current.clone()))
}

/// A change made by a statement of the running analysis, for the statements after it.
pub(crate) fn follow(change: &PathChange) {
    ACTIVE.with(|active| {
        if let Some(path) = active.borrow_mut().as_mut() {
            path.apply(change);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_as_postgresql_reads_them() {
        assert_eq!(parse_setting("public").unwrap(), ["public"]);
        assert_eq!(
            parse_setting(" Sales , \"My Schema\",x").unwrap(),
            ["sales", "My Schema", "x"]
        );
        assert_eq!(
            parse_setting("pg_catalog, public").unwrap(),
            ["pg_catalog", "public"]
        );
        assert_eq!(parse_setting("").unwrap(), Vec::<String>::new());
        assert!(parse_setting("public, pg_catalog").is_err());
        assert!(parse_setting("pg_temp, public").is_err());
        assert!(parse_setting("a,,b").is_err());
        assert!(parse_setting("\"open").is_err());
        assert!(parse_setting("a b").is_err());
    }
}
