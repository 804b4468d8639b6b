//! The statement text as sqlparser is to read it: PostgreSQL forms it does not read
//! brought into ones it does, reserved names refused, parse errors made denials.

use super::*;

pub(super) fn cursor_use(name: &Ident, declare: bool) -> Result<CursorUse, Denial> {
    names::check_quote(name)?;
    check_not_reserved(name)?;
    Ok(CursorUse {
        name: names::fold(name),
        declare,
        motion: None,
    })
}

pub(super) fn is_reserved(folded: &str) -> bool {
    folded
        .get(..RESERVED_NAME_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_NAME_PREFIX))
}

pub(super) fn reserved_denial() -> Denial {
    Denial::privilege(format!(
        "names starting with \"{RESERVED_NAME_PREFIX}\" are reserved for maskgate"
    ))
}

pub(super) fn check_not_reserved(name: &Ident) -> Result<(), Denial> {
    if is_reserved(&names::fold(name)) {
        return Err(reserved_denial());
    }
    Ok(())
}

/// How deep sqlparser may recurse. Its own descent is bounded by this; the depth of
/// the tree it returns is bounded by [`Limits::max_depth`] before it parses.
const PARSER_RECURSION_LIMIT: usize = 4_096;

/// Parses a string into statements, each with whether it was a MOVE. sqlparser knows
/// FETCH but not MOVE (same syntax, no rows), so a MOVE that starts a statement is
/// parsed as FETCH and printed back as MOVE. `COPY … FROM` (other than the form
/// `copy_in` accepts before this runs) is refused here, before
/// the parser, which would expect the copied data to follow the statement.
pub(super) fn parse(sql: &str, limits: &Limits) -> Result<Vec<(Statement, bool)>, Denial> {
    let dialect = PostgreSqlDialect {};
    let mut tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|error| parse_denial(error.into()))?;
    limits.check_tokens(&tokens)?;
    lexical::check(sql, &tokens)?;
    // The parser skips white space anyway; dropping it here halves what it holds.
    tokens.retain(|t| !matches!(t.token, Token::Whitespace(_)));
    let (tokens, moves) = prepare_tokens(tokens)?;
    let statements = Parser::new(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(parse_denial)?;
    let mut fetches = moves.into_iter();
    Ok(statements
        .into_iter()
        .map(|statement| {
            let is_move =
                matches!(statement, Statement::Fetch { .. }) && fetches.next().unwrap_or(false);
            (statement, is_move)
        })
        .collect())
}

/// Looks at the first word of each statement. COPY with a FROM outside parentheses is
/// refused. FETCH and MOVE statements are brought into the form sqlparser reads (MOVE
/// as FETCH; a missing direction or FROM/IN supplied; FORWARD and BACKWARD without a
/// count as NEXT and PRIOR). Returns the tokens and, for each FETCH or MOVE in order,
/// whether it was MOVE.
pub(super) fn prepare_tokens(
    mut tokens: Vec<TokenWithSpan>,
) -> Result<(Vec<TokenWithSpan>, Vec<bool>), Denial> {
    let mut moves = Vec::new();
    let mut cursor_statements = Vec::new();
    let mut resets = Vec::new();
    let mut start = None;
    let mut at_start = true;
    let mut copy = false;
    let mut depth = 0usize;
    for (index, token) in tokens.iter().enumerate() {
        match &token.token {
            Token::Whitespace(_) => continue,
            Token::SemiColon => {
                if let Some(start) = start.take() {
                    cursor_statements.push(start..index);
                }
                at_start = true;
                copy = false;
                depth = 0;
                continue;
            }
            _ => {}
        }
        if at_start {
            at_start = false;
            if let Token::Word(word) = &token.token {
                if word.quote_style.is_none() {
                    if word.value.eq_ignore_ascii_case("move") {
                        moves.push(true);
                        start = Some(index);
                    } else if word.keyword == Keyword::FETCH {
                        moves.push(false);
                        start = Some(index);
                    } else if word.keyword == Keyword::COPY {
                        copy = true;
                    } else if word.keyword == Keyword::RESET {
                        resets.push(index);
                    }
                }
            }
            continue;
        }
        if copy {
            match &token.token {
                Token::LParen => depth += 1,
                Token::RParen => depth = depth.saturating_sub(1),
                token if depth == 0 && is_keyword(token, Keyword::FROM) => {
                    return Err(classify::copy_from());
                }
                _ => {}
            }
        }
    }
    if let Some(start) = start {
        cursor_statements.push(start..tokens.len());
    }
    // Statements are rewritten back to front, so earlier indices stay valid.
    let mut edits: Vec<(usize, bool)> = cursor_statements
        .iter()
        .map(|r| (r.start, true))
        .chain(resets.iter().map(|&at| (at, false)))
        .collect();
    edits.sort_unstable();
    let mut ranges = cursor_statements.into_iter().rev();
    for (at, cursor) in edits.into_iter().rev() {
        if cursor {
            let Some(range) = ranges.next() else { break };
            let normalized = fetch_tokens(&tokens[range.clone()]);
            tokens.splice(range, normalized);
        } else {
            housekeeping::reset_tokens(&mut tokens, at);
        }
    }
    Ok((tokens, moves))
}

/// `FETCH|MOVE [direction] [FROM|IN] cursor` as `FETCH direction FROM|IN cursor`.
pub(super) fn fetch_tokens(statement: &[TokenWithSpan]) -> Vec<TokenWithSpan> {
    let mut words: Vec<TokenWithSpan> = statement
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .cloned()
        .collect();
    let keyword = |template: &TokenWithSpan, word: &str| TokenWithSpan {
        token: Token::make_keyword(word),
        span: template.span,
    };
    words[0] = keyword(&words[0], "FETCH");
    // PostgreSQL reads signed counts (`MOVE -3 FROM c`, `ABSOLUTE -1`); sqlparser
    // reads a number token, which may carry its sign.
    if let Some(at) = words
        .iter()
        .position(|t| matches!(t.token, Token::Minus | Token::Plus))
    {
        if let (true, Some(Token::Number(n, long))) =
            (at > 0, words.get(at + 1).map(|t| t.token.clone()))
        {
            let sign = if words[at].token == Token::Minus {
                "-"
            } else {
                ""
            };
            words[at + 1].token = Token::Number(format!("{sign}{n}"), long);
            words.remove(at);
        }
    }
    let is_position = |t: &TokenWithSpan| {
        is_keyword(&t.token, Keyword::FROM) || is_keyword(&t.token, Keyword::IN)
    };
    if words.len() > 1 && !words[1..].iter().any(is_position) {
        let at = words.len() - 1;
        let from = keyword(&words[at], "FROM");
        words.insert(at, from);
    }
    if words.len() == 3 && is_position(&words[1]) {
        let next = keyword(&words[1], "NEXT");
        words.insert(1, next);
    } else if words.len() == 4 && is_position(&words[2]) {
        if is_keyword(&words[1].token, Keyword::FORWARD) {
            words[1] = keyword(&words[1], "NEXT");
        } else if is_keyword(&words[1].token, Keyword::BACKWARD) {
            words[1] = keyword(&words[1], "PRIOR");
        }
    }
    words
}

pub(super) fn is_keyword(token: &Token, keyword: Keyword) -> bool {
    matches!(token, Token::Word(word) if word.quote_style.is_none() && word.keyword == keyword)
}

/// The parser's message can quote the statement's tokens, literals included; only the
/// position is kept.
pub(super) fn parse_denial(error: ParserError) -> Denial {
    if matches!(error, ParserError::RecursionLimitExceeded) {
        return Denial {
            sqlstate: sqlstate::STATEMENT_TOO_COMPLEX,
            message: format!(
                "stack depth limit exceeded: statement nests deeper than the \
                 {PARSER_RECURSION_LIMIT} levels maskgate parses"
            ),
        };
    }
    let text = error.to_string();
    let position = text
        .rfind(" at Line: ")
        .map(|at| text[at + 1..].to_owned())
        .filter(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" :,".contains(&b))
        });
    let message = match position {
        Some(position) => {
            format!("maskgate could not parse this statement ({position}), so it is refused")
        }
        None => "maskgate could not parse this statement, so it is refused".to_owned(),
    };
    Denial {
        sqlstate: sqlstate::INSUFFICIENT_PRIVILEGE,
        message,
    }
}

/// sqlparser reads `U&"x"` as `U & "x"`; PostgreSQL reads one identifier with escapes.
/// Refused wherever the three characters appear (also inside literals: rare, and safe).
pub(super) fn has_unicode_identifier(sql: &str) -> bool {
    sql.as_bytes()
        .windows(3)
        .any(|w| (w[0] == b'u' || w[0] == b'U') && w[1] == b'&' && w[2] == b'"')
}
