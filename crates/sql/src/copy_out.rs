//! Masked export: `COPY (SELECT …) TO STDOUT` and `COPY table [(columns)] TO STDOUT`
//! for accounts whose roles grant `export`.
//!
//! The query is rewritten exactly like a SELECT (masking subqueries, row filters, the
//! row cap as LIMIT cap + 1); a table becomes `SELECT <columns or *> FROM table`. The
//! proxy counts the COPY data rows on the wire against the same caps and quotas;
//! [`CopyOut`] tells it which messages are not rows.

use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, Query,
    SelectItem, SetExpr, Statement, TableFactor, TableWithJoins,
};

use crate::budget::Clock;
use crate::denial::Denial;
use crate::enforce::Enforcer;
use crate::names;
use crate::rewrite;
use maskgate_policy::StatementKind;

/// How an allowed `COPY … TO STDOUT` sends its rows: one CopyData message per row,
/// except a CSV header line (the first message) and the binary format's trailer
/// (a message holding only the 16-bit -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOut {
    pub header: bool,
    pub binary: bool,
}

/// Checks and rewrites a `COPY … TO` statement; returns how its rows arrive. Adds
/// the lookup keys it pins to `pins`.
pub(crate) fn rewrite_copy_out(
    enforcer: &Enforcer,
    statement: &mut Statement,
    clock: &Clock,
    pins: &mut Vec<crate::facts::RawPin>,
) -> Result<CopyOut, Denial> {
    let Statement::Copy {
        source,
        to: true,
        target,
        options,
        legacy_options,
        values,
    } = statement
    else {
        return Err(Denial::forbidden("COPY"));
    };
    if !matches!(target, CopyTarget::Stdout) || !values.is_empty() {
        return Err(Denial::forbidden("COPY … TO a file or program"));
    }
    enforcer.require(StatementKind::Export)?;
    enforcer.require(StatementKind::Read)?;
    let copy_out = check_options(options, legacy_options)?;
    let mut query = match std::mem::replace(
        source,
        CopySource::Table {
            table_name: sqlparser::ast::ObjectName(Vec::new()),
            columns: Vec::new(),
        },
    ) {
        CopySource::Query(query) => query,
        CopySource::Table {
            table_name,
            columns,
        } => table_query(table_name, columns)?,
    };
    pins.extend(rewrite::rewrite_read(enforcer, &mut query, clock)?.1);
    *source = CopySource::Query(query);
    Ok(copy_out)
}

/// `SELECT <columns or *> FROM <table>`, as PostgreSQL reads `COPY table TO`.
fn table_query(
    table_name: sqlparser::ast::ObjectName,
    columns: Vec<Ident>,
) -> Result<Box<Query>, Denial> {
    let mut query = sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql("SELECT * FROM t")
        .and_then(|mut parser| parser.parse_query())
        .map_err(|_| Denial::unsupported("this COPY"))?;
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Err(Denial::unsupported("this COPY"));
    };
    if !columns.is_empty() {
        for column in &columns {
            names::check_quote(column)?;
        }
        select.projection = columns
            .into_iter()
            .map(|c| SelectItem::UnnamedExpr(sqlparser::ast::Expr::Identifier(c)))
            .collect();
    }
    select.from = vec![TableWithJoins {
        relation: TableFactor::Table {
            name: table_name,
            alias: None,
            args: None,
            with_hints: Vec::new(),
            version: None,
            with_ordinality: false,
            partitions: Vec::new(),
            json_path: None,
            sample: None,
            index_hints: Vec::new(),
        },
        joins: Vec::new(),
    }];
    Ok(query)
}

/// The output options of COPY TO that only shape the text: FORMAT, HEADER,
/// DELIMITER, NULL, QUOTE, ESCAPE, FORCE_QUOTE (and their pre-9.0 spellings).
fn check_options(
    options: &mut [CopyOption],
    legacy: &[CopyLegacyOption],
) -> Result<CopyOut, Denial> {
    let refused = || {
        Denial::unsupported(
            "this COPY option (COPY … TO STDOUT accepts FORMAT, HEADER, DELIMITER, NULL, \
             QUOTE, ESCAPE and FORCE_QUOTE)",
        )
    };
    let mut out = CopyOut {
        header: false,
        binary: false,
    };
    for option in options.iter_mut() {
        match option {
            CopyOption::Format(format) => {
                // A name, or a string (asyncpg writes `FORMAT 'csv'`).
                let name = match format.quote_style {
                    Some('\'') => format.value.to_ascii_lowercase(),
                    _ => {
                        names::check_quote(format)?;
                        names::fold(format)
                    }
                };
                match name.as_str() {
                    "binary" => out.binary = true,
                    "text" | "csv" => out.binary = false,
                    _ => return Err(refused()),
                }
                // Sent as the plain word it means: a quoted format would be a
                // string constant the printer did not make.
                *format = Ident::new(name);
            }
            CopyOption::Header(header) => out.header = *header,
            CopyOption::Delimiter(_)
            | CopyOption::Null(_)
            | CopyOption::Quote(_)
            | CopyOption::Escape(_)
            | CopyOption::ForceQuote(_) => {}
            _ => return Err(refused()),
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Binary => out.binary = true,
            CopyLegacyOption::Header => out.header = true,
            CopyLegacyOption::Delimiter(_) | CopyLegacyOption::Null(_) => {}
            CopyLegacyOption::Csv(csv) => {
                for option in csv {
                    match option {
                        CopyLegacyCsvOption::Header => out.header = true,
                        CopyLegacyCsvOption::Quote(_)
                        | CopyLegacyCsvOption::Escape(_)
                        | CopyLegacyCsvOption::ForceQuote(_) => {}
                        CopyLegacyCsvOption::ForceNotNull(_) => return Err(refused()),
                    }
                }
            }
            _ => return Err(refused()),
        }
    }
    // A header line exists in CSV only; in binary a HEADER option is an error.
    out.header &= !out.binary;
    Ok(out)
}
