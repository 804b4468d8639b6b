//! `row_filter_path`: the foreign keys a row filter follows to a parent table.
//!
//! ```toml
//! row_filter_path = "participant_id -> public.participant(id)"
//! row_filter_path = ["bank_account_id -> public.bank_account(id)",
//!                    "participant_id -> public.participant(id)"]
//! ```
//!
//! Each step names a column of the table before it, the referenced table and its
//! referenced column. Names are read as in SQL: unquoted ones fold to lower case,
//! double quotes keep case, spaces and diacritics (`"số thẻ"`).

use maskgate_mask::{parse_pg_type, MAX_IDENTIFIER_BYTES};

use super::*;
use crate::scope::MAX_HOPS;

const PATH_HINT: &str = "write each step as \"<column> -> <schema>.<table>(<column>)\", \
    e.g. row_filter_path = \"participant_id -> public.participant(id)\"";

impl Checker<'_> {
    /// The steps of a path from `table`, each checked against the classification.
    pub(super) fn filter_path(
        &mut self,
        node: &Node,
        table: &QualifiedName,
        tables: &BTreeMap<QualifiedName, TableClass>,
    ) -> Option<Vec<PathHop>> {
        let steps: Vec<(&str, Pos)> = match &node.value {
            NodeValue::Str(s) => vec![(s.as_str(), node.pos)],
            NodeValue::Array(_) => self.strings(node, "row_filter_path")?,
            other => {
                self.error(
                    node.pos,
                    format!(
                        "row_filter_path must be a string or an array of strings, found {}",
                        other.type_name()
                    ),
                    Some(PATH_HINT.into()),
                );
                return None;
            }
        };
        if steps.is_empty() || steps.len() > MAX_HOPS {
            self.error(
                node.pos,
                format!(
                    "row_filter_path has {} steps; a path has 1 to {MAX_HOPS}",
                    steps.len()
                ),
                Some(PATH_HINT.into()),
            );
            return None;
        }
        let mut hops = Vec::with_capacity(steps.len());
        let mut from = table.clone();
        for (text, pos) in steps {
            let hop = match parse_hop(text) {
                Ok(hop) => hop,
                Err(reason) => {
                    self.error(
                        pos,
                        format!("invalid row_filter_path step {text:?}: {reason}"),
                        Some(PATH_HINT.into()),
                    );
                    return None;
                }
            };
            self.check_hop(&hop, &from, pos, tables)?;
            from = hop.table.clone();
            hops.push(hop);
        }
        Some(hops)
    }

    /// The referencing column is a column of `from`, the referenced table and column
    /// are classified, and the two columns can be compared.
    fn check_hop(
        &mut self,
        hop: &PathHop,
        from: &QualifiedName,
        pos: Pos,
        tables: &BTreeMap<QualifiedName, TableClass>,
    ) -> Option<()> {
        let from_class = &tables[from];
        let Some(column) = from_class.columns.get(&hop.column) else {
            self.not_a_column(&hop.column, pos, from, &columns_of(from_class));
            return None;
        };
        let Some(parent) = tables.get(&hop.table) else {
            self.error(
                pos,
                format!(
                    "row_filter_path refers to table {}, which is not classified",
                    hop.table
                ),
                Some(format!("classify it under [tables.\"{}\"]", hop.table)),
            );
            return None;
        };
        let Some(key) = parent.columns.get(&hop.key) else {
            self.not_a_column(&hop.key, pos, &hop.table, &columns_of(parent));
            return None;
        };
        let family = |t: &str| parse_pg_type(t).map(|t| t.family);
        if family(&column.pg_type) != family(&key.pg_type) {
            self.error(
                pos,
                format!(
                    "row_filter_path compares {from}.{} ({}) with {}.{} ({})",
                    hop.column, column.pg_type, hop.table, hop.key, key.pg_type
                ),
                Some(
                    "a step follows a foreign key: both columns have the same kind of type".into(),
                ),
            );
            return None;
        }
        Some(())
    }
}

fn columns_of(table: &TableClass) -> Vec<&str> {
    table.columns.keys().map(String::as_str).collect()
}

/// `<column> -> <schema>.<table>(<column>)`.
pub(crate) fn parse_hop(text: &str) -> Result<PathHop, String> {
    let mut reader = Reader {
        chars: text.trim().chars().peekable(),
    };
    let column = reader.name()?;
    reader.spaces();
    if !(reader.eat('-') && reader.eat('>')) {
        return Err("expected -> after the column".into());
    }
    reader.spaces();
    let schema = reader.name()?;
    if !reader.eat('.') {
        return Err("expected a schema-qualified table, e.g. public.participant".into());
    }
    let name = reader.name()?;
    reader.spaces();
    if !reader.eat('(') {
        return Err("expected the referenced column in parentheses after the table".into());
    }
    reader.spaces();
    let key = reader.name()?;
    reader.spaces();
    if !reader.eat(')') || reader.chars.next().is_some() {
        return Err("expected ) at the end".into());
    }
    Ok(PathHop {
        column,
        table: QualifiedName::new(schema, name),
        key,
    })
}

struct Reader<'t> {
    chars: std::iter::Peekable<std::str::Chars<'t>>,
}

impl Reader<'_> {
    fn eat(&mut self, c: char) -> bool {
        self.chars.next_if_eq(&c).is_some()
    }

    fn spaces(&mut self) {
        while self.chars.next_if(|c| c.is_whitespace()).is_some() {}
    }

    /// A name as PostgreSQL reads it: double-quoted (kept) or bare (folded).
    fn name(&mut self) -> Result<String, String> {
        let mut name = String::new();
        if self.eat('"') {
            loop {
                match self.chars.next() {
                    Some('"') if self.eat('"') => name.push('"'),
                    Some('"') => break,
                    Some('\0') => return Err("names must not contain NUL".into()),
                    Some(c) => name.push(c),
                    None => return Err("unterminated quoted name".into()),
                }
            }
        } else {
            while let Some(c) = self
                .chars
                .next_if(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
            {
                name.extend(c.to_lowercase());
            }
        }
        if name.is_empty() {
            return Err("expected a name".into());
        }
        if name.len() > MAX_IDENTIFIER_BYTES {
            return Err("a name is longer than 63 bytes, which PostgreSQL truncates".into());
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_like_sql_names() {
        let hop = parse_hop("participant_id -> public.participant(id)").unwrap();
        assert_eq!(hop.column, "participant_id");
        assert_eq!(hop.table, QualifiedName::new("public", "participant"));
        assert_eq!(hop.key, "id");
        let hop = parse_hop(" Nguoi_ID->public.\"TheBHYT\" ( \"số thẻ\" ) ").unwrap();
        assert_eq!(hop.column, "nguoi_id");
        assert_eq!(hop.table, QualifiedName::new("public", "TheBHYT"));
        assert_eq!(hop.key, "số thẻ");
        for bad in [
            "participant_id public.participant(id)",
            "participant_id -> participant(id)",
            "participant_id -> public.participant",
            "participant_id -> public.participant(id) x",
            "-> public.participant(id)",
            "\"a -> public.p(id)",
            "a -> public.p()",
        ] {
            assert!(parse_hop(bad).is_err(), "{bad}");
        }
    }
}
