//! `maskgate audit search`: the records that match every filter given, statements
//! joined with their `statement_end`.
//!
//! Speed comes from not parsing what cannot match: every line's kind is read by
//! position ([`super::scan`]); a line of a kind not searched is skipped at once; a
//! line that lacks the exact JSON text of a filter value (`memchr::memmem`) is
//! skipped before any JSON parsing; only what is left is deserialized, into
//! borrowed structs with the few fields the filters need. Segments are read in
//! parallel, and a search that has its `--limit` stops reading segments.
//!
//! Joins: a matched statement's `statement_end` (same `session` and `stmt`) comes
//! after it, usually in the same segment. Each segment's worker watches for the
//! ends of its own matches; ends not found there are looked for in the later
//! segments in a second parallel pass that reads only `statement_end` lines.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

use maskgate_policy::IpNet;

use anyhow::Context as _;
use memchr::memmem::Finder;
use serde::Deserialize;
use serde_json::Value;

use super::scan::{self, Envelope, Segment, TimeKey};

/// Kinds searched when `--kind` is not given.
pub const DEFAULT_KINDS: [&str; 3] = ["statement", "login", "session_end"];

/// What to look for, as given on the command line.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub account: Option<String>,
    pub since: Option<TimeKey>,
    pub until: Option<TimeKey>,
    pub table: Option<String>,
    pub column: Option<String>,
    pub decision: Option<String>,
    pub client: Option<ClientFilter>,
    pub session: Option<String>,
    pub reason: Option<String>,
    /// Empty: [`DEFAULT_KINDS`].
    pub kinds: Vec<String>,
    /// 0: no limit.
    pub limit: usize,
}

/// `--client`: an address, a network in CIDR notation, or (for clients that are
/// not IP addresses) the exact text recorded. Networks are the policy's own type,
/// so `--client` reads a network exactly as an account's `networks` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFilter {
    Net(IpNet),
    Text(String),
}

impl ClientFilter {
    pub fn parse(s: &str) -> anyhow::Result<ClientFilter> {
        if s.contains('/') {
            let net = s
                .parse::<IpNet>()
                .map_err(|e| anyhow::anyhow!("--client {s}: {e}"))?;
            return Ok(ClientFilter::Net(net));
        }
        match host_ip(s).and_then(|addr| IpNet::new(addr, if addr.is_ipv4() { 32 } else { 128 })) {
            Some(net) => Ok(ClientFilter::Net(net)),
            None => Ok(ClientFilter::Text(s.to_owned())),
        }
    }

    fn matches(&self, client: &str) -> bool {
        match self {
            ClientFilter::Text(text) => client == text,
            ClientFilter::Net(net) => host_ip(client).is_some_and(|ip| net.contains(ip)),
        }
    }
}

/// The IP address of a recorded client (`10.1.2.3:5432`, `[::1]:5432`, a bare
/// address), IPv4-mapped IPv6 addresses as IPv4.
fn host_ip(client: &str) -> Option<IpAddr> {
    if let Ok(sock) = client.parse::<std::net::SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    let bare = client.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The fields the filters read, borrowed from the line where it has no escapes.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    session: Option<Cow<'a, str>>,
    #[serde(default)]
    stmt: Option<u64>,
    #[serde(borrow, default)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    login: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    account_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    client: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    decision: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tables: Vec<TableRef<'a>>,
    #[serde(borrow, default)]
    written: Vec<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct TableRef<'a> {
    #[serde(borrow)]
    table: Cow<'a, str>,
    #[serde(borrow, default)]
    masked: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    denied: Vec<Cow<'a, str>>,
}

/// The join key of a `statement_end`, read by position when the writer's layout
/// allows (`,"session":"…","stmt":N` first), parsed otherwise.
fn end_key(payload: &[u8], line: &[u8]) -> Option<(String, u64)> {
    let fast = || -> Option<(&str, u64)> {
        let rest = payload.strip_prefix(b",\"session\":\"")?;
        let end = memchr::memchr(b'"', rest)?;
        let session = &rest[..end];
        if session.contains(&b'\\') {
            return None;
        }
        let rest = rest[end..].strip_prefix(b"\",\"stmt\":")?;
        let digits = rest.iter().position(|b| !b.is_ascii_digit())?;
        let stmt = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        Some((std::str::from_utf8(session).ok()?, stmt))
    };
    if let Some((s, n)) = fast() {
        return Some((s.to_owned(), n));
    }
    let f: Fields<'_> = serde_json::from_slice(line).ok()?;
    Some((f.session?.into_owned(), f.stmt?))
}

/// Same as [`end_key`] without allocating: for lookups.
fn with_end_key<R>(payload: &[u8], line: &[u8], f: impl FnOnce(&str, u64) -> R) -> Option<R> {
    let rest = payload.strip_prefix(b",\"session\":\"");
    if let Some(rest) = rest {
        if let Some(end) = memchr::memchr(b'"', rest) {
            let session = &rest[..end];
            if let (false, Some(digits)) = (
                session.contains(&b'\\'),
                rest[end..].strip_prefix(b"\",\"stmt\":"),
            ) {
                let n = digits.iter().position(|b| !b.is_ascii_digit());
                let stmt = n.and_then(|n| std::str::from_utf8(&digits[..n]).ok()?.parse().ok());
                if let (Ok(session), Some(stmt)) = (std::str::from_utf8(session), stmt) {
                    return Some(f(session, stmt));
                }
            }
        }
    }
    let (session, stmt) = end_key(payload, line)?;
    Some(f(&session, stmt))
}

/// A query made ready to run: needles built once, shared by every thread.
struct Compiled<'q> {
    query: &'q Query,
    kinds: Vec<Vec<u8>>,
    /// Every one must occur in a line for it to be parsed.
    needles: Vec<Finder<'static>>,
    /// Whether only the envelope is needed (kind and time filters alone).
    envelope_only: bool,
    client_key: Finder<'static>,
}

fn json_string(s: &str) -> String {
    // Serializing a string cannot fail.
    serde_json::to_string(s).unwrap_or_default()
}

impl<'q> Compiled<'q> {
    fn new(query: &'q Query) -> Compiled<'q> {
        let kinds = if query.kinds.is_empty() {
            DEFAULT_KINDS
                .iter()
                .map(|k| k.as_bytes().to_vec())
                .collect()
        } else {
            query.kinds.iter().map(|k| k.as_bytes().to_vec()).collect()
        };
        let mut needles: Vec<String> = Vec::new();
        if let Some(a) = &query.account {
            needles.push(json_string(a));
        }
        if let Some(s) = &query.session {
            needles.push(json_string(s));
        }
        if let Some(d) = &query.decision {
            needles.push(format!("\"decision\":{}", json_string(d)));
        }
        if let Some(r) = &query.reason {
            needles.push(format!("\"reason\":{}", json_string(r)));
        }
        if let Some(t) = &query.table {
            let quoted = json_string(t);
            if t.contains('.') {
                // In `tables[].table` or in `written`.
                needles.push(quoted);
            } else {
                // `patients` matches `public.patients`: the name and the closing quote.
                needles.push(quoted[1..].to_owned());
            }
        }
        if let Some(c) = &query.column {
            let quoted = json_string(c.rsplit('.').next().unwrap_or(c));
            needles.push(quoted[1..quoted.len() - 1].to_owned());
        }
        let envelope_only = query.account.is_none()
            && query.session.is_none()
            && query.decision.is_none()
            && query.reason.is_none()
            && query.table.is_none()
            && query.column.is_none()
            && query.client.is_none();
        Compiled {
            query,
            kinds,
            needles: needles
                .iter()
                .map(|n| Finder::new(n.as_bytes()).into_owned())
                .collect(),
            envelope_only,
            client_key: Finder::new(b"\"client\":\"").into_owned(),
        }
    }

    /// Whether some `"client":"…"` in the line could match `--client`, without a
    /// JSON parser. No record has a nested `client` key, and a value with an
    /// escape is left to the parser, so this never rejects a match.
    fn client_may_match(&self, client: &ClientFilter, line: &[u8]) -> bool {
        self.client_key.find_iter(line).any(|at| {
            let rest = &line[at + self.client_key.needle().len()..];
            let Some(end) = memchr::memchr(b'"', rest) else {
                return true;
            };
            let value = &rest[..end];
            value.contains(&b'\\') || std::str::from_utf8(value).map_or(true, |v| client.matches(v))
        })
    }

    /// Whether the line matches; `Some(join key)` for a matching statement.
    fn matches(&self, env: &Envelope<'_>, line: &[u8]) -> Option<Option<(String, u64)>> {
        if !self.kinds.iter().any(|k| k == env.kind) {
            return None;
        }
        if self.query.since.is_some() || self.query.until.is_some() {
            let t = TimeKey::parse(env.time)?;
            if self.query.since.is_some_and(|s| t < s) || self.query.until.is_some_and(|u| t > u) {
                return None;
            }
        }
        if !self.needles.iter().all(|n| n.find(line).is_some()) {
            return None;
        }
        if let Some(client) = &self.query.client {
            if !self.client_may_match(client, line) {
                return None;
            }
        }
        let is_statement = env.kind == b"statement";
        if self.envelope_only && !is_statement {
            return Some(None);
        }
        let f: Fields<'_> = serde_json::from_slice(line).ok()?;
        let q = self.query;
        if let Some(account) = &q.account {
            let names = [&f.user, &f.login, &f.account_name];
            if !names.iter().any(|n| n.as_deref() == Some(account.as_str())) {
                return None;
            }
        }
        if let Some(session) = &q.session {
            if f.session.as_deref() != Some(session.as_str()) {
                return None;
            }
        }
        if let Some(decision) = &q.decision {
            if f.decision.as_deref() != Some(decision.as_str()) {
                return None;
            }
        }
        if let Some(reason) = &q.reason {
            if f.reason.as_deref() != Some(reason.as_str()) {
                return None;
            }
        }
        if let Some(client) = &q.client {
            if !f.client.as_deref().is_some_and(|c| client.matches(c)) {
                return None;
            }
        }
        if q.table.is_some() || q.column.is_some() {
            let hit = f.tables.iter().any(|t| {
                let table_ok = q
                    .table
                    .as_deref()
                    .is_none_or(|want| table_is(&t.table, want));
                let column_ok = q.column.as_deref().is_none_or(|want| {
                    let (want_table, want_column) = match want.rsplit_once('.') {
                        Some((table, column)) => (Some(table), column),
                        None => (None, want),
                    };
                    want_table.is_none_or(|wt| table_is(&t.table, wt))
                        && (t
                            .masked
                            .iter()
                            .any(|m| m.split(':').next() == Some(want_column))
                            || t.denied.iter().any(|d| d == want_column))
                });
                table_ok && column_ok
            });
            let written = q.column.is_none()
                && q.table
                    .as_deref()
                    .is_some_and(|want| f.written.iter().any(|w| table_is(w, want)));
            if !hit && !written {
                return None;
            }
        }
        let key = match (is_statement, f.session, f.stmt) {
            (true, Some(s), Some(n)) => Some((s.into_owned(), n)),
            _ => None,
        };
        Some(key)
    }
}

/// `schema.table` matches itself; a name without a schema matches that table in
/// any schema.
fn table_is(recorded: &str, wanted: &str) -> bool {
    recorded == wanted || (!wanted.contains('.') && recorded.rsplit('.').next() == Some(wanted))
}

/// One matching record.
#[derive(Debug)]
pub struct Hit {
    pub seq: u64,
    pub line: Vec<u8>,
    /// For a statement: its join key and, once found, its `statement_end` line.
    pub key: Option<(String, u64)>,
    pub end: Option<Vec<u8>>,
}

/// What a search found.
#[derive(Debug, Default)]
pub struct Found {
    pub hits: Vec<Hit>,
    /// More records matched than `--limit` lets through.
    pub more: bool,
    /// Lines skipped because they are not in the writer's layout.
    pub unreadable: u64,
}

struct SegmentHits {
    hits: Vec<Hit>,
    unreadable: u64,
}

/// Runs a query over the segments.
pub fn search(segments: &[Segment], query: &Query) -> anyhow::Result<Found> {
    let compiled = Compiled::new(query);
    // One more than the limit tells whether there are more.
    let want = (query.limit > 0).then_some(query.limit + 1);
    let per_segment = scan::par_segments(
        segments,
        |segment, buf| search_segment(segment, buf, &compiled, want),
        |done| {
            want.is_some_and(|w| done.iter().flatten().map(|s| s.hits.len()).sum::<usize>() >= w)
        },
    )?;
    let mut found = Found::default();
    let mut first_open: Option<usize> = None;
    for (i, seg) in per_segment.into_iter().enumerate() {
        let Some(seg) = seg else { continue };
        found.unreadable += seg.unreadable;
        for hit in seg.hits {
            if want.is_some_and(|w| found.hits.len() + 1 >= w) {
                found.more = true;
                break;
            }
            if hit.key.is_some() && hit.end.is_none() && first_open.is_none() {
                first_open = Some(i);
            }
            found.hits.push(hit);
        }
    }
    if let Some(from) = first_open {
        join_ends(&segments[from..], &mut found.hits)?;
    }
    Ok(found)
}

fn search_segment(
    segment: &Segment,
    buf: &mut Vec<u8>,
    compiled: &Compiled<'_>,
    want: Option<usize>,
) -> anyhow::Result<SegmentHits> {
    scan::read_segment(segment, buf)?;
    let mut hits: Vec<Hit> = Vec::new();
    let mut unreadable = 0;
    // Matched statements of this segment still waiting for their end.
    let mut open: HashMap<String, HashMap<u64, usize>> = HashMap::new();
    let mut open_count = 0usize;
    for line in scan::lines(buf) {
        let Some(env) = scan::envelope(line) else {
            unreadable += 1;
            continue;
        };
        if env.kind == b"statement_end" {
            if open_count > 0 {
                let at = with_end_key(env.payload, line, |session, stmt| {
                    open.get_mut(session).and_then(|m| m.remove(&stmt))
                })
                .flatten();
                if let Some(at) = at {
                    open_count -= 1;
                    hits[at].end = Some(line.to_vec());
                }
            }
            if want.is_some_and(|w| hits.len() >= w) && open_count == 0 {
                break;
            }
            continue;
        }
        if want.is_some_and(|w| hits.len() >= w) {
            // Enough matches: keep reading only for the ends of those found.
            if open_count == 0 {
                break;
            }
            continue;
        }
        if let Some(key) = compiled.matches(&env, line) {
            if let Some((session, stmt)) = &key {
                open.entry(session.clone())
                    .or_default()
                    .insert(*stmt, hits.len());
                open_count += 1;
            }
            hits.push(Hit {
                seq: env.seq,
                line: line.to_vec(),
                key,
                end: None,
            });
        }
    }
    Ok(SegmentHits { hits, unreadable })
}

/// Finds the `statement_end` of every hit that has none yet, in `segments`.
fn join_ends(segments: &[Segment], hits: &mut [Hit]) -> anyhow::Result<()> {
    let mut wanted: HashMap<String, HashMap<u64, usize>> = HashMap::new();
    for (i, hit) in hits.iter().enumerate() {
        if let (Some((session, stmt)), None) = (&hit.key, &hit.end) {
            wanted.entry(session.clone()).or_default().insert(*stmt, i);
        }
    }
    let total: usize = wanted.values().map(HashMap::len).sum();
    let wanted = &wanted;
    let per_segment = scan::par_segments(
        segments,
        |segment, buf| {
            scan::read_segment(segment, buf)?;
            let mut ends: Vec<(usize, Vec<u8>)> = Vec::new();
            for line in scan::lines(buf) {
                let Some(env) = scan::envelope(line) else {
                    continue;
                };
                if env.kind != b"statement_end" {
                    continue;
                }
                let at = with_end_key(env.payload, line, |session, stmt| {
                    wanted.get(session).and_then(|m| m.get(&stmt)).copied()
                })
                .flatten();
                if let Some(at) = at {
                    ends.push((at, line.to_vec()));
                }
            }
            Ok(ends)
        },
        |done| done.iter().flatten().map(Vec::len).sum::<usize>() >= total,
    )?;
    for (at, line) in per_segment.into_iter().flatten().flatten() {
        hits[at].end.get_or_insert(line);
    }
    Ok(())
}

/// Finds the `statement_end` of one statement, from segment `segments[0]` on.
pub fn find_end(segments: &[Segment], session: &str, stmt: u64) -> anyhow::Result<Option<Vec<u8>>> {
    let mut hits = [Hit {
        seq: 0,
        line: Vec::new(),
        key: Some((session.to_owned(), stmt)),
        end: None,
    }];
    join_ends(segments, &mut hits)?;
    let [hit] = hits;
    Ok(hit.end)
}

/// A record as search and show print it: the line's object, `prev` and the sealed
/// value's ciphertext left out unless `full`.
pub fn record_value(line: &[u8], full: bool) -> anyhow::Result<serde_json::Map<String, Value>> {
    let value: Value = serde_json::from_slice(line).context("a record is not valid JSON")?;
    let Value::Object(mut map) = value else {
        anyhow::bail!("a record is not a JSON object");
    };
    if !full {
        map.remove("prev");
        map.remove("sealed");
    }
    Ok(map)
}

/// The JSON form of a hit: the record, with `end` holding its statement_end's
/// fields (`null` if none was found) for statements.
pub fn hit_json(hit: &Hit) -> anyhow::Result<Value> {
    let mut map = record_value(&hit.line, false)?;
    if hit.key.is_some() {
        let end = match &hit.end {
            Some(line) => {
                let mut end = record_value(line, false)?;
                end.remove("session");
                end.remove("stmt");
                end.remove("kind");
                Value::Object(end)
            }
            None => Value::Null,
        };
        map.insert("end".to_owned(), end);
    }
    Ok(Value::Object(map))
}

/// Prints hits as an aligned table, one line each.
pub fn print_table(found: &Found, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let mut rows: Vec<[String; 9]> = vec![[
        "SEQ",
        "TIME",
        "KIND",
        "USER",
        "CLIENT",
        "SESSION",
        "DECISION",
        "RESULT",
        "STATEMENT / DETAIL",
    ]
    .map(str::to_owned)];
    for hit in &found.hits {
        let rec = record_value(&hit.line, false)?;
        let s = |k: &str| match rec.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        };
        let end = hit
            .end
            .as_deref()
            .map(|l| record_value(l, false))
            .transpose()?;
        let e = |k: &str| {
            end.as_ref().and_then(|m| m.get(k)).map(|v| match v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
        };
        let kind = s("kind");
        let user = [s("user"), s("login")]
            .into_iter()
            .find(|u| !u.is_empty())
            .unwrap_or_default();
        let session = match (s("session"), rec.get("stmt")) {
            (sess, Some(n)) if !sess.is_empty() => format!("{sess}/{n}"),
            (sess, _) => sess,
        };
        let (decision, result, detail) = match kind.as_str() {
            "statement" => {
                let result = match &end {
                    None => "(no end)".to_owned(),
                    Some(_) => {
                        let mut r = format!(
                            "{} {} rows {} B",
                            e("outcome").unwrap_or_default(),
                            e("rows").unwrap_or_default(),
                            e("bytes").unwrap_or_default()
                        );
                        if let Some(state) = e("sqlstate") {
                            r.push_str(&format!(" {state}"));
                        }
                        r
                    }
                };
                let mut decision = s("decision");
                if let Some(reason) = rec.get("reason").and_then(Value::as_str) {
                    decision.push_str(&format!(" ({reason})"));
                }
                (decision, result, s("statement"))
            }
            "login" => (s("outcome"), s("reason"), s("detail")),
            "session_end" => (
                s("end"),
                format!("{} stmts {} rows", s("statements"), s("rows")),
                s("detail"),
            ),
            _ => (String::new(), String::new(), String::new()),
        };
        let time: String = s("time").chars().take(19).collect();
        rows.push([
            hit.seq.to_string(),
            time,
            kind,
            user,
            s("client"),
            session,
            decision,
            result,
            printable(&detail, 100),
        ]);
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    writeln!(
        out,
        "{} record(s){}",
        found.hits.len(),
        if found.more {
            "; more match: raise --limit (0 for no limit) or narrow the filters"
        } else {
            ""
        }
    )?;
    Ok(())
}

/// A value from a file cut to `max` characters, control characters escaped, so a
/// record cannot move the terminal's cursor or forge a line.
pub fn printable(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients() {
        let net = ClientFilter::parse("10.1.0.0/16").unwrap();
        assert!(net.matches("10.1.2.3:5432"));
        assert!(net.matches("10.1.2.3"));
        assert!(net.matches("[::ffff:10.1.2.3]:5432"));
        assert!(!net.matches("10.2.2.3:5432"));
        assert!(!net.matches("unix"));
        let one = ClientFilter::parse("10.1.2.3").unwrap();
        assert!(one.matches("10.1.2.3:1") && !one.matches("10.1.2.4:1"));
        let v6 = ClientFilter::parse("2001:db8::/32").unwrap();
        assert!(v6.matches("[2001:db8::1]:5432") && !v6.matches("[2001:db9::1]:5432"));
        assert!(ClientFilter::parse("0.0.0.0/0")
            .unwrap()
            .matches("1.2.3.4:5"));
        assert_eq!(
            ClientFilter::parse("local").unwrap(),
            ClientFilter::Text("local".into())
        );
        assert!(ClientFilter::parse("10.0.0.0/33").is_err());
        assert!(ClientFilter::parse("x/8").is_err());
    }

    #[test]
    fn client_prefilter_never_rejects_a_match() {
        let query = Query {
            client: Some(ClientFilter::parse("10.1.0.0/16").unwrap()),
            ..Query::default()
        };
        let c = Compiled::new(&query);
        let filter = query.client.as_ref().unwrap();
        assert!(c.client_may_match(filter, br#"{"client":"10.1.2.3:5","x":1}"#));
        assert!(!c.client_may_match(filter, br#"{"client":"10.2.2.3:5"}"#));
        assert!(!c.client_may_match(filter, br#"{"user":"a"}"#));
        // Escaped: left to the parser.
        assert!(c.client_may_match(filter, br#"{"client":"a\"b"}"#));
    }

    #[test]
    fn tables() {
        assert!(table_is("public.patients", "public.patients"));
        assert!(table_is("public.patients", "patients"));
        assert!(!table_is("public.patients", "other.patients"));
        assert!(!table_is("public.patients_old", "patients"));
    }

    #[test]
    fn end_keys() {
        assert_eq!(
            end_key(br#","session":"ab-1","stmt":7,"outcome":"completed"}"#, b""),
            Some(("ab-1".to_owned(), 7))
        );
        let line = br#"{"stmt":7,"session":"a\"b"}"#;
        assert_eq!(end_key(b",\"x\":1}", line), Some(("a\"b".to_owned(), 7)));
    }

    #[test]
    fn printable_values() {
        assert_eq!(printable("a\nb", 10), "a\\nb");
        assert_eq!(printable("abcdef", 3), "abc…");
    }
}
