//! Column rules (`"allow"`, `"deny"`, `"null"`, masks) and the positions errors point at.

use super::*;

impl Checker<'_> {
    /// Where byte `offset` of a string value is in the file, when the string is written
    /// without escapes (so source and value line up).
    pub(super) fn inside_string(&self, node: &Node, value: &str, offset: usize) -> Option<Pos> {
        let text = self.sources.text(node.pos.file);
        let raw = text.get(node.pos.offset..)?;
        let quote = raw.chars().next().filter(|q| *q == '"' || *q == '\'')?;
        let body = raw.get(1..1 + value.len())?;
        let closes = raw[1 + value.len()..].starts_with(quote);
        (body == value && closes).then_some(Pos {
            file: node.pos.file,
            offset: node.pos.offset + 1 + offset,
        })
    }

    pub(super) fn not_a_column(
        &mut self,
        column: &str,
        pos: Pos,
        table: &QualifiedName,
        known: &[&str],
    ) {
        let suggestion = closest(column, known)
            .map(|k| format!("did you mean {k:?}? "))
            .unwrap_or_default();
        self.error(
            pos,
            format!("{column:?} is not a column of {table}"),
            Some(format!(
                "{suggestion}columns classified for {table}: {}",
                list_or_none(known)
            )),
        );
    }

    /// `"allow"`, `"deny"` or `{ mask = "<kind>", ... }`.
    pub(super) fn rule(&mut self, node: &Node, what: &str) -> Option<ColumnRule> {
        const HINT: &str =
            "a rule is \"allow\", \"deny\", \"null\" or { mask = \"<kind>\", <parameters> }";
        match &node.value {
            NodeValue::Str(s) if s == "allow" => Some(ColumnRule::Allow),
            NodeValue::Str(s) if s == "deny" => Some(ColumnRule::Deny),
            // Read as NULL of its type: for applications that select the column by name.
            NodeValue::Str(s) if s == "null" => {
                MaskSpec::new(MaskKind::Null).ok().map(ColumnRule::Mask)
            }
            NodeValue::Str(s) => {
                self.error(
                    node.pos,
                    format!("unknown rule {s:?} for {what}"),
                    Some(HINT.into()),
                );
                None
            }
            NodeValue::Table(entries) => {
                if get(entries, "mask").is_none() {
                    self.error(
                        node.pos,
                        format!("the rule for {what} has no mask kind"),
                        Some(HINT.into()),
                    );
                    return None;
                }
                let toml::Value::Table(table) = node.value.to_toml() else {
                    return None;
                };
                match MaskSpec::from_toml(&table) {
                    Ok(spec) => {
                        if let MaskKind::Pseudonym { key } | MaskKind::PseudonymDigits { key } =
                            &spec.kind
                        {
                            if !self.pseudonym_keys.iter().any(|k| k == key) {
                                let hint = if self.pseudonym_keys.is_empty() {
                                    "no pseudonym key file is configured: set [masking] key_file in maskgate.toml".to_string()
                                } else {
                                    format!(
                                        "the key file holds: {}",
                                        self.pseudonym_keys.join(", ")
                                    )
                                };
                                self.error(
                                    node.pos,
                                    format!("the mask for {what} uses pseudonym key {key:?}, which the key file does not hold"),
                                    Some(hint),
                                );
                                return None;
                            }
                        }
                        Some(ColumnRule::Mask(spec))
                    }
                    Err(error) => {
                        self.error(
                            node.pos,
                            format!("invalid mask for {what}: {error}"),
                            Some("docs/policy.md lists the mask kinds and their parameters".into()),
                        );
                        None
                    }
                }
            }
            other => {
                self.error(
                    node.pos,
                    format!(
                        "the rule for {what} must be a string or a table, found {}",
                        other.type_name()
                    ),
                    Some(HINT.into()),
                );
                None
            }
        }
    }

    pub(super) fn mask_fits(
        &mut self,
        spec: &MaskSpec,
        node: &Node,
        column: &str,
        class: &ColumnClass,
    ) -> bool {
        match spec.check_type(&class.pg_type) {
            Ok(()) => true,
            Err(error) => {
                self.error(
                    node.pos,
                    format!(
                        "mask {spec} does not fit column {column} of type {}: {error}",
                        class.pg_type
                    ),
                    Some("choose a mask kind made for this type, or deny the column".into()),
                );
                false
            }
        }
    }
}
