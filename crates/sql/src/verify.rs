//! PostgreSQL's own grammar checks the text maskgate is about to send.
//!
//! The analyzer checks sqlparser's tree; PostgreSQL runs its own reading of the text.
//! For every statement analyzed cold (the result is cached by statement text, so this
//! runs once per text), the printed text is read by libpg_query, PostgreSQL's lexer
//! and parser built as a library, and compared with what maskgate meant to send:
//!
//! - the two lexers split the text into the same tokens (every token starts at the
//!   same byte), and there is no comment;
//! - the same number of statements;
//! - every string constant maskgate printed is one PostgreSQL reads, with the same
//!   value; PostgreSQL reads no other string but the lower-case words its grammar
//!   makes itself (`EXTRACT(year …)`, isolation levels);
//! - PostgreSQL names no relation and calls no function that the analyzed tree does
//!   not (its grammar's own `pg_catalog` functions for SQL syntax aside).
//!
//! Any difference denies the statement (`42501`), is logged at error level and
//! counted: it means maskgate's printer has a bug. A text that differs from one
//! already checked only inside its string constants is not parsed again (see the
//! `shape` module).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use pg_query::protobuf::{self, Token as PgToken};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::denial::Denial;
use crate::print::Facts;

mod observe;
mod shape;

pub use shape::{limit_verified_shapes, verified_shape_bytes};

static MISMATCHES: AtomicU64 = AtomicU64::new(0);

/// How many printed statements PostgreSQL's grammar read differently from what
/// maskgate meant, since the process started (each one was denied).
pub fn printer_mismatches() -> u64 {
    MISMATCHES.load(Ordering::Relaxed)
}

/// Why PostgreSQL would read a printed text differently. Never carries values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("PostgreSQL's lexer cannot read it: {0}")]
    Scan(String),
    #[error("PostgreSQL's parser cannot read it: {0}")]
    Parse(String),
    #[error("PostgreSQL's parser cannot read the client's text either: {0}")]
    Invalid(String),
    #[error("it contains a comment")]
    Comment,
    #[error("the lexers disagree at byte {0}")]
    Tokens(usize),
    #[error("{found} statements where {expected} were printed")]
    Statements { expected: usize, found: usize },
    #[error("its string constants differ")]
    Strings,
    #[error("PostgreSQL reads a relation the analysis did not see: {0}")]
    Relation(String),
    #[error("PostgreSQL calls a function the analysis did not see: {0}")]
    Function(String),
}

/// Functions PostgreSQL's grammar calls for SQL syntax (`EXTRACT`, `SUBSTRING … FROM`,
/// `AT TIME ZONE`, `OVERLAPS`, `SIMILAR TO`, …): always schema-qualified.
const GRAMMAR_FUNCTIONS: &[&str] = &[
    "extract",
    "date_part",
    "like_escape",
    "substring",
    "overlay",
    "position",
    "btrim",
    "ltrim",
    "rtrim",
    "timezone",
    "overlaps",
    "similar_to_escape",
    "pg_collation_for",
    "normalize",
    "is_normalized",
    "xmlexists",
    "system_user",
];

/// Whether libpg_query stopped for depth: its own stack check, or the depth limit of
/// the protobuf form its tree is handed over in.
fn is_depth_limit(message: &str) -> bool {
    message.contains("stack depth limit exceeded") || message.contains("nested too deeply")
}

/// Checks `sql`, printed from `statements` statements with `facts`, against
/// PostgreSQL's reading of it. Counts and logs a mismatch before returning it.
///
/// `original` is the client's text: when PostgreSQL cannot parse the printed text,
/// it is asked whether it can parse the original at all. If not, the statement is
/// not valid PostgreSQL (sqlparser is more lenient, e.g. with reserved words as
/// names) and the client gets PostgreSQL's own `42601`, not a printer bug.
pub(crate) fn verify(
    sql: &str,
    statements: usize,
    facts: &Facts,
    original: &str,
) -> Result<(), Denial> {
    let shape = shape::of(sql);
    if shape.as_deref().is_some_and(shape::is_verified) {
        return Ok(());
    }
    let outcome = {
        let (sql, facts, original) = (sql.to_owned(), facts.clone(), original.to_owned());
        // Whatever the difference, a client text PostgreSQL cannot parse either is
        // the client's syntax error (sqlparser is the more lenient), not a printer
        // bug: it is refused all the same, but neither counted nor logged as one.
        parser_threads::run(move || match check(&sql, statements, &facts) {
            Err(mismatch) => match pg_query::parse(&original, pg_query::ParserOptions::DEFAULT) {
                Err(error) => Err(Mismatch::Invalid(without_values(&error.to_string()))),
                Ok(_) => Err(mismatch),
            },
            Ok(()) => Ok(()),
        })
        .unwrap_or_else(|| Err(Mismatch::Parse("the parser threads are gone".to_owned())))
    };
    if outcome.is_ok() {
        if let Some(shape) = shape {
            shape::remember(shape);
        }
    }
    outcome.map_err(|mismatch| {
        if let Mismatch::Invalid(message) = &mismatch {
            if !is_depth_limit(message) {
                return Denial {
                    sqlstate: crate::denial::sqlstate::SYNTAX_ERROR,
                    message: format!(
                        "this statement is not valid in PostgreSQL's grammar ({message})"
                    ),
                };
            }
        }
        if let Mismatch::Parse(message) | Mismatch::Invalid(message) = &mismatch {
            if message.contains("nested too deeply") {
                // libpg_query hands its tree over as protobuf, which has a depth
                // limit of its own: deeper than that, the text cannot be checked.
                return Denial {
                    sqlstate: crate::denial::sqlstate::STATEMENT_TOO_COMPLEX,
                    message: "stack depth limit exceeded: statement nests deeper than \
                              maskgate's check of the text it sends can read"
                        .to_owned(),
                };
            }
            if message.contains("stack depth limit exceeded") {
                // PostgreSQL itself would refuse this depth: not a printer bug.
                return Denial {
                    sqlstate: crate::denial::sqlstate::STATEMENT_TOO_COMPLEX,
                    message: "stack depth limit exceeded: statement nests deeper than \
                              PostgreSQL's parser allows"
                        .to_owned(),
                };
            }
        }
        MISMATCHES.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = mismatch_log_allowance() {
            tracing::error!(
                statement = %crate::fingerprint(sql),
                mismatch = %mismatch,
                suppressed,
                "maskgate's printed statement reads differently in PostgreSQL's grammar; \
                 the statement is refused (a printer bug)"
            );
        }
        Denial::privilege(format!(
            "maskgate could not verify the text it would send ({mismatch}), so the \
             statement is refused"
        ))
    })
}

/// At most this many mismatches are logged a minute; all are counted. A client
/// that found a false alarm could otherwise write the log full with it.
const LOGGED_MISMATCHES_PER_MINUTE: u64 = 20;

/// Whether this mismatch may be logged: `Some(n)` with the number of mismatches not
/// logged since the last one that was.
fn mismatch_log_allowance() -> Option<u64> {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    struct Window {
        start: Option<Instant>,
        logged: u64,
        suppressed: u64,
    }
    static WINDOW: Mutex<Window> = Mutex::new(Window {
        start: None,
        logged: 0,
        suppressed: 0,
    });
    let mut window = WINDOW.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    if window
        .start
        .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(60))
    {
        window.start = Some(now);
        window.logged = 0;
    }
    if window.logged >= LOGGED_MISMATCHES_PER_MINUTE {
        window.suppressed += 1;
        return None;
    }
    window.logged += 1;
    Some(std::mem::take(&mut window.suppressed))
}

/// libpg_query sizes its stack-depth check (like a server's `max_stack_depth`, at
/// most 2 MB) from the stack of the thread that calls it, and measures nothing
/// useful on a stack switched in by `stacker`. So it runs on threads of its own,
/// with a known, large stack, and the tree it returns is walked there too.
mod parser_threads {
    use std::sync::mpsc::{self, Receiver, SyncSender};
    use std::sync::{Arc, Mutex, OnceLock};

    type Job = Box<dyn FnOnce() + Send>;

    /// Threads kept for the check; analyses queue for them (at most this many run
    /// PostgreSQL's parser at once).
    const THREADS: usize = 2;
    const STACK_BYTES: usize = 256 << 20;
    const QUEUE: usize = 256;

    fn queue() -> &'static SyncSender<Job> {
        static QUEUE_SENDER: OnceLock<SyncSender<Job>> = OnceLock::new();
        QUEUE_SENDER.get_or_init(|| {
            let (sender, receiver) = mpsc::sync_channel::<Job>(QUEUE);
            let receiver = Arc::new(Mutex::new(receiver));
            for index in 0..THREADS {
                let receiver = Arc::clone(&receiver);
                std::thread::Builder::new()
                    .name(format!("maskgate-pgparse-{index}"))
                    .stack_size(STACK_BYTES)
                    .spawn(move || serve(&receiver))
                    .expect("the parser check threads start");
            }
            sender
        })
    }

    fn serve(jobs: &Mutex<Receiver<Job>>) {
        loop {
            let job = match jobs.lock() {
                Ok(receiver) => receiver.recv(),
                Err(_) => return,
            };
            match job {
                Ok(job) => job(),
                Err(_) => return,
            }
        }
    }

    /// Runs `f` on a parser thread and waits for it; `None` if it could not run.
    pub(super) fn run<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        let (done, result) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = done.send(f());
        });
        queue().send(job).ok()?;
        result.recv().ok()
    }
}

/// The comparison itself, without the side effects.
pub(crate) fn check(sql: &str, statements: usize, facts: &Facts) -> Result<(), Mismatch> {
    let string_tokens = check_tokens(sql)?;
    // Every string token PostgreSQL scans is one maskgate printed from a literal of
    // the tree: a string sqlparser printed raw from some other node (a type's
    // modifier, a dialect's option) could hide text the analysis never saw.
    if string_tokens != facts.strings.len() {
        return Err(Mismatch::Strings);
    }
    let parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT)
        .map_err(|error| Mismatch::Parse(without_values(&error.to_string())))?;
    let found = parsed.protobuf.stmts.len();
    if found != statements {
        return Err(Mismatch::Statements {
            expected: statements,
            found,
        });
    }
    let read = Read::collect(&parsed.protobuf)?;
    compare_strings(&facts.strings, &read.strings)?;
    compare_names(facts, &read)
}

/// Every relation PostgreSQL reads and every function it calls (its grammar's own
/// functions aside) is one the analyzed tree names, *as many times*: a name the tree
/// holds once (inside a masking subquery, say) cannot be read a second time by text
/// the analysis never saw. Table functions are relations in sqlparser's tree and
/// calls in PostgreSQL's, so the two lists are one pool.
fn compare_names(facts: &Facts, read: &Read) -> Result<(), Mismatch> {
    /// Takes a name of the tree that `name` reads as, written alike if there is one.
    fn take(pool: &mut Vec<&Vec<String>>, name: &[String]) -> bool {
        let alike = pool.iter().position(|n| n.as_slice() == name);
        match alike.or_else(|| pool.iter().position(|n| same_name(n, name))) {
            Some(at) => {
                pool.swap_remove(at);
                true
            }
            None => false,
        }
    }
    let mut relations: Vec<&Vec<String>> = facts.relations.iter().collect();
    let mut functions: Vec<&Vec<String>> = facts.functions.iter().collect();
    // Qualified names first: an unqualified one may stand for any of them.
    let mut read_relations: Vec<&Vec<String>> = read.relations.iter().collect();
    read_relations.sort_by_key(|name| std::cmp::Reverse(name.len()));
    for relation in read_relations {
        if !take(&mut relations, relation) {
            return Err(Mismatch::Relation(relation.join(".")));
        }
    }
    for function in &read.functions {
        let grammar = matches!(function.as_slice(), [schema, name]
            if schema == "pg_catalog" && GRAMMAR_FUNCTIONS.contains(&name.as_str()));
        // What is left of the tree's relations are its table functions.
        if !grammar && !take(&mut functions, function) && !take(&mut relations, function) {
            return Err(Mismatch::Function(function.join(".")));
        }
    }
    Ok(())
}

/// Both lexers must start every token at the same byte, and PostgreSQL's must see no
/// comment. Returns how many string constants PostgreSQL scanned.
fn check_tokens(sql: &str) -> Result<usize, Mismatch> {
    // pg_query's scanner aborts the process on a text without tokens; a printed
    // statement always has some, but nothing here may depend on that.
    if sql.trim().is_empty() {
        return Err(Mismatch::Scan("empty text".to_owned()));
    }
    let theirs =
        pg_query::scan_tokens(sql).map_err(|e| Mismatch::Scan(without_values(&e.to_string())))?;
    if theirs
        .iter()
        .any(|t| t.token == PgToken::SqlComment as i32 || t.token == PgToken::CComment as i32)
    {
        return Err(Mismatch::Comment);
    }
    let strings = theirs
        .iter()
        .filter(|t| {
            [
                PgToken::Sconst,
                PgToken::Usconst,
                PgToken::Bconst,
                PgToken::Xconst,
            ]
            .iter()
            .any(|kind| t.token == *kind as i32)
        })
        .count();
    let ours = token_starts(sql).ok_or(Mismatch::Scan("sqlparser".to_owned()))?;
    let mut theirs = theirs.iter().map(|t| t.start as usize);
    let mut ours = ours.into_iter();
    loop {
        match (ours.next(), theirs.next()) {
            (None, None) => return Ok(strings),
            (Some(a), Some(b)) if a == b => continue,
            (a, b) => return Err(Mismatch::Tokens(a.or(b).unwrap_or(0))),
        }
    }
}

/// Byte offsets where sqlparser's tokens (white space aside) start.
fn token_starts(sql: &str) -> Option<Vec<usize>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    crate::lexical::byte_offsets(sql, &tokens, |t| {
        !matches!(t, Token::Whitespace(_) | Token::EOF)
    })
}

/// Every printed string is read, with its value; PostgreSQL reads no other string
/// than the words its grammar makes (`EXTRACT(year …)`, `repeatable read`,
/// `normalize(x, NFC)`) or reads from a keyword-like name (`SET NAMES utf8`). (No
/// string token can be among those: their number is checked against the printed
/// literals first.)
fn compare_strings(printed: &[String], read: &[String]) -> Result<(), Mismatch> {
    let mut remaining: HashMap<&str, usize> = HashMap::new();
    for value in read {
        *remaining.entry(value.as_str()).or_default() += 1;
    }
    for value in printed {
        match remaining.get_mut(value.as_str()) {
            Some(count) if *count > 0 => *count -= 1,
            _ => return Err(Mismatch::Strings),
        }
    }
    let grammar_word = |s: &str| {
        !s.is_empty()
            && s.len() <= 24
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" _-".contains(&b))
    };
    if remaining
        .iter()
        .any(|(value, count)| *count > 0 && !grammar_word(value))
    {
        return Err(Mismatch::Strings);
    }
    Ok(())
}

/// Names are compared by their last parts: a relation PostgreSQL reads as `t` was
/// analyzed as `t` or `schema.t` (resolved through the search_path), and one it reads
/// as `s.t` must have been analyzed as `s.t`.
fn same_name(analyzed: &[String], read: &[String]) -> bool {
    match read.len() {
        1 => analyzed.last() == read.last(),
        _ => analyzed.len() >= read.len() && analyzed[analyzed.len() - read.len()..] == *read,
    }
}

/// What PostgreSQL's tree holds, as far as the comparison goes.
#[derive(Default)]
struct Read {
    strings: Vec<String>,
    relations: Vec<Vec<String>>,
    functions: Vec<Vec<String>>,
}

impl Read {
    fn collect(tree: &protobuf::ParseResult) -> Result<Read, Mismatch> {
        observe::observe(tree).map_err(|_| Mismatch::Parse("its tree cannot be walked".to_owned()))
    }
}

/// libpg_query's messages can quote the text near an error; only what precedes a
/// quote is kept.
fn without_values(message: &str) -> String {
    let cut = message.find(['"', '\'']).unwrap_or(message.len());
    message[..cut].trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(strings: &[&str], relations: &[&[&str]], functions: &[&[&str]]) -> Facts {
        let names = |list: &[&[&str]]| {
            list.iter()
                .map(|n| n.iter().map(|p| p.to_string()).collect())
                .collect()
        };
        Facts {
            strings: strings.iter().map(|s| s.to_string()).collect(),
            relations: names(relations),
            functions: names(functions),
        }
    }

    #[test]
    fn a_faithful_text_passes() {
        let f = facts(&["a'b"], &[&["public", "t"]], &[&["lower"]]);
        check("SELECT lower(x) FROM t WHERE y = 'a''b'", 1, &f).unwrap();
    }

    #[test]
    fn comments_and_smuggled_statements_are_caught() {
        let f = facts(&[], &[], &[]);
        assert_eq!(check("SELECT --1\n", 1, &f), Err(Mismatch::Comment));
        assert_eq!(check("SELECT /* x */ 1", 1, &f), Err(Mismatch::Comment));
        let f = facts(&["a"], &[], &[]);
        assert!(check("SELECT N'a' ; DROP TABLE t; SELECT ''", 1, &f).is_err());
    }

    #[test]
    fn a_string_read_differently_is_caught() {
        // sqlparser's Display leaves an already doubled quote alone.
        let f = facts(&["a''b"], &[], &[]);
        assert_eq!(check("SELECT 'a''b'", 1, &f), Err(Mismatch::Strings));
    }

    #[test]
    fn unseen_relations_and_functions_are_caught() {
        let f = facts(&[], &[&["t"]], &[]);
        assert_eq!(
            check("SELECT * FROM u", 1, &f),
            Err(Mismatch::Relation("u".to_owned()))
        );
        assert_eq!(
            check(
                "SELECT pg_read_file('x') FROM t",
                1,
                &facts(&["x"], &[&["t"]], &[])
            ),
            Err(Mismatch::Function("pg_read_file".to_owned()))
        );
        check(
            "SELECT EXTRACT(year FROM now()) FROM t",
            1,
            &facts(&[], &[&["t"]], &[&["now"]]),
        )
        .unwrap();
    }

    #[test]
    fn a_string_the_printer_did_not_print_is_caught() {
        // sqlparser prints a type's time zone without escaping it.
        let f = facts(&[], &[&["t"]], &[]);
        assert_eq!(
            check("SELECT CAST(1 AS DateTime64(3, 'x')) FROM t", 1, &f),
            Err(Mismatch::Strings)
        );
    }

    #[test]
    fn a_name_is_read_no_more_often_than_the_tree_names_it() {
        let f = facts(&[], &[&["public", "t"]], &[&["lower"]]);
        assert_eq!(
            check("SELECT lower(x), (SELECT y FROM t) FROM t", 1, &f),
            Err(Mismatch::Relation("t".to_owned()))
        );
        assert_eq!(
            check("SELECT lower(lower(x)) FROM t", 1, &f),
            Err(Mismatch::Function("lower".to_owned()))
        );
        // A table function is a relation to sqlparser and a call to PostgreSQL.
        let f = facts(&[], &[&["generate_series"]], &[]);
        check("SELECT * FROM generate_series(1, 2)", 1, &f).unwrap();
    }

    #[test]
    fn error_messages_do_not_quote_the_text() {
        let error = check("SELECT 'secret", 1, &facts(&[], &[], &[])).unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
