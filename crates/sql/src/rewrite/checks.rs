//! Checks of single nodes that do not depend on names: functions, types, operators,
//! wildcard options, EXECUTE arguments.

use super::*;

pub(super) fn plain_wildcard(options: &WildcardAdditionalOptions) -> Result<(), Denial> {
    if options.opt_ilike.is_some()
        || options.opt_exclude.is_some()
        || options.opt_except.is_some()
        || options.opt_replace.is_some()
        || options.opt_rename.is_some()
    {
        return Err(Denial::unsupported("wildcard options"));
    }
    Ok(())
}

/// `name` or `pg_catalog.name`, folded; other schemas are never built-ins.
pub(super) fn function_name(name: &ObjectName) -> Result<String, Denial> {
    let parts = names::parts(name)?;
    match parts.as_slice() {
        [function] => Ok(function.clone()),
        [schema, function] if schema == "pg_catalog" => Ok(function.clone()),
        _ => Err(Denial::privilege(format!(
            "function {} is not allowed for this account",
            names::display(&parts)
        ))),
    }
}

pub(super) fn check_function(function: &Function) -> Result<(), Denial> {
    let name = function_name(&function.name)?;
    if function.uses_odbc_syntax || !matches!(function.parameters, FunctionArguments::None) {
        return Err(Denial::unsupported("this function call syntax"));
    }
    if let FunctionArguments::List(list) = &function.args {
        for clause in &list.clauses {
            if !matches!(clause, FunctionArgumentClause::OrderBy(_)) {
                return Err(Denial::unsupported("this function argument clause"));
            }
        }
    }
    if name == "pg_sleep" {
        return check_sleep(function);
    }
    if functions::scalar_allowed(&name) {
        Ok(())
    } else {
        Err(Denial::privilege(format!(
            "function {name} is not allowed for this account"
        )))
    }
}

/// `pg_sleep(<number literal>)` up to [`functions::MAX_SLEEP_SECONDS`].
pub(super) fn check_sleep(function: &Function) -> Result<(), Denial> {
    let seconds = match &function.args {
        FunctionArguments::List(list) => match list.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(ValueWithSpan {
                value: Value::Number(n, _),
                ..
            })))] => n.parse::<f64>().ok(),
            _ => None,
        },
        _ => None,
    };
    match seconds {
        Some(s) if (0.0..=functions::MAX_SLEEP_SECONDS).contains(&s) => Ok(()),
        _ => Err(Denial::privilege(format!(
            "pg_sleep is allowed only with a literal of at most {} second",
            functions::MAX_SLEEP_SECONDS
        ))),
    }
}

/// An argument of SQL-level EXECUTE: a value, not a query. Literals, parameters,
/// casts and calls of allowed functions pass; column references and subqueries do not.
pub(crate) fn check_execute_argument(
    enforcer: &Enforcer,
    argument: &mut Expr,
    clock: &Clock,
) -> Result<(), Denial> {
    /// Stops at the first query or column reference.
    struct ReadsData;

    impl sqlparser::ast::Visitor for ReadsData {
        type Break = ();

        fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
            ControlFlow::Break(())
        }

        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Identifier(_)
                | Expr::CompoundIdentifier(_)
                | Expr::CompoundFieldAccess { .. }
                | Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::InSubquery { .. } => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }

    if sqlparser::ast::Visit::visit(&*argument, &mut ReadsData).is_break() {
        return Err(Denial::privilege(
            "EXECUTE arguments must be literals, parameters or casts of them",
        ));
    }
    let mut rewriter = Rewriter::new(enforcer, &*argument, clock)?;
    rewriter.visit(argument)
}

pub(crate) fn check_type(data_type: &DataType) -> Result<(), Denial> {
    use sqlparser::ast::{ArrayElemTypeDef, CharacterLength, ExactNumberInfo};
    // An allowlist of PostgreSQL's types as sqlparser prints them. Other variants
    // belong to other dialects, and some of them carry strings that sqlparser prints
    // without escaping (`DateTime64(3, 'tz')`, `Enum8('a' = 1)`): text the analysis
    // never saw would reach PostgreSQL.
    let plain_length = |length: &Option<CharacterLength>| match length {
        None => true,
        Some(CharacterLength::IntegerLength { unit, .. }) => unit.is_none(),
        Some(CharacterLength::Max) => false,
    };
    let allowed = match data_type {
        DataType::Custom(name, modifiers) => {
            let parts = names::parts(name)?;
            let type_name = match parts.as_slice() {
                [one] => one.as_str(),
                [schema, one] if schema == "pg_catalog" => one.as_str(),
                _ => "",
            };
            if modifiers.is_empty() && functions::custom_type_allowed(type_name) {
                return Ok(());
            }
            return Err(Denial::privilege(format!(
                "type {} is not allowed for this account",
                names::display(&parts)
            )));
        }
        DataType::Array(ArrayElemTypeDef::SquareBracket(inner, _)) => return check_type(inner),
        DataType::Character(length)
        | DataType::Char(length)
        | DataType::CharacterVarying(length)
        | DataType::CharVarying(length)
        | DataType::Varchar(length) => plain_length(length),
        DataType::Numeric(_) | DataType::Decimal(_) | DataType::Dec(_) => true,
        DataType::Float(precision) => !matches!(precision, ExactNumberInfo::PrecisionAndScale(..)),
        DataType::SmallInt(None)
        | DataType::Int(None)
        | DataType::Integer(None)
        | DataType::BigInt(None)
        | DataType::Int2(None)
        | DataType::Int4(None)
        | DataType::Int8(None) => true,
        DataType::Real
        | DataType::Float4
        | DataType::Float8
        | DataType::DoublePrecision
        | DataType::Bool
        | DataType::Boolean
        | DataType::Date
        | DataType::Time(..)
        | DataType::Timestamp(..)
        | DataType::Interval { .. }
        | DataType::JSON
        | DataType::JSONB
        | DataType::Regclass
        | DataType::Text
        | DataType::Bytea
        | DataType::Uuid
        | DataType::Bit(_)
        | DataType::BitVarying(_)
        | DataType::VarBit(_) => true,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Denial::unsupported("a type of another SQL dialect"))
    }
}

pub(super) fn check_operator(op: &BinaryOperator) -> Result<(), Denial> {
    match op {
        BinaryOperator::Custom(_) | BinaryOperator::PGCustomBinaryOperator(_) => Err(
            Denial::privilege("custom operators are not allowed for this account"),
        ),
        _ => Ok(()),
    }
}
