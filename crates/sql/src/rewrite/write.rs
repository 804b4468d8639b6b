//! Writes for accounts whose roles grant them: UPDATE, DELETE and INSERT on a table of
//! the policy.
//!
//! PostgreSQL cannot write through a subquery, so the target of a write is the stored
//! table, not a masking subquery. What the read rewrite gets from the fence is done here
//! by checks and by rewriting the statement itself:
//!
//! - Every column reference that PostgreSQL may bind to the target (by its scoping, see
//!   [`super::scope`]: a name an inner item does not certainly have, or has where that
//!   reference cannot see it, falls through to the target) is checked by name: SET,
//!   WHERE and subqueries may read only columns the account sees as stored (`allow`);
//!   RETURNING may also name masked columns, which are replaced by their masks under
//!   their own name where the name certainly means the target; denied, unclassified and
//!   whole-row references to the target are refused.
//! - SET and INSERT may only write `allow` columns.
//! - UPDATE and DELETE get the row filter (as the fence applies it, qualified with the
//!   target's name) ANDed into their WHERE. The user's own conditions go behind
//!   `CASE WHEN <filter> THEN (<conditions>) ELSE false END`, so they are never evaluated
//!   on rows outside the filter (no division-by-zero or cast-error oracles). Lookup
//!   pins, provably safe comparisons (an `allow` column against one literal or
//!   parameter) and join equalities (an `allow` column `=` a column of another FROM
//!   item's masking subquery) stay outside the CASE, so indexes and hash joins remain
//!   possible.
//! - A lookup-only target must be pinned exactly as a read must; the pin is evaluated on
//!   the stored key even where the key is masked.
//! - Rows that leave the account's scope: an UPDATE may set a column the row filter
//!   reads only to the literal the filter requires, and every inserted row must give
//!   each such column as that literal. Only a filter that is a conjunction of
//!   `column = literal` can be checked; otherwise the insert is refused.
//! - The other sources (UPDATE … FROM, DELETE … USING, the query of INSERT … SELECT,
//!   subqueries) are rewritten like any read, without the row cap (their rows do not
//!   leave the database).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use maskgate_policy::{ColumnRule, QualifiedName, RowFilter, ScopePath, StatementKind, TableClass};
use sqlparser::ast::helpers::attached_token::AttachedToken;
use sqlparser::ast::{
    visit_expressions, visit_expressions_mut, Assignment, AssignmentTarget, BinaryOperator,
    CaseWhen, ConflictTarget, Delete, Expr, FromTable, Insert, ObjectName, OnConflict,
    OnConflictAction, OnInsert, Query, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
    Statement, TableFactor, TableObject, TableWithJoins, UpdateTableFromKind, Value, VisitMut,
    VisitorMut,
};

use super::scope::{Columns, Level};
use super::{
    comparison, denied_column, guard, internal, is_safe_comparison, join_and, lookup_only,
    plain_wildcard, split_and, split_and_ref, strip, Cursor, FromItem, Resolved, Rewriter, Target,
};
use crate::budget::Clock;
use crate::copy_in::{copy_text, CopyIn};
use crate::denial::Denial;
use crate::enforce::Enforcer;
use crate::facts::RawPin;
use crate::names::{self, fold, quoted};

mod copy_in;
mod returning;
mod row_scope;

pub(crate) use copy_in::rewrite_copy_in;
use returning::rewrite_returning;
use row_scope::{check_assignment, check_inserted_rows, is_default, writable, FilterFacts};

/// Rewrites an allowed INSERT, UPDATE or DELETE in place. Returns whether it returns
/// rows (RETURNING), and the lookup keys it pinned.
pub(crate) fn rewrite_write(
    enforcer: &Enforcer,
    statement: &mut Statement,
    clock: &Clock,
) -> Result<(bool, Vec<RawPin>), Denial> {
    let kind = match statement {
        Statement::Insert(_) => StatementKind::Insert,
        Statement::Update { .. } => StatementKind::Update,
        Statement::Delete(_) => StatementKind::Delete,
        _ => return Err(internal()),
    };
    enforcer.require(kind)?;
    let mut rewriter = Rewriter::new(enforcer, &*statement, clock)?;
    // What a write's subqueries and RETURNING read is capped like a read: a RETURNING
    // list or a SET value can pack rows, and a subquery can page with OFFSET.
    rewriter.read_cap = super::statement_cap(enforcer, &rewriter.tables);
    let (returns, reads) = match statement {
        Statement::Insert(insert) => rewrite_insert(&mut rewriter, insert)?,
        Statement::Update {
            table,
            assignments,
            from,
            selection,
            returning,
            or,
            limit,
        } => {
            if or.is_some() || limit.is_some() {
                return Err(Denial::unsupported("this UPDATE clause"));
            }
            if !table.joins.is_empty() {
                return Err(Denial::unsupported("a join in the target of UPDATE"));
            }
            let mut none = Vec::new();
            let sources = match from {
                None => &mut none,
                Some(UpdateTableFromKind::AfterSet(sources)) => sources,
                Some(UpdateTableFromKind::BeforeSet(_)) => {
                    return Err(Denial::unsupported("UPDATE … FROM before SET"))
                }
            };
            rewrite_filtered(
                &mut rewriter,
                Parts {
                    target: &mut table.relation,
                    sources,
                    selection,
                    assignments,
                    returning,
                },
            )?
        }
        Statement::Delete(Delete {
            tables,
            from,
            using,
            selection,
            returning,
            order_by,
            limit,
        }) => {
            if !tables.is_empty() || !order_by.is_empty() || limit.is_some() {
                return Err(Denial::unsupported("this DELETE clause"));
            }
            let FromTable::WithFromKeyword(from) = from else {
                return Err(Denial::unsupported("DELETE without FROM"));
            };
            let [target] = from.as_mut_slice() else {
                return Err(Denial::unsupported("DELETE from several tables"));
            };
            if !target.joins.is_empty() {
                return Err(Denial::unsupported("a join in the target of DELETE"));
            }
            let mut none = Vec::new();
            rewrite_filtered(
                &mut rewriter,
                Parts {
                    target: &mut target.relation,
                    sources: using.as_mut().unwrap_or(&mut none),
                    selection,
                    assignments: &mut [],
                    returning,
                },
            )?
        }
        _ => return Err(internal()),
    };
    if reads && !enforcer.rules.statements.contains(StatementKind::Read) {
        return Err(Denial::privilege(
            "this account may not run read statements, and this write reads data \
             (RETURNING, a subquery, FROM/USING or INSERT … SELECT)",
        ));
    }
    Ok((returns, rewriter.pins.into_inner()))
}

/// `target.column = source.column` with an `allow` column of the target and a column
/// the masking subquery of another FROM item projects: equality of two policy columns
/// cannot fail, so it may run on any row and stays usable as a join condition.
fn is_join_equality(rewriter: &Rewriter<'_>, conjunct: &Expr, items: &[FromItem]) -> bool {
    let Expr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    } = strip(conjunct)
    else {
        return false;
    };
    let (left, right) = (strip(left), strip(right));
    let Some(table) = items[0].protected.as_ref() else {
        return false;
    };
    let rules = rewriter.rules(table);
    let of_target = |expr: &Expr| {
        rewriter
            .column_of(expr, 0)
            .is_some_and(|name| matches!(rules.columns.get(&name), Some(ColumnRule::Allow)))
    };
    let of_source = |expr: &Expr| match expr {
        Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
            let named = rewriter.scopes.relation(&fold(&parts[0]), None);
            match named.as_slice() {
                [at] if at.item > 0 && at.level + 1 == rewriter.scopes.levels.len() => {
                    rewriter.projects(rewriter.scopes.item(*at), &fold(&parts[1]))
                }
                _ => false,
            }
        }
        _ => false,
    };
    (of_target(left) && of_source(right)) || (of_target(right) && of_source(left))
}

/// The parts of an UPDATE or DELETE the rewrite works on.
struct Parts<'s> {
    target: &'s mut TableFactor,
    /// UPDATE … FROM or DELETE … USING.
    sources: &'s mut Vec<TableWithJoins>,
    selection: &'s mut Option<Expr>,
    assignments: &'s mut [Assignment],
    returning: &'s mut Option<Vec<SelectItem>>,
}

/// UPDATE and DELETE. Returns (returns rows, reads data).
fn rewrite_filtered(rewriter: &mut Rewriter<'_>, parts: Parts<'_>) -> Result<(bool, bool), Denial> {
    let (table, reference) = resolve_target(rewriter, parts.target)?;
    let facts = FilterFacts::of(rewriter, &table)?;
    for assignment in parts.assignments.iter() {
        check_assignment(rewriter, &table, &facts, assignment)?;
    }

    let (sources, outer) = rewriter.scan_from(parts.sources)?;
    let aliased = matches!(parts.target, TableFactor::Table { alias: Some(_), .. });
    let mut items = vec![target_item(rewriter, &table, &reference, aliased)];
    items.extend(sources);
    push_write_level(rewriter, &table, &reference, items.clone());
    let mut plans = rewriter.plan_fences(&items, parts.selection, &[], outer)?;
    let mut cursor = Cursor {
        items: &items,
        next: 1,
        plans: &mut plans,
    };
    for source in parts.sources.iter_mut() {
        rewriter.walk_from(source, &mut cursor)?;
    }
    rewriter.reveal();

    let rules = rewriter.rules(&table);
    let mut conjuncts = Vec::new();
    if let Some(expr) = parts.selection.take() {
        split_and(expr, &mut conjuncts);
    }
    let mut outside = Vec::new();
    if !rules.lookup_keys.is_empty() {
        let pin = conjuncts.iter().enumerate().find_map(|(i, conjunct)| {
            let (column, op, _) = comparison(conjunct)?;
            let name = rewriter.column_of(column, 0)?;
            (op == BinaryOperator::Eq && rules.lookup_keys.contains(&name)).then_some((i, name))
        });
        let Some((pin, key)) = pin else {
            return Err(lookup_only(&table, rules));
        };
        rewriter.note_pin(&table, key, &conjuncts[pin]);
        let pin = conjuncts.remove(pin);
        outside.push(rewriter.raw_predicate(&pin, &reference)?);
    }
    let mut rest = Vec::new();
    let mut joins = Vec::new();
    for conjunct in conjuncts {
        let safe = comparison(&conjunct).is_some_and(|(column, op, _)| {
            is_safe_comparison(&op)
                && rewriter
                    .column_of(column, 0)
                    .is_some_and(|name| matches!(rules.columns.get(&name), Some(ColumnRule::Allow)))
        });
        if safe {
            outside.push(rewriter.raw_predicate(&conjunct, &reference)?);
        } else if is_join_equality(rewriter, &conjunct, &items) {
            joins.push(conjunct);
        } else {
            rest.push(conjunct);
        }
    }

    for assignment in parts.assignments.iter_mut() {
        if !is_default(&assignment.value) {
            rewriter.visit(&mut assignment.value)?;
        }
        keep_parent_in_scope(rewriter, &table, &facts, assignment)?;
    }
    for conjunct in rest.iter_mut().chain(joins.iter_mut()) {
        rewriter.visit(conjunct)?;
    }
    outside.extend(joins);
    if let Some(returning) = parts.returning.as_mut() {
        rewrite_returning(rewriter, returning, &items[1..])?;
    }

    let filter = facts.filter.as_ref().map(|f| f.qualified(&reference));
    let mut where_parts: Vec<Expr> = filter.iter().cloned().collect();
    where_parts.extend(outside);
    if let Some(rest) = join_and(rest) {
        where_parts.push(match filter {
            Some(filter) => row_scope::guard(filter, rest),
            None => rest,
        });
    }
    *parts.selection = join_and(where_parts);
    rewriter.scopes.levels.pop();
    rewriter.target = None;

    let reads = parts.returning.is_some() || !parts.sources.is_empty() || rewriter.queries > 0;
    Ok((parts.returning.is_some(), reads))
}

/// `SET fk = value` where a path of the row filter starts from `fk`: the new parent
/// must be one of the account's, checked as the row is updated.
fn keep_parent_in_scope(
    rewriter: &Rewriter<'_>,
    table: &QualifiedName,
    facts: &FilterFacts,
    assignment: &mut Assignment,
) -> Result<(), Denial> {
    let targets: Vec<&ObjectName> = match &assignment.target {
        AssignmentTarget::ColumnName(name) => vec![name],
        AssignmentTarget::Tuple(names) => names.iter().collect(),
    };
    let mut path = None;
    for name in targets.iter().copied() {
        if let [column] = names::parts(name)?.as_slice() {
            path = path.or(facts.path_from(column));
        }
    }
    let Some(path) = path else {
        return Ok(());
    };
    if targets.len() != 1 {
        return Err(Denial::privilege(format!(
            "column \"{}\" of table \"{table}\" leads this account's row filter to its parent: \
             set it on its own, not in a list",
            path.column
        )));
    }
    assignment.value = row_scope::in_scope(rewriter, table, path, &assignment.value)?;
    Ok(())
}

/// INSERT. Returns (returns rows, reads data).
fn rewrite_insert(
    rewriter: &mut Rewriter<'_>,
    insert: &mut Insert,
) -> Result<(bool, bool), Denial> {
    let Insert {
        or,
        ignore,
        into,
        table,
        table_alias,
        columns,
        overwrite,
        source,
        assignments,
        partitioned,
        after_columns,
        has_table_keyword,
        on,
        returning,
        replace_into,
        priority,
        insert_alias,
        settings,
        format_clause,
    } = insert;
    if or.is_some()
        || *ignore
        || !*into
        || *overwrite
        || !assignments.is_empty()
        || partitioned.is_some()
        || !after_columns.is_empty()
        || *has_table_keyword
        || *replace_into
        || priority.is_some()
        || insert_alias.is_some()
        || settings.is_some()
        || format_clause.is_some()
    {
        return Err(Denial::unsupported("this INSERT clause"));
    }
    let TableObject::TableName(name) = table else {
        return Err(Denial::unsupported("this INSERT target"));
    };
    let target = target_table(rewriter, name)?;
    let reference = match table_alias {
        Some(alias) => {
            names::check_quote(alias)?;
            fold(alias)
        }
        None => target.name.clone(),
    };
    *name = qualified(&target);
    let Some(source) = source else {
        return Err(Denial::unsupported("INSERT … DEFAULT VALUES"));
    };
    if columns.is_empty() {
        return Err(Denial::unsupported("INSERT without a column list"));
    }
    let mut written = Vec::with_capacity(columns.len());
    for column in columns.iter() {
        names::check_quote(column)?;
        let column = fold(column);
        writable(rewriter, &target, &column)?;
        written.push(column);
    }
    match on {
        None => {}
        Some(OnInsert::OnConflict(OnConflict {
            conflict_target: Some(ConflictTarget::Columns(columns)),
            action: OnConflictAction::DoNothing,
        })) => {
            for column in columns {
                names::check_quote(column)?;
            }
        }
        Some(OnInsert::OnConflict(OnConflict {
            action: OnConflictAction::DoNothing,
            ..
        })) => {}
        Some(_) => return Err(Denial::unsupported("ON CONFLICT … DO UPDATE")),
    }
    let facts = FilterFacts::of(rewriter, &target)?;
    rewriter.query(source)?;
    check_inserted_rows(rewriter, &target, &facts, &written, source)?;
    let reads =
        returning.is_some() || !matches!(*source.body, SetExpr::Values(_)) || rewriter.queries > 1;

    if let Some(returning) = returning.as_mut() {
        let item = target_item(rewriter, &target, &reference, table_alias.is_some());
        push_write_level(rewriter, &target, &reference, vec![item]);
        rewrite_returning(rewriter, returning, &[])?;
        rewriter.scopes.levels.pop();
        rewriter.target = None;
    }
    Ok((returning.is_some(), reads))
}

/// The stored table a write changes, as a FROM item of the write's own block: every
/// classified column, and perhaps others the policy does not know.
fn target_item(
    rewriter: &Rewriter<'_>,
    table: &QualifiedName,
    reference: &str,
    aliased: bool,
) -> FromItem {
    let names = rewriter.enforcer.classification()[table]
        .columns
        .keys()
        .cloned()
        .collect();
    FromItem {
        name: reference.to_owned(),
        schema: (!aliased).then(|| table.schema.clone()),
        columns: Columns::open(names),
        protected: Some(table.clone()),
        resolved: None,
        raw: true,
    }
}

/// Enters the write's own block. Its FROM/USING items see the target only as a
/// reference PostgreSQL refuses (it is LATERAL-only, not LATERAL-ok, there).
fn push_write_level(
    rewriter: &mut Rewriter<'_>,
    table: &QualifiedName,
    reference: &str,
    items: Vec<FromItem>,
) {
    let mut level = Level::visible(items);
    level.refused[0] = true;
    rewriter.scopes.levels.push(level);
    rewriter.target = Some(Target {
        table: table.clone(),
        name: reference.to_owned(),
        level: rewriter.scopes.levels.len() - 1,
        returning: false,
    });
}

/// The target of an UPDATE or DELETE: a policy table the account has rules for, named
/// schema-qualified in the output. Returns the table and the name the statement uses.
fn resolve_target(
    rewriter: &Rewriter<'_>,
    factor: &mut TableFactor,
) -> Result<(QualifiedName, String), Denial> {
    let TableFactor::Table {
        name,
        alias,
        args: None,
        with_hints,
        version: None,
        with_ordinality: false,
        partitions,
        json_path: None,
        sample: None,
        index_hints,
    } = factor
    else {
        return Err(Denial::unsupported("this write target"));
    };
    if !with_hints.is_empty() || !partitions.is_empty() || !index_hints.is_empty() {
        return Err(Denial::unsupported("this table modifier"));
    }
    let table = target_table(rewriter, name)?;
    let reference = match alias {
        None => table.name.clone(),
        Some(alias) => {
            if !alias.columns.is_empty() {
                return Err(Denial::unsupported("a column alias list on a write target"));
            }
            names::check_quote(&alias.name)?;
            fold(&alias.name)
        }
    };
    *name = qualified(&table);
    Ok((table, reference))
}

fn target_table(rewriter: &Rewriter<'_>, name: &ObjectName) -> Result<QualifiedName, Denial> {
    match rewriter.resolve(name)? {
        Resolved::Protected(table) => Ok(table),
        Resolved::Catalog(_) | Resolved::Cte(_) => Err(Denial::forbidden(format!(
            "writing to relation \"{}\"",
            names::display(&names::parts(name)?)
        ))),
    }
}

fn qualified(table: &QualifiedName) -> ObjectName {
    ObjectName::from(vec![quoted(&table.schema), quoted(&table.name)])
}
