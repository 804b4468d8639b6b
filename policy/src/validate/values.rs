//! Reading values out of the policy trees: tables, strings, numbers, dates and names,
//! each wrong one reported at its position; and the suggestion for a misspelled key.

use super::*;

impl Checker<'_> {
    pub(super) fn duplicate(&mut self, what: &str, pos: Pos, first: Pos) {
        let first = self.sources.location(first);
        self.error(
            pos,
            format!("{what} is defined twice"),
            Some(format!("first defined at {first}; keep one definition")),
        );
    }

    pub(super) fn unknown_keys(&mut self, entries: &[Entry], known: &[&str], what: &str) {
        for entry in entries {
            if !known.contains(&entry.key.as_str()) {
                let suggestion = closest(&entry.key, known)
                    .map(|k| format!("did you mean {k:?}? "))
                    .unwrap_or_default();
                self.error(
                    entry.key_pos,
                    format!("unknown key {:?} in {what}", entry.key),
                    Some(format!("{suggestion}known keys: {}", known.join(", "))),
                );
            }
        }
    }

    pub(super) fn table<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Entry]> {
        match &node.value {
            NodeValue::Table(entries) => Some(entries),
            other => {
                self.error(
                    node.pos,
                    format!("{what} must be a table, found {}", other.type_name()),
                    None,
                );
                None
            }
        }
    }

    pub(super) fn string<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n str> {
        match &node.value {
            NodeValue::Str(s) => Some(s),
            other => {
                self.error(
                    node.pos,
                    format!("{what} must be a string, found {}", other.type_name()),
                    None,
                );
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match &node.value {
            NodeValue::Bool(b) => Some(*b),
            other => {
                self.error(
                    node.pos,
                    format!("{what} must be true or false, found {}", other.type_name()),
                    None,
                );
                None
            }
        }
    }

    pub(super) fn positive(&mut self, node: &Node, what: &str) -> Option<u64> {
        match &node.value {
            NodeValue::Int(i) if *i > 0 => Some(*i as u64),
            NodeValue::Int(_) => {
                self.error(
                    node.pos,
                    format!("{what} must be a positive integer"),
                    Some(format!("remove {what} for no limit")),
                );
                None
            }
            other => {
                self.error(
                    node.pos,
                    format!(
                        "{what} must be a positive integer, found {}",
                        other.type_name()
                    ),
                    None,
                );
                None
            }
        }
    }

    /// An array of strings with the position of each element.
    pub(super) fn strings<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
    ) -> Option<Vec<(&'n str, Pos)>> {
        let NodeValue::Array(items) = &node.value else {
            self.error(
                node.pos,
                format!(
                    "{what} must be an array of strings, found {}",
                    node.value.type_name()
                ),
                Some(format!("write {what} = [\"...\", \"...\"]")),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match &item.value {
                NodeValue::Str(s) => out.push((s.as_str(), item.pos)),
                other => {
                    ok = false;
                    self.error(
                        item.pos,
                        format!(
                            "{what} entries must be strings, found {}",
                            other.type_name()
                        ),
                        None,
                    );
                }
            }
        }
        ok.then_some(out)
    }

    pub(super) fn local_date(&mut self, node: &Node, what: &str) -> Option<Date> {
        let hint = Some(format!("write a bare date, e.g. {what} = 2026-01-31"));
        let NodeValue::Datetime(dt) = &node.value else {
            self.error(
                node.pos,
                format!("{what} must be a date, found {}", node.value.type_name()),
                hint,
            );
            return None;
        };
        let (Some(date), None, None) = (dt.date, dt.time, dt.offset) else {
            self.error(
                node.pos,
                format!("{what} must be a date without time or offset"),
                hint,
            );
            return None;
        };
        let month = Month::try_from(date.month).ok()?;
        match Date::from_calendar_date(i32::from(date.year), month, date.day) {
            Ok(date) => Some(date),
            Err(_) => {
                self.error(node.pos, format!("{what} is not a valid date"), None);
                None
            }
        }
    }

    pub(super) fn qualified_name(&mut self, entry: &Entry) -> Option<QualifiedName> {
        match parse_qualified(&entry.key) {
            Ok(name) => Some(name),
            Err(reason) => {
                self.error(
                    entry.key_pos,
                    format!("invalid table name {:?}: {reason}", entry.key),
                    Some("write it schema-qualified, e.g. \"public.participant\"".into()),
                );
                None
            }
        }
    }
}

pub(super) fn get<'e>(entries: &'e [Entry], key: &str) -> Option<&'e Entry> {
    entries.iter().find(|e| e.key == key)
}

pub(super) fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

/// `schema.name`, either part in double quotes to keep case or dots.
pub(crate) fn parse_qualified(text: &str) -> Result<QualifiedName, &'static str> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err("unterminated quoted identifier"),
                }
            }
            if part.is_empty() {
                return Err("empty quoted identifier");
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| *c != '.') {
                if !(c.is_alphanumeric() || c == '_' || c == '$') {
                    return Err("unquoted names may only hold letters, digits, _ and $");
                }
                part.push(c.to_lowercase().next().unwrap_or(c));
                chars.next();
            }
            if part.is_empty() {
                return Err("empty name part");
            }
        }
        match maskgate_mask::quote_ident(&part) {
            Ok(_) => {}
            Err(maskgate_mask::QuoteError::IdentifierTooLong { .. }) => {
                return Err("a name part is longer than 63 bytes, which PostgreSQL truncates")
            }
            Err(_) => return Err("names must not contain NUL"),
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(_) => return Err("expected a dot after a quoted identifier"),
        }
    }
    match <[String; 2]>::try_from(parts) {
        Ok([schema, name]) => Ok(QualifiedName { schema, name }),
        Err(_) => Err("expected schema.name"),
    }
}

/// The known word closest to a misspelling, if one is close enough to be a likely typo.
pub(super) fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.chars().count() / 4))
        .min()
        .map(|(_, k)| k)
}

pub(super) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        assert_eq!(
            parse_qualified("public.participant"),
            Ok(QualifiedName::new("public", "participant"))
        );
        assert_eq!(
            parse_qualified("Public.Participant"),
            Ok(QualifiedName::new("public", "participant"))
        );
        assert_eq!(
            parse_qualified("public.\"Odd.Name\""),
            Ok(QualifiedName::new("public", "Odd.Name"))
        );
        assert!(parse_qualified("participant").is_err());
        assert!(parse_qualified("a.b.c").is_err());
        assert!(parse_qualified("public.").is_err());
        assert!(parse_qualified("public.part icipant").is_err());
        assert!(parse_qualified("public.\"a\0b\"").is_err());
        assert!(parse_qualified(&format!("public.{}", "x".repeat(63))).is_ok());
        assert!(parse_qualified(&format!("public.{}", "x".repeat(64))).is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("verifer", ACCOUNT_KEYS), Some("verifier"));
        assert_eq!(closest("zzz", ACCOUNT_KEYS), None);
    }
}
