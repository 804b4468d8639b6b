//! `COPY … FROM STDIN`, checked like INSERT.

use super::*;

/// `COPY table (columns) FROM STDIN` for an account that may insert: the same checks
/// as INSERT (only columns it sees as stored, and every column its row filter compares
/// with a literal given), made on the copied rows by the proxy as they stream.
/// Returns the statement as it goes upstream and what each row must look like.
pub(crate) fn rewrite_copy_in(
    enforcer: &Enforcer,
    name: &ObjectName,
    columns: &[sqlparser::ast::Ident],
    clock: &Clock,
) -> Result<(String, CopyIn), Denial> {
    enforcer.require(StatementKind::Insert)?;
    let rewriter = Rewriter::new(enforcer, name, clock)?;
    let table = target_table(&rewriter, name)?;
    let mut listed = Vec::with_capacity(columns.len());
    for column in columns {
        names::check_quote(column)?;
        let column = fold(column);
        writable(&rewriter, &table, &column)?;
        listed.push(column);
    }
    let facts = FilterFacts::of(&rewriter, &table)?;
    if let Some(path) = facts.paths.first() {
        return Err(Denial::privilege(format!(
            "the row filter of table \"{table}\" follows column \"{}\" to another table, which \
             maskgate cannot check on copied rows: use INSERT",
            path.column
        )));
    }
    let mut required = Vec::new();
    if facts.filter.is_some() {
        let Some(equalities) = &facts.equalities else {
            return Err(Denial::privilege(format!(
                "the row filter of table \"{table}\" cannot be checked on copied rows, so this \
                 account may not copy into it"
            )));
        };
        for (column, value) in equalities {
            let Some(position) = listed.iter().position(|c| c == column) else {
                return Err(Denial::privilege(format!(
                    "rows copied into table \"{table}\" must give column \"{column}\", which this \
                     account's row filter reads"
                )));
            };
            let text = match value {
                Value::SingleQuotedString(text) => copy_text(text),
                Value::Number(number, _) => number.to_string(),
                _ => {
                    return Err(Denial::privilege(format!(
                        "the row filter of table \"{table}\" cannot be checked on copied rows"
                    )))
                }
            };
            required.push((position, text));
        }
    }
    let column_list = listed
        .iter()
        .map(|c| quoted(c).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("COPY {} ({column_list}) FROM STDIN", qualified(&table));
    Ok((
        sql,
        CopyIn {
            columns: listed.len(),
            required,
        },
    ))
}
