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
//! inside the fence, pushdown of provably safe predicates, the row cap, writes
//! (INSERT/UPDATE/DELETE), SQL-level PREPARE/EXECUTE, cursors (DECLARE, FETCH, MOVE,
//! CLOSE), the catalog (`pg_catalog` and `information_schema`) restricted to what the
//! account may see (`catalog` and `catalog::pg`), the session's search_path
//! ([`Enforcer::enforce_in`]), `RESET`/`RESET ALL`, EXPLAIN without ANALYZE (always
//! `COSTS false`) and masked export (`COPY … TO STDOUT`, the `copy_out` module).
//!
//! Decisions, reads:
//! - `*` and `t.*` expand to the columns the account may see: denied columns are
//!   silently left out (the masking subquery does not project them), masked columns
//!   come masked, in the table's column order when the proxy read it from the
//!   database ([`Enforcer::with_column_order`]), else the classification's.
//! - Whole-row references (`SELECT p FROM participant p`, `row_to_json(p)`) are allowed:
//!   they see the masking subquery's row.
//! - A denied column named anywhere in a statement is an error; a name is judged
//!   conservatively (an unqualified name that any protected table of the statement
//!   denies is refused even if it might have meant another table's column).
//! - Unqualified function and operator names are not rewritten: PostgreSQL searches
//!   `pg_catalog` first (a session's search_path may list it only first).
//! - A relation outside the account's policy answers `42P01`, as one that does not
//!   exist (its catalog lists neither); a system relation it may not read, `42501`.
//! - Parse failures and forbidden constructs answer `42501`; constructs not
//!   analyzed `0A000`.
//! - `information_schema.tables`, `columns`, `key_column_usage`, `table_constraints` and
//!   `referential_constraints` become fenced subqueries keeping only the rows of the
//!   account's policy tables (for `columns` and `key_column_usage`: only the columns it
//!   sees, allowed or masked; for `referential_constraints`: constraints between such
//!   tables). System relations are not listed there. `schemata` is left as it is.
//!
//! Decisions, writes (only with the role's `insert`/`update`/`delete` grant, otherwise
//! `42501`; details in the `rewrite::write` module):
//! - The target is the stored table. SET, WHERE and subqueries may read only its `allow`
//!   columns (masked or denied: `42501` naming column and table); names that may reach
//!   the target but that it does not classify, and whole-row references to it, are
//!   refused, since the stored table may hold columns the policy does not know.
//! - SET and INSERT write only `allow` columns: writing a masked column would overwrite
//!   a value the account cannot see.
//! - UPDATE/DELETE get the row filter ANDed into WHERE; the user's conditions run only
//!   behind `CASE WHEN <filter> …`, never on rows outside it. A lookup-only target must
//!   be pinned like a read.
//! - A row must not leave the account's scope: UPDATE may set a column its row filter
//!   reads only to the filter's literal, and each inserted row must give such columns
//!   as exactly that literal. Only filters that are conjunctions of `column = literal`
//!   can be checked; any other filter, a parameter or an expression in such a column,
//!   or rows from anything but VALUES or one SELECT list: denied (`42501`). Nothing is
//!   silently dropped.
//! - RETURNING shows masked columns as their masks under their own name and expands
//!   `*` like `SELECT *`; a write with RETURNING, a subquery, FROM/USING or INSERT …
//!   SELECT also needs the read grant. Its row cap is `max_rows`; without RETURNING
//!   there is none. The rows are counted on the wire, but the write itself is done
//!   when they arrive.
//! - INSERT needs a column list; `DEFAULT VALUES` and `ON CONFLICT … DO UPDATE` are
//!   not supported (`0A000`); `ON CONFLICT DO NOTHING` is allowed. MERGE and a WITH
//!   clause in front of a write are refused (`42501`). Inserts may reveal that a
//!   conflicting key exists outside the account's scope (a unique violation, or a
//!   skipped row), as with PostgreSQL's own row security.
//! - `COPY table (columns) FROM STDIN` (text format, alone in its string) is allowed
//!   where INSERT is, with INSERT's column checks; what each copied row must hold is
//!   returned in [`EnforcedStatement::copy_in`] for the proxy to check on the wire.
//!   Other forms of `COPY … FROM` are refused (`0A000`); `COPY … TO` too (`42501`).
//!
//! Decisions, prepared statements and cursors:
//! - `PREPARE name [(types)] AS <statement>`: the inner statement (a query, INSERT,
//!   UPDATE or DELETE) is enforced exactly like a top-level one and PREPARE is printed
//!   around the rewritten statement. Parameter types go through the type allowlist.
//! - `EXECUTE name [(args)]`: arguments may be literals, parameters, casts and calls of
//!   allowed functions, never column references or subqueries. The prepared statement's
//!   kind is not known here, so EXECUTE is classed as a read with the row cap. It relies
//!   on every statement prepared on the upstream connection having been rewritten for
//!   this account.
//! - `DECLARE name [BINARY] [[NO] SCROLL] CURSOR [WITH[OUT] HOLD] FOR <query>`: the query
//!   is rewritten like a read, LIMIT cap+1 included. FETCH, MOVE (read as FETCH by the
//!   parser, printed back as MOVE) and CLOSE are allowed; [`EnforcedStatement::cursor`]
//!   names the cursor so the proxy can count its rows across FETCHes. Forms sqlparser
//!   does not read are brought into one it does before parsing (`FETCH c`, `FETCH NEXT
//!   c`, `FETCH FORWARD FROM c`, signed counts). Every direction is allowed;
//!   [`CursorUse::motion`] says what a FETCH or MOVE does to the cursor, so the proxy
//!   can place each row it returns and never send the row past the cap (module
//!   `cursor_position`).
//! - `SET client_encoding` / `SET NAMES` only to UTF-8: statements are analyzed as
//!   UTF-8, and PostgreSQL must read them the same way.
//!
//! Not handled, hence denied (fail closed): `FOR UPDATE`/`FOR SHARE`, `TABLE name`,
//! `FETCH … WITH TIES` under a cap, column alias lists on protected tables, lookup-only
//! tables in blocks with outer joins, `U&"…"` identifiers, three-part relation names,
//! and every statement or expression form not listed in the code's allowlists.

use std::collections::BTreeMap;
use std::sync::Arc;

use maskgate_policy::{
    ColumnRule, EffectiveRules, Policy, QualifiedName, StatementKind, TableClass,
};
use sqlparser::ast::{CloseCursor, DeclareType, DescribeAlias, Ident, Query, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::budget::{Clock, Limits};
use crate::catalog;
use crate::classify;
use crate::copy_in::{self, CopyIn};
use crate::copy_out::{self, CopyOut};
use crate::cursor_position::Motion;
use crate::denial::{sqlstate, Denial};
use crate::facts::{self, KeyPin, PinnedValue, RawPin, SqlPrepared, TablesTouched};
use crate::housekeeping;
use crate::lexical;
use crate::mask::MaskRenderer;
use crate::names;
use crate::precedence;
use crate::print;
use crate::rewrite;
use crate::search_path::{self, PathChange, SearchPath};
use crate::verify;

mod text;
use text::*;

/// The stack an analysis runs on: the deepest tree within [`Limits::max_depth`],
/// walked by sqlparser, the rewrite, the printer and libpg_query in an unoptimized
/// build, fits with room to spare. Reserved, not committed: only what a statement
/// touches is ever backed by memory.
const ANALYSIS_STACK_BYTES: usize = 512 << 20;

/// Statement and portal names maskgate uses upstream for its own statements; a
/// client may not create or address them.
pub const RESERVED_NAME_PREFIX: &str = "_maskgate_";

/// The guard token of an enforcer not given one (tools and tests).
pub const DEFAULT_GUARD_TOKEN: &str = "maskgate_guard";

/// Everything needed to decide one account's statements under one policy generation.
/// Owns what it needs, so the proxy can build it once per account and share it
/// between that account's sessions.
pub struct Enforcer {
    policy: Arc<Policy>,
    pub(crate) rules: EffectiveRules,
    /// Masking subquery per table of the account, parsed once (or why it cannot be).
    pub(crate) fences: BTreeMap<QualifiedName, Result<Box<Query>, Denial>>,
    /// Filtering subquery per `information_schema` view that names tables or columns.
    pub(crate) catalog_fences: BTreeMap<QualifiedName, Result<Box<Query>, Denial>>,
    /// The OIDs each kind of guarded catalog function may be asked about.
    pub(crate) catalog_guards: BTreeMap<catalog::pg::Guard, Result<Box<Query>, Denial>>,
    /// Printed bytes of each guard: what one guarded call adds.
    guard_bytes: BTreeMap<catalog::pg::Guard, usize>,
    /// Printed bytes of each of those subqueries: what one reference to its relation
    /// adds to the text sent upstream.
    fence_bytes: BTreeMap<QualifiedName, usize>,
    pub(crate) limits: Limits,
    /// Marks the errors PostgreSQL raises for the checks it makes while a statement
    /// runs (packed rows, OFFSET, in-scope parents), so the proxy can tell them from
    /// the database's own.
    pub(crate) guard_token: String,
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
    /// For DECLARE it is the cap of the cursor's rows across its FETCHes.
    pub row_cap: Option<u64>,
    /// The cursor this statement declares or reads, for counting rows across FETCHes.
    /// `None` for everything else, including `CLOSE ALL`.
    pub cursor: Option<CursorUse>,
    /// For `COPY … FROM STDIN`: what every copied row must look like. The proxy checks
    /// the rows as they stream and fails the COPY at the first that does not.
    pub copy_in: Option<CopyIn>,
    /// The policy tables it reads and writes, for its audit record.
    pub tables: TablesTouched,
    /// The keys it pinned on lookup-only tables, for its audit record: detection
    /// fingerprints these values, and only these.
    pub pins: Vec<KeyPin>,
    /// What it does to the session's search_path, which the proxy follows.
    pub search_path: Option<PathChange>,
    /// For `COPY … TO STDOUT`: which COPY data messages are rows, for counting.
    pub copy_out: Option<CopyOut>,
    /// For SQL `PREPARE` and `EXECUTE`: the name, and the keys a prepared body pins
    /// or the constants an EXECUTE passes, so the trail can name the keys an
    /// EXECUTE looks up.
    pub sql_prepared: Option<SqlPrepared>,
}

/// The name (and for EXECUTE, the argument constants) of a SQL PREPARE or EXECUTE.
fn sql_prepared_name(statement: &Statement, original: &str) -> Option<SqlPrepared> {
    match statement {
        Statement::Prepare { name, .. } => Some(SqlPrepared::Prepare {
            name: names::fold(name),
            pins: Vec::new(),
        }),
        Statement::Execute {
            name: Some(name),
            parameters,
            ..
        } => Some(SqlPrepared::Execute {
            name: names::parts(name).ok()?.pop()?,
            arguments: facts::argument_constants(original, parameters),
        }),
        _ => None,
    }
}

/// A cursor named by DECLARE, FETCH, MOVE or CLOSE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorUse {
    /// Folded cursor name, as PostgreSQL matches it.
    pub name: String,
    /// True for DECLARE (the count starts again), false for FETCH/MOVE/CLOSE.
    pub declare: bool,
    /// For FETCH and MOVE: where it moves the cursor, so the proxy can tell the
    /// position of every row it returns.
    pub motion: Option<Motion>,
}

/// What a statement does, as far as quotas and audit care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementClass {
    /// A query (SELECT, VALUES, WITH …), rewritten; also SQL-level EXECUTE, whose
    /// prepared statement may be of any kind.
    Read,
    /// INSERT, UPDATE or DELETE, rewritten; returns rows only with RETURNING.
    Write,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE.
    Transaction,
    /// SET/SHOW of harmless settings, DISCARD, DEALLOCATE, SQL-level PREPARE.
    Session,
    /// DECLARE … CURSOR, FETCH, MOVE and CLOSE: rows of a cursor, counted against the cap.
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
        Enforcer::with_column_order(policy, rules, masks, &BTreeMap::new())
    }

    /// [`Enforcer::new`] for tables whose columns are in `order` in the database
    /// (by attnum), so `*` lists them in that order as PostgreSQL does. Columns of a
    /// table `order` does not cover follow in the classification's order.
    pub fn with_column_order(
        policy: Arc<Policy>,
        rules: EffectiveRules,
        masks: &dyn MaskRenderer,
        order: &BTreeMap<QualifiedName, Vec<String>>,
    ) -> Enforcer {
        let fences: BTreeMap<QualifiedName, Result<Box<Query>, Denial>> = rules
            .tables
            .iter()
            .map(|(table, table_rules)| {
                let order = order.get(table).map_or(&[][..], Vec::as_slice);
                let fence = match policy.tables().get(table) {
                    Some(class) => rewrite::build_fence(table, class, table_rules, masks, order),
                    None => Err(Denial::privilege(format!(
                        "relation \"{table}\" is not available to this account"
                    ))),
                };
                (table.clone(), fence)
            })
            .collect();
        let visible: Vec<(&str, &str, Vec<&str>)> = rules
            .tables
            .iter()
            .filter(|(table, _)| fences.get(*table).is_some_and(Result::is_ok))
            .map(|(table, table_rules)| {
                let columns = table_rules
                    .columns
                    .iter()
                    .filter(|(_, rule)| matches!(rule, ColumnRule::Allow | ColumnRule::Mask(_)))
                    .map(|(column, _)| column.as_str())
                    .collect();
                (table.schema.as_str(), table.name.as_str(), columns)
            })
            .collect();
        let parse = |sql: &str, what: &str| {
            Parser::new(&PostgreSqlDialect {})
                .try_with_sql(sql)
                .and_then(|mut parser| parser.parse_query())
                .map_err(|_| Denial::unsupported(what.to_owned()))
        };
        let sets = catalog::pg::Sets::new(&visible);
        let catalog_fences = catalog::FILTERED_VIEWS
            .iter()
            .map(|view| {
                let sql = catalog::filtered_view(view, &visible);
                let name = QualifiedName::new("information_schema", *view);
                let fence = parse(&sql, &name.to_string());
                (name, fence)
            })
            .chain(catalog::pg::FILTERED.iter().filter_map(|relation| {
                let sql = sets.fence(relation)?;
                let name = QualifiedName::new("pg_catalog", *relation);
                let fence = parse(&sql, &name.to_string());
                Some((name, fence))
            }))
            .collect();
        let catalog_guards = catalog::pg::GUARDED
            .iter()
            .map(|(_, _, guard)| {
                let query = parse(&sets.guard(*guard), "a catalog function");
                (*guard, query)
            })
            .collect::<BTreeMap<_, _>>();
        let guard_bytes = catalog_guards
            .iter()
            .filter_map(|(guard, query)| Some((*guard, query.as_ref().ok()?.to_string().len())))
            .collect();
        let fence_bytes = fences
            .iter()
            .chain(&catalog_fences)
            .filter_map(|(table, fence)| {
                Some((table.clone(), fence.as_ref().ok()?.to_string().len()))
            })
            .collect();
        Enforcer {
            policy,
            rules,
            fences,
            catalog_fences,
            catalog_guards,
            guard_bytes,
            fence_bytes,
            limits: Limits::default(),
            guard_token: DEFAULT_GUARD_TOKEN.to_owned(),
        }
    }

    /// The same enforcer marking its run-time checks with `token` (see
    /// [`Enforcer::guard_token`]); a process picks one at random.
    pub fn with_guard_token(mut self, token: &str) -> Enforcer {
        self.guard_token = token.to_owned();
        self
    }

    /// What marks the errors of the checks PostgreSQL makes while a statement runs.
    pub fn guard_token(&self) -> &str {
        &self.guard_token
    }

    /// The same enforcer with other analysis limits.
    pub fn with_limits(mut self, limits: Limits) -> Enforcer {
        self.limits = limits;
        self
    }

    /// What one reference to `relation` adds to the printed statement: its masking or
    /// filtering subquery, if it has one.
    pub(crate) fn fence_bytes(&self, relation: &QualifiedName) -> usize {
        self.fence_bytes.get(relation).copied().unwrap_or(0)
    }

    /// What one call of a guarded catalog function adds to the printed statement.
    pub(crate) fn guard_bytes(&self, guard: catalog::pg::Guard) -> usize {
        self.guard_bytes.get(&guard).copied().unwrap_or(0)
    }

    /// The account's rules this enforcer applies.
    pub fn rules(&self) -> &EffectiveRules {
        &self.rules
    }

    pub(crate) fn classification(&self) -> &BTreeMap<QualifiedName, TableClass> {
        self.policy.tables()
    }

    /// The search_path names resolve through: the session's, when the caller gave
    /// one ([`Enforcer::enforce_in`]), else the policy's.
    pub(crate) fn search_path(&self) -> Vec<String> {
        search_path::active().unwrap_or_else(|| self.policy.settings().search_path.clone())
    }

    /// The policy's search_path: a session's default unless its startup packet set one.
    pub fn policy_search_path(&self) -> &[String] {
        &self.policy.settings().search_path
    }

    /// [`Enforcer::enforce`] in a session whose search_path is `path`: unqualified names
    /// resolve through it, and a SET or RESET of it in `sql` applies to the statements
    /// after it in the same string (each statement reports its change, for the
    /// session to follow).
    pub fn enforce_in(&self, sql: &str, path: &SearchPath) -> Result<Enforced, Denial> {
        self.limits.check_size(sql)?;
        let clock = Clock::start(&self.limits);
        stacker::grow(ANALYSIS_STACK_BYTES, || {
            search_path::with_path(Some(path), || self.enforce_on_own_stack(sql, &clock))
        })
    }

    /// Decides a whole simple-protocol string (or one Parse message's text). Either every
    /// statement is allowed and rewritten, or the first denial is returned.
    ///
    /// Runs on a stack of its own, sized for the deepest tree [`Limits`] lets through,
    /// whatever thread calls it.
    pub fn enforce(&self, sql: &str) -> Result<Enforced, Denial> {
        self.limits.check_size(sql)?;
        let clock = Clock::start(&self.limits);
        stacker::grow(ANALYSIS_STACK_BYTES, || {
            self.enforce_on_own_stack(sql, &clock)
        })
    }

    fn enforce_on_own_stack(&self, sql: &str, clock: &Clock) -> Result<Enforced, Denial> {
        if has_unicode_identifier(sql) {
            return Err(Denial::unsupported("a U&\"…\" identifier"));
        }
        if let Some(copy) = copy_in::recognize(sql) {
            let (name, columns) = copy?;
            let (sql, copy_in) = rewrite::rewrite_copy_in(self, &name, &columns, clock)?;
            let tables = TablesTouched {
                read: Vec::new(),
                written: facts::protected(self, &name),
            };
            return Ok(Enforced {
                statements: vec![EnforcedStatement {
                    sql,
                    kind: StatementClass::Write,
                    row_cap: None,
                    cursor: None,
                    copy_in: Some(copy_in),
                    tables,
                    pins: Vec::new(),
                    search_path: None,
                    copy_out: None,
                    sql_prepared: None,
                }],
            });
        }
        let statements = parse(sql, &self.limits)?;
        clock.check()?;
        let count = statements.len();
        let mut out = Vec::with_capacity(count);
        for (index, (statement, is_move)) in statements.into_iter().enumerate() {
            match self
                .enforce_statement(statement, is_move, sql, clock)
                .and_then(|enforced| clock.check().map(|()| enforced))
            {
                Ok(enforced) => {
                    if let Some(change) = &enforced.search_path {
                        search_path::follow(change);
                    }
                    out.push(enforced)
                }
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

    fn enforce_statement(
        &self,
        mut statement: Statement,
        is_move: bool,
        original: &str,
        clock: &Clock,
    ) -> Result<EnforcedStatement, Denial> {
        precedence::check(&statement)?;
        let path_change = search_path::change_of(&statement)?;
        if let Some(PathChange::Set(path)) = &path_change {
            let schemas: Vec<&str> = self
                .rules
                .tables
                .keys()
                .map(|t| t.schema.as_str())
                .collect();
            search_path::as_literals(&mut statement, path, &schemas);
        }
        let tables = facts::tables_touched(self, &statement);
        let prepared = sql_prepared_name(&statement, original);
        let mut pins = Vec::new();
        let mut copy_out = None;
        let decision = if matches!(statement, Statement::Copy { to: true, .. }) {
            copy_out = Some(copy_out::rewrite_copy_out(
                self,
                &mut statement,
                clock,
                &mut pins,
            )?);
            (StatementClass::Read, self.rules.max_rows, None)
        } else {
            self.rewrite_statement(&mut statement, clock, &mut pins)?
        };
        clock.check()?;
        let printed = print::print(&mut statement)?;
        self.limits.check_printed(&printed.sql)?;
        clock.check()?;
        verify::verify(&printed.sql, 1, &printed.facts, original)?;
        let mut sql = printed.sql;
        if is_move {
            match sql.strip_prefix("FETCH") {
                Some(rest) => sql = format!("MOVE{rest}"),
                None => return Err(Denial::unsupported("this MOVE")),
            }
        }
        if classify::is_reset_all(&statement) {
            sql = "RESET ALL".to_owned();
        }
        let pins = facts::resolve_pins(self, original, pins);
        let (pins, sql_prepared) = match prepared {
            Some(SqlPrepared::Prepare { name, .. }) => (
                // Only its constants are this message's; all of them go with the name.
                pins.iter()
                    .filter(|p| matches!(p.value, PinnedValue::Constant(_)))
                    .cloned()
                    .collect(),
                Some(SqlPrepared::Prepare { name, pins }),
            ),
            other => (pins, other),
        };
        Ok(EnforcedStatement {
            sql,
            kind: decision.0,
            row_cap: decision.1,
            cursor: decision.2,
            copy_in: None,
            tables,
            pins,
            search_path: path_change,
            copy_out,
            sql_prepared,
        })
    }

    /// Checks and rewrites one statement in place; adds the keys it pins to `pins`.
    fn rewrite_statement(
        &self,
        statement: &mut Statement,
        clock: &Clock,
        pins: &mut Vec<RawPin>,
    ) -> Result<(StatementClass, Option<u64>, Option<CursorUse>), Denial> {
        let cap = self.rules.max_rows;
        match statement {
            Statement::Query(query) => {
                self.require(StatementKind::Read)?;
                let (cap, pinned) = rewrite::rewrite_read(self, query, clock)?;
                pins.extend(pinned);
                Ok((StatementClass::Read, cap, None))
            }
            Statement::Insert(_) | Statement::Update { .. } | Statement::Delete(_) => {
                let (returns, pinned) = rewrite::rewrite_write(self, statement, clock)?;
                pins.extend(pinned);
                Ok((
                    StatementClass::Write,
                    if returns { cap } else { None },
                    None,
                ))
            }
            Statement::Merge { .. } => Err(Denial::forbidden("MERGE")),
            Statement::Explain {
                describe_alias: DescribeAlias::Explain,
                analyze: false,
                verbose: false,
                query_plan: false,
                estimate: false,
                statement: inner,
                format: None,
                options,
            } => {
                let Statement::Query(query) = inner.as_mut() else {
                    return Err(Denial::unsupported("EXPLAIN of anything but a query"));
                };
                *options = Some(housekeeping::explain_options(options.as_deref())?);
                self.require(StatementKind::Read)?;
                rewrite::rewrite_read(self, query, clock)?;
                // A plan prints the checks PostgreSQL runs for maskgate (packed rows,
                // OFFSET $n) with the guard token, which would let the client forge
                // maskgate's refusals and their audit records.
                if query.to_string().contains(&self.guard_token) {
                    return Err(Denial::unsupported(
                        "EXPLAIN of a statement that maskgate checks as it runs (packed \
                         rows, OFFSET $n)",
                    ));
                }
                Ok((StatementClass::Read, cap, None))
            }
            Statement::Prepare {
                name,
                data_types,
                statement: inner,
            } => {
                names::check_quote(name)?;
                check_not_reserved(name)?;
                for data_type in data_types.iter() {
                    rewrite::check_type(data_type)?;
                }
                if !matches!(
                    **inner,
                    Statement::Query(_)
                        | Statement::Insert(_)
                        | Statement::Update { .. }
                        | Statement::Delete(_)
                ) {
                    return Err(Denial::unsupported(format!(
                        "PREPARE of {}",
                        classify::construct_name(inner)
                    )));
                }
                // Its parameters are those of a later EXECUTE, not of this message:
                // its pins go with its name (see `SqlPrepared`).
                self.rewrite_statement(inner, clock, pins)?;
                Ok((StatementClass::Session, None, None))
            }
            // `DEALLOCATE ALL` is read by sqlparser as a statement named `all`.
            Statement::Deallocate { name, .. } => {
                names::check_quote(name)?;
                check_not_reserved(name)?;
                Ok((StatementClass::Session, None, None))
            }
            Statement::Execute {
                name,
                parameters,
                has_parentheses,
                immediate,
                into,
                using,
                output,
                default,
            } => {
                let plain = !*immediate
                    && into.is_empty()
                    && using.is_empty()
                    && !*output
                    && !*default
                    && (*has_parentheses || parameters.is_empty());
                let name = name
                    .as_ref()
                    .filter(|_| plain)
                    .ok_or_else(|| Denial::unsupported("this form of EXECUTE"))?;
                let parts = names::parts(name)?;
                if parts.len() != 1 {
                    return Err(Denial::unsupported("a qualified prepared statement name"));
                }
                if is_reserved(&parts[0]) {
                    return Err(reserved_denial());
                }
                for parameter in parameters.iter_mut() {
                    rewrite::check_execute_argument(self, parameter, clock)?;
                }
                Ok((StatementClass::Read, cap, None))
            }
            Statement::Declare { stmts } => {
                let [declare] = stmts.as_mut_slice() else {
                    return Err(Denial::unsupported("DECLARE of several names"));
                };
                let [name] = declare.names.as_slice() else {
                    return Err(Denial::unsupported("DECLARE of several names"));
                };
                let cursor = cursor_use(name, true)?;
                let query = match (
                    &declare.declare_type,
                    &declare.data_type,
                    &declare.assignment,
                    declare.for_query.as_mut(),
                ) {
                    (Some(DeclareType::Cursor), None, None, Some(query)) => query,
                    _ => return Err(Denial::unsupported("this form of DECLARE")),
                };
                self.require(StatementKind::Read)?;
                let (cap, pinned) = rewrite::rewrite_read(self, query, clock)?;
                pins.extend(pinned);
                Ok((StatementClass::Cursor, cap, Some(cursor)))
            }
            Statement::Fetch {
                name,
                into: None,
                direction,
                ..
            } => {
                let mut cursor = cursor_use(name, false)?;
                cursor.motion = Some(Motion::of(direction)?);
                Ok((StatementClass::Cursor, cap, Some(cursor)))
            }
            Statement::Close { cursor } => {
                let cursor = match cursor {
                    CloseCursor::All => None,
                    CloseCursor::Specific { name } => Some(cursor_use(name, false)?),
                };
                Ok((StatementClass::Cursor, cap, cursor))
            }
            Statement::LISTEN { channel } | Statement::NOTIFY { channel, .. } => {
                self.check_channel(channel)?;
                Ok((StatementClass::Notification, None, None))
            }
            other => {
                let class = classify::classify(other)?;
                Ok((class, None, None))
            }
        }
    }

    /// LISTEN and NOTIFY only on a channel a role names: notification payloads come
    /// from other sessions unmasked, and other applications trust what arrives on
    /// their channels. UNLISTEN, which only stops deliveries, is always allowed.
    fn check_channel(&self, channel: &Ident) -> Result<(), Denial> {
        names::check_quote(channel)?;
        let name = names::fold(channel);
        if self.rules.channels.contains(&name) {
            Ok(())
        } else {
            Err(Denial::privilege(format!(
                "notification channel \"{name}\" is not available to this account"
            )))
        }
    }

    pub(crate) fn require(&self, kind: StatementKind) -> Result<(), Denial> {
        if self.rules.statements.contains(kind) {
            Ok(())
        } else {
            Err(Denial::privilege(format!(
                "this account may not run {} statements",
                kind.as_str()
            )))
        }
    }
}
