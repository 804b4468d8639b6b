//! What an allowed statement touches, for its audit record: the policy tables it
//! names and the one it writes. The masks, filters and pins that apply to each table
//! follow from the account's rules, so the record can name them without walking SQL.

use std::ops::ControlFlow;

use maskgate_policy::QualifiedName;
use sqlparser::ast::{FromTable, ObjectName, Statement, TableFactor, TableObject};

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
