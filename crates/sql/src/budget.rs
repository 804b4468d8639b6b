//! Bounds on what one analysis may cost, checked before a tree is built.
//!
//! sqlparser's recursion limit bounds its own descent, not the depth of the tree it
//! returns: a left-deep chain of `+`, `::`, `OR` or `UNION ALL` is parsed in a loop and
//! comes out as a tree as deep as the chain is long. Every later walk (the rewrite,
//! the printer, PostgreSQL's own parser in the text check, even dropping the tree)
//! recurses over it. So the depth is bounded here, on the flat token stream, by an
//! estimate that can only err upwards: a statement within [`Limits::max_depth`] builds
//! a tree that the analysis threads' stacks are sized for, and one beyond it is refused
//! with PostgreSQL's own `54001` before any tree exists.

use std::cell::Cell;
use std::time::{Duration, Instant};

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::denial::{sqlstate, Denial};

/// Limits of one analysis. The defaults let through far deeper statements than
/// applications write (generated IN lists, long OR filters, hundreds of nested
/// parentheses) while keeping one analysis within a few tens of megabytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Bytes of one statement string (one Query message, or one Parse message's text).
    pub max_statement_bytes: usize,
    /// Tokens of one statement string, white space not counted: bounds the memory of
    /// the token stream and the tree.
    pub max_tokens: usize,
    /// The nesting estimate of [`depth_estimate`].
    pub max_depth: usize,
    /// Wall-clock time of one analysis, checked between its steps and as the rewrite
    /// walks the tree.
    pub max_analysis_time: Duration,
    /// The longest `pg_sleep` a statement may ask for: long enough for applications
    /// to exercise their statement_timeout and cancel paths, too short to hold a
    /// connection for long. PostgreSQL's `statement_timeout` still ends it sooner.
    pub max_sleep: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_statement_bytes: 1 << 20,
            max_tokens: 250_000,
            // A `+` chain of 16,000 terms overflowed the 512 MiB analysis stack of an
            // unoptimized build (about 17 KB per level in sqlparser's visitor), so
            // the bound keeps a margin of two over that.
            max_depth: 8_000,
            max_analysis_time: Duration::from_secs(2),
            max_sleep: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// Refuses a statement string longer than the limit, before it is tokenized.
    pub(crate) fn check_size(&self, sql: &str) -> Result<(), Denial> {
        if sql.len() > self.max_statement_bytes {
            return Err(Denial {
                sqlstate: sqlstate::PROGRAM_LIMIT_EXCEEDED,
                message: format!(
                    "statement of {} bytes is longer than the {} bytes maskgate analyzes \
                     for this account",
                    sql.len(),
                    self.max_statement_bytes
                ),
            });
        }
        Ok(())
    }

    /// Refuses a statement whose tables' masking subqueries alone print to more than
    /// [`Limits::max_printed_bytes`], before they are built.
    ///
    /// Each protected relation becomes a masking subquery, so a statement naming tens
    /// of thousands of them prints to megabytes, which PostgreSQL's parser in the text
    /// check (and PostgreSQL itself) would then have to take in whole.
    pub(crate) fn check_growth(&self, subquery_bytes: usize) -> Result<(), Denial> {
        self.refuse_longer(
            subquery_bytes,
            MAX_SUBQUERY_BYTES,
            "its tables' masking subqueries print to",
        )
    }

    /// Refuses a statement that needs more than [`MAX_MASKING_SUBQUERIES`] masking
    /// subqueries. Statements short enough for the fast analysis lane could otherwise
    /// name a protected table hundreds of times (`FROM t a0, t a1, …`), each reference
    /// a subquery for the printer, PostgreSQL's parser in the text check and the
    /// planner: seconds of analysis from a few kilobytes of text.
    pub(crate) fn check_masking_subqueries(&self, count: usize) -> Result<(), Denial> {
        if count > MAX_MASKING_SUBQUERIES {
            return Err(Denial {
                sqlstate: sqlstate::PROGRAM_LIMIT_EXCEEDED,
                message: format!(
                    "statement reads protected tables {count} times, more than the \
                     {MAX_MASKING_SUBQUERIES} masking subqueries maskgate builds for one \
                     statement"
                ),
            });
        }
        Ok(())
    }

    /// Refuses a rewritten statement whose text is longer than
    /// [`Limits::max_printed_bytes`].
    pub(crate) fn check_printed(&self, printed: &str) -> Result<(), Denial> {
        self.refuse_longer(printed.len(), self.max_printed_bytes(), "it prints to")
    }

    fn refuse_longer(&self, bytes: usize, most: usize, what: &str) -> Result<(), Denial> {
        if bytes > most {
            return Err(Denial {
                sqlstate: sqlstate::PROGRAM_LIMIT_EXCEEDED,
                message: format!(
                    "statement is too large once rewritten: {what} {bytes} bytes, more \
                     than the {most} bytes maskgate sends for this account"
                ),
            });
        }
        Ok(())
    }

    /// The statement limit plus what its masking subqueries may add.
    pub fn max_printed_bytes(&self) -> usize {
        self.max_statement_bytes.saturating_add(MAX_SUBQUERY_BYTES)
    }

    /// Refuses a token stream that is too long or nests too deep.
    pub(crate) fn check_tokens(&self, tokens: &[TokenWithSpan]) -> Result<(), Denial> {
        let counted = tokens
            .iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .count();
        if counted > self.max_tokens {
            return Err(Denial {
                sqlstate: sqlstate::PROGRAM_LIMIT_EXCEEDED,
                message: format!(
                    "statement of {counted} tokens is longer than the {} tokens maskgate \
                     analyzes for this account",
                    self.max_tokens
                ),
            });
        }
        let depth = depth_estimate(tokens.iter().map(|t| &t.token));
        if depth > self.max_depth {
            return Err(Denial {
                sqlstate: sqlstate::STATEMENT_TOO_COMPLEX,
                message: format!(
                    "stack depth limit exceeded: statement nests deeper than maskgate \
                     analyzes (estimated depth {depth}, limit {})",
                    self.max_depth
                ),
            });
        }
        Ok(())
    }
}

/// What the masking and filtering subqueries of one statement may print to, together.
/// A report that joins a dozen tables adds tens of kilobytes; this allows a few
/// thousand references to a table, while keeping PostgreSQL's parse of the text in the
/// text check (which cannot be interrupted) around a second and a few hundred
/// megabytes.
const MAX_SUBQUERY_BYTES: usize = 1 << 20;

/// How many masking subqueries one statement may need: a report joining a few dozen
/// protected tables stays well within it.
pub const MAX_MASKING_SUBQUERIES: usize = 64;

/// The time budget of one analysis. Checked between its steps, and every few nodes
/// as the rewrite walks the tree ([`Clock::tick`]), since a statement within the size
/// limits can still name tens of thousands of tables.
pub(crate) struct Clock {
    started: Instant,
    budget: Duration,
    ticks: Cell<u32>,
}

/// Nodes walked between two readings of the clock: a reading costs tens of
/// nanoseconds, a node of the rewrite a few microseconds.
const TICKS_PER_READING: u32 = 64;

impl Clock {
    pub(crate) fn start(limits: &Limits) -> Clock {
        Clock {
            started: Instant::now(),
            budget: limits.max_analysis_time,
            ticks: Cell::new(0),
        }
    }

    /// Refuses the statement once the budget is spent.
    pub(crate) fn check(&self) -> Result<(), Denial> {
        if self.started.elapsed() > self.budget {
            return Err(Denial {
                sqlstate: sqlstate::QUERY_CANCELED,
                message: format!(
                    "canceling statement: maskgate's analysis of it took longer than {} ms",
                    self.budget.as_millis()
                ),
            });
        }
        Ok(())
    }

    /// One node walked: reads the clock every [`TICKS_PER_READING`] nodes.
    pub(crate) fn tick(&self) -> Result<(), Denial> {
        let ticks = self.ticks.get().wrapping_add(1);
        self.ticks.set(ticks);
        if ticks % TICKS_PER_READING == 0 {
            self.check()
        } else {
            Ok(())
        }
    }
}

/// An upper estimate of the depth of the syntax tree built from `tokens`, up to a
/// constant factor.
///
/// Within one bracket level, every node on a path from the level's root to a leaf
/// owns at least one token of that level that is not a name or a literal (an
/// operator, a keyword, a `.` or `::`), and the path enters at most one bracketed
/// group; a comma at that level ends one sibling and starts the next. So a level's
/// depth is at most the count of such tokens of its deepest comma-separated item plus
/// the deepest group inside that item, and groups add their own levels on top.
/// Computed in one pass with one frame per open bracket, so the estimate itself
/// cannot be made to recurse.
pub(crate) fn depth_estimate<'a>(tokens: impl IntoIterator<Item = &'a Token>) -> usize {
    let mut deepest = 0;
    let mut levels: Vec<Level> = vec![Level::default()];
    for token in tokens {
        match token {
            Token::LParen | Token::LBracket => levels.push(Level::default()),
            Token::RParen | Token::RBracket => {
                // An unbalanced closer is the parser's error to report; it cannot
                // make the tree deeper.
                if levels.len() > 1 {
                    let closed = levels.pop().map_or(0, |l| l.depth()) + GROUP;
                    if let Some(parent) = levels.last_mut() {
                        parent.child = parent.child.max(closed);
                    }
                }
            }
            Token::Comma => {
                if let Some(level) = levels.last_mut() {
                    level.best = level.depth();
                    level.ops = 0;
                    level.child = 0;
                }
            }
            Token::SemiColon => {
                // Statements are siblings; groups left open belong to a statement the
                // parser will refuse.
                deepest = deepest.max(close_all(&mut levels));
                levels.push(Level::default());
            }
            token if is_leaf(token) => {}
            _ => {
                if let Some(level) = levels.last_mut() {
                    level.ops += 1;
                }
            }
        }
    }
    deepest.max(close_all(&mut levels))
}

/// One open bracket level of [`depth_estimate`].
#[derive(Default)]
struct Level {
    /// Counted tokens of the current comma-separated item.
    ops: usize,
    /// Deepest closed group inside the current item.
    child: usize,
    /// Deepest finished item of this level.
    best: usize,
}

impl Level {
    fn depth(&self) -> usize {
        self.best.max(self.ops + self.child)
    }
}

/// A bracket costs the nodes that wrap its contents (a subquery's query, body and
/// select item; a call's argument list).
const GROUP: usize = 2;

/// Names, literals and white space: leaves of the tree, which add no depth.
fn is_leaf(token: &Token) -> bool {
    match token {
        Token::Word(word) => word.quote_style.is_some() || word.keyword == Keyword::NoKeyword,
        Token::Whitespace(_)
        | Token::Number(..)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::Placeholder(_) => true,
        _ => false,
    }
}

/// Closes every open level into its parent; the outermost depth.
fn close_all(levels: &mut Vec<Level>) -> usize {
    let mut carried = 0;
    while let Some(mut level) = levels.pop() {
        level.child = level.child.max(carried);
        carried = level.depth() + if levels.is_empty() { 0 } else { GROUP };
    }
    carried
}

#[cfg(test)]
mod tests {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::Tokenizer;

    use super::*;

    fn estimate(sql: &str) -> usize {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .unwrap();
        depth_estimate(tokens.iter())
    }

    #[test]
    fn chains_count_their_operators() {
        let chain = |n: usize, op: &str| {
            let mut sql = String::from("SELECT 1");
            for _ in 0..n {
                sql.push_str(op);
                sql.push('1');
            }
            sql
        };
        assert!(estimate(&chain(1000, "+")) >= 1000);
        assert!(estimate(&chain(1000, " OR ")) >= 1000);
        assert!(estimate(&chain(1000, "::int")) >= 1000);
    }

    #[test]
    fn lists_do_not_add_up() {
        let list = (0..10_000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT * FROM t WHERE id IN ({list})");
        assert!(estimate(&sql) < 20, "{}", estimate(&sql));
    }

    #[test]
    fn a_group_on_the_left_of_a_chain_adds_to_it() {
        let inner = vec!["1"; 500].join(" + ");
        let outer = vec!["1"; 500].join(" + ");
        let sql = format!("SELECT ({inner}) + {outer}");
        assert!(estimate(&sql) >= 1000);
    }

    #[test]
    fn nesting_adds_up() {
        let sql = format!("SELECT {}1{}", "(".repeat(500), ")".repeat(500));
        assert!(estimate(&sql) >= 1000);
        let sql = format!("SELECT {}1{}", "(SELECT ".repeat(100), ")".repeat(100));
        assert!(estimate(&sql) >= 300);
    }

    #[test]
    fn unbalanced_brackets_do_not_panic() {
        estimate(")))) SELECT (((( ; ))) ((");
    }
}
