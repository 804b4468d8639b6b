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
        [schema, function] if schema == "information_schema" && function == "_pg_expandarray" => {
            Ok(format!("{schema}.{function}"))
        }
        _ => Err(Denial::privilege(format!(
            "function {} is not allowed for this account",
            names::display(&parts)
        ))),
    }
}

pub(super) fn check_function(
    function: &Function,
    max_sleep: std::time::Duration,
) -> Result<(), Denial> {
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
        return check_sleep(function, max_sleep);
    }
    if name == "current_setting" {
        return check_current_setting(function);
    }
    if functions::scalar_allowed(&name) || crate::catalog::pg::guard_of(&name).is_some() {
        Ok(())
    } else {
        Err(Denial::privilege(format!(
            "function {name} is not allowed for this account"
        )))
    }
}

/// The arguments of a call as plain expressions; `None` for named arguments or `*`.
pub(super) fn plain_args(function: &Function) -> Option<Vec<&Expr>> {
    match &function.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr),
                _ => None,
            })
            .collect(),
        FunctionArguments::None => Some(Vec::new()),
        FunctionArguments::Subquery(_) => None,
    }
}

/// A string literal's value (plain or `E'…'` form).
pub(super) fn string_literal(expr: &Expr) -> Option<&str> {
    match strip(expr) {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s),
            ..
        }) => Some(s),
        _ => None,
    }
}

/// `current_setting('<name>' [, <boolean literal>])` of a setting the account may
/// read anyway with SHOW: drivers ask for `application_name`, `server_version` and
/// the like. The name must be a literal, so `maskgate.*` (the pseudonym keys) and
/// settings that reveal the server or other sessions stay out of reach.
fn check_current_setting(function: &Function) -> Result<(), Denial> {
    let refused = || {
        Denial::privilege(
            "current_setting is allowed only with a literal name of a setting this account \
             may SHOW",
        )
    };
    let args = plain_args(function).ok_or_else(refused)?;
    let (name, rest) = args.split_first().ok_or_else(refused)?;
    // A name that is not a literal is checked when the statement runs (see
    // `guard_setting_name`).
    let name = string_literal(name).unwrap_or("application_name");
    let missing_ok = matches!(
        rest,
        [] | [Expr::Value(ValueWithSpan {
            value: Value::Boolean(_),
            ..
        })]
    );
    if missing_ok && crate::classify::is_readable_setting(&name.to_ascii_lowercase()) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// `pg_sleep(<number literal>)` up to `max_sleep` ([`crate::Limits::max_sleep`]):
/// long enough for applications to exercise their timeouts and cancels, whose
/// `statement_timeout` PostgreSQL applies as usual.
pub(super) fn check_sleep(
    function: &Function,
    max_sleep: std::time::Duration,
) -> Result<(), Denial> {
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
        Some(s) if (0.0..=max_sleep.as_secs_f64()).contains(&s) => Ok(()),
        _ => Err(Denial::privilege(format!(
            "pg_sleep is allowed only with a literal of at most {} seconds",
            max_sleep.as_secs_f64()
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
        BinaryOperator::PGCustomBinaryOperator(parts) if is_catalog_operator(parts) => Ok(()),
        BinaryOperator::Custom(_) | BinaryOperator::PGCustomBinaryOperator(_) => Err(
            Denial::privilege("custom operators are not allowed for this account"),
        ),
        _ => Ok(()),
    }
}

/// `OPERATOR(pg_catalog.~)` and the like, as psql writes its pattern matches: a
/// built-in comparison or pattern operator named in `pg_catalog`, which is the same
/// operator the bare symbol means for built-in types.
fn is_catalog_operator(parts: &[String]) -> bool {
    matches!(parts, [schema, op] if schema == "pg_catalog"
        && matches!(op.as_str(),
            "=" | "<>" | "<" | "<=" | ">" | ">=" | "~" | "~*" | "!~" | "!~*" | "~~" | "!~~"
                | "~~*" | "!~~*"))
}

impl Rewriter<'_> {
    /// `pg_notify('<channel>', payload)` as NOTIFY is allowed: on a channel one of the
    /// account's roles lists, named by a literal (`pg_notify` does not fold it).
    pub(super) fn check_notify(&self, function: &Function) -> Result<(), Denial> {
        let channel = plain_args(function).and_then(|args| match args.as_slice() {
            [channel, _payload] => string_literal(channel).map(str::to_owned),
            _ => None,
        });
        match channel {
            Some(channel) if self.enforcer.rules.channels.contains(&channel) => Ok(()),
            Some(channel) => Err(Denial::privilege(format!(
                "notification channel \"{channel}\" is not available to this account"
            ))),
            None => Err(Denial::privilege(
                "pg_notify is allowed only with a literal channel name",
            )),
        }
    }
}

impl Rewriter<'_> {
    /// A call of a catalog function that prints an object's name or definition from
    /// its OID (see `catalog::pg::GUARDED`), as
    /// `CASE WHEN <oid> IN (<the visible OIDs>) THEN <call> END`: for an object the
    /// account's catalog does not list it answers NULL, as for an OID that names
    /// nothing. Other expressions are left alone.
    pub(super) fn guard_catalog_call(&self, expr: &mut Expr) -> Result<(), Denial> {
        let Expr::Function(function) = expr else {
            return Ok(());
        };
        if function_name(&function.name).is_ok_and(|name| name == "current_setting") {
            return guard_setting_name(function);
        }
        let Some((index, guard)) = function_name(&function.name)
            .ok()
            .and_then(|name| crate::catalog::pg::guard_of(&name))
        else {
            return Ok(());
        };
        let unsupported = || Denial::unsupported("this call of a catalog function");
        let args = plain_args(function).ok_or_else(unsupported)?;
        let argument = if guard == crate::catalog::pg::Guard::Column {
            match args.as_slice() {
                [relation, column] => Expr::Tuple(vec![(*relation).clone(), (*column).clone()]),
                _ => return Err(unsupported()),
            }
        } else {
            args.get(index)
                .map(|arg| (*arg).clone())
                .ok_or_else(unsupported)?
        };
        let visible = match self.enforcer.catalog_guards.get(&guard) {
            Some(Ok(query)) => query.clone(),
            Some(Err(denial)) => return Err(denial.clone()),
            None => return Err(internal()),
        };
        let call = std::mem::replace(expr, Expr::Value(Value::Null.into()));
        *expr = Expr::Case {
            case_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
            end_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
            operand: None,
            conditions: vec![sqlparser::ast::CaseWhen {
                condition: Expr::InSubquery {
                    expr: Box::new(match argument {
                        tuple @ Expr::Tuple(_) => tuple,
                        other => Expr::Nested(Box::new(other)),
                    }),
                    subquery: visible,
                    negated: false,
                },
                result: call,
            }],
            else_result: None,
        };
        Ok(())
    }
}

/// `current_setting(<expression>)`, whose name is known only when the statement runs
/// (a bind parameter), becomes `current_setting(CASE WHEN lower(<expression>) IN
/// (<readable settings>) THEN <expression> END)`: any other name reads as NULL (the
/// function is strict), never a `maskgate.*` setting.
fn guard_setting_name(function: &mut Function) -> Result<(), Denial> {
    let FunctionArguments::List(list) = &mut function.args else {
        return Err(internal());
    };
    let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(name))) = list.args.first_mut() else {
        return Err(internal());
    };
    if string_literal(name).is_some() {
        return Ok(());
    }
    let readable = crate::classify::readable_settings()
        .map(|setting| Expr::Value(Value::SingleQuotedString(setting.to_owned()).into()))
        .collect();
    let original = std::mem::replace(name, Expr::Value(Value::Null.into()));
    let lower = Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new("pg_catalog"), Ident::new("lower")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(sqlparser::ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Nested(
                Box::new(original.clone()),
            )))],
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    });
    *name = Expr::Case {
        case_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        end_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        operand: None,
        conditions: vec![sqlparser::ast::CaseWhen {
            condition: Expr::InList {
                expr: Box::new(lower),
                list: readable,
                negated: false,
            },
            result: Expr::Nested(Box::new(original)),
        }],
        else_result: None,
    };
    Ok(())
}
