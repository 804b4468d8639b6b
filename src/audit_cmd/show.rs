//! `maskgate audit show ID`: one record, a statement with its `statement_end`, and
//! with `--decrypt` its sealed constants and parameters.

use anyhow::Context as _;
use maskgate_audit::{Sealed, Sealer};
use maskgate_proxy::audit::{AuditTool, Secret};
use serde_json::{Map, Value};

use super::scan::{self, Segment};
use super::search::{find_end, printable, record_value};
use super::{os_user, record_use, ShowArgs, CANNOT_RUN, NOT_FOUND, OK};

/// The order fields are printed in; others follow alphabetically.
const FIELD_ORDER: [&str; 28] = [
    "seq",
    "time",
    "kind",
    "session",
    "stmt",
    "outcome",
    "user",
    "login",
    "account_name",
    "client",
    "application_name",
    "protocol",
    "statement",
    "cut",
    "class",
    "tables",
    "written",
    "decision",
    "reason",
    "sqlstate",
    "message",
    "stopped_by",
    "rows",
    "bytes",
    "duration_us",
    "sealed_values",
    "sealed",
    "prev",
];

/// Finds record `seq`: its segment (by the first seq of each) and its line.
fn find_record(segments: &[Segment], seq: u64) -> anyhow::Result<Option<(usize, Vec<u8>)>> {
    let mut candidate = None;
    for (i, segment) in segments.iter().enumerate() {
        match scan::first_seq(segment)? {
            Some(first) if first <= seq => candidate = Some(i),
            Some(_) => break,
            None => {}
        }
    }
    let Some(start) = candidate else {
        return Ok(None);
    };
    // The segment where it should be; the next ones too, should a segment's first
    // line be damaged.
    let mut buf = Vec::new();
    for (i, segment) in segments.iter().enumerate().skip(start) {
        scan::read_segment(segment, &mut buf)?;
        for line in scan::lines(&buf) {
            if scan::envelope(line).is_some_and(|e| e.seq == seq) {
                return Ok(Some((i, line.to_vec())));
            }
        }
    }
    Ok(None)
}

pub fn run(args: &ShowArgs) -> anyhow::Result<i32> {
    let segments = scan::list_segments(&args.dir)?;
    let Some((at, line)) = find_record(&segments, args.id)? else {
        let use_ = tool_use(args, false, 0);
        record_use(&args.dir, &args.tool, use_)?;
        eprintln!("maskgate: no record {} in {}", args.id, args.dir.display());
        return Ok(NOT_FOUND);
    };
    let record = record_value(&line, true)?;
    let end = match (
        record.get("kind").and_then(Value::as_str),
        record.get("session").and_then(Value::as_str),
        record.get("stmt").and_then(Value::as_u64),
    ) {
        (Some("statement"), Some(session), Some(stmt)) => find_end(&segments[at..], session, stmt)?
            .map(|l| record_value(&l, true))
            .transpose()?,
        _ => None,
    };
    let mut secret: Option<Result<Secret, String>> = None;
    if args.decrypt {
        let key_file = args
            .key_file
            .as_deref()
            .context("--decrypt needs --key-file")?;
        let sealer = Sealer::load(key_file)?;
        secret = Some(match record.get("sealed") {
            None => Err("the record has no sealed value".to_owned()),
            Some(sealed) => open(&sealer, sealed, args.id),
        });
    }
    let decrypted = matches!(secret, Some(Ok(_)));
    // Recorded before anything is printed: no output without a trace.
    record_use(&args.dir, &args.tool, tool_use(args, decrypted, 1))?;
    let mut code = OK;
    if args.json {
        let mut doc = Map::new();
        doc.insert("record".into(), Value::Object(record));
        if let Some(end) = end {
            doc.insert("end".into(), Value::Object(end));
        }
        match &secret {
            Some(Ok(s)) => {
                doc.insert("secret".into(), serde_json::to_value(s)?);
            }
            Some(Err(why)) => {
                eprintln!("maskgate: {why}");
                code = CANNOT_RUN;
            }
            None => {}
        }
        println!("{}", serde_json::to_string_pretty(&Value::Object(doc))?);
        return Ok(code);
    }
    print_fields(&record, "");
    if let Some(end) = &end {
        println!();
        print_fields(end, "");
    } else if record.get("kind").and_then(Value::as_str) == Some("statement") {
        println!();
        println!("(no statement_end found: the statement was running when the trail was read, or its session was cut off)");
    }
    match &secret {
        None if record.contains_key("sealed") => {
            println!();
            println!("(sealed values not shown: --decrypt --key-file FILE opens them)");
        }
        None => {}
        Some(Ok(s)) => {
            println!();
            println!("sealed values (decrypted):");
            for (i, literal) in s.literals.iter().enumerate() {
                println!("  $L{} = {}", i + 1, quoted(literal));
            }
            for (i, param) in s.params.iter().enumerate() {
                match param {
                    Some(p) => println!("  ${} = {}", i + 1, quoted(p)),
                    None => println!("  ${} = NULL", i + 1),
                }
            }
            if s.is_empty() {
                println!("  (none)");
            }
        }
        Some(Err(why)) => {
            eprintln!("maskgate: {why}");
            code = CANNOT_RUN;
        }
    }
    Ok(code)
}

fn open(sealer: &Sealer, sealed: &Value, seq: u64) -> Result<Secret, String> {
    let sealed: Sealed = serde_json::from_value(sealed.clone())
        .map_err(|_| "the sealed value is malformed".to_owned())?;
    let plain = sealer
        .open(&sealed, seq.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&plain)
        .map_err(|_| "the sealed value opens but is not a statement's values".to_owned())
}

fn tool_use(args: &ShowArgs, decrypted: bool, results: u64) -> AuditTool {
    AuditTool {
        command: "show",
        os_user: os_user(),
        arguments: format!(
            "dir={} id={}{}{}",
            args.dir.display(),
            args.id,
            if args.decrypt { " decrypt" } else { "" },
            if args.json { " json" } else { "" }
        ),
        decrypted,
        results,
    }
}

/// A value as SQL would quote it, control characters escaped.
fn quoted(s: &str) -> String {
    format!("'{}'", printable(s, usize::MAX).replace('\'', "''"))
}

fn print_fields(map: &Map<String, Value>, indent: &str) {
    let width = map.keys().map(String::len).max().unwrap_or(0);
    let mut keys: Vec<&String> = map.keys().collect();
    // Known fields in their order, then the others alphabetically, `sealed` and
    // `prev` last.
    let rank = |k: &str| match FIELD_ORDER.iter().position(|o| *o == k) {
        Some(i) if i >= FIELD_ORDER.len() - 2 => 2 * i + 1,
        Some(i) => 2 * i,
        None => 2 * (FIELD_ORDER.len() - 2),
    };
    keys.sort_by_key(|k| (rank(k), k.as_str()));
    for key in keys {
        let value = &map[key];
        match value {
            Value::String(s) => println!("{indent}{key:<width$}  {}", printable(s, 4096)),
            Value::Array(items) if key == "tables" => {
                println!("{indent}{key}:");
                for item in items {
                    if let Value::Object(t) = item {
                        let mut line = t
                            .get("table")
                            .and_then(Value::as_str)
                            .map(|s| printable(s, 200))
                            .unwrap_or_default();
                        for (k, v) in t {
                            if k != "table" {
                                line.push_str(&format!(" {k}={}", printable(&v.to_string(), 400)));
                            }
                        }
                        println!("{indent}  {line}");
                    }
                }
            }
            v => println!("{indent}{key:<width$}  {}", printable(&v.to_string(), 4096)),
        }
    }
}
