//! maskgate's own printing of the text that goes upstream.
//!
//! sqlparser's `Display` is a pretty-printer, not a serializer: it copies prefixed
//! literals (`N'…'`, `B'…'`, `X'…'`) through verbatim after the tokenizer has already
//! collapsed their doubled quotes, it leaves a quote that "looks escaped" alone, and it
//! prints a prefix operator right against its operand (`- -1` becomes the comment
//! `--1`). So before the tree is printed, every leaf that becomes text is replaced by
//! maskgate's own encoding of it, and every operand of an operator is put in
//! parentheses:
//!
//! - Literals are encoded here, in one canonical form each, and spliced in as text
//!   that `Display` prints as it is. A literal kind not listed is refused.
//! - Operands of operators, casts, `IS`, `IN`, `BETWEEN`, `LIKE`, `COLLATE` and the
//!   like are parenthesized unless they are a name, a literal or already bracketed, so
//!   no two operator tokens can touch and no precedence rule of sqlparser's that
//!   differs from PostgreSQL's can regroup the tree.
//!
//! Identifiers are not re-encoded here (sqlparser's visitor does not reach every
//! name); instead the analyzer refuses quoted names whose printing could be read two
//! ways (a `"` or `\` inside), and [`crate::verify`] checks what PostgreSQL reads.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, CopyLegacyCsvOption, CopyLegacyOption, CopyOption, DateTimeField, Expr,
    ObjectName, Statement, TableFactor, Value, VisitMut, VisitorMut,
};

use crate::denial::Denial;
use crate::names;

/// A statement printed for PostgreSQL, with what the printer put into it.
#[derive(Debug, Default)]
pub(crate) struct Printed {
    pub sql: String,
    pub facts: Facts,
}

/// What the printed statement is meant to contain, for [`crate::verify`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Every string constant, decoded, in printing order.
    pub strings: Vec<String>,
    /// Folded names of every relation or table function the tree names.
    pub relations: Vec<Vec<String>>,
    /// Folded names of every function call.
    pub functions: Vec<Vec<String>>,
}

/// Encodes the tree's leaves and parenthesizes its operands in place, then prints it.
pub(crate) fn print(statement: &mut Statement) -> Result<Printed, Denial> {
    let mut printer = Canonical::default();
    if let Statement::NOTIFY {
        payload: Some(payload),
        ..
    } = statement
    {
        // sqlparser keeps a NOTIFY payload as a string and prints it between quotes
        // as it is: only a payload that reads the same that way is sent.
        if payload
            .chars()
            .any(|c| c == '\'' || c == '\\' || c.is_control())
        {
            return Err(Denial::unsupported(
                "a NOTIFY payload with quotes, backslashes or control characters",
            ));
        }
        printer.facts.strings.push(payload.clone());
    }
    if let Statement::Set(sqlparser::ast::Set::SetNames { charset_name, .. }) = statement {
        // Printed as written; the analysis let only UTF-8's names through.
        if charset_name.quote_style == Some('\'') {
            printer.facts.strings.push(charset_name.value.clone());
        }
    }
    if let ControlFlow::Break(denial) = statement.visit(&mut printer) {
        return Err(denial);
    }
    if let Statement::Copy {
        options,
        legacy_options,
        ..
    } = statement
    {
        // Printed after the query's own constants.
        copy_option_strings(options, legacy_options, &mut printer.facts.strings)?;
    }
    Ok(Printed {
        sql: statement.to_string(),
        facts: printer.facts,
    })
}

/// The string options of COPY, which sqlparser prints between quotes as they are
/// (a character option without doubling its quote). Only values that read the
/// same that way under either `standard_conforming_strings` are sent: no quote in
/// a character, no backslash anywhere.
fn copy_option_strings(
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
    strings: &mut Vec<String>,
) -> Result<(), Denial> {
    let refused = || Denial::unsupported("a COPY option holding a quote or a backslash");
    let char_option = |c: char| match c {
        '\'' | '\\' => Err(refused()),
        c => Ok(c.to_string()),
    };
    let string_option = |s: &String| match s.contains('\\') {
        true => Err(refused()),
        false => Ok(s.clone()),
    };
    for option in options {
        strings.push(match option {
            CopyOption::Delimiter(c) | CopyOption::Quote(c) | CopyOption::Escape(c) => {
                char_option(*c)?
            }
            CopyOption::Null(s) | CopyOption::Encoding(s) => string_option(s)?,
            _ => continue,
        });
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Delimiter(c) => strings.push(char_option(*c)?),
            CopyLegacyOption::Null(s) => strings.push(string_option(s)?),
            CopyLegacyOption::Csv(csv) => {
                for option in csv {
                    if let CopyLegacyCsvOption::Quote(c) | CopyLegacyCsvOption::Escape(c) = option {
                        strings.push(char_option(*c)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[derive(Default)]
struct Canonical {
    facts: Facts,
}

impl VisitorMut for Canonical {
    type Break = Denial;

    fn pre_visit_value(&mut self, value: &mut Value) -> ControlFlow<Denial> {
        match encode(value) {
            Ok(Encoded { text, string }) => {
                self.facts.strings.extend(string);
                *value = Value::Placeholder(text);
                ControlFlow::Continue(())
            }
            Err(denial) => ControlFlow::Break(denial),
        }
    }

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<Denial> {
        match names::parts(relation) {
            Ok(parts) => {
                self.facts.relations.push(parts);
                ControlFlow::Continue(())
            }
            Err(denial) => ControlFlow::Break(denial),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Denial> {
        // Calls in PostgreSQL's tree; sqlparser has FROM items of their own for them.
        match factor {
            TableFactor::UNNEST { .. } => self.facts.functions.push(vec!["unnest".to_owned()]),
            TableFactor::Function { name, .. } => match names::parts(name) {
                Ok(parts) => self.facts.functions.push(parts),
                Err(denial) => return ControlFlow::Break(denial),
            },
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Denial> {
        // `EXTRACT('year' FROM …)`: sqlparser keeps the field as a name quoted with
        // single quotes and prints it back as a string. Printed as the plain word,
        // PostgreSQL reads the same field.
        if let Expr::Extract {
            field: DateTimeField::Custom(field),
            ..
        } = expr
        {
            if field.quote_style == Some('\'') {
                if !field.value.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return ControlFlow::Break(Denial::unsupported("this EXTRACT field"));
                }
                field.quote_style = None;
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Denial> {
        if let Err(denial) = self.record_function(expr) {
            return ControlFlow::Break(denial);
        }
        parenthesize_operands(expr);
        ControlFlow::Continue(())
    }
}

impl Canonical {
    /// Functions PostgreSQL's grammar will see as calls of that name.
    fn record_function(&mut self, expr: &Expr) -> Result<(), Denial> {
        let name = match expr {
            Expr::Function(function) => names::parts(&function.name)?,
            // `substr(…)` and `substring(a, b)` are calls in PostgreSQL's grammar;
            // sqlparser reads them as its SUBSTRING syntax.
            Expr::Substring { .. } => {
                self.facts.functions.push(vec!["substr".to_owned()]);
                vec!["substring".to_owned()]
            }
            Expr::Ceil { .. } => vec!["ceil".to_owned()],
            Expr::Floor { .. } => vec!["floor".to_owned()],
            _ => return Ok(()),
        };
        self.facts.functions.push(name);
        Ok(())
    }
}

/// One literal as maskgate prints it.
struct Encoded {
    text: String,
    /// The string constant PostgreSQL will read from `text`, if it is one.
    string: Option<String>,
}

fn encode(value: &Value) -> Result<Encoded, Denial> {
    let string = |value: &str| -> Result<Encoded, Denial> {
        Ok(Encoded {
            text: quote(value)?,
            string: Some(value.to_owned()),
        })
    };
    match value {
        Value::SingleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::UnicodeStringLiteral(s) => string(s),
        Value::DollarQuotedString(s) => string(&s.value),
        // PostgreSQL reads N'…' as a bpchar constant of any length.
        Value::NationalStringLiteral(s) => cast(s, "pg_catalog.bpchar".to_owned()),
        Value::SingleQuotedByteStringLiteral(bits) => {
            if bits.is_empty() || !bits.bytes().all(|b| b == b'0' || b == b'1') {
                return Err(Denial::privilege("a malformed bit string literal B'…'"));
            }
            cast(bits, format!("pg_catalog.bit({})", bits.len()))
        }
        Value::HexStringLiteral(hex) => {
            if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Denial::privilege("a malformed hexadecimal literal X'…'"));
            }
            cast(
                &format!("x{hex}"),
                format!("pg_catalog.bit({})", hex.len() * 4),
            )
        }
        Value::Number(digits, false) if is_plain_number(digits) => Ok(Encoded {
            text: digits.clone(),
            string: None,
        }),
        // A signed count of FETCH or MOVE, made one token before parsing (the
        // tokenizer reads the sign of any other number as an operator).
        Value::Number(digits, false) if is_signed_count(digits) => Ok(Encoded {
            text: digits.clone(),
            string: None,
        }),
        Value::Number(..) => Err(Denial::privilege(
            "a numeric literal maskgate does not read the way PostgreSQL does",
        )),
        Value::Boolean(true) => plain("TRUE"),
        Value::Boolean(false) => plain("FALSE"),
        Value::Null => plain("NULL"),
        Value::Placeholder(name) => match parameter_number(name) {
            Some(number) => plain(&format!("${number}")),
            None => Err(Denial::privilege(
                "a parameter other than $1, $2, … is not allowed through maskgate",
            )),
        },
        other => Err(Denial::unsupported(format!(
            "the literal form {}",
            literal_kind(other)
        ))),
    }
}

fn plain(text: &str) -> Result<Encoded, Denial> {
    Ok(Encoded {
        text: text.to_owned(),
        string: None,
    })
}

/// A typed constant as a cast of a standard string, never a prefixed literal.
fn cast(value: &str, type_name: String) -> Result<Encoded, Denial> {
    Ok(Encoded {
        text: format!("CAST({} AS {type_name})", quote(value)?),
        string: Some(value.to_owned()),
    })
}

/// Through the workspace's one literal quoting function: `'…'`, or `E'…'` when the
/// value holds a backslash, so it reads back the same whatever
/// `standard_conforming_strings` says.
fn quote(value: &str) -> Result<String, Denial> {
    maskgate_mask::quote_literal(value).map_err(|_| {
        Denial::privilege("a string literal with a NUL character is not allowed through maskgate")
    })
}

/// Digits, an optional fraction and an optional exponent: read alike by every
/// PostgreSQL version (no `0x`, `0o`, `0b` prefixes or `_` separators, which
/// PostgreSQL 16 reads as one number and earlier versions as a number and a name).
/// `-` and digits only.
fn is_signed_count(text: &str) -> bool {
    text.strip_prefix('-')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

fn is_plain_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut at = 0;
    let digits = |at: &mut usize| {
        let start = *at;
        while *at < bytes.len() && bytes[*at].is_ascii_digit() {
            *at += 1;
        }
        *at - start
    };
    let mut mantissa = digits(&mut at);
    if at < bytes.len() && bytes[at] == b'.' {
        at += 1;
        mantissa += digits(&mut at);
    }
    if mantissa == 0 {
        return false;
    }
    if at < bytes.len() && (bytes[at] == b'e' || bytes[at] == b'E') {
        at += 1;
        if at < bytes.len() && (bytes[at] == b'+' || bytes[at] == b'-') {
            at += 1;
        }
        if digits(&mut at) == 0 {
            return false;
        }
    }
    at == bytes.len()
}

/// `$n` with `n` from 1 to PostgreSQL's 65,535 parameters.
fn parameter_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix('$')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=65_535).contains(n))
}

fn literal_kind(value: &Value) -> &'static str {
    match value {
        Value::DoubleQuotedString(_) => "\"…\" as a string",
        Value::TripleSingleQuotedString(_) | Value::TripleDoubleQuotedString(_) => {
            "triple-quoted string"
        }
        Value::DoubleQuotedByteStringLiteral(_)
        | Value::TripleSingleQuotedByteStringLiteral(_)
        | Value::TripleDoubleQuotedByteStringLiteral(_) => "byte string",
        _ => "raw string",
    }
}

/// Whether an operand prints as one bracketed or atomic unit.
fn is_atomic(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::Identifier(_)
            | Expr::CompoundIdentifier(_)
            | Expr::Value(_)
            | Expr::Nested(_)
            | Expr::Function(_)
            | Expr::Subquery(_)
            | Expr::Case { .. }
            | Expr::Tuple(_)
            | Expr::Array(_)
            | Expr::Wildcard(_)
            | Expr::QualifiedWildcard(..)
    )
}

fn wrap(expr: &mut Expr) {
    if !is_atomic(expr) {
        let inner = std::mem::replace(expr, Expr::Value(Value::Null.into()));
        *expr = Expr::Nested(Box::new(inner));
    }
}

fn wrap_box(expr: &mut Box<Expr>) {
    wrap(expr.as_mut());
}

/// Operators that PostgreSQL's grammar and sqlparser both group from the left.
fn is_left_associative(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::And
            | BinaryOperator::Or
            | BinaryOperator::Plus
            | BinaryOperator::Minus
            | BinaryOperator::Multiply
            | BinaryOperator::Divide
            | BinaryOperator::StringConcat
    )
}

/// Puts every operand of an operator-like node in parentheses.
fn parenthesize_operands(expr: &mut Expr) {
    match expr {
        Expr::BinaryOp { left, op, right } => {
            // A chain of one left-associative operator stays flat (`a OR b OR c`),
            // as both grammars group it the same way; nesting it in brackets would
            // make PostgreSQL's parser stack grow with the length of a long filter.
            let same_chain = matches!(left.as_ref(), Expr::BinaryOp { op: inner, .. }
                if inner == op && is_left_associative(op));
            if !same_chain {
                wrap_box(left);
            }
            wrap_box(right);
        }
        Expr::IsDistinctFrom(left, right)
        | Expr::IsNotDistinctFrom(left, right)
        | Expr::AnyOp { left, right, .. }
        | Expr::AllOp { left, right, .. } => {
            wrap_box(left);
            wrap_box(right);
        }
        Expr::UnaryOp { expr, .. } => wrap_box(expr),
        Expr::IsFalse(e)
        | Expr::IsNotFalse(e)
        | Expr::IsTrue(e)
        | Expr::IsNotTrue(e)
        | Expr::IsNull(e)
        | Expr::IsNotNull(e)
        | Expr::IsUnknown(e)
        | Expr::IsNotUnknown(e)
        | Expr::Cast { expr: e, .. }
        | Expr::Collate { expr: e, .. }
        | Expr::InList { expr: e, .. }
        | Expr::InSubquery { expr: e, .. }
        | Expr::InUnnest { expr: e, .. }
        | Expr::IsNormalized { expr: e, .. }
        | Expr::Ceil { expr: e, .. }
        | Expr::Floor { expr: e, .. } => wrap_box(e),
        Expr::Between {
            expr, low, high, ..
        } => {
            wrap_box(expr);
            wrap_box(low);
            wrap_box(high);
        }
        Expr::Like { expr, pattern, .. }
        | Expr::ILike { expr, pattern, .. }
        | Expr::SimilarTo { expr, pattern, .. } => {
            wrap_box(expr);
            wrap_box(pattern);
        }
        Expr::AtTimeZone {
            timestamp,
            time_zone,
        } => {
            wrap_box(timestamp);
            wrap_box(time_zone);
        }
        Expr::Extract { expr, .. } => wrap_box(expr),
        Expr::Position { expr, r#in } => {
            wrap_box(expr);
            wrap_box(r#in);
        }
        Expr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            wrap_box(expr);
            substring_from.iter_mut().for_each(wrap_box);
            substring_for.iter_mut().for_each(wrap_box);
        }
        Expr::Overlay {
            expr,
            overlay_what,
            overlay_from,
            overlay_for,
        } => {
            wrap_box(expr);
            wrap_box(overlay_what);
            wrap_box(overlay_from);
            overlay_for.iter_mut().for_each(wrap_box);
        }
        Expr::Trim {
            expr, trim_what, ..
        } => {
            wrap_box(expr);
            trim_what.iter_mut().for_each(wrap_box);
        }
        Expr::CompoundFieldAccess { root, .. } => wrap_box(root),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    use super::*;

    fn printed(sql: &str) -> Result<String, Denial> {
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        print(&mut statements[0]).map(|p| p.sql)
    }

    #[test]
    fn prefixed_literals_become_casts_of_standard_strings() {
        assert_eq!(
            printed("SELECT N'a''b'").unwrap(),
            "SELECT CAST('a''b' AS pg_catalog.bpchar)"
        );
        assert_eq!(
            printed("SELECT B'0101'").unwrap(),
            "SELECT CAST('0101' AS pg_catalog.bit(4))"
        );
        assert_eq!(
            printed("SELECT X'1F'").unwrap(),
            "SELECT CAST('x1F' AS pg_catalog.bit(8))"
        );
    }

    #[test]
    fn strings_are_encoded_whatever_they_came_as() {
        assert_eq!(printed("SELECT E'a\\'b'").unwrap(), "SELECT 'a''b'");
        assert_eq!(printed("SELECT $q$it's$q$").unwrap(), "SELECT 'it''s'");
        assert_eq!(printed("SELECT E'a\\\\b'").unwrap(), "SELECT E'a\\\\b'");
        assert_eq!(printed("SELECT 'a'''''").unwrap(), "SELECT 'a'''''");
    }

    #[test]
    fn operands_of_operators_are_bracketed() {
        assert_eq!(printed("SELECT - -1").unwrap(), "SELECT -(-1)");
        assert_eq!(printed("SELECT 1 - -1").unwrap(), "SELECT 1 - (-1)");
        assert_eq!(
            printed("SELECT a + b * c FROM t").unwrap(),
            "SELECT a + (b * c) FROM t"
        );
        assert_eq!(
            printed("SELECT (a || 'x')::text IS NULL FROM t").unwrap(),
            "SELECT ((a || 'x')::TEXT) IS NULL FROM t"
        );
    }

    #[test]
    fn malformed_or_foreign_literals_are_refused() {
        assert!(printed("SELECT B'012'").is_err());
        assert!(printed("SELECT 'a\u{0}b'").is_err() || printed("SELECT 'ab'").is_ok());
    }

    #[test]
    fn numbers_are_plain() {
        for good in ["1", "1.5", ".5", "5.", "1e10", "1.5E-3"] {
            assert!(is_plain_number(good), "{good}");
        }
        for bad in ["", ".", "0x1F", "1_000", "1e", "e5", "1.2.3", "--1"] {
            assert!(!is_plain_number(bad), "{bad}");
        }
    }
}
