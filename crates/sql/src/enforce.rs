//! The per-statement decision for a restricted account.
//!
//! # Scope of this version
//!
//! Handled (and tested): parsing (failure = denial), multi-statement strings (one denied
//! statement denies the whole string), statement classification, name resolution as
//! PostgreSQL does it (case folding, quoting, schema qualification, the policy's
//! search_path with `pg_catalog` searched first unless listed, CTE shadowing), a catalog
//! allowlist, a function allowlist, masking subqueries with row filters behind an
//! `OFFSET 0` fence, denied-column errors, lookup-only pinning evaluated on the raw key
//! inside the fence, pushdown of provably safe predicates, and the row cap.
//!
//! Decisions:
//! - `*` and `t.*` expand to the columns the account may see: denied columns are
//!   silently left out (the masking subquery does not project them), masked columns
//!   come masked. The order is the classification's (alphabetical), not the table's.
//! - Whole-row references (`SELECT p FROM participant p`, `row_to_json(p)`) are allowed:
//!   they see the masking subquery's row.
//! - A denied column named anywhere in a statement is an error; a name is judged
//!   conservatively (an unqualified name that any protected table of the statement
//!   denies is refused even if it might have meant another table's column).
//! - Unqualified function and operator names are not rewritten: PostgreSQL searches
//!   `pg_catalog` first, and the session's search_path is the proxy's.
//! - Parse failures answer `42601`; forbidden constructs `42501`; constructs not
//!   analyzed yet `0A000`.
//!
//! Not handled yet, hence denied (fail closed): INSERT/UPDATE/DELETE/MERGE (`0A000` when
//! the account has the statement kind, `42501` otherwise), SQL-level PREPARE/EXECUTE,
//! DECLARE CURSOR, `FOR UPDATE`/`FOR SHARE`, `TABLE name`, `FETCH … WITH TIES`, column
//! alias lists on protected tables, lookup-only tables in blocks with outer joins,
//! `U&"…"` identifiers, three-part names, and every statement or expression form not
//! listed in the code's allowlists.

use std::collections::BTreeMap;
use std::sync::Arc;

use maskgate_policy::{EffectiveRules, Policy, QualifiedName, StatementKind, TableClass};
use sqlparser::ast::{Query, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};

use crate::classify;
use crate::denial::{sqlstate, Denial};
use crate::mask::MaskRenderer;
use crate::rewrite;

/// Everything needed to decide one account's statements under one policy generation.
/// Owns what it needs, so the proxy can build it once per account and share it
/// between that account's sessions.
pub struct Enforcer {
    policy: Arc<Policy>,
    pub(crate) rules: EffectiveRules,
    /// Masking subquery per table of the account, parsed once (or why it cannot be).
    pub(crate) fences: BTreeMap<QualifiedName, Result<Box<Query>, Denial>>,
}

/// The statements to forward, in order, each one our own serialization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforced {
    /// One per statement of the client's string.
    pub statements: Vec<EnforcedStatement>,
}

/// One allowed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnforcedStatement {
    /// What goes upstream: the rewritten tree printed by sqlparser, never the client's text.
    pub sql: String,
    /// What kind of statement it is (for audit, quotas and row counting).
    pub kind: StatementClass,
    /// Rows the statement may return; the proxy counts them on the wire. The rewrite
    /// already asks PostgreSQL for at most one more, so exceeding it can be reported.
    pub row_cap: Option<u64>,
}

/// What a statement does, as far as quotas and audit care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementClass {
    /// A query (SELECT, VALUES, WITH …), rewritten.
    Read,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE.
    Transaction,
    /// SET/SHOW of harmless settings, DISCARD, DEALLOCATE.
    Session,
    /// FETCH and CLOSE: rows of a cursor, counted against the cap.
    Cursor,
    /// LISTEN, UNLISTEN, NOTIFY.
    Notification,
}

impl Enforcer {
    /// Builds the account's masking subqueries up front (a few hundred microseconds), so
    /// keep one per account and policy generation. Names resolve through the policy's
    /// search_path (PostgreSQL searches `pg_catalog` first unless it is listed).
    /// Unrestricted accounts are the caller's business: the enforcer always enforces.
    pub fn new(policy: Arc<Policy>, rules: EffectiveRules, masks: &dyn MaskRenderer) -> Enforcer {
        let fences = rules
            .tables
            .iter()
            .map(|(table, table_rules)| {
                let fence = match policy.tables().get(table) {
                    Some(class) => rewrite::build_fence(table, class, table_rules, masks),
                    None => Err(Denial::privilege(format!(
                        "relation \"{table}\" is not available to this account"
                    ))),
                };
                (table.clone(), fence)
            })
            .collect();
        Enforcer {
            policy,
            rules,
            fences,
        }
    }

    /// The account's rules this enforcer applies.
    pub fn rules(&self) -> &EffectiveRules {
        &self.rules
    }

    pub(crate) fn classification(&self) -> &BTreeMap<QualifiedName, TableClass> {
        self.policy.tables()
    }

    pub(crate) fn search_path(&self) -> &[String] {
        &self.policy.settings().search_path
    }

    /// Decides a whole simple-protocol string (or one Parse message's text). Either every
    /// statement is allowed and rewritten, or the first denial is returned.
    pub fn enforce(&self, sql: &str) -> Result<Enforced, Denial> {
        if has_unicode_identifier(sql) {
            return Err(Denial::unsupported("a U&\"…\" identifier"));
        }
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(parse_denial)?;
        let count = statements.len();
        let mut out = Vec::with_capacity(count);
        for (index, statement) in statements.into_iter().enumerate() {
            match self.enforce_statement(statement) {
                Ok(enforced) => out.push(enforced),
                Err(denial) if count > 1 => {
                    return Err(Denial {
                        sqlstate: denial.sqlstate,
                        message: format!("statement {} of {count}: {}", index + 1, denial.message),
                    })
                }
                Err(denial) => return Err(denial),
            }
        }
        Ok(Enforced { statements: out })
    }

    fn enforce_statement(&self, mut statement: Statement) -> Result<EnforcedStatement, Denial> {
        let (kind, row_cap) = match &mut statement {
            Statement::Query(query) => {
                self.require(StatementKind::Read)?;
                rewrite::rewrite_read(self, query)?;
                (StatementClass::Read, self.rules.max_rows)
            }
            Statement::Insert(_) => return Err(self.write(StatementKind::Insert)),
            Statement::Update { .. } => return Err(self.write(StatementKind::Update)),
            Statement::Delete(_) => return Err(self.write(StatementKind::Delete)),
            Statement::Merge { .. } => return Err(Denial::forbidden("MERGE")),
            other => {
                let class = classify::classify(other)?;
                let cap = match class {
                    StatementClass::Cursor => self.rules.max_rows,
                    _ => None,
                };
                (class, cap)
            }
        };
        Ok(EnforcedStatement {
            sql: statement.to_string(),
            kind,
            row_cap,
        })
    }

    fn require(&self, kind: StatementKind) -> Result<(), Denial> {
        if self.rules.statements.contains(kind) {
            Ok(())
        } else {
            Err(Denial::privilege(format!(
                "this account may not run {} statements",
                kind.as_str()
            )))
        }
    }

    fn write(&self, kind: StatementKind) -> Denial {
        match self.require(kind) {
            Err(denial) => denial,
            Ok(()) => Denial {
                sqlstate: sqlstate::FEATURE_NOT_SUPPORTED,
                message: "writes through maskgate are not enforced yet".to_owned(),
            },
        }
    }
}

/// The parser's message can quote the statement's tokens, literals included; only the
/// position is kept.
fn parse_denial(error: ParserError) -> Denial {
    let text = error.to_string();
    let position = text
        .rfind(" at Line: ")
        .map(|at| text[at + 1..].to_owned())
        .filter(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" :,".contains(&b))
        });
    let message = match position {
        Some(position) => format!("maskgate could not parse this statement ({position})"),
        None => "maskgate could not parse this statement".to_owned(),
    };
    Denial {
        sqlstate: sqlstate::SYNTAX_ERROR,
        message,
    }
}

/// sqlparser reads `U&"x"` as `U & "x"`; PostgreSQL reads one identifier with escapes.
/// Refused wherever the three characters appear (also inside literals: rare, and safe).
fn has_unicode_identifier(sql: &str) -> bool {
    sql.as_bytes()
        .windows(3)
        .any(|w| (w[0] == b'u' || w[0] == b'U') && w[1] == b'&' && w[2] == b'"')
}
