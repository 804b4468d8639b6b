//! Policy files to a tree of values that remember where they were written.
//!
//! `toml_edit` keeps the byte span of every key and value, which is what lets each
//! diagnostic point at the exact key or value it is about.

use std::path::{Path, PathBuf};

use toml_edit::{ImDocument, Item, Value};

use crate::diagnostics::{Diagnostic, Diags, Pos, Severity, Sources};
use crate::error::Location;

/// A TOML value with the position of its first character.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pos: Pos,
    pub value: NodeValue,
}

#[derive(Debug, Clone)]
pub(crate) enum NodeValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime(toml_edit::Datetime),
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

/// A key of a table and what it holds.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

impl NodeValue {
    /// For "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeValue::Str(_) => "a string",
            NodeValue::Int(_) => "an integer",
            NodeValue::Float(_) => "a float",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Datetime(_) => "a date/time",
            NodeValue::Array(_) => "an array",
            NodeValue::Table(_) => "a table",
        }
    }

    /// Converts to the `toml` crate's value, for catalogs (masks) that take `toml::Table`.
    pub fn to_toml(&self) -> toml::Value {
        match self {
            NodeValue::Str(s) => toml::Value::String(s.clone()),
            NodeValue::Int(i) => toml::Value::Integer(*i),
            NodeValue::Float(f) => toml::Value::Float(*f),
            NodeValue::Bool(b) => toml::Value::Boolean(*b),
            NodeValue::Datetime(d) => toml::Value::Datetime(*d),
            NodeValue::Array(items) => {
                toml::Value::Array(items.iter().map(|n| n.value.to_toml()).collect())
            }
            NodeValue::Table(entries) => toml::Value::Table(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.value.to_toml()))
                    .collect(),
            ),
        }
    }
}

/// Reads every `*.toml` file directly in `dir`, in name order. Files that cannot be read
/// or parsed are reported and skipped, so the other files are still checked.
pub(crate) fn read_dir(dir: &Path, sources: &mut Sources, diags: &mut Diags) -> Vec<Node> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            diags.push_resolved(whole_file(
                dir,
                format!("cannot read the policy directory: {error}"),
                Some("check [policy] dir in the configuration".into()),
            ));
            return Vec::new();
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml") && path.is_file())
        .collect();
    paths.sort();
    if paths.is_empty() {
        diags.push_resolved(whole_file(
            dir,
            "the policy directory holds no *.toml files".into(),
            Some("an empty policy would let nobody log in; add the policy files".into()),
        ));
        return Vec::new();
    }
    let mut files = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((path, text)),
            Err(error) => diags.push_resolved(whole_file(
                &path,
                format!("cannot read the file: {error}"),
                None,
            )),
        }
    }
    parse_files(files, sources, diags)
}

/// Parses already-read files (path, text); the paths only label diagnostics.
pub(crate) fn parse_files(
    files: Vec<(PathBuf, String)>,
    sources: &mut Sources,
    diags: &mut Diags,
) -> Vec<Node> {
    let mut roots = Vec::new();
    for (path, text) in files {
        let file = sources.add(path, text);
        let text = sources.text(file);
        match ImDocument::parse(text) {
            Ok(document) => {
                let pos = Pos { file, offset: 0 };
                roots.push(Node {
                    pos,
                    value: NodeValue::Table(table_entries(document.as_table(), file, 0)),
                });
            }
            Err(error) => {
                let offset = error.span().map_or(0, |span| span.start);
                diags.error(
                    Pos { file, offset },
                    format!("invalid TOML: {}", syntax_message(error.message())),
                    Some("see https://toml.io for the syntax; strings need double quotes".into()),
                );
            }
        }
    }
    roots
}

/// The parser's message without the quoted source line it sometimes includes.
fn syntax_message(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn whole_file(path: &Path, message: String, hint: Option<String>) -> Diagnostic {
    Diagnostic {
        location: Location {
            path: path.to_path_buf(),
            line: 1,
            column: 1,
        },
        severity: Severity::Error,
        message,
        hint,
    }
}

fn table_entries(table: &toml_edit::Table, file: usize, fallback: usize) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (name, _) in table.iter() {
        let Some((key, item)) = table.get_key_value(name) else {
            continue;
        };
        let key_offset = key.span().map_or(fallback, |span| span.start);
        if let Some(value) = item_node(item, file, key_offset) {
            entries.push(Entry {
                key: name.to_owned(),
                key_pos: Pos {
                    file,
                    offset: key_offset,
                },
                value,
            });
        }
    }
    entries
}

fn item_node(item: &Item, file: usize, fallback: usize) -> Option<Node> {
    let offset = item.span().map_or(fallback, |span| span.start);
    let pos = Pos { file, offset };
    let value = match item {
        Item::None => return None,
        Item::Value(value) => return Some(value_node(value, file, fallback)),
        Item::Table(table) => NodeValue::Table(table_entries(table, file, offset)),
        Item::ArrayOfTables(array) => NodeValue::Array(
            array
                .iter()
                .map(|table| {
                    let offset = table.span().map_or(offset, |span| span.start);
                    Node {
                        pos: Pos { file, offset },
                        value: NodeValue::Table(table_entries(table, file, offset)),
                    }
                })
                .collect(),
        ),
    };
    Some(Node { pos, value })
}

fn value_node(value: &Value, file: usize, fallback: usize) -> Node {
    let offset = value.span().map_or(fallback, |span| span.start);
    let pos = Pos { file, offset };
    let value = match value {
        Value::String(s) => NodeValue::Str(s.value().clone()),
        Value::Integer(i) => NodeValue::Int(*i.value()),
        Value::Float(f) => NodeValue::Float(*f.value()),
        Value::Boolean(b) => NodeValue::Bool(*b.value()),
        Value::Datetime(d) => NodeValue::Datetime(*d.value()),
        Value::Array(array) => NodeValue::Array(
            array
                .iter()
                .map(|value| value_node(value, file, offset))
                .collect(),
        ),
        Value::InlineTable(table) => {
            let mut entries = Vec::new();
            for (name, _) in table.iter() {
                let Some((key, item)) = table.get_key_value(name) else {
                    continue;
                };
                let key_offset = key.span().map_or(offset, |span| span.start);
                if let Some(value) = item_node(item, file, key_offset) {
                    entries.push(Entry {
                        key: name.to_owned(),
                        key_pos: Pos {
                            file,
                            offset: key_offset,
                        },
                        value,
                    });
                }
            }
            NodeValue::Table(entries)
        }
    };
    Node { pos, value }
}
