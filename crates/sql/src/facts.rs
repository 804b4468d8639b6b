//! What an allowed statement touches, for its audit record: the policy tables it
//! names and the one it writes. The masks, filters and pins that apply to each table
//! follow from the account's rules, so the record can name them without walking SQL.

use std::ops::ControlFlow;

use maskgate_policy::QualifiedName;
use sqlparser::ast::{Expr, FromTable, ObjectName, Statement, TableFactor, TableObject};
use sqlparser::tokenizer::{Location, Span};

use crate::enforce::Enforcer;

/// The policy tables of one statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TablesTouched {
    /// Every policy table the statement names, sorted, once each. A CTE that shadows
    /// a table's name counts as the table: the record may over-report, never under.
    pub read: Vec<QualifiedName>,
    /// The target of an INSERT, UPDATE, DELETE or COPY … FROM.
    pub written: Option<QualifiedName>,
}

/// The policy tables `statement` names, as the account's search_path resolves them.
pub(crate) fn tables_touched(enforcer: &Enforcer, statement: &Statement) -> TablesTouched {
    let mut read = Vec::new();
    let _ = sqlparser::ast::visit_relations(statement, |name| {
        if let Some(table) = protected(enforcer, name) {
            read.push(table);
        }
        ControlFlow::<()>::Continue(())
    });
    // `COPY table TO`: the table is not a relation the visitor reports.
    if let Statement::Copy {
        source: sqlparser::ast::CopySource::Table { table_name, .. },
        ..
    } = statement
    {
        read.extend(protected(enforcer, table_name));
    }
    read.sort_unstable();
    read.dedup();
    let target = match statement {
        Statement::Insert(insert) => match &insert.table {
            TableObject::TableName(name) => Some(name),
            _ => None,
        },
        Statement::Update { table, .. } => table_name(&table.relation),
        Statement::Delete(delete) => match &delete.from {
            FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => {
                from.first().and_then(|t| table_name(&t.relation))
            }
        },
        _ => None,
    };
    let written = target.and_then(|name| protected(enforcer, name));
    if let Some(written) = &written {
        // Written but not read: the target of a plain INSERT.
        read.retain(|t| t != written || !matches!(statement, Statement::Insert(_)));
    }
    TablesTouched { read, written }
}

fn table_name(factor: &TableFactor) -> Option<&ObjectName> {
    match factor {
        TableFactor::Table { name, .. } => Some(name),
        _ => None,
    }
}

pub(crate) fn protected(enforcer: &Enforcer, name: &ObjectName) -> Option<QualifiedName> {
    crate::rewrite::protected_table(enforcer, name)
}

/// The key a statement pinned on a lookup-only table, so that the audit trail can
/// fingerprint that one value (and only it) for detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPin {
    pub table: QualifiedName,
    pub column: String,
    /// The key column's type as the classification declares it (`char(12)`,
    /// `bigint`): how the value compares, hence how it is canonicalised.
    pub column_type: String,
    pub value: PinnedValue,
}

/// Which value of the client's message a pin compares the key with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinnedValue {
    /// The constant at this index of the client's text as [`crate::normalize`]
    /// lists them; `None` when it is not one the trail keeps.
    Constant(Option<usize>),
    /// The bind parameter `$n` (from 1).
    Parameter(usize),
}

/// A pin as the rewrite finds it: a constant by its place in the text.
#[derive(Debug, Clone)]
pub(crate) struct RawPin {
    pub table: QualifiedName,
    pub column: String,
    pub value: RawValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawValue {
    Constant(Span),
    Parameter(usize),
}

/// A statement prepared or run by SQL, for the keys the trail fingerprints: an
/// EXECUTE's text does not show the lookup its prepared statement makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlPrepared {
    /// `PREPARE name AS …`: the keys its body pins, by parameter or constant.
    Prepare { name: String, pins: Vec<KeyPin> },
    /// `EXECUTE name(args)`: per argument, the index of the constant it is among
    /// the text's constants (`None` when it is not a plain constant).
    Execute {
        name: String,
        arguments: Vec<Option<usize>>,
    },
}

/// The index among the constants of `sql` of each argument of an EXECUTE that is a
/// plain constant (possibly cast).
pub(crate) fn argument_constants(sql: &str, arguments: &[Expr]) -> Vec<Option<usize>> {
    let spans = crate::normalize::literal_spans(sql);
    arguments
        .iter()
        .map(|argument| {
            let mut expr = argument;
            while let Expr::Cast { expr: inner, .. } | Expr::Nested(inner) = expr {
                expr = inner;
            }
            let Expr::Value(value) = expr else {
                return None;
            };
            let range = (offset(sql, value.span.start), offset(sql, value.span.end));
            match range {
                (Some(start), Some(end)) => spans.iter().position(|s| *s == (start, end)),
                _ => None,
            }
        })
        .collect()
}

/// Names the constants of `pins` by their index among the constants of `sql`:
/// the constant must start and end exactly where the parser's token did.
pub(crate) fn resolve_pins(enforcer: &Enforcer, sql: &str, pins: Vec<RawPin>) -> Vec<KeyPin> {
    let spans = if pins
        .iter()
        .any(|p| matches!(p.value, RawValue::Constant(_)))
    {
        crate::normalize::literal_spans(sql)
    } else {
        Vec::new()
    };
    pins.into_iter()
        .map(|pin| {
            let value = match pin.value {
                RawValue::Parameter(n) => PinnedValue::Parameter(n),
                RawValue::Constant(span) => {
                    let range = (offset(sql, span.start), offset(sql, span.end));
                    PinnedValue::Constant(match range {
                        (Some(start), Some(end)) => spans.iter().position(|s| *s == (start, end)),
                        _ => None,
                    })
                }
            };
            let column_type = enforcer
                .classification()
                .get(&pin.table)
                .and_then(|t| t.columns.get(&pin.column))
                .map(|c| c.pg_type.clone())
                .unwrap_or_default();
            KeyPin {
                table: pin.table,
                column: pin.column,
                column_type,
                value,
            }
        })
        .collect()
}

/// The byte offset of a tokenizer location (lines and columns from 1, columns in
/// characters, a line ending at `\n`).
fn offset(sql: &str, at: Location) -> Option<usize> {
    let (mut line, mut column) = (1u64, 1u64);
    for (i, c) in sql.char_indices() {
        if (line, column) == (at.line, at.column) {
            return Some(i);
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    ((line, column) == (at.line, at.column)).then_some(sql.len())
}
