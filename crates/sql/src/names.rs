//! Identifiers as PostgreSQL reads them.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use crate::denial::Denial;

/// Unquoted identifiers fold to lower case (ASCII only, as PostgreSQL does in UTF-8
/// databases); quoted ones are taken exactly.
pub(crate) fn fold(ident: &Ident) -> String {
    let mut name = match ident.quote_style {
        None => ident.value.to_ascii_lowercase(),
        Some(_) => ident.value.clone(),
    };
    // PostgreSQL cuts every identifier to NAMEDATALEN - 1 bytes, at a character
    // boundary: two names that differ only after that are one name to it.
    if name.len() > MAX_IDENTIFIER_BYTES {
        let mut end = MAX_IDENTIFIER_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// PostgreSQL's NAMEDATALEN - 1.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The folded parts of a dotted name; function-call parts (not PostgreSQL) are refused.
pub(crate) fn parts(name: &ObjectName) -> Result<Vec<String>, Denial> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => check_quote(ident).map(|()| fold(ident)),
            ObjectNamePart::Function(_) => Err(Denial::unsupported("a function call in a name")),
        })
        .collect()
}

/// Only `"` quotes identifiers in PostgreSQL; anything else came from a dialect quirk.
pub(crate) fn check_quote(ident: &Ident) -> Result<(), Denial> {
    match ident.quote_style {
        None | Some('"') => Ok(()),
        Some(_) => Err(Denial::unsupported("this identifier quoting")),
    }
}

/// Always quoted, so the name means the same whatever its case or spelling.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A quoted identifier node for the rewritten tree.
pub(crate) fn quoted(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

/// A dotted display of folded parts for messages.
pub(crate) fn display(parts: &[String]) -> String {
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_unquoted_and_keeps_quoted() {
        assert_eq!(fold(&Ident::new("PartiCipant")), "participant");
        assert_eq!(fold(&Ident::with_quote('"', "PARTICIPANT")), "PARTICIPANT");
        assert_eq!(fold(&Ident::new("Đức")), "Đức");
    }

    #[test]
    fn quotes_embedded_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}

#[cfg(test)]
mod fold_tests {
    use super::*;

    #[test]
    fn names_are_cut_to_63_bytes_at_a_character_boundary() {
        let long = format!("{}tail", "c".repeat(63));
        assert_eq!(fold(&Ident::new(&long)), "c".repeat(63));
        let quoted = Ident::with_quote('"', format!("{}é", "a".repeat(62)));
        assert_eq!(fold(&quoted), "a".repeat(62), "é would end past byte 63");
        assert_eq!(fold(&Ident::new("MiXed")), "mixed");
    }
}
