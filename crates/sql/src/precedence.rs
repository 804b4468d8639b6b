//! The client's operators must group the way PostgreSQL's grammar groups them.
//!
//! maskgate prints every operand it sends in parentheses, so PostgreSQL runs exactly
//! the tree sqlparser built. But sqlparser's precedence table is not PostgreSQL's in a
//! few places: its unary minus takes `^`, `AT TIME ZONE` and `COLLATE` into its operand
//! (`- 2 ^ 2` is `-(2 ^ 2)`, PostgreSQL's is `(-2) ^ 2`), its prefix operators stop
//! before `+` and `-` (`|/ 16 + 9`), the regular-expression operators sit with the
//! comparisons rather than with the other operators (`a = b ~ c`, `a ~ b || c`), and it
//! chains comparisons, which PostgreSQL refuses (`1 < 2 = true`). Sent as analyzed, such
//! a statement would compute something else than the client wrote (or run where
//! PostgreSQL would have refused it). So, before the rewrite, every unparenthesized
//! operator is checked against PostgreSQL's own table, and a statement that either
//! grammar would group differently is refused, asking for parentheses.
//!
//! PostgreSQL's rule, as its parser applies it: when an operator follows an operand, every
//! operator still open on its left that binds at least as tightly is closed first. So an
//! infix or postfix node is read as sqlparser built it iff each node on the right edge of
//! its left operand binds at least as tightly as it (equal only where the level groups
//! from the left; a postfix operator or a closing bracket ends the edge), each node on
//! the left edge of its right operand binds more tightly (a prefix operator starts
//! afresh), and a prefix operator's operand binds more tightly than the prefix.

use std::ops::ControlFlow;

use sqlparser::ast::{BinaryOperator, CastKind, Expr, Statement, UnaryOperator, Visit, Visitor};

use crate::denial::{sqlstate, Denial};

/// PostgreSQL's precedence levels, loosest first (the table in "Operator Precedence" of
/// its documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Or,
    And,
    Not,
    /// `IS`, `ISNULL`, `NOTNULL`: not associative.
    Is,
    /// `< > = <= >= <>`: not associative.
    Comparison,
    /// `BETWEEN IN LIKE ILIKE SIMILAR`: not associative.
    Like,
    /// Every other operator, prefix or infix (`||`, `~`, `@>`, `|/` …).
    Other,
    AddSubtract,
    MultiplyDivide,
    Exponent,
    AtTimeZone,
    Collate,
    /// Unary `+` and `-`.
    Sign,
    /// `::`.
    Cast,
}

impl Level {
    fn is_associative(self) -> bool {
        !matches!(self, Level::Is | Level::Comparison | Level::Like)
    }

    fn name(self) -> &'static str {
        match self {
            Level::Or => "OR",
            Level::And => "AND",
            Level::Not => "NOT",
            Level::Is => "IS",
            Level::Comparison => "a comparison",
            Level::Like => "BETWEEN, IN or LIKE",
            Level::Other => "an operator",
            Level::AddSubtract => "+ or -",
            Level::MultiplyDivide => "*, / or %",
            Level::Exponent => "^",
            Level::AtTimeZone => "AT TIME ZONE",
            Level::Collate => "COLLATE",
            Level::Sign => "a sign",
            Level::Cast => "::",
        }
    }
}

/// An expression node as far as grouping cares.
enum Shape<'a> {
    /// Bracketed or a single token (names, literals, calls, parenthesized expressions).
    Atom,
    /// An operator after its left operand, with a right operand unless postfix (or
    /// bracketed, as in `IN (…)`).
    Infix {
        level: Level,
        left: &'a Expr,
        right: Option<&'a Expr>,
    },
    /// An operator before its operand.
    Prefix { level: Level, operand: &'a Expr },
}

fn shape(expr: &Expr) -> Shape<'_> {
    let infix = |level, left, right| Shape::Infix { level, left, right };
    match expr {
        Expr::BinaryOp { left, op, right } => infix(binary_level(op), left, Some(right)),
        Expr::UnaryOp { op, expr } => match op {
            UnaryOperator::Plus | UnaryOperator::Minus => Shape::Prefix {
                level: Level::Sign,
                operand: expr,
            },
            UnaryOperator::Not => Shape::Prefix {
                level: Level::Not,
                operand: expr,
            },
            // Postfix, and not PostgreSQL's since version 14: its parser refuses it.
            UnaryOperator::PGPostfixFactorial => Shape::Atom,
            _ => Shape::Prefix {
                level: Level::Other,
                operand: expr,
            },
        },
        Expr::IsNull(e)
        | Expr::IsNotNull(e)
        | Expr::IsTrue(e)
        | Expr::IsNotTrue(e)
        | Expr::IsFalse(e)
        | Expr::IsNotFalse(e)
        | Expr::IsUnknown(e)
        | Expr::IsNotUnknown(e) => infix(Level::Is, e, None),
        Expr::IsNormalized { expr, .. } => infix(Level::Is, expr, None),
        Expr::IsDistinctFrom(left, right) | Expr::IsNotDistinctFrom(left, right) => {
            infix(Level::Is, left, Some(right))
        }
        Expr::InList { expr, .. } | Expr::InSubquery { expr, .. } => infix(Level::Like, expr, None),
        Expr::InUnnest { expr, .. } => infix(Level::Like, expr, None),
        Expr::Between { expr, high, .. } => infix(Level::Like, expr, Some(high)),
        Expr::Like {
            expr,
            pattern,
            escape_char: None,
            ..
        }
        | Expr::ILike {
            expr,
            pattern,
            escape_char: None,
            ..
        }
        | Expr::SimilarTo {
            expr,
            pattern,
            escape_char: None,
            ..
        } => infix(Level::Like, expr, Some(pattern)),
        // `ESCAPE` ends with a literal.
        Expr::Like { expr, .. } | Expr::ILike { expr, .. } | Expr::SimilarTo { expr, .. } => {
            infix(Level::Like, expr, None)
        }
        Expr::AnyOp {
            left, compare_op, ..
        }
        | Expr::AllOp {
            left, compare_op, ..
        } => infix(binary_level(compare_op), left, None),
        Expr::AtTimeZone {
            timestamp,
            time_zone,
        } => infix(Level::AtTimeZone, timestamp, Some(time_zone)),
        Expr::Collate { expr, .. } => infix(Level::Collate, expr, None),
        Expr::Cast {
            kind: CastKind::DoubleColon,
            expr,
            ..
        } => infix(Level::Cast, expr, None),
        _ => Shape::Atom,
    }
}

fn binary_level(op: &BinaryOperator) -> Level {
    match op {
        BinaryOperator::Or => Level::Or,
        BinaryOperator::And => Level::And,
        BinaryOperator::Eq
        | BinaryOperator::NotEq
        | BinaryOperator::Lt
        | BinaryOperator::Gt
        | BinaryOperator::LtEq
        | BinaryOperator::GtEq => Level::Comparison,
        BinaryOperator::Overlaps => Level::Like,
        BinaryOperator::Plus | BinaryOperator::Minus => Level::AddSubtract,
        BinaryOperator::Multiply | BinaryOperator::Divide | BinaryOperator::Modulo => {
            Level::MultiplyDivide
        }
        BinaryOperator::PGExp => Level::Exponent,
        // `||`, the regular-expression and pattern operators, bit and JSON operators and
        // whatever else PostgreSQL knows as an operator. Those it does not know
        // (`DIV`, `<=>`) its parser refuses anyway.
        _ => Level::Other,
    }
}

/// Why a node would be grouped otherwise by PostgreSQL.
fn regroup(outer: Level, inner: Level) -> Denial {
    Denial {
        sqlstate: sqlstate::FEATURE_NOT_SUPPORTED,
        message: format!(
            "{} next to {} without parentheses is grouped differently by maskgate's \
             parser and PostgreSQL's; add parentheses to say which is meant",
            outer.name(),
            inner.name()
        ),
    }
}

/// PostgreSQL's own refusal of `a < b = c` and the like.
fn not_associative(level: Level) -> Denial {
    Denial {
        sqlstate: sqlstate::SYNTAX_ERROR,
        message: format!(
            "syntax error: {} cannot follow {} without parentheses (PostgreSQL does not \
             chain them)",
            level.name(),
            level.name()
        ),
    }
}

/// Checks one node against its operands.
fn check_node(expr: &Expr) -> Result<(), Denial> {
    match shape(expr) {
        Shape::Atom => Ok(()),
        Shape::Infix { level, left, right } => {
            check_left(left, level)?;
            right.map_or(Ok(()), |right| check_right(right, level))
        }
        Shape::Prefix { level, operand } => match shape(operand) {
            Shape::Infix { level: inner, .. } if inner <= level => Err(regroup(level, inner)),
            _ => Ok(()),
        },
    }
}

/// Every node on the right edge of an operator's left operand must bind at least as
/// tightly as the operator, down to the first one that ends in a postfix operator or
/// a bracket.
fn check_left(left: &Expr, level: Level) -> Result<(), Denial> {
    let mut edge = left;
    loop {
        edge = match shape(edge) {
            Shape::Atom => return Ok(()),
            // A postfix operator (or a bracketed right operand) ends its node: what
            // follows applies to the whole of it, whatever the levels.
            Shape::Infix { right: None, .. } => return Ok(()),
            Shape::Infix {
                level: inner,
                right: Some(right),
                ..
            } => {
                if inner < level {
                    return Err(regroup(level, inner));
                }
                if inner == level && !level.is_associative() {
                    return Err(not_associative(level));
                }
                right
            }
            Shape::Prefix {
                level: inner,
                operand,
            } => {
                if inner < level {
                    return Err(regroup(level, inner));
                }
                operand
            }
        };
    }
}

/// Every node on the left edge of an operator's right operand must bind more tightly
/// than the operator, down to the first prefix operator (which starts afresh).
fn check_right(right: &Expr, level: Level) -> Result<(), Denial> {
    let mut edge = right;
    loop {
        edge = match shape(edge) {
            Shape::Atom | Shape::Prefix { .. } => return Ok(()),
            Shape::Infix {
                level: inner, left, ..
            } => {
                if inner <= level {
                    return Err(if inner == level && !level.is_associative() {
                        not_associative(level)
                    } else {
                        regroup(level, inner)
                    });
                }
                left
            }
        };
    }
}

/// Refuses a statement with an operator that PostgreSQL groups differently.
pub(crate) fn check(statement: &Statement) -> Result<(), Denial> {
    struct Check;
    impl Visitor for Check {
        type Break = Denial;
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Denial> {
            match check_node(expr) {
                Ok(()) => ControlFlow::Continue(()),
                Err(denial) => ControlFlow::Break(denial),
            }
        }
    }
    match statement.visit(&mut Check) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(denial) => Err(denial),
    }
}

#[cfg(test)]
mod tests {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    use super::*;

    fn checked(sql: &str) -> Result<(), &'static str> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        check(&statements[0]).map_err(|d| d.sqlstate)
    }

    #[test]
    fn what_both_grammars_group_alike_passes() {
        for sql in [
            "SELECT 1 + 2 * 3 ^ 4",
            "SELECT -1 + 2",
            "SELECT - x::int",
            "SELECT -(2 ^ 2)",
            "SELECT (-2) ^ 2",
            "SELECT a || b || c",
            "SELECT a ~ b AND c = d OR NOT e IS NULL",
            "SELECT a = (b ~ c)",
            "SELECT x BETWEEN 1 AND 2 + 3",
            "SELECT x + 1 IN (1, 2)",
            "SELECT |/ (16 + 9)",
            "SELECT a = ANY (b)",
            "SELECT 1 WHERE a LIKE b || c",
            "SELECT t AT TIME ZONE 'UTC' AT TIME ZONE 'UTC'",
            "SELECT x IS NOT DISTINCT FROM y + 1",
            "SELECT NOT NOT a",
        ] {
            assert_eq!(checked(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn what_postgresql_groups_otherwise_is_refused() {
        for sql in [
            "SELECT - 2 ^ 2",
            "SELECT - t AT TIME ZONE 'UTC'",
            "SELECT - 'a' COLLATE \"C\"",
            "SELECT 2 ^ - 3 ^ 2",
            "SELECT |/ 16 + 9",
            "SELECT 2 * |/ 4 + 1",
            "SELECT ~ 5 + 1",
            "SELECT a = b ~ c",
            "SELECT a ~ b || c",
            "SELECT 'x' ~ 'a' LIKE 'b'",
        ] {
            assert_eq!(checked(sql), Err("0A000"), "{sql}");
        }
    }

    #[test]
    fn chains_postgresql_refuses_are_refused_as_syntax_errors() {
        for sql in [
            "SELECT 1 < 2 = true",
            "SELECT 'a' LIKE 'b' LIKE 'c'",
            "SELECT 1 BETWEEN 0 AND 2 BETWEEN false AND true",
        ] {
            assert_eq!(checked(sql), Err("42601"), "{sql}");
        }
        // A postfix operator or a bracket ends its operand: PostgreSQL takes these.
        for sql in [
            "SELECT 1 IN (1) IN (true)",
            "SELECT NULL IS NULL IS NULL",
            "SELECT 1 = ANY (ARRAY[1]) = true",
        ] {
            assert_eq!(checked(sql), Ok(()), "{sql}");
        }
    }
}
